"""Two pipelines found by find_pipelines(): fingerprints (the default run) and audit.

As in a project made by `kedro new`, so that a run of one pipeline loads only that one
(Kedro 1.7 hands find_pipelines() the --pipelines filter): the plugin's checks of node
and dataset names must still see the other.
"""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline, pipeline


def register_pipelines() -> dict[str, Pipeline]:
    found = find_pipelines(raise_errors=True)
    found["__default__"] = found.get("fingerprints", pipeline([]))
    return found
