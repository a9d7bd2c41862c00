"""One MLflow trace per kedro run, and the run's timeline artifacts, with a real MLflow server.

Under each runner, the sample project's run has exactly one trace, linked to the run, whose
spans are the run, every node and every load and save (parameters aside, as in the metrics)
with their node as parent; each node span lasts what the same run sent statsd as
kedro.node.duration (real UDP). The timeline PNG and HTML are artifacts of the run.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import RUNNERS, make_runner, run_project
from mlflow_server import MlflowServer, mlflow_server  # noqa: F401 - the fixture
from test_mlflow_tracking import MODEL_OPTIONS, NODES, Tracked, configure_mlflow, experiment_of
from tiny_project import make_tiny_project, subprocess_environment

from kedro_observability.tracking.trace import BATCH_ABOVE_SPANS


def _pipeline(project: Path):
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    return pipelines["__default__"]


def _expected_io(project: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(dataset, node) of every load and every save of the default pipeline, parameters aside."""
    loads, saves = set(), set()
    for node in _pipeline(project).nodes:
        loads |= {(name, node.name) for name in node.inputs if not name.startswith("params:") and name != "parameters"}
        saves |= {(name, node.name) for name in node.outputs}
    return loads, saves


def _trace_of(tracked: Tracked):
    client: MlflowClient = tracked.client
    run = tracked.only_run()
    experiment_id = run.info.experiment_id
    traces = client.search_traces(locations=[experiment_id])
    assert len(traces) == 1, [trace.info.trace_id for trace in traces]
    (trace,) = traces
    assert trace.info.request_metadata["mlflow.sourceRun"] == run.info.run_id
    assert run.data.tags["kedro.trace_id"] == trace.info.trace_id
    return run, client.get_trace(trace.info.trace_id)


def _node_durations_sent(capture) -> dict[str, float]:
    return {line.tags["node"]: line.value for line in capture.lines() if line.name == "kedro.node.duration"}


@pytest.fixture
def on_server(sample_project: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Tracked:  # noqa: F811
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    experiment = experiment_of(request)
    configure_mlflow(sample_project, experiment_name=experiment)
    return Tracked(sample_project, experiment, mlflow_server)


@pytest.mark.parametrize("runner", RUNNERS)
def test_one_trace_per_run_with_every_node_load_and_save(on_server: Tracked, capture, runner: str, tmp_path: Path) -> None:
    run_project(on_server.project, runner=make_runner(runner))

    run, trace = _trace_of(on_server)
    spans = trace.data.spans
    (root,) = [span for span in spans if span.parent_id is None]
    assert root.attributes["kedro.runner"] == runner
    assert root.attributes["mlflow.run_id"] == run.info.run_id
    assert root.attributes["kedro.run_id"] == run.data.tags["kedro.run_id"]
    assert root.attributes["kedro.status"] == "FINISHED"
    assert root.status.status_code == "OK"

    nodes = {span.name: span for span in spans if span.attributes.get("kedro.kind") == "node"}
    assert sorted(nodes) == sorted(NODES)
    assert all(span.parent_id == root.span_id for span in nodes.values())
    by_id = {span.span_id: span for span in spans}
    loads, saves = _expected_io(on_server.project)
    seen = {"load": set(), "save": set()}
    for span in spans:
        kind = span.attributes.get("kedro.kind")
        if kind in ("load", "save"):
            parent = by_id[span.parent_id]
            assert parent.name == span.attributes["kedro.node"]
            seen[kind].add((span.attributes["kedro.dataset"], parent.name))
    assert seen["load"] == loads
    assert seen["save"] == saves
    assert len(spans) == 1 + len(NODES) + len(loads) + len(saves)
    assert all(root.start_time_ns <= span.start_time_ns and span.end_time_ns <= root.end_time_ns for span in spans)
    # Rows of the frames the nodes saved, where known.
    (table,) = [span for span in spans if span.name == "save model_input_table"]
    assert table.attributes["kedro.dataset.rows"] > 0

    # The node spans last exactly what the same run sent statsd (milliseconds on the wire).
    sent = _node_durations_sent(capture)
    assert sorted(sent) == sorted(NODES)
    for name, span in nodes.items():
        assert (span.end_time_ns - span.start_time_ns) / 1e6 == pytest.approx(sent[name], abs=1e-3), name
    # Where each node ran: ParallelRunner's worker processes, ThreadRunner's pool threads.
    processes = {span.attributes["kedro.process"] for span in nodes.values()}
    threads = {span.attributes["kedro.thread"] for span in nodes.values()}
    if runner == "ParallelRunner":
        assert os.getpid() not in processes
    else:
        assert processes == {os.getpid()}
        assert (threads == {"MainThread"}) == (runner == "SequentialRunner")

    artifacts = {each.path for each in on_server.client.list_artifacts(run.info.run_id)}
    assert {"timeline.png", "timeline.html"} <= artifacts
    png = Path(on_server.client.download_artifacts(run.info.run_id, "timeline.png", str(tmp_path)))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 100
    from PIL import Image

    Image.open(png).verify()
    page = Path(on_server.client.download_artifacts(run.info.run_id, "timeline.html", str(tmp_path))).read_text()
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for name in NODES:
        assert name in page


def test_a_failed_run_has_its_trace_with_the_failing_node_in_error(on_server: Tracked, capture) -> None:
    with pytest.raises(KeyError):
        run_project(on_server.project, runtime_params={"model_options": {**MODEL_OPTIONS, "features": ["no_such_column"]}})

    run, trace = _trace_of(on_server)
    assert run.info.status == "FAILED"
    spans = trace.data.spans
    (root,) = [span for span in spans if span.parent_id is None]
    assert root.status.status_code == "ERROR"
    assert root.attributes["error.type"] == "KeyError"
    nodes = {span.name: span for span in spans if span.attributes.get("kedro.kind") == "node"}
    assert nodes["split_data"].status.status_code == "ERROR"
    assert nodes["split_data"].attributes["error.type"] == "KeyError"
    assert "no_such_column" in nodes["split_data"].attributes["error.message"]
    assert "train_model" not in nodes
    assert all(span.status.status_code == "OK" for name, span in nodes.items() if name != "split_data")
    sent = _node_durations_sent(capture)
    assert (nodes["split_data"].end_time_ns - nodes["split_data"].start_time_ns) / 1e6 == pytest.approx(sent["split_data"], abs=1e-3)


def test_log_trace_false_logs_no_trace_and_no_timeline(on_server: Tracked) -> None:
    configure_mlflow(on_server.project, experiment_name=on_server.experiment, log_trace=False)

    run_project(on_server.project)

    run = on_server.only_run()
    assert run.info.status == "FINISHED"
    assert on_server.client.search_traces(locations=[run.info.experiment_id]) == []
    assert "kedro.trace_id" not in run.data.tags
    assert not {"timeline.png", "timeline.html"} & {each.path for each in on_server.client.list_artifacts(run.info.run_id)}


def test_an_otlp_endpoint_without_the_otlp_exporter_still_leaves_the_trace_in_mlflow(on_server: Tracked, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow alone would send the trace to that collector instead of the store; without
    # opentelemetry-exporter-otlp installed (as here), it would send it nowhere.
    from mlflow_server import closed_port_uri

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port_uri())
    run_project(on_server.project)

    _, trace = _trace_of(on_server)
    assert sorted(span.name for span in trace.data.spans if span.attributes.get("kedro.kind") == "node") == sorted(NODES)


LONG_CHAIN_NODES = 80
LONG_CHAIN_REGISTRY = f"""
    from kedro.pipeline import Pipeline, node


    def step(x: int) -> int:
        return x + 1


    def register_pipelines() -> dict[str, Pipeline]:
        names = ["params:x"] + [f"d{{i}}" for i in range({LONG_CHAIN_NODES})]
        return {{"__default__": Pipeline([node(step, names[i], f"d{{i}}", name=f"n{{i}}") for i in range({LONG_CHAIN_NODES})])}}
"""


def test_a_long_pipeline_has_its_whole_trace(tmp_path: Path) -> None:
    """Above BATCH_ABOVE_SPANS (200) spans the helper has MLflow write the trace in one batch
    (one span per transaction costs 18 s for 500 nodes): a real `kedro run` of an 80-node
    chain, 240 spans, still gets every node under the run and every load and save under its node."""
    project = make_tiny_project(
        tmp_path / "chain", "chain", LONG_CHAIN_REGISTRY,
        "statsd: {enabled: false}\nmemory: {enabled: false}\nvalidation: {enabled: false}\nmlflow: {enabled: true, tracking_uri: null}\n",
        "x: 0\n",
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "kedro", "run"], cwd=project, env=subprocess_environment(project), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_id,) = re.findall(r"MLflow run ([0-9a-f]{32}) logged at", done.stderr + done.stdout)
    client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').as_posix()}")
    run = client.get_run(run_id)
    trace = client.get_trace(run.data.tags["kedro.trace_id"])
    spans = trace.data.spans
    assert len(spans) == 1 + LONG_CHAIN_NODES + (LONG_CHAIN_NODES - 1) + LONG_CHAIN_NODES
    assert len(spans) > BATCH_ABOVE_SPANS  # the batch path, not the span-by-span one
    (root,) = [span for span in spans if span.parent_id is None]
    assert root.attributes["kedro.status"] == "FINISHED" and root.attributes["mlflow.run_id"] == run_id
    nodes = {span.name: span for span in spans if span.attributes.get("kedro.kind") == "node"}
    assert sorted(nodes) == sorted(f"n{i}" for i in range(LONG_CHAIN_NODES))
    assert all(span.parent_id == root.span_id for span in nodes.values())
    io = [span for span in spans if span.attributes.get("kedro.kind") in {"load", "save"}]
    assert all(span.parent_id == nodes[span.attributes["kedro.node"]].span_id for span in io)
    assert {span.name for span in io if span.attributes["kedro.kind"] == "save"} == {f"save d{i}" for i in range(LONG_CHAIN_NODES)}
