"""Talking to the MLflow tracking server or store: reachability, opening the run, batched logging."""

from __future__ import annotations

import getpass
import logging
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kedro_observability.names import sanitize_name
from kedro_observability.identity import RunInfo
from kedro_observability.settings import MlflowSettings
from kedro_observability.tracking.local_store import store_lock, store_remedy
from kedro_observability.tracking.params import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_AND_TAGS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    LoggableParams,
)

logger = logging.getLogger(__name__)

MAX_ENTITIES_PER_BATCH = 1000  # metrics, params and tags together, per log_batch call
GIT_COMMIT_TAG = "mlflow.source.git.commit"


class MlflowTrackingError(RuntimeError):
    """The tracking server or store cannot be used, so the run would not be tracked."""


def default_tracking_uri(project_path: Path) -> str:
    """The contract's default store: a SQLite file inside the project (gitignored)."""
    return f"sqlite:///{(project_path / 'mlflow.db').resolve().as_posix()}"


def bound_http_requests(settings: MlflowSettings) -> list[str]:
    """Bound MLflow's HTTP timeout and retries for the run; variables the user set win."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.request_max_retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.request_timeout_seconds),
        # Waits of 0, 2, 4 s between retries instead of 0, 4, 8 s.
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    applied = [name for name in wanted if name not in os.environ]
    for name in applied:
        os.environ[name] = wanted[name]
    return applied


@dataclass(frozen=True)
class OpenedRun:
    """A run created on the server, by :func:`open_run`."""

    client: Any
    experiment_id: str
    run_id: str
    params_lost: str | None = None
    """Why the parameters are not on the server yet: it stopped answering right after it
    created the run. They go with the rest of the run, at its end or into the spool."""


def open_run(
    uri: str,
    settings: MlflowSettings,
    run: RunInfo,
    kedro_version: str,
    project_path: Path,
    params: LoggableParams,
) -> OpenedRun:
    """Create the run with its tags and parameters.

    The server was probed by the caller (:func:`check_reachable`), in the run's process. A
    server that refuses the parameters fails the opening; one that stops answering once the
    run exists does not: the run is then in the same state as one whose server went away
    during its first node."""
    from mlflow import MlflowClient

    try:
        local_default = not settings.tracking_uri
        # Opening a SQLite store creates and migrates it: one process at a time.
        with store_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, settings.experiment_name or run.project, uri, project_path if local_default else None)
        run_id = client.create_run(experiment_id, run_name=run_name(run), tags=run_tags(run, kedro_version, project_path)).info.run_id
    except MlflowTrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any store or server error means: not tracked
        raise MlflowTrackingError(unavailable_message(uri, describe(error))) from error
    try:
        log_entities(client, run_id, params=params.params, tags=params.tags)
    except Exception as error:  # noqa: BLE001
        if not answers(uri, settings.request_timeout_seconds):
            return OpenedRun(client, experiment_id, run_id, params_lost=describe(error))
        _terminate_quietly(client, run_id)
        raise MlflowTrackingError(f"MLflow at {uri} refused the run's parameters ({describe(error)}).") from error
    return OpenedRun(client, experiment_id, run_id)


def run_tags(run: RunInfo, kedro_version: str, project_path: Path) -> dict[str, str]:
    """The tags a run is created with."""
    tags = {
        "kedro.run_id": run.run_id,
        "kedro.pipeline": run.pipeline,
        "kedro.env": run.env,
        "kedro.version": kedro_version,
        "kedro.runner": run.runner,
    }
    commit = git_commit(project_path)
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    user = _user()
    if user:
        tags["mlflow.user"] = user
    return tags


def run_name(run: RunInfo) -> str:
    return f"{run.pipeline} {run.run_id}".strip()


def check_reachable(uri: str, timeout: float) -> None:
    """Raise :class:`MlflowTrackingError` unless an HTTP(S) server answers within ``timeout`` s.

    Any answer below HTTP 500 counts: authentication or routing problems are reported by the
    first MLflow call, in MLflow's words. Local stores (sqlite, file) are not probed. The
    probe runs in a daemon thread, so that even a hanging name lookup cannot outlast it.
    """
    if urlsplit(uri).scheme not in {"http", "https"}:
        return
    outcome: list[str | None] = []
    no_answer = f"no answer within {timeout} s"

    def probe() -> None:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError as error:
            outcome.append(None if error.code < 500 else f"it answered HTTP {error.code}")
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            outcome.append(no_answer if isinstance(reason, TimeoutError) else str(reason))

    thread = threading.Thread(target=probe, name="kedro-observability-mlflow-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome and outcome[0] is None:
        return
    reason = outcome[0] if outcome else no_answer
    raise MlflowTrackingError(unavailable_message(uri, reason))


def answers(uri: str, timeout: float) -> bool:
    """:func:`check_reachable` as a question: False when the server does not answer."""
    try:
        check_reachable(uri, timeout)
    except MlflowTrackingError:
        return False
    return True


def unavailable_message(uri: str, reason: str) -> str:
    """What went wrong with the tracking URI, and the three ways out."""
    if re.search(r"error code 40[13]\b", reason):
        return (
            f"MLflow tracking at {uri} refused the credentials: {reason}. Set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server allowed to log runs (with "
            "kedro-observability-stack: `docker compose run --rm credentials show` prints them). To run on "
            "without tracking, set mlflow.on_unavailable: warn in observability.yml."
        )
    if urlsplit(uri).scheme in {"http", "https"}:
        remedy = (
            "Start that server (with kedro-observability-stack: `docker compose up -d mlflow`), "
            "point MLFLOW_TRACKING_URI (or mlflow.tracking_uri in observability.yml) at one that "
            "runs, or unset both to track to a local SQLite file inside the project."
        )
    else:
        remedy = store_remedy(uri, reason)
    return (
        f"MLflow tracking at {uri} is not available: {reason}. {remedy} To run on without "
        "tracking when MLflow is down, set mlflow.on_unavailable: warn in observability.yml."
    )


def _experiment_id(client: Any, name: str, uri: str, local_project: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # In the default local store, artifacts go beside mlflow.db, not under the current directory.
        location = (local_project / "mlruns" / sanitize_name(name)).resolve().as_uri() if local_project else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by a concurrent run
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise MlflowTrackingError(
            f"The MLflow experiment '{name}' at {uri} is deleted. Restore it (`mlflow experiments "
            f"restore --experiment-id {experiment.experiment_id}`) or set mlflow.experiment_name "
            "in observability.yml to another name."
        )
    return experiment.experiment_id


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``; None without git, outside a repository, or if slow."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return None


def log_entities(client: Any, run_id: str, metrics: list[Any] | None = None, params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Send metrics, params and tags in as few ``log_batch`` calls as MLflow's limits allow."""
    from mlflow.entities import Param, RunTag

    keyed: list[Any] = [Param(key, value) for key, value in (params or {}).items()]
    keyed += [RunTag(key, value[:MAX_TAG_VALUE_LENGTH]) for key, value in (tags or {}).items()]
    pending = list(metrics or [])
    while keyed or pending:
        chunk, keyed = keyed[:MAX_PARAMS_AND_TAGS_PER_BATCH], keyed[MAX_PARAMS_AND_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(chunk))
        batch, pending = pending[:room], pending[room:]
        client.log_batch(
            run_id,
            metrics=batch,
            params=[entity for entity in chunk if isinstance(entity, Param)],
            tags=[entity for entity in chunk if isinstance(entity, RunTag)],
        )


def _terminate_quietly(client: Any, run_id: str) -> None:
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001 - already reporting the first failure
        logger.debug("Could not mark MLflow run %s as failed", run_id, exc_info=True)


def describe(error: BaseException) -> str:
    """An error's type and message on one line, cut at 300 characters."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
