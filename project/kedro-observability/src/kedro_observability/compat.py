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


class BoundGxValidator:
    """A Great Expectations validator built once for one suite, then handed each frame.

    GX's public path (``ValidationDefinition.run``) builds a batch, a legacy ``Validator``
    and a stored result on every call: measured on 100k rows x 27 columns with 14
    expectations, 27 ms of its 100 ms go to an MD5 fingerprint of the whole frame (the
    ``pandas_data_fingerprint`` batch marker, read by nobody) and 8 ms to the results store
    and the batch. None of that depends on the data. This keeps the legacy ``Validator``
    of one batch, swaps the frame into its execution engine (``load_batch_data``, the
    engine's own way of registering batch data) and runs the suite's expectation
    configurations through ``graph_validate``, the call ``ValidationDefinition.run`` ends
    in. Every metric of the graph is computed afresh on each call (GX's metric cache only
    serves dependencies a graph does not compute itself), so one frame's results never
    leak into another's. These are internals of GX 1.x: :func:`bind_gx_validator` returns
    None when they are missing, and the caller takes the public path.

    Not thread-safe: the engine holds one frame at a time; the caller serialises.
    """

    def __init__(self, validator: Any, configurations: list[Any]) -> None:
        self._validator = validator
        self._engine = validator.execution_engine
        self._batch_id = validator.active_batch_id
        self.configurations = configurations

    def run(self, frame: Any, result_format: dict[str, Any], configurations: list[Any] | None = None) -> list[Any]:
        """GX's result of each expectation on ``frame`` (all, or the ``configurations`` given)."""
        import pandas as pd

        self._engine.load_batch_data(self._batch_id, frame)
        try:
            return list(
                self._validator.graph_validate(
                    configurations=self.configurations if configurations is None else configurations,
                    runtime_configuration={"result_format": dict(result_format)},
                )
            )
        finally:
            # The engine would otherwise hold the frame until the next validation.
            self._engine.load_batch_data(self._batch_id, pd.DataFrame())


def bind_gx_validator(context: Any, batch_definition: Any, suite: Any) -> BoundGxValidator | None:
    """A :class:`BoundGxValidator` for ``suite`` on ``batch_definition``; None when GX has moved."""
    import pandas as pd

    try:
        request = batch_definition.build_batch_request(batch_parameters={"dataframe": pd.DataFrame()})
        validator = context.get_validator(batch_request=request)
        configurations = validator.process_expectations_for_validation(suite.expectation_configurations, None)
        if not (callable(getattr(validator, "graph_validate", None)) and validator.active_batch_id):
            return None
        if not callable(getattr(validator.execution_engine, "load_batch_data", None)):
            return None
    except Exception as error:  # noqa: BLE001 - any change of these internals means: the public path
        logger.debug("GX internals moved (%s: %s); validating through ValidationDefinition.run.", type(error).__name__, error)
        return None
    return BoundGxValidator(validator, list(configurations))


def memoize_gx_expectation_types() -> None:
    """Compute each GX expectation's snake_case type once instead of on every access.

    GX 1.x rebuilds ``Expectation.configuration`` each time it reads an argument (about
    90 times per expectation and validation), and each build turns the class name into its
    snake_case type with two regular expressions: 8 ms of a 50 ms validation of 14
    expectations. ``camel_to_snake`` is a pure function of a class name, so caching it
    changes no result. Done once per process, and only if GX still has that function.
    """
    import functools

    from great_expectations.expectations import expectation

    current = getattr(expectation, "camel_to_snake", None)
    if current is None or hasattr(current, "cache_info"):
        return
    expectation.camel_to_snake = functools.lru_cache(maxsize=1024)(current)
