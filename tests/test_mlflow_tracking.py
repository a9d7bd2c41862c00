"""MLflow tracking against a real MLflow server: what one `kedro run` leaves in MLflow.

The runs are `kedro run`s of a copy of the sample project (or of the demo project) through a
KedroSession, the plugin registered by its entry point and configured by
conf/local/observability.yml; one runner is driven without a session, with
``ObservabilityHooks(settings=...)``. The last tests check MLflow keys and the git commit.
"""

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from mlflow import MlflowClient
from mlflow.entities import Run

from conftest import REPO, make_runner, run_project
from kedro_observability import MlflowTrackingError, ObservabilityHooks, ObservabilitySettings
from kedro_observability.settings import MlflowSettings, StatsdSettings, ValidationSettings
from kedro_observability.tracking.params import ParameterTooLongError, mlflow_key
from kedro_observability.tracking.server import git_commit
from mlflow_server import MlflowServer, TcpRelay, closed_port_uri, mlflow_server  # noqa: F401 - the fixture

NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]
RAW = ("companies", "shuttles", "reviews")
# The sample project's expectation suites: each validation report is attached to the run.
SUITES = {"companies": "load", "shuttles": "load", "reviews": "load", "model_input_table": "save"}
FEATURES = yaml.safe_load((REPO / "project" / "conf" / "base" / "parameters_data_science.yml").read_text())["model_options"]["features"]
MODEL_OPTIONS = {"test_size": 0.2, "random_state": 3, "features": FEATURES}


def configure_mlflow(project: Path, **overrides: Any) -> None:
    """conf/local/observability.yml changing only these ``mlflow`` keys: the plugin merges it
    key by key over conf/base, so the base file's other keys stay."""
    (project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": overrides}))


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


def experiment_of(request: pytest.FixtureRequest) -> str:
    """An experiment of the test's own on the shared server."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)


@pytest.fixture
def on_server(sample_project: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Tracked:  # noqa: F811
    """The sample project tracking to the test server, in an experiment of its own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    experiment = experiment_of(request)
    configure_mlflow(sample_project, experiment_name=experiment)
    return Tracked(sample_project, experiment, mlflow_server)


class Watch:
    """A project hook: reads ``probe`` once the run has begun (Kedro calls the project's
    ``before_pipeline_run`` inside the plugin's wrapper, after the MLflow run is open) and
    once every node has run (``after_pipeline_run``, before the plugin ends the run), and
    calls ``after_node(name)`` after each node."""

    def __init__(self, probe: Callable[[], Any] = lambda: None, after_node: Callable[[str], None] = lambda name: None) -> None:
        self.probe = probe
        self.after_node = after_node
        self.readings: list[Any] = []
        self.nodes_done_at: float | None = None

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.readings.append(self.probe())

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        self.after_node(node.name)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self.readings.append(self.probe())
        self.nodes_done_at = time.monotonic()


def add_project_hook(monkeypatch: pytest.MonkeyPatch, settings_module: Any, hook: Any) -> None:
    monkeypatch.setattr(settings_module, "HOOKS", (*getattr(settings_module, "HOOKS", ()), hook), raising=False)


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """pytest's caplog, with both projects' logging set up before the test runs.

    The first time a project package is configured in a process, Kedro re-applies its logging
    configuration, which replaces the root logger's handlers: caplog's handler, added at the
    start of each test phase, would be gone for the rest of the test. Configured here, in
    the setup phase, it is not done again in the test's own run.
    """
    from kedro.framework.project import configure_project

    for package in ("spaceflights", "obs_demo"):
        configure_project(package)
    return caplog


@pytest.fixture
def relay(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The test server behind a relay that counts what clients send and can be cut."""
    relayed = TcpRelay(mlflow_server.port)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relayed.uri)
    yield relayed
    relayed.close()


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


def test_nodes_make_no_network_call_and_the_validation_reports_are_uploaded(
    sample_project: Path, relay: TcpRelay, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path  # noqa: F811
) -> None:
    from spaceflights import settings

    tracked = Tracked(sample_project, experiment_of(request), mlflow_server)
    configure_mlflow(sample_project, experiment_name=tracked.experiment)
    watch = Watch(probe=lambda: relay.bytes_from_clients)
    add_project_hook(monkeypatch, settings, watch)

    run_project(sample_project)

    opened, nodes_done = watch.readings
    assert opened > 0  # the run was opened through the relay before the first node
    assert nodes_done == opened  # not a byte while the nodes ran, loaded and saved
    run = tracked.only_run()
    assert run.info.status == "FINISHED"
    assert {f"node_duration_seconds.{name}" for name in NODES} <= set(run.data.metrics)
    artifacts = [each.path for each in tracked.client.list_artifacts(run.info.run_id)]
    assert artifacts == sorted([f"validation-{name}.json" for name in SUITES] + ["timeline.html", "timeline.png"])
    for name, operation in SUITES.items():
        report = json.loads(Path(tracked.client.download_artifacts(run.info.run_id, f"validation-{name}.json", str(tmp_path))).read_text())
        assert report["success"] is True
        kedro = report["meta"]["kedro"]
        assert (kedro["dataset"], kedro["operation"], kedro["policy"]) == (name, operation, "fail")
        assert kedro["suite_file"] == f"conf/base/expectations/{name}.yml"
        expected = len(yaml.safe_load((sample_project / "conf" / "base" / "expectations" / f"{name}.yml").read_text())[name]["expectations"])
        assert len(report["results"]) == expected


@pytest.mark.parametrize("runner", ["ThreadRunner", "ParallelRunner"])
def test_every_runner_gives_one_run_holding_every_node(on_server: Tracked, runner: str) -> None:
    configure_mlflow(on_server.project, experiment_name=on_server.experiment, registered_model_name=f"regressor-{runner}")

    run_project(on_server.project, runner=make_runner(runner))

    run = on_server.only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.runner"] == runner
    for name in NODES:
        assert run.data.metrics[f"node_duration_seconds.{name}"] > 0
        # Measured by the same hook object, in the runner's worker processes or threads.
        assert run.data.metrics[f"memory_peak_bytes.{name}"] > 0
    assert {"r2", "mae", "max_error", "dataset_rows.X_test"} <= set(run.data.metrics)
    assert len(run.inputs.dataset_inputs) == 3
    assert "kedro.fingerprint.shuttles.sha256" in run.data.tags
    # Validation reports recorded where the datasets were loaded and saved, in the same run.
    # Beside them, the run's timeline (test_traces).
    assert [each.path for each in on_server.client.list_artifacts(run.info.run_id)] == sorted([f"validation-{name}.json" for name in SUITES] + ["timeline.html", "timeline.png"])
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
    # 0.2 words the way out for any project, not only the stack's: point the variable (or
    # the setting) at a running server, or unset both for the local SQLite file.
    assert "point MLFLOW_TRACKING_URI (or mlflow.tracking_uri in observability.yml) at one that runs" in message
    assert "unset both to track to a local SQLite file inside the project" in message
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


def test_warn_mode_runs_on_and_spools_the_run(sample_project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    configure_mlflow(sample_project, on_unavailable="warn")
    uri = closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_project(sample_project)
    assert time.monotonic() - started < 60  # no MLflow retries waited out

    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()
    at_start, at_end = [record.getMessage() for record in caplog.records if "MLflow" in record.getMessage()]
    assert uri in at_start and "The run goes on (mlflow.on_unavailable: warn)" in at_start
    assert "the run itself: MLflow has never seen it" in at_end and "Kept for a replay in" in at_end
    assert list((sample_project / "data" / "observability-spool").glob("*/delivery.pkl"))
    local = MlflowClient(f"sqlite:///{sample_project / 'mlflow.db'}")  # no fallback to the local store either
    assert local.search_runs([each.experiment_id for each in local.search_experiments()]) == []


def test_without_a_server_the_run_goes_to_a_sqlite_file_in_the_project(sample_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = sample_project / "mlflow.db"
    database.unlink()  # the fixture's ready-made store: here the plugin must create its own

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


DEMO_ROWS = 5


def test_a_server_dying_mid_run_costs_seconds_and_the_outputs_are_still_written(
    demo_project: Path, relay: TcpRelay, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    from obs_demo import settings

    # The demo project turns MLflow off in conf/base; one key in conf/local turns it on. It
    # has no fingerprints dataset: the run gathers no tag for its end.
    tracked = Tracked(demo_project, experiment_of(request), mlflow_server)
    (demo_project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": {"enabled": True, "experiment_name": tracked.experiment}}))
    CSVDataset(filepath=str(demo_project / "data" / "raw_table.csv"), version=Version(None, "2024-01-01T00.00.00.000Z")).save(pd.DataFrame({"value": range(DEMO_ROWS)}))
    ran: list[str] = []

    def server_dies_with(name: str) -> None:
        ran.append(name)
        if name == "ns.copy_count":  # whose output, ns.row_count, is saved after this hook
            relay.close()

    watch = Watch(after_node=server_dies_with)
    add_project_hook(monkeypatch, settings, watch)
    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        run_project(demo_project)
    assert watch.nodes_done_at is not None
    elapsed = time.monotonic() - watch.nodes_done_at  # the plugin's end of the run, after every other hook's

    assert "ns.copy_count" in ran
    assert json.loads((demo_project / "data" / "row_count.json").read_text()) == DEMO_ROWS
    assert elapsed < 10
    (warning,) = [record.getMessage() for record in caplog.records if "is incomplete" in record.getMessage()]
    assert relay.uri in warning
    assert "metrics and 0 tags" in warning and "the run's status FINISHED (it stays RUNNING)" in warning
    # What the server got before it went away: the run and its start, nothing after.
    run = tracked.only_run()
    assert run.info.status == "RUNNING"
    assert not run.data.metrics


def test_a_runner_driven_without_a_session_tracks_to_the_given_settings(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path) -> None:  # noqa: F811
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the given settings name the server
    monkeypatch.chdir(tmp_path)
    experiment = experiment_of(request)
    settings = ObservabilitySettings(
        statsd=StatsdSettings(enabled=False),
        validation=ValidationSettings(enabled=False),
        mlflow=MlflowSettings(tracking_uri=mlflow_server.uri, experiment_name=experiment, metrics_dataset="score"),
    )
    hook_manager = _create_hook_manager()
    hook_manager.register(ObservabilityHooks(settings=settings))
    the_pipeline = pipeline(
        [
            node(lambda alpha: alpha * 2, "params:alpha", "doubled", name="double"),
            node(lambda doubled: {"score": doubled + 1}, "doubled", "score", name="score"),
        ]
    )
    catalog = DataCatalog({"params:alpha": MemoryDataset(0.25)})
    run_id = f"direct-{time.time_ns()}"
    run_params = {"run_id": run_id, "project_path": str(tmp_path), "env": None, "pipeline_names": None, "runner": "SequentialRunner", "kedro_version": __import__("kedro").__version__}

    hook_manager.hook.before_pipeline_run(run_params=run_params, pipeline=the_pipeline, catalog=catalog)
    SequentialRunner().run(the_pipeline, catalog, hook_manager)
    hook_manager.hook.after_pipeline_run(run_params=run_params, run_result={}, pipeline=the_pipeline, catalog=catalog)

    run = Tracked(tmp_path, experiment, mlflow_server).only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.run_id"] == run_id
    assert run.data.tags["kedro.runner"] == "SequentialRunner"
    assert run.data.params == {"alpha": "0.25"}
    assert run.data.metrics["score"] == 1.5
    for name in ("double", "score"):
        assert run.data.metrics[f"node_duration_seconds.{name}"] > 0
        assert run.data.metrics[f"memory_peak_bytes.{name}"] > 0
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default local store


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
