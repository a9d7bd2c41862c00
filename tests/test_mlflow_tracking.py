"""The MLflow hook against a real MLflow server: what one `kedro run` leaves in MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from mlflow import MlflowClient
from mlflow.entities import Run

from conftest import REPO, make_runner, run_project
from kedro_observability import MlflowTrackingError, MlflowTrackingHook
from kedro_observability.run_record import record_artifact
from kedro_observability.tracking_params import ParameterTooLongError, mlflow_key
from kedro_observability.tracking_server import git_commit
from mlflow_server import MlflowServer, TcpRelay, closed_port_uri, mlflow_server  # noqa: F401 - the fixture

NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]
RAW = ("companies", "shuttles", "reviews")
FEATURES = yaml.safe_load((REPO / "project" / "conf" / "base" / "parameters_data_science.yml").read_text())["model_options"]["features"]
MODEL_OPTIONS = {"test_size": 0.2, "random_state": 3, "features": FEATURES}


def configure_mlflow(project: Path, **overrides: Any) -> None:
    """The base ``mlflow`` section with some keys changed, as conf/local/observability.yml."""
    section = yaml.safe_load((project / "conf" / "base" / "observability.yml").read_text())["mlflow"]
    (project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": {**section, **overrides}}))


@dataclass
class Tracked:
    project: Path
    experiment: str
    server: MlflowServer

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.server.uri)

    def runs(self) -> list[Run]:
        experiment = self.client.get_experiment_by_name(self.experiment)
        return [] if experiment is None else self.client.search_runs([experiment.experiment_id])

    def only_run(self) -> Run:
        runs = self.runs()
        assert len(runs) == 1, [run.info.run_id for run in runs]
        return runs[0]

    def rest(self, endpoint: str, **query: str) -> dict[str, Any]:
        url = f"{self.server.uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture
def on_server(sample_project: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Tracked:  # noqa: F811
    """The sample project tracking to the test server, in an experiment of its own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    experiment = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    configure_mlflow(sample_project, experiment_name=experiment)
    return Tracked(sample_project, experiment, mlflow_server)


def test_a_run_holds_params_metrics_tags_model_and_lineage(on_server: Tracked) -> None:
    run_project(on_server.project)

    run_id = on_server.only_run().info.run_id
    run = on_server.rest("runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {each["key"]: each["value"] for each in run["data"]["params"]}
    assert params == {
        "model_options.test_size": "0.2",
        "model_options.random_state": "3",
        "model_options.features": json.dumps(FEATURES),
    }
    metrics = {each["key"]: each["value"] for each in run["data"]["metrics"]}
    evaluation = json.loads((on_server.project / "data" / "08_reporting" / "metrics.json").read_text())
    assert {key: metrics[key] for key in evaluation} == pytest.approx(evaluation)
    assert set(evaluation) == {"r2", "mae", "max_error"}
    for name in NODES:
        assert metrics[f"node_duration_seconds.{name}"] > 0
    model_input = pd.read_parquet(on_server.project / "data" / "03_primary" / "model_input_table.parquet")
    assert metrics["dataset_rows.model_input_table"] == len(model_input)
    assert metrics["dataset_size_bytes.model_input_table"] > 0
    assert not any(key.endswith("model_options") or "params" in key for key in metrics)

    tags = {each["key"]: each["value"] for each in run["data"]["tags"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z", tags["kedro.run_id"])
    assert tags["kedro.pipeline"] == "__default__"
    assert tags["kedro.env"] == "local"
    assert tags["kedro.version"] == __import__("kedro").__version__
    assert tags["kedro.runner"] == "SequentialRunner"
    for name in RAW:
        content = (on_server.project / "data" / "01_raw" / f"{name}.csv").read_bytes()
        assert tags[f"kedro.fingerprint.{name}.sha256"] == hashlib.sha256(content).hexdigest()
        assert tags[f"kedro.fingerprint.{name}.size_bytes"] == str(len(content))

    inputs = {each["dataset"]["name"]: each for each in run["inputs"]["dataset_inputs"]}
    assert set(inputs) == set(RAW)
    for name, each in inputs.items():
        table = pd.read_csv(on_server.project / "data" / "01_raw" / f"{name}.csv")
        assert re.fullmatch(r"[0-9a-f]{8}", each["dataset"]["digest"])
        assert json.loads(each["dataset"]["profile"])["num_rows"] == len(table)
        assert json.loads(each["dataset"]["source"])["uri"] == str((on_server.project / "data" / "01_raw" / f"{name}.csv").resolve())
        assert [column["name"] for column in json.loads(each["dataset"]["schema"])["mlflow_colspec"]] == list(table.columns)
        assert {"key": "mlflow.data.context", "value": "input"} in each["tags"]
    assert len({each["dataset"]["digest"] for each in inputs.values()}) == 3

    (output,) = on_server.client.get_run(run_id).outputs.model_outputs
    logged = on_server.client.get_logged_model(output.model_id)
    assert logged.experiment_id == on_server.client.get_run(run_id).info.experiment_id
    model_uri = f"models:/{output.model_id}"
    model = mlflow.sklearn.load_model(model_uri)
    X = model_input[FEATURES].astype(float).head(20)
    trained = pd.read_pickle(next((on_server.project / "data" / "06_models" / "regressor.pickle").glob("*/regressor.pickle")))
    assert model.predict(X) == pytest.approx(trained.predict(X))
    info = mlflow.models.get_model_info(model_uri)
    assert info.signature.inputs.input_names() == FEATURES
    assert info.saved_input_example_info["type"] == "dataframe"
    requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri)).read_text().split()
    assert f"scikit-learn=={__import__('sklearn').__version__}" in requirements


@pytest.mark.parametrize("runner", ["ThreadRunner", "ParallelRunner"])
def test_every_runner_gives_one_run_holding_every_node(on_server: Tracked, runner: str) -> None:
    configure_mlflow(on_server.project, experiment_name=on_server.experiment, registered_model_name=f"regressor-{runner}")

    run_project(on_server.project, runner=make_runner(runner))

    run = on_server.only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.runner"] == runner
    for name in NODES:
        assert run.data.metrics[f"node_duration_seconds.{name}"] > 0
        # Recorded by the memory hook, in the same worker processes or threads.
        assert run.data.metrics[f"memory_peak_bytes.{name}"] > 0
    assert {"r2", "mae", "max_error", "dataset_rows.X_test"} <= set(run.data.metrics)
    assert len(run.inputs.dataset_inputs) == 3
    assert "kedro.fingerprint.shuttles.sha256" in run.data.tags
    (output,) = run.outputs.model_outputs
    # X_test is a MemoryDataset: only what the hook kept where split_data ran can give these.
    info = mlflow.models.get_model_info(f"models:/{output.model_id}")
    assert info.signature.inputs.input_names() == FEATURES
    assert info.saved_input_example_info is not None
    (version,) = on_server.client.search_model_versions(f"name = 'regressor-{runner}'")
    assert version.run_id == run.info.run_id
    assert mlflow.sklearn.load_model(f"models:/regressor-{runner}/{version.version}").predict(pd.DataFrame([[1.0] * len(FEATURES)], columns=FEATURES)).shape == (1,)


def test_a_failing_node_leaves_the_run_failed_with_the_error(on_server: Tracked) -> None:
    with pytest.raises(KeyError):
        run_project(on_server.project, runtime_params={"model_options": {**MODEL_OPTIONS, "features": ["no_such_column"]}})

    run = on_server.only_run()
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert run.data.tags["kedro.error"].startswith("KeyError: ")
    assert "no_such_column" in run.data.tags["kedro.error"]
    assert run.data.params["model_options.features"] == '["no_such_column"]'
    assert "node_duration_seconds.split_data" in run.data.metrics
    assert "node_duration_seconds.train_model" not in run.data.metrics
    assert not run.outputs.model_outputs


ODD_NAME = "odd key:é/ü?*"


@pytest.mark.parametrize("policy", ["truncate", "tag"])
def test_long_nested_and_oddly_named_params(on_server: Tracked, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    configure_mlflow(on_server.project, experiment_name=on_server.experiment, long_params=policy)
    notes = "".join(f"{index:05d}" for index in range(1400))  # 7000 characters, each position distinct
    options = {**MODEL_OPTIONS, "notes": notes, "nested": {"deeper": {"leaf": 1, "flag": True}}, ODD_NAME: "odd"}

    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_project(on_server.project, runtime_params={"model_options": options})

    params = on_server.only_run().data.params
    tags = on_server.only_run().data.tags
    assert params["model_options.nested.deeper.leaf"] == "1"
    assert params["model_options.nested.deeper.flag"] == "True"
    assert params["model_options.odd key_é/ü__"] == "odd"
    assert params["model_options.test_size"] == "0.2"
    (warning,) = [record.getMessage() for record in caplog.records if "long_params" in record.getMessage()]
    assert "'model_options.notes' (7000 characters)" in warning
    if policy == "truncate":
        assert params["model_options.notes"] == notes[:6000]
    else:
        assert "model_options.notes" not in params
        assert tags["kedro.param.model_options.notes"] == notes


def test_a_too_long_param_under_the_fail_policy_stops_before_any_run(on_server: Tracked) -> None:
    configure_mlflow(on_server.project, experiment_name=on_server.experiment, long_params="fail")

    with pytest.raises(ParameterTooLongError, match=r"'model_options.notes' is 7000 characters long.*mlflow.long_params"):
        run_project(on_server.project, runtime_params={"model_options": {**MODEL_OPTIONS, "notes": "n" * 7000}})

    assert on_server.runs() == []
    assert not (on_server.project / "data" / "08_reporting" / "raw_fingerprints.json").exists()


def test_an_unreachable_server_fails_the_run_before_any_node_within_10_s(sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    started = time.monotonic()
    with pytest.raises(MlflowTrackingError) as raised:
        run_project(sample_project)
    elapsed = time.monotonic() - started

    assert elapsed < 10
    message = str(raised.value)
    assert f"MLflow tracking at {uri} is not available" in message
    assert "docker compose up -d mlflow" in message
    assert "unset MLFLOW_TRACKING_URI" in message
    assert "mlflow.on_unavailable: warn" in message
    assert not (sample_project / "data" / "08_reporting" / "raw_fingerprints.json").exists()
    assert not [name for name in os.environ if name.startswith("MLFLOW_HTTP_REQUEST_")]


def test_a_server_that_never_answers_is_given_up_after_the_timeout(sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure_mlflow(sample_project, request_timeout_seconds=2)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never replies
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(MlflowTrackingError, match="no answer within 2 s"):
            run_project(sample_project)
        assert time.monotonic() - started < 2 + 3


def test_warn_mode_runs_on_without_tracking(sample_project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    configure_mlflow(sample_project, on_unavailable="warn")
    uri = closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_project(sample_project)

    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()
    (warning,) = [record.getMessage() for record in caplog.records if "MLflow" in record.getMessage()]
    assert uri in warning
    assert "goes on without MLflow tracking" in warning
    local = MlflowClient(f"sqlite:///{sample_project / 'mlflow.db'}")  # no fallback to the local store either
    assert local.search_runs([each.experiment_id for each in local.search_experiments()]) == []


def test_without_a_server_the_run_goes_to_a_sqlite_file_in_the_project(sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = sample_project / "mlflow.db"
    database.unlink()  # the fixture's ready-made store: here the hook must create its own

    run_project(sample_project)

    client = MlflowClient(f"sqlite:///{database}")
    (run,) = client.search_runs([client.get_experiment_by_name("spaceflights").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((sample_project / "mlruns").resolve().as_uri())
    (output,) = run.outputs.model_outputs
    assert Path(client.get_logged_model(output.model_id).artifact_location.removeprefix("file://")).is_relative_to(sample_project)
    assert "r2" in run.data.metrics
    # Model logging borrows MLflow's process-wide URI; nothing of it may stay behind.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.chdir(sample_project.parent)  # MLflow's own default is a mlflow.db in the current folder
    assert mlflow.get_tracking_uri() != f"sqlite:///{database}"
    ignored = (REPO / "project" / ".gitignore").read_text().split()
    assert {"mlflow.db", "mlruns/"} <= set(ignored)


@pytest.fixture
def relay(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The test server behind a relay that counts what clients send and can be cut."""
    relayed = TcpRelay(mlflow_server.port)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relayed.uri)
    yield relayed
    relayed.close()


def run_directly(hook: MlflowTrackingHook, nodes: list[Any], catalog: DataCatalog, tmp_path: Path, between: Any = None) -> tuple[str, float]:
    """Drive the hook through one pipeline run without a KedroSession.

    Returns the kedro run id and how long the end of the run took. ``between`` (if given) is
    read before and after the nodes run, and must not change.
    """
    hook_manager = _create_hook_manager()
    hook_manager.register(hook)
    run_id = f"direct-{time.time_ns()}"
    run_params = {"run_id": run_id, "project_path": str(tmp_path), "env": None, "pipeline_names": None, "runner": "SequentialRunner"}
    the_pipeline = pipeline(nodes)
    hook_manager.hook.before_pipeline_run(run_params=run_params, pipeline=the_pipeline, catalog=catalog)
    before = between() if between else None
    SequentialRunner().run(the_pipeline, catalog, hook_manager)
    if between:
        assert between() == before
    started = time.monotonic()
    hook_manager.hook.after_pipeline_run(run_params=run_params, run_result={}, pipeline=the_pipeline, catalog=catalog)
    return run_id, time.monotonic() - started


def find_run(server: MlflowServer, kedro_run_id: str) -> Run:
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], f"tags.`kedro.run_id` = '{kedro_run_id}'")
    return run


def test_nodes_make_no_network_call_and_recorded_artifacts_are_uploaded(relay: TcpRelay, mlflow_server: MlflowServer, tmp_path: Path) -> None:  # noqa: F811
    def report(value: int) -> int:
        record_artifact("report of node 7.json", json.dumps({"value": value}))
        return value

    nodes = [node(lambda value: value + 1, f"d{index}", f"d{index + 1}", name=f"step_{index}") for index in range(20)]
    nodes[7] = node(report, "d7", "d8", name="step_7")

    run_id, _ = run_directly(MlflowTrackingHook(), nodes, DataCatalog({"d0": MemoryDataset(0)}), tmp_path, between=lambda: relay.bytes_from_clients)

    run = find_run(mlflow_server, run_id)
    assert run.info.status == "FINISHED"
    assert {f"node_duration_seconds.step_{index}" for index in range(20)} <= set(run.data.metrics)
    artifacts = [each.path for each in MlflowClient(mlflow_server.uri).list_artifacts(run.info.run_id)]
    assert artifacts == ["report_of_node_7.json"]


def test_a_server_dying_mid_run_costs_seconds_and_the_outputs_are_still_written(
    relay: TcpRelay, mlflow_server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    def server_dies(value: int) -> int:
        relay.close()
        return value + 1

    output = tmp_path / "out.json"
    nodes = [node(lambda: 1, None, "a", name="produce"), node(server_dies, "a", "b", name="server_dies")]
    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_id, elapsed = run_directly(MlflowTrackingHook(), nodes, DataCatalog({"b": JSONDataset(filepath=str(output))}), tmp_path)

    assert json.loads(output.read_text()) == 2
    assert elapsed < 10
    (warning,) = [record.getMessage() for record in caplog.records if "is incomplete" in record.getMessage()]
    assert relay.uri in warning
    assert "metrics and 0 tags" in warning and "the run's status FINISHED (it stays RUNNING)" in warning
    # What the server got before it went away: the run and its start, nothing after.
    run = find_run(mlflow_server, run_id)
    assert run.info.status == "RUNNING"
    assert not run.data.metrics


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("model_options.test_size", "model_options.test_size"),
        ("a:b,c=d", "a_b_c_d"),
        ("unicode é", "unicode é"),
        ("..hidden", "_..hidden"),
        ("a//b/./c/../d/", "a/_/b/_/c/_/d/_"),
        ("", "_"),
    ],
)
def test_keys_become_valid_mlflow_keys(name: str, key: str) -> None:
    from mlflow.utils.validation import _validate_param_name

    assert mlflow_key(name) == key
    _validate_param_name(mlflow_key(name))


def test_long_keys_are_cut_and_stay_distinct() -> None:
    first, second = mlflow_key("k" * 300 + "1"), mlflow_key("k" * 300 + "2")
    assert len(first) == len(second) == 250
    assert first != second


def test_git_commit_is_read_without_requiring_git(tmp_path: Path) -> None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None
    assert git_commit(REPO) == head
    assert git_commit(tmp_path) is None
