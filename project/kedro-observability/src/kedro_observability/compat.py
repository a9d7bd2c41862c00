"""Every use of another library's private API, in one place, each with the reason for it.

Nothing else in the package reads a private attribute of Kedro, pandas or any other
library. When a release moves one of these, this is the one file to change, and each
function has a public fallback or a documented "unknown" answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)


def dataset_load_path(dataset: Any) -> str | None:
    """The path a file-based dataset loads from: the resolved version for versioned datasets.

    Kedro's datasets expose no public accessor for this. ``_get_load_path()`` (of
    ``AbstractVersionedDataset``, the base of every file-based kedro-datasets class) is the
    one method that knows which version a load actually reads, and ``_protocol`` tells a
    local file from a remote one. Returns None for datasets that are not backed by a file
    (MemoryDataset, ...).
    """
    get_load_path = getattr(dataset, "_get_load_path", None)
    if get_load_path is None:
        return None
    path = str(get_load_path())
    protocol = getattr(dataset, "_protocol", None)
    if protocol and protocol not in {"file", "local"}:
        return f"{protocol}://{path}"
    return path


def frame_block_arrays(frame: Any) -> list[Any] | None:
    """The arrays that hold a pandas DataFrame's data (2-D numpy blocks, 1-D extension arrays).

    pandas has no public accessor for them but building one Series per column, which costs
    10-20 µs a column and, measured in a running pipeline, tripled the dataset hook's cost
    per load and save. The block manager's ``arrays`` hold the same bytes and take about a
    microsecond. None when pandas moves it: the caller then takes the public path.
    """
    arrays = getattr(getattr(frame, "_mgr", None), "arrays", None)
    return list(arrays) if isinstance(arrays, (list, tuple)) else None


def every_registered_pipeline() -> list[Pipeline]:
    """Every pipeline of the project's registry, also those this run did not load.

    Kedro 1.7 loads only the pipelines named with ``--pipelines`` (``set_requested``), so
    the public ``pipelines`` mapping holds just those during a run. Checks that tell "this
    node is in no pipeline of the project" from "this node is in another pipeline" need all
    of them: the filter is lifted to read them and put back as it was (``_requested_pipelines``
    is the only record of it), so the run itself sees nothing change. Called only when a
    configured name is not in the running pipeline.
    """
    from kedro.framework.project import pipelines

    requested = getattr(pipelines, "_requested_pipelines", None)
    set_requested = getattr(pipelines, "set_requested", None)
    try:
        if set_requested is None:
            return list(pipelines.values())
        set_requested(None)
        try:
            return list(pipelines.values())
        finally:
            set_requested(requested)
    except Exception as error:  # noqa: BLE001 - a broken registry is reported by Kedro itself
        logger.debug("Could not read the pipeline registry: %s", error)
        return []
