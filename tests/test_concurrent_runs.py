"""Several `kedro run` started at once on a project with no MLflow store yet: every one succeeds
and gets its run (the store is created and migrated under a lock); a store that cannot be
opened is explained by what is wrong with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import run_project
from tiny_project import DOUBLE_REGISTRY, make_tiny_project, subprocess_environment
from kedro_observability.tracking.run import MlflowTrackingError

PACKAGE = "tiny_concurrent"
ROUNDS = 3
RUNS_PER_ROUND = 4


# MLflow on with the default store: mlflow.db in the project.
OBSERVABILITY = """
    statsd: {enabled: false}
    memory: {enabled: false}
    validation: {enabled: false}
    mlflow: {enabled: true, tracking_uri: null}
"""


def make_project(folder: Path) -> Path:
    return make_tiny_project(folder, PACKAGE, DOUBLE_REGISTRY, OBSERVABILITY, parameters="x: 3\n")


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "tiny")


def test_four_first_runs_at_once_all_succeed_and_each_gets_its_run(tmp_path: Path) -> None:
    kedro = Path(sys.executable).with_name("kedro")
    for round_number in range(1, ROUNDS + 1):
        # A fresh project each round: no mlflow.db yet.
        project = make_project(tmp_path / f"round-{round_number}")
        processes = [
            subprocess.Popen([str(kedro), "run"], cwd=project, env=subprocess_environment(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(RUNS_PER_ROUND)
        ]
        outputs = [process.communicate(timeout=120)[0] for process in processes]
        failures = [output[-3000:] for process, output in zip(processes, outputs) if process.returncode != 0]
        assert not failures, f"round {round_number}: {len(failures)} of {RUNS_PER_ROUND} runs failed:\n" + "\n---\n".join(failures)
        logged = [re.findall(r"MLflow run ([0-9a-f]{32}) logged at", output) for output in outputs]
        assert all(len(ids) == 1 for ids in logged), f"round {round_number}: {logged}"
        # A plain client opens the store afterwards, and finds one finished run per process.
        client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').as_posix()}")
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        runs = client.search_runs(experiments)
        assert sorted(run.info.run_id for run in runs) == sorted(ids[0] for ids in logged)
        assert {run.info.status for run in runs} == {"FINISHED"}
        # kedro.run_id is Kedro's session id, a millisecond timestamp: processes started in the
        # same millisecond share it (Kedro's, seen in CI), so runs are told apart by MLflow's id.
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z", run.data.tags["kedro.run_id"]) for run in runs)
        assert len(runs) == RUNS_PER_ROUND
        assert {run.data.params["x"] for run in runs} == {"3"}


def test_a_store_that_is_not_a_database_is_not_blamed_on_the_folder(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.syspath_prepend(str(tiny_project / "src"))
    (tiny_project / "mlflow.db").write_bytes(b"this is not an SQLite file " * 100)

    with pytest.raises(MlflowTrackingError) as raised:
        run_project(tiny_project)

    message = str(raised.value)
    assert "mlflow.db" in message and "not a database" in message, message
    assert "writable" not in message, message
    assert "mlflow db upgrade" in message and "move" in message, message


def test_a_store_whose_folder_cannot_be_made_says_to_check_the_folder(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_project)
    monkeypatch.syspath_prepend(str(tiny_project / "src"))
    missing = tiny_project / "pyproject.toml" / "mlflow.db"  # a folder that cannot be created
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing.as_posix()}")

    with pytest.raises(MlflowTrackingError, match=r"Check that the folder of .*pyproject.toml.* exists and is writable"):
        run_project(tiny_project)
