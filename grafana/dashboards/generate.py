#!/usr/bin/env python3
"""Grafana dashboards of kedro-observability-stack, as code.

Writes kedro-overview.json, kedro-nodes.json and kedro-datasets.json next to this file;
Grafana loads them from there (grafana/provisioning/dashboards/kedro.yml, folder "Kedro").
Plain Python, no dependency: edit this file, run it, commit both.

    python grafana/dashboards/generate.py           # (re)write the JSON files
    python grafana/dashboards/generate.py --check   # exit 1 if a committed file differs

tests/test_grafana.py checks that the committed JSON is what this file generates, and runs
every panel query against a real Prometheus that scraped real pipeline runs.

Metric names and labels are the plugin's declared metrics (CONTRACT.md's table); tests hold
every query to them. Two things about them shape the queries:

- statsd_exporter creates a counter or histogram series on its first increment, so
  `increase()` never sees that first run. Panels that count what happened in the time range
  therefore use `clamp_min(x - x offset $__range, 0) or x`: the growth of series that
  already existed when the range began, plus the whole value of series born inside it.
- Kedro runs come every minute or so, not continuously, so rate-based panels have points
  only around runs; time series connect them (spanNulls) and show the points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
MLFLOW_URL = "http://127.0.0.1:5000"
ALERTMANAGER_URL = "http://127.0.0.1:9093"
# Grafana's own alerting pages for the provisioned Alertmanager datasource (picked by its name,
# grafana/provisioning/datasources/alertmanager.yml): alert groups, and silences to add or expire.
GRAFANA_SILENCES_PATH = "/alerting/silences?alertmanager=Alertmanager"
SCHEMA_VERSION = 41
TAGS = ["kedro", "kedro-observability-stack"]

# Label selectors with the template variables.
PROJECT = 'project=~"$project"'
PIPELINE = f'{PROJECT}, pipeline=~"$pipeline"'
NODE = f'{PIPELINE}, node=~"$node"'
DATASET = f'{PROJECT}, dataset=~"$dataset"'


# ---------------------------------------------------------------------------
# PromQL helpers
# ---------------------------------------------------------------------------


def in_range(series: str, by: str) -> str:
    """How much a counter (or histogram bucket) grew over the dashboard's time range,
    counting series that appeared during the range in full (see the module docstring)."""
    return f"sum by ({by}) (clamp_min({series} - {series} offset $__range, 0) or {series})"


def quantile_over_time_range(q: float, histogram: str, selector: str, by: str) -> str:
    """Quantile of the observations made during the time range (NaN, dropped, if none)."""
    buckets = in_range(f"{histogram}_bucket{{{selector}}}", f"{by}, le")
    return f"histogram_quantile({q}, {buckets}) > 0"


def quantile_over_time(q: float, histogram: str, selector: str, by: str) -> str:
    """Quantile per $__rate_interval window; windows without an observation give nothing."""
    rate = f"sum by ({by}, le) (rate({histogram}_bucket{{{selector}}}[$__rate_interval]))"
    return f"histogram_quantile({q}, {rate}) > 0"


def mean_over_time(histogram: str, selector: str, by: str) -> str:
    """Mean observation per $__rate_interval window (exact when one run falls in it)."""
    total = f"sum by ({by}) (rate({histogram}_sum{{{selector}}}[$__rate_interval]))"
    count = f"sum by ({by}) (rate({histogram}_count{{{selector}}}[$__rate_interval]))"
    return f"{total} / {count} > 0"


# ---------------------------------------------------------------------------
# Grafana JSON builders
# ---------------------------------------------------------------------------


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False, fmt: str = "time_series") -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN = thresholds((None, "green"))


def color_by_name(pattern: str, color: str) -> dict[str, Any]:
    return {
        "matcher": {"id": "byRegexp", "options": pattern},
        "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
    }


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    *,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    steps: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    no_value: str | None = None,
    transformations: list[dict[str, Any]] | None = None,
    extra_defaults: dict[str, Any] | None = None,
    links: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit, "thresholds": steps or GREEN, "color": {"mode": "palette-classic"}}
    if custom is not None:
        defaults["custom"] = custom
    if no_value is not None:
        defaults["noValue"] = no_value
    if extra_defaults:
        defaults.update(extra_defaults)
    if links:
        defaults["links"] = links
    result: dict[str, Any] = {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(title: str, description: str, unit: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int], *,
               stepped: bool = False, bars: bool = False, **kwargs: Any) -> dict[str, Any]:
    custom = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 10,
        "lineInterpolation": "stepAfter" if stepped else "linear",
        "lineWidth": 2,
        "pointSize": 5,
        "showPoints": "always" if not stepped else "auto",
        "spanNulls": True,
        "stacking": {"group": "A", "mode": "none"},
        "axisSoftMin": 0,
    }
    options = {
        "legend": {"calcs": ["lastNotNull", "max"], "displayMode": "table", "placement": "right", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, description, unit, targets, grid, options=options, custom=custom, **kwargs)


def stat(title: str, description: str, unit: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int], **kwargs: Any) -> dict[str, Any]:
    options = {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": "value_and_name",
        "wideLayout": True,
    }
    return panel("stat", title, description, unit, targets, grid, options=options, **kwargs)


def bargauge(title: str, description: str, unit: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int], **kwargs: Any) -> dict[str, Any]:
    options = {
        "displayMode": "gradient",
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "left",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return panel("bargauge", title, description, unit, targets, grid, options=options, extra_defaults={"min": 0}, **kwargs)


def variable(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "definition": query,
        "description": description,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


VARIABLES = {
    "project": variable(
        "project", "Project", "label_values(kedro_pipeline_runs_total, project)",
        "Kedro package name (the `project` label of every kedro_* metric).",
    ),
    "pipeline": variable(
        "pipeline", "Pipeline", 'label_values(kedro_pipeline_runs_total{project=~"$project"}, pipeline)',
        "Registered pipeline name; __default__ when `kedro run` named none.",
    ),
    "node": variable(
        "node", "Node", 'label_values(kedro_node_runs_total{project=~"$project", pipeline=~"$pipeline"}, node)',
        "Kedro node name (node.name).",
    ),
    "dataset": variable(
        "dataset", "Dataset", 'label_values(kedro_dataset_size_bytes{project=~"$project"}, dataset)',
        "Catalog dataset name (parameters are not datasets).",
    ),
}


def mlflow_runs_links() -> list[dict[str, Any]]:
    """Data links from a series (its project and pipeline labels) to MLflow: the project's
    experiment (MLflow's experiment list searched by the experiment's name, the project's by
    default), and the runs of that pipeline (the same search with the runs filter on the
    kedro.pipeline tag, which MLflow's runs page takes as its searchFilter)."""
    project = "${__field.labels.project:percentencode}"
    pipeline = "${__field.labels.pipeline:percentencode}"
    experiments = f"{MLFLOW_URL}/#/experiments?experimentSearchFilter={project}"
    runs_filter = "tags.%60kedro.pipeline%60%20%3D%20%27" + pipeline + "%27"
    return [
        {"targetBlank": True, "title": "MLflow: experiment ${__field.labels.project}", "url": experiments},
        {"targetBlank": True, "title": "MLflow: runs of pipeline ${__field.labels.pipeline}", "url": f"{experiments}&searchFilter={runs_filter}"},
    ]


def link(title: str, url: str, tooltip: str) -> dict[str, Any]:
    return {"icon": "external link", "targetBlank": True, "title": title, "tooltip": tooltip, "type": "link", "url": url}


RUN_MARKER_STEP = "10s"


def run_markers(selector: str) -> list[dict[str, Any]]:
    """A marker on every time series panel where a run ended: green for a success, red for
    a failure. The gauges hold each pipeline's last success and failure time, so a series'
    value is the marker's time (Grafana's "series value as timestamp", in milliseconds) and a
    marker sits at the second the run ended whatever the scrape interval. Grafana makes one
    region of runs that end less than a query step apart."""

    def marker(name: str, gauge: str, color: str, outcome: str) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": color,
            "name": name,
            "expr": f"max by (project, pipeline) ({gauge}{{{selector}}}) * 1000",
            "step": RUN_MARKER_STEP,
            "tagKeys": "project,pipeline",
            "titleFormat": f"Kedro run {outcome}: {{{{pipeline}}}}",
            "textFormat": "project {{project}}, pipeline {{pipeline}}",
            "useValueForTime": True,
        }

    return [
        marker("Kedro runs succeeded", "kedro_pipeline_last_success_timestamp_seconds", "green", "succeeded"),
        marker("Kedro runs failed", "kedro_pipeline_last_failure_timestamp_seconds", "red", "failed"),
    ]


def dashboard(uid: str, title: str, description: str, variables: list[str], panels: list[dict[str, Any]],
              links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    # The datasets dashboard has no pipeline variable: its markers show every pipeline's runs.
    marker_selector = PIPELINE if "pipeline" in variables else PROJECT
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *run_markers(marker_selector),
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            link("MLflow UI", MLFLOW_URL, "Runs, parameters, models and validation reports of every kedro run"),
            *(links or []),
            {
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "tags": ["kedro"],
                "title": "Kedro dashboards",
                "type": "dashboards",
            },
        ],
        "panels": panels,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": TAGS,
        "templating": {"list": [VARIABLES[name] for name in variables]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }


# ---------------------------------------------------------------------------
# The dashboards
# ---------------------------------------------------------------------------


def overview() -> dict[str, Any]:
    failures = f'kedro_pipeline_runs_total{{{PIPELINE}, status="failure"}}'
    panels = [
        bargauge(
            "Runs by status",
            "Finished pipeline runs in the selected time range, per pipeline and status "
            "(kedro_pipeline_runs_total). Counts start over when statsd-exporter restarts.",
            "short",
            [target(in_range(f"kedro_pipeline_runs_total{{{PIPELINE}}}", "project, pipeline, status"), "{{pipeline}} · {{status}}", instant=True)],
            (0, 0, 8, 8),
            overrides=[color_by_name(".*failure.*", "red"), color_by_name(".*success.*", "green")],
            links=mlflow_runs_links(),
        ),
        stat(
            "Time since last success",
            "How long ago each pipeline last finished successfully "
            "(time() - kedro_pipeline_last_success_timestamp_seconds). Orange after 1 hour, red after "
            "2 hours, the default threshold of the KedroPipelineStale alert.",
            "s",
            [target(f"time() - max by (pipeline) (kedro_pipeline_last_success_timestamp_seconds{{{PIPELINE}}})", "{{pipeline}}", instant=True)],
            (8, 0, 8, 8),
            steps=thresholds((None, "green"), (3600, "orange"), (7200, "red")),
        ),
        stat(
            "Failed runs",
            "Failed pipeline runs in the selected time range, per pipeline "
            "(kedro_pipeline_runs_total{status=\"failure\"}); 0 when none failed.",
            "short",
            [target(f"{in_range(failures, 'pipeline')} or on () vector(0)", "{{pipeline}}", instant=True)],
            (16, 0, 8, 8),
            steps=thresholds((None, "green"), (1, "red")),
        ),
        timeseries(
            "Pipeline duration trend",
            "Wall time of pipeline runs: the mean of the runs that finished in each "
            "$__rate_interval window (kedro_pipeline_duration_seconds). One point per run when runs "
            "are further apart than the window; lines connect them.",
            "s",
            [target(mean_over_time("kedro_pipeline_duration_seconds", PIPELINE, "pipeline"), "{{pipeline}}")],
            (0, 8, 12, 9),
        ),
        timeseries(
            "Pipeline runs",
            "Finished runs per pipeline and status, counted since statsd-exporter started "
            "(kedro_pipeline_runs_total): every step up is a run.",
            "short",
            [target(f"sum by (pipeline, status) (kedro_pipeline_runs_total{{{PIPELINE}}})", "{{pipeline}} · {{status}}")],
            (12, 8, 12, 9),
            stepped=True,
            overrides=[color_by_name(".*failure.*", "red")],
        ),
        timeseries(
            "Failures",
            "Failed pipeline runs (kedro_pipeline_runs_total) and failed node runs "
            "(kedro_node_runs_total) with status failure, counted since statsd-exporter started: every "
            "step up is a failure. Kedro / Kedro nodes shows which node, MLflow the error.",
            "short",
            [
                target(f"sum by (pipeline) ({failures})", "run: {{pipeline}}", "A"),
                target(f'sum by (pipeline, node) (kedro_node_runs_total{{{PIPELINE}, status="failure"}})', "node: {{pipeline}} / {{node}}", "B"),
            ],
            (0, 17, 12, 8),
            stepped=True,
            no_value="No failure",
        ),
        bargauge(
            "Validation results",
            "Data validations (Great Expectations) in the selected time range, per dataset and "
            "result (kedro_validation_runs_total, status passed or failed).",
            "short",
            [target(in_range(f"kedro_validation_runs_total{{{DATASET}}}", "dataset, status"), "{{dataset}} · {{status}}", instant=True)],
            (12, 17, 6, 8),
            overrides=[color_by_name(".*failed.*", "red"), color_by_name(".*passed.*", "green")],
        ),
        timeseries(
            "Failed expectations",
            "Failed expectations in the last validation of each dataset "
            "(kedro_validation_failed_expectations). Above 0, the KedroValidationFailed alert fires; "
            "the validation report is an artifact of the run in MLflow.",
            "short",
            [target(f"max by (dataset) (kedro_validation_failed_expectations{{{DATASET}}})", "{{dataset}}")],
            (18, 17, 6, 8),
            stepped=True,
            steps=thresholds((None, "green"), (1, "red")),
        ),
        panel(
            "table",
            "Firing alerts",
            "Kedro alerts firing now (Prometheus ALERTS series; rules in prometheus/rules/kedro-alerts.yml). "
            "Prometheus shows them with their runbooks at http://127.0.0.1:9090/alerts.",
            "none",
            [target(f'ALERTS{{alertstate="firing", alertname=~"Kedro.+", {PROJECT}}}', "__auto", instant=True, fmt="table")],
            (0, 25, 16, 8),
            options={"cellHeight": "sm", "footer": {"show": False}, "showHeader": True},
            custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
            no_value="No alert firing",
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True, "alertstate": True, "job": True, "instance": True},
                        "indexByName": {"alertname": 0, "severity": 1, "project": 2, "pipeline": 3, "node": 4, "dataset": 5},
                        "renameByName": {},
                    },
                }
            ],
        ),
        timeseries(
            "Firing alerts over time",
            "Number of firing Kedro alerts, per alert (Prometheus ALERTS series).",
            "short",
            [target(f'count by (alertname) (ALERTS{{alertstate="firing", alertname=~"Kedro.+", {PROJECT}}})', "{{alertname}}")],
            (16, 25, 8, 8),
            stepped=True,
            no_value="No alert firing",
        ),
        # What Alertmanager (alertmanager/alertmanager.yml) does with the alerts, from its own
        # metrics (Prometheus' `alertmanager` job). They carry no project label: all projects.
        stat(
            "Alerts in Alertmanager",
            "Alerts Alertmanager holds now, for every project (alertmanager_alerts): active ones are "
            "notified; suppressed ones are silenced or inhibited (a pipeline's staleness alert while "
            "its failure fires). Alert groups and silences: Alertmanager's UI (port 9093) or Grafana's "
            "Alerting pages with the Alertmanager datasource.",
            "short",
            [target("sum by (state) (alertmanager_alerts)", "{{state}}", instant=True)],
            (0, 33, 8, 6),
            steps=thresholds((None, "green"), (1, "orange")),
            no_value="Alertmanager not scraped",
        ),
        stat(
            "Silences",
            "Silences in Alertmanager (alertmanager_silences): active ones mute matching alerts now, "
            "pending ones start later. Add or expire them in Grafana (Alerting, Silences, Alertmanager) "
            "or in Alertmanager's UI.",
            "short",
            [target('sum by (state) (alertmanager_silences{state=~"active|pending"})', "{{state}}", instant=True)],
            (8, 33, 8, 6),
            steps=thresholds((None, "green"), (1, "blue")),
            no_value="Alertmanager not scraped",
        ),
        stat(
            "Notifications",
            "Notifications Alertmanager attempted in the selected time range, and failed attempts "
            "(alertmanager_notifications_total, alertmanager_notifications_failed_total; every "
            "receiver). A failure means an alert reached nobody through that receiver: see "
            "`docker compose logs alertmanager` (wrong Slack URL, SMTP password, ...).",
            "short",
            [
                target("sum(increase(alertmanager_notifications_total[$__range]))", "attempted", "A", instant=True),
                target("sum(increase(alertmanager_notifications_failed_total[$__range]))", "failed", "B", instant=True),
            ],
            (16, 33, 8, 6),
            steps=thresholds((None, "blue")),
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "failed"},
                    "properties": [{"id": "thresholds", "value": thresholds((None, "green"), (1, "red"))}],
                }
            ],
            no_value="Alertmanager not scraped",
            extra_defaults={"decimals": 0},
        ),
    ]
    return dashboard(
        "kedro-overview",
        "Kedro overview",
        "Kedro pipeline runs: status, freshness, duration, failures, data quality and alerts.",
        ["project", "pipeline", "dataset"],
        panels,
        links=[
            link("Alertmanager UI", ALERTMANAGER_URL, "Active alerts, their groups and silences (alertmanager/alertmanager.yml)"),
            link("Silences", GRAFANA_SILENCES_PATH, "Grafana's Alerting pages for the stack's Alertmanager: add or expire silences"),
        ],
    )


def nodes() -> dict[str, Any]:
    histogram = "kedro_node_duration_seconds"
    node_failures = f'kedro_node_runs_total{{{NODE}, status="failure"}}'
    panels = [
        timeseries(
            "Node duration p50 and p95",
            "Median and 95th percentile wall time of each node, per $__rate_interval window "
            "(kedro_node_duration_seconds histogram; interpolated inside its buckets, 5 ms to 1 h).",
            "s",
            [
                target(quantile_over_time(0.5, histogram, NODE, "project, pipeline, node"), "{{node}} p50", "A"),
                target(quantile_over_time(0.95, histogram, NODE, "project, pipeline, node"), "{{node}} p95", "B"),
            ],
            (0, 0, 16, 10),
            links=mlflow_runs_links(),
        ),
        bargauge(
            "Slowest nodes",
            "The ten nodes with the highest p95 wall time over the selected time range "
            "(kedro_node_duration_seconds).",
            "s",
            [target(f"topk(10, {quantile_over_time_range(0.95, histogram, NODE, 'project, pipeline, node')})", "{{pipeline}} / {{node}}", instant=True)],
            (16, 0, 8, 10),
            steps=thresholds((None, "green"), (10, "orange"), (60, "red")),
            links=mlflow_runs_links(),
        ),
        panel(
            "heatmap",
            "Node duration heatmap",
            "How many node runs took how long, per $__rate_interval window, from the buckets of "
            "kedro_node_duration_seconds (all selected nodes together). Y axis: bucket upper bound.",
            "short",
            [target(f"sum by (le) (increase({histogram}_bucket{{{NODE}}}[$__rate_interval]))", "{{le}}", fmt="heatmap")],
            (0, 10, 16, 9),
            options={
                "calculate": False,
                "cellGap": 1,
                "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False, "scale": "exponential", "scheme": "Oranges", "steps": 64},
                "exemplars": {"color": "rgba(255,0,255,0.7)"},
                "filterValues": {"le": 1e-9},
                "legend": {"show": True},
                "rowsFrame": {"layout": "auto"},
                "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
                "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
                "cellValues": {"unit": "short"},
            },
            custom={"hideFrom": {"legend": False, "tooltip": False, "viz": False}, "scaleDistribution": {"type": "linear"}},
        ),
        stat(
            "Node failures",
            "Failed node runs in the selected time range, per node (kedro_node_runs_total{status=\"failure\"}); "
            "0 when none failed.",
            "short",
            [target(f"{in_range(node_failures, 'pipeline, node')} or on () vector(0)", "{{pipeline}} / {{node}}", instant=True)],
            (16, 10, 8, 9),
            steps=thresholds((None, "green"), (1, "red")),
        ),
        timeseries(
            "Node runs by status",
            "Node runs per node and status, counted since statsd-exporter started (kedro_node_runs_total): "
            "every step up is a run.",
            "short",
            [target(f"sum by (pipeline, node, status) (kedro_node_runs_total{{{NODE}}})", "{{node}} · {{status}}")],
            (0, 19, 12, 9),
            stepped=True,
            overrides=[color_by_name(".*failure.*", "red")],
        ),
        timeseries(
            "Peak memory per node",
            "Peak resident memory of the Kedro process while each node ran (kedro_node_memory_peak_bytes), "
            "as of the node's last run.",
            "bytes",
            [target(f"max by (pipeline, node) (kedro_node_memory_peak_bytes{{{NODE}}})", "{{pipeline}} / {{node}}")],
            (12, 19, 12, 9),
            stepped=True,
        ),
        bargauge(
            "Peak memory per node, last run",
            "Peak resident memory of the process during each node's last run, largest first "
            "(kedro_node_memory_peak_bytes).",
            "bytes",
            [target(f"sort_desc(max by (pipeline, node) (kedro_node_memory_peak_bytes{{{NODE}}}))", "{{pipeline}} / {{node}}", instant=True)],
            (0, 28, 24, 8),
        ),
    ]
    return dashboard(
        "kedro-nodes",
        "Kedro nodes",
        "Kedro node durations (p50/p95, slowest, distribution), failures and peak memory.",
        ["project", "pipeline", "node"],
        panels,
    )


def datasets() -> dict[str, Any]:
    load = "kedro_dataset_load_duration_seconds"
    save = "kedro_dataset_save_duration_seconds"
    panels = [
        timeseries(
            "Dataset size",
            "In-memory size of the data last loaded or saved, per dataset (kedro_dataset_size_bytes).",
            "bytes",
            [target(f"max by (dataset) (kedro_dataset_size_bytes{{{DATASET}}})", "{{dataset}}")],
            (0, 0, 12, 9),
            stepped=True,
        ),
        timeseries(
            "Dataset rows",
            "Rows of the tabular data last loaded or saved, per dataset (kedro_dataset_rows).",
            "short",
            [target(f"max by (dataset) (kedro_dataset_rows{{{DATASET}}})", "{{dataset}}")],
            (12, 0, 12, 9),
            stepped=True,
        ),
        timeseries(
            "Load time p95",
            "95th percentile time to load each dataset, per $__rate_interval window "
            "(kedro_dataset_load_duration_seconds histogram).",
            "s",
            [target(quantile_over_time(0.95, load, DATASET, "dataset"), "{{dataset}}")],
            (0, 9, 12, 9),
        ),
        timeseries(
            "Save time p95",
            "95th percentile time to save each dataset, per $__rate_interval window "
            "(kedro_dataset_save_duration_seconds histogram).",
            "s",
            [target(quantile_over_time(0.95, save, DATASET, "dataset"), "{{dataset}}")],
            (12, 9, 12, 9),
        ),
        bargauge(
            "Load and save time p95 over the time range",
            "95th percentile load and save time of each dataset over the selected time range "
            "(kedro_dataset_load_duration_seconds, kedro_dataset_save_duration_seconds).",
            "s",
            [
                target(quantile_over_time_range(0.95, load, DATASET, "dataset"), "load {{dataset}}", "A", instant=True),
                target(quantile_over_time_range(0.95, save, DATASET, "dataset"), "save {{dataset}}", "B", instant=True),
            ],
            (0, 18, 12, 10),
        ),
        timeseries(
            "Load memory",
            "Growth of the process' resident memory across the last load of each dataset "
            "(kedro_dataset_load_memory_bytes).",
            "bytes",
            [target(f"max by (dataset) (kedro_dataset_load_memory_bytes{{{DATASET}}})", "{{dataset}}")],
            (12, 18, 12, 10),
            stepped=True,
        ),
        bargauge(
            "Largest datasets",
            "In-memory size of each dataset as last loaded or saved, largest first (kedro_dataset_size_bytes).",
            "bytes",
            [target(f"sort_desc(max by (dataset) (kedro_dataset_size_bytes{{{DATASET}}}))", "{{dataset}}", instant=True)],
            (0, 28, 24, 8),
        ),
    ]
    return dashboard(
        "kedro-datasets",
        "Kedro datasets",
        "Kedro datasets: size and rows over time, load and save times, memory growth on load.",
        ["project", "dataset"],
        panels,
    )


DASHBOARDS = {
    "kedro-overview.json": overview,
    "kedro-nodes.json": nodes,
    "kedro-datasets.json": datasets,
}


def render() -> dict[str, str]:
    """File name -> the JSON text this module generates for it."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk; exit 1 if any differs")
    parser.add_argument("--output", type=Path, default=HERE, help="folder to write to (default: this file's)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.output / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}: run python {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
