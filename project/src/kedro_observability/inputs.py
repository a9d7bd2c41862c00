"""The input-path hook: chosen nodes receive a dataset's file path instead of its data.

Configured in observability.yml::

    input_paths:
      fingerprint_raw_data: [companies, shuttles, reviews]

Kedro loads a node's inputs *before* it calls ``before_node_run``, so the data is still
loaded once; the hook only replaces what the node function receives. Use it for nodes that
need the file itself (checksums, lineage, handing a file to an external tool), not to save a
load.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from kedro_observability.base import ObservingHook
from kedro_observability.runtime import ParallelRunnerStartMethodError, parallel_workers_problem, registered_pipelines

logger = logging.getLogger(__name__)


class InputPathError(ValueError):
    """The ``input_paths`` setting names a node or an input that cannot be served as a path."""


def dataset_file_path(dataset: Any) -> str | None:
    """The path a file-based dataset loads from: the resolved version for versioned datasets.

    Kedro's datasets expose no public accessor for this. ``_get_load_path()`` (of
    ``AbstractVersionedDataset``, the base of every file-based kedro-datasets class) is the
    one method that knows which version a load actually reads, and ``_protocol`` tells a
    local file from a remote one, so this function is the single place that reaches into
    them. Returns None for datasets that are not backed by a file (MemoryDataset, ...).
    """
    get_load_path = getattr(dataset, "_get_load_path", None)
    if get_load_path is None:
        return None
    path = str(get_load_path())
    protocol = getattr(dataset, "_protocol", None)
    if protocol and protocol not in {"file", "local"}:
        return f"{protocol}://{path}"
    return path


class InputPathHook(ObservingHook):
    """Replace configured node inputs by the file paths of their datasets."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        run = self._start_run(run_params)
        if not run.settings.input_paths:
            return
        check_input_paths(run.settings.input_paths, pipeline, registered_pipelines(), catalog)
        # Without hooks in the workers, the configured nodes would silently get data instead
        # of paths: a result that differs between runners, so the run must not start.
        problem = parallel_workers_problem(run_params)
        if problem:
            raise ParallelRunnerStartMethodError(problem)

    @hook_impl
    def before_node_run(self, node: Node, catalog: Any, inputs: dict[str, Any]) -> dict[str, str] | None:
        names = self._scope.settings.input_paths.get(node.name)
        if not names:
            return None
        paths = {}
        for name in names:
            path = dataset_file_path(catalog.get(name))
            if path is None:  # checked before the run; reached only if the catalog changed since
                raise InputPathError(_no_path_message(node.name, name, catalog))
            paths[name] = path
        logger.debug("Node '%s' receives file paths for %s", node.name, ", ".join(paths))
        return paths



def check_input_paths(
    input_paths: dict[str, list[str]],
    pipeline: Pipeline,
    registered: list[Pipeline],
    catalog: Any,
) -> None:
    """Raise :class:`InputPathError` unless every configured node and input can be served.

    Nodes are looked up in the pipeline being run and in every registered pipeline, so that
    a run of a sub-pipeline does not reject configuration meant for another one.
    """
    nodes = {node.name: node for candidate in [pipeline, *registered] for node in candidate.nodes}
    for node_name, input_names in input_paths.items():
        node = nodes.get(node_name)
        if node is None:
            close = difflib.get_close_matches(node_name, sorted(nodes), n=3)
            suggestion = f" Similar node names: {', '.join(close)}." if close else ""
            raise InputPathError(
                f"input_paths in observability.yml names the node '{node_name}', which is in "
                f"no registered pipeline.{suggestion} Use the full node name, namespace "
                "included, as `kedro registry describe` lists it."
            )
        for input_name in input_names:
            if input_name not in node.inputs:
                raise InputPathError(
                    f"input_paths in observability.yml gives node '{node_name}' the path of "
                    f"'{input_name}', which is not one of its inputs ({', '.join(node.inputs) or 'none'})."
                )
            if dataset_file_path(catalog.get(input_name)) is None:
                raise InputPathError(_no_path_message(node_name, input_name, catalog))


def _no_path_message(node_name: str, input_name: str, catalog: Any) -> str:
    dataset = catalog.get(input_name)
    kind = type(dataset).__name__ if dataset is not None else "MemoryDataset (not in the catalog)"
    return (
        f"input_paths in observability.yml asks for the file path of '{input_name}' (input of "
        f"node '{node_name}'), but that dataset is a {kind} and has no file path. Declare it "
        "in catalog.yml with a file-based type (pandas.CSVDataset, pandas.ParquetDataset, ...) "
        "or remove it from input_paths."
    )
