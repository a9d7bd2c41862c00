"""End to end: pipeline runs under every runner -> UDP -> statsd_exporter stand-in -> real Prometheus.

Every metric of the contract must be queryable with exactly the contract's labels, and the
counts must equal the node and pipeline runs.
"""

from __future__ import annotations

import time

import pytest

from conftest import SAMPLE_SHUTTLES, declared_metrics

DEFAULT_NODES = {"fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"}
PROMETHEUS_LABELS = {"job", "instance"}


CONTRACT = declared_metrics()


def values(result: list[dict]) -> dict[tuple, float]:
    return {tuple(sorted(item["metric"].items())): float(item["value"][1]) for item in result}


@pytest.mark.parametrize("metric", sorted(CONTRACT))
def test_every_contract_metric_reaches_prometheus_with_exactly_its_labels(populated_stack, metric: str) -> None:
    kind, labels = CONTRACT[metric]
    series = f"{metric}_count" if kind == "histogram" else metric

    result = populated_stack.prometheus.wait_for(series, lambda found: len(found) > 0)

    for item in result:
        assert set(item["metric"]) - PROMETHEUS_LABELS - {"__name__"} == labels, item["metric"]
        assert item["metric"]["project"] == "spaceflights"
    if kind == "histogram":
        buckets = populated_stack.prometheus.query(f"{metric}_bucket")
        assert {item["metric"]["le"] for item in buckets} >= {"+Inf"}


def test_node_counts_equal_the_node_runs_of_every_runner(populated_stack) -> None:
    runs = len(populated_stack.runners)
    prometheus = populated_stack.prometheus

    successes = prometheus.wait_for(
        'kedro_node_runs_total{pipeline="__default__",status="success"}',
        lambda found: len(found) == len(DEFAULT_NODES) and all(float(item["value"][1]) == runs for item in found),
    )
    assert {item["metric"]["node"] for item in successes} == DEFAULT_NODES
    durations = prometheus.query('kedro_node_duration_seconds_count{pipeline="__default__"}')
    assert {item["metric"]["node"]: float(item["value"][1]) for item in durations} == {node: runs for node in DEFAULT_NODES}
    failures = prometheus.wait_for('kedro_node_runs_total{status="failure"}', lambda found: len(found) > 0)
    assert [(item["metric"]["node"], item["metric"]["pipeline"], float(item["value"][1])) for item in failures] == [
        ("split_data", populated_stack.failing_pipeline, 1.0)
    ]


def test_pipeline_runs_durations_and_freshness(populated_stack) -> None:
    prometheus = populated_stack.prometheus
    runs = len(populated_stack.runners)

    by_status = prometheus.wait_for("kedro_pipeline_runs_total", lambda found: len(found) == 2)
    assert {(item["metric"]["pipeline"], item["metric"]["status"]): float(item["value"][1]) for item in by_status} == {
        ("__default__", "success"): runs,
        (populated_stack.failing_pipeline, "failure"): 1.0,
    }
    durations = prometheus.query("kedro_pipeline_duration_seconds_count")
    assert {item["metric"]["pipeline"]: float(item["value"][1]) for item in durations} == {"__default__": runs, populated_stack.failing_pipeline: 1.0}
    last_success = prometheus.query("kedro_pipeline_last_success_timestamp_seconds")
    assert [item["metric"]["pipeline"] for item in last_success] == ["__default__"]
    assert time.time() - 600 < float(last_success[0]["value"][1]) <= time.time()


def test_histograms_span_5_ms_to_1_hour(populated_stack) -> None:
    for metric in ("kedro_node_duration_seconds_bucket", "kedro_pipeline_duration_seconds_bucket"):
        # As numbers: Prometheus 3 normalises the exporter's le="3600" to "3600.0".
        bounds = {float(item["metric"]["le"]) for item in populated_stack.prometheus.query(metric)}
        assert {0.005, 3600.0, float("inf")} <= bounds, f"{metric}: buckets {sorted(bounds)}"


def test_dataset_metrics_describe_the_data_and_skip_parameters(populated_stack) -> None:
    prometheus = populated_stack.prometheus

    rows = values(prometheus.wait_for('kedro_dataset_rows{dataset="shuttles"}', lambda found: len(found) == 1))
    assert list(rows.values()) == [SAMPLE_SHUTTLES]
    datasets = {item["metric"]["dataset"] for item in prometheus.query("kedro_dataset_size_bytes")}
    assert {"companies", "shuttles", "reviews", "model_input_table", "regressor", "metrics"} <= datasets
    assert not any(name.startswith("params") or name == "parameters" for name in datasets)
    loads = prometheus.query('kedro_dataset_load_duration_seconds_count{dataset="model_input_table"}')
    # Loaded once per run by split_data, including the failing data_science run.
    assert float(loads[0]["value"][1]) == len(populated_stack.runners) + 1


def test_the_exporter_saw_no_unmapped_event(populated_stack) -> None:
    assert "statsd_exporter_events_unmapped_total 0" in populated_stack.standin.render()


def test_alert_rules_load_and_the_failed_run_fires(populated_stack) -> None:
    """The repo's rules run in the real Prometheus: the failed data_science run must alert."""
    firing = populated_stack.prometheus.wait_for(
        'ALERTS{alertname="KedroPipelineRunFailed"}', lambda found: len(found) > 0, timeout=45
    )
    assert {item["metric"]["pipeline"] for item in firing} == {populated_stack.failing_pipeline}
