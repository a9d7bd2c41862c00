from kedro.pipeline import Pipeline, node, pipeline

from obs_demo.nodes import fingerprint, first_rows


def create_pipeline(**kwargs) -> Pipeline:
    """Reads the fingerprints pipeline's input; its outputs: audit.fingerprint (a file) and
    audit.sample (a MemoryDataset)."""
    return pipeline(
        [
            node(fingerprint, "raw_table", "fingerprint", name="fingerprint"),
            node(first_rows, "raw_table", "sample", name="sample"),
        ],
        namespace="audit",
        inputs={"raw_table": "ns.raw_table"},
    )
