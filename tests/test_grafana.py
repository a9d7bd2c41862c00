"""Grafana: provisioning files, dashboards as code, and every panel query against real data.

- The committed grafana/dashboards/*.json are exactly what generate.py produces.
- Provisioning parses and agrees with docker-compose.yml and CONTRACT.md: the
  datasource uid, the dashboard folder and path, the dashboard uids, the variables.
- Every panel has a unit and a description, uses the provisioned datasource, and only
  metrics of the contract (or Prometheus' ALERTS and the repo's recording rules).
- THE KEY TEST: every query of every panel, with its template variables substituted (as
  "All", and as the regex of the real values the variable query returns), runs against a
  real Prometheus that scraped the metrics of real pipeline runs (the populated_stack
  fixture of conftest.py) and returns data. A panel that would show "No data" fails.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
import urllib.parse
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONTRACT, declared_metrics

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_FILE = PROVISIONING / "datasources" / "prometheus.yml"
ALERTMANAGER_DATASOURCE_FILE = PROVISIONING / "datasources" / "alertmanager.yml"
# Alertmanager's own metrics (Prometheus' `alertmanager` job) that overview panels show. The
# populated stack has no Alertmanager; tests/test_alertmanager.py checks those panels against
# a real one (test_the_overview_shows_what_a_real_alertmanager_holds).
ALERTMANAGER_METRICS = {"alertmanager_alerts", "alertmanager_silences", "alertmanager_notifications_total", "alertmanager_notifications_failed_total"}
PROVIDER_FILE = PROVISIONING / "dashboards" / "kedro.yml"
MLFLOW_URL = "http://127.0.0.1:5000"
DASHBOARD_FILES = {"kedro-overview": "kedro-overview.json", "kedro-nodes": "kedro-nodes.json", "kedro-datasets": "kedro-datasets.json"}
# The variables each dashboard must offer (the contract: "where they apply").
EXPECTED_VARIABLES = {
    "kedro-overview": {"project", "pipeline", "dataset"},
    "kedro-nodes": {"project", "pipeline", "node"},
    "kedro-datasets": {"project", "dataset"},
}
VARIABLE_SOURCES = {"project": "project", "pipeline": "pipeline", "node": "node", "dataset": "dataset"}
# Grafana's built-in variables, as the test evaluates them: panels are evaluated over the
# whole life of the test Prometheus (under an hour), with rate windows that hold many
# of its 1 s scrapes.
RANGE = "1h"
RATE_INTERVAL = "1m"
STEP_SECONDS = 2
BUILTINS = {
    "$__rate_interval": RATE_INTERVAL,
    "${__rate_interval}": RATE_INTERVAL,
    "$__interval": f"{STEP_SECONDS}s",
    "${__interval}": f"{STEP_SECONDS}s",
    "$__range": RANGE,
    "${__range}": RANGE,
}
PROMQL_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "or", "and", "unless", "bool", "rate", "increase", "irate", "histogram_quantile",
    "clamp_min", "clamp_max", "time", "vector", "sort", "sort_desc", "label_replace", "le", "quantile",
    "max_over_time", "min_over_time", "avg_over_time", "count_over_time", "sum_over_time", "abs", "timestamp",
}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("kos_grafana_generate", DASHBOARD_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def dashboards() -> dict[str, dict[str, Any]]:
    return {uid: json.loads((DASHBOARD_DIR / name).read_text()) for uid, name in DASHBOARD_FILES.items()}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in dashboard["panels"]:
        found.extend(item.get("panels", []) if item["type"] == "row" else [item])
    return found


def all_targets() -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """(dashboard uid, panel title, refId, panel, target) of every query of every panel."""
    return [
        (uid, item["title"], query["refId"], item, query)
        for uid, dashboard in dashboards().items()
        for item in panels(dashboard)
        for query in item.get("targets", [])
    ]


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def contract_metrics() -> set[str]:
    """The series names the declared metrics give Prometheus (a histogram gives three)."""
    names = set()
    for name, (kind, _labels) in declared_metrics().items():
        names |= {f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
    return names


def contract_grafana_section() -> str:
    text = CONTRACT.read_text()
    return text.split("## Grafana", 1)[1]


def recorded_series() -> set[str]:
    names = set()
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + name + "}", value)
        expr = re.sub(rf"\${name}\b", lambda _: value, expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def regex_of(values: list[str]) -> str:
    """A multi-value variable as Grafana writes it into a Prometheus regex."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", value) for value in values]
    return "(" + "|".join(escaped) + ")" if len(escaped) > 1 else escaped[0]


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def evaluate(self, expr: str, instant: bool) -> list[dict[str, Any]]:
        """What Grafana would fetch for the panel: an instant query now, or a range query
        over the last RANGE; only series with at least one value count."""
        now = time.time()
        if instant:
            return self.get("/api/v1/query", query=expr, time=now)["result"]
        return self.get("/api/v1/query_range", query=expr, start=now - 3600, end=now, step=STEP_SECONDS)["result"]

    def label_values(self, selector: str, label: str) -> list[str]:
        now = time.time()
        return self.get(f"/api/v1/label/{label}/values", **{"match[]": selector, "start": now - 3600, "end": now})


def resolve_variables(api: PrometheusApi, dashboard: dict[str, Any], all_values: bool) -> dict[str, str]:
    """Run the dashboard's variable queries in order, like Grafana does; each must find
    values. Returns name -> what Grafana substitutes (".*" for All, or the values' regex)."""
    resolved: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable_query(variable).strip())
        assert match, variable_query(variable)
        selector, label = substitute(match[1], resolved), match[2]
        values = api.label_values(selector, label)
        assert values, f"variable {variable['name']}: {variable_query(variable)} found no value"
        resolved[variable["name"]] = variable.get("allValue") or regex_of(values) if all_values else regex_of(values)
    return resolved


# ---------------------------------------------------------------------------
# Dashboards as code
# ---------------------------------------------------------------------------


def test_committed_json_is_what_generate_py_writes() -> None:
    rendered = load_generator().render()
    assert set(rendered) == set(DASHBOARD_FILES.values())
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, f"{name} is stale: run python grafana/dashboards/generate.py"


def test_generate_check_mode_agrees(tmp_path: Path) -> None:
    generator = load_generator()
    assert generator.main(["--check"]) == 0
    assert generator.main(["--check", "--output", str(tmp_path)]) == 1
    assert generator.main(["--output", str(tmp_path)]) == 0
    assert generator.main(["--check", "--output", str(tmp_path)]) == 0


# ---------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    config = yaml.safe_load(DATASOURCE_FILE.read_text())
    assert config["apiVersion"] == 1
    [datasource] = config["datasources"]
    assert "Datasource uid `prometheus`" in contract_grafana_section()
    assert datasource["uid"] == "prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    assert datasource["access"] == "proxy"
    scrape_interval = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval, "$__rate_interval is derived from it"
    assert datasource["jsonData"]["alertmanagerUid"] == "alertmanager"


def test_alertmanager_datasource_provisioning() -> None:
    """The stack's Alertmanager, for Grafana's Alerting pages (alert groups, silences)."""
    config = yaml.safe_load(ALERTMANAGER_DATASOURCE_FILE.read_text())
    assert config["apiVersion"] == 1
    [datasource] = config["datasources"]
    assert (datasource["uid"], datasource["type"], datasource["access"]) == ("alertmanager", "alertmanager", "proxy")
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "alertmanager" in services
    targets = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert datasource["url"] == f"http://{targets[0]}", "Grafana reads the Alertmanager Prometheus sends to"
    assert datasource["isDefault"] is False, "Prometheus stays the default datasource"
    assert datasource["jsonData"] == {"implementation": "prometheus", "handleGrafanaManagedAlerts": False}
    # The overview's "Silences" link picks this datasource by name.
    links = [link["url"] for link in dashboards()["kedro-overview"]["links"] if link.get("type") == "link"]
    assert f"/alerting/silences?alertmanager={datasource['name']}" in links


def compose_mounts(service: str) -> dict[str, Path]:
    """container path -> repo path of the service's bind mounts (short syntax)."""
    config = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][service]
    mounts = {}
    for entry in config.get("volumes", []):
        source, target, *_ = entry.split(":")
        if source.startswith("./"):
            mounts[target] = REPO / source[2:]
    return mounts


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    config = yaml.safe_load(PROVIDER_FILE.read_text())
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Kedro"
    assert "folder named Kedro" in contract_grafana_section()
    mounts = compose_mounts("grafana")
    path = provider["options"]["path"]
    assert mounts.get(path) == DASHBOARD_DIR, f"docker-compose.yml does not mount grafana/dashboards at {path}: {mounts}"
    assert mounts.get("/etc/grafana/provisioning/dashboards") == PROVIDER_FILE.parent
    assert mounts.get("/etc/grafana/provisioning/datasources") == DATASOURCE_FILE.parent
    home = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/") and (DASHBOARD_DIR / home.removeprefix(path + "/")).is_file()


def test_dashboard_uids_are_the_contracts() -> None:
    uids = set(re.findall(r"`(kedro-[a-z]+)`", contract_grafana_section()))
    assert uids == set(DASHBOARD_FILES)
    for uid, dashboard in dashboards().items():
        assert dashboard["uid"] == uid
        assert dashboard["id"] is None, "provisioned dashboards carry no database id"
    assert len({dashboard["title"] for dashboard in dashboards().values()}) == len(DASHBOARD_FILES)


# ---------------------------------------------------------------------------
# Panels and variables
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("uid", sorted(DASHBOARD_FILES))
def test_every_panel_has_datasource_unit_description_and_queries(uid: str) -> None:
    items = panels(dashboards()[uid])
    assert items
    assert len({item["id"] for item in items}) == len(items)
    for item in items:
        title = item["title"]
        assert item["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
        assert item["fieldConfig"]["defaults"].get("unit"), f"{title} has no unit"
        assert item.get("description", "").strip(), f"{title} has no description"
        assert item["targets"], f"{title} has no query"
        for query in item["targets"]:
            assert query["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
            assert query["expr"].strip(), title


@pytest.mark.parametrize("uid", sorted(DASHBOARD_FILES))
def test_panels_fit_the_grid_without_overlapping(uid: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for item in panels(dashboards()[uid]):
        grid = item["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, item["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{item['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = item["title"]


@pytest.mark.parametrize("uid", sorted(DASHBOARD_FILES))
def test_variables(uid: str) -> None:
    dashboard = dashboards()[uid]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert set(variables) == EXPECTED_VARIABLES[uid]
    used = set()
    for _, _, _, _, query in (t for t in all_targets() if t[0] == uid):
        used |= set(re.findall(r"\$\{?([a-z]+)\b", query["expr"]))
    assert used == set(variables), "every variable is used by a panel, and every panel variable is defined"
    names = list(variables)
    for name, variable in variables.items():
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert variable["multi"] is True and variable["includeAll"] is True, name
        query = variable_query(variable)
        assert re.fullmatch(rf"label_values\(kedro_\w+(\{{.*\}})?, {VARIABLE_SOURCES[name]}\)", query), query
        # A variable only depends on variables defined before it.
        for dependency in re.findall(r"\$(\w+)", query):
            assert names.index(dependency) < names.index(name), f"{name} uses ${dependency} before it is defined"


@pytest.mark.parametrize("uid", sorted(DASHBOARD_FILES))
def test_dashboard_links_to_mlflow(uid: str) -> None:
    links = dashboards()[uid]["links"]
    assert any(link.get("type") == "link" and link.get("url", "").rstrip("/") == MLFLOW_URL for link in links)


DATA_LINK_PANELS = {"kedro-overview": ["Runs by status"], "kedro-nodes": ["Node duration p50 and p95", "Slowest nodes"]}


@pytest.mark.parametrize("uid", sorted(DATA_LINK_PANELS))
def test_run_and_node_panels_link_to_the_mlflow_runs_of_their_pipeline(uid: str) -> None:
    by_title = {item["title"]: item for item in panels(dashboards()[uid])}
    for title in DATA_LINK_PANELS[uid]:
        item = by_title[title]
        links = item["fieldConfig"]["defaults"]["links"]
        assert len(links) == 2, title
        for target in item["targets"]:
            # The labels the links read are kept by every query of the panel.
            grouped = re.findall(r"by \(([^)]*)\)", target["expr"])
            assert grouped and all({"project", "pipeline"} <= {label.strip() for label in each.split(",")} for each in grouped), target["expr"]
        values = {"project": "spaceflights", "pipeline": "data processing"}
        urls = [re.sub(r"\$\{__field\.labels\.(\w+):percentencode\}", lambda match: urllib.parse.quote(values[match[1]], safe=""), link["url"]) for link in links]
        assert "$" not in "".join(urls)
        experiment, runs = (urllib.parse.urlsplit(url) for url in urls)
        for url in (experiment, runs):
            assert f"{url.scheme}://{url.netloc}" == MLFLOW_URL
            assert url.path == "/" and url.fragment.startswith("/experiments?")
        assert urllib.parse.parse_qs(experiment.fragment.partition("?")[2]) == {"experimentSearchFilter": ["spaceflights"]}
        assert urllib.parse.parse_qs(runs.fragment.partition("?")[2]) == {
            "experimentSearchFilter": ["spaceflights"],
            "searchFilter": ["tags.`kedro.pipeline` = 'data processing'"],
        }
        assert all(link["targetBlank"] for link in links)


def test_queries_use_contract_metrics_and_rate_intervals() -> None:
    known = contract_metrics() | recorded_series() | {"ALERTS"} | ALERTMANAGER_METRICS
    for uid, title, ref, _, query in all_targets():
        expr = query["expr"]
        without_strings = re.sub(r'"[^"]*"', '""', expr)
        without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
        without_grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
        identifiers = set(re.findall(r"(?<![\w$:])([a-zA-Z_:][\w:]*)", without_grouping)) - PROMQL_KEYWORDS
        unknown = {name for name in identifiers if not re.fullmatch(r"\d.*|e|inf|nan", name, flags=re.I)} - known
        assert not unknown, f"{uid} / {title} / {ref}: not a declared metric: {unknown}"
        for window in re.findall(r"\[([^\]]+)\]", without_strings):
            assert window in ("$__rate_interval", "$__range"), f"{uid} / {title}: range [{window}]; use $__rate_interval"


# ---------------------------------------------------------------------------
# THE KEY TEST: every panel query returns data from real runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(populated_stack) -> PrometheusApi:
    prometheus = populated_stack.prometheus
    # The last runs' samples are scraped, and the alert rules had time to evaluate.
    prometheus.wait_for('ALERTS{alertname="KedroPipelineRunFailed", alertstate="firing"}', lambda found: len(found) > 0, timeout=60)
    return PrometheusApi(prometheus.url)


def evaluate_until_data(api: PrometheusApi, expr: str, instant: bool, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Scrapes and rule evaluations take a moment: poll until the query returns data."""
    deadline = time.monotonic() + timeout
    while True:
        result = api.evaluate(expr, instant)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


TARGETS = all_targets()
# Every query of the populated stack's Prometheus, which scrapes no Alertmanager.
KEDRO_TARGETS = [each for each in TARGETS if not ALERTMANAGER_METRICS & set(re.findall(r"\w+", each[4]["expr"]))]


@pytest.mark.parametrize("variables", ["all", "values"])
@pytest.mark.parametrize(
    "uid, title, ref, item, query",
    KEDRO_TARGETS,
    ids=[f"{uid}/{title}/{ref}" for uid, title, ref, _, _ in KEDRO_TARGETS],
)
def test_panel_query_returns_data_from_real_runs(api: PrometheusApi, uid: str, title: str, ref: str, item: dict, query: dict, variables: str) -> None:
    values = resolve_variables(api, dashboards()[uid], all_values=variables == "all")
    expr = substitute(query["expr"], values)

    result = evaluate_until_data(api, expr, bool(query.get("instant")))

    if not result and "kedro_validation_" in expr and not api.evaluate("kedro_validation_runs_total", instant=True):
        pytest.fail(f"{uid} / {title}: no kedro_validation_* series exist: the validation hook sent no metric", pytrace=False)
    assert result, f"{uid} / {title} / {ref} would show No data: {expr}"
    points = [value for series in result for value in (series.get("values") or [series["value"]])]
    assert any(value[1] not in ("NaN", "+Inf", "-Inf") for value in points), f"{uid} / {title}: only NaN/Inf"


def instant(api: PrometheusApi, uid: str, title: str, ref: str = "A") -> dict[tuple[str, ...], float]:
    """An instant panel's values by legend labels, with every variable on All."""
    [query] = [q for u, t, r, _, q in TARGETS if (u, t, r) == (uid, title, ref)]
    expr = substitute(query["expr"], resolve_variables(api, dashboards()[uid], all_values=True))
    labels = re.findall(r"\{\{(\w+)\}\}", query["legendFormat"])
    return {tuple(series["metric"].get(label, "") for label in labels): float(series["value"][1]) for series in api.evaluate(expr, True)}


def test_counts_in_range_include_the_first_run_of_each_series(api: PrometheusApi, populated_stack) -> None:
    """statsd_exporter creates a counter on its first increment, which increase() misses;
    the range panels must still count it: 3 successful runs, 1 failed run, 1 failed node."""
    runs = len(populated_stack.runners)
    failing = populated_stack.failing_pipeline
    by_status = instant(api, "kedro-overview", "Runs by status")
    assert by_status == {("__default__", "success"): runs, (failing, "failure"): 1}
    assert instant(api, "kedro-overview", "Failed runs") == {(failing,): 1}
    assert instant(api, "kedro-nodes", "Node failures") == {(failing, "split_data"): 1}
    freshness = instant(api, "kedro-overview", "Time since last success")
    assert set(freshness) == {("__default__",)} and 0 <= freshness[("__default__",)] < 3600


def test_slowest_nodes_are_at_most_ten_and_include_training(api: PrometheusApi) -> None:
    slowest = instant(api, "kedro-nodes", "Slowest nodes")
    assert 0 < len(slowest) <= 10
    assert any(node == "train_model" for _, node in slowest)
    assert all(value > 0 for value in slowest.values())


# ---------------------------------------------------------------------------
# Run markers (annotations)
# ---------------------------------------------------------------------------


def grafana_annotation_events(annotation: dict[str, Any], result: list[dict[str, Any]], step_seconds: float) -> list[dict[str, Any]]:
    """What Grafana's Prometheus annotation support makes of a range query's result: with
    "series value as timestamp", each sample's value is an event time, and events at most
    one step apart become one region (public/app/plugins/datasource/prometheus/annotations.ts)."""
    events = []
    for series in result:
        labels = series["metric"]
        times = [int(float(value)) if annotation["useValueForTime"] else int(float(at) * 1000) for at, value in series["values"]]
        latest: dict[str, Any] | None = None
        for moment in times:
            if latest is not None and latest["timeEnd"] + step_seconds * 1000 >= moment:
                latest["timeEnd"] = moment
                continue
            if latest is not None:
                events.append(latest)
            title = re.sub(r"\{\{(\w+)\}\}", lambda found, labels=labels: labels.get(found.group(1), ""), annotation["titleFormat"])
            latest = {"time": moment, "timeEnd": moment, "title": title, "tags": [labels[key] for key in annotation["tagKeys"].split(",") if key in labels]}
        if latest is not None:
            events.append(latest)
    return events


def run_markers_of(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {each["name"]: each for each in dashboard["annotations"]["list"] if each.get("expr")}


@pytest.mark.parametrize("uid", list(DASHBOARD_FILES))
def test_every_dashboard_marks_run_successes_and_failures(uid: str) -> None:
    dashboard = dashboards()[uid]
    markers = run_markers_of(dashboard)
    assert set(markers) == {"Kedro runs succeeded", "Kedro runs failed"}
    declared = {variable["name"] for variable in dashboard["templating"]["list"]}
    for marker in markers.values():
        assert marker["datasource"] == {"type": "prometheus", "uid": "prometheus"} and marker["enable"] and marker["useValueForTime"]
        used = set(re.findall(r"\$(\w+)", marker["expr"]))
        assert used == declared & {"project", "pipeline"}, (marker["name"], used)


@pytest.mark.parametrize("variables", ["all", "values"])
@pytest.mark.parametrize("uid", list(DASHBOARD_FILES))
def test_run_markers_sit_where_the_real_runs_ended(api: PrometheusApi, populated_stack, uid: str, variables: str) -> None:
    """The populated stack's runs: three successes of __default__, one failure of
    data_science. Each marker ends at the second its pipeline's last run ended (the gauge
    the plugin set then), within the test's hour, and no pipeline gets a marker of the
    outcome it never had."""
    dashboard = dashboards()[uid]
    resolved = resolve_variables(api, dashboard, all_values=variables == "all")
    now = time.time()
    expected = {
        "Kedro runs succeeded": ("kedro_pipeline_last_success_timestamp_seconds", "__default__"),
        "Kedro runs failed": ("kedro_pipeline_last_failure_timestamp_seconds", populated_stack.failing_pipeline),
    }
    for name, marker in run_markers_of(dashboard).items():
        gauge, pipeline = expected[name]
        step = int(marker["step"].rstrip("s"))
        expr = substitute(marker["expr"], resolved)
        result = api.get("/api/v1/query_range", query=expr, start=now - 3600, end=now, step=step)["result"]
        events = grafana_annotation_events(marker, result, step)
        assert events, f"{uid}: '{name}' marks no run: {expr}"
        assert {event["tags"][1] for event in events} == {pipeline}, (uid, name, events)
        [last_run_end] = [float(series["value"][1]) for series in api.evaluate(f'{gauge}{{pipeline="{pipeline}"}}', instant=True)]
        assert max(event["timeEnd"] for event in events) == int(last_run_end * 1000), (uid, name, events)
        assert all(now - 3600 <= event["time"] / 1000 <= now for event in events), events
        assert all(event["title"] == f"Kedro run {name.split()[-1]}: {pipeline}" for event in events), events
