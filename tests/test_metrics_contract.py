"""Every metric is declared once, in the plugin, and everything else is held to it.

The declarations (kedro_observability.metrics.declarations) generate statsd_exporter's
mapping and the metrics tables of the README and CONTRACT.md: the committed files must be
exactly what they generate. Inside the plugin no other module may spell a metric name, so a
rename is one edit. The Prometheus rules and the dashboards' queries are held to the same
declarations by test_prometheus_config.py and test_grafana.py (through conftest's
declared_metrics, the tests' one reader of metric names).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import CONTRACT, REPO, declared_metrics
from kedro_observability.metrics.declarations import METRICS, markdown_table, render_mapping

PLUGIN_SOURCE = REPO / "project" / "kedro-observability" / "src" / "kedro_observability"
DECLARATIONS = PLUGIN_SOURCE / "metrics" / "declarations.py"
TABLE_MARKER = "<!-- metrics table: generated, python -m kedro_observability.metrics table -->\n"


def generated_table_in(path: Path) -> str:
    text = path.read_text()
    assert TABLE_MARKER in text, f"{path.name} has no generated metrics table (marker {TABLE_MARKER.strip()})"
    after = text.split(TABLE_MARKER, 1)[1]
    lines = []
    for line in after.splitlines(keepends=True):
        if not line.startswith("|"):
            break
        lines.append(line)
    return "".join(lines)


def test_mapping_file_is_the_generated_one() -> None:
    committed = (REPO / "statsd-exporter" / "mapping.yml").read_text()
    assert committed == render_mapping(), (
        "statsd-exporter/mapping.yml differs from the declarations: run "
        "`python -m kedro_observability.metrics mapping > statsd-exporter/mapping.yml`"
    )


@pytest.mark.parametrize("document", [REPO / "README.md", CONTRACT], ids=lambda path: path.name)
def test_metrics_tables_are_the_generated_one(document: Path) -> None:
    assert generated_table_in(document) == markdown_table(), (
        f"the metrics table of {document.name} differs from the declarations: paste "
        "`python -m kedro_observability.metrics table` after its marker"
    )


def test_names_are_unique() -> None:
    for attribute in ("statsd_name", "prometheus_name"):
        names = [getattr(metric, attribute) for metric in METRICS]
        assert len(names) == len(set(names)), f"a {attribute} is declared twice: {sorted(names)}"
    assert len(declared_metrics()) == len(METRICS)


def test_each_name_is_spelt_in_one_module_of_the_plugin() -> None:
    spelt_elsewhere = []
    for path in sorted(PLUGIN_SOURCE.rglob("*.py")):
        if path == DECLARATIONS:
            continue
        # Docstrings may show a statsd line as an example; code may not build a name.
        code = re.sub(r'"""(?:.|\n)*?"""', "", path.read_text())
        for metric in METRICS:
            for name in (metric.statsd_name, metric.prometheus_name):
                if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", code):
                    spelt_elsewhere.append(f"{path.relative_to(PLUGIN_SOURCE)}: {name}")
    assert not spelt_elsewhere, f"metric names outside declarations.py: {spelt_elsewhere}"


def test_histograms_have_buckets_and_units_are_given() -> None:
    for metric in METRICS:
        assert metric.unit and metric.help.endswith("."), metric
        if metric.prometheus_type == "histogram":
            assert metric.statsd_type == "timer" and metric.buckets, metric
            assert list(metric.buckets) == sorted(metric.buckets), metric
        else:
            assert metric.buckets is None, metric
