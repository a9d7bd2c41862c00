"""kedro_observability.runners.DaskRunner on a real dask.distributed cluster: a scheduler and
two worker processes (not threads) on 127.0.0.1, started as a deployment starts them, the
runner finding the scheduler through DASK_SCHEDULER_ADDRESS.

- The same statsd series as SequentialRunner (every node and dataset event once, from the
  workers, whose pids are not the driver's), and the same MLflow content in the one MLflow
  run of the `kedro run`: metric keys (node durations and memory peaks measured in the
  workers, dataset sizes, the evaluation), params, the runner's tag, the validation reports,
  the logged model with its input example, which loads and predicts as the trained model.
- A node failing in a worker: the run is FAILED in MLflow, the failure is counted in statsd.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO, run_project
from local_servers import free_port
from statsd_capture import UDPCapture

NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]
FEATURES = yaml.safe_load((REPO / "project" / "conf" / "base" / "parameters_data_science.yml").read_text())["model_options"]["features"]


@dataclass
class Cluster:
    address: str
    worker_pids: set[int]


@pytest.fixture
def cluster(sample_project: Path, tmp_path: Path) -> Iterator[Cluster]:
    """A real scheduler and two worker processes (`python -m distributed.cli.dask_worker
    --no-nanny`, one thread each) on 127.0.0.1, as a deployment starts them: in the project's
    folder, where the catalog's relative paths point. Stopped by their PIDs."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    for variable in ("STATSD_HOST", "STATSD_PORT", "MLFLOW_TRACKING_URI"):
        environment.pop(variable, None)  # the workers get the run's settings from the driver
    commands = [
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        *[[sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"worker-{index}"] for index in (1, 2)],
    ]  # fmt: skip
    processes = []
    try:
        for index, command in enumerate(commands):
            log = open(tmp_path / f"dask-{index}.log", "wb")  # noqa: SIM115 - the process holds it
            processes.append(subprocess.Popen(command, cwd=sample_project, env=environment, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            pids = set(client.run(os.getpid).values())
        assert pids == {process.pid for process in processes[1:]}
        yield Cluster(address, pids)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def dask_runner(address: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The runner as `kedro run --runner kedro_observability.runners.DaskRunner` makes it: no
    argument, the scheduler's address from DASK_SCHEDULER_ADDRESS."""
    from kedro_observability.runners import DaskRunner

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    return DaskRunner()


def series(capture: UDPCapture) -> Counter:
    """(name, tags) of every statsd line, counted: what the exporter makes series of."""
    return Counter((line.name, tuple(sorted(line.tags.items()))) for line in capture.lines())


def only_run(project: Path, experiment: str) -> Any:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def content(client: MlflowClient, run: Any) -> dict[str, Any]:
    (output,) = run.outputs.model_outputs
    info = mlflow.models.get_model_info(f"models:/{output.model_id}")
    return {
        "status": run.info.status,
        "metrics": sorted(run.data.metrics),
        "params": run.data.params,
        "artifacts": sorted(each.path for each in client.list_artifacts(run.info.run_id)),
        "inputs": sorted(each.dataset.name for each in run.inputs.dataset_inputs),
        "signature": info.signature.inputs.input_names(),
        "example": info.saved_input_example_info is not None,
        "fingerprints": sorted(key for key in run.data.tags if key.startswith("kedro.fingerprint.")),
    }


def use_experiment(project: Path, name: str) -> None:
    (project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": {"experiment_name": name}}))


def test_the_dask_runner_gives_what_the_sequential_runner_gives(sample_project: Path, capture: UDPCapture, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # Through the environment, which monkeypatch puts back: mlflow.set_tracking_uri would also
    # export MLFLOW_TRACKING_URI for every later test of this process.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{sample_project / 'mlflow.db'}")
    use_experiment(sample_project, "sequential")
    run_project(sample_project)
    sequential = series(capture)
    client, run = only_run(sample_project, "sequential")
    expected = content(client, run)
    capture.clear()

    use_experiment(sample_project, "dask")
    run_project(sample_project, runner=dask_runner(cluster.address, monkeypatch))

    on_dask = series(capture)
    assert on_dask == sequential
    assert Counter(tags for (name, tags) in on_dask if name == "kedro.node.runs") == Counter(
        (("node", node), ("pipeline", "__default__"), ("project", "spaceflights"), ("status", "success")) for node in NODES
    )
    client, run = only_run(sample_project, "dask")
    assert run.data.tags["kedro.runner"] == "DaskRunner"
    assert content(client, run) == expected
    for node in NODES:
        assert run.data.metrics[f"node_duration_seconds.{node}"] > 0
        assert run.data.metrics[f"memory_peak_bytes.{node}"] > 0
    # The model the workers trained, logged from the driver's one MLflow run, loads and predicts.
    (output,) = run.outputs.model_outputs
    model = mlflow.sklearn.load_model(f"models:/{output.model_id}")
    rows = pd.read_parquet(sample_project / "data" / "03_primary" / "model_input_table.parquet")[FEATURES].astype(float).head(10)
    trained = pd.read_pickle(max((sample_project / "data" / "06_models" / "regressor.pickle").glob("*/regressor.pickle")))
    assert list(model.predict(rows)) == pytest.approx(list(trained.predict(rows)))
    # The nodes ran in the two workers, not in this process.
    from distributed import Client

    with Client(cluster.address) as dask:
        assert set(dask.run(os.getpid).values()) == cluster.worker_pids


def test_a_node_failing_on_a_worker_fails_the_run_and_is_counted(sample_project: Path, capture: UDPCapture, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    use_experiment(sample_project, "dask-failing")

    with pytest.raises(KeyError):
        run_project(
            sample_project,
            runner=dask_runner(cluster.address, monkeypatch),
            runtime_params={"model_options": {"features": ["no_such_column"], "test_size": 0.2, "random_state": 3}},
        )

    lines = capture.lines()
    failed = [line for line in lines if line.name == "kedro.node.runs" and line.tags["status"] == "failure"]
    assert [line.tags["node"] for line in failed] == ["split_data"]
    assert [line.tags["status"] for line in lines if line.name == "kedro.pipeline.runs"] == ["failure"]
    _, run = only_run(sample_project, "dask-failing")
    assert run.info.status == "FAILED"
    assert run.data.tags["kedro.runner"] == "DaskRunner"
    assert "no_such_column" in run.data.tags.get("kedro.error", "") + run.data.tags.get("mlflow.note.content", "") + str(run.data.tags)
