"""``mlflow.warm_helper_seconds``: the MLflow helper of one ``kedro run`` serves the next runs of
the same project, and the runs are the same as with a helper of their own. Real `kedro run`
processes, a real SQLite store, the helpers' real processes (stopped by pid)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow import MlflowClient

from tiny_project import make_tiny_project, subprocess_environment

PACKAGE = "warm_trial"
KEDRO = Path(sys.executable).with_name("kedro")
STARTED = re.compile(r"started the MLflow helper \(pid (\d+)\); it stays (\d+) s after this run")
SERVED = re.compile(r"the MLflow helper kept warm by an earlier run \(pid (\d+)\) serves this one")
LOGGED = re.compile(r"MLflow run ([0-9a-f]{32}) logged at")

REGISTRY = """
    import os
    import time
    from pathlib import Path

    import pandas as pd
    from kedro.pipeline import Pipeline, node
    from sklearn.linear_model import LinearRegression


    def make_table(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": [float(i) for i in range(rows)], "y": [2.0 * i + 1.0 for i in range(rows)]})


    def train(table: pd.DataFrame) -> LinearRegression:
        return LinearRegression().fit(table[["x"]], table["y"])


    def example(table: pd.DataFrame) -> pd.DataFrame:
        return table[["x"]]


    def evaluate(model: LinearRegression, table: pd.DataFrame) -> dict[str, float]:
        marker = os.environ.get("WARM_TRIAL_STOP_HERE")
        if marker:  # wait to be killed
            Path(marker).write_text(str(os.getpid()))
            time.sleep(300)
        return {"r2": float(model.score(table[["x"]], table["y"]))}


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([
            node(make_table, "params:rows", "table", name="make_table"),
            node(train, "table", "model", name="train"),
            node(example, "table", "example", name="example"),
            node(evaluate, ["model", "table"], "metrics", name="evaluate"),
        ])}
"""


def observability(warm_seconds: int) -> str:
    return f"""
        statsd: {{enabled: false}}
        memory: {{enabled: false}}
        validation: {{enabled: false}}
        mlflow:
          enabled: true
          model_dataset: model
          metrics_dataset: metrics
          model_input_example_dataset: example
          warm_helper_seconds: {warm_seconds}
    """


@pytest.fixture
def helpers_tmp() -> Iterator[Path]:
    """A temporary folder of the runs' own (short: it holds sockets), whose warm helpers are
    stopped by pid at the end."""
    folder = Path(tempfile.mkdtemp(prefix="kow-", dir="/tmp"))
    yield folder
    for pid in _lock_pids(folder):
        _stop(pid)
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _lock_pids(folder: Path) -> list[int]:
    return [int(text) for lock in folder.glob("kedro-observability-*/*.lock") if (text := lock.read_text().strip()).isdigit()]


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def make_project(folder: Path, warm_seconds: int = 60) -> Path:
    return make_tiny_project(folder, PACKAGE, REGISTRY, observability(warm_seconds), parameters="rows: 20\n")


def kedro(project: Path, tmp: Path, *arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """A `kedro` command as a user types it, its output read through pipes: it returns when the
    command does, whatever helper stays behind."""
    environment = subprocess_environment(project, TMPDIR=str(tmp), **variables)
    return subprocess.run([str(KEDRO), *arguments], cwd=project, env=environment, capture_output=True, text=True, timeout=240, check=False)


def run(project: Path, tmp: Path, **variables: str) -> tuple[str, str]:
    """A successful `kedro run`: its MLflow run id and its output."""
    result = kedro(project, tmp, "run", **variables)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    (run_id,) = LOGGED.findall(output)
    return run_id, output


def content(project: Path, run_id: str) -> dict[str, Any]:
    """What a user sees of a run in MLflow, without what differs from run to run by nature."""
    client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').as_posix()}")
    found = client.get_run(run_id)
    (output,) = found.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    files = {each.path for each in client.list_logged_model_artifacts(model.model_id)}
    return {
        "status": found.info.status,
        "params": found.data.params,
        "metrics": {key: round(value, 9) for key, value in found.data.metrics.items() if not key.startswith("node_duration")},
        "tag keys": sorted(found.data.tags),
        "artifacts": sorted(each.path for each in client.list_artifacts(run_id)),
        "model": (model.name, sorted(files)),
    }


def _gone(pid: int, within_seconds: float) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_the_next_run_is_served_by_the_warm_helper_and_logs_the_same(tmp_path: Path, helpers_tmp: Path) -> None:
    project = make_project(tmp_path / "warm")

    first_id, first_output = run(project, helpers_tmp)
    (pid, seconds), = STARTED.findall(first_output)
    assert seconds == "60"
    helper = psutil.Process(int(pid))
    assert helper.is_running() and helper.ppid() != os.getpid()  # outlived its `kedro run`
    assert _lock_pids(helpers_tmp) == [int(pid)]

    second_id, second_output = run(project, helpers_tmp)
    assert SERVED.findall(second_output) == [pid], second_output[-3000:]
    assert not STARTED.findall(second_output)
    assert second_id != first_id
    assert content(project, second_id) == content(project, first_id)
    assert content(project, second_id)["status"] == "FINISHED"
    assert {"MLmodel", "input_example.json", "serving_input_example.json"} <= set(content(project, second_id)["model"][1])

    # A helper killed between runs: the next run starts its own, and it logs the same.
    _stop(int(pid))
    assert _gone(int(pid), 10)
    third_id, third_output = run(project, helpers_tmp)
    (new_pid, _), = STARTED.findall(third_output)
    assert new_pid != pid
    assert content(project, third_id) == content(project, first_id)


def test_a_changed_source_file_gets_a_new_helper_and_stop_helpers_ends_them(tmp_path: Path, helpers_tmp: Path) -> None:
    project = make_project(tmp_path / "warm")
    _, first_output = run(project, helpers_tmp)
    (old_pid, _), = STARTED.findall(first_output)

    # A node edited since: the old helper has the old module imported, so it is not used.
    registry = project / "src" / PACKAGE / "pipeline_registry.py"
    registry.write_text(registry.read_text() + "\n# edited\n")
    second_id, second_output = run(project, helpers_tmp)
    (new_pid, _), = STARTED.findall(second_output)
    assert new_pid != old_pid and not SERVED.findall(second_output)
    assert content(project, second_id)["status"] == "FINISHED"
    assert sorted(_lock_pids(helpers_tmp)) == sorted([int(old_pid), int(new_pid)])

    doctor = kedro(project, helpers_tmp, "observability", "doctor")
    assert doctor.returncode == 0, doctor.stderr[-3000:]
    assert "MLflow helper: kept warm 60 s after each run" in doctor.stdout and "2 of yours running" in doctor.stdout, doctor.stdout

    stopped = kedro(project, helpers_tmp, "observability", "stop-helpers")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "Stopped 2 warm MLflow helper(s)" in stopped.stdout, stopped.stdout
    assert _gone(int(old_pid), 10) and _gone(int(new_pid), 10)
    assert not list(helpers_tmp.glob("kedro-observability-*/*")), "a stopped helper left its socket or lock file"


def test_a_warm_helper_ends_after_its_idle_time(tmp_path: Path, helpers_tmp: Path) -> None:
    project = make_project(tmp_path / "warm", warm_seconds=3)
    _, output = run(project, helpers_tmp)
    (pid, _), = STARTED.findall(output)
    assert psutil.pid_exists(int(pid))
    assert _gone(int(pid), 30)
    assert not list(helpers_tmp.glob("kedro-observability-*/*.sock"))


def test_a_run_killed_while_a_warm_helper_serves_it_ends_killed_and_the_helper_serves_the_next(tmp_path: Path, helpers_tmp: Path) -> None:
    project = make_project(tmp_path / "warm")
    _, first_output = run(project, helpers_tmp)
    (pid, _), = STARTED.findall(first_output)

    marker = tmp_path / "stopped-here"
    environment = subprocess_environment(project, TMPDIR=str(helpers_tmp), WARM_TRIAL_STOP_HERE=str(marker))
    killed = subprocess.Popen([str(KEDRO), "run"], cwd=project, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), "the run never reached its last node"
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)

    client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').as_posix()}")
    experiments = [each.experiment_id for each in client.search_experiments()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"])
        if runs[0].info.status != "RUNNING":
            break
        time.sleep(0.2)
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags.get("kedro.stopped_by") == "the end of the Kedro process"

    next_id, next_output = run(project, helpers_tmp)
    assert SERVED.findall(next_output) == [pid], next_output[-3000:]
    assert content(project, next_id)["status"] == "FINISHED"


def test_runs_at_once_each_get_a_helper_and_their_run(tmp_path: Path, helpers_tmp: Path) -> None:
    project = make_project(tmp_path / "warm")
    _, first_output = run(project, helpers_tmp)
    (pid, _), = STARTED.findall(first_output)

    environment = subprocess_environment(project, TMPDIR=str(helpers_tmp))
    processes = [subprocess.Popen([str(KEDRO), "run"], cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], "\n---\n".join(output[-3000:] for output in outputs)
    served = [SERVED.findall(output) for output in outputs]
    started = [STARTED.findall(output) for output in outputs]
    # One helper serves one run at a time: the others started their own.
    assert sum(len(each) for each in served) <= 1, served
    assert all(len(a) + len(b) == 1 for a, b in zip(served, started, strict=True)), (served, started)
    ids = [LOGGED.findall(output)[0] for output in outputs]
    assert len(set(ids)) == 3
    assert {content(project, run_id)["status"] for run_id in ids} == {"FINISHED"}
