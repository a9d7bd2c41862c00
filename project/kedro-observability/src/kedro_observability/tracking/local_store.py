"""The local SQLite store: created and migrated by one process at a time, and its errors explained.

MLflow creates and migrates a SQLite store the first time a process opens it, with no lock
of its own. Several ``kedro run`` started at once on a project without ``mlflow.db`` all
migrate the same file: at least one fails (``table _alembic_tmp_metrics already exists``,
``duplicate column name: step``) and the file may be left half migrated. :func:`store_lock`
holds an exclusive ``fcntl`` lock on ``<db>.lock`` beside the store while it is opened, so
the first process migrates it and the others wait, then find it ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no fcntl; the store is opened unlocked, as MLflow does
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
LOCK_TIMEOUT_SECONDS = 120.0
"""Longest wait for another process to finish opening the store (a migration takes seconds)."""
_POLL_SECONDS = 0.05


class StoreLockTimeout(RuntimeError):
    """Another process held the store's lock for longer than :data:`LOCK_TIMEOUT_SECONDS`."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` tracking URI; None for other URIs and in-memory stores."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(uri).database
    except Exception:  # noqa: BLE001 - MLflow reports a malformed URI in its own words
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).absolute()


@contextlib.contextmanager
def store_lock(uri: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while the block opens it; other URIs: no lock.

    The lock is a separate file: SQLite's own locks are fcntl locks on the database file,
    which any other descriptor of that file opened and closed in this process would release.
    The lock file is left in place (deleting it would let two processes hold two locks).
    Raises :class:`StoreLockTimeout` after ``timeout`` seconds of waiting.
    """
    database = sqlite_file(uri)
    if database is None or fcntl is None or not database.parent.is_dir():
        # No folder: MLflow's own error says so, and there is nothing to race on.
        yield
        return
    lock_path = database.with_name(database.name + LOCK_SUFFIX)
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        logger.debug("No lock for %s (%s): opening it unlocked", database, error)
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockTimeout(
                        f"another process has held {lock_path} for more than {timeout:.0f} s while "
                        "opening the store; if no other `kedro run` or MLflow process of this "
                        "project is running, delete that lock file"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


# Reasons (``Type: message``, as :func:`~.server.describe` gives them) about the file or its folder.
_FOLDER_PROBLEMS = (
    "unable to open database",
    "readonly database",
    "permission",
    "read-only file system",
    "no such file",
    "fileexistserror",
    "notadirectoryerror",
    "isadirectoryerror",
    "filenotfounderror",
)

# Reasons that say the file is there but is not a store MLflow can use as it is.
_SCHEMA_PROBLEMS = (
    "out-of-date database schema",
    "alembic",
    "migration",
    "already exists",
    "duplicate column",
    "no such table",
    "malformed",
    "not a database",
)


def store_remedy(uri: str, reason: str) -> str:
    """What to do about a local store that failed to open, from the reason it gave.

    "Check the folder is writable" only when the reason is about the file or its folder;
    a schema or migration error asks for an upgrade or a fresh store instead.
    """
    database = sqlite_file(uri)
    text = reason.lower()
    if any(marker in text for marker in _FOLDER_PROBLEMS):
        return f"Check that the folder of {database or uri} exists and is writable, or set MLFLOW_TRACKING_URI to a running MLflow server."
    if "database is locked" in text or StoreLockTimeout.__name__.lower() in text:
        return "Another process kept the store busy: run again when it is done, or set MLFLOW_TRACKING_URI to a running MLflow server."
    if any(marker in text for marker in _SCHEMA_PROBLEMS):
        where = database or uri
        return (
            f"The store's schema could not be read or migrated. Upgrade it (`mlflow db upgrade {uri}`), "
            f"or, if it holds nothing to keep, move {where} aside and run again (a new one is created)."
        )
    return "Check the store's URI, or set MLFLOW_TRACKING_URI to a running MLflow server."
