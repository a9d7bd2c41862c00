"""Measurements of a run as statsd packets for Prometheus' statsd_exporter.

Each event is one UDP packet of InfluxDB-tagged statsd lines, for example::

    kedro.node.duration,project=spaceflights,pipeline=__default__,node=train_model:12.5|ms
    kedro.node.runs,project=spaceflights,pipeline=__default__,node=train_model,status=success:1|c

Every line is built from a :class:`~.declarations.Metric`, so names and types exist once.
Label values go through :func:`~kedro_observability.names.sanitize_name`. Under
ParallelRunner the node and dataset events are sent from the (forked) worker processes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kedro_observability.metrics import declarations as m
from kedro_observability.metrics.emitter import dataset_tags, node_tags

if TYPE_CHECKING:
    from statsd.client.udp import Pipeline

    from kedro_observability.identity import RunInfo
    from kedro_observability.metrics.declarations import Metric
    from kedro_observability.metrics.emitter import StatsdEmitter
    from kedro_observability.sizes import DataSize


def _add(packet: Pipeline, metric: Metric, tags: str, value: float) -> None:
    name = metric.statsd_name + tags
    if metric.statsd_type == "counter":
        packet.incr(name, int(value))
    elif metric.statsd_type == "gauge":
        packet.gauge(name, value)
    else:
        packet.timing(name, value)


class StatsdPublisher:
    """The statsd side of one run: what each measurement becomes on the wire."""

    def __init__(self, emitter: StatsdEmitter, run: RunInfo) -> None:
        self.emitter = emitter
        self.run = run
        self._run_tags = f",project={run.project},pipeline={run.pipeline}"

    def pipeline_finished(self, succeeded: bool, duration_ms: float | None) -> None:
        packet = self.emitter.pipeline()
        if packet is None:
            return
        _add(packet, m.PIPELINE_RUNS, f"{self._run_tags},status={'success' if succeeded else 'failure'}", 1)
        if duration_ms is not None:
            _add(packet, m.PIPELINE_DURATION, self._run_tags, duration_ms)
        # The alert on failures ends at the next success: it compares the two times.
        _add(packet, m.PIPELINE_LAST_SUCCESS if succeeded else m.PIPELINE_LAST_FAILURE, self._run_tags, time.time())
        packet.send()

    def node_finished(self, node_name: str, succeeded: bool, duration_ms: float | None, memory_peak: int | None) -> None:
        packet = self.emitter.pipeline()
        if packet is None:
            return
        tags = node_tags(self.run.project, self.run.pipeline, node_name)
        if duration_ms is not None:
            _add(packet, m.NODE_DURATION, tags, duration_ms)
        _add(packet, m.NODE_RUNS, f"{tags},status={'success' if succeeded else 'failure'}", 1)
        if memory_peak is not None:
            _add(packet, m.NODE_MEMORY_PEAK, tags, memory_peak)
        packet.send()

    def dataset_done(self, operation: str, dataset_name: str, duration_ms: float | None, size: DataSize, memory_growth: int | None) -> None:
        """One load (``operation`` "load") or save ("save") of a dataset."""
        packet = self.emitter.pipeline()
        if packet is None:
            return
        tags = dataset_tags(self.run.project, dataset_name)
        if duration_ms is not None:
            _add(packet, m.DATASET_LOAD_DURATION if operation == "load" else m.DATASET_SAVE_DURATION, tags, duration_ms)
        if size.bytes is not None:
            _add(packet, m.DATASET_SIZE, tags, size.bytes)
        if size.rows is not None:
            _add(packet, m.DATASET_ROWS, tags, size.rows)
        if memory_growth is not None:
            _add(packet, m.DATASET_LOAD_MEMORY, tags, memory_growth)
        packet.send()

    def validated(self, dataset_name: str, passed: bool, failed_expectations: int) -> None:
        packet = self.emitter.pipeline()
        if packet is None:
            return
        tags = dataset_tags(self.run.project, dataset_name)
        _add(packet, m.VALIDATION_RUNS, f"{tags},status={'passed' if passed else 'failed'}", 1)
        _add(packet, m.VALIDATION_FAILED_EXPECTATIONS, tags, failed_expectations)
        packet.send()
