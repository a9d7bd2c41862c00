"""Every run ends, and every failure is counted: signals, failures before the first node, and
hooks in any order, with a real MLflow server, a real UDP socket and a real Prometheus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from conftest import REPO, RUNNERS, make_runner, run_project
from mlflow_server import MlflowServer, closed_port_uri, mlflow_server  # noqa: F401 - the fixture
from statsd_capture import UDPCapture
from tiny_project import make_tiny_project

SLEEPY = "sleepy_project"
SLEEPY_REGISTRY = """
        import os
        import time
        from pathlib import Path

        from kedro.pipeline import Pipeline, node


        def first() -> int:
            return 1


        def wait_to_be_stopped(value: int) -> int:
            Path(os.environ["SLEEPY_STARTED"]).write_text(str(os.getpid()))
            for _ in range(1200):
                time.sleep(0.05)
            return value


        def register_pipelines() -> dict[str, Pipeline]:
            pipeline = Pipeline([
                node(first, None, "a", name="first"),
                node(wait_to_be_stopped, "a", "b", name="wait_to_be_stopped"),
            ])
            return {"__default__": pipeline}
"""
SLEEPY_OBSERVABILITY = """
        memory: {interval_seconds: 0.01}
        validation: {enabled: false}
"""


@pytest.fixture
def sleepy_project(tmp_path: Path) -> Path:
    """A project whose second node says it started, then waits to be stopped."""
    return make_tiny_project(tmp_path / "sleepy", SLEEPY, SLEEPY_REGISTRY, SLEEPY_OBSERVABILITY)


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("kedro-observability-"))


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_ends_the_run_as_killed_counts_a_failure_and_leaves_no_folder(
    sleepy_project: Path, mlflow_server: MlflowServer, tmp_path: Path, runner: str, signal_name: str  # noqa: F811
) -> None:
    capture = UDPCapture()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    started = tmp_path / "started"
    environment = {
        **os.environ,
        "PYTHONPATH": str(sleepy_project / "src"),
        "TMPDIR": str(temporary),
        "SLEEPY_STARTED": str(started),
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(capture.port),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "KEDRO_MP_CONTEXT": "fork",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    kedro = Path(sys.executable).with_name("kedro")
    # To a file, not a pipe: ParallelRunner's forked workers outlive a SIGTERM of the main
    # process (as without the plugin) and would hold a pipe open.
    log_path = tmp_path / "kedro-run.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(kedro), "run", "--runner", runner], cwd=sleepy_project, env=environment,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not started.exists():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the node never started"
            time.sleep(0.05)
        assert _leftovers(temporary), "the run keeps its record in a temporary folder while it runs"
        signum = getattr(signal, signal_name)
        if signal_name == "SIGINT":
            os.killpg(process.pid, signum)  # Ctrl-C reaches the whole foreground group
        else:
            os.kill(process.pid, signum)  # docker compose stop signals the main process only
        client = MlflowClient(mlflow_server.uri)
        if (runner, signal_name) == ("ThreadRunner", "SIGINT"):
            # After Ctrl-C, Kedro's ThreadRunner waits for its running nodes (its thread pool's
            # shutdown), with or without the plugin: the process lives until the node ends.
            # The run is ended meanwhile, and that is what a user sees in MLflow.
            _wait_for_a_killed_run(client, runner, signal_name)
            deadline = time.monotonic() + 30
            while f"stopped by {signal_name}" not in log_path.read_text():  # the ending's last step
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.1)
        else:
            process.wait(timeout=60)
    finally:
        log.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # no worker outlives the test
        except ProcessLookupError:
            pass
    text = log_path.read_text()
    lines = capture.lines()
    capture.close()

    if signal_name == "SIGTERM":
        assert process.returncode == -signal.SIGTERM, text[-3000:]  # as without the plugin
    elif runner != "ThreadRunner":
        assert process.returncode != 0, text[-3000:]
    run = _wait_for_a_killed_run(client, runner, signal_name)
    assert run.info.end_time is not None
    assert "node_duration_seconds.first" in run.data.metrics
    failures = [line for line in lines if line.name == "kedro.pipeline.runs"]
    assert [(line.tags["status"], line.value) for line in failures] == [("failure", 1.0)], text[-3000:]
    assert _leftovers(temporary) == []
    assert f"stopped by {signal_name}" in text


def _wait_for_a_killed_run(client: MlflowClient, runner: str, signal_name: str, timeout: float = 30) -> Any:
    """The run of ``runner`` stopped by ``signal_name``, once it is KILLED."""
    deadline = time.monotonic() + timeout
    query = f"tags.`kedro.runner` = '{runner}' and tags.`kedro.stopped_by` = '{signal_name}'"
    while True:
        experiment = client.get_experiment_by_name(SLEEPY)
        runs = client.search_runs([experiment.experiment_id], query) if experiment else []
        if len(runs) == 1 and runs[0].info.status == "KILLED":
            return runs[0]
        assert len(runs) <= 1, runs
        assert time.monotonic() < deadline, f"no KILLED run stopped by {signal_name}: {runs}"
        time.sleep(0.2)


@pytest.fixture
def counted(sample_project: Path, capture: UDPCapture) -> tuple[Path, UDPCapture]:
    return sample_project, capture


def _pipeline_runs(capture: UDPCapture) -> list[tuple[str, str]]:
    return [(line.tags["pipeline"], line.tags["status"]) for line in capture.lines() if line.name == "kedro.pipeline.runs"]


def test_an_unreachable_mlflow_server_fails_before_the_first_node_and_counts_one_failure(counted: tuple[Path, UDPCapture], monkeypatch: pytest.MonkeyPatch) -> None:
    from kedro_observability import MlflowTrackingError

    project, capture = counted
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
    with pytest.raises(MlflowTrackingError):
        run_project(project, pipeline_names=["data_processing"])
    assert _pipeline_runs(capture) == [("data_processing", "failure")]
    assert not [line for line in capture.lines() if line.name.startswith("kedro.node.")]
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the run's environment is put back


class RefusesToStart:
    """A project hook that stops the run in before_pipeline_run, registered after the plugin."""

    from kedro.framework.hooks import hook_impl

    @hook_impl
    def before_pipeline_run(self) -> None:
        raise RuntimeError("the warehouse is closed today")


def test_another_hook_failing_before_the_first_node_ends_the_mlflow_run_failed_and_counts_it(counted: tuple[Path, UDPCapture], monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceflights import settings

    project, capture = counted
    monkeypatch.setattr(settings, "HOOKS", (*settings.HOOKS, RefusesToStart()))
    with pytest.raises(RuntimeError, match="warehouse"):
        run_project(project, pipeline_names=["data_science"])
    assert _pipeline_runs(capture) == [("data_science", "failure")]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("spaceflights").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["kedro.error"] == "RuntimeError: the warehouse is closed today"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_a_run_failing_before_its_first_node_fires_the_failed_alert(sample_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_server import PrometheusServer
    from statsd_exporter_standin import StandIn

    standin = StandIn(REPO / "statsd-exporter" / "mapping.yml").start()
    (tmp_path / "prometheus").mkdir()
    prometheus = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{standin.http_port}")
    try:
        prometheus.wait_for('up{job="statsd-exporter"} == 1', lambda found: len(found) == 1)
        monkeypatch.setenv("STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("STATSD_PORT", str(standin.udp_port))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
        with pytest.raises(Exception, match="not available"):
            run_project(sample_project, pipeline_names=["data_processing"])
        firing = prometheus.wait_for(
            'ALERTS{alertname="KedroPipelineRunFailed", alertstate="firing"}', lambda found: len(found) == 1, timeout=60
        )
    finally:
        prometheus.stop()
        standin.stop()
    assert firing[0]["metric"]["pipeline"] == "data_processing" and firing[0]["metric"]["project"] == "spaceflights"


class Recorder:
    """A project hook that records what it saw, to show the plugin's place among the hooks."""

    from kedro.framework.hooks import hook_impl

    def __init__(self) -> None:
        self.events: list[str] = []

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.events.append("before_pipeline_run")

    @hook_impl
    def after_pipeline_run(self) -> None:
        self.events.append("after_pipeline_run")


def _series(capture: UDPCapture) -> Counter:
    """Every statsd series of a run (name and labels), counted; values vary from run to run."""
    return Counter((line.name, tuple(sorted(line.tags.items()))) for line in capture.lines())


def _run_content(project: Path) -> dict[str, Any]:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("spaceflights")
    (run,) = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    models = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    tags = {key: value for key, value in run.data.tags.items() if key not in {"kedro.run_id", "mlflow.runName"}}
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metrics": sorted(run.data.metrics),
        "tags": sorted(tags),
        "artifacts": sorted(each.path for each in client.list_artifacts(run.info.run_id)),
        "models": [model.name for model in models],
        "inputs": sorted(each.dataset.name for each in run.inputs.dataset_inputs),
    }


@pytest.mark.parametrize("order", ["plugin first", "plugin last"])
def test_the_plugins_place_among_the_hooks_changes_nothing(sample_project: Path, capture: UDPCapture, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """The entry point registers the plugin after settings.HOOKS; registered by hand in
    HOOKS (with the entry point disabled), first or last, the run is the same."""
    from spaceflights import settings

    import kedro_observability

    run_project(sample_project)
    by_entry_point = (_series(capture), _run_content(sample_project))
    capture.clear()

    recorder = Recorder()
    plugin = kedro_observability.ObservabilityHooks()
    hooks = (plugin, *settings.HOOKS, recorder) if order == "plugin first" else (*settings.HOOKS, recorder, plugin)
    monkeypatch.setattr(settings, "HOOKS", hooks)
    monkeypatch.setattr(settings, "DISABLE_HOOKS_FOR_PLUGINS", ("kedro-observability",), raising=False)
    run_project(sample_project)
    assert recorder.events == ["before_pipeline_run", "after_pipeline_run"]
    assert (_series(capture), _run_content(sample_project)) == by_entry_point


SERIES_OF = {
    "statsd": ("kedro.pipeline.", "kedro.node.duration", "kedro.node.runs", "kedro.dataset.size", "kedro.dataset.rows", "kedro.dataset.load_duration", "kedro.dataset.save_duration"),
    "memory": ("kedro.node.memory_peak", "kedro.dataset.load_memory"),
    "validation": ("kedro.validation.",),
}
# Each feature alone: the others switched off (memory and validation publish through statsd).
FEATURES = {
    "statsd": {"memory", "validation", "mlflow"},
    "memory": {"validation", "mlflow"},
    "validation": {"memory", "mlflow"},
    "mlflow": {"statsd", "memory", "validation"},
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_each_feature_alone_gives_what_it_gives_with_the_others(sample_project: Path, capture: UDPCapture, feature: str) -> None:
    run_project(sample_project)
    everything = _series(capture)
    content = _run_content(sample_project)
    capture.clear()

    off = "\n".join(f"{name}:\n  enabled: false" for name in FEATURES[feature])
    (sample_project / "conf" / "local" / "observability.yml").write_text(off + "\n")
    run_project(sample_project)
    alone = _series(capture)

    def of_feature(series: Counter, name: str) -> Counter:
        return Counter({key: count for key, count in series.items() if key[0].startswith(SERIES_OF[name])})

    if feature == "mlflow":
        assert alone == Counter()  # statsd is off
    else:
        assert of_feature(alone, feature) == of_feature(everything, feature) != Counter()
        for other in FEATURES[feature] & {"memory", "validation"}:
            assert of_feature(alone, other) == Counter(), other
    if feature == "mlflow":
        alone_content = _run_content(sample_project)
        # Without memory and validation, exactly their parts are missing from the run.
        assert alone_content["params"] == content["params"] and alone_content["models"] == content["models"]
        assert set(alone_content["metrics"]) == {key for key in content["metrics"] if not key.startswith("memory_peak_bytes.")}
        assert alone_content["artifacts"] == [name for name in content["artifacts"] if not name.startswith("validation-")]


@pytest.mark.parametrize("runner", ["ThreadRunner", "ParallelRunner"])
def test_each_runner_gives_the_same_series_and_run_content(sample_project: Path, capture: UDPCapture, runner: str) -> None:
    run_project(sample_project)
    sequential_series, sequential_content = _series(capture), _run_content(sample_project)
    capture.clear()
    run_project(sample_project, runner=make_runner(runner))
    series = _series(capture)
    assert series == sequential_series, {"only here": series - sequential_series, "only sequential": sequential_series - series}
    assert _run_content(sample_project) == sequential_content
