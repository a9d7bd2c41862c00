"""The plugin's statsd metrics, observed on a real UDP socket: what it sends, under every runner
and fault. The sample project runs through a KedroSession as ``kedro run`` does; nodes with
hostile names run under a real runner driven by ``ObservabilityHooks(settings=...)``."""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner

from conftest import REPO, RUNNERS, make_runner, run_project
from kedro_observability import ObservabilityHooks, ObservabilitySettings, sanitize_name
from kedro_observability.settings import MemorySettings, MlflowSettings, StatsdSettings, ValidationSettings
from statsd_capture import UDPCapture, parse_line
from statsd_exporter_standin import StandIn

NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]


def expected_dataset_events(project_pipeline) -> tuple[Counter, Counter]:
    loads: Counter = Counter()
    saves: Counter = Counter()
    for each in project_pipeline.nodes:
        loads.update(name for name in each.inputs if not name.startswith("params:") and name != "parameters")
        saves.update(each.outputs)
    return loads, saves


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_node_and_dataset_event_arrives_once_under_each_runner(sample_project: Path, capture: UDPCapture, runner: str) -> None:
    from spaceflights.pipeline_registry import register_pipelines

    run_project(sample_project, runner=make_runner(runner))

    lines = capture.lines()
    node_runs = Counter(line.tags["node"] for line in lines if line.name == "kedro.node.runs")
    assert node_runs == Counter(NODES)
    assert all(line.tags["status"] == "success" for line in lines if line.name == "kedro.node.runs")
    assert Counter(line.tags["node"] for line in lines if line.name == "kedro.node.duration") == Counter(NODES)
    loads, saves = expected_dataset_events(register_pipelines()["__default__"])
    assert Counter(line.tags["dataset"] for line in lines if line.name == "kedro.dataset.load_duration") == loads
    assert Counter(line.tags["dataset"] for line in lines if line.name == "kedro.dataset.save_duration") == saves
    pipeline_runs = [line for line in lines if line.name == "kedro.pipeline.runs"]
    assert [(line.tags, line.value) for line in pipeline_runs] == [({"project": "spaceflights", "pipeline": "__default__", "status": "success"}, 1.0)]


def test_each_event_is_one_packet_with_the_contract_labels(sample_project: Path, capture: UDPCapture) -> None:
    run_project(sample_project, pipeline_names=["data_processing"])

    packets = capture.packets()
    for packet in packets:
        names = {parse_line(line).name for line in packet.split("\n")}
        # One event per packet: a node's lines, a dataset operation's lines, or the run's.
        assert len({name.split(".")[1] for name in names}) == 1, packet
    node_packets = [p for p in packets if "kedro.node.runs" in p]
    assert len(node_packets) == 4
    for packet in node_packets:
        # A node's event is measured once and sent in one packet: its memory peak is in it
        # (0.1 sent it in a packet of its own, from the separate MemoryHook).
        duration, runs, peak = (parse_line(line) for line in packet.split("\n"))
        assert duration.name == "kedro.node.duration" and duration.type == "ms" and duration.value >= 0
        assert set(duration.tags) == {"project", "pipeline", "node"}
        assert duration.tags["pipeline"] == "data_processing"
        assert runs.name == "kedro.node.runs" and runs.type == "c" and runs.value == 1
        assert runs.tags == {**duration.tags, "status": "success"}
        assert peak.name == "kedro.node.memory_peak" and peak.type == "g" and peak.value > 0
        assert peak.tags == duration.tags
    for line in capture.lines():
        if line.name.startswith("kedro.dataset."):
            assert set(line.tags) == {"project", "dataset"}
    finished = [parse_line(line) for p in packets if "kedro.pipeline" in p for line in p.split("\n")]
    assert {line.name for line in finished} == {"kedro.pipeline.runs", "kedro.pipeline.duration", "kedro.pipeline.last_success_timestamp"}


def test_dataset_sizes_and_rows_describe_the_data(sample_project: Path, capture: UDPCapture) -> None:
    run_project(sample_project, pipeline_names=["data_processing"])

    gauges = {(line.name, line.tags["dataset"]): line.value for line in capture.lines() if line.type == "g" and "dataset" in line.tags}
    shuttles = pd.read_csv(sample_project / "data" / "01_raw" / "shuttles.csv")
    assert gauges[("kedro.dataset.rows", "shuttles")] == len(shuttles)
    assert gauges[("kedro.dataset.size", "shuttles")] == pytest.approx(shuttles.memory_usage(deep=True).sum(), rel=0.05)
    model_input = pd.read_parquet(sample_project / "data" / "03_primary" / "model_input_table.parquet")
    assert gauges[("kedro.dataset.rows", "model_input_table")] == len(model_input)
    assert ("kedro.dataset.size", "raw_fingerprints") in gauges
    assert not any(name.startswith("params") or name == "parameters" for _, name in gauges)


def test_a_failing_node_and_its_pipeline_are_counted_as_failures_and_leave_no_timer(sample_project: Path, capture: UDPCapture) -> None:
    from kedro_observability.plugin import hooks as plugin  # the object the entry point registers

    with pytest.raises(KeyError):
        run_project(sample_project, runtime_params={"model_options": {"features": ["no_such_column"], "test_size": 0.2, "random_state": 3}})

    lines = capture.lines()
    failed = [line for line in lines if line.name == "kedro.node.runs" and line.tags["status"] == "failure"]
    assert [line.tags["node"] for line in failed] == ["split_data"]
    assert any(line.name == "kedro.node.duration" and line.tags["node"] == "split_data" for line in lines)
    runs = [line for line in lines if line.name == "kedro.pipeline.runs"]
    assert [line.tags["status"] for line in runs] == ["failure"]
    assert not any(line.name == "kedro.pipeline.last_success_timestamp" for line in lines)
    # The failure's time, which lets the failure alert end at the next success.
    (last_failure,) = [line for line in lines if line.name == "kedro.pipeline.last_failure_timestamp"]
    assert last_failure.type == "g" and last_failure.tags == {"project": "spaceflights", "pipeline": "__default__"}
    assert abs(last_failure.value - time.time()) < 60
    run = plugin._lifecycle.current
    assert run is not None and run.ended and run.info.pipeline == "__default__"  # it ran this run
    assert plugin._timers() == {}


# Any string can name a dataset; Kedro allows letters (unicode ones too), digits, "_", "."
# and "-" in node names.
NASTY_DATASET_NAMES = [
    "with space",
    "colon:in:name",
    "comma,and=equals",
    "brackets(x)[y]<z>",
    "at@sign#hash|pipe",
    "unicode-café-データ",
    "ns.inner.dotted_name",
    "new\nline",
    "x" * 300,
]
AWKWARD_NODE_NAMES = ["unicode_café_データ", "ns.inner.dotted_name", "dash-and.dot", "Ω", "y" * 300]


def test_nasty_node_and_dataset_names_reach_the_exporter_intact(capture: UDPCapture) -> None:
    """Run real nodes with hostile names and feed what they send to the statsd_exporter stand-in."""
    nodes = [
        node(lambda value: value, inputs=f"in {name}", outputs=f"out {name}", name=f"node_{index}_{AWKWARD_NODE_NAMES[index % 5]}")
        for index, name in enumerate(NASTY_DATASET_NAMES)
    ]
    catalog = DataCatalog({f"in {name}": MemoryDataset([1, 2, 3]) for name in NASTY_DATASET_NAMES})
    hook_manager = _create_hook_manager()
    # statsd's node and dataset metrics alone, as 0.1's NodeMetricsHook and DatasetMetricsHook.
    settings = ObservabilitySettings(
        statsd=StatsdSettings(host="127.0.0.1", port=capture.port),
        memory=MemorySettings(enabled=False),
        mlflow=MlflowSettings(enabled=False),
        validation=ValidationSettings(enabled=False),
    )
    hook_manager.register(ObservabilityHooks(settings=settings))

    SequentialRunner().run(pipeline(nodes), catalog, hook_manager)

    standin = StandIn(REPO / "statsd-exporter" / "mapping.yml")
    packets = capture.packets()
    for packet in packets:
        standin.feed(packet)
    metrics = standin.render()
    assert "statsd_exporter_events_unmapped_total 0" in metrics
    assert "statsd_exporter_tag_errors_total 0" in metrics
    for each in nodes:
        assert f'node="{sanitize_name(each.name)}"' in metrics
    for name in NASTY_DATASET_NAMES:
        assert f'dataset="{sanitize_name("in " + name)}"' in metrics
        assert f'dataset="{sanitize_name("out " + name)}"' in metrics
    assert max(len(packet) for packet in packets) < 8192


def closed_udp_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize(
    ("host", "port", "problem"),
    [("does-not-exist.invalid", 9125, "cannot be resolved"), ("127.0.0.1", None, "nothing is listening")],
    ids=["unresolvable-host", "closed-port"],
)
def test_unreachable_statsd_gives_one_warning_and_the_run_succeeds(
    sample_project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, host: str, port: int | None, problem: str
) -> None:
    monkeypatch.setenv("STATSD_HOST", host)
    monkeypatch.setenv("STATSD_PORT", str(port or closed_udp_port()))

    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_project(sample_project)

    warnings = [record for record in caplog.records if record.name.startswith("kedro_observability")]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert problem in warnings[0].getMessage()
    assert "STATSD_HOST" in warnings[0].getMessage()
    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()


def test_statsd_disabled_sends_nothing(sample_project: Path, capture: UDPCapture) -> None:
    (sample_project / "conf" / "local" / "observability.yml").write_text("statsd:\n  enabled: false\n")

    run_project(sample_project)

    assert capture.packets() == []
