"""The team profile (docker-compose.team.yml) with its real parts on 127.0.0.1: a real
`mlflow server` whose backend store is a real PostgreSQL (Debian's, a throw-away cluster) and
whose artifacts go to a real S3-compatible server (SeaweedFS), served through MLflow's
artifact proxy (--serve-artifacts), as the overlay runs them.

Under each runner, a `kedro run` of the sample project that holds no storage credential
(only MLFLOW_TRACKING_URI) leaves a complete run: FINISHED in PostgreSQL's tables with its
params, metrics, tags and lineage, its artifacts and its model's files in the bucket (byte
sizes equal to what the server lists), the model registered; a second process, with no
storage credential either, loads the model back and predicts what the trained model does.
The bucket refuses unsigned reads: clients get the files through the server only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO, RUNNERS, make_runner, run_project
from mlflow_server import MlflowServer
from team_servers import PostgresServer, SeaweedS3

NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]
FEATURES = yaml.safe_load((REPO / "project" / "conf" / "base" / "parameters_data_science.yml").read_text())["model_options"]["features"]
BUCKET = "mlflow"
# As docker-compose.team.yml: --artifacts-destination s3://<bucket>/artifacts.
DESTINATION_PREFIX = "artifacts"
STORAGE_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL", "AWS_PROFILE")


@dataclass
class Team:
    postgres: PostgresServer
    s3: SeaweedS3
    server: MlflowServer

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.server.uri)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    started: list = []
    try:
        postgres = PostgresServer()
        started.append(postgres)
        access_key, secret_key = "team-profile-test-key", "team-profile-test-secret-0123456789"
        s3 = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), access_key, secret_key, BUCKET)
        started.append(s3)
        server = MlflowServer(
            tmp_path_factory.mktemp("mlflow-team"),
            backend_store_uri=postgres.uri,
            artifacts_destination=f"s3://{BUCKET}/{DESTINATION_PREFIX}",
            # Only the server holds the storage credentials, as in the overlay.
            environment={"MLFLOW_S3_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
        )
        started.append(server)
        yield Team(postgres, s3, server)
    finally:
        for each in reversed(started):
            each.stop()


def bucket_key(artifact_uri: str) -> str:
    """The bucket key of an artifact the proxy names mlflow-artifacts:/<path>."""
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    return f"{DESTINATION_PREFIX}/{artifact_uri.removeprefix('mlflow-artifacts:/').strip('/')}"


def listed_files(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    """path -> size of every run artifact the server lists, recursively."""
    found: dict[str, int] = {}
    for each in client.list_artifacts(run_id, path):
        if each.is_dir:
            found |= listed_files(client, run_id, each.path)
        else:
            found[each.path] = each.file_size
    return found


def test_the_server_runs_on_postgresql_and_the_bucket(team: Team) -> None:
    tables = {row[0] for row in team.postgres.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"experiments", "runs", "params", "metrics", "tags", "registered_models", "model_versions", "alembic_version"} <= tables
    assert team.s3.keys() == {}, "nothing is written to the bucket before a run"


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_leaves_a_complete_run_in_postgresql_and_the_bucket(
    team: Team, sample_project: Path, monkeypatch: pytest.MonkeyPatch, runner: str, tmp_path: Path
) -> None:
    for variable in STORAGE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.server.uri)
    experiment, registered = f"team-{runner}", f"team-regressor-{runner}"
    (sample_project / "conf" / "local" / "observability.yml").write_text(
        yaml.safe_dump({"mlflow": {"experiment_name": experiment, "registered_model_name": registered}})
    )

    run_project(sample_project, runner=make_runner(runner))

    client = team.client
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.runner"] == runner
    for name in NODES:
        assert run.data.metrics[f"node_duration_seconds.{name}"] > 0
        assert run.data.metrics[f"memory_peak_bytes.{name}"] > 0
    assert {"r2", "mae", "max_error"} <= set(run.data.metrics)
    assert json.loads(run.data.params["model_options.features"]) == FEATURES
    assert len(run.inputs.dataset_inputs) == 3

    # It is PostgreSQL that holds it.
    assert team.postgres.query(f"SELECT status FROM runs WHERE run_uuid = '{run_id}'") == [("FINISHED",)]
    [(params,)] = team.postgres.query(f"SELECT count(*) FROM params WHERE run_uuid = '{run_id}'")
    assert params == len(run.data.params)
    [(metrics,)] = team.postgres.query(f"SELECT count(DISTINCT key) FROM latest_metrics WHERE run_uuid = '{run_id}'")
    assert metrics == len(run.data.metrics)

    # The run's artifacts are in the bucket, byte for byte what the server lists.
    files = listed_files(client, run_id)
    assert files, "the run has no artifact"
    prefix = bucket_key(run.info.artifact_uri)
    in_bucket = team.s3.keys(prefix + "/")
    assert {f"{prefix}/{path}": size for path, size in files.items()} == in_bucket
    # And the model's files, under its own location.
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    model_files = team.s3.keys(bucket_key(logged.artifact_location) + "/")
    assert {"MLmodel", "requirements.txt", "input_example.json"} <= {key.rsplit("/", 1)[1] for key in model_files}
    assert all(size > 0 for key, size in model_files.items() if key.endswith("MLmodel"))
    # Unsigned, the bucket gives nothing: clients read through the server's proxy only.
    assert team.s3.anonymous_get(next(iter(model_files))) == 403

    (version,) = client.search_model_versions(f"name = '{registered}'")
    assert version.run_id == run_id
    assert team.postgres.query(f"SELECT run_id FROM model_versions WHERE name = '{registered}'") == [(run_id,)]

    # Another process, with the server's address only, loads the model back.
    model_input = pd.read_parquet(sample_project / "data" / "03_primary" / "model_input_table.parquet")[FEATURES].astype(float).head(10)
    rows = tmp_path / "rows.json"
    model_input.to_json(rows, orient="split")
    environment = {key: value for key, value in os.environ.items() if key not in STORAGE_VARIABLES}
    environment.update(MLFLOW_TRACKING_URI=team.server.uri, MLFLOW_DISABLE_TELEMETRY="true")
    script = (
        "import sys, json, pandas as pd, mlflow.sklearn\n"
        f"model = mlflow.sklearn.load_model('models:/{registered}/{version.version}')\n"
        f"rows = pd.read_json({str(rows)!r}, orient='split')\n"
        "print(json.dumps([float(value) for value in model.predict(rows)]))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    predicted = json.loads(loaded.stdout.strip().splitlines()[-1])
    trained = pd.read_pickle(next((sample_project / "data" / "06_models" / "regressor.pickle").glob("*/regressor.pickle")))
    assert predicted == pytest.approx(list(trained.predict(model_input)))
