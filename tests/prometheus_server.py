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


class PrometheusServer:
    """Start, query and stop one Prometheus process."""

    def __init__(
        self, workdir: Path, statsd_exporter_address: str, alertmanager_address: str | None = None, rules_dir: Path | None = None
    ) -> None:
        binary = prometheus_binaries.path("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "prometheus.yml"
        config = config_for_tests(
            statsd_exporter_address, f"127.0.0.1:{self.port}", alertmanager_address=alertmanager_address,
            rules_dir=rules_dir or REPO / "prometheus" / "rules",
        )
        config_path.write_text(yaml.safe_dump(config))
        self._log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
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
