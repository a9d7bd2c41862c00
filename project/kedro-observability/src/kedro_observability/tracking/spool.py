"""The spool: what a run could not send to MLflow, kept in the project until it can be.

When the tracking server stops answering (mid-run, or before the first node under
``mlflow.on_unavailable: warn``), the end of the run writes what is left of its
:class:`~kedro_observability.tracking.delivery.Delivery` to
``<project>/<mlflow.spool_folder>`` (``data/observability-spool`` by default): one folder
per run with ``delivery.pkl`` and copies of its artifacts. ``kedro observability replay``
(and, with ``mlflow.replay_at_start: true``, the helper of every later run, while the nodes
run) sends it once the server answers, step by step; each step done is written back before
the next, and a fully sent run's folder is removed, so that replaying twice logs nothing
twice.

``delivery.pkl`` is a pickle, because it holds the model as the run had it: load a spool
only from a project you trust, as you would its models.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kedro_observability.tracking.delivery import Delivery, send
from kedro_observability.tracking.server import answers, bound_http_requests, describe

if TYPE_CHECKING:
    from kedro_observability.settings import MlflowSettings

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DELIVERY_FILE = "delivery.pkl"
REPLAY_HINT = "`kedro observability replay` sends it once the server answers"


def spool_folder(project_path: Path, settings: MlflowSettings) -> Path:
    return project_path / settings.spool_folder


def spool(delivery: Delivery, folder: Path, label: str) -> Path:
    """Write what is left of ``delivery`` to a new folder under ``folder``; return that folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Runs that could not reach MLflow yet: `kedro observability replay`.\n*\n", encoding="utf-8")
    entry = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}"
    while entry.exists():
        entry = entry.with_name(entry.name + "+")
    artifacts = entry / "artifacts"
    artifacts.mkdir(parents=True)
    if "artifacts" not in delivery.done:
        # The run's own copies are in a temporary folder that goes with the run.
        copies = []
        for index, path in enumerate(delivery.artifacts):
            target = artifacts / f"{index:04d}" / path.name
            target.parent.mkdir()
            shutil.copy2(path, target)
            copies.append(target)
        delivery.artifacts = copies
    else:
        delivery.artifacts = []
    if delivery.model_error is not None and not _pickles(delivery.model_error):
        delivery.model_error = RuntimeError(describe(delivery.model_error))
    delivery.sources = None
    _save(entry, delivery)
    return entry


def pending_entries(folder: Path) -> list[Path]:
    """The spooled runs under ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(path.parent for path in folder.glob(f"*/{DELIVERY_FILE}"))


@dataclass(frozen=True)
class Replayed:
    """What replaying one spooled run did."""

    entry: Path
    run_id: str | None
    uri: str
    status: str
    completed: bool
    message: str


def replay(folder: Path) -> list[Replayed]:
    """Send every spooled run under ``folder`` whose server answers; keep the others."""
    outcomes = []
    for entry in pending_entries(folder):
        with _claimed(entry) as claimed:
            if not claimed:
                outcomes.append(Replayed(entry, None, "?", "?", False, "another process is replaying it"))
                continue
            if not (entry / DELIVERY_FILE).exists():
                continue  # completed by that other process meanwhile
            outcomes.append(replay_entry(entry))
    return outcomes


def replay_entry(entry: Path) -> Replayed:
    """Send one spooled run (the caller holds its claim)."""
    try:
        delivery = _load(entry)
    except Exception as error:  # noqa: BLE001 - a damaged or foreign file: say which
        return Replayed(entry, None, "?", "?", False, f"cannot be read ({describe(error)}); it is left in place")
    if not answers(delivery.uri, delivery.settings.request_timeout_seconds):
        return Replayed(entry, delivery.run_id, delivery.uri, delivery.status, False, "the server still does not answer; left for the next replay")
    variables = bound_http_requests(delivery.settings)
    try:
        from mlflow import MlflowClient

        failed, lost = send(delivery, MlflowClient(tracking_uri=delivery.uri), on_step=lambda sent: _save(entry, sent))
    except Exception as error:  # noqa: BLE001 - creating the run failed: the server decides
        return Replayed(entry, delivery.run_id, delivery.uri, delivery.status, False, f"could not be sent ({describe(error)}); left for the next replay")
    finally:
        for variable in variables:
            os.environ.pop(variable, None)
    if lost is not None:
        return Replayed(entry, delivery.run_id, delivery.uri, delivery.status, False, f"the server went away during the replay ({lost}); the rest is left for the next replay")
    shutil.rmtree(entry, ignore_errors=True)
    message = "completed" + (f"; not logged, as in the run itself: {'; '.join(failed)}" if failed else "")
    return Replayed(entry, delivery.run_id, delivery.uri, delivery.status, True, message)


def _save(entry: Path, delivery: Delivery) -> None:
    temporary = entry / f".{DELIVERY_FILE}.{os.getpid()}"
    temporary.write_bytes(pickle.dumps({"format": FORMAT_VERSION, "delivery": delivery}, protocol=pickle.HIGHEST_PROTOCOL))
    temporary.replace(entry / DELIVERY_FILE)


def _load(entry: Path) -> Delivery:
    content = pickle.loads((entry / DELIVERY_FILE).read_bytes())
    if not isinstance(content, dict) or content.get("format") != FORMAT_VERSION:
        raise ValueError(f"spool format {content.get('format') if isinstance(content, dict) else '?'}, this kedro-observability reads {FORMAT_VERSION}")
    delivery: Delivery = content["delivery"]
    # The project may have moved since: the artifacts are wherever this entry is now.
    delivery.artifacts = [entry / "artifacts" / path.parent.name / path.name for path in delivery.artifacts]
    return delivery


@contextmanager
def _claimed(entry: Path) -> Iterator[bool]:
    """An exclusive claim on a spooled run, so that two replays never send it twice."""
    with open(entry.parent / f".{entry.name}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if not entry.exists():
                Path(lock.name).unlink(missing_ok=True)


def _pickles(value: object) -> bool:
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:  # noqa: BLE001 - an exception whose arguments pickle cannot rebuild
        return False
    return True
