#!/usr/bin/env python3
"""The stack's credentials: generated on the first start, kept in named volumes, shown on demand.

The `credentials` service of ../docker-compose.yml runs this once before Grafana, MLflow,
Alertmanager and the kedro service start (they wait for it to complete). Nothing is written
into the repository or an image, and nothing secret is printed unless asked for:

    docker compose run --rm credentials show       # the logins, for people
    docker compose run --rm -T credentials env     # export lines, for a shell: eval "$(...)"

``generate`` (the service's default command) makes sure every value exists:

- a value set in .env (GRAFANA_ADMIN_PASSWORD, GRAFANA_SECRET_KEY, MLFLOW_ADMIN_PASSWORD) wins;
- else the value kept from an earlier start;
- else a new random one (``secrets.token_urlsafe``), so no two stacks share a password.

The values are kept in ``master/`` (the `credentials` volume, mounted here only) and copied to
one volume per reader, each file owned by that reader's user (the ``*_UID`` variables, the
uids of the services' ``user:``) and readable by it alone (0400):

    grafana/       grafana_admin_password, grafana_secret_key  (GF_*__FILE)
    mlflow/        mlflow_auth.ini (MLflow's basic-auth config: admin and password, user
                   database), mlflow_flask_secret_key
    kedro/         mlflow_tracking_password (MLFLOW_TRACKING_PASSWORD__FILE)
    alertmanager/  alert_smtp_password, alert_slack_webhook_url, alert_webhook_url: the alert
                   receivers' secrets from .env, empty when unset (never generated)

It also hands MLflow's data folder (MLFLOW_DATA_DIR) to MLflow's user, for volumes written
when MLflow still ran as root. So it runs as root, with CAP_CHOWN only and no network.
`docker compose down -v` deletes the volumes: the next start generates new values.

Grafana and MLflow read their admin password only when they first create their user store:
a password changed in .env later is written here but not applied by them (see .env.example).
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import io
import os
import secrets
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# MLflow's basic-auth app refuses shorter passwords (mlflow.utils.validation._validate_password);
# Grafana's admin password is held to the same.
MIN_LENGTH = 12


class CredentialsError(Exception):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Secret:
    name: str  # the file in master/
    variable: str | None  # the .env variable that wins over the kept value, if any
    what: str  # for messages


SECRETS = (
    Secret("grafana_admin_password", "GRAFANA_ADMIN_PASSWORD", "Grafana's admin password"),
    Secret("grafana_secret_key", "GRAFANA_SECRET_KEY", "Grafana's secret key"),
    Secret("mlflow_admin_password", "MLFLOW_ADMIN_PASSWORD", "MLflow's admin password"),
    Secret("mlflow_flask_secret_key", None, "the CSRF key of MLflow's auth app"),
)
# Copied from .env to Alertmanager as they are: file name -> variable.
ALERT_SECRETS = {
    "alert_smtp_password": "ALERT_SMTP_PASSWORD",
    "alert_slack_webhook_url": "ALERT_SLACK_WEBHOOK_URL",
    "alert_webhook_url": "ALERT_WEBHOOK_URL",
}
# What each reading service's volume holds (mounted there read-only at /run/secrets).
READER_FILES = {
    "grafana": ("grafana_admin_password", "grafana_secret_key"),
    "mlflow": ("mlflow_auth.ini", "mlflow_flask_secret_key"),
    "kedro": ("mlflow_tracking_password",),
    "alertmanager": tuple(ALERT_SECRETS),
}
READERS = tuple(READER_FILES)


@dataclass(frozen=True)
class Settings:
    root: Path
    owners: dict[str, int]
    environment: dict[str, str]
    mlflow_data: Path | None
    mlflow_database_uri: str

    @classmethod
    def from_environment(cls, environment: dict[str, str]) -> Settings:
        owners = {}
        for reader in READERS:
            variable = f"{reader.upper()}_UID"
            raw = environment.get(variable, "")
            if not raw.isdigit():
                raise CredentialsError(f"{variable} must be the uid of the {reader} service's user, got {raw!r}")
            owners[reader] = int(raw)
        data = environment.get("MLFLOW_DATA_DIR", "")
        return cls(
            root=Path(environment.get("CREDENTIALS_DIR", "/credentials")),
            owners=owners,
            environment=environment,
            mlflow_data=Path(data) if data else None,
            mlflow_database_uri=environment.get("MLFLOW_AUTH_DATABASE_URI", "sqlite:////mlflow/basic_auth.db"),
        )

    def value(self, variable: str, default: str = "") -> str:
        return self.environment.get(variable, "") or default

    @property
    def grafana_user(self) -> str:
        return self.value("GRAFANA_ADMIN_USER", "admin")

    @property
    def mlflow_user(self) -> str:
        return self.value("MLFLOW_ADMIN_USER", "admin")


# ---------------------------------------------------------------------------------------------
# checks of what .env sets
# ---------------------------------------------------------------------------------------------


def check_password(variable: str, value: str) -> None:
    if value != value.strip() or any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise CredentialsError(f"{variable} in .env has leading or trailing spaces or control characters: set it without them")
    if len(value) < MIN_LENGTH:
        raise CredentialsError(
            f"{variable} in .env is {len(value)} characters long; at least {MIN_LENGTH} are needed (MLflow's minimum, "
            f"applied to every password). Set a longer one, or remove the line to have one generated."
        )


def check_user(variable: str, value: str) -> None:
    if not value or any(character.isspace() or character == ":" for character in value):
        raise CredentialsError(f"{variable} in .env must be a login name without spaces or ':', got {value!r}")


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def write_file(folder: Path, name: str, content: str, owner: int | None, mode: int) -> None:
    """Replace ``folder/name`` atomically by a file of ``mode``, owned by ``owner`` (root if None)."""
    temporary = folder / f".{name}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            # The mode first: once the file is another user's, only CAP_FOWNER could change it.
            os.fchmod(handle.fileno(), mode)
            if owner is not None and owner != os.geteuid():
                os.fchown(handle.fileno(), owner, owner)
            os.fsync(handle.fileno())
        os.replace(temporary, folder / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_kept(folder: Path, name: str) -> str:
    path = folder / name
    if path.is_symlink() or not path.is_file():
        return ""
    return path.read_text(encoding="utf-8")


def prepare_folder(folder: Path, mode: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink():
        raise CredentialsError(f"{folder} is a symbolic link")
    os.chmod(folder, mode)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One generator at a time (`up` and `run --rm credentials show` may start together)."""
    with open(folder / ".lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def mlflow_auth_config(settings: Settings, password: str) -> str:
    """MLflow's basic-auth configuration (the keys of mlflow/server/auth/basic_auth.ini)."""
    config = configparser.ConfigParser()
    # ConfigParser interpolates "%": the reader (MLflow's read_auth_config) undoes the doubling.
    config["mlflow"] = {
        "default_permission": "READ",
        "database_uri": settings.mlflow_database_uri.replace("%", "%%"),
        "admin_username": settings.mlflow_user.replace("%", "%%"),
        "admin_password": password.replace("%", "%%"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    text = io.StringIO()
    text.write("# Written by the credentials service (credentials/credentials.py); rewritten at every start.\n")
    config.write(text)
    return text.getvalue()


def hand_over(folder: Path, owner: int) -> int:
    """Give every file and folder under ``folder`` not owned by ``owner`` to it, the folder itself
    last (so that an interrupted run is redone); symbolic links are changed, never followed."""
    changed = 0
    if folder.stat().st_uid == owner:
        return changed
    for current, folders, files in os.walk(folder, topdown=False, onerror=lambda error: None):
        for name in [*files, *folders]:
            path = os.path.join(current, name)
            info = os.lstat(path)
            if info.st_uid != owner:
                os.lchown(path, owner, owner)
                changed += 1
    os.lchown(folder, owner, owner)
    return changed + 1


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def generate(settings: Settings) -> dict[str, str]:
    """Make every secret exist and every reader's copy current; return the values."""
    check_user("GRAFANA_ADMIN_USER", settings.grafana_user)
    check_user("MLFLOW_ADMIN_USER", settings.mlflow_user)
    from_env = {each.name: settings.value(each.variable) if each.variable else "" for each in SECRETS}
    for each in SECRETS:
        if from_env[each.name]:
            check_password(each.variable, from_env[each.name])

    master = settings.root / "master"
    prepare_folder(master, 0o700)
    values: dict[str, str] = {}
    notes: list[str] = []
    with locked(master):
        for each in SECRETS:
            kept = read_kept(master, each.name)
            value = from_env[each.name] or kept or secrets.token_urlsafe(24)
            if value != kept:
                write_file(master, each.name, value, None, 0o600)
                notes.append(f"{each.what}: {'from .env' if from_env[each.name] else 'generated'}")
            values[each.name] = value

        readers = {reader: settings.root / reader for reader in READERS}
        for folder in readers.values():
            prepare_folder(folder, 0o755)
        owners = settings.owners
        copies = {
            "grafana": {
                "grafana_admin_password": values["grafana_admin_password"],
                "grafana_secret_key": values["grafana_secret_key"],
            },
            "mlflow": {
                "mlflow_auth.ini": mlflow_auth_config(settings, values["mlflow_admin_password"]),
                "mlflow_flask_secret_key": values["mlflow_flask_secret_key"],
            },
            "kedro": {"mlflow_tracking_password": values["mlflow_admin_password"]},
            "alertmanager": {name: settings.value(variable) for name, variable in ALERT_SECRETS.items()},
        }
        assert {reader: tuple(files) for reader, files in copies.items()} == READER_FILES
        # Rewritten every time: root without CAP_DAC_OVERRIDE cannot read them back to compare.
        for reader, files in copies.items():
            for name, content in files.items():
                write_file(readers[reader], name, content, owners[reader], 0o400)

    if settings.mlflow_data is not None and settings.mlflow_data.is_dir():
        changed = hand_over(settings.mlflow_data, owners["mlflow"])
        if changed:
            notes.append(f"MLflow's data handed to uid {owners['mlflow']} ({changed} entries)")
    print("credentials: " + ("; ".join(notes) if notes else "unchanged") + ". Show them: docker compose run --rm credentials show")
    return values


def show(settings: Settings, values: dict[str, str]) -> None:
    def origin(variable: str) -> str:
        return "set in .env" if settings.value(variable) else "generated"

    grafana = settings.value("GRAFANA_URL", "http://127.0.0.1:3000")
    mlflow = settings.value("MLFLOW_URL", "http://127.0.0.1:5000")
    print(f"Grafana  {grafana}  user: {settings.grafana_user}  password: {values['grafana_admin_password']}  ({origin('GRAFANA_ADMIN_PASSWORD')})")
    print(f"MLflow   {mlflow}  user: {settings.mlflow_user}  password: {values['mlflow_admin_password']}  ({origin('MLFLOW_ADMIN_PASSWORD')})")
    print()
    print("A Kedro project on this machine logs to the stack's MLflow with:")
    print(f"  export MLFLOW_TRACKING_URI={mlflow}")
    print(f"  export MLFLOW_TRACKING_USERNAME={shlex.quote(settings.mlflow_user)}")
    print(f"  export MLFLOW_TRACKING_PASSWORD={shlex.quote(values['mlflow_admin_password'])}")
    print("(or: eval \"$(docker compose run --rm -T credentials env)\")")


def export_lines(settings: Settings, values: dict[str, str]) -> None:
    print(f"export MLFLOW_TRACKING_URI={shlex.quote(settings.value('MLFLOW_URL', 'http://127.0.0.1:5000'))}")
    print(f"export MLFLOW_TRACKING_USERNAME={shlex.quote(settings.mlflow_user)}")
    print(f"export MLFLOW_TRACKING_PASSWORD={shlex.quote(values['mlflow_admin_password'])}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="credentials", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="generate", choices=["generate", "show", "env"])
    command = parser.parse_args(argv).command
    try:
        settings = Settings.from_environment(dict(os.environ))
        if command == "generate":
            generate(settings)
            return 0
        with progress_to_stderr():
            values = generate(settings)
        (show if command == "show" else export_lines)(settings, values)
    except CredentialsError as error:
        print(f"credentials: error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(
            f"credentials: error: {error}. It runs as root with CAP_CHOWN (docker-compose.yml's credentials "
            "service) to hand each file to the user of the service that reads it.",
            file=sys.stderr,
        )
        return 2
    return 0


@contextmanager
def progress_to_stderr() -> Iterator[None]:
    """generate()'s progress line goes to stderr under show/env: stdout holds only their output."""
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
