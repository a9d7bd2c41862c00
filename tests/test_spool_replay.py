"""What a run could not send to MLflow is spooled in the project and replayed later.

A real ``mlflow server`` is killed (SIGKILL) while a real ``kedro run`` of the sample project
runs, and restarted on the same address and store; ``kedro observability replay`` must then
leave that run FINISHED with what a run that never lost its server holds, and a second replay
must change nothing. A run whose server was down before its first node
(``on_unavailable: warn``) is created by the replay with its original start time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SAMPLE_PROJECT, SAMPLE_SHUTTLES, copy_project
from local_servers import free_port, stop_process_group
from mlflow_server import MlflowServer, TcpRelay
from tiny_project import subprocess_environment

KEDRO = str(Path(sys.executable).parent / "kedro")
SPOOL = Path("data") / "observability-spool"


class RestartableServer:
    """An ``mlflow server`` that can be killed and started again on its port and store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.server: MlflowServer | None = None

    def start(self) -> None:
        self.server = MlflowServer(self.workdir, port=self.port)

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed server: no request is finished."""
        assert self.server is not None
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=30)
        self.server = None

    def stop(self) -> None:
        if self.server is not None:
            stop_process_group(self.server.process, timeout=15)
            self.server = None


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    restartable = RestartableServer(tmp_path_factory.mktemp("mlflow-restartable"))
    try:
        yield restartable
    finally:
        restartable.stop()


@pytest.fixture
def server(restartable: RestartableServer) -> RestartableServer:
    """The module's server, running at the start of each test (a test may leave it killed)."""
    if restartable.server is None:
        restartable.start()
    return restartable


@pytest.fixture(scope="module")
def expected(restartable: RestartableServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a run of the sample project holds when its server never goes away."""
    if restartable.server is None:
        restartable.start()
    project = copy_project(SAMPLE_PROJECT, tmp_path_factory.mktemp("never-lost") / "spaceflights")
    (project / "conf" / "local" / "parameters_data_generation.yml").write_text(f"data_generation:\n  seed: 42\n  n_shuttles: {SAMPLE_SHUTTLES}\n")
    use_experiment(project, "never-lost")
    code, output = finished(kedro(project, restartable.uri, "run"))
    assert code == 0, output[-4000:]
    (reference,) = runs_of(restartable.uri, "never-lost")
    return content(restartable.uri, reference.info.run_id)


def kedro(project: Path, uri: str, *arguments: str) -> subprocess.Popen[str]:
    environment = subprocess_environment(project, MLFLOW_TRACKING_URI=uri)
    return subprocess.Popen([KEDRO, *arguments], cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def replay(project: Path) -> subprocess.CompletedProcess[str]:
    """``kedro observability replay`` in ``project``, as a user runs it."""
    return subprocess.run([KEDRO, "observability", "replay"], cwd=project, env=subprocess_environment(project), capture_output=True, text=True, timeout=300, check=False)


def use_experiment(project: Path, name: str, **mlflow: Any) -> None:
    (project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": {"experiment_name": name, **mlflow}}))


def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> list[Any]:
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found is not None else []


def content(uri: str, run_id: str) -> dict[str, Any]:
    """What a user sees of a run in MLflow, without what differs from run to run by nature."""
    client = client_for(uri)
    run = client.get_run(run_id)
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    model_files = {each.path for each in client.list_logged_model_artifacts(model.model_id)}
    traces = client.search_traces(locations=[run.info.experiment_id], filter_string=f"metadata.mlflow.sourceRun = '{run_id}'")
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metric keys": sorted(run.data.metrics),
        "metric steps": sorted({len(client.get_metric_history(run_id, key)) for key in run.data.metrics}),
        "tag keys": sorted(key for key in run.data.tags if key != "kedro.trace_id") + ["kedro.trace_id" in run.data.tags],
        "artifacts": sorted(each.path for each in client.list_artifacts(run_id)),
        "inputs": sorted(each.dataset.name for each in run.inputs.dataset_inputs),
        "model": (model.name, {"MLmodel", "input_example.json", "serving_input_example.json"} <= model_files),
        "traces": len(traces),
    }


def wait_for_running_run(uri: str, experiment: str, process: subprocess.Popen[str], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before its MLflow run was seen"
        runs = [run for run in runs_of(uri, experiment) if run.info.status == "RUNNING"]
        if runs:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"no RUNNING run in experiment {experiment} within {timeout} s")


def test_a_run_whose_server_was_killed_mid_run_is_completed_by_the_replay(sample_project: Path, server: RestartableServer, expected: dict[str, Any]) -> None:
    metrics_file = sample_project / "data" / "08_reporting" / "metrics.json"

    use_experiment(sample_project, "killed")
    process = kedro(sample_project, server.uri, "run")
    opened = wait_for_running_run(server.uri, "killed", process)
    server.kill()
    code, output = finished(process)
    run_ended = time.time()

    # The pipeline's outputs are written, and the warning says where the rest went and what to do.
    assert code == 0, output[-4000:]
    assert metrics_file.exists()
    assert "is incomplete" in output and "Kept for a replay in" in output, output[-4000:]
    assert "kedro observability replay" in output
    (entry,) = [path.parent for path in (sample_project / SPOOL).glob("*/delivery.pkl")]
    assert str(entry) in output
    assert (sample_project / SPOOL / ".gitignore").read_text().splitlines()[-1] == "*"

    # While the server is down, a replay keeps the spool and says so.
    outcome = replay(sample_project)
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert "does not answer" in outcome.stdout and entry.exists()

    server.start()
    (before,) = runs_of(server.uri, "killed")
    assert before.info.status == "RUNNING" and not before.data.metrics  # the server lost the run mid-way
    outcome = replay(sample_project)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert f"MLflow run {opened.info.run_id}" in outcome.stdout and "completed" in outcome.stdout, outcome.stdout
    assert not entry.exists()

    replayed = content(server.uri, opened.info.run_id)
    assert replayed == expected
    run = client_for(server.uri).get_run(opened.info.run_id)
    # Its real end, not the replay's; the evaluation metrics as the run computed them.
    assert run.info.end_time / 1000 <= run_ended
    evaluation = json.loads(metrics_file.read_text())
    assert {key: run.data.metrics[key] for key in evaluation} == pytest.approx(evaluation)

    again = replay(sample_project)
    assert again.returncode == 0 and "Nothing to replay" in again.stdout, again.stdout + again.stderr
    assert content(server.uri, opened.info.run_id) == expected
    assert len(runs_of(server.uri, "killed")) == 1


def test_a_run_whose_server_went_away_as_it_created_the_run_is_completed_by_the_replay(sample_project: Path, server: RestartableServer, expected: dict[str, Any]) -> None:
    # The server creates the run, then is gone at the next request: the run's parameters.
    assert server.server is not None
    relay = TcpRelay(server.port, close_on=b"/runs/log-batch")
    use_experiment(sample_project, "gone-at-opening")
    code, output = finished(kedro(sample_project, relay.uri, "run"))
    assert code == 0, output[-4000:]
    assert "stopped answering as it created run" in output and "Kept for a replay in" in output, output[-4000:]
    (before,) = runs_of(server.uri, "gone-at-opening")
    assert before.info.status == "RUNNING" and not before.data.params

    # The server comes back where the run had it.
    server.kill()
    back = MlflowServer(server.workdir, port=relay.port)
    try:
        outcome = replay(sample_project)
        assert outcome.returncode == 0, outcome.stdout + outcome.stderr
        assert f"MLflow run {before.info.run_id}" in outcome.stdout and "completed" in outcome.stdout, outcome.stdout
        assert content(back.uri, before.info.run_id) == expected
        assert len(runs_of(back.uri, "gone-at-opening")) == 1
    finally:
        back.stop()


def test_under_warn_a_server_that_went_away_before_it_created_the_run_leaves_it_to_the_replay(sample_project: Path, server: RestartableServer) -> None:
    assert server.server is not None
    relay = TcpRelay(server.port, close_on=b"/runs/create")
    use_experiment(sample_project, "gone-before-the-run", on_unavailable="warn")
    code, output = finished(kedro(sample_project, relay.uri, "run", "--pipeline", "data_generation"))
    assert code == 0, output[-4000:]
    assert "the run itself: MLflow has never seen it" in output and "Kept for a replay in" in output, output[-4000:]
    assert runs_of(server.uri, "gone-before-the-run") == []

    server.kill()
    back = MlflowServer(server.workdir, port=relay.port)
    try:
        outcome = replay(sample_project)
        assert outcome.returncode == 0, outcome.stdout + outcome.stderr
        (run,) = runs_of(back.uri, "gone-before-the-run")
        assert run.info.status == "FINISHED" and run.data.params and run.data.metrics
    finally:
        back.stop()


def test_a_run_that_started_with_the_server_down_is_created_by_the_replay(sample_project: Path, server: RestartableServer, expected: dict[str, Any]) -> None:
    server.kill()
    use_experiment(sample_project, "down-at-start", on_unavailable="warn")
    started = time.time()
    code, output = finished(kedro(sample_project, server.uri, "run"))
    assert code == 0, output[-4000:]
    assert "mlflow.on_unavailable: warn" in output and "Kept for a replay in" in output, output[-4000:]
    assert "the run itself: MLflow has never seen it" in output

    server.start()
    assert runs_of(server.uri, "down-at-start") == []
    outcome = replay(sample_project)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    (run,) = runs_of(server.uri, "down-at-start")
    assert content(server.uri, run.info.run_id) == expected
    # Created with the run's own start, before the replay.
    assert started <= run.info.start_time / 1000 < run.info.end_time / 1000 < time.time() - 0.5


def test_a_replay_cut_off_after_it_created_the_run_is_finished_by_the_next_without_a_second_run(sample_project: Path, server: RestartableServer, expected: dict[str, Any]) -> None:
    # The run's server: an address where nothing listens yet.
    address = free_port()
    use_experiment(sample_project, "replay-cut-off", on_unavailable="warn")
    code, output = finished(kedro(sample_project, f"http://127.0.0.1:{address}", "run"))
    assert code == 0 and "the run itself: MLflow has never seen it" in output, output[-4000:]

    # The server answers there now, creates the run, and goes away at the run's parameters.
    relay = TcpRelay(server.port, close_on=b"/runs/log-batch", port=address)
    first = replay(sample_project)
    assert first.returncode == 1 and "went away during the replay" in first.stdout, first.stdout + first.stderr
    (created,) = runs_of(server.uri, "replay-cut-off")
    relay.close()

    relay = TcpRelay(server.port, port=address)
    try:
        second = replay(sample_project)
        assert second.returncode == 0 and "completed" in second.stdout, second.stdout + second.stderr
    finally:
        relay.close()
    (run,) = runs_of(server.uri, "replay-cut-off")
    assert run.info.run_id == created.info.run_id
    assert content(server.uri, run.info.run_id) == expected


def test_a_replay_finds_the_run_an_earlier_replay_created_but_could_not_record(tmp_path: Path) -> None:
    """The replay process killed between MLflow's create_run and the spool's write-back: the
    next replay finds that run (its Kedro run id and start time) instead of creating another."""
    from kedro_observability.settings import MlflowSettings
    from kedro_observability.tracking.delivery import Delivery, Opening, send

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    opening = Opening("found-again", "__default__ 2026-12-03T10.00.00.000Z", {"kedro.run_id": "2026-12-03T10.00.00.000Z"}, {"x": "1"}, {}, 1796300000000)
    experiment_id = client.create_experiment("found-again")
    earlier = client.create_run(experiment_id, start_time=opening.start_time_ms, tags=opening.tags, run_name=opening.run_name)
    # A run of the same Kedro run id that another spool entry started at another time is not it.
    client.create_run(experiment_id, start_time=opening.start_time_ms + 1, tags=opening.tags, run_name=opening.run_name)

    delivery = Delivery(uri, MlflowSettings(), None, None, "FINISHED", opening.start_time_ms + 5000, metrics={"m": (2.0, opening.start_time_ms + 5000)}, opening=opening)
    failed, lost = send(delivery, client)
    assert (failed, lost) == ([], None)
    assert delivery.run_id == earlier.info.run_id
    run = client.get_run(earlier.info.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"x": "1"} and run.data.metrics == {"m": 2.0}
    assert len(client.search_runs([experiment_id])) == 2


def test_with_replay_at_start_the_next_run_sends_the_spool(sample_project: Path, server: RestartableServer) -> None:
    server.kill()
    use_experiment(sample_project, "replayed-by-next-run", on_unavailable="warn", replay_at_start=True)
    code, output = finished(kedro(sample_project, server.uri, "run", "--pipeline", "data_generation"))
    assert code == 0 and "Kept for a replay in" in output, output[-4000:]

    server.start()
    code, output = finished(kedro(sample_project, server.uri, "run", "--pipeline", "data_generation"))
    assert code == 0, output[-4000:]
    assert "completed" in output, output[-4000:]
    runs = runs_of(server.uri, "replayed-by-next-run")
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]
    assert not list((sample_project / SPOOL).glob("*/delivery.pkl"))
