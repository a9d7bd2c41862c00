"""A real MLflow tracking server for the tests, and a TCP relay to make it vanish on cue.

The server runs as the compose service does: one worker, job execution off, a SQLite backend
and artifacts served by the server, here in a temporary folder, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_servers import free_port, stop_process_group, wait_until_answering

START_TIMEOUT = 90.0


def closed_port_uri() -> str:
    """The URI of a port nothing listens on (bound, then released)."""
    return f"http://127.0.0.1:{free_port()}"


class MlflowServer:
    """``mlflow server`` in its own process group, stopped by that group's id."""

    def __init__(
        self,
        workdir: Path,
        backend_store_uri: str | None = None,
        artifacts_destination: str | None = None,
        environment: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        """By default a SQLite store and a folder in ``workdir``; the team profile's test gives a
        PostgreSQL URI, an s3:// destination and the server's storage credentials instead. A
        ``port`` given: a restart of a server stopped earlier, on its address."""
        self.workdir = workdir
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        environment = {**os.environ, **(environment or {}), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        environment.pop("MLFLOW_TRACKING_URI", None)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", artifacts_destination or str(workdir / "artifacts"),
            "--serve-artifacts",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            # A session of its own: uvicorn's worker is a child, and both go when the group is stopped.
            self.process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_until_healthy(self) -> None:
        wait_until_answering(self.process, f"{self.uri}/health", START_TIMEOUT, self.log_tail)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process_group(self.process, timeout=15)


class TcpRelay:
    """Forward 127.0.0.1:<port> to a server; count the bytes clients send; close on cue.

    Closing also cuts the open connections, so that a client's kept-alive connection dies
    with the "server" as it would in reality.
    """

    def __init__(self, target_port: int, close_on: bytes | None = None, port: int = 0) -> None:
        """``close_on``: the relay closes, without forwarding it, as a client sends a chunk
        holding these bytes (a request path, say): the server goes away at that request.
        ``port``: where the relay listens (0: a free port)."""
        self._target = ("127.0.0.1", target_port)
        self._close_on = close_on
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.bytes_from_clients = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if from_client:
                    if self._close_on is not None and self._close_on in chunk:
                        self.close()
                        return
                    with self._lock:
                        self.bytes_from_clients += len(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for each in (source, target):
                try:
                    each.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for each in sockets:
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            each.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server for the whole session; a failure to start fails the tests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()
