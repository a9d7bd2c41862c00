"""Checks of the Prometheus part of the stack, mostly through promtool.

- `promtool check config` on prometheus/prometheus.yml, as shipped and on a
  copy whose rule_files point at the repository (the shipped file uses the
  in-container path /etc/prometheus/rules/), so the rules are also checked
  through the config;
- `promtool check rules` on every prometheus/rules/*.yml;
- `promtool test rules` on every prometheus/tests/*.yml;
- every alert has a severity label and summary/description/runbook
  annotations, and is unit-tested firing and not firing;
- every metric (and label) the rules use is a declared metric (kedro_observability.metrics.declarations).

promtool is required: without it these tests FAIL. Debian 12's apt package is
too old (2.42): promtool must be 3.x, the major
docker-compose.yml pins. tests/prometheus_binaries.py says where it is looked for
(.tools/ first, where `make system-deps` puts Debian sid's) and refuses a 2.x.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import prometheus_binaries
from conftest import declared_metrics

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES_DIR = PROM_DIR / "rules"
RULE_TESTS_DIR = PROM_DIR / "tests"
# Where docker-compose.yml mounts ./prometheus/rules inside the container.
CONTAINER_RULES_DIR = "/etc/prometheus/rules"

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.yml"))

EXPECTED_ALERTS = {
    "KedroPipelineRunFailed",
    "KedroPipelineStale",
    "KedroNodeSlow",
    "KedroDatasetSizeDrop",
    "KedroDatasetRowsDrop",
    "KedroValidationFailed",
}
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus itself creates for every scrape target; not in the contract
# because no part of the stack exports them. `up{job="statsd-exporter"}` tells
# the failure alerts how many scrapes of statsd-exporter succeeded.
PROMETHEUS_BUILTIN_SERIES = {"up"}
# Labels that are not from the contract but legitimately appear in rules:
# histogram buckets, and the target labels Prometheus attaches to scrapes.
EXTRA_LABELS = {"le", "job", "instance", "__name__"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def promtool_path() -> str:
    """promtool 3.x's path; fails the calling test (not a skip) when it is missing or older."""
    return prometheus_binaries.path("promtool")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    cmd = [promtool_path(), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"`{' '.join(cmd)}` failed with exit code {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def all_rules():
    """(file, rule) for every rule of every rules file."""
    for path in RULE_FILES:
        for group in load_yaml(path).get("groups") or []:
            for rule in group.get("rules") or []:
                yield path, rule


def all_alerts():
    return [(path, rule) for path, rule in all_rules() if "alert" in rule]


def recording_rule_names() -> set[str]:
    return {rule["record"] for _, rule in all_rules() if "record" in rule}


_STRING = r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`'
_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
    "bool", "and", "or", "unless", "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names (incl. recording rule names) referenced by a PromQL expr.

    A tokenizer, not a parser: strings, comments, label matchers, ranges,
    grouping label lists and offsets are removed; what remains that looks like
    an identifier and is neither a keyword nor a function/aggregation call
    (identifier followed by "(") is a metric name.
    """
    s = re.sub(_STRING, '""', expr)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(_GROUPING, " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if re.match(r"\s*\(", s[m.end():]):
            continue  # function or aggregation operator
        if m.group(0).lower() in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def promql_label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_* lists."""
    s = re.sub(r"#[^\n]*", " ", expr)
    labels = set()
    for grouping in re.findall(_GROUPING, re.sub(_STRING, '""', s)):
        labels.update(x.strip() for x in grouping.split(",") if x.strip())
    for matchers in re.findall(r"\{((?:" + _STRING + r"|[^}\"'`])*)\}", s):
        labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", re.sub(_STRING, '""', matchers)))
    return labels


def contract_metrics() -> dict[str, dict]:
    """{metric: {"type": ..., "labels": {...}}} from the plugin's metric declarations."""
    return {name: {"type": kind, "labels": set(labels)} for name, (kind, labels) in declared_metrics().items()}


# --------------------------------------------------------------------------
# files present
# --------------------------------------------------------------------------


def test_files_present():
    assert CONFIG.is_file(), f"missing {CONFIG}"
    assert RULE_FILES, f"no rules files (*.yml) in {RULES_DIR}"
    assert RULE_TEST_FILES, f"no promtool rule unit tests (*.yml) in {RULE_TESTS_DIR}"


# --------------------------------------------------------------------------
# prometheus.yml
# --------------------------------------------------------------------------


def test_promtool_check_config_as_shipped():
    run_promtool("check", "config", str(CONFIG))


def test_promtool_check_config_with_repo_rules(tmp_path):
    """Check the config with rule_files rewritten from the container path to
    the repository, so that promtool also loads and checks every rules file."""
    config = load_yaml(CONFIG)
    entries = config.get("rule_files") or []
    assert entries, "prometheus.yml has no rule_files"
    rewritten = []
    for entry in entries:
        if entry.startswith(CONTAINER_RULES_DIR + "/"):
            rewritten.append(str(RULES_DIR / entry[len(CONTAINER_RULES_DIR) + 1:]))
        elif not os.path.isabs(entry):
            rewritten.append(str(PROM_DIR / entry))  # relative to the config file
        else:
            pytest.fail(f"rule_files entry {entry!r} is neither under {CONTAINER_RULES_DIR}/ nor relative")
    config["rule_files"] = rewritten
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    proc = run_promtool("check", "config", str(copy))
    output = proc.stdout + proc.stderr
    not_loaded = [str(p) for p in RULE_FILES if str(p) not in output]
    assert not not_loaded, (
        f"rules files not loaded through prometheus.yml's rule_files {entries}: {not_loaded}\n"
        f"--- promtool output ---\n{output}"
    )


def test_config_scrapes_statsd_exporter_and_prometheus():
    config = load_yaml(CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    def targets(job):
        return [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]

    assert "statsd-exporter" in jobs, "no scrape job named statsd-exporter (the alerts use up{job=\"statsd-exporter\"})"
    assert targets(jobs["statsd-exporter"]) == ["statsd-exporter:9102"]
    assert jobs["statsd-exporter"].get("honor_labels") is True
    assert jobs["statsd-exporter"].get("metrics_path", "/metrics") == "/metrics"
    assert any(targets(job) == ["localhost:9090"] for job in jobs.values()), "Prometheus does not scrape itself"


# --------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rules_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rules_file):
    run_promtool("check", "rules", str(rules_file))


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(test_file):
    run_promtool("test", "rules", str(test_file))


def test_expected_alerts_exist():
    names = [rule["alert"] for _, rule in all_alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    missing = EXPECTED_ALERTS - set(names)
    assert not missing, f"alerts missing from {RULES_DIR}: {sorted(missing)}"


def test_alerts_have_severity_and_annotations():
    problems = []
    for path, rule in all_alerts():
        where = f"{path.name}: {rule['alert']}"
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{where}: severity label {severity!r} not one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations") or {}
        for key in REQUIRED_ANNOTATIONS:
            value = annotations.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}: missing or empty annotation {key!r}")
    assert not problems, "\n".join(problems)


def test_every_alert_is_unit_tested_firing_and_not_firing():
    fired, quiet = set(), set()
    for path in RULE_TEST_FILES:
        for case in load_yaml(path).get("tests") or []:
            for art in case.get("alert_rule_test") or []:
                (fired if art.get("exp_alerts") else quiet).add(art["alertname"])
    problems = []
    for _, rule in all_alerts():
        name = rule["alert"]
        if name not in fired:
            problems.append(f"{name}: no alert_rule_test where it fires")
        if name not in quiet:
            problems.append(f"{name}: no alert_rule_test where it must not fire")
    assert not problems, "\n".join(problems)


def test_freshness_threshold_defined_once():
    defs = [rule for _, rule in all_rules() if rule.get("record") == "kedro:pipeline_freshness_threshold_seconds"]
    assert len(defs) == 1, "kedro:pipeline_freshness_threshold_seconds must be recorded exactly once"
    assert re.fullmatch(r"\s*vector\(\s*[0-9.e+]+\s*\)\s*", defs[0]["expr"]), defs[0]["expr"]
    stale = [rule for _, rule in all_alerts() if rule["alert"] == "KedroPipelineStale"]
    assert stale and "kedro:pipeline_freshness_threshold_seconds" in stale[0]["expr"]


# --------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------


def test_promql_name_extraction():
    expr = (
        'sum by (project, le) (rate(foo_bucket{a="b:c", d=~"x(y)"}[5m] offset 1h)) '
        "> on () group_left () bar:baz * 1e3 unless up == bool 0x1F and histogram_quantile(0.9, q)"
    )
    assert promql_metric_names(expr) == {"foo_bucket", "bar:baz", "up", "q"}
    assert promql_label_names(expr) == {"project", "le", "a", "d"}


def test_contract_table_parsed():
    contract = contract_metrics()
    assert contract["kedro_pipeline_runs_total"]["type"] == "counter"
    assert contract["kedro_node_duration_seconds"]["type"] == "histogram"
    assert contract["kedro_node_duration_seconds"]["labels"] == {"project", "pipeline", "node"}


def test_rules_use_only_contract_metrics():
    contract = contract_metrics()
    allowed = set(PROMETHEUS_BUILTIN_SERIES) | recording_rule_names()
    for name, meta in contract.items():
        if meta["type"] == "histogram":
            allowed.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            allowed.add(name)

    problems = []
    for path, rule in all_rules():
        where = f"{path.name}: {rule.get('alert') or rule.get('record')}"
        used = promql_metric_names(rule["expr"])
        if "alert" in rule and not used:
            problems.append(f"{where}: no metric found in expr (tokenizer problem?)")
        for name in sorted(used - allowed):
            problems.append(f"{where}: metric {name!r} is not a declared metric (nor a recording rule)")
        # Metric names mentioned in annotation templates (queries, texts).
        for key, text in (rule.get("annotations") or {}).items():
            for name in sorted(set(re.findall(r"\bkedro[_:][A-Za-z0-9_:]*", text)) - allowed):
                problems.append(f"{where}: annotation {key} names {name!r}, not a declared metric (nor a recording rule)")
    assert not problems, "\n".join(problems)


def test_rules_use_only_contract_labels():
    contract = contract_metrics()
    allowed = set(EXTRA_LABELS)
    for meta in contract.values():
        allowed |= meta["labels"]
    problems = []
    for path, rule in all_rules():
        where = f"{path.name}: {rule.get('alert') or rule.get('record')}"
        for label in sorted(promql_label_names(rule["expr"]) - allowed):
            problems.append(f"{where}: label {label!r} is not a label of a declared metric")
        for label in sorted(set(re.findall(r"\$labels\.(\w+)", str(rule.get("annotations")))) - allowed):
            problems.append(f"{where}: annotation uses $labels.{label}, not a label of a declared metric")
    assert not problems, "\n".join(problems)
