"""Shared fixtures: copies of the sample and demo projects, and running them through KedroSession."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

REPO = Path(__file__).resolve().parent.parent
SAMPLE_PROJECT = REPO / "project"
DEMO_PROJECT = Path(__file__).resolve().parent / "demo_project"
CONTRACT = REPO / "CONTRACT.md"
# Recordings of the real statsd_exporter, the stand-in's reference (see its README.md).
EXPORTER_RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "statsd-exporter"


def declared_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """Prometheus name -> (type, label names), from the plugin's metric declarations.

    The declarations are the one source of the metric names: the contract's table, the
    README's and the exporter mapping are generated from them (test_metrics_contract.py).
    """
    from kedro_observability.metrics.declarations import METRICS

    return {metric.prometheus_name: (metric.prometheus_type, frozenset(metric.labels)) for metric in METRICS}

# The demo project is not installed: import it from its source folder. Spawned
# ParallelRunner workers inherit sys.path from this process.
sys.path.insert(0, str(DEMO_PROJECT / "src"))

# Small enough for a fast suite, large enough for a meaningful model.
SAMPLE_SHUTTLES = 800


def copy_project(source: Path, destination: Path) -> Path:
    """Copy a Kedro project's pyproject.toml and conf/ (not its data) to ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(source / "conf", destination / "conf")
    (destination / "data").mkdir()
    # bootstrap_project wants a source folder; the packages themselves are imported from the repo.
    (destination / "src").mkdir()
    return destination


def run_project(
    project_path: Path,
    runner: Any = None,
    pipeline_names: list[str] | None = None,
    runtime_params: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> dict[str, Any]:
    """Run a Kedro project in this process, as ``kedro run`` would from its folder."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, runtime_params=runtime_params) as session:
        return session.run(runner=runner, pipeline_names=pipeline_names, **run_kwargs)


def make_runner(name: str) -> Any:
    from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

    return {"SequentialRunner": SequentialRunner, "ThreadRunner": ThreadRunner, "ParallelRunner": ParallelRunner}[name]()


RUNNERS = ["SequentialRunner", "ThreadRunner", "ParallelRunner"]


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite store. Creating one runs MLflow's migrations (1-2 s),
    a cost a project pays on its first run only: paid once here, not by every project copy."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sample_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_store: Path) -> Path:
    """A copy of the sample project in a temporary folder, with a small data size."""
    path = copy_project(SAMPLE_PROJECT, tmp_path / "spaceflights")
    shutil.copy(empty_mlflow_store, path / "mlflow.db")
    (path / "conf" / "local" / "parameters_data_generation.yml").write_text(
        f"data_generation:\n  seed: 42\n  n_shuttles: {SAMPLE_SHUTTLES}\n"
    )
    monkeypatch.chdir(path)
    for variable in ("STATSD_HOST", "STATSD_PORT", "MLFLOW_TRACKING_URI", "KEDRO_MP_CONTEXT"):
        monkeypatch.delenv(variable, raising=False)
    return path


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch):
    """A UDP socket that receives the hooks' statsd packets (STATSD_HOST/PORT point at it)."""
    from statsd_capture import UDPCapture

    udp = UDPCapture()
    monkeypatch.setenv("STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("STATSD_PORT", str(udp.port))
    yield udp
    udp.close()


@pytest.fixture
def demo_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo project (namespaced pipeline, versioned input) in a temporary folder."""
    path = copy_project(DEMO_PROJECT, tmp_path / "obs_demo")
    monkeypatch.chdir(path)
    monkeypatch.delenv("KEDRO_MP_CONTEXT", raising=False)
    return path


@dataclass
class PopulatedStack:
    """A real Prometheus scraping the statsd_exporter stand-in after real pipeline runs, and
    a second one receiving all it scraped and evaluated through prometheus.yml's remote_write
    example (tests/test_remote_write.py)."""

    prometheus: Any
    standin: Any
    runners: list[str]
    failing_pipeline: str
    receiver: Any = None
    host: str = ""


@pytest.fixture(scope="session")
def populated_stack(tmp_path_factory: pytest.TempPathFactory):
    """Run the sample pipeline under every runner (and one failing run), metrics flowing
    through UDP into the stand-in, scraped by a real Prometheus. Shared by the tests that
    query metrics, dashboards and alerts, since the runs take a while."""
    from prometheus_server import PrometheusServer, documented_remote_write
    from statsd_exporter_standin import StandIn

    standin = StandIn(REPO / "statsd-exporter" / "mapping.yml").start()
    receiver = PrometheusServer(tmp_path_factory.mktemp("prometheus-receiver"), None, receiver=True)
    host = "kedro-test-host"
    workdir = tmp_path_factory.mktemp("prometheus")
    prometheus = PrometheusServer(
        workdir, f"127.0.0.1:{standin.http_port}", remote_write=documented_remote_write(receiver.remote_write_url, host)
    )
    # As in the real stack, Prometheus already scrapes the exporter when the runs start;
    # the alert rules treat series present at Prometheus' first scrape as old news.
    prometheus.wait_for('up{job="statsd-exporter"} == 1', lambda found: len(found) == 1)
    project = copy_project(SAMPLE_PROJECT, tmp_path_factory.mktemp("populated") / "spaceflights")
    (project / "conf" / "local" / "parameters_data_generation.yml").write_text(
        f"data_generation:\n  seed: 42\n  n_shuttles: {SAMPLE_SHUTTLES}\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("STATSD_HOST", "127.0.0.1")
        patch.setenv("STATSD_PORT", str(standin.udp_port))
        patch.delenv("KEDRO_MP_CONTEXT", raising=False)
        for runner in RUNNERS:
            run_project(project, runner=make_runner(runner))
        with pytest.raises(KeyError):
            run_project(
                project,
                pipeline_names=["data_science"],
                runtime_params={"model_options": {"features": ["no_such_column"], "test_size": 0.2, "random_state": 3}},
            )
    try:
        yield PopulatedStack(prometheus, standin, list(RUNNERS), "data_science", receiver, host)
    finally:
        prometheus.stop()
        receiver.stop()
        standin.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI a missing component is a failure, not a skip: only Docker tests may skip."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and item.get_closest_marker("docker") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped but Docker tests: {report.longrepr}"
