"""The credentials service's generator (credentials/credentials.py), run for real.

Each test runs the script as the compose service does: its environment is the credentials
service's, resolved by the real Compose binary (tests/test_compose.py) with no .env, with
.env.example or with a .env that sets values; only the volume mount points become folders of a
temporary "volume" root. As root (as CI and every machine here run) the files are handed to the
services' real uids and one test runs it with nothing but CAP_CHOWN, as compose does.

What issue 17 asks of it: a first start generates the passwords (random, different for every
stack, none printed), later starts keep them, a value set in .env wins, deleting the volumes
(`docker compose down -v`) forgets them, `show` and `env` print them, each reader gets only its
files, readable by its user alone, and MLflow reads the auth config it writes.
"""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_compose import (
    ONE_SHOT,
    SECRET_VOLUMES,
    USERS,
    credentials_module,
    resolved,
    uid,
)

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "credentials" / "credentials.py"
ROOT = os.geteuid() == 0
SECRET_NAMES = ("grafana_admin_password", "grafana_secret_key", "mlflow_admin_password", "mlflow_flask_secret_key")


def generator_environment(volumes: Path, case: str = ".env.example", **overrides: str) -> dict[str, str]:
    """The credentials service's environment, its container paths moved under ``volumes``."""
    environment = dict(resolved(case)["services"][ONE_SHOT]["environment"])
    environment["CREDENTIALS_DIR"] = str(volumes / "credentials")
    environment["MLFLOW_DATA_DIR"] = str(volumes / "mlflow-data")
    environment["MLFLOW_AUTH_DATABASE_URI"] = environment["MLFLOW_AUTH_DATABASE_URI"].replace("/mlflow/", f"{volumes / 'mlflow-data'}/", 1)
    if not ROOT:  # files can only be handed to oneself
        environment.update({f"{reader.upper()}_UID": str(os.geteuid()) for reader in SECRET_VOLUMES})
    (volumes / "mlflow-data").mkdir(parents=True, exist_ok=True)
    return {**environment, "PATH": os.environ["PATH"], **overrides}


def run_generator(environment: dict[str, str], command: str = "generate", prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, str(SCRIPT), command], env=environment, capture_output=True, text=True, timeout=60, check=False)


def generated(environment: dict[str, str], command: str = "generate") -> subprocess.CompletedProcess[str]:
    result = run_generator(environment, command)
    assert result.returncode == 0, result.stderr
    return result


def kept(volumes: Path) -> dict[str, str]:
    return {name: (volumes / "credentials" / "master" / name).read_text() for name in SECRET_NAMES}


def owner_of(reader: str) -> int:
    return uid(USERS[reader]) if ROOT else os.geteuid()


def test_the_first_start_generates_random_passwords_each_readable_by_its_reader_alone(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "another"
    result = generated(generator_environment(first, "no .env"))
    generated(generator_environment(second, "no .env"))

    values = kept(first)
    assert len(set(values.values())) == 4, "every secret its own"
    assert all(len(value) >= 32 and value.isascii() and value.isprintable() for value in values.values())
    assert not set(values.values()) & set(kept(second).values()), "two stacks must not share a password"
    assert not [value for value in values.values() if value in result.stdout + result.stderr], "generate prints no secret"

    master = first / "credentials" / "master"
    assert stat.S_IMODE(master.stat().st_mode) == 0o700
    for name in SECRET_NAMES:
        info = (master / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o600)
    for reader, files in credentials_module().READER_FILES.items():
        folder = first / "credentials" / reader
        assert sorted(path.name for path in folder.iterdir()) == sorted(files), reader
        for path in folder.iterdir():
            info = path.stat()
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner_of(reader), 0o400), path
    readers = first / "credentials"
    assert (readers / "grafana" / "grafana_admin_password").read_text() == values["grafana_admin_password"]
    assert (readers / "grafana" / "grafana_secret_key").read_text() == values["grafana_secret_key"]
    assert (readers / "mlflow" / "mlflow_flask_secret_key").read_text() == values["mlflow_flask_secret_key"]
    assert (readers / "kedro" / "mlflow_tracking_password").read_text() == values["mlflow_admin_password"]
    assert {path.read_text() for path in (readers / "alertmanager").iterdir()} == {""}, "no alert secret unless set"


def test_mlflow_reads_the_auth_config_it_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own reader (mlflow.server.auth.config.read_auth_config), on a password with the
    characters an ini file and a shell treat specially."""
    from mlflow.server.auth.config import read_auth_config

    password = "p%ss w0rd; #$'\"\\"
    environment = generator_environment(tmp_path, ".env with values", MLFLOW_ADMIN_PASSWORD=password)
    generated(environment)
    config_path = tmp_path / "credentials" / "mlflow" / "mlflow_auth.ini"
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(config_path))
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)

    config = read_auth_config()

    assert (config.admin_username, config.admin_password) == ("tracker", password)
    assert config.database_uri == f"sqlite:///{tmp_path / 'mlflow-data' / 'basic_auth.db'}"
    assert config.authorization_function == "mlflow.server.auth:authenticate_request_basic_auth"
    assert config.default_permission == "READ"
    assert (tmp_path / "credentials" / "kedro" / "mlflow_tracking_password").read_text() == password


def test_later_starts_keep_the_values_and_a_value_in_dot_env_wins(tmp_path: Path) -> None:
    generated(generator_environment(tmp_path, ".env.example"))
    first = kept(tmp_path)
    generated(generator_environment(tmp_path, ".env.example"))
    assert kept(tmp_path) == first

    generated(generator_environment(tmp_path, ".env with values"))
    from test_compose import TEST_VALUES

    now = kept(tmp_path)
    assert now["grafana_admin_password"] == TEST_VALUES["GRAFANA_ADMIN_PASSWORD"]
    assert now["grafana_secret_key"] == TEST_VALUES["GRAFANA_SECRET_KEY"]
    assert now["mlflow_admin_password"] == TEST_VALUES["MLFLOW_ADMIN_PASSWORD"]
    assert now["mlflow_flask_secret_key"] == first["mlflow_flask_secret_key"], "never from .env, kept"
    assert (tmp_path / "credentials" / "grafana" / "grafana_admin_password").read_text() == TEST_VALUES["GRAFANA_ADMIN_PASSWORD"]
    auth = configparser.ConfigParser()
    auth.read(tmp_path / "credentials" / "mlflow" / "mlflow_auth.ini")
    assert auth["mlflow"]["admin_username"] == "tracker"

    # The line removed from .env again: the last value is kept, not replaced by a new one.
    generated(generator_environment(tmp_path, ".env.example"))
    assert kept(tmp_path) == now


def test_deleting_the_volumes_forgets_the_values(tmp_path: Path) -> None:
    """`docker compose down -v` deletes the named volumes: the next start generates new values."""
    generated(generator_environment(tmp_path))
    before = kept(tmp_path)
    shutil.rmtree(tmp_path / "credentials")

    generated(generator_environment(tmp_path))

    assert not set(kept(tmp_path).values()) & set(before.values())


def test_show_and_env_print_the_logins(tmp_path: Path) -> None:
    password = "it's $HOME; `not` run"
    environment = generator_environment(tmp_path, ".env.example", MLFLOW_ADMIN_PASSWORD=password, GRAFANA_PORT="3999")
    environment["GRAFANA_URL"] = "http://127.0.0.1:3999"

    shown = generated(environment, "show").stdout
    values = kept(tmp_path)
    assert f"Grafana  http://127.0.0.1:3999  user: admin  password: {values['grafana_admin_password']}  (generated)" in shown
    assert f"MLflow   http://127.0.0.1:5000  user: admin  password: {password}  (set in .env)" in shown
    assert values["grafana_secret_key"] not in shown and values["mlflow_flask_secret_key"] not in shown

    lines = generated(environment, "env").stdout
    # What `eval "$(docker compose run --rm -T credentials env)"` gives a shell.
    shell = subprocess.run(
        ["bash", "-c", 'eval "$LINES" && printf "%s\\n%s\\n%s" "$MLFLOW_TRACKING_URI" "$MLFLOW_TRACKING_USERNAME" "$MLFLOW_TRACKING_PASSWORD"'],
        env={"PATH": os.environ["PATH"], "LINES": lines}, capture_output=True, text=True, check=True,
    )
    assert shell.stdout.split("\n") == ["http://127.0.0.1:5000", "admin", password]


def test_the_alert_receivers_secrets_are_copied_as_set_in_dot_env(tmp_path: Path) -> None:
    values = {"ALERT_SMTP_PASSWORD": "smtp secret", "ALERT_SLACK_WEBHOOK_URL": "https://hooks.example/T/B/x", "ALERT_WEBHOOK_URL": "https://incidents.example/?token=t"}
    generated(generator_environment(tmp_path, **values))
    folder = tmp_path / "credentials" / "alertmanager"
    assert {name: (folder / name).read_text() for name in credentials_module().ALERT_SECRETS} == {
        name: values[variable] for name, variable in credentials_module().ALERT_SECRETS.items()
    }
    # Unset again: the files are emptied, as compose's secrets were.
    generated(generator_environment(tmp_path))
    assert {(folder / name).read_text() for name in credentials_module().ALERT_SECRETS} == {""}


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("MLFLOW_ADMIN_PASSWORD", "short", "at least 12"),
        ("GRAFANA_ADMIN_PASSWORD", "eleven-char", "at least 12"),
        ("GRAFANA_SECRET_KEY", " padded-secret-key ", "spaces"),
        ("MLFLOW_ADMIN_USER", "ad:min", "login name"),
    ],
)
def test_a_value_that_cannot_work_is_refused_naming_it_and_nothing_is_written(tmp_path: Path, variable: str, value: str, says: str) -> None:
    result = run_generator(generator_environment(tmp_path, **{variable: value}))
    assert result.returncode == 2
    assert f"credentials: error: {variable} " in result.stderr and says in result.stderr and ".env" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "credentials").exists()


def test_two_starts_at_once_agree_on_the_values(tmp_path: Path) -> None:
    """`docker compose up` and `docker compose run --rm credentials show` may start together."""
    environment = generator_environment(tmp_path)
    processes = [
        subprocess.Popen([sys.executable, str(SCRIPT), "env"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4
    assert len(set(outputs)) == 1 and kept(tmp_path)["mlflow_admin_password"] in outputs[0]


def test_mlflows_data_is_handed_to_mlflows_user_without_following_links(tmp_path: Path) -> None:
    """A volume written while MLflow ran as root becomes the mlflow user's (it now runs as that
    user); a symbolic link is changed itself, never what it points at."""
    data = tmp_path / "mlflow-data"
    (data / "artifacts" / "1" / "abc").mkdir(parents=True)
    (data / "mlflow.db").write_text("db")
    (data / "artifacts" / "1" / "abc" / "model.pkl").write_text("model")
    outside = tmp_path / "outside"
    outside.write_text("not MLflow's")
    (data / "artifacts" / "link").symlink_to(outside)
    outside_owner = outside.stat().st_uid

    generated(generator_environment(tmp_path))

    mlflow = owner_of("mlflow")
    entries = [data, *data.rglob("*")]
    assert {path.relative_to(tmp_path).as_posix(): path.lstat().st_uid for path in entries} == {
        path.relative_to(tmp_path).as_posix(): mlflow for path in entries
    }
    assert outside.stat().st_uid == outside_owner


def test_it_needs_no_capability_but_chown(tmp_path: Path) -> None:
    """As compose runs it (cap_drop: ALL, cap_add: CHOWN, no-new-privileges): root with only
    CAP_CHOWN writes, rewrites (files now owned by the readers), keeps and shows the values."""
    if not ROOT or shutil.which("setpriv") is None:
        pytest.skip("needs root and util-linux's setpriv to drop every capability but CAP_CHOWN")
    only_chown = ("setpriv", "--bounding-set=-all,+chown", "--inh-caps=-all", "--no-new-privs")
    environment = generator_environment(tmp_path)
    (tmp_path / "mlflow-data" / "mlflow.db").write_text("written as root")

    for command in ("generate", "generate", "env"):
        result = run_generator(environment, command, prefix=only_chown)
        assert result.returncode == 0, (command, result.stderr)

    assert kept(tmp_path)["mlflow_admin_password"] in result.stdout
    assert (tmp_path / "mlflow-data" / "mlflow.db").stat().st_uid == uid(USERS["mlflow"])
    assert (tmp_path / "credentials" / "grafana" / "grafana_admin_password").stat().st_uid == uid(USERS["grafana"])
