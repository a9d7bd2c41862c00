from kedro.pipeline import Pipeline, node, pipeline

from spaceflights.pipelines.data_processing.nodes import (
    create_model_input_table,
    fingerprint_raw_data,
    preprocess_companies,
    preprocess_shuttles,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                fingerprint_raw_data,
                inputs=["companies", "shuttles", "reviews"],
                outputs="raw_fingerprints",
                name="fingerprint_raw_data",
            ),
            node(preprocess_companies, "companies", "preprocessed_companies", name="preprocess_companies"),
            node(preprocess_shuttles, "shuttles", "preprocessed_shuttles", name="preprocess_shuttles"),
            node(
                create_model_input_table,
                inputs=["preprocessed_shuttles", "preprocessed_companies", "reviews"],
                outputs="model_input_table",
                name="create_model_input_table",
            ),
        ]
    )
