"""A real Prometheus 3.x (Debian sid's package, in .tools/) on 127.0.0.1, configured from the repo's prometheus/ folder."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import prometheus_binaries
from local_servers import free_port, wait_until_answering

REPO = Path(__file__).resolve().parent.parent


def config_for_tests(
    statsd_exporter_address: str,
    own_address: str,
    interval: str = "1s",
    alertmanager_address: str | None = None,
    rules_dir: Path = REPO / "prometheus" / "rules",
) -> dict[str, Any]:
    """The stack's prometheus.yml with the test's addresses, a fast interval and the repo's rules.

    Alerts go to ``alertmanager_address`` when given; otherwise the stack's Alertmanager is
    left out (alerting and its scrape job), as nothing would answer there.
    """
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["rule_files"] = [str(rules_dir / "*.yml")]
    if alertmanager_address is None:
        config.pop("alerting", None)
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] != "alertmanager"]
    else:
        for alertmanagers in config["alerting"]["alertmanagers"]:
            alertmanagers["static_configs"] = [{"targets": [alertmanager_address]}]
    targets = {"statsd-exporter": statsd_exporter_address, "alertmanager": alertmanager_address}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets.get(job["job_name"]) or own_address]}]
    return config


def documented_remote_write(url: str, host: str) -> list[dict[str, Any]]:
    """prometheus.yml's remote_write example, uncommented as its comment tells a user to, with
    the test's receiver as ``url`` and ``host`` as this host's name. Only the queue's batch
    deadline is shortened (5 s by default), for a test that waits for the samples."""
    from alertmanager_server import uncomment_examples

    config = yaml.safe_load(uncomment_examples((REPO / "prometheus" / "prometheus.yml").read_text()))
    [remote_write] = config["remote_write"]
    [relabel] = [each for each in remote_write["write_relabel_configs"] if each.get("target_label") == "host"]
    assert relabel["replacement"] == "kedro-host-1", "the example's host name changed: update the test"
    relabel["replacement"] = host
    remote_write["url"] = url
    remote_write.setdefault("queue_config", {})["batch_send_deadline"] = "1s"
    return [remote_write]


class PrometheusServer:
    """Start, query and stop one Prometheus process.

    ``remote_write`` adds that section to the stack's config, ``statsd_job`` replaces its
    statsd-exporter scrape job; ``receiver=True`` starts a
    Prometheus that scrapes nothing and only stores what others remote-write to its
    /api/v1/write (``--web.enable-remote-write-receiver``), the way a central one would run.
    """

    def __init__(
        self,
        workdir: Path,
        statsd_exporter_address: str | None,
        alertmanager_address: str | None = None,
        rules_dir: Path | None = None,
        *,
        remote_write: list[dict[str, Any]] | None = None,
        receiver: bool = False,
        statsd_job: dict[str, Any] | None = None,
    ) -> None:
        binary = prometheus_binaries.path("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.remote_write_url = f"{self.url}/api/v1/write"
        config_path = workdir / "prometheus.yml"
        if receiver:
            config: dict[str, Any] = {"global": {"evaluation_interval": "1s"}}
        else:
            assert statsd_exporter_address or statsd_job, "an exporter to scrape, or a job that names it"
            config = config_for_tests(
                statsd_exporter_address or "replaced-by-the-job:9102", f"127.0.0.1:{self.port}", alertmanager_address=alertmanager_address,
                rules_dir=rules_dir or REPO / "prometheus" / "rules",
            )
        if statsd_job is not None:
            config["scrape_configs"] = [statsd_job if job["job_name"] == "statsd-exporter" else job for job in config["scrape_configs"]]
        if remote_write is not None:
            config["remote_write"] = remote_write
        config_path.write_text(yaml.safe_dump(config))
        self._log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *(["--web.enable-remote-write-receiver"] if receiver else []),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = workdir / "prometheus.log"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        try:
            wait_until_answering(self._process, f"{self.url}/-/ready", timeout, lambda: self.log_path.read_text()[-2000:])
        except RuntimeError as error:
            self.stop()
            pytest.fail(f"Prometheus did not start: {error}", pytrace=False)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (a list of {metric, value})."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll a query until ``condition`` holds for its result (scrapes take a moment)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if condition(result):
                return result
            time.sleep(0.3)
        raise AssertionError(f"after {timeout} s, {promql!r} returned {result}")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
