"""The plugin as a user adopts it: a built wheel in a fresh virtualenv, in a project that
`kedro new` made from Kedro's own template, with two pipelines found by `find_pipelines()`.

Nothing of the sample project's pins is installed there: the wheel's own ranges, the
generated project's requirements and the kedro-datasets it uses. Every step is the
command a user types (`kedro observability init`, `kedro run ...`), in a subprocess, and
the test reads what the user sees: stdout, the statsd packets, the MLflow store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from statsd_capture import UDPCapture

PLUGIN = REPO / "project" / "kedro-observability"
PACKAGE = "obs_trial"

PROCESSING_NODES = ["fingerprint", "clean", "build_features"]
SCIENCE_NODES = ["split", "train", "evaluate"]


@dataclass
class TrialProject:
    path: Path
    venv: Path

    def kedro(self, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "200", **(env or {})}
        for variable in ("MLFLOW_TRACKING_URI", "STATSD_HOST", "STATSD_PORT", "KEDRO_MP_CONTEXT", "VIRTUAL_ENV"):
            if env is None or variable not in env:
                environment.pop(variable, None)
        environment["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{environment['PATH']}"
        result = subprocess.run([str(self.venv / "bin" / "kedro"), *args], cwd=self.path, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kedro {' '.join(args)} exited with {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
        return result


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def _add_pipelines(project: Path) -> None:
    """Two pipelines, as a user would write them, discovered by the template's find_pipelines()."""
    package = project / "src" / PACKAGE / "pipelines"
    _write(package / "data_processing" / "__init__.py", "from .pipeline import create_pipeline  # noqa: F401\n")
    _write(package / "data_processing" / "nodes.py", """
        import hashlib
        from pathlib import Path

        import pandas as pd


        def fingerprint(path: str) -> dict:
            data = Path(path).read_bytes()
            return {"trips": {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}}


        def clean(trips: pd.DataFrame) -> pd.DataFrame:
            return trips.dropna().reset_index(drop=True)


        def build_features(trips: pd.DataFrame) -> pd.DataFrame:
            table = trips.copy()
            table["distance_sq"] = table["distance"] ** 2
            return table
    """)
    _write(package / "data_processing" / "pipeline.py", """
        from kedro.pipeline import Pipeline, node

        from .nodes import build_features, clean, fingerprint


        def create_pipeline(**kwargs) -> Pipeline:
            return Pipeline([
                node(fingerprint, "trips", "fingerprints", name="fingerprint"),
                node(clean, "trips", "clean_trips", name="clean"),
                node(build_features, "clean_trips", "model_input_table", name="build_features"),
            ])
    """)
    _write(package / "data_science" / "__init__.py", "from .pipeline import create_pipeline  # noqa: F401\n")
    _write(package / "data_science" / "nodes.py", """
        import pandas as pd
        from sklearn.linear_model import LinearRegression
        from sklearn.metrics import mean_absolute_error, r2_score
        from sklearn.model_selection import train_test_split


        def split(table: pd.DataFrame, options: dict):
            features = table[options["features"]]
            return train_test_split(features, table["fare"], test_size=0.25, random_state=1)


        def train(X_train: pd.DataFrame, y_train: pd.Series) -> LinearRegression:
            return LinearRegression().fit(X_train, y_train)


        def evaluate(regressor: LinearRegression, X_test: pd.DataFrame, y_test: pd.Series) -> dict:
            predicted = regressor.predict(X_test)
            return {"r2": float(r2_score(y_test, predicted)), "mae": float(mean_absolute_error(y_test, predicted))}
    """)
    _write(package / "data_science" / "pipeline.py", """
        from kedro.pipeline import Pipeline, node

        from .nodes import evaluate, split, train


        def create_pipeline(**kwargs) -> Pipeline:
            return Pipeline([
                node(split, ["model_input_table", "params:model_options"], ["X_train", "X_test", "y_train", "y_test"], name="split"),
                node(train, ["X_train", "y_train"], "regressor", name="train"),
                node(evaluate, ["regressor", "X_test", "y_test"], "metrics", name="evaluate"),
            ])
    """)
    _write(project / "conf" / "base" / "catalog.yml", """
        trips:
          type: pandas.CSVDataset
          filepath: data/01_raw/trips.csv

        fingerprints:
          type: json.JSONDataset
          filepath: data/08_reporting/fingerprints.json

        model_input_table:
          type: pandas.CSVDataset
          filepath: data/03_primary/model_input_table.csv

        regressor:
          type: pickle.PickleDataset
          filepath: data/06_models/regressor.pickle

        metrics:
          type: json.JSONDataset
          filepath: data/08_reporting/metrics.json
    """)
    _write(project / "conf" / "base" / "parameters.yml", """
        model_options:
          features: [distance, distance_sq, passengers]
    """)
    rows = ["distance,passengers,fare"] + [f"{1 + i % 37},{1 + i % 4},{3 + 2.5 * (1 + i % 37) + (i % 7) * 0.3:.2f}" for i in range(400)]
    _write(project / "data" / "01_raw" / "trips.csv", "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> TrialProject:
    """The wheel built, a fresh virtualenv, `kedro new`, two pipelines, `kedro observability init`."""
    work = tmp_path_factory.mktemp("adoption")
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(PLUGIN)], check=True, capture_output=True)
    (wheel,) = wheels.glob("kedro_observability-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{wheel}[all]", "kedro~=1.7.0"], check=True, capture_output=True, timeout=900)

    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(venv / "bin" / "kedro"), "new", "--name", "Obs Trial", "--tools", "none", "--example", "n"], cwd=work, env=environment, check=True, capture_output=True)
    project = work / "obs-trial"
    # The generated project's own requirements, and the datasets and model library it uses.
    subprocess.run([*pip, "-r", str(project / "requirements.txt"), "kedro-datasets[pandas-csvdataset,json-jsondataset,pickle-pickledataset]", "scikit-learn"], check=True, capture_output=True, timeout=900)
    _add_pipelines(project)
    return TrialProject(project, venv)


@pytest.fixture(scope="module")
def initialised(trial: TrialProject) -> tuple[TrialProject, str]:
    result = trial.kedro("observability", "init")
    return trial, result.stdout


def test_the_wheel_installs_without_the_samples_pins_and_declares_its_entry_points(trial: TrialProject) -> None:
    python = str(trial.venv / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "freeze"], capture_output=True, text=True, check=True).stdout
    assert "kedro-observability==" in listed
    assert "spaceflights" not in listed and "memory-profiler" not in listed and "memory_profiler" not in listed
    entry_points = subprocess.run(
        [python, "-c", "from importlib.metadata import entry_points as e; print(sorted((p.group, p.value) for g in ('kedro.hooks','kedro.project_commands') for p in e(group=g)))"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "('kedro.hooks', 'kedro_observability.plugin:hooks')" in entry_points
    assert "('kedro.project_commands', 'kedro_observability.cli:commands')" in entry_points


def test_before_init_the_plugin_does_nothing_and_says_how_to_turn_it_on(trial: TrialProject, tmp_path: Path) -> None:
    assert not (trial.path / "conf" / "base" / "observability.yml").exists(), "this test must run before init"
    capture = UDPCapture()
    try:
        # Not the fingerprint node: without the plugin it would get a table, not a path.
        result = trial.kedro("run", "--nodes", "clean,build_features", env={"STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(capture.port)})
        assert capture.packets(settle=0.5) == []
    finally:
        capture.close()
    hints = [line for line in result.stdout.splitlines() if "kedro observability init" in line]
    assert len(hints) == 1, result.stdout
    assert not (trial.path / "mlflow.db").exists()


def test_init_fills_the_settings_from_the_project_and_adds_the_logger(initialised: tuple[TrialProject, str]) -> None:
    trial, output = initialised
    settings = yaml.safe_load((trial.path / "conf" / "base" / "observability.yml").read_text())
    assert settings["mlflow"]["model_dataset"] == "regressor"
    assert settings["mlflow"]["metrics_dataset"] == "metrics"
    assert settings["mlflow"]["model_input_example_dataset"] == "X_test"
    assert "observability.yml" in output and "regressor" in output
    logging_config = yaml.safe_load((trial.path / "conf" / "logging.yml").read_text())
    assert logging_config["loggers"]["kedro_observability"] == {"level": "INFO"}
    # The project had none: Kedro's own default, with its loggers, is the starting point.
    assert logging_config["loggers"]["kedro"] == {"level": "INFO"} and logging_config["root"]["handlers"]

    again = trial.kedro("observability", "init", check=False)
    assert again.returncode != 0 and "--force" in again.stderr + again.stdout


def _configure_for_the_trial(trial: TrialProject) -> None:
    """What a user edits after init: a suite, and a node that gets a file path."""
    settings_file = trial.path / "conf" / "base" / "observability.yml"
    text = settings_file.read_text()
    text = text.replace("input_paths: {}", "input_paths:\n  fingerprint: [trips]")
    settings_file.write_text(text)
    _write(trial.path / "conf" / "base" / "expectations" / "X_train.yml", """
        X_train:
          policy: fail
          expectations:
            - expect_column_values_to_not_be_null: {column: distance}
            - expect_column_values_to_be_between: {column: passengers, min_value: 1, max_value: 4}
    """)
    _write(trial.path / "conf" / "base" / "expectations" / "trips.yml", """
        trips:
          expectations:
            - expect_column_to_exist: {column: fare}
    """)


@pytest.fixture(scope="module")
def configured(initialised: tuple[TrialProject, str]) -> TrialProject:
    trial, _ = initialised
    _configure_for_the_trial(trial)
    return trial


def _mlflow_runs(trial: TrialProject) -> list[dict]:
    script = textwrap.dedent(f"""
        import json
        from mlflow import MlflowClient
        client = MlflowClient("sqlite:///{trial.path / 'mlflow.db'}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, order_by=["attributes.start_time ASC"])
        print(json.dumps([
            {{"status": r.info.status, "tags": r.data.tags, "params": r.data.params, "metrics": r.data.metrics,
              "models": [m.name for m in client.search_logged_models(experiments, filter_string=f"source_run_id = '{{r.info.run_id}}'")],
              "artifacts": [a.path for a in client.list_artifacts(r.info.run_id)]}}
            for r in runs
        ]))
    """)
    result = subprocess.run([str(trial.venv / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("arguments", "nodes"),
    [
        (["--runner", "SequentialRunner"], PROCESSING_NODES + SCIENCE_NODES),
        (["--pipelines", "data_processing"], PROCESSING_NODES),
        (["--pipelines", "data_science"], SCIENCE_NODES),
        (["--runner", "ThreadRunner"], PROCESSING_NODES + SCIENCE_NODES),
        (["--runner", "ParallelRunner"], PROCESSING_NODES + SCIENCE_NODES),
    ],
    ids=["sequential", "data_processing-only", "data_science-only", "thread", "parallel"],
)
def test_a_run_gives_statsd_metrics_one_complete_mlflow_run_and_the_info_lines(configured: TrialProject, arguments: list[str], nodes: list[str]) -> None:
    before = len(_mlflow_runs(configured)) if (configured.path / "mlflow.db").exists() else 0
    capture = UDPCapture()
    try:
        result = configured.kedro("run", *arguments, env={"STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(capture.port), "KEDRO_MP_CONTEXT": "fork"})
        lines = capture.lines()
    finally:
        capture.close()

    node_runs = sorted(line.tags["node"] for line in lines if line.name == "kedro.node.runs")
    assert node_runs == sorted(nodes)
    (pipeline_run,) = [line for line in lines if line.name == "kedro.pipeline.runs"]
    assert pipeline_run.tags["project"] == PACKAGE and pipeline_run.tags["status"] == "success"
    assert {line.tags["dataset"] for line in lines if line.name == "kedro.dataset.size"} >= ({"trips"} if "fingerprint" in nodes else {"X_train"})

    runs = _mlflow_runs(configured)
    assert len(runs) == before + 1
    run = runs[-1]
    assert run["status"] == "FINISHED"
    assert {f"node_duration_seconds.{name}" for name in nodes} <= set(run["metrics"])
    if "train" in nodes:
        assert {"r2", "mae"} <= set(run["metrics"]) and run["models"] == ["model"]
        assert run["params"]["model_options.features"] == '["distance", "distance_sq", "passengers"]'
        assert "validation-X_train.json" in run["artifacts"]

    out = result.stdout
    assert "Loading " in out and " consumed " in out and "MiB" in out
    if "split" in nodes:
        assert "Data validation of 'X_train' passed" in out
    assert "kedro_observability: MLflow run" in out and "(FINISHED)" in out


def test_a_local_override_of_one_key_keeps_every_other_base_setting(configured: TrialProject) -> None:
    local = configured.path / "conf" / "local" / "observability.yml"
    local.write_text("mlflow:\n  on_unavailable: warn\n")
    try:
        configured.kedro("run")
        run = _mlflow_runs(configured)[-1]
        doctor = configured.kedro("observability", "doctor").stdout
    finally:
        local.unlink()
    assert run["status"] == "FINISHED"
    assert run["models"] == ["model"] and {"r2", "mae"} <= set(run["metrics"])
    assert "kedro.fingerprint.trips.sha256" not in run["tags"]  # not configured: nothing invented
    assert "mlflow.on_unavailable = 'warn'" in doctor and str(local) in doctor
    assert "mlflow.model_dataset = 'regressor'" in doctor and str(configured.path / "conf" / "base" / "observability.yml") in doctor


def test_a_misnamed_node_still_fails_at_start_naming_it(configured: TrialProject) -> None:
    local = configured.path / "conf" / "local" / "observability.yml"
    local.write_text("input_paths:\n  fingerprnt: [trips]\n")
    try:
        result = configured.kedro("run", "--pipelines", "data_science", check=False)
    finally:
        local.unlink()
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "fingerprnt" in output and "no pipeline of the project" in output and "fingerprint" in output
    assert "Running node" not in output


def test_disable_hooks_for_plugins_turns_it_off(configured: TrialProject) -> None:
    settings_py = configured.path / "src" / PACKAGE / "settings.py"
    original = settings_py.read_text()
    settings_py.write_text(original + '\nDISABLE_HOOKS_FOR_PLUGINS = ("kedro-observability",)\n')
    capture = UDPCapture()
    try:
        before = len(_mlflow_runs(configured))
        result = configured.kedro("run", "--nodes", "clean,build_features", env={"STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(capture.port)})
        assert capture.packets(settle=0.5) == []
        assert len(_mlflow_runs(configured)) == before
    finally:
        settings_py.write_text(original)
        capture.close()
    assert "consumed" not in result.stdout and "Running node: clean" in result.stdout
