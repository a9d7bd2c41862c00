"""A project whose nodes pass Spark DataFrames (as Kedro's spaceflights-pyspark starter does),
run with the real pyspark and its JVM through a real `kedro run`.

A Spark DataFrame is a query plan: sizing it would run the query again, and the old fallback
(``sys.getsizeof``, 56 bytes) made the size-drop alert fire on every run. It gets no size and
no rows; a pandas frame beside it gets both. A suite on a dataset that holds a Spark frame
only warns under ``policy: warn``, and the run completes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statsd_capture import UDPCapture
from tiny_project import make_tiny_project, subprocess_environment, write

PACKAGE = "spark_trial"
REGISTRY = """
        import pandas as pd
        from kedro.pipeline import Pipeline, node
        from pyspark.sql import SparkSession


        def make_frames() -> tuple[pd.DataFrame, object]:
            frame = pd.DataFrame({"id": range(1000), "price": [float(i) for i in range(1000)]})
            spark = SparkSession.builder.master("local[1]").appName("spark-trial").getOrCreate()
            return frame, spark.createDataFrame(frame)


        def count_rows(spark_frame: object) -> int:
            return spark_frame.count()


        def register_pipelines() -> dict[str, Pipeline]:
            pipeline = Pipeline([
                node(make_frames, None, ["pandas_frame", "spark_frame"], name="make_frames"),
                node(count_rows, "spark_frame", "row_count", name="count_rows"),
            ])
            return {"__default__": pipeline}
"""


@pytest.fixture
def spark_project(tmp_path: Path) -> Path:
    pytest.importorskip("pyspark")  # in CI, conftest turns this skip into a failure
    project = make_tiny_project(tmp_path / "spark-trial", PACKAGE, REGISTRY, "mlflow: {enabled: false}\n")
    write(project / "conf" / "base" / "catalog.yml", """
        spark_frame:
          type: MemoryDataset
          copy_mode: assign
    """)
    write(project / "conf" / "base" / "expectations" / "spark_frame.yml", """
        spark_frame:
          policy: warn
          expectations:
            - expect_column_values_to_not_be_null: {column: id}
    """)
    return project


def test_spark_frames_get_no_size_and_a_suite_on_one_only_warns(spark_project: Path, tmp_path: Path) -> None:
    capture = UDPCapture()
    environment = subprocess_environment(
        spark_project, STATSD_HOST="127.0.0.1", STATSD_PORT=str(capture.port), PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1"
    )
    kedro = Path(sys.executable).with_name("kedro")
    try:
        result = subprocess.run(
            [str(kedro), "run"], cwd=spark_project, env=environment, capture_output=True, text=True, timeout=300
        )
        lines = capture.lines()
    finally:
        capture.close()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    def values(name: str, dataset: str) -> list[float]:
        return [line.value for line in lines if line.name == name and line.tags.get("dataset") == dataset]

    assert values("kedro.dataset.size", "pandas_frame") and values("kedro.dataset.size", "pandas_frame")[0] > 16_000
    assert values("kedro.dataset.rows", "pandas_frame") == [1000.0]
    assert values("kedro.dataset.size", "spark_frame") == []
    assert values("kedro.dataset.rows", "spark_frame") == []
    # Its saves and loads are still timed, and the nodes counted.
    assert values("kedro.dataset.save_duration", "spark_frame") and values("kedro.dataset.load_duration", "spark_frame")
    assert {line.tags["node"] for line in lines if line.name == "kedro.node.runs"} == {"make_frames", "count_rows"}
    assert [(line.tags["status"], line.value) for line in lines if line.name == "kedro.pipeline.runs"] == [("success", 1.0)]

    warning = "The suite of 'spark_frame' (conf/base/expectations/spark_frame.yml) validates pandas DataFrames"
    assert warning in output, output[-4000:]
    assert "policy is warn: the run goes on, 'spark_frame' unvalidated" in output
