"""The MLflow side of a run, in a process of its own: MLflow's import, its store, the model.

MLflow costs a ``kedro run`` seconds of CPU that no node needs: importing it (about 1 s),
opening a SQLite store (about 1.5 s: SQLAlchemy and Alembic check the schema) and logging the
model (about 1 s). In the run's own process that is all on the critical path, and a thread
would not help: it is Python code holding the GIL. So one helper process per Kedro process
does it, started when the context exists (it imports MLflow and opens the store while Kedro
builds the catalog and the plugin parses the suites), and the run talks to it through a
socket: the run is opened before the first node (its errors fail or warn there, as before),
the model is logged as soon as it is saved, while later nodes run, and the end of the run
waits for everything to be sent.

Messages are framed (a header with the message's kind and length, then its pickle) and
unpickled on the thread that handles them, never on the thread that drains the socket:
unpickling a model imports its library (scikit-learn, say), and two threads importing the
same package at once can see it half initialised (``ImportError: cannot import name ...
partially initialized module``) while the other imports MLflow's flavours.

With ``mlflow.warm_helper_seconds``, the helper outlives its Kedro process and serves the
next runs of the same project (:mod:`.warm`).

The helper ignores SIGINT and SIGTERM: Ctrl-C reaches the whole process group, and the run
(the parent) decides how the MLflow run ends. When the parent goes away without ending it
(SIGKILL), the socket closes and the helper ends the run as KILLED itself. Its log records
and warnings are handed to the parent, which logs them through its own logging.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro_observability.tracking import warm

logger = logging.getLogger(__name__)


class WorkerGoneError(RuntimeError):
    """The MLflow helper process exited or cannot be reached."""


_HEADER = struct.Struct("!16sQ")
"""A message's kind (ASCII, padded) and the length of its pickle."""


def write_message(stream: Any, message: tuple[Any, ...]) -> None:
    """Write one framed message (the caller holds the stream's write lock) and flush it."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(str(message[0]).encode("ascii"), len(payload)) + payload)
    stream.flush()


def read_frame(stream: Any) -> tuple[str, bytes]:
    """Read one framed message's kind and pickle; raise EOFError when the stream ends."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the stream ended")
    kind, length = _HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        raise EOFError("the stream ended within a message")
    return kind.rstrip(b"\0").decode("ascii"), payload


@dataclass(frozen=True)
class OpenRequest:
    """What the helper needs to open a run: everything was checked in the run's process."""

    uri: str
    settings: Any
    run: Any
    kedro_version: str
    project_path: Path
    params: Any
    source_paths: dict[str, str]
    http_environment: dict[str, str]
    """Every MLFLOW_* variable of the run's process, its HTTP bounds included, and OpenTelemetry's
    OTEL_* (where the run's trace also goes)."""
    offline: bool = False
    """The server did not answer before the first node (``on_unavailable: warn``): the run is
    created at its end if the server answers by then, and spooled otherwise."""


@dataclass(frozen=True)
class FinishRequest:
    """The end of the run: its status, and what the helper has not been sent yet."""

    status: str
    error: str | None
    stopped_by: str | None
    values: dict[str, bytes]
    """Data the helper was not sent during the run, each value pickled on its own."""
    recorded: Any
    not_logged: list[str] = field(default_factory=list)
    started_ns: int | None = None
    ended_ns: int | None = None
    """The run's start and end (ns since the epoch), for its trace."""


# ---- the run's side ---------------------------------------------------------------------------


class TrackingWorker:
    """The run's handle on its helper process; one per Kedro process, reused by every run."""

    _current: TrackingWorker | None = None
    _current_lock = threading.Lock()

    def __init__(self, warm_seconds: int = 0, project_path: Path | None = None) -> None:
        self.pid = os.getpid()
        self.process: subprocess.Popen[bytes] | None = None
        address = _warm_address(project_path) if warm_seconds > 0 and project_path is not None else None
        reached = warm.connect(address) if address is not None else None
        if reached is not None:
            ours, self.helper_pid = reached
            logger.info(
                "kedro_observability: the MLflow helper kept warm by an earlier run (pid %s) serves this one: MLflow is imported "
                "and its store open already (mlflow.warm_helper_seconds: %s).", self.helper_pid, warm_seconds,
            )  # fmt: skip
        else:
            ours = self._start(warm_seconds, address)
        self._socket = ours
        self._stream = ours.makefile("rwb")
        self._send_lock = threading.Lock()

    def _start(self, warm_seconds: int, address: Path | None) -> socket.socket:
        ours, theirs = socket.socketpair()
        environment = dict(os.environ)
        # The parent's import path (the project's src/ included), so that a model of the
        # project's own classes unpickles there.
        environment["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
        arguments = [str(theirs.fileno())]
        if address is not None:
            arguments += ["--warm", str(warm_seconds), str(address)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kedro_observability.tracking.worker", *arguments],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # A helper that outlives the run must not hold its stderr: whoever reads the
            # run's output (a pipe, a CI job) would wait for it to end.
            stderr=subprocess.DEVNULL if address is not None else None,
            env=environment,
        )
        theirs.close()
        self.helper_pid = self.process.pid
        if address is not None:
            logger.info(
                "kedro_observability: started the MLflow helper (pid %s); it stays %s s after this run for the next one "
                "(mlflow.warm_helper_seconds; `kedro observability stop-helpers` ends it).", self.helper_pid, warm_seconds,
            )  # fmt: skip
        return ours

    @classmethod
    def for_this_process(cls, warm_seconds: int = 0, project_path: Path | None = None) -> TrackingWorker:
        """The process's helper, started on first use (again if it exited, or after a fork);
        a warm one if the settings keep helpers and one is free (:mod:`.warm`)."""
        with cls._current_lock:
            current = cls._current
            if current is None or current.pid != os.getpid() or not current.alive():
                current = cls._current = cls(warm_seconds, project_path)
            return current

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.helper_pid, 0)
        except OSError:
            return False
        return True

    def send(self, message: tuple[Any, ...]) -> None:
        """Send one message; raise :class:`WorkerGoneError` if the helper is gone."""
        if os.getpid() != self.pid:
            return  # a forked ParallelRunner worker: its data goes through the run record
        try:
            with self._send_lock:
                write_message(self._stream, message)
        except OSError as error:
            raise WorkerGoneError(f"the MLflow helper process exited ({error})") from error

    def receive(self, kind: str) -> Any:
        """Wait for the answer ``kind``, logging the helper's log records meanwhile."""
        while True:
            try:
                message = pickle.loads(read_frame(self._stream)[1])
            except (EOFError, OSError, pickle.UnpicklingError) as error:
                code = self.process.poll() if self.process is not None else "unknown: a warm helper"
                raise WorkerGoneError(f"the MLflow helper process {self.helper_pid} exited (exit code {code}, {type(error).__name__})") from error
            if message[0] == "log":
                _relog(*message[1:])
            elif message[0] == kind:
                return message[1]


def _warm_address(project_path: Path) -> Path | None:
    try:
        return warm.warm_address(project_path)
    except OSError as error:
        logger.warning("kedro_observability: no warm MLflow helper for this run (%s); it starts one of its own.", error)
        return None


def _relog(name: str, level: int, text: str, pathname: str, lineno: int) -> None:
    target = logging.getLogger(name)
    if target.isEnabledFor(level):
        target.handle(logging.makeLogRecord({"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": text, "pathname": pathname, "lineno": lineno}))


# ---- the helper's side ------------------------------------------------------------------------


class _Forward(logging.Handler):
    """Hands each record to the parent, which logs it as its own."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._send(("log", record.name, record.levelno, text, record.pathname, record.lineno))
        except Exception:  # noqa: BLE001 - logging must never stop the helper
            pass


class _Helper:
    """Runs the MLflow runs the parent opens, one after the other."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.run: Any = None

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            write_message(self._stream, message)

    def read(self) -> None:
        """Drain the socket at once, so that the parent never waits on a full buffer; only
        bytes here (see the module's docstring)."""
        while True:
            try:
                self.inbox.put(read_frame(self._stream))
            except (EOFError, OSError):  # the parent is gone
                self.inbox.put(None)
                return

    def serve(self) -> None:
        while True:
            frame = self.inbox.get()
            if frame is None:
                if self.run is not None:  # the parent died without ending its run
                    self.run.finish(FinishRequest("KILLED", None, "the end of the Kedro process", {}, None))
                return
            kind, payload = frame
            try:
                message = pickle.loads(payload)
            except Exception as error:  # noqa: BLE001 - one unreadable message must not end the helper
                self._not_done(kind, "the MLflow helper could not read it", error)
                continue
            try:
                self._handle(kind, message)
            except Exception as error:  # noqa: BLE001 - nor one it fails on: the run still ends
                self._not_done(kind, "the MLflow helper failed on it", error)

    def _not_done(self, kind: str, what: str, error: Exception) -> None:
        """Answer a message that could not be handled, so that the run never waits for it."""
        from kedro_observability.tracking.server import describe

        reason = f"{what}: {describe(error)}"
        if kind == "open":
            self.send(("opened", (RuntimeError(f"the run's opening ({reason})"), None, None)))
        elif kind == "finish":
            # Its status is not set: the run stays open and ends as KILLED when the run's
            # process lets the helper go.
            self.send(("finished", ([f"everything the run gathered and its status ({reason})"], None, getattr(self.run, "run_id", None))))
        elif kind == "keep" and self.run is not None:
            self.run.not_kept.append(f"data the run sent for MLflow ({reason})")
        else:
            logger.warning("kedro_observability: a %s message to the MLflow helper was lost (%s).", kind, reason)

    def _handle(self, kind: str, message: tuple[Any, ...]) -> None:
        from kedro_observability.tracking.remote import HelperRun, prepare, prepare_end_of_run, replay_spool

        if kind == "prepare":
            prepare(*message[1:])
        elif kind == "open":
            request: OpenRequest = message[1]
            try:
                self.run = HelperRun.open(request)
            except BaseException as error:  # noqa: BLE001 - the parent raises it
                self.run = None
                self.send(("opened", (_portable(error), None, None)))
                return
            self.send(("opened", (None, self.run.run_id, self.run.experiment_id)))
            try:
                prepare_end_of_run(request.settings)
            except Exception as error:  # noqa: BLE001 - a head start only: the end of the run imports what it needs
                logger.debug("Preparing the end of the run failed: %s", error)
            if request.settings.replay_at_start and not request.offline:
                replay_spool(request)
        elif kind == "keep" and self.run is not None:
            self.run.keep(message[1], message[2])
        elif kind == "finish":
            outcome = self.run.finish(message[1]) if self.run is not None else (["everything (no MLflow run is open)"], None, None)
            self.run = None
            self.send(("finished", outcome))


def _portable(error: BaseException) -> BaseException:
    """The error itself if it crosses a pickle, else a RuntimeError with its description."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an exception with arguments pickle cannot rebuild
        from kedro_observability.tracking.server import describe

        return RuntimeError(describe(error))


def main() -> None:
    """The helper process: ``python -m kedro_observability.tracking.worker <socket fd>
    [--warm <idle seconds> <address>]``."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    logging.getLogger("kedro_observability").setLevel(logging.INFO)
    logging.captureWarnings(True)
    _serve(socket.socket(fileno=int(sys.argv[1])))
    if len(sys.argv) == 5 and sys.argv[2] == "--warm":
        _stay_warm(float(sys.argv[3]), Path(sys.argv[4]))


def _serve(connection: socket.socket) -> None:
    """Serve one Kedro process until it goes away."""
    helper = _Helper(connection.makefile("rwb"))
    logging.getLogger().handlers[:] = [_Forward(helper.send)]
    threading.Thread(target=helper.read, name="kedro-observability-mlflow-reader", daemon=True).start()
    helper.serve()
    connection.close()


def _stay_warm(idle_seconds: float, address: Path) -> None:
    """Serve the next runs of the same project, one at a time, until none comes for
    ``idle_seconds`` (:mod:`.warm`); end at once if another helper is warm already."""
    lock = warm.take_address(address)
    if lock is None:
        return
    # Out of the terminal's session (its hang-up and Ctrl-C are no longer ours), and a plain
    # `kill <pid>` ends it, its socket and lock file removed.
    os.setsid()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        for connection in warm.connections(address, idle_seconds):
            _serve(connection)
    finally:
        warm.release(address, lock)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)

if __name__ == "__main__":
    main()
