"""The project's pipelines: data_processing, data_science, and both as __default__."""

from kedro.pipeline import Pipeline

from spaceflights.pipelines import data_generation, data_processing, data_science


def register_pipelines() -> dict[str, Pipeline]:
    processing = data_processing.create_pipeline()
    science = data_science.create_pipeline()
    return {
        "data_generation": data_generation.create_pipeline(),
        "data_processing": processing,
        "data_science": science,
        "__default__": processing + science,
    }
