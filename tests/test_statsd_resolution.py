"""Resolving the statsd host never blocks the pipeline: a resolver that does not answer costs
at most RESOLVE_WAIT_SECONDS and one warning, metrics flow once it answers, and a long-lived
process follows an exporter whose address changed.

The OS resolver is the one part replaced: in the `kedro run` subprocess by a sitecustomize
whose ``socket.getaddrinfo`` blocks for one name (up to 10 s, until the test releases it),
in this process by a ``getaddrinfo`` that maps one name to a chosen 127.0.0.1 socket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_project
from kedro_observability.metrics.emitter import RESOLVE_WAIT_SECONDS, StatsdEmitter
from statsd_capture import UDPCapture
from tiny_project import make_tiny_project, subprocess_environment, write

SLOW_NAME = "slow-statsd.test"
MOVING_NAME = "moving-statsd.test"

SITECUSTOMIZE = """
    import os
    import socket
    import time

    _real_getaddrinfo = socket.getaddrinfo


    def getaddrinfo(host, port, *args, **kwargs):
        if host == os.environ.get("SLOW_NAME"):
            with open(os.environ["LOOKUP_STARTED"], "a") as started:
                started.write(f"{time.time()}\\n")
            deadline = time.monotonic() + 10
            while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
                time.sleep(0.02)
            host = "127.0.0.1"
        return _real_getaddrinfo(host, port, *args, **kwargs)


    socket.getaddrinfo = getaddrinfo
"""

SLOW_REGISTRY = """
    import os
    import time

    from kedro.pipeline import Pipeline, node


    def first() -> int:
        with open(os.environ["FIRST_STARTED"], "w") as started:
            started.write(str(time.time()))
        return 1


    def wait_for_release(value: int) -> int:
        open(os.environ["SECOND_STARTED"], "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the resolver thread answers, and the socket is connected
        return value


    def last(value: int) -> int:
        return value


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([
            node(first, None, "a", name="first"),
            node(wait_for_release, "a", "b", name="wait_for_release"),
            node(last, "b", "c", name="last"),
        ])}
"""

STATSD_ONLY = """
    memory: {enabled: false}
    validation: {enabled: false}
    mlflow: {enabled: false}
"""


def _node_lines(capture: UDPCapture) -> dict[str, set[str]]:
    """Node name -> names of the statsd lines received for it; "(run)" for the pipeline's."""
    found: dict[str, set[str]] = {}
    for line in capture.lines():
        found.setdefault(line.tags.get("node", "(run)"), set()).add(line.name)
    return found


def _wait_for(path: Path, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{path.name} never appeared:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def test_a_resolver_that_does_not_answer_costs_the_pipeline_no_time_and_metrics_flow_once_it_does(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path / "slow", "tiny_slow_dns", SLOW_REGISTRY, STATSD_ONLY)
    harness = tmp_path / "harness"
    write(harness / "sitecustomize.py", SITECUSTOMIZE)
    signals = {name: tmp_path / name.lower() for name in ("LOOKUP_STARTED", "FIRST_STARTED", "SECOND_STARTED", "RELEASE")}
    capture = UDPCapture()
    environment = subprocess_environment(project, SLOW_NAME=SLOW_NAME, STATSD_HOST=SLOW_NAME, STATSD_PORT=str(capture.port), **{k: str(v) for k, v in signals.items()})
    environment["PYTHONPATH"] = f"{harness}{os.pathsep}{environment['PYTHONPATH']}"
    log = tmp_path / "kedro-run.log"
    kedro = Path(sys.executable).with_name("kedro")
    with log.open("wb") as output:
        process = subprocess.Popen([str(kedro), "run"], cwd=project, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for(signals["SECOND_STARTED"], process, log, timeout=60)
        looked_up = float(signals["LOOKUP_STARTED"].read_text().split()[0])
        first_started = float(signals["FIRST_STARTED"].read_text())
        # The lookup blocks for 10 s; the first node started after the bounded wait only.
        assert first_started - looked_up < RESOLVE_WAIT_SECONDS + 1.5, first_started - looked_up
        signals["RELEASE"].touch()
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        capture_lines = _node_lines(capture)
        capture.close()

    text = log.read_text()
    assert "first" not in capture_lines  # sent while unresolved: dropped
    assert "kedro.node.runs" in capture_lines["wait_for_release"]
    assert "kedro.node.runs" in capture_lines["last"]
    assert "kedro.pipeline.runs" in capture_lines["(run)"]
    assert text.count("statsd metrics are being dropped") == 1, text
    assert f"resolving the host '{SLOW_NAME}' gave no answer within {RESOLVE_WAIT_SECONDS} s" in text
    assert f"statsd host '{SLOW_NAME}' resolved after" in text
    assert len(signals["LOOKUP_STARTED"].read_text().split()) == 1  # one lookup, not one per packet


class MovingResolver:
    """``socket.getaddrinfo`` for which MOVING_NAME is 127.0.0.1 at a port the test chooses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, port: int) -> None:
        self.port = port
        self.lookups = 0
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, *args, **kwargs):
        if host == MOVING_NAME:
            self.lookups += 1
            return self._real("127.0.0.1", self.port, *args, **kwargs)
        return self._real(host, port, *args, **kwargs)


MOVING_REGISTRY = """
    from kedro.pipeline import Pipeline, node


    def one() -> int:
        return 1


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([node(one, None, "a", name="one")])}
"""


def test_each_run_of_a_long_lived_process_follows_a_moved_exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_tiny_project(tmp_path / "moving", "tiny_moving_dns", MOVING_REGISTRY, STATSD_ONLY)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project / "src"))
    before, after = UDPCapture(), UDPCapture()
    resolver = MovingResolver(monkeypatch, before.port)
    monkeypatch.setenv("STATSD_HOST", MOVING_NAME)
    monkeypatch.setenv("STATSD_PORT", "9125")  # what the resolver returns decides
    try:
        run_project(project)
        assert "kedro.pipeline.runs" in _node_lines(before)["(run)"]
        before.clear()

        resolver.port = after.port  # the exporter's container restarted elsewhere
        run_project(project)
        assert "kedro.pipeline.runs" in _node_lines(after).get("(run)", set())
        assert "kedro.pipeline.runs" not in _node_lines(before).get("(run)", set())
    finally:
        before.close()
        after.close()


def _send_until(emitter: StatsdEmitter, capture: UDPCapture, timeout: float) -> float:
    """Send a packet every 20 ms until ``capture`` receives one; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        packet = emitter.pipeline()
        if packet is not None:
            packet.incr("kedro.test.probe")
            packet.send()
        with capture._lock:  # the test helper's own state, without its settle wait
            if capture._packets:
                return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"nothing reached port {capture.port} within {timeout} s")


def test_within_one_run_the_address_is_resolved_again_on_a_period(monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = UDPCapture(), UDPCapture()
    resolver = MovingResolver(monkeypatch, before.port)
    emitter = StatsdEmitter(MOVING_NAME, 9125, refresh_seconds=0.3, error_refresh_seconds=3600)
    try:
        emitter.connect()
        _send_until(emitter, before, timeout=2)
        resolver.port = after.port
        took = _send_until(emitter, after, timeout=5)
        assert took < 2, took
    finally:
        emitter.close()
        before.close()
        after.close()


def test_a_send_error_resolves_the_address_again_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = UDPCapture(), UDPCapture()
    resolver = MovingResolver(monkeypatch, before.port)
    emitter = StatsdEmitter(MOVING_NAME, 9125, refresh_seconds=3600, error_refresh_seconds=0.3)
    try:
        emitter.connect()
        _send_until(emitter, before, timeout=2)
        lookups = resolver.lookups
        before.close()  # the old address stops answering: sends fail (ICMP port unreachable)
        resolver.port = after.port
        took = _send_until(emitter, after, timeout=5)
        assert took < 2, took
        assert resolver.lookups > lookups
    finally:
        emitter.close()
        after.close()
