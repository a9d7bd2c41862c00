"""Sending statsd packets without ever slowing down or failing a run.

Built on the ``statsd`` library's client base and its pipelines (one UDP packet per event).
Unlike the library's own UDP client, which swallows send errors silently, this one uses a
connected, non-blocking socket, so that "nothing listens on that port" comes back as an
error, and turns every error into one warning per process and per run.

The host is resolved in a background thread, never on the pipeline's thread: a run waits
for it at most :data:`RESOLVE_WAIT_SECONDS` when it starts (before ParallelRunner forks its
workers), and drops its packets until it is resolved if the resolver is slower. It is
resolved again at each run's start, every :data:`REFRESH_SECONDS` and soon after a send
error, so that a long-lived process follows an exporter whose address changed (a container
restarted with a new IP); the socket in use is kept until a new address answers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from functools import lru_cache

from statsd.client.base import StatsClientBase
from statsd.client.udp import Pipeline

from kedro_observability.names import sanitize_name

logger = logging.getLogger(__name__)

# Loopback and Docker networks carry datagrams far larger than statsd's 512-byte default;
# a bigger limit keeps events with long (sanitised) names in one packet.
MAX_UDP_SIZE = 8192

RESOLVE_WAIT_SECONDS = 0.5
"""Longest wait for the host's address on the thread that starts a run."""
REFRESH_SECONDS = 30.0
"""Age after which the address is resolved again (in the background)."""
ERROR_REFRESH_SECONDS = 5.0
"""After a send error or a failed resolution, the next resolution waits at least this long."""


class _ConnectedUDPClient(StatsClientBase):
    """statsd's UDP client, on a connected non-blocking socket that reports send errors."""

    def __init__(self, emitter: StatsdEmitter, address: tuple) -> None:
        family, _, _, _, socket_address = address
        self._emitter = emitter
        self._prefix = None
        self._maxudpsize = MAX_UDP_SIZE
        self.family = family
        self.socket_address = socket_address
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.connect(socket_address)

    def reconnect(self, socket_address: tuple) -> None:
        """Point the socket at a new address of the same family (connect() again on UDP)."""
        self._sock.connect(socket_address)
        self.socket_address = socket_address

    def _send(self, data: str) -> None:
        try:
            self._sock.send(data.encode("ascii"))
        except OSError as error:
            self._emitter.report(error)
            self._emitter.refresh_soon()

    def pipeline(self) -> Pipeline:
        return Pipeline(self)

    def close(self) -> None:
        self._sock.close()


class StatsdEmitter:
    """One statsd destination; thread-safe, and inherited by forked workers."""

    def __init__(
        self,
        host: str,
        port: int,
        resolve_wait: float = RESOLVE_WAIT_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
        error_refresh_seconds: float = ERROR_REFRESH_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.resolve_wait = resolve_wait
        self.refresh_seconds = refresh_seconds
        self.error_refresh_seconds = error_refresh_seconds
        self._client: _ConnectedUDPClient | None = None
        self._started = False
        self._resolving: threading.Event | None = None
        """Set when the resolution in flight ends; None when none is."""
        self._resolution_started = 0.0
        self._next_resolution = 0.0
        """time.monotonic() after which a packet starts a new resolution."""
        self._warned_in: set[int] = set()
        self._lock = threading.Lock()
        _all_emitters.add(self)

    def connect(self) -> None:
        """Resolve the host again, in the background, when a run starts. Never raises.

        Without an address yet, wait for it at most ``resolve_wait`` seconds; a slower
        resolver costs one warning, and the packets are dropped until it answers.
        """
        with self._lock:
            self._warned_in.clear()
            self._started = True
            done = self._resolve_in_background()
            waiting = self._client is None
        if waiting and not done.wait(self.resolve_wait) and self._client is None:
            self.report(TimeoutError(f"no answer within {self.resolve_wait} s"))

    def pipeline(self) -> Pipeline | None:
        """A statsd pipeline whose ``send()`` makes one packet, or None when sending is off."""
        if not self._started:
            # A runner driven without KedroSession: no before_pipeline_run to connect in.
            self.connect()
        elif time.monotonic() >= self._next_resolution and self._resolving is None:
            with self._lock:
                self._resolve_in_background()
        client = self._client
        return client.pipeline() if client is not None else None

    def refresh_soon(self) -> None:
        """After a send error: resolve again once ``error_refresh_seconds`` have passed."""
        soon = self._resolution_started + self.error_refresh_seconds
        self._next_resolution = min(self._next_resolution, soon)

    def _resolve_in_background(self) -> threading.Event:
        """Start a resolution unless one is in flight; return its end. Hold ``_lock``."""
        if self._resolving is not None:
            return self._resolving
        done = self._resolving = threading.Event()
        self._resolution_started = time.monotonic()
        self._next_resolution = float("inf")  # none starts while this one runs
        threading.Thread(target=self._resolve, args=(done,), name=f"kedro-observability-resolve-{self.host}", daemon=True).start()
        return done

    def _resolve(self, done: threading.Event) -> None:
        """The resolver thread: look the host up, then connect or move the socket to it."""
        address = error = None
        try:
            address = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        except OSError as failure:  # socket.gaierror included
            error = failure
        try:
            with self._lock:
                if done is not self._resolving:
                    return  # forked meanwhile: this process's resolution is another one
                had_client = self._client is not None
                if address is not None:
                    try:
                        self._use(address)
                    except OSError as failure:
                        error = failure
                now = time.monotonic()
                took = now - self._resolution_started
                self._next_resolution = now + (self.error_refresh_seconds if error is not None else self.refresh_seconds)
                self._resolving = None
            if error is not None and (not had_client or not isinstance(error, socket.gaierror)):
                # Unresolvable with no address yet, or a new address that cannot be used. A lookup
                # that fails while a socket works (a resolver's hiccup) keeps that socket silently.
                self.report(error)
            elif error is None and not had_client and took > self.resolve_wait:
                logger.info("kedro_observability: statsd host '%s' resolved after %.1f s; metrics are sent from now on.", self.host, took)
        finally:
            done.set()

    def _use(self, address: tuple) -> None:
        """Send to ``address`` from now on. Hold ``_lock``."""
        family, _, _, _, socket_address = address
        client = self._client
        if client is None:
            self._client = _ConnectedUDPClient(self, address)
        elif client.socket_address != socket_address:
            if client.family == family:
                client.reconnect(socket_address)
            else:
                self._client = _ConnectedUDPClient(self, address)  # the old socket closes when unused
            logger.info("kedro_observability: statsd host '%s' now resolves to %s; sending there.", self.host, socket_address[0])

    def close(self) -> None:
        """Close the socket; the next packet resolves the host and opens one again."""
        with self._lock:
            client, self._client = self._client, None
            self._started = False
        if client is not None:
            client.close()

    def _after_fork_in_child(self) -> None:
        """A forked worker: no resolver thread came along, and the lock may have been held."""
        self._lock = threading.Lock()
        if self._resolving is not None:
            self._resolving = None
            self._next_resolution = 0.0  # the worker's first packet starts its own

    def report(self, error: OSError) -> None:
        """Warn once per process and run; the metrics of this event are dropped."""
        process = os.getpid()
        if process in self._warned_in:
            return
        self._warned_in.add(process)
        if isinstance(error, socket.gaierror):
            problem = f"the host '{self.host}' cannot be resolved ({error})"
        elif isinstance(error, TimeoutError):
            problem = f"resolving the host '{self.host}' gave {error}; metrics are dropped until it answers (resolved in the background, the run does not wait)"
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


_all_emitters: weakref.WeakSet[StatsdEmitter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _emitters_lock
    _emitters_lock = threading.Lock()
    for emitter in list(_all_emitters):
        emitter._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
