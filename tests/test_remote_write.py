"""Long-term and many-host metrics: prometheus/prometheus.yml's remote_write and many-hosts
examples, uncommented, in real Prometheus 3 servers.

- Both examples uncommented make a config `promtool check config` accepts.
- The populated stack's Prometheus (conftest.py) runs with the remote_write example, sending
  to a second real Prometheus started with --web.enable-remote-write-receiver. After the
  real pipeline runs, the receiver holds every kedro_* series the scraper has, with the same
  values and the example's host label, the recording rules' series and the firing alert too;
  and every query of every dashboard panel returns data against it, as tests/test_grafana.py
  checks against the scraper.
- The many-hosts example: one Prometheus scrapes two statsd-exporters (stand-ins on
  127.0.0.1 and 127.0.0.2, one per "host") after a real kedro run on each; the series carry
  the host of their exporter, here and in the store behind remote_write, and do not collide.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import prometheus_binaries
import pytest
import yaml
from alertmanager_server import uncomment_examples
from conftest import REPO, declared_metrics, run_project
from test_grafana import (
    KEDRO_TARGETS,
    PrometheusApi,
    dashboards,
    evaluate_until_data,
    instant,
    resolve_variables,
    substitute,
)
from tiny_project import DOUBLE_REGISTRY, make_tiny_project

CONFIG = REPO / "prometheus" / "prometheus.yml"


def series_names() -> list[str]:
    names = []
    for name, (kind, _labels) in sorted(declared_metrics().items()):
        names += [f"{name}_count", f"{name}_bucket", f"{name}_sum"] if kind == "histogram" else [name]
    return names


def by_labels(result: list[dict], drop: frozenset[str] = frozenset()) -> dict[tuple, str]:
    return {tuple(sorted((k, v) for k, v in item["metric"].items() if k not in drop)): item["value"][1] for item in result}


# ---------------------------------------------------------------------------
# The examples as a user uncomments them
# ---------------------------------------------------------------------------


def test_both_examples_uncommented_pass_promtool(tmp_path: Path) -> None:
    text = uncomment_examples(CONFIG.read_text())
    config = yaml.safe_load(text)
    [remote_write] = config["remote_write"]
    assert remote_write["url"].endswith("/api/v1/write")
    assert remote_write["write_relabel_configs"] == [{"source_labels": ["host"], "regex": "", "target_label": "host", "replacement": "kedro-host-1"}]
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "statsd-exporter"]
    assert [target for group in job["static_configs"] for target in group["targets"]] == ["statsd-exporter:9102", "kedro-host-2:9102", "kedro-host-3:9102"]
    assert job["relabel_configs"] == [{"source_labels": ["__address__"], "regex": r"([^:]+)(?::\d+)?", "target_label": "host"}]
    # The shipped file itself sends nothing anywhere and adds no label.
    shipped = yaml.safe_load(CONFIG.read_text())
    assert "remote_write" not in shipped and "relabel_configs" not in shipped["scrape_configs"][0]

    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/etc/prometheus/rules/", f"{REPO / 'prometheus' / 'rules'}/"))
    result = subprocess.run([prometheus_binaries.path("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# The populated stack's Prometheus remote-writes to a second one
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver(populated_stack) -> PrometheusApi:
    """The receiving Prometheus once the scraper's alert fired there and its last samples arrived."""
    populated_stack.prometheus.wait_for('ALERTS{alertname="KedroPipelineRunFailed", alertstate="firing"}', lambda found: len(found) > 0, timeout=60)
    populated_stack.receiver.wait_for('ALERTS{alertname="KedroPipelineRunFailed", alertstate="firing"}', lambda found: len(found) > 0, timeout=30)
    return PrometheusApi(populated_stack.receiver.url)


def test_the_receiver_scrapes_nothing_itself(populated_stack) -> None:
    targets = PrometheusApi(populated_stack.receiver.url).get("/api/v1/targets")
    assert targets["activeTargets"] == []


def test_every_kedro_series_arrives_with_the_scrapers_values_and_the_host_label(populated_stack, receiver: PrometheusApi) -> None:
    sender, store, host = populated_stack.prometheus, populated_stack.receiver, populated_stack.host
    missing = []
    for name in series_names():
        here = by_labels(sender.query(name))
        if not here:
            missing.append(name)
            continue
        # The scraper's own labels plus host; nothing else changes, values included.
        there = store.wait_for(name, lambda found, here=here: by_labels(found, frozenset({"host"})) == here, timeout=20)
        assert {item["metric"].get("host") for item in there} == {host}, name
    assert not missing, f"the scraper has no {missing}: the populated stack sent them"
    # Nothing in the store lacks the host label.
    assert store.query('{__name__=~".+", host=""}') == []


def test_recording_rules_and_alerts_arrive_evaluated_by_the_scraper(populated_stack, receiver: PrometheusApi) -> None:
    store, host = populated_stack.receiver, populated_stack.host
    recorded = {item["metric"]["__name__"] for item in store.query('{__name__=~"kedro:.+"}')}
    rules = set()
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        rules |= {rule["record"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "record" in rule}
    present_on_the_scraper = {item["metric"]["__name__"] for item in populated_stack.prometheus.query('{__name__=~"kedro:.+"}')}
    assert present_on_the_scraper and recorded == present_on_the_scraper <= rules
    firing = store.query('ALERTS{alertname="KedroPipelineRunFailed", alertstate="firing"}')
    assert [(item["metric"]["pipeline"], item["metric"]["host"]) for item in firing] == [(populated_stack.failing_pipeline, host)]


@pytest.mark.parametrize("variables", ["all", "values"])
@pytest.mark.parametrize(
    "uid, title, ref, item, query",
    KEDRO_TARGETS,
    ids=[f"{uid}/{title}/{ref}" for uid, title, ref, _, _ in KEDRO_TARGETS],
)
def test_panel_query_returns_data_from_the_long_term_store(receiver: PrometheusApi, uid: str, title: str, ref: str, item: dict, query: dict, variables: str) -> None:
    values = resolve_variables(receiver, dashboards()[uid], all_values=variables == "all")
    expr = substitute(query["expr"], values)

    result = evaluate_until_data(receiver, expr, bool(query.get("instant")))

    assert result, f"{uid} / {title} / {ref} would show No data on the long-term store: {expr}"
    points = [value for series in result for value in (series.get("values") or [series["value"]])]
    assert any(value[1] not in ("NaN", "+Inf", "-Inf") for value in points), f"{uid} / {title}: only NaN/Inf"


def test_the_stores_counts_are_the_scrapers(populated_stack, receiver: PrometheusApi) -> None:
    runs = len(populated_stack.runners)
    failing = populated_stack.failing_pipeline
    assert instant(receiver, "kedro-overview", "Runs by status") == {("__default__", "success"): runs, (failing, "failure"): 1}
    assert instant(receiver, "kedro-nodes", "Node failures") == {(failing, "split_data"): 1}


# ---------------------------------------------------------------------------
# One statsd-exporter per host, scraped by one Prometheus, kept apart by host
# ---------------------------------------------------------------------------

OBSERVABILITY = """
    statsd: {enabled: true}
    memory: {enabled: false}
    validation: {enabled: false}
    mlflow: {enabled: false}
"""


def test_one_exporter_per_host_keeps_the_hosts_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_server import PrometheusServer, documented_remote_write
    from statsd_exporter_standin import StandIn

    hosts = ["127.0.0.1", "127.0.0.2"]
    standins = [StandIn(REPO / "statsd-exporter" / "mapping.yml").start(udp_host=host, http_host=host) for host in hosts]
    # The example's job as a user uncomments it, with the stand-ins as the hosts' exporters.
    example = yaml.safe_load(uncomment_examples(CONFIG.read_text()))
    [job] = [job for job in example["scrape_configs"] if job["job_name"] == "statsd-exporter"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [f"{host}:{standin.http_port}"]} for host, standin in zip(hosts, standins)]
    servers: list[PrometheusServer] = []
    try:
        (tmp_path / "store").mkdir()
        (tmp_path / "scraper").mkdir()
        store = PrometheusServer(tmp_path / "store", None, receiver=True)
        servers.append(store)
        scraper = PrometheusServer(
            tmp_path / "scraper", None, remote_write=documented_remote_write(store.remote_write_url, "kedro-host-1"), statsd_job=job
        )
        servers.append(scraper)
        scraper.wait_for('up{job="statsd-exporter"} == 1', lambda found: len(found) == 2)

        project = make_tiny_project(tmp_path / "tiny", "tiny_hosts", DOUBLE_REGISTRY, OBSERVABILITY, parameters="x: 3\n")
        monkeypatch.chdir(project)
        monkeypatch.syspath_prepend(str(project / "src"))
        monkeypatch.delenv("KEDRO_MP_CONTEXT", raising=False)
        for host, standin, runs in zip(hosts, standins, (1, 2)):
            monkeypatch.setenv("STATSD_HOST", host)
            monkeypatch.setenv("STATSD_PORT", str(standin.udp_port))
            for _ in range(runs):
                run_project(project)

        expected = {"127.0.0.1": "1", "127.0.0.2": "2"}
        query = 'kedro_pipeline_runs_total{status="success"}'
        for server in (scraper, store):
            found = server.wait_for(query, lambda found: {item["metric"].get("host"): item["value"][1] for item in found} == expected, timeout=30)
            assert len(found) == 2
        # The remote_write example kept the host the scrape set, and adds its own where none is.
        assert store.query('{job="statsd-exporter", host=~"kedro-host-1|"}') == []
        assert {item["metric"].get("host") for item in store.query('up{job="prometheus"}')} == {"kedro-host-1"}
    finally:
        for server in servers:
            server.stop()
        for standin in standins:
            standin.stop()
