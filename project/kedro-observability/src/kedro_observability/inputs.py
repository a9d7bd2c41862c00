"""Input paths: chosen nodes receive a dataset's file path instead of its data.

Configured in observability.yml::

    input_paths:
      fingerprint_raw_data: [companies, shuttles, reviews]

Kedro loads a node's inputs *before* it calls ``before_node_run``, so the data is still
loaded once; only what the node function receives is replaced. Use it for nodes that need
the file itself (checksums, lineage, handing a file to an external tool), not to save a load.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from kedro_observability.compat import dataset_load_path

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline


class InputPathError(ValueError):
    """The ``input_paths`` setting names a node or an input that cannot be served as a path."""


def check_input_paths(
    input_paths: dict[str, list[str]],
    pipeline: Pipeline,
    every_pipeline: Callable[[], list[Pipeline]],
    catalog: CatalogProtocol,
) -> None:
    """Raise :class:`InputPathError` unless every configured node and input can be served.

    Nodes are looked up in the running pipeline, then (only if needed) in every pipeline of
    the project, so that a run of one pipeline does not reject configuration meant for
    another, while a node that is in no pipeline at all still stops the run.
    """
    nodes = {node.name: node for node in pipeline.nodes}
    for node_name, input_names in input_paths.items():
        node = nodes.get(node_name)
        if node is None:
            nodes.update((each.name, each) for candidate in every_pipeline() for each in candidate.nodes)
            node = nodes.get(node_name)
        if node is None:
            close = difflib.get_close_matches(node_name, sorted(nodes), n=3)
            suggestion = f" Similar node names: {', '.join(close)}." if close else ""
            raise InputPathError(
                f"input_paths in observability.yml names the node '{node_name}', which is in "
                f"no pipeline of the project.{suggestion} Use the full node name, namespace "
                "included, as `kedro registry describe` lists it."
            )
        for input_name in input_names:
            if input_name not in node.inputs:
                raise InputPathError(
                    f"input_paths in observability.yml gives node '{node_name}' the path of "
                    f"'{input_name}', which is not one of its inputs ({', '.join(node.inputs) or 'none'})."
                )
            if dataset_load_path(catalog.get(input_name)) is None:
                raise InputPathError(_no_path_message(node_name, input_name, catalog))


def input_paths_for(node_name: str, names: list[str], catalog: CatalogProtocol) -> dict[str, str]:
    """The file paths to hand the node instead of the data of ``names``."""
    paths = {}
    for name in names:
        path = dataset_load_path(catalog.get(name))
        if path is None:  # checked before the run; reached only if the catalog changed since
            raise InputPathError(_no_path_message(node_name, name, catalog))
        paths[name] = path
    return paths


def _no_path_message(node_name: str, input_name: str, catalog: CatalogProtocol) -> str:
    dataset = catalog.get(input_name)
    kind = type(dataset).__name__ if dataset is not None else "MemoryDataset (not in the catalog)"
    return (
        f"input_paths in observability.yml asks for the file path of '{input_name}' (input of "
        f"node '{node_name}'), but that dataset is a {kind} and has no file path. Declare it "
        "in catalog.yml with a file-based type (pandas.CSVDataset, pandas.ParquetDataset, ...) "
        "or remove it from input_paths."
    )
