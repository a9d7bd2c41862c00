from kedro.pipeline import Pipeline, node, pipeline

from obs_demo.nodes import count_rows, fingerprint, identity


def create_pipeline(**kwargs) -> Pipeline:
    base = pipeline(
        [
            node(fingerprint, "raw_table", "fingerprint", name="fingerprint"),
            node(count_rows, "raw_table", "row_count_in_memory", name="count_rows"),
            node(identity, "row_count_in_memory", "row_count", name="copy_count"),
        ]
    )
    return pipeline(base, namespace="ns")
