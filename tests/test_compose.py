"""docker-compose.yml, checked by a real Compose v2 without a Docker engine.

`docker-compose config` resolves the file (interpolation from an env file, defaults,
required variables, paths) exactly as `docker compose up` would, and needs no engine. The
binary is <repo>/.tools/docker-compose (tests/tools/install-compose.sh installs it from
Debian 13's package) or `docker-compose` on PATH; without it these tests FAIL.

On the resolved model: services, images, ports and healthchecks as CONTRACT.md says
(its services table is parsed), images pinned,
ports on 127.0.0.1, kedro waiting for healthy services, named volumes for the data,
configuration mounted read-only, every mounted or built path present, every variable
documented in .env.example.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTRACT = REPO / "CONTRACT.md"
COMPOSE_FILE = REPO / "docker-compose.yml"
HOST_STATSD_FILE = REPO / "docker-compose.host-statsd.yml"
ENV_EXAMPLE = REPO / ".env.example"
INSTALL_HINT = "bash tests/tools/install-compose.sh (installs Compose v2 into .tools/)"

# What each healthcheck may call, by image. Nothing can be pulled here, so this records
# what the images' own Dockerfiles install:
# - prom/prometheus and prom/statsd-exporter: FROM quay.io/prometheus/busybox (busybox
#   wget; statsd_exporter's Dockerfile HEALTHCHECK itself runs wget);
# - grafana/grafana: its Dockerfile runs `apk add ... curl ...` (Alpine) or
#   `apt-get install ... curl ...` (Ubuntu variant);
# - ghcr.io/mlflow/mlflow: FROM python:3.x-slim + `pip install mlflow`: Python, no curl/wget;
# - our kedro image: python:3.11-slim (project/Dockerfile).
HEALTHCHECK_TOOLS = {
    "prom/statsd-exporter": {"wget"},
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"curl", "wget"},
    "ghcr.io/mlflow/mlflow": {"python", "python3"},
    "kedro": {"python", "python3"},
}
# Where each service keeps the data that must survive `docker compose down`.
DATA_DIRS = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana", "mlflow": "/mlflow"}
MLFLOW_FLAGS = [
    "--host 0.0.0.0", "--port 5000", "--workers 1", "--backend-store-uri sqlite:////mlflow/mlflow.db",
    "--artifacts-destination /mlflow/artifacts", "--serve-artifacts",
]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def compose_binary() -> str:
    """The Compose v2 binary; FAILS the calling test when there is none."""
    candidates = [REPO / ".tools" / "docker-compose"]
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            version = subprocess.run([str(candidate), "version", "--short"], capture_output=True, text=True)
            if version.returncode == 0 and re.match(r"v?2\.", version.stdout.strip()):
                return str(candidate)
    pytest.fail(
        f"No Compose v2 binary at {REPO / '.tools' / 'docker-compose'} or as docker-compose on PATH "
        f"(Debian 12's docker-compose is the old v1): run {INSTALL_HINT}",
        pytrace=False,
    )


def clean_env() -> dict[str, str]:
    """The process environment without anything compose would interpolate from it."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL")
    return {name: os.environ[name] for name in keep if name in os.environ}


def run_compose(*args: str, env_file: Path | None = None, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> subprocess.CompletedProcess[str]:
    command = [compose_binary()]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    command += ["--project-directory", str(REPO), *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=60)


TEST_PASSWORD = "a-test-password-for-compose-config"


@cache
def filled_env_file() -> Path:
    """.env.example with the one value the user must fill in, as the quickstart says."""
    path = Path(tempfile.mkdtemp(prefix="kos-compose-")) / ".env"
    path.write_text(with_password(ENV_EXAMPLE.read_text()))
    return path


def with_password(example: str) -> str:
    return re.sub(r"^GRAFANA_ADMIN_PASSWORD=.*$", f"GRAFANA_ADMIN_PASSWORD={TEST_PASSWORD}", example, flags=re.MULTILINE)


@cache
def resolved() -> dict[str, Any]:
    """`docker-compose config` of the file with .env.example's values, as JSON."""
    result = run_compose("config", "--format", "json", env_file=filled_env_file())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def env_example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2]
    return values


def contract_services() -> dict[str, dict[str, str]]:
    """service -> {image, inside, published}, from the contract's services table."""
    section = CONTRACT.read_text().split("## Services", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("service", "") and not set(cells[0]) <= {"-", " "}:
            rows[cells[0]] = {"image": cells[1], "inside": cells[2], "published": cells[3]}
    assert len(rows) >= 5, f"could not parse the services table of {CONTRACT}: {rows}"
    return rows


def split_image(image: str) -> tuple[str, str]:
    assert "@" not in image or ":" in image.split("@")[0], image
    name, _, tag = image.split("@")[0].rpartition(":")
    return name, tag


def mlflow_requirement() -> str:
    match = re.search(r"^mlflow==([0-9][^\s;#]*)", (REPO / "project" / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert match, "project/requirements.txt pins no mlflow=="
    return match[1]


def version_tuple(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"v?(\d+)\.(\d+)\.(\d+)$", tag).groups())


# ---------------------------------------------------------------------------
# Compose accepts the file, and refuses it without the Grafana password
# ---------------------------------------------------------------------------


def test_compose_binary_is_v2() -> None:
    version = subprocess.run([compose_binary(), "version", "--short"], capture_output=True, text=True, check=True)
    assert re.match(r"v?2\.\d+", version.stdout.strip()), version.stdout


def test_config_is_valid_with_the_env_example_once_the_password_is_set() -> None:
    result = run_compose("config", "-q", env_file=filled_env_file())
    assert result.returncode == 0, result.stderr


def test_the_env_example_as_is_has_no_usable_password() -> None:
    """No default password: a copied .env.example must be edited before the stack starts."""
    assert env_example_values()["GRAFANA_ADMIN_PASSWORD"] == ""
    result = run_compose("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_config_is_valid_with_the_host_statsd_overlay() -> None:
    result = run_compose("config", "--format", "json", env_file=filled_env_file(), files=(COMPOSE_FILE, HOST_STATSD_FILE))
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["statsd-exporter"]["ports"]
    assert [(port["host_ip"], port["target"], port["protocol"]) for port in ports] == [("127.0.0.1", 9125, "udp")]


@pytest.mark.parametrize("password_line", ["", "GRAFANA_ADMIN_PASSWORD="], ids=["missing", "empty"])
def test_config_fails_and_names_the_grafana_password_without_it(tmp_path: Path, password_line: str) -> None:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("GRAFANA_ADMIN_PASSWORD=")]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([*lines, password_line]) + "\n")

    result = run_compose("config", "-q", env_file=env_file)

    assert result.returncode != 0, "compose accepted the file without GRAFANA_ADMIN_PASSWORD"
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
    assert ".env" in result.stderr, "the message should say where to set it"


def test_a_dot_env_copied_from_the_example_is_picked_up(tmp_path: Path) -> None:
    """The quickstart: `cp .env.example .env`, set the password, no --env-file."""
    copy = tmp_path / "stack"
    copy.mkdir()
    shutil.copy(COMPOSE_FILE, copy / "docker-compose.yml")
    (copy / ".env").write_text(with_password(ENV_EXAMPLE.read_text()))
    result = subprocess.run(
        [compose_binary(), "-f", "docker-compose.yml", "config", "--format", "json"],
        capture_output=True, text=True, env=clean_env(), cwd=copy, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    grafana = json.loads(result.stdout)["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == TEST_PASSWORD


# ---------------------------------------------------------------------------
# The resolved model against CONTRACT.md
# ---------------------------------------------------------------------------


def test_services_are_exactly_the_contracts() -> None:
    assert set(resolved()["services"]) == set(contract_services())


@pytest.mark.parametrize("service", sorted(contract_services()))
def test_service_image_and_ports_follow_the_contract(service: str) -> None:
    row = contract_services()[service]
    config = resolved()["services"][service]

    if row["image"].startswith("built from "):
        dockerfile = row["image"].removeprefix("built from ").strip()
        build = config["build"]
        assert Path(build["context"], build["dockerfile"]) == REPO / dockerfile
    else:
        name, tag = split_image(config["image"])
        assert name == row["image"], config["image"]
        assert tag, f"{service}: image {config['image']} has no tag"

    published = sorted((port["host_ip"], str(port["published"]), port["target"]) for port in config.get("ports", []))
    if row["published"].startswith("nothing"):
        assert published == [], f"{service} publishes {published}, the contract says nothing"
    else:
        host, port = row["published"].rsplit(":", 1)
        assert published == [(host, port, int(port))], published

    inside = set(re.findall(r"(\d+)(/udp)?", row["inside"]))
    exposed = {(str(port["target"]), "/udp" if port.get("protocol") == "udp" else "") for port in config.get("ports", [])}
    for item in config.get("expose", []):
        number, _, protocol = str(item).partition("/")
        exposed.add((number, "/udp" if protocol == "udp" else ""))
    assert inside <= exposed, f"{service}: the contract's ports {inside} are not all exposed ({exposed})"


def test_images_are_pinned_to_exact_tags_and_versions() -> None:
    services = resolved()["services"]
    tags = {}
    for service, config in services.items():
        name, tag = split_image(config["image"])
        assert tag and tag != "latest", f"{service}: {config['image']}"
        assert re.match(r"v?\d+\.\d+\.\d+$", tag), f"{service}: {config['image']} is not an exact version"
        tags[name] = tag
    assert version_tuple(tags["prom/prometheus"])[0] == 3
    assert version_tuple(tags["prom/statsd-exporter"]) >= (0, 28, 0)
    assert version_tuple(tags["grafana/grafana"]) >= (12, 0, 0)
    assert "grafana/grafana-oss" not in tags
    assert tags["ghcr.io/mlflow/mlflow"] == f"v{mlflow_requirement()}", "the MLflow server and client versions differ"


@pytest.mark.parametrize("service", ["statsd-exporter", "prometheus", "grafana", "mlflow", "kedro"])
def test_long_running_services_have_a_healthcheck_with_a_tool_their_image_has(service: str) -> None:
    config = resolved()["services"][service]
    check = config.get("healthcheck") or {}
    assert not check.get("disable"), service
    test = check.get("test")
    assert test and test[0] in ("CMD", "CMD-SHELL"), f"{service} has no healthcheck"
    tool = test[1].split()[0] if test[0] == "CMD-SHELL" else test[1]
    image = "kedro" if "build" in config else split_image(config["image"])[0]
    assert Path(tool).name in HEALTHCHECK_TOOLS[image], f"{service}: {tool} is not known to exist in {image}"
    assert config.get("restart") in ("unless-stopped", "always"), f"{service} has no restart policy"


def test_kedro_waits_for_every_other_service_to_be_healthy() -> None:
    services = resolved()["services"]
    depends = services["kedro"]["depends_on"]
    assert set(depends) == set(services) - {"kedro"}
    assert {item["condition"] for item in depends.values()} == {"service_healthy"}


def test_data_lives_in_named_volumes() -> None:
    model = resolved()
    declared = set(model.get("volumes", {}))
    for service, path in DATA_DIRS.items():
        mounts = [m for m in model["services"][service]["volumes"] if m["target"] == path]
        assert mounts and mounts[0]["type"] == "volume", f"{service}: {path} is not on a named volume"
        assert mounts[0]["source"] in declared
        assert not mounts[0].get("read_only")


def test_every_bind_mount_is_read_only_and_exists() -> None:
    binds = [(service, mount) for service, config in resolved()["services"].items() for mount in config.get("volumes", []) if mount["type"] == "bind"]
    assert binds
    for service, mount in binds:
        source = Path(mount["source"])
        assert mount.get("read_only") is True, f"{service}: {source} is not mounted read-only"
        assert source.exists(), f"{service} mounts {source}, which does not exist"
        assert REPO in source.parents, f"{service} mounts {source} from outside the repository"


def test_prometheus_mounts_match_its_config() -> None:
    mounts = {m["target"]: Path(m["source"]) for m in resolved()["services"]["prometheus"]["volumes"] if m["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"] == REPO / "prometheus" / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == REPO / "prometheus" / "rules"
    command = " ".join(resolved()["services"]["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert "--storage.tsdb.path=/prometheus" in command


def test_statsd_exporter_uses_the_repos_mapping() -> None:
    config = resolved()["services"]["statsd-exporter"]
    mounts = {m["target"]: Path(m["source"]) for m in config["volumes"]}
    flag = next(arg for arg in config["command"] if arg.startswith("--statsd.mapping-config="))
    assert mounts[flag.split("=", 1)[1]] == REPO / "statsd-exporter" / "mapping.yml"


def test_build_context_and_dockerfile_exist() -> None:
    build = resolved()["services"]["kedro"]["build"]
    assert (Path(build["context"]) / build["dockerfile"]).is_file()
    assert (Path(build["context"]) / ".dockerignore").is_file()


def test_grafana_is_secure_by_default() -> None:
    environment = resolved()["services"]["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == TEST_PASSWORD
    raw = COMPOSE_FILE.read_text()
    assert re.search(r"GF_SECURITY_ADMIN_PASSWORD: \$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", raw), "the password must be required"
    assert "admin/admin" not in raw


def test_no_service_runs_as_root_by_choice() -> None:
    for service, config in resolved()["services"].items():
        assert str(config.get("user", "")).split(":")[0] not in ("root", "0"), service


def test_mlflow_server_command_and_environment() -> None:
    config = resolved()["services"]["mlflow"]
    command = " ".join(config["command"])
    assert command.startswith("mlflow server")
    for flag in MLFLOW_FLAGS:
        assert flag in command, flag
    hosts = config["command"][config["command"].index("--allowed-hosts") + 1].split(",")
    assert {"mlflow:5000", "127.0.0.1:5000", "localhost:5000"} <= set(hosts), "the kedro service, healthcheck and browser must be allowed"
    assert config["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_mlflow_flags_exist_in_the_pinned_mlflow() -> None:
    """The flags are checked against `mlflow server --help` of project/requirements.txt's MLflow."""
    import importlib.metadata

    assert importlib.metadata.version("mlflow") == mlflow_requirement(), "the venv's MLflow is not the pinned one"
    mlflow = Path(os.sys.executable).with_name("mlflow")
    help_text = subprocess.run([str(mlflow), "server", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ["--host", "--port", "--workers", "--backend-store-uri", "--artifacts-destination", "--serve-artifacts", "--allowed-hosts"]:
        assert re.search(rf"(^|\s){flag}[\s/]", help_text), flag


def test_kedro_service_environment() -> None:
    config = resolved()["services"]["kedro"]
    environment = config["environment"]
    assert environment["KEDRO_DISABLE_TELEMETRY"] == "true"
    assert environment["STATSD_HOST"] == "statsd-exporter"
    assert environment["STATSD_PORT"] == "9125"
    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert environment["KEDRO_RUN_INTERVAL"] == "60"
    assert config.get("init") is True, "tini forwards docker's SIGTERM to the loop"
    assert not config.get("command"), "the image's CMD (the run loop) is the default"


def test_every_variable_is_documented_in_the_env_example() -> None:
    used = set()
    for file in (COMPOSE_FILE, HOST_STATSD_FILE):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", file.read_text()))
    # Secrets read from the environment (the alert receivers'), which .env fills in too.
    used |= {secret["environment"] for secret in resolved().get("secrets", {}).values() if "environment" in secret}
    documented = env_example_values()
    assert used - set(documented) == set(), "variables missing from .env.example"
    assert set(documented) - used == set(), ".env.example documents variables nothing reads"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert lines[index - 1].startswith("#"), f".env.example: {line} has no comment above it"


def test_mlflow_client_and_server_are_the_same_version() -> None:
    """The MLflow client the project pins, the range the plugin allows, the installed client and
    every service on the MLflow image (the server, and alert-log which runs on its Python)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pinned = mlflow_requirement()
    images = {service: config["image"] for service, config in resolved()["services"].items() if split_image(config.get("image", ""))[0] == "ghcr.io/mlflow/mlflow"}
    assert "mlflow" in images
    assert {service: split_image(image)[1] for service, image in images.items()} == {service: f"v{pinned}" for service in images}, (
        f"project/requirements.txt pins mlflow=={pinned}; docker-compose.yml runs {images}"
    )
    pyproject = (REPO / "project" / "kedro-observability" / "pyproject.toml").read_text()
    ranges = [Requirement(each) for each in re.findall(r'"(mlflow[<>=!~][^"]*)"', pyproject)]
    assert ranges, "the plugin's pyproject.toml declares no mlflow requirement"
    for requirement in ranges:
        assert Version(pinned) in requirement.specifier, f"the plugin's {requirement} excludes the pinned mlflow {pinned}"
    import importlib.metadata

    assert importlib.metadata.version("mlflow") == pinned, "the venv's MLflow is not the pinned one"


def test_dot_env_is_ignored_by_git() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
