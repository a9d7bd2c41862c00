"""Alerts that reach a person: alertmanager/alertmanager.yml, the alert-log receiver and the
stack's wiring, checked with the real amtool and run in a real Alertmanager.

- `amtool check-config` passes on the shipped config, and on it with every example (e-mail,
  Slack, webhook) uncommented as its header tells a user to; `amtool config routes test`
  sends every rule's severity to its receiver.
- A real Alertmanager with the shipped config (only addresses and grouping waits rewritten)
  groups by project and pipeline, mutes a pipeline's staleness alert while that pipeline's
  failure fires (and only that pipeline's), and with the examples uncommented delivers the
  templated notification to a Slack endpoint, a webhook and an SMTP server on 127.0.0.1,
  reading the secrets from the files docker-compose.yml mounts.
- alert_log.py, the default receiver, records, prints and shows what it is sent.
- docker-compose.yml wires it: healthchecks, mounts, secrets, Prometheus' alerting target.
- The overview dashboard's Alertmanager panels show what a real Alertmanager holds.
- End to end: a failing `kedro run` of the demo project -> statsd -> the exporter stand-in ->
  a real Prometheus 3 with the repo's rules -> a real Alertmanager -> alert-log receives the
  critical notification with project, pipeline, summary and runbook; after a successful run
  the alert resolves and alert-log receives that too.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import prometheus_binaries
import pytest
import yaml
from alertmanager_server import (
    CONFIG,
    STACK_ALERT_LOG_URL,
    TEMPLATES,
    AlertLog,
    AlertmanagerServer,
    config_for_tests,
    uncomment_examples,
)
from conftest import DEMO_PROJECT, REPO
from local_servers import free_port

RULES = REPO / "prometheus" / "rules"
ALERT_RULES = RULES / "kedro-alerts.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "kedro-overview.json"
SECRETS_DIR = "/run/secrets/"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def amtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([prometheus_binaries.path("amtool"), *arguments], capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in yaml.safe_load(ALERT_RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule}


def alert_labels(alertname: str, **labels: str) -> dict[str, str]:
    """An alert's labels as Prometheus sends them: the rule's own labels plus the series'."""
    return {"alertname": alertname, **alert_rules()[alertname].get("labels", {}), **labels}


def rendered_annotations(alertname: str, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations with $labels filled in, for rules whose annotations use nothing else."""
    rendered = {}
    for key, template in alert_rules()[alertname]["annotations"].items():
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: labels[match[1]], template)
        assert "{{" not in text, f"{alertname}.{key} uses more than $labels: {template}"
        rendered[key] = text
    return rendered


def wait_until(condition, timeout: float, message: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"{message} (after {timeout} s)")


def replace_strings(value: Any, replace) -> Any:
    """``value`` (parsed YAML) with every string passed through ``replace``."""
    if isinstance(value, dict):
        return {key: replace_strings(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_strings(item, replace) for item in value]
    return replace(value) if isinstance(value, str) else value


def secret_paths(config: Any) -> set[str]:
    found: set[str] = set()
    replace_strings(config, lambda text: found.add(text) if text.startswith(SECRETS_DIR) else None)
    return found


# ---------------------------------------------------------------------------
# amtool: the config, its examples, its routes
# ---------------------------------------------------------------------------


def test_amtool_check_config_passes_on_the_shipped_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert re.search(r"- 1 inhibit rules", result.stdout) and re.search(r"- 4 receivers", result.stdout), result.stdout


def test_amtool_check_config_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check can fail: a route to a receiver that does not exist."""
    config = yaml.safe_load(CONFIG.read_text())
    config["route"]["routes"][0]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    result = amtool("check-config", str(broken))
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def test_every_example_uncommented_passes_check_config(tmp_path: Path) -> None:
    text = uncomment_examples(CONFIG.read_text())
    config = yaml.safe_load(text)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    # What the header promises: e-mail, Slack and a generic webhook, secrets from files.
    assert receivers["critical"]["email_configs"][0]["to"]
    assert {each["api_url_file"] for name in ("critical", "warning") for each in receivers[name]["slack_configs"]} == {SECRETS_DIR + "alert_slack_webhook_url"}
    assert [each.get("url_file") for each in receivers["critical"]["webhook_configs"]] == [None, SECRETS_DIR + "alert_webhook_url"]
    assert config["global"]["smtp_auth_password_file"] == SECRETS_DIR + "alert_smtp_password"
    # The shipped config itself holds no example, active or not, beyond the comments.
    assert "slack_configs" not in yaml.safe_load(CONFIG.read_text())["receivers"][1]

    # With the templates where the repo keeps them, amtool parses those too.
    path = tmp_path / "alertmanager.yml"
    path.write_text(text.replace("/etc/alertmanager/templates/", f"{TEMPLATES}/"))
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


ROUTE_CASES = [
    *[(alert_labels(name, project="spaceflights", pipeline="data_science"), rule["labels"]["severity"]) for name, rule in sorted(alert_rules().items())],
    ({"alertname": "SomethingInformative", "severity": "info", "project": "spaceflights"}, "info"),
    ({"alertname": "NoSeverity", "project": "spaceflights"}, "default"),
    ({"alertname": "UnknownSeverity", "severity": "page", "project": "spaceflights"}, "default"),
]


@pytest.mark.parametrize("labels, receiver", ROUTE_CASES, ids=[labels["alertname"] for labels, _ in ROUTE_CASES])
def test_amtool_routes_each_alert_to_the_receiver_of_its_severity(labels: dict[str, str], receiver: str) -> None:
    pairs = [f"{name}={value}" for name, value in labels.items()]
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}", *pairs)
    assert result.returncode == 0, f"{labels} goes to {result.stdout.strip()!r}, not {receiver!r}: {result.stderr}"
    assert result.stdout.strip() == receiver


def test_every_rule_has_a_severity_with_a_route_of_its_own() -> None:
    routed = {route["matchers"][0] for route in yaml.safe_load(CONFIG.read_text())["route"]["routes"]}
    for name, rule in alert_rules().items():
        assert f'severity="{rule["labels"]["severity"]}"' in routed, name


# ---------------------------------------------------------------------------
# A real Alertmanager with the shipped config
# ---------------------------------------------------------------------------


class Alerting:
    def __init__(self, workdir: Path) -> None:
        self.log = AlertLog(workdir / "alert-log")
        try:
            self.manager = AlertmanagerServer(workdir / "alertmanager", config_for_tests(self.log.url))
        except BaseException:
            self.log.stop()
            raise

    def stop(self) -> None:
        self.manager.stop()
        self.log.stop()


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory):
    """alert-log and an Alertmanager with the shipped config; each test uses its own project name."""
    stack = Alerting(tmp_path_factory.mktemp("alerting"))
    yield stack
    stack.stop()


def of_project(project: str):
    return lambda notification, alert: alert["labels"].get("project") == project


def test_notifications_are_grouped_by_project_and_pipeline_and_routed_by_severity(alerting: Alerting) -> None:
    project = "grouping"
    failed_a = alert_labels("KedroPipelineRunFailed", project=project, pipeline="a")
    slow_a = alert_labels("KedroNodeSlow", project=project, pipeline="a", node="train")
    stale_a = alert_labels("KedroPipelineStale", project=project, pipeline="a")
    failed_b = alert_labels("KedroPipelineRunFailed", project=project, pipeline="b")
    shrunk = alert_labels("KedroDatasetSizeDrop", project=project, dataset="companies")
    alerting.manager.post(failed_a, slow_a, failed_b, shrunk, stale_a)

    def groups() -> list[tuple[str, str, tuple, tuple]] | None:
        found = [
            (n["route"], n["receiver"], tuple(sorted(n["group_labels"].items())), tuple(sorted(a["labels"]["alertname"] for a in n["alerts"])))
            for n in alerting.log.notifications()
            if any(a["labels"].get("project") == project for a in n["alerts"])
        ]
        return sorted(found) if len(found) >= 4 else None

    received = wait_until(groups, 30, "fewer than 4 notifications for the project")
    time.sleep(1.5)  # nothing else comes: a further group would have been sent by now
    assert groups() == received == sorted([
        ("critical", "critical", (("pipeline", "a"), ("project", project)), ("KedroPipelineRunFailed",)),
        ("critical", "critical", (("pipeline", "b"), ("project", project)), ("KedroPipelineRunFailed",)),
        # The failure of pipeline a mutes its staleness alert; its slow node is still news.
        ("warning", "warning", (("pipeline", "a"), ("project", project)), ("KedroNodeSlow",)),
        # Dataset alerts have no pipeline: one group per project.
        ("warning", "warning", (("project", project),), ("KedroDatasetSizeDrop",)),
    ])


def test_a_failing_pipeline_mutes_its_own_staleness_alert_until_the_failure_resolves(alerting: Alerting) -> None:
    project = "inhibition"
    failed = alert_labels("KedroPipelineRunFailed", project=project, pipeline="a")
    stale_a = alert_labels("KedroPipelineStale", project=project, pipeline="a")
    stale_b = alert_labels("KedroPipelineStale", project=project, pipeline="b")
    alerting.manager.post(failed, stale_a, stale_b)

    muted = alerting.manager.wait_for_alert(lambda alert: alert["labels"] == stale_a and alert["status"]["inhibitedBy"])
    source = alerting.manager.wait_for_alert(lambda alert: alert["labels"] == failed)
    assert muted["status"]["state"] == "suppressed"
    assert muted["status"]["inhibitedBy"] == [source["fingerprint"]]
    other = alerting.manager.wait_for_alert(lambda alert: alert["labels"] == stale_b)
    assert other["status"]["state"] == "active" and not other["status"]["inhibitedBy"], "another pipeline's staleness is news"

    alerting.log.wait_for(lambda n, a: a["labels"] == failed and n["route"] == "critical")
    alerting.log.wait_for(lambda n, a: a["labels"] == stale_b and n["route"] == "warning")
    time.sleep(1.5)
    assert not [a for n in alerting.log.notifications() for a in n["alerts"] if a["labels"] == stale_a]

    # The failure resolves (15 minutes without a failed run): the staleness is news again.
    alerting.manager.post(failed, resolved=True)
    notification, alert = alerting.log.wait_for(lambda n, a: a["labels"] == stale_a)
    assert (notification["route"], alert["status"]) == ("warning", "firing")
    alerting.log.wait_for(lambda n, a: a["labels"] == failed and a["status"] == "resolved")


# ---------------------------------------------------------------------------
# The examples, uncommented, deliver: Slack, webhook, e-mail
# ---------------------------------------------------------------------------


class HttpSink:
    """Records every POST (path, JSON body) made to it on 127.0.0.1, answering ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests.append((self.path, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 that accepts AUTH PLAIN and keeps every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                session: dict[str, Any] = {"to": []}
                self.reply("220 127.0.0.1 test sink")
                while line := self.rfile.readline():
                    command = line.decode().rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-127.0.0.1")
                        self.reply("250 AUTH PLAIN")
                    elif verb == "AUTH":
                        parts = command.split(" ")
                        if len(parts) == 2:
                            self.reply("334 ")
                            parts.append(self.rfile.readline().decode().strip())
                        _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                        session["auth"] = (user, password)
                        self.reply("235 2.7.0 accepted")
                    elif verb == "MAIL":
                        session["from"] = command.split(":", 1)[1].strip()
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        session["to"].append(command.split(":", 1)[1].strip())
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        session["message"] = email.message_from_bytes(data, policy=email.policy.default)
                        sink.messages.append(dict(session))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def compose_secrets() -> dict[str, str]:
    """secret name -> the .env variable it is read from: docker-compose.yml's credentials service
    gets each variable and writes it to the file of that name in Alertmanager's secrets volume
    (credentials/credentials.py's ALERT_SECRETS)."""
    from test_compose import credentials_module, resolved

    names = dict(credentials_module().ALERT_SECRETS)
    assert set(names.values()) <= set(resolved()["services"]["credentials"]["environment"])
    return names


def test_the_uncommented_examples_deliver_to_slack_a_webhook_and_e_mail(tmp_path: Path) -> None:
    http, smtp = HttpSink(), SmtpSink()
    alert_log = AlertLog(tmp_path / "alert-log")
    manager = None
    try:
        # The secrets as docker-compose.yml mounts them: one file per secret, read by Alertmanager.
        values = {
            "alert_smtp_password": "smtp-password-from-env",
            "alert_slack_webhook_url": f"{http.url}/services/T000/B000/slack-token",
            "alert_webhook_url": f"{http.url}/incident-tool?token=abc",
        }
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        for name, value in values.items():
            (secrets / name).write_text(value)
        config = config_for_tests(alert_log.url, text=uncomment_examples(CONFIG.read_text()))
        assert {path.removeprefix(SECRETS_DIR) for path in secret_paths(config)} == set(values) == set(compose_secrets())
        config = replace_strings(config, lambda text: str(secrets / text.removeprefix(SECRETS_DIR)) if text.startswith(SECRETS_DIR) else text)
        # Only the server's address changes, and TLS: the sink on 127.0.0.1 offers none.
        config["global"].update(smtp_smarthost=f"127.0.0.1:{smtp.port}", smtp_require_tls=False)
        manager = AlertmanagerServer(tmp_path / "alertmanager", config)

        labels = alert_labels("KedroPipelineRunFailed", project="spaceflights", pipeline="data_science")
        annotations = rendered_annotations("KedroPipelineRunFailed", labels)
        manager.post(labels, annotations=annotations)

        wait_until(lambda: len(http.requests) >= 2 and smtp.messages, 30, f"not every receiver was reached: {http.requests} {smtp.messages}")
        title = "[FIRING:1] critical · spaceflights / data_science: KedroPipelineRunFailed"
        by_path = dict(http.requests)

        slack = by_path["/services/T000/B000/slack-token"]
        [attachment] = slack["attachments"]
        assert slack["channel"] == "#kedro-alerts"
        assert attachment["title"] == title
        assert f"FIRING KedroPipelineRunFailed: {annotations['summary']}" in attachment["text"]
        assert f"Runbook: {annotations['runbook']}" in attachment["text"]

        hook = by_path["/incident-tool?token=abc"]
        assert hook["receiver"] == "critical" and hook["status"] == "firing"
        assert hook["groupLabels"] == {"project": "spaceflights", "pipeline": "data_science"}
        assert hook["alerts"][0]["annotations"] == annotations

        [mail] = smtp.messages
        assert mail["auth"] == ("kedro-alerts@example.com", "smtp-password-from-env")
        assert mail["to"] == ["<oncall@example.com>"]
        assert mail["message"]["Subject"] == title
        text = mail["message"].get_body(preferencelist=("plain",)).get_content()
        assert annotations["summary"] in text and annotations["runbook"] in text

        # And the default receiver still gets it.
        alert_log.wait_for(lambda n, a: a["labels"] == labels and n["route"] == "critical")
    finally:
        if manager is not None:
            manager.stop()
        alert_log.stop()
        http.stop()
        smtp.stop()


# ---------------------------------------------------------------------------
# alert_log.py
# ---------------------------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def webhook_payload(status: str, receiver: str, *alerts: tuple[dict[str, str], dict[str, str]]) -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4), as it posts it."""
    return {
        "version": "4",
        "status": status,
        "receiver": receiver,
        "groupLabels": {key: alerts[0][0][key] for key in ("project", "pipeline") if key in alerts[0][0]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "alerts": [
            {"status": status, "labels": labels, "annotations": annotations, "startsAt": "2026-01-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "x"}
            for labels, annotations in alerts
        ],
    }


@pytest.fixture
def alert_log(tmp_path: Path):
    log = AlertLog(tmp_path, "--keep", "3")
    yield log
    log.stop()


def test_alert_log_records_prints_and_shows_a_notification(alert_log: AlertLog) -> None:
    labels = alert_labels("KedroPipelineRunFailed", project="spaceflights", pipeline="data_science")
    annotations = rendered_annotations("KedroPipelineRunFailed", labels)
    status, _ = post(f"{alert_log.url}/critical", json.dumps(webhook_payload("firing", "critical", (labels, annotations))).encode())
    assert status == 200

    [record] = alert_log.notifications()
    assert (record["route"], record["receiver"], record["status"]) == ("critical", "critical", "firing")
    assert record["group_labels"] == {"project": "spaceflights", "pipeline": "data_science"}
    assert record["alerts"][0]["labels"] == labels and record["alerts"][0]["annotations"] == annotations
    assert record["alerts"][0]["starts_at"] == "2026-01-01T10:00:00Z"

    line = wait_until(lambda: [each for each in alert_log.output().splitlines() if "KedroPipelineRunFailed" in each], 5, "nothing printed")[0]
    assert re.fullmatch(
        r"\S+ \[critical\] FIRING KedroPipelineRunFailed project=spaceflights pipeline=data_science: " + re.escape(annotations["summary"]), line
    ), line
    assert f"    runbook: {annotations['runbook']}" in alert_log.output()

    status, page = get(alert_log.url + "/")
    assert status == 200
    assert annotations["summary"] in page and "critical" in page and "pipeline=data_science" in page


def test_alert_log_escapes_what_it_shows_and_keeps_only_the_last_notifications(alert_log: AlertLog) -> None:
    hostile = {"alertname": "KedroPipelineRunFailed", "severity": "critical", "project": "<script>alert(1)</script>"}
    for number in range(5):
        body = webhook_payload("resolved", "warning", ({**hostile, "pipeline": f"p{number}"}, {"summary": f"<b>run {number}</b>"}))
        assert post(f"{alert_log.url}/warning", json.dumps(body).encode())[0] == 200
    records = alert_log.notifications()
    assert [record["alerts"][0]["labels"]["pipeline"] for record in records] == ["p2", "p3", "p4"], "--keep 3, oldest first"
    page = get(alert_log.url + "/")[1]
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>run 4</b>" not in page and "&lt;b&gt;run 4&lt;/b&gt;" in page
    assert page.index("p4") < page.index("p3"), "newest first"
    # A resolved alert prints no runbook.
    assert "RESOLVED KedroPipelineRunFailed" in alert_log.output() and "runbook" not in alert_log.output()


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b"{not json", {}, 400),
        (b"[1, 2]", {}, 400),
        (b"{}", {"Content-Length": "-5"}, 400),
        (b"{}", {"Content-Length": str(6 * 1024 * 1024)}, 413),
    ],
    ids=["not-json", "not-an-object", "negative-length", "too-large"],
)
def test_alert_log_refuses_what_is_not_a_notification(alert_log: AlertLog, body: bytes, headers: dict[str, str], status: int) -> None:
    with socket.create_connection(("127.0.0.1", alert_log.port), timeout=10) as connection:
        head = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
        connection.sendall(b"POST /default HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + body)
        reply = connection.recv(4096).decode()
    assert reply.startswith((f"HTTP/1.0 {status} ", f"HTTP/1.1 {status} ")), reply
    assert alert_log.notifications() == []
    assert get(alert_log.url + "/-/healthy")[0] == 200, "it keeps serving"


def test_alert_log_answers_health_checks_and_unknown_paths(alert_log: AlertLog) -> None:
    assert get(alert_log.url + "/-/healthy") == (200, "ok\n")
    assert get(alert_log.url + "/-/ready") == (200, "ok\n")
    assert get(alert_log.url + "/nothing-here")[0] == 404
    status, page = get(alert_log.url + "/")
    assert status == 200 and "No notification yet" in page


def test_alert_log_exits_cleanly_on_sigterm(alert_log: AlertLog) -> None:
    """`docker compose stop` sends SIGTERM: alert-log exits 0 at once instead of being killed after 10 s."""
    started = time.monotonic()
    alert_log.process.send_signal(signal.SIGTERM)
    assert alert_log.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_alert_log_needs_only_the_standard_library() -> None:
    """It runs on the MLflow image's Python with nothing installed: only stdlib imports."""
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", (REPO / "alertmanager" / "alert_log.py").read_text(), flags=re.MULTILINE))
    top_level = {name.split(".")[0] for name in imported} - {"__future__"}
    assert top_level <= set(sys.stdlib_module_names), top_level - set(sys.stdlib_module_names)


# ---------------------------------------------------------------------------
# docker-compose.yml wires it
# ---------------------------------------------------------------------------


def test_compose_runs_alertmanager_healthchecked_with_the_repos_config_and_the_tested_version() -> None:
    from test_compose import resolved, split_image

    model = resolved()
    service = model["services"]["alertmanager"]
    name, tag = split_image(service["image"])
    assert name == "prom/alertmanager"
    pinned = tuple(int(part) for part in re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag).groups())
    tested = prometheus_binaries.find("alertmanager")[1]
    assert pinned[:2] == tested[:2], f"docker-compose.yml pins Alertmanager {tag}, the tests run {tested}: align them"

    # prom/alertmanager is FROM quay.io/prometheus/busybox: busybox wget is there.
    check = service["healthcheck"]
    assert check["test"][:2] == ["CMD", "wget"] and check["test"][-1] == "http://127.0.0.1:9093/-/ready"
    assert service["restart"] == "unless-stopped"

    mounts = {mount["target"]: mount for mount in service["volumes"]}
    assert Path(mounts["/etc/alertmanager/alertmanager.yml"]["source"]) == CONFIG
    assert Path(mounts["/etc/alertmanager/templates"]["source"]) == TEMPLATES
    assert mounts["/etc/alertmanager/alertmanager.yml"]["read_only"] and mounts["/etc/alertmanager/templates"]["read_only"]
    assert mounts["/alertmanager"]["type"] == "volume" and mounts["/alertmanager"]["source"] in model["volumes"]
    assert {"--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager", "--cluster.listen-address="} <= set(service["command"])
    assert yaml.safe_load(CONFIG.read_text())["templates"] == ["/etc/alertmanager/templates/*.tmpl"]
    assert service["depends_on"]["alert-log"]["condition"] == "service_healthy"

    # Every secret an example reads is mounted where it reads it, and comes from .env.
    assert (mounts["/run/secrets"]["source"], mounts["/run/secrets"]["read_only"]) == ("alertmanager-secrets", True)
    mounted = {f"/run/secrets/{name}" for name in compose_secrets()}
    assert secret_paths(yaml.safe_load(uncomment_examples(CONFIG.read_text()))) == mounted
    from test_compose import env_example_values

    assert set(compose_secrets().values()) <= set(env_example_values())


def test_compose_runs_alert_log_where_the_config_posts() -> None:
    from test_compose import resolved

    service = resolved()["services"]["alert-log"]
    command = service["command"]
    assert command[:2] == ["python", "/opt/alert-log/alert_log.py"] and command[command.index("--listen") + 1] == "0.0.0.0:9099"
    [mount] = service["volumes"]
    assert (Path(mount["source"]), mount["target"], mount["read_only"]) == (REPO / "alertmanager" / "alert_log.py", "/opt/alert-log/alert_log.py", True)
    assert service["healthcheck"]["test"][:2] == ["CMD", "python"] and "/-/healthy" in service["healthcheck"]["test"][-1]
    urls = [hook["url"] for receiver in yaml.safe_load(CONFIG.read_text())["receivers"] for hook in receiver.get("webhook_configs", [])]
    assert urls and all(url.startswith(STACK_ALERT_LOG_URL + "/") for url in urls)
    assert STACK_ALERT_LOG_URL == "http://alert-log:9099"


def test_prometheus_sends_its_alerts_to_the_stacks_alertmanager() -> None:
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["alertmanager"]["static_configs"] == [{"targets": ["alertmanager:9093"]}]


# ---------------------------------------------------------------------------
# The overview dashboard's Alertmanager panels
# ---------------------------------------------------------------------------


def alertmanager_targets() -> list[tuple[str, dict[str, Any]]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(item["title"], query) for item in dashboard["panels"] for query in item.get("targets", []) if "alertmanager_" in query["expr"]]


def test_the_overview_shows_what_a_real_alertmanager_holds(tmp_path: Path) -> None:
    """Prometheus scrapes a real Alertmanager (as the stack's `alertmanager` job does) holding one
    active alert, one inhibited, one silenced and one silence, and having sent notifications,
    one of which failed; every Alertmanager panel of the overview shows exactly that."""
    from prometheus_server import PrometheusServer

    targets = alertmanager_targets()
    assert {title for title, _ in targets} == {"Alerts in Alertmanager", "Silences", "Notifications"}
    alert_log, refusing = AlertLog(tmp_path / "alert-log"), HttpSink(status=400)
    config = config_for_tests(alert_log.url)
    [info] = [receiver for receiver in config["receivers"] if receiver["name"] == "info"]
    info["webhook_configs"][0]["url"] = f"{refusing.url}/info"  # a receiver that refuses (400: not retried)
    manager = AlertmanagerServer(tmp_path / "alertmanager", config)
    prometheus = None
    try:
        # Nothing answers as statsd-exporter: only the alertmanager job has targets that are up.
        prometheus = PrometheusServer(tmp_path, f"127.0.0.1:{free_port()}", alertmanager_address=manager.address)
        failed = alert_labels("KedroPipelineRunFailed", project="p", pipeline="a")
        stale = alert_labels("KedroPipelineStale", project="p", pipeline="a")
        slow = alert_labels("KedroNodeSlow", project="p", pipeline="b", node="n")
        manager.silence({"alertname": "KedroNodeSlow", "project": "p"}, comment="known: new model is bigger")
        manager.post(failed, stale, slow, {"alertname": "Informative", "severity": "info", "project": "p"})
        alert_log.wait_for(lambda n, a: a["labels"] == failed)

        def panel(title: str) -> dict[str, float]:
            values = {}
            for panel_title, query in targets:
                if panel_title == title:
                    expr = query["expr"].replace("$__range", "1h").replace("$__rate_interval", "1m")
                    legend = query["legendFormat"]
                    for series in prometheus.query(expr):
                        labels = series["metric"]
                        values[re.sub(r"\{\{(\w+)\}\}", lambda m, labels=labels: labels.get(m[1], ""), legend)] = float(series["value"][1])
            return values

        expected_alerts = {"active": 2, "suppressed": 2}  # the failure and the info alert; stale (inhibited) and slow (silenced)
        wait_until(lambda: {k: v for k, v in panel("Alerts in Alertmanager").items() if v} == expected_alerts, 30, f"Alerts in Alertmanager: {panel('Alerts in Alertmanager')}")
        wait_until(lambda: panel("Silences") == {"active": 1, "pending": 0}, 30, f"Silences: {panel('Silences')}")
        # Attempts: the critical and the info group (the warning group is all muted); the info
        # receiver's attempts fail. increase() extrapolates, hence at least, not exactly.
        def notified() -> dict[str, float] | None:
            found = panel("Notifications")
            return found if found.get("failed", 0) >= 1 and found.get("attempted", 0) >= 2 else None

        notifications = wait_until(notified, 30, "the Notifications panel shows no attempted and failed notification")
        assert set(notifications) == {"attempted", "failed"}
    finally:
        if prometheus is not None:
            prometheus.stop()
        manager.stop()
        alert_log.stop()
        refusing.stop()


# ---------------------------------------------------------------------------
# End to end: kedro run -> statsd -> stand-in -> Prometheus 3 -> Alertmanager -> alert-log
# ---------------------------------------------------------------------------

def kedro_run(project: Path, statsd_port: int) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(DEMO_PROJECT / "src"),
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(statsd_port),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.run([str(kedro), "run"], cwd=project, env=environment, capture_output=True, text=True, timeout=180, check=False)


def test_a_failing_kedro_run_notifies_alert_log_and_the_alert_resolves_after_a_successful_run(demo_project: Path, tmp_path: Path) -> None:
    from prometheus_server import PrometheusServer
    from statsd_exporter_standin import StandIn

    # The demo project's observability.yml turns statsd off; a one-key local override turns it on.
    (demo_project / "conf" / "local" / "observability.yml").write_text("statsd:\n  enabled: true\n")
    expected = {"project": "obs_demo", "pipeline": "__default__"}

    def is_failure(notification: dict, alert: dict) -> bool:
        return alert["labels"].get("alertname") == "KedroPipelineRunFailed" and alert["labels"].get("project") == "obs_demo"

    alert_log = AlertLog(tmp_path / "alert-log")
    standin = StandIn(REPO / "statsd-exporter" / "mapping.yml").start()
    manager = prometheus = None
    try:
        manager = AlertmanagerServer(tmp_path / "alertmanager", config_for_tests(alert_log.url))
        (tmp_path / "prometheus").mkdir()
        prometheus = PrometheusServer(
            tmp_path / "prometheus", f"127.0.0.1:{standin.http_port}", alertmanager_address=manager.address
        )
        prometheus.wait_for('up{job="statsd-exporter"} == 1 and on () up{job="alertmanager"} == 1', lambda found: len(found) == 1)

        # No version of the raw table exists yet: the run fails.
        failed = kedro_run(demo_project, standin.udp_port)
        assert failed.returncode != 0 and "Did not find any versions" in failed.stdout + failed.stderr, failed.stderr[-3000:]

        notification, alert = alert_log.wait_for(lambda n, a: is_failure(n, a) and a["status"] == "firing", timeout=60)
        assert (notification["route"], notification["receiver"], notification["status"]) == ("critical", "critical", "firing")
        assert notification["group_labels"] == expected
        assert {key: alert["labels"][key] for key in ("project", "pipeline", "severity")} == {**expected, "severity": "critical"}
        assert alert["annotations"] == rendered_annotations("KedroPipelineRunFailed", alert["labels"])
        assert alert["annotations"]["summary"] == "Kedro pipeline __default__ of project obs_demo failed"
        assert "kedro run --pipeline __default__" in alert["annotations"]["runbook"]
        assert "[critical] FIRING KedroPipelineRunFailed project=obs_demo pipeline=__default__: Kedro pipeline __default__ of project obs_demo failed" in alert_log.output()

        # The input arrives; the next run succeeds.
        version = demo_project / "data" / "raw_table.csv" / "2026-01-01T00.00.00.000Z"
        version.mkdir(parents=True)
        (version / "raw_table.csv").write_text("value\n1\n2\n3\n")
        succeeded = kedro_run(demo_project, standin.udp_port)
        assert succeeded.returncode == 0, succeeded.stderr[-3000:]
        prometheus.wait_for('kedro_pipeline_runs_total{project="obs_demo", status="success"} == 1', lambda found: len(found) == 1)

        # The shipped rules, whose failure window is 15 minutes: the success itself resolves it.
        notification, alert = alert_log.wait_for(lambda n, a: is_failure(n, a) and a["status"] == "resolved", timeout=60)
        assert (notification["route"], notification["status"], notification["group_labels"]) == ("critical", "resolved", expected)
        assert alert["ends_at"] > alert["starts_at"]
        assert "RESOLVED KedroPipelineRunFailed project=obs_demo pipeline=__default__" in alert_log.output()
        assert prometheus.query('ALERTS{project="obs_demo"}') == []
        assert manager.alerts() == [], "Alertmanager holds no active alert any more"
        # One firing and one resolved notification: nothing else was sent about the pipeline.
        sent = [(n["status"], a["labels"]["alertname"]) for n in alert_log.notifications() for a in n["alerts"]]
        assert sent == [("firing", "KedroPipelineRunFailed"), ("resolved", "KedroPipelineRunFailed")]
    finally:
        for server in (prometheus, manager):
            if server is not None:
                server.stop()
        standin.stop()
        alert_log.stop()
