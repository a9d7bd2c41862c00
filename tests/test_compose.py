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

Issue 17, with no .env at all, with .env.example as it is and with a .env that sets values:
`docker compose up` needs no .env and no shared password (the credentials service generates
them into volumes; each service reads its own from a file on a read-only volume), MLflow runs
its basic-auth app, every service is hardened (no capabilities but what it needs,
no-new-privileges, read-only root filesystem, tmpfs where needed, a non-root user) and has its
telemetry off. tests/test_credentials.py runs the generator itself, tests/test_mlflow_auth.py
the MLflow server as this file starts it.
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
# - our images are judged by their FROM: mlflow/Dockerfile (the MLflow image), project/Dockerfile
#   (python:3.11-slim).
HEALTHCHECK_TOOLS = {
    "prom/statsd-exporter": {"wget"},
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"curl", "wget"},
    "ghcr.io/mlflow/mlflow": {"python", "python3"},
    "python": {"python", "python3"},
}
# Where each service keeps the data that must survive `docker compose down`.
DATA_DIRS = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana", "mlflow": "/mlflow", "alertmanager": "/alertmanager", "kedro": "/app/data"}
MLFLOW_FLAGS = [
    "--app-name basic-auth",
    "--host 0.0.0.0", "--port 5000", "--workers 1", "--backend-store-uri sqlite:////mlflow/mlflow.db",
    "--artifacts-destination /mlflow/artifacts", "--serve-artifacts",
]
MLFLOW_DOCKERFILE = REPO / "mlflow" / "Dockerfile"
KEDRO_DOCKERFILE = REPO / "project" / "Dockerfile"
CREDENTIALS_SCRIPT = REPO / "credentials" / "credentials.py"
# The one-shot service that generates the credentials; every other service runs for good.
ONE_SHOT = "credentials"
# The user each service runs as: each image's own where it has one (prom/* images: nobody;
# grafana/grafana: grafana, uid 472 in group 0, its Dockerfile's GF_UID and GF_GID), the users
# our Dockerfiles create (mlflow/Dockerfile: 10002, project/Dockerfile: 10001), nobody for
# alert-log (it writes nothing). The credentials service alone runs as its image's root, with
# CAP_CHOWN only: it hands each file to its reader.
USERS = {
    "statsd-exporter": "65534:65534",
    "prometheus": "65534:65534",
    "alertmanager": "65534:65534",
    "alert-log": "65534:65534",
    "grafana": "472",
    "mlflow": "10002:10002",
    "kedro": "10001:10001",
}
# The capabilities each service gets back after cap_drop: [ALL]. None binds a port below 1024.
CAPABILITIES = {service: [] for service in USERS} | {ONE_SHOT: ["CHOWN"]}
# Writable tmpfs on a read-only root: Grafana stages plugin downloads in /tmp; MLflow and the
# plugin (run records, validation reports) use temporary files; the kedro loop's heartbeat.
TMPFS = {"grafana": ["/tmp"], "mlflow": ["/tmp"], "kedro": ["/tmp"]}
# Which service reads which credentials volume, and where (credentials.py's READER_FILES).
SECRET_VOLUMES = {"grafana": "grafana-secrets", "mlflow": "mlflow-secrets", "kedro": "kedro-secrets", "alertmanager": "alertmanager-secrets"}
SECRETS_DIR = "/run/secrets"
# The env files every model test runs under: none at all (the one-command start), the example
# as it is, and one that sets the logins.
ENV_CASES = ["no .env", ".env.example", ".env with values"]


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
            version = subprocess.run([str(candidate), "version", "--short"], check=False, capture_output=True, text=True)
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
    return subprocess.run(command, check=False, capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=60)


TEST_PASSWORD = "a-test-password-for-compose-config"
TEST_VALUES = {
    "GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD,
    "GRAFANA_SECRET_KEY": "a-test-secret-key-for-grafana",
    "MLFLOW_ADMIN_USER": "tracker",
    "MLFLOW_ADMIN_PASSWORD": "a-test-password-for-mlflow",
}


def with_values(example: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        example, count = re.subn(rf"^{name}=.*$", f"{name}={value}", example, flags=re.MULTILINE)
        assert count == 1, f".env.example has no line {name}="
    return example


@cache
def env_file(case: str) -> Path | None:
    """The env file of a case; None for no .env at all."""
    if case == "no .env":
        return None
    path = Path(tempfile.mkdtemp(prefix="kos-compose-")) / ".env"
    path.write_text(ENV_EXAMPLE.read_text() if case == ".env.example" else with_values(ENV_EXAMPLE.read_text(), TEST_VALUES))
    return path


@cache
def resolved(case: str = ".env.example") -> dict[str, Any]:
    """`docker-compose config` of the file as JSON: with .env.example's values by default.

    With no .env at all, compose runs in a folder that mirrors the repository (links to its
    files and folders) without any .env, so that a developer's .env cannot be read.
    """
    if case == "no .env":
        folder = Path(tempfile.mkdtemp(prefix="kos-compose-bare-"))
        for entry in REPO.iterdir():
            if entry.name not in (".env", "docker-compose.yml"):
                (folder / entry.name).symlink_to(entry)
        shutil.copy(COMPOSE_FILE, folder / "docker-compose.yml")
        command = [compose_binary(), "-f", "docker-compose.yml", "config", "--format", "json"]
        result = subprocess.run(command, check=False, capture_output=True, text=True, env=clean_env(), cwd=folder, timeout=60)
    else:
        result = run_compose("config", "--format", "json", env_file=env_file(case))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def uid(user: str) -> int:
    return int(str(user).split(":")[0])


def dockerfile_steps(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def base_image(config: dict[str, Any]) -> str:
    """The image a service runs on; for a built one, its Dockerfile's FROM."""
    if "build" not in config:
        return config["image"]
    [base] = [argument for instruction, argument in dockerfile_steps(Path(config["build"]["context"]) / config["build"]["dockerfile"]) if instruction == "FROM"]
    return base


@cache
def credentials_module() -> Any:
    """credentials/credentials.py (a script the credentials service runs), imported."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("stack_credentials", CREDENTIALS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize("case", ENV_CASES)
def test_config_is_valid_with_no_env_at_all_and_with_one(case: str) -> None:
    """`docker compose up -d --wait` needs no .env: nothing is required, every variable has a default."""
    assert set(resolved(case)["services"]) == {*USERS, ONE_SHOT}


def test_no_password_or_key_has_a_default_so_every_stack_generates_its_own() -> None:
    example = env_example_values()
    secret_variables = ["GRAFANA_ADMIN_PASSWORD", "GRAFANA_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD"]
    for name in secret_variables:
        assert example[name] == "", f".env.example must not ship a value for {name}"
    # Unset, a variable holding a password, key or secret URL is empty (then generated, or for
    # the alert receivers' secrets, empty files): never a default written here.
    found = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(:?[-?+])?([^}]*)\}", COMPOSE_FILE.read_text())
    sensitive = [(name, operator, default) for name, operator, default in found if re.search(r"PASSWORD|SECRET|KEY|WEBHOOK", name)]
    assert {name for name, _, _ in sensitive} >= {*secret_variables, "ALERT_SMTP_PASSWORD", "ALERT_SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL"}
    assert [(name, operator, default) for name, operator, default in sensitive if (operator, default) != (":-", "")] == []
    for case in ("no .env", ".env.example"):
        environment = resolved(case)["services"][ONE_SHOT]["environment"]
        assert {name: environment[name] for name in secret_variables} == dict.fromkeys(secret_variables, ""), case


def test_values_set_in_dot_env_reach_the_credentials_service_and_no_other() -> None:
    """A password set in .env wins: the credentials service gets it (tests/test_credentials.py:
    it then writes it), and no other service sees it in its environment or command."""
    model = resolved(".env with values")
    environment = model["services"][ONE_SHOT]["environment"]
    assert {name: environment[name] for name in TEST_VALUES} == TEST_VALUES
    secret_values = [value for name, value in TEST_VALUES.items() if "USER" not in name]
    for service, config in model["services"].items():
        if service == ONE_SHOT:
            continue
        exposed = json.dumps([config.get("environment", {}), config.get("command"), config.get("entrypoint"), config.get("healthcheck")])
        assert not [value for value in secret_values if value in exposed], f"{service} is handed a secret from .env"
    assert model["services"]["kedro"]["environment"]["MLFLOW_TRACKING_USERNAME"] == TEST_VALUES["MLFLOW_ADMIN_USER"]


def test_config_is_valid_with_the_host_statsd_overlay() -> None:
    result = run_compose("config", "--format", "json", env_file=env_file(".env.example"), files=(COMPOSE_FILE, HOST_STATSD_FILE))
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["statsd-exporter"]["ports"]
    assert [(port["host_ip"], port["target"], port["protocol"]) for port in ports] == [("127.0.0.1", 9125, "udp")]


def test_a_dot_env_copied_from_the_example_is_picked_up(tmp_path: Path) -> None:
    """`cp .env.example .env`, set values, no --env-file: compose reads .env beside the file."""
    copy = tmp_path / "stack"
    copy.mkdir()
    shutil.copy(COMPOSE_FILE, copy / "docker-compose.yml")
    (copy / ".env").write_text(with_values(ENV_EXAMPLE.read_text(), TEST_VALUES))
    result = subprocess.run(
        [compose_binary(), "-f", "docker-compose.yml", "config", "--format", "json"],
        check=False, capture_output=True, text=True, env=clean_env(), cwd=copy, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    credentials = json.loads(result.stdout)["services"][ONE_SHOT]
    assert credentials["environment"]["GRAFANA_ADMIN_PASSWORD"] == TEST_PASSWORD


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
    image = split_image(base_image(config))[0]
    assert Path(tool).name in HEALTHCHECK_TOOLS[image], f"{service}: {tool} is not known to exist in {image}"
    assert config.get("restart") in ("unless-stopped", "always"), f"{service} has no restart policy"


def test_kedro_waits_for_every_other_service_to_be_healthy() -> None:
    """...and for the one-shot credentials service to have completed (it cannot be healthy)."""
    services = resolved()["services"]
    depends = services["kedro"]["depends_on"]
    assert set(depends) == set(services) - {"kedro"}
    assert {name: item["condition"] for name, item in depends.items() if name != ONE_SHOT} == dict.fromkeys(set(services) - {"kedro", ONE_SHOT}, "service_healthy")
    assert depends[ONE_SHOT]["condition"] == "service_completed_successfully"


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


@pytest.mark.parametrize("service", ["kedro", "mlflow"])
def test_build_context_and_dockerfile_exist(service: str) -> None:
    build = resolved()["services"][service]["build"]
    assert (Path(build["context"]) / build["dockerfile"]).is_file()
    assert (Path(build["context"]) / ".dockerignore").is_file()


@pytest.mark.parametrize("case", ENV_CASES)
def test_grafana_is_secure_by_default(case: str) -> None:
    environment = resolved(case)["services"]["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # The password and the secret key from files only: Grafana's run.sh refuses a variable set
    # both ways, and a value in the environment would show in `docker inspect`.
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"{SECRETS_DIR}/grafana_admin_password"
    assert environment["GF_SECURITY_SECRET_KEY__FILE"] == f"{SECRETS_DIR}/grafana_secret_key"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment and "GF_SECURITY_SECRET_KEY" not in environment
    raw = COMPOSE_FILE.read_text()
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


def test_mlflow_runs_its_basic_auth_app_with_the_generated_config() -> None:
    """MLflow's own auth app (tests/test_mlflow_auth.py runs this very command and environment):
    its config, with the admin login and where the users are kept, from the mlflow-secrets
    volume; the CSRF key it insists on through with_secrets.py, from a file too."""
    config = resolved()["services"]["mlflow"]
    assert config["command"][config["command"].index("--app-name") + 1] == "basic-auth"
    environment = config["environment"]
    assert environment["MLFLOW_AUTH_CONFIG_PATH"] == f"{SECRETS_DIR}/mlflow_auth.ini"
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY__FILE"] == f"{SECRETS_DIR}/mlflow_flask_secret_key"
    assert not {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} & set(environment), "secrets only from files"
    entrypoint = config["entrypoint"]
    assert entrypoint[0] == "python" and entrypoint[1].endswith("/with_secrets.py")
    mounts = {mount["target"]: mount for mount in config["volumes"]}
    assert Path(mounts[entrypoint[1]]["source"]) == REPO / "project" / "docker" / "with_secrets.py"
    # The users live beside the runs, in MLflow's data volume: `down -v` forgets them too.
    auth_database = resolved()["services"][ONE_SHOT]["environment"]["MLFLOW_AUTH_DATABASE_URI"]
    assert auth_database == "sqlite:////mlflow/basic_auth.db" and mounts["/mlflow"]["source"] == "mlflow-data"
    # Its healthcheck asks /health, the one route the auth app leaves open.
    assert config["healthcheck"]["test"][-1].endswith("urlopen('http://127.0.0.1:5000/health', timeout=4)")


def test_the_mlflow_image_is_the_official_one_plus_the_auth_apps_dependency() -> None:
    """mlflow/Dockerfile: FROM the pinned official image, which lacks Flask-WTF (the auth app's
    CSRF library, `mlflow[auth]`); pinned to the version the tests' server runs with; a user
    of its own that owns /mlflow; telemetry off."""
    import importlib.metadata

    steps = dockerfile_steps(MLFLOW_DOCKERFILE)
    assert [argument for instruction, argument in steps if instruction == "FROM"] == [f"ghcr.io/mlflow/mlflow:v{mlflow_requirement()}"]
    [install] = [argument for instruction, argument in steps if instruction == "RUN" and "pip install" in argument]
    pins = dict(re.findall(r"([A-Za-z][\w.-]*)==([\w.]+)", install))
    assert pins == {"Flask-WTF": importlib.metadata.version("Flask-WTF"), "WTForms": importlib.metadata.version("WTForms")}
    # The test suite's server (tests/test_mlflow_auth.py) runs the same.
    development = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert {f"{name}=={version}" for name, version in pins.items()} <= set(development)
    assert re.search(r"useradd .*--uid 10002 .*mlflow", install) and "chown mlflow:mlflow /mlflow" in install
    assert [argument for instruction, argument in steps if instruction == "USER"] == ["mlflow"]
    assert "MLFLOW_DISABLE_TELEMETRY=true" in " ".join(argument for instruction, argument in steps if instruction == "ENV")


def test_mlflow_flags_exist_in_the_pinned_mlflow() -> None:
    """The flags are checked against `mlflow server --help` of project/requirements.txt's MLflow."""
    import importlib.metadata

    assert importlib.metadata.version("mlflow") == mlflow_requirement(), "the venv's MLflow is not the pinned one"
    mlflow = Path(os.sys.executable).with_name("mlflow")
    help_text = subprocess.run([str(mlflow), "server", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ["--app-name", "--host", "--port", "--workers", "--backend-store-uri", "--artifacts-destination", "--serve-artifacts", "--allowed-hosts"]:
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
    # MLflow's admin login: the name here, the password from a file, turned into
    # MLFLOW_TRACKING_PASSWORD by the image's entrypoint (project/docker/with_secrets.py).
    assert environment["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert environment["MLFLOW_TRACKING_PASSWORD__FILE"] == f"{SECRETS_DIR}/mlflow_tracking_password"
    assert "MLFLOW_TRACKING_PASSWORD" not in environment
    assert not config.get("entrypoint"), "the image's entrypoint reads the password file"
    assert [argument for instruction, argument in dockerfile_steps(KEDRO_DOCKERFILE) if instruction == "ENTRYPOINT"] == ['["python", "/app/docker/with_secrets.py"]']


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
    # The mlflow service's image is built FROM the official one (mlflow/Dockerfile).
    images = {service: base_image(config) for service, config in resolved()["services"].items() if split_image(base_image(config))[0] == "ghcr.io/mlflow/mlflow"}
    assert {"mlflow", "alert-log", ONE_SHOT} <= set(images)
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


# ---------------------------------------------------------------------------
# Issue 17: hardening, credentials from the credentials service, telemetry off
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ENV_CASES)
@pytest.mark.parametrize("service", sorted([*USERS, ONE_SHOT]))
def test_every_service_is_hardened(case: str, service: str) -> None:
    config = resolved(case)["services"][service]
    assert config.get("cap_drop") == ["ALL"], f"{service} keeps capabilities"
    assert sorted(config.get("cap_add", [])) == CAPABILITIES[service]
    assert "no-new-privileges:true" in config.get("security_opt", [])
    assert config.get("read_only") is True, f"{service}: the root filesystem is writable"
    assert sorted(config.get("tmpfs", [])) == TMPFS.get(service, [])
    assert not config.get("privileged") and not config.get("devices")
    assert config.get("network_mode") != "host" and config.get("pid") != "host" and config.get("ipc") != "host"
    # What stays writable: named volumes (the data, and the credentials service's own) and tmpfs.
    for mount in config.get("volumes", []):
        assert mount["type"] == "volume" or mount.get("read_only") is True, f"{service}: {mount['target']} is writable"
    if service == ONE_SHOT:
        assert "user" not in config, "the credentials service runs as its image's root user, with CAP_CHOWN only"
    else:
        assert config.get("user") == USERS[service]
        assert uid(config["user"]) != 0


def test_the_users_are_the_users_of_the_images() -> None:
    """The uids in USERS are the ones the images create (ours) and the credentials service's
    *_UID (whom it gives each file)."""
    mlflow = " ".join(argument for instruction, argument in dockerfile_steps(MLFLOW_DOCKERFILE) if instruction == "RUN")
    kedro = " ".join(argument for instruction, argument in dockerfile_steps(KEDRO_DOCKERFILE) if instruction == "RUN")
    assert re.search(r"--uid 10002 ", mlflow) and uid(USERS["mlflow"]) == 10002
    assert re.search(r"--uid 10001 ", kedro) and uid(USERS["kedro"]) == 10001
    environment = resolved()["services"][ONE_SHOT]["environment"]
    owners = {reader: int(environment[f"{reader.upper()}_UID"]) for reader in SECRET_VOLUMES}
    assert owners == {reader: uid(resolved()["services"][reader]["user"]) for reader in SECRET_VOLUMES}


def test_the_credentials_service_is_a_one_shot_without_network_on_an_image_already_pulled() -> None:
    model = resolved()
    config = model["services"][ONE_SHOT]
    assert config["network_mode"] == "none"
    assert not config.get("ports") and not config.get("expose") and not config.get("healthcheck")
    assert config.get("restart") in (None, "no")
    assert config["image"] == f"ghcr.io/mlflow/mlflow:v{mlflow_requirement()}", "reuse the MLflow image: no new pull"
    assert config["entrypoint"] == ["python", "/opt/credentials/credentials.py"] and config["command"] == ["generate"]
    mounts = {mount["target"]: mount for mount in config["volumes"]}
    assert Path(mounts["/opt/credentials/credentials.py"]["source"]) == CREDENTIALS_SCRIPT
    root = config["environment"]["CREDENTIALS_DIR"]
    # The kept values on a volume of its own; one writable volume per reading service.
    assert mounts[f"{root}/master"]["source"] == "credentials"
    assert {reader: mounts[f"{root}/{reader}"]["source"] for reader in SECRET_VOLUMES} == SECRET_VOLUMES
    assert mounts[config["environment"]["MLFLOW_DATA_DIR"]]["source"] == "mlflow-data"
    assert set(SECRET_VOLUMES.values()) | {"credentials"} <= set(model["volumes"])
    # Everything that reads what it writes waits for it to complete.
    for service in SECRET_VOLUMES:
        assert model["services"][service]["depends_on"][ONE_SHOT]["condition"] == "service_completed_successfully", service


@pytest.mark.parametrize("case", ENV_CASES)
def test_each_service_reads_only_its_own_secrets_from_a_read_only_volume(case: str) -> None:
    model = resolved(case)
    reader_files = credentials_module().READER_FILES
    assert set(reader_files) == set(SECRET_VOLUMES)
    for service, config in model["services"].items():
        secret_mounts = [mount for mount in config.get("volumes", []) if mount["type"] == "volume" and (mount["source"] in SECRET_VOLUMES.values() or mount["source"] == "credentials")]
        if service == ONE_SHOT:
            continue
        if service not in SECRET_VOLUMES:
            assert secret_mounts == [], f"{service} mounts credentials"
            continue
        assert [(mount["source"], mount["target"], mount.get("read_only")) for mount in secret_mounts] == [(SECRET_VOLUMES[service], SECRETS_DIR, True)]
        files = {value for name, value in config.get("environment", {}).items() if name.endswith("__FILE") or name == "MLFLOW_AUTH_CONFIG_PATH"}
        if service == "alertmanager":
            # Alertmanager's config names them (*_file), in its examples (tests/test_alertmanager.py).
            files = set(re.findall(r"/run/secrets/[a-z_]+", (REPO / "alertmanager" / "alertmanager.yml").read_text()))
        assert files == {f"{SECRETS_DIR}/{name}" for name in reader_files[service]}, service


TELEMETRY = {
    "kedro": {"KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"},
    "mlflow": {"MLFLOW_DISABLE_TELEMETRY": "true"},
    "alert-log": {"MLFLOW_DISABLE_TELEMETRY": "true"},
    ONE_SHOT: {"MLFLOW_DISABLE_TELEMETRY": "true"},
    "grafana": {"GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false", "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false"},
    # The Prometheus project's Go binaries report no usage anywhere: nothing to turn off.
    "statsd-exporter": {},
    "prometheus": {},
    "alertmanager": {},
}


@pytest.mark.parametrize("case", ENV_CASES)
def test_telemetry_is_off_in_every_service(case: str) -> None:
    services = resolved(case)["services"]
    assert set(TELEMETRY) == set(services), "a new service: say how its telemetry is off"
    for service, wanted in TELEMETRY.items():
        environment = services[service].get("environment", {})
        assert {name: environment.get(name) for name in wanted} == wanted, service
        # Every service with MLflow in it (its image's Python, or the plugin's client).
        if split_image(base_image(services[service]))[0] in ("ghcr.io/mlflow/mlflow", "python"):
            assert environment.get("MLFLOW_DISABLE_TELEMETRY") == "true", service

