"""What taking MLflow off the run's critical path must not break: the helper process logs the
model while later nodes run, yet a failure of that is reported as it was when the model was
logged at the end, a run stopped while the model uploads still ends KILLED, and the run's
content is the same under every runner. Real kedro runs, a real SQLite store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
import psutil
import pytest

from tiny_project import make_tiny_project, write
from mlflow import MlflowClient
from mlflow.models import infer_signature

from conftest import RUNNERS, make_runner, run_project

PACKAGE = "background_trial"
HELPER_MODULE = "kedro_observability.tracking.worker"



@pytest.fixture
def model_project(tmp_path: Path) -> Path:
    """Train a model whose predict (called by MLflow's signature inference) can be told to
    fail or to take its time, then a node that can be told to wait to be stopped."""
    project = tmp_path / "trial"
    write(project / "pyproject.toml", f"""
        [tool.kedro]
        package_name = "{PACKAGE}"
        project_name = "trial"
        kedro_init_version = "1.7.0"
        source_dir = "src"
    """)
    write(project / "src" / PACKAGE / "__init__.py", "")
    write(project / "src" / PACKAGE / "settings.py", "")
    write(project / "src" / PACKAGE / "model.py", """
        import os
        import threading
        import time
        from pathlib import Path

        from sklearn.linear_model import LinearRegression

        if os.environ.get("TRIAL_IMPORT_RECORD"):
            with open(os.environ["TRIAL_IMPORT_RECORD"], "a") as record:
                record.write(f"{os.getpid()} {threading.current_thread().name}\\n")


        class TrialModel(LinearRegression):
            def predict(self, X):
                if os.environ.get("TRIAL_PREDICT_FAILS"):
                    raise RuntimeError("predict refused")
                marker = os.environ.get("TRIAL_PREDICT_STARTED")
                if marker:
                    Path(marker).write_text(str(os.getpid()))
                    time.sleep(float(os.environ.get("TRIAL_PREDICT_SECONDS", "0")))
                return super().predict(X)
    """)
    write(project / "src" / PACKAGE / "pipeline_registry.py", """
        import os
        import time
        from pathlib import Path

        import pandas as pd
        from kedro.pipeline import Pipeline, node

        from .model import TrialModel


        def make_table() -> pd.DataFrame:
            return pd.DataFrame({"x": [float(i) for i in range(40)], "z": [float(i % 7) for i in range(40)]})


        def train(table: pd.DataFrame) -> TrialModel:
            return TrialModel().fit(table, table["x"] * 2.0 + table["z"])


        def afterwards(model: TrialModel) -> dict:
            stop_file = os.environ.get("TRIAL_WAIT_TO_BE_STOPPED")
            if stop_file:
                Path(stop_file).write_text(str(os.getpid()))
                for _ in range(1200):
                    time.sleep(0.1)
            return {"score": 1.0}


        def register_pipelines() -> dict[str, Pipeline]:
            return {"__default__": Pipeline([
                node(make_table, None, "table", name="make_table"),
                node(train, "table", "model", name="train"),
                node(afterwards, "model", "metrics", name="afterwards"),
            ])}
    """)
    write(project / "conf" / "base" / "observability.yml", """
        statsd: {enabled: false}
        memory: {enabled: false}
        validation: {enabled: false}
        mlflow:
          model_dataset: model
          model_input_example_dataset: table
          metrics_dataset: metrics
          pip_requirements: [scikit-learn]
          log_input_datasets: false
    """)
    write(project / "conf" / "base" / "catalog.yml", "{}\n")
    (project / "conf" / "local").mkdir()
    return project


def _environment(project: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    temporary = tmp_path / "tmp"
    temporary.mkdir(exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if key not in {"MLFLOW_TRACKING_URI", "STATSD_HOST", "STATSD_PORT"}}
    environment.update({
        "PYTHONPATH": str(project / "src"),
        "TMPDIR": str(temporary),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "250",
        **extra,
    })  # fmt: skip
    return environment


def _messages(result: subprocess.CompletedProcess[str]) -> str:
    """A run's output on one line, without the logger's locations that Rich puts where it wraps."""
    return re.sub(r" \S+\.py:\d+ ", " ", " ".join((result.stdout + result.stderr).split()))


def _late_model_folder(tmp_path: Path) -> Path:
    """A folder, on no path the helper knows, with a module of a model class."""
    late = tmp_path / "late"
    write(late / "late_model.py", """
        class LateModel:
            pass
    """)
    return late


def _only_run(project: Path) -> Any:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (experiment,) = [each for each in client.search_experiments() if each.name == PACKAGE]
    (run,) = client.search_runs([experiment.experiment_id])
    models = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    return run, models


def _helpers_of(temporary: Path) -> list[psutil.Process]:
    """MLflow helper processes started by the runs of this test (known by their TMPDIR)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if HELPER_MODULE in " ".join(process.info["cmdline"] or []) and process.environ().get("TMPDIR") == str(temporary):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_failure_of_the_model_logged_in_the_background_is_reported_as_before(model_project: Path, tmp_path: Path) -> None:
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "run"], cwd=model_project, env=_environment(model_project, tmp_path, TRIAL_PREDICT_FAILS="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = " ".join((result.stdout + result.stderr).split())
    # A model that cannot be logged never failed the run: one warning names it, the rest is logged.
    assert result.returncode == 0, output[-4000:]
    # Rich may wrap the line and put the logger's location in the middle of the message.
    assert re.search(r"is incomplete\. Not logged: the model \(RuntimeError: (\S+\.py:\d+ )?predict refused\)\.", output), output[-4000:]
    run, models = _only_run(model_project)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["score"] == 1.0
    assert "node_duration_seconds.afterwards" in run.data.metrics
    assert models == []


def test_the_helper_imports_the_models_classes_on_the_thread_that_logs_it(model_project: Path, tmp_path: Path) -> None:
    """Reading the model in the helper imports its module and scikit-learn. On the thread that
    drains the socket that raced the helper's own import of MLflow's flavours: scikit-learn
    half initialised (ImportError), the helper cut off, the run left KILLED (1 ThreadRunner
    run in 17 under load)."""
    record = tmp_path / "imports.txt"
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "run", "--runner", "ThreadRunner"], cwd=model_project, env=_environment(model_project, tmp_path, TRIAL_IMPORT_RECORD=str(record)),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "helper process exited" not in output, output[-4000:]
    threads = dict(line.split(" ", 1) for line in record.read_text().splitlines())
    # The run's process, and the helper, which unpickled the model.
    assert len(threads) == 2 and set(threads.values()) == {"MainThread"}, threads
    run, _ = _only_run(model_project)
    assert run.info.status == "FINISHED"
    assert "node_duration_seconds.afterwards" in run.data.metrics


def test_a_model_of_the_projects_own_class_is_logged_once_its_class_is_trusted(model_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow saves scikit-learn models in skops' format, which loads only the classes it
    trusts: a model of the project's own class is refused until the setting names it."""
    kedro = Path(sys.executable).with_name("kedro")
    refused = subprocess.run([str(kedro), "run"], cwd=model_project, env=_environment(model_project, tmp_path), capture_output=True, text=True, timeout=300, check=False)
    output = _messages(refused)
    assert refused.returncode == 0, output[-4000:]
    assert (
        "Not logged: the model (UntrustedModelError: the model holds classes that MLflow's skops format does not load unless told to trust "
        "them: background_trial.model.TrialModel. If they are yours, list them under mlflow.skops_trusted_types in observability.yml.)"
    ) in output, output[-4000:]

    (model_project / "conf" / "local" / "observability.yml").write_text("mlflow:\n  skops_trusted_types: [background_trial.model.TrialModel]\n")
    trusted = subprocess.run([str(kedro), "run"], cwd=model_project, env=_environment(model_project, tmp_path), capture_output=True, text=True, timeout=300, check=False)
    output = " ".join((trusted.stdout + trusted.stderr).split())
    assert trusted.returncode == 0 and "is incomplete" not in output, output[-4000:]
    client = MlflowClient(f"sqlite:///{model_project / 'mlflow.db'}")
    (experiment,) = [each for each in client.search_experiments() if each.name == PACKAGE]
    latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    (model,) = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{latest.info.run_id}'")
    monkeypatch.syspath_prepend(str(model_project / "src"))  # the model's class, as its users import it
    mlflow.set_tracking_uri(f"sqlite:///{model_project / 'mlflow.db'}")
    try:
        loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    finally:
        mlflow.set_tracking_uri(None)
    assert type(loaded).__name__ == "TrialModel"
    table = pd.DataFrame({"x": [1.0, 2.0], "z": [3.0, 4.0]})
    assert list(loaded.predict(table)) == pytest.approx([5.0, 8.0])


def test_a_model_the_helper_cannot_read_is_named_and_the_run_ends_as_it_did(tmp_path: Path) -> None:
    """A node that imports its model's class from a folder it puts on ``sys.path`` itself: the
    helper, started before, cannot import it. The run is FINISHED with everything else."""
    late = _late_model_folder(tmp_path)
    project = make_tiny_project(tmp_path / "unreadable", "unreadable_model", f"""
        import sys

        from kedro.pipeline import Pipeline, node


        def train(x: int):
            sys.path.insert(0, {str(late)!r})
            from late_model import LateModel

            return LateModel()


        def register_pipelines() -> dict[str, Pipeline]:
            return {{"__default__": Pipeline([node(train, "params:x", "model", name="train")])}}
    """, """
        statsd: {enabled: false}
        memory: {enabled: false}
        validation: {enabled: false}
        mlflow: {model_dataset: model, log_input_datasets: false}
    """, "x: 1\n")  # fmt: skip
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(kedro), "run"], cwd=project, env=_environment(project, tmp_path), capture_output=True, text=True, timeout=300, check=False)
    output = _messages(result)
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"Not logged: data the run sent for MLflow \(the MLflow helper could not read it: ModuleNotFoundError: No module named 'late_model'", output), output[-4000:]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([each.experiment_id for each in client.search_experiments() if each.name == "unreadable_model"])
    assert run.info.status == "FINISHED" and run.data.params == {"x": "1"}
    assert "node_duration_seconds.train" in run.data.metrics


def test_a_model_from_parallel_workers_that_the_helper_cannot_read_is_named_and_the_rest_logged(tmp_path: Path) -> None:
    """ParallelRunner's workers hand the model over at the run's end. Its class comes from a
    folder the pipeline registry puts on ``sys.path``, after the helper started: the helper
    cannot import it. The run is FINISHED with its parameters and metrics, the model named."""
    late = _late_model_folder(tmp_path)
    project = make_tiny_project(tmp_path / "parallel", "parallel_model", f"""
        import sys

        sys.path.insert(0, {str(late)!r})
        from late_model import LateModel  # noqa: E402

        from kedro.pipeline import Pipeline, node  # noqa: E402


        def train(x: int) -> LateModel:
            return LateModel()


        def score(model: LateModel) -> dict:
            return {{"score": 1.0}}


        def register_pipelines() -> dict[str, Pipeline]:
            return {{"__default__": Pipeline([
                node(train, "params:x", "model", name="train"),
                node(score, "model", "metrics", name="score"),
            ])}}
    """, """
        statsd: {enabled: false}
        memory: {enabled: false}
        validation: {enabled: false}
        mlflow: {model_dataset: model, metrics_dataset: metrics, log_input_datasets: false}
    """, "x: 1\n")  # fmt: skip
    # On disk: Kedro's own shared-memory manager, started before the registry, could not read it either.
    write(project / "conf" / "base" / "catalog.yml", """
        model: {type: pickle.PickleDataset, filepath: data/model.pkl}
    """)
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "run", "--runner", "ParallelRunner"], cwd=project, env=_environment(project, tmp_path, KEDRO_MP_CONTEXT="fork"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = _messages(result)
    assert result.returncode == 0, output[-4000:]
    assert "Not logged: 'model' (the MLflow helper could not read it: ModuleNotFoundError: No module named 'late_model')" in output, output[-4000:]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([each.experiment_id for each in client.search_experiments() if each.name == "parallel_model"])
    assert run.info.status == "FINISHED" and run.data.params == {"x": "1"}
    assert run.data.metrics["score"] == 1.0 and "node_duration_seconds.train" in run.data.metrics


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_run_stopped_while_the_model_uploads_ends_killed_with_the_model(model_project: Path, tmp_path: Path, signal_name: str) -> None:
    predicting, waiting = tmp_path / "predicting", tmp_path / "waiting"
    environment = _environment(
        model_project, tmp_path,
        TRIAL_PREDICT_STARTED=str(predicting), TRIAL_PREDICT_SECONDS="3", TRIAL_WAIT_TO_BE_STOPPED=str(waiting),
    )  # fmt: skip
    kedro = Path(sys.executable).with_name("kedro")
    log_path = tmp_path / "kedro-run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(kedro), "run"], cwd=model_project, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not (predicting.exists() and waiting.exists()):
                assert process.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, "the model was never logged while the next node ran"
                time.sleep(0.05)
            # The helper is inside MLflow's log_model (the model's predict sleeps) and the
            # pipeline's last node runs: stop the run now.
            assert int(predicting.read_text()) != process.pid
            if signal_name == "SIGINT":
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the helper too: it ignores it
            else:
                os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=90)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = " ".join(log_path.read_text().split())
    run, models = _only_run(model_project)
    assert run.info.status == "KILLED", output[-4000:]
    assert run.data.tags["kedro.stopped_by"] == signal_name
    # The upload under way was finished before the run was ended.
    assert [model.name for model in models] == ["model"]
    assert re.search(rf"the run was stopped by {signal_name}; it is (\S+\.py:\d+ )?recorded as KILLED", output), output[-4000:]
    temporary = tmp_path / "tmp"
    deadline = time.monotonic() + 20
    while _helpers_of(temporary):
        assert time.monotonic() < deadline, "the MLflow helper outlived the run"
        time.sleep(0.2)
    assert not [path.name for path in temporary.iterdir() if path.name.startswith("kedro-observability-")]


def test_the_run_content_is_the_same_under_every_runner(sample_project: Path) -> None:
    """The model's signature and input example are what MLflow infers from the example
    dataset's first rows, and params, metrics, tags, inputs and artifacts do not depend on the
    runner, though the model reaches the helper from the main process, a thread or a forked worker."""
    client = MlflowClient(f"sqlite:///{sample_project / 'mlflow.db'}")
    contents = {}
    for runner in RUNNERS:
        run_project(sample_project, runner=make_runner(runner))
        experiment = client.get_experiment_by_name("spaceflights")
        (run,) = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        assert run.info.status == "FINISHED"
        assert run.data.tags["kedro.runner"] == runner
        (output,) = run.outputs.model_outputs
        info = mlflow.models.get_model_info(f"models:/{output.model_id}")
        model = mlflow.sklearn.load_model(f"models:/{output.model_id}")
        example = pd.read_parquet(sample_project / "data" / "03_primary" / "model_input_table.parquet")
        loaded_example = mlflow.models.Model.load(f"models:/{output.model_id}").load_input_example(mlflow.artifacts.download_artifacts(f"models:/{output.model_id}"))
        assert list(loaded_example.columns) == list(model.feature_names_in_)
        assert len(loaded_example) == 5
        assert info.signature == infer_signature(loaded_example, model.predict(loaded_example))
        assert set(model.feature_names_in_) <= set(example.columns)
        tags = {key for key in run.data.tags if key not in {"kedro.run_id", "mlflow.runName", "kedro.runner"}}
        contents[runner] = {
            "params": run.data.params,
            "metrics": sorted(run.data.metrics),
            "tags": sorted(tags),
            "artifacts": sorted(each.path for each in client.list_artifacts(run.info.run_id)),
            "inputs": sorted((each.dataset.name, each.dataset.digest) for each in run.inputs.dataset_inputs),
            "signature": info.signature.to_dict(),
            "example": loaded_example.to_dict(),
        }
    assert contents["ThreadRunner"] == contents["SequentialRunner"]
    assert contents["ParallelRunner"] == contents["SequentialRunner"]
