"""The MLflow helper kept warm between runs (``mlflow.warm_helper_seconds``).

A cold helper spends seconds of CPU on every ``kedro run``: importing MLflow, skops and
matplotlib, opening the SQLite store. On a short pipeline that is the run's critical path.
With the setting above 0, the helper that served a run stays after its Kedro process ends,
for that many seconds without a run, and the next ``kedro run`` of the same project talks to
it instead of starting its own.

It is only reused when nothing it has imported can differ from what the new run would
import: the address of a warm helper is a digest of the interpreter, the working folder,
the environment, the import path (each folder's modification time, which an install or an
uninstall changes) and every ``.py`` file of the project's ``src/`` and of this plugin
(modification time and size). A changed node or model class therefore gets a new helper;
the old one ends when its time is up.

One run at a time: a warm helper stops listening while it serves a run, so a second run
started meanwhile starts a helper of its own, as without the setting. Its socket lives in a
folder only this user can open (the helper unpickles what it is sent), and it holds a lock
file (with its pid) so that two helpers never share one address.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_VOLATILE = frozenset({"_", "OLDPWD", "SHLVL", "COLUMNS", "LINES"})
"""Variables a shell changes between two commands that no library reads."""

_SOCKET_PATH_LIMIT = 108
"""Bytes of a Unix socket's path on Linux, its final NUL included."""

GREETING_TIMEOUT_SECONDS = 2.0
"""How long a run waits for a warm helper's greeting before it starts a helper of its own
(a helper that is just taking another run answers none)."""


def helpers_folder() -> Path:
    """This user's folder of warm helpers' sockets and locks (created private)."""
    folder = Path(tempfile.gettempdir()) / f"kedro-observability-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.lstat()
    if folder.is_symlink() or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise PermissionError(f"{folder} is not private to this user (mode {oct(status.st_mode & 0o777)}); remove it, and the next run recreates it")
    return folder


def warm_address(project_path: Path) -> Path:
    """The socket of the warm helper that could serve this process's runs."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        digest.update("\0".join(str(part) for part in parts).encode("utf-8", "surrogateescape") + b"\n")

    add(sys.executable, os.getcwd(), project_path)
    for name in sorted(os.environ):
        if name not in _VOLATILE:
            add(name, os.environ[name])
    for entry in sys.path:
        add(entry, _modified_ns(Path(entry or ".")))
    plugin = Path(__file__).resolve().parent.parent
    for path in (*_python_files(Path(project_path) / "src"), *_python_files(plugin)):
        status = path.stat()
        add(path, status.st_mtime_ns, status.st_size)
    address = helpers_folder() / f"{digest.hexdigest()[:24]}.sock"
    if len(os.fsencode(address)) >= _SOCKET_PATH_LIMIT:
        raise OSError(f"the temporary folder's path is too long for a socket ({address}); point TMPDIR at a shorter one")
    return address


def connect(address: Path) -> tuple[socket.socket, int] | None:
    """A connection to the warm helper at ``address`` and its pid, or None (none is there,
    or it is serving another run)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(GREETING_TIMEOUT_SECONDS)
        connection.connect(str(address))
        greeting = connection.recv(64).decode("ascii", "replace")
        if not greeting.startswith("ready "):
            raise OSError("no greeting")
        pid = int(greeting.split()[1])
    except (OSError, ValueError):
        connection.close()
        return None
    connection.settimeout(None)
    return connection, pid


def take_address(address: Path) -> Any | None:
    """The address's lock (kept for the helper's life), or None if another helper has it."""
    lock = open(address.with_suffix(".lock"), "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def connections(address: Path, idle_seconds: float) -> Iterator[socket.socket]:
    """Each run's connection, one at a time, until ``idle_seconds`` pass without one; the
    socket file is removed then."""
    try:
        while True:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                address.unlink(missing_ok=True)  # ours: we hold its lock
                listener.bind(str(address))
                os.chmod(address, 0o600)
                listener.listen(1)
                listener.settimeout(idle_seconds)
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    return
            finally:
                # Not listening while a run is served: a second run meets a refusal (or no
                # greeting) and starts its own helper instead of waiting for this one.
                listener.close()
            connection.settimeout(None)
            try:
                connection.sendall(f"ready {os.getpid()}\n".encode("ascii"))
            except OSError:
                connection.close()
                continue
            yield connection
    finally:
        address.unlink(missing_ok=True)


def release(address: Path, lock: Any) -> None:
    """Remove the address's socket and lock file as the helper ends (it holds the lock)."""
    address.unlink(missing_ok=True)
    address.with_suffix(".lock").unlink(missing_ok=True)
    lock.close()


def warm_pids() -> list[int]:
    """The pids of this user's warm helpers (those holding a lock); removes what helpers
    killed outright (SIGKILL) left behind."""
    try:
        folder = helpers_folder()
    except OSError:
        return []
    pids = []
    for lock_path in folder.glob("*.lock"):
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: a live helper
                lock.seek(0)
                text = lock.read().strip()
                if text.isdigit():
                    pids.append(int(text))
                continue
            # Free: no helper owns this address any more.
            lock_path.with_suffix(".sock").unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
    return pids


def _modified_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _python_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)
