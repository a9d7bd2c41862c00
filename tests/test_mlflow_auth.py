"""MLflow behind its basic-auth app, as docker-compose.yml runs it, with a real server.

The server is started from the compose model itself (tests/test_compose.py resolves it with the
real Compose binary): the mlflow service's entrypoint (project/docker/with_secrets.py) and
command (`mlflow server --app-name basic-auth ... --workers 1`), its environment (job execution
off, telemetry off, the auth config and the CSRF key from files), on the files the credentials
service's generator (credentials/credentials.py) writes, run first with the service's own
environment. Only the container's paths become temporary folders, the host 127.0.0.1 and the
port a free one.

Then: a request without credentials, or with wrong ones, is refused (401) while /health, which
the compose healthcheck asks, answers; a real `kedro run` of the sample project, started the way
the kedro image starts it (with_secrets.py turning MLFLOW_TRACKING_PASSWORD__FILE into
MLFLOW_TRACKING_PASSWORD), logs a complete run; wrong or missing credentials stop the run before
the first node with a message that says so and what to set.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, run_project
from local_servers import free_port, stop_process_group, wait_until_answering
from test_compose import SECRETS_DIR, resolved
from test_credentials import generated, generator_environment

START_TIMEOUT = 120.0
NODES = ["fingerprint_raw_data", "preprocess_companies", "preprocess_shuttles", "create_model_input_table", "split_data", "train_model", "evaluate_model"]
SUITES = {"companies": "load", "shuttles": "load", "reviews": "load", "model_input_table": "save"}
FEATURES = yaml.safe_load((REPO / "project" / "conf" / "base" / "parameters_data_science.yml").read_text())["model_options"]["features"]


class ComposeMlflow:
    """The compose mlflow service as a local process, in its own process group."""

    def __init__(self, volumes: Path) -> None:
        model = resolved()
        service = model["services"]["mlflow"]
        generated(generator_environment(volumes))
        self.volumes = volumes
        self.secrets = volumes / "credentials"
        # Where the service's container paths are here: its volumes, and its bind mounts' sources.
        self.paths = {"/mlflow": volumes / "mlflow-data", SECRETS_DIR: self.secrets / "mlflow"}
        binds = {mount["target"]: mount["source"] for mount in service["volumes"] if mount["type"] == "bind"}
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"

        command = [binds.get(argument, self.local(argument)) for argument in [*service["entrypoint"], *service["command"]]]
        assert command[0] == "python"
        command[0] = sys.executable
        for flag, value in (("--host", "127.0.0.1"), ("--port", str(self.port))):
            command[command.index(flag) + 1] = value
        hosts = command.index("--allowed-hosts") + 1
        command[hosts] = command[hosts].replace(":5000", f":{self.port}")
        self.command = command

        environment = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
        environment |= {name: self.local(value) for name, value in service["environment"].items()}
        # `mlflow` of this virtualenv, as the image's is on its PATH.
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        self.environment = environment
        self.log_path = volumes / "server.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=volumes / "mlflow-data", env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_answering(self.process, f"{self.uri}/health", START_TIMEOUT, self.log_tail)
        except BaseException:
            self.stop()
            raise

    def local(self, value: str) -> str:
        for container, here in self.paths.items():
            value = value.replace(f"{container}/", f"{here}/")
        return value

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def admin(self) -> tuple[str, str]:
        """The login the kedro service uses: its MLFLOW_TRACKING_USERNAME, and the password file
        the generator wrote for it."""
        username = resolved()["services"]["kedro"]["environment"]["MLFLOW_TRACKING_USERNAME"]
        return username, (self.secrets / "kedro" / "mlflow_tracking_password").read_text()

    def stop(self) -> None:
        stop_process_group(self.process, timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeMlflow]:
    started = ComposeMlflow(tmp_path_factory.mktemp("compose-mlflow"))
    try:
        yield started
    finally:
        started.stop()


def request(url: str, method: str = "GET", body: Any = None, auth: tuple[str, str] | None = None) -> tuple[int, Any, str]:
    """(status, headers (case-insensitive), body)"""
    data = json.dumps(body).encode() if body is not None else None
    message = urllib.request.Request(url, data=data, method=method)
    message.add_header("Content-Type", "application/json")
    if auth:
        message.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(message, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode(errors="replace")


# ---------------------------------------------------------------------------
# the server refuses what has no valid login
# ---------------------------------------------------------------------------


def test_the_server_runs_the_compose_command_with_the_auth_app(server: ComposeMlflow) -> None:
    assert server.command[1].endswith("project/docker/with_secrets.py")
    assert server.command[2:6] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert server.command[server.command.index("--workers") + 1] == "1"
    assert server.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert server.environment["MLFLOW_DISABLE_TELEMETRY"] == "true"
    # The auth app's users are kept in MLflow's data volume (`down -v` forgets them).
    assert (server.volumes / "mlflow-data" / "basic_auth.db").is_file()


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=10", None),
        ("POST", "/api/2.0/mlflow/experiments/create", {"name": "intruder"}),
        ("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": "0"}),
        ("GET", "/", None),
        ("GET", "/ajax-api/2.0/mlflow/registered-models/search", None),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", None),
    ],
)
@pytest.mark.parametrize("login", ["none", "wrong password", "unknown user"])
def test_a_request_without_a_valid_login_is_refused(server: ComposeMlflow, method: str, path: str, body: Any, login: str) -> None:
    auth = {"none": None, "wrong password": (server.admin[0], server.admin[1] + "x"), "unknown user": ("mallory", server.admin[1])}[login]
    status, headers, text = request(server.uri + path, method, body, auth)
    assert status == 401, text
    assert headers.get("WWW-Authenticate") == 'Basic realm="mlflow"'
    status, _, text = request(f"{server.uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=intruder", auth=server.admin)
    assert status == 404, "nothing was created"


def test_the_admin_login_the_kedro_service_uses_is_accepted(server: ComposeMlflow) -> None:
    status, _, text = request(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=10", auth=server.admin)
    assert status == 200, text
    status, _, text = request(f"{server.uri}/api/2.0/mlflow/users/get?username={server.admin[0]}", auth=server.admin)
    assert status == 200 and json.loads(text)["user"]["is_admin"] is True, text


def test_the_compose_healthcheck_passes_without_credentials(server: ComposeMlflow) -> None:
    """/health is the one route left open: the healthcheck, run as compose runs it, is green."""
    check = resolved()["services"]["mlflow"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    command = [sys.executable, *[part.replace("127.0.0.1:5000", f"127.0.0.1:{server.port}") for part in check[2:]]]
    assert subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
    assert request(f"{server.uri}/health")[0] == 200


def test_a_password_is_changed_through_the_api_as_env_example_says(server: ComposeMlflow) -> None:
    """.env.example: after the first start, a user's new password goes through users/update-password
    with the user's own login and current password (the command it shows, as JSON)."""
    user, old, new = "rotating-user", "first-password-123", "second-password-456"
    status, _, text = request(f"{server.uri}/api/2.0/mlflow/users/create", "POST", {"username": user, "password": old}, auth=server.admin)
    assert status == 200, text
    example = (REPO / ".env.example").read_text()
    documented = json.loads(example.split("-d '", 1)[1].split("'", 1)[0].replace("admin", user).replace("NEW_PASSWORD", new).replace("OLD_PASSWORD", old))
    assert "/api/2.0/mlflow/users/update-password" in example and "-X PATCH" in example
    status, _, text = request(f"{server.uri}/api/2.0/mlflow/users/update-password", "PATCH", documented, auth=(user, old))
    assert status == 200, text
    probe = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert request(probe, auth=(user, new))[0] == 200
    assert request(probe, auth=(user, old))[0] == 401


# ---------------------------------------------------------------------------
# a kedro run with the credentials, and without
# ---------------------------------------------------------------------------


def kedro(project: Path, server: ComposeMlflow, *arguments: str, password_file: Path) -> subprocess.CompletedProcess[str]:
    """`kedro run` as the kedro image starts it: its entrypoint with_secrets.py, the service's
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD__FILE."""
    service = resolved()["services"]["kedro"]["environment"]
    assert service["MLFLOW_TRACKING_PASSWORD__FILE"] == f"{SECRETS_DIR}/mlflow_tracking_password"
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "STATSD_"))}
    environment |= {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": service["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD__FILE": str(password_file),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    entrypoint = REPO / "project" / "docker" / "with_secrets.py"
    return subprocess.run([sys.executable, str(entrypoint), "kedro", "run", *arguments], cwd=project, env=environment, capture_output=True, text=True, timeout=600, check=False)


def test_a_kedro_run_with_the_credentials_logs_a_complete_run(sample_project: Path, server: ComposeMlflow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    experiment = "with-credentials"
    (sample_project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump({"mlflow": {"experiment_name": experiment}}))
    password_file = server.secrets / "kedro" / "mlflow_tracking_password"
    for arguments in (("--pipeline", "data_generation"), ()):
        result = kedro(sample_project, server, *arguments, password_file=password_file)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    username, password = server.admin
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(server.uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    [run] = [each for each in found if each.data.tags.get("kedro.pipeline") == "__default__"]
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model_options.test_size": "0.2", "model_options.random_state": "3", "model_options.features": json.dumps(FEATURES)}
    evaluation = json.loads((sample_project / "data" / "08_reporting" / "metrics.json").read_text())
    assert {key: run.data.metrics[key] for key in evaluation} == pytest.approx(evaluation)
    assert {f"node_duration_seconds.{name}" for name in NODES} <= set(run.data.metrics)
    assert {"kedro.run_id", "kedro.env", "kedro.version", "kedro.runner"} <= set(run.data.tags)
    assert [each.path for each in client.list_artifacts(run.info.run_id)] == sorted([*(f"validation-{name}.json" for name in SUITES), "timeline.html", "timeline.png"])
    (output,) = client.get_run(run.info.run_id).outputs.model_outputs
    model = mlflow.sklearn.load_model(f"models:/{output.model_id}")
    assert len(model.coef_) == len(FEATURES)
    # The artifacts went through the server (--serve-artifacts), into its data volume.
    assert list((server.volumes / "mlflow-data" / "artifacts").rglob("validation-shuttles.json"))


@pytest.mark.parametrize("login", ["wrong password", "no credentials"])
def test_wrong_or_missing_credentials_stop_the_run_before_the_first_node(sample_project: Path, server: ComposeMlflow, monkeypatch: pytest.MonkeyPatch, login: str) -> None:
    from kedro_observability import MlflowTrackingError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    if login == "wrong password":
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.admin[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)

    started = time.monotonic()
    with pytest.raises(MlflowTrackingError) as raised:
        run_project(sample_project, pipeline_names=["data_generation"])
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert f"MLflow tracking at {server.uri} refused the credentials" in message
    assert "401" in message
    assert "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in message
    assert "docker compose run --rm credentials show" in message
    assert "start the server" not in message.lower() and "docker compose up -d mlflow" not in message
    assert elapsed < 15
    assert not list((sample_project / "data").rglob("*.csv")), "no node ran"
