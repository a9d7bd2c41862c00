"""The sample project runs end to end on generated data, the same way under every runner."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import SAMPLE_SHUTTLES, make_runner, run_project
from spaceflights.pipelines.data_generation.nodes import generate_raw_data

RAW = ("companies", "shuttles", "reviews")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_registered_pipelines_are_processing_science_and_both_as_default() -> None:
    from spaceflights.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    processing = {node.name for node in pipelines["data_processing"].nodes}
    science = {node.name for node in pipelines["data_science"].nodes}

    assert {"fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table"} == processing
    assert {"split_data", "train_model", "evaluate_model"} == science
    assert {node.name for node in pipelines["__default__"].nodes} == processing | science
    assert "generate_raw_data" not in {node.name for node in pipelines["__default__"].nodes}


def test_first_run_generates_the_raw_data_and_trains_a_useful_model(sample_project: Path) -> None:
    run_project(sample_project)

    shuttles = pd.read_csv(sample_project / "data" / "01_raw" / "shuttles.csv")
    assert len(shuttles) == SAMPLE_SHUTTLES
    metrics = read_json(sample_project / "data" / "08_reporting" / "metrics.json")
    assert set(metrics) == {"r2", "mae", "max_error"}
    assert metrics["r2"] > 0.8
    assert 0 < metrics["mae"] <= metrics["max_error"]
    model_input = pd.read_parquet(sample_project / "data" / "03_primary" / "model_input_table.parquet")
    assert 0.9 * SAMPLE_SHUTTLES < len(model_input) < SAMPLE_SHUTTLES
    assert not model_input.isna().any().any()


def test_fingerprints_are_the_real_sha256_and_size_of_each_raw_file(sample_project: Path) -> None:
    run_project(sample_project)

    fingerprints = read_json(sample_project / "data" / "08_reporting" / "raw_fingerprints.json")
    assert set(fingerprints) == set(RAW)
    for name in RAW:
        content = (sample_project / "data" / "01_raw" / f"{name}.csv").read_bytes()
        assert fingerprints[name]["sha256"] == hashlib.sha256(content).hexdigest()
        assert fingerprints[name]["size_bytes"] == len(content)


@pytest.mark.parametrize("runner", ["ThreadRunner", "ParallelRunner"])
def test_every_runner_gives_the_same_model_metrics_and_fingerprints(sample_project: Path, runner: str) -> None:
    run_project(sample_project, runner=make_runner("SequentialRunner"))
    reporting = sample_project / "data" / "08_reporting"
    expected_metrics = read_json(reporting / "metrics.json")
    expected_fingerprints = read_json(reporting / "raw_fingerprints.json")
    (reporting / "metrics.json").unlink()
    (reporting / "raw_fingerprints.json").unlink()

    run_project(sample_project, runner=make_runner(runner))

    assert read_json(reporting / "metrics.json") == expected_metrics
    assert read_json(reporting / "raw_fingerprints.json") == expected_fingerprints


def test_generation_is_deterministic_and_sized_by_the_knob() -> None:
    first = generate_raw_data({"seed": 7, "n_shuttles": 300})
    again = generate_raw_data({"seed": 7, "n_shuttles": 300})
    other_seed = generate_raw_data({"seed": 8, "n_shuttles": 300})
    larger = generate_raw_data({"seed": 7, "n_shuttles": 3000})

    for table, same in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(table, same)
    assert not first[1].equals(other_seed[1])
    assert len(first[1]) == 300 and len(larger[1]) == 3000
    assert len(first[2]) == 300
    assert first[1]["company_id"].isin(first[0]["id"]).all()


def test_data_generation_pipeline_regenerates_at_the_requested_size(sample_project: Path) -> None:
    run_project(sample_project)

    run_project(
        sample_project,
        pipeline_names=["data_generation"],
        runtime_params={"data_generation": {"seed": 42, "n_shuttles": 120}},
    )

    assert len(pd.read_csv(sample_project / "data" / "01_raw" / "shuttles.csv")) == 120


def test_kedro_run_from_the_command_line_needs_no_service(sample_project: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"STATSD_HOST", "STATSD_PORT", "MLFLOW_TRACKING_URI"}}
    kedro = Path(sys.executable).with_name("kedro")

    result = subprocess.run([str(kedro), "run"], cwd=sample_project, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()
