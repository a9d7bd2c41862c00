"""Sending statsd packets without ever slowing down or failing a run.

Built on the ``statsd`` library's client base and its pipelines (one UDP packet per event).
Unlike the library's own UDP client, which swallows send errors silently, this one uses a
connected, non-blocking socket, so that "nothing listens on that port" comes back as an
error, and turns every error into one warning per process and per run. The host is
resolved once, when the run starts, before ParallelRunner forks its workers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import lru_cache

from statsd.client.base import StatsClientBase
from statsd.client.udp import Pipeline

from kedro_observability.names import sanitize_name

logger = logging.getLogger(__name__)

# Loopback and Docker networks carry datagrams far larger than statsd's 512-byte default;
# a bigger limit keeps events with long (sanitised) names in one packet.
MAX_UDP_SIZE = 8192


class _ConnectedUDPClient(StatsClientBase):
    """statsd's UDP client, on a connected non-blocking socket that reports send errors."""

    def __init__(self, emitter: StatsdEmitter, address: tuple) -> None:
        family, _, _, _, socket_address = address
        self._emitter = emitter
        self._prefix = None
        self._maxudpsize = MAX_UDP_SIZE
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.connect(socket_address)

    def _send(self, data: str) -> None:
        try:
            self._sock.send(data.encode("ascii"))
        except OSError as error:
            self._emitter.report(error)

    def pipeline(self) -> Pipeline:
        return Pipeline(self)

    def close(self) -> None:
        self._sock.close()


class StatsdEmitter:
    """One statsd destination; thread-safe, and inherited by forked workers."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._client: _ConnectedUDPClient | None = None
        self._resolved = False
        self._warned_in: set[int] = set()
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Resolve the host and open the socket; called when a run starts. Never raises."""
        with self._lock:
            self._warned_in.clear()
            if self._client is not None:
                return
            self._resolved = True
            try:
                address = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
                self._client = _ConnectedUDPClient(self, address)
            except OSError as error:  # socket.gaierror included
                self.report(error)

    def pipeline(self) -> Pipeline | None:
        """A statsd pipeline whose ``send()`` makes one packet, or None when sending is off."""
        if not self._resolved:
            # A runner driven without KedroSession: no before_pipeline_run to connect in.
            self.connect()
        client = self._client
        return client.pipeline() if client is not None else None

    def report(self, error: OSError) -> None:
        """Warn once per process and run; the metrics of this event are dropped."""
        process = os.getpid()
        if process in self._warned_in:
            return
        self._warned_in.add(process)
        if isinstance(error, socket.gaierror):
            problem = f"the host '{self.host}' cannot be resolved ({error})"
        elif isinstance(error, ConnectionRefusedError):
            problem = f"nothing is listening on {self.host}:{self.port}/udp"
        elif isinstance(error, BlockingIOError):
            problem = "the socket's send buffer is full"
        else:
            problem = f"sending to {self.host}:{self.port}/udp failed ({error})"
        logger.warning(
            "kedro_observability: statsd metrics are being dropped: %s. The run goes on. "
            "Point STATSD_HOST and STATSD_PORT (or statsd.host and statsd.port in "
            "observability.yml) at a running statsd_exporter, start one (the "
            "kedro-observability-stack's `docker compose up -d statsd-exporter` is one way), "
            "or set statsd.enabled: false.",
            problem,
        )


_emitters: dict[tuple[str, int], StatsdEmitter] = {}
_emitters_lock = threading.Lock()


def emitter_for(host: str, port: int) -> StatsdEmitter:
    """The shared emitter of a destination: one socket per destination and process."""
    with _emitters_lock:
        emitter = _emitters.get((host, port))
        if emitter is None:
            emitter = _emitters[(host, port)] = StatsdEmitter(host, port)
        return emitter


@lru_cache(maxsize=4096)
def node_tags(project: str, pipeline: str, node_name: str) -> str:
    """The InfluxDB-style tags of a node's statsd lines (project and pipeline already sanitised)."""
    return f",project={project},pipeline={pipeline},node={sanitize_name(node_name)}"


@lru_cache(maxsize=4096)
def dataset_tags(project: str, dataset_name: str) -> str:
    """The InfluxDB-style tags of a dataset's statsd lines (project already sanitised)."""
    return f",project={project},dataset={sanitize_name(dataset_name)}"
