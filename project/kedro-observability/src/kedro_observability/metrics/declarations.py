"""Every metric of the plugin, declared once: statsd name and type, Prometheus name, type,
labels, unit, help and buckets.

The hooks emit through these objects; ``statsd-exporter/mapping.yml`` of the stack is
rendered from them (:func:`render_mapping`), and so is the metrics table of the README and
of ``CONTRACT.md`` (:func:`markdown_table`). Tests hold the committed files, the Prometheus
rules and the dashboards' queries to this module.

Regenerate the stack's files with ``python -m kedro_observability.metrics mapping``
(or ``table``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

StatsdType = Literal["counter", "gauge", "timer"]
PrometheusType = Literal["counter", "gauge", "histogram"]

# 5 ms to 1 hour, for nodes and whole runs.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# 1 ms to 10 minutes: most loads and saves are fast, a few read large files or databases.
IO_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_STATSD_SUFFIX = {"counter": "c", "gauge": "g", "timer": "ms"}
# statsd_exporter's names for the statsd types in ``match_metric_type``.
_EXPORTER_TYPE = {"counter": "counter", "gauge": "gauge", "timer": "observer"}


@dataclass(frozen=True)
class Metric:
    """One metric, as the hooks send it and as Prometheus stores it."""

    statsd_name: str
    statsd_type: StatsdType
    prometheus_name: str
    prometheus_type: PrometheusType
    labels: tuple[str, ...]
    unit: str
    help: str
    buckets: tuple[float, ...] | None = None

    @property
    def statsd_suffix(self) -> str:
        """The statsd type marker after the value: ``c``, ``g`` or ``ms``."""
        return _STATSD_SUFFIX[self.statsd_type]


PIPELINE_RUNS = Metric(
    "kedro.pipeline.runs", "counter", "kedro_pipeline_runs_total", "counter",
    ("project", "pipeline", "status"), "runs",
    "Finished Kedro pipeline runs; status is success or failure.",
)
PIPELINE_DURATION = Metric(
    "kedro.pipeline.duration", "timer", "kedro_pipeline_duration_seconds", "histogram",
    ("project", "pipeline"), "seconds",
    "Wall time of a Kedro pipeline run, in seconds.", DURATION_BUCKETS,
)
PIPELINE_LAST_SUCCESS = Metric(
    "kedro.pipeline.last_success_timestamp", "gauge", "kedro_pipeline_last_success_timestamp_seconds", "gauge",
    ("project", "pipeline"), "unix seconds",
    "Unix time of the last successful run of the pipeline.",
)
PIPELINE_LAST_FAILURE = Metric(
    "kedro.pipeline.last_failure_timestamp", "gauge", "kedro_pipeline_last_failure_timestamp_seconds", "gauge",
    ("project", "pipeline"), "unix seconds",
    "Unix time of the last failed run of the pipeline.",
)
NODE_DURATION = Metric(
    "kedro.node.duration", "timer", "kedro_node_duration_seconds", "histogram",
    ("project", "pipeline", "node"), "seconds",
    "Wall time of one Kedro node run, in seconds.", DURATION_BUCKETS,
)
NODE_RUNS = Metric(
    "kedro.node.runs", "counter", "kedro_node_runs_total", "counter",
    ("project", "pipeline", "node", "status"), "runs",
    "Kedro node runs; status is success or failure.",
)
NODE_MEMORY_PEAK = Metric(
    "kedro.node.memory_peak", "gauge", "kedro_node_memory_peak_bytes", "gauge",
    ("project", "pipeline", "node"), "bytes",
    "Peak resident memory of the process while the node ran, in bytes.",
)
DATASET_SIZE = Metric(
    "kedro.dataset.size", "gauge", "kedro_dataset_size_bytes", "gauge",
    ("project", "dataset"), "bytes",
    "In-memory size of the data last loaded or saved, in bytes.",
)
DATASET_ROWS = Metric(
    "kedro.dataset.rows", "gauge", "kedro_dataset_rows", "gauge",
    ("project", "dataset"), "rows",
    "Rows of the data last loaded or saved, for tabular data.",
)
DATASET_LOAD_DURATION = Metric(
    "kedro.dataset.load_duration", "timer", "kedro_dataset_load_duration_seconds", "histogram",
    ("project", "dataset"), "seconds",
    "Time to load a dataset, in seconds.", IO_BUCKETS,
)
DATASET_SAVE_DURATION = Metric(
    "kedro.dataset.save_duration", "timer", "kedro_dataset_save_duration_seconds", "histogram",
    ("project", "dataset"), "seconds",
    "Time to save a dataset, in seconds.", IO_BUCKETS,
)
DATASET_LOAD_MEMORY = Metric(
    "kedro.dataset.load_memory", "gauge", "kedro_dataset_load_memory_bytes", "gauge",
    ("project", "dataset"), "bytes",
    "Growth of resident memory across the load of a dataset, in bytes.",
)
VALIDATION_RUNS = Metric(
    "kedro.validation.runs", "counter", "kedro_validation_runs_total", "counter",
    ("project", "dataset", "status"), "validations",
    "Data validations run on a dataset; status is passed or failed.",
)
VALIDATION_FAILED_EXPECTATIONS = Metric(
    "kedro.validation.failed_expectations", "gauge", "kedro_validation_failed_expectations", "gauge",
    ("project", "dataset"), "expectations",
    "Failed expectations in the last validation of the dataset.",
)

METRICS: tuple[Metric, ...] = (
    PIPELINE_RUNS,
    PIPELINE_DURATION,
    PIPELINE_LAST_SUCCESS,
    PIPELINE_LAST_FAILURE,
    NODE_DURATION,
    NODE_RUNS,
    NODE_MEMORY_PEAK,
    DATASET_SIZE,
    DATASET_ROWS,
    DATASET_LOAD_DURATION,
    DATASET_SAVE_DURATION,
    DATASET_LOAD_MEMORY,
    VALIDATION_RUNS,
    VALIDATION_FAILED_EXPECTATIONS,
)

_MAPPING_HEADER = """\
# statsd_exporter mapping for kedro-observability-stack. GENERATED from
# kedro_observability/metrics/declarations.py: do not edit by hand, run
#   python -m kedro_observability.metrics mapping > statsd-exporter/mapping.yml
# (tests/test_metrics_contract.py fails when this file and the declarations differ).
#
# The hooks send statsd lines in the InfluxDB tag style, for example
#   kedro.node.duration,project=spaceflights,pipeline=__default__,node=split_data:12.5|ms
# and each becomes exactly one Prometheus metric:
#   - the statsd name (the part before the first ",") selects the mapping;
#   - the labels are the line's tags, so no mapping sets `labels:`;
#   - `match_metric_type` pins the statsd type the hooks send (c, g, or ms for
#     "observer"), so a line of the wrong type stays unmapped instead of creating a
#     metric of the wrong Prometheus type;
#   - `|ms` timers arrive in milliseconds and are exposed in seconds, as histograms.
#
# There is deliberately no catch-all drop rule: a line that no rule maps still shows up
# on /metrics under its escaped name and counts in statsd_exporter_events_unmapped_total,
# which is what you want when debugging a new or misspelt metric. Only documented keys are
# used, valid for prom/statsd-exporter v0.28 and later.

defaults:
  # Timers that no rule maps still become histograms with these buckets.
  observer_type: histogram
  histogram_options:
    buckets: {default_buckets}

mappings:
"""


def _yaml_list(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in values) + "]"


def render_mapping() -> str:
    """statsd_exporter's mapping file for :data:`METRICS`."""
    parts = [_MAPPING_HEADER.format(default_buckets=_yaml_list(DURATION_BUCKETS))]
    for metric in METRICS:
        lines = [
            f"  - match: {metric.statsd_name}",
            f"    match_metric_type: {_EXPORTER_TYPE[metric.statsd_type]}",
        ]
        if metric.prometheus_type == "histogram":
            lines += [
                "    observer_type: histogram",
                "    histogram_options:",
                f"      buckets: {_yaml_list(metric.buckets or DURATION_BUCKETS)}",
            ]
        lines += [f"    name: {metric.prometheus_name}", f"    help: {metric.help}", ""]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


def markdown_table() -> str:
    """The metrics table of the README and CONTRACT.md."""
    rows = [
        "| metric | type | labels | unit | statsd line | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for metric in METRICS:
        buckets = f" Buckets {metric.buckets[0]:g} s to {metric.buckets[-1]:g} s." if metric.buckets else ""
        rows.append(
            f"| `{metric.prometheus_name}` | {metric.prometheus_type} | {', '.join(metric.labels)} | {metric.unit} "
            f"| `{metric.statsd_name}` (`{metric.statsd_suffix}`) | {metric.help}{buckets} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    renderers = {"mapping": render_mapping, "table": markdown_table}
    if len(argv) != 1 or argv[0] not in renderers:
        print(f"usage: python -m kedro_observability.metrics {{{'|'.join(renderers)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(renderers[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
