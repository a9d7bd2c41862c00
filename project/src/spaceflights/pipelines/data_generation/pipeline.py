from kedro.pipeline import Pipeline, node, pipeline

from spaceflights.pipelines.data_generation.nodes import generate_raw_data


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                generate_raw_data,
                inputs="params:data_generation",
                outputs=["companies", "shuttles", "reviews"],
                name="generate_raw_data",
            )
        ]
    )
