"""A real Alertmanager (Debian sid's, in .tools/) with the repo's config, and the stack's
alert-log receiver (alertmanager/alert_log.py), both on 127.0.0.1 for the tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import prometheus_binaries
import pytest
import yaml
from local_servers import free_port, wait_until_answering

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "alertmanager" / "alertmanager.yml"
TEMPLATES = REPO / "alertmanager" / "templates"
ALERT_LOG = REPO / "alertmanager" / "alert_log.py"
# Where the shipped config reaches alert-log and its templates inside the stack.
STACK_ALERT_LOG_URL = "http://alert-log:9099"
CONTAINER_TEMPLATES = "/etc/alertmanager/templates"


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _request(url: str, payload: Any = None, method: str | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body.strip() else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uncomment_examples(text: str) -> str:
    """alertmanager.yml with every `# >>>` ... `# <<<` example block uncommented, as its
    header tells a user to do: the `# ` in front of each line in between goes."""
    lines, inside = [], False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("# >>>"):
            assert not inside, f"an example block opens inside another: {line!r}"
            inside = True
            continue
        if stripped.startswith("# <<<"):
            assert inside, f"an example block closes that never opened: {line!r}"
            inside = False
            continue
        if inside:
            assert stripped.startswith("# "), f"a line of an example block is not commented out with '# ': {line!r}"
            line = line[: len(line) - len(stripped)] + stripped[2:]
        lines.append(line)
    assert not inside, "an example block is not closed with '# <<<'"
    return "\n".join(lines) + "\n"


class AlertLog:
    """The stack's own webhook receiver, run from the repo, listening on 127.0.0.1."""

    def __init__(self, workdir: Path, *arguments: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "alert-log.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(ALERT_LOG), "--listen", f"127.0.0.1:{self.port}", *arguments],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_answering(self.process, f"{self.url}/-/healthy", 20, self.log_path.read_text)
        except RuntimeError as error:
            self.stop()
            pytest.fail(f"alert-log did not start: {error}", pytrace=False)

    def notifications(self) -> list[dict[str, Any]]:
        return _request(f"{self.url}/api/notifications")

    def output(self) -> str:
        """What alert-log printed (`docker compose logs alert-log` in the stack)."""
        return self.log_path.read_text()

    def wait_for(self, condition: Callable[[dict[str, Any], dict[str, Any]], bool], timeout: float = 60.0) -> tuple[dict, dict]:
        """(notification, alert) of the first received alert for which ``condition`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for notification in self.notifications():
                for alert in notification["alerts"]:
                    if condition(notification, alert):
                        return notification, alert
            time.sleep(0.2)
        raise AssertionError(f"no such notification within {timeout} s; received: {json.dumps(self.notifications(), indent=1)[-4000:]}")

    def stop(self) -> None:
        _stop(self.process)
        self._log.close()


def config_for_tests(receiver_url: str, group_interval: str = "1s", text: str | None = None) -> dict[str, Any]:
    """The repo's alertmanager.yml (or ``text``, a variant of it) with the receivers that post
    to alert-log posting to ``receiver_url``, the templates read from the repo, and grouping
    waits of ``group_interval``, so a test needn't wait the stack's 10 s to 5 min. Routes,
    matchers, inhibitions and repeat intervals stay as shipped."""
    config = yaml.safe_load(CONFIG.read_text() if text is None else text)
    assert config["templates"] == [f"{CONTAINER_TEMPLATES}/*.tmpl"], config["templates"]
    config["templates"] = [str(TEMPLATES / "*.tmpl")]
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait=group_interval, group_interval=group_interval)
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            if "url" in webhook:
                assert webhook["url"].startswith(STACK_ALERT_LOG_URL + "/"), webhook
                webhook["url"] = receiver_url + webhook["url"][len(STACK_ALERT_LOG_URL):]
    return config


class AlertmanagerServer:
    """Start, query and stop one Alertmanager process."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        binary = prometheus_binaries.path("alertmanager")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        config_path = workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "alertmanager.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={self.address}",
                # One instance: no gossip listener (it would bind to every interface).
                "--cluster.listen-address=",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_answering(self._process, f"{self.url}/-/ready", 30, lambda: self.log_path.read_text()[-2000:])
        except RuntimeError as error:
            self.stop()
            pytest.fail(f"Alertmanager did not start: {error}", pytrace=False)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds (active, suppressed), from its v2 API."""
        return _request(f"{self.url}/api/v2/alerts")

    def post(self, *alerts: dict[str, str], annotations: dict[str, str] | None = None, resolved: bool = False) -> None:
        """Send alerts (label sets) as Prometheus does; ``resolved`` ends them now."""
        now = datetime.now(UTC)
        ends = now if resolved else now + timedelta(minutes=10)
        _request(
            f"{self.url}/api/v2/alerts",
            [{"labels": labels, "annotations": annotations or {}, "startsAt": iso(now - timedelta(seconds=5)), "endsAt": iso(ends)} for labels in alerts],
        )

    def silence(self, matchers: dict[str, str], comment: str = "test") -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [{"name": name, "value": value, "isRegex": False, "isEqual": True} for name, value in matchers.items()],
            "startsAt": iso(now),
            "endsAt": iso(now + timedelta(hours=1)),
            "createdBy": "tests/test_alertmanager.py",
            "comment": comment,
        }
        return _request(f"{self.url}/api/v2/silences", body)["silenceID"]

    def wait_for_alert(self, condition: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.alerts():
                if condition(alert):
                    return alert
            time.sleep(0.2)
        raise AssertionError(f"no such alert in Alertmanager within {timeout} s: {json.dumps(self.alerts(), indent=1)[-4000:]}")

    def stop(self) -> None:
        _stop(self._process)
        self._log.close()
