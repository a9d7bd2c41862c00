"""statsd hooks: pipeline, node and dataset metrics for Prometheus' statsd_exporter.

Each event is one UDP packet of InfluxDB-tagged statsd lines, for example::

    kedro.node.duration,project=spaceflights,pipeline=__default__,node=train_model:12.5|ms
    kedro.node.runs,project=spaceflights,pipeline=__default__,node=train_model,status=success:1|c

``statsd-exporter/mapping.yml`` turns them into the metrics of the stack's contract. Label
values go through :func:`~kedro_observability.names.sanitize_name`, so no name can break a
line. Timers live in thread-local storage: ThreadRunner runs nodes concurrently, and node or
dataset names need not be unique across threads. Under ParallelRunner the node and dataset
hooks run, and send, in the (forked) worker processes; the pipeline hook in the main one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

from kedro_observability.base import ObservingHook, is_parameter
from kedro_observability.emitter import dataset_tags, node_tags
from kedro_observability.guard import never_raise
from kedro_observability.runtime import RunInfo, parallel_workers_problem
from kedro_observability.sizes import measure

logger = logging.getLogger(__name__)


class PipelineMetricsHook(ObservingHook):
    """Runs by status, run duration and the time of the last success, per pipeline."""

    @hook_impl
    @never_raise
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        run = self._start_run(run_params)
        emitter = self._emitter()
        if emitter is not None:
            emitter.connect()
        self._timers()[run.run_id] = time.perf_counter()

    @hook_impl
    @never_raise
    def after_pipeline_run(self) -> None:
        self._finish("success")

    @hook_impl
    @never_raise
    def on_pipeline_error(self) -> None:
        self._finish("failure")

    def _finish(self, status: str) -> None:
        run = self._scope.run
        started = self._timers().pop(run.run_id, None)
        self._scope.end()
        pipe = self._statsd_pipeline()
        if pipe is None:
            return
        tags = f",project={run.project},pipeline={run.pipeline}"
        pipe.incr(f"kedro.pipeline.runs{tags},status={status}")
        if started is not None:
            pipe.timing(f"kedro.pipeline.duration{tags}", (time.perf_counter() - started) * 1000.0)
        if status == "success":
            pipe.gauge(f"kedro.pipeline.last_success_timestamp{tags}", time.time())
        pipe.send()


class NodeMetricsHook(ObservingHook):
    """Duration and runs by status of every node run, failures included."""

    @hook_impl
    @never_raise
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._start_run(run_params)
        problem = parallel_workers_problem(run_params)
        if problem and self._scope.settings.statsd.enabled:
            logger.warning("kedro_observability: %s", problem)

    @hook_impl
    @never_raise
    def before_node_run(self, node: Node) -> None:
        self._timers()[node.name] = time.perf_counter()

    @hook_impl
    @never_raise
    def after_node_run(self, node: Node) -> None:
        self._finish(node, "success")

    @hook_impl
    @never_raise
    def on_node_error(self, node: Node) -> None:
        self._finish(node, "failure")

    def _finish(self, node: Node, status: str) -> None:
        # Pop first: whatever happens next, a finished node leaves no timer behind.
        started = self._timers().pop(node.name, None)
        pipe = self._statsd_pipeline()
        if pipe is None:
            return
        run: RunInfo = self._scope.run
        tags = node_tags(run.project, run.pipeline, node.name)
        if started is not None:
            pipe.timing(f"kedro.node.duration{tags}", (time.perf_counter() - started) * 1000.0)
        pipe.incr(f"kedro.node.runs{tags},status={status}")
        pipe.send()


class DatasetMetricsHook(ObservingHook):
    """Size, rows and load/save duration of every dataset a node loads or saves."""

    @hook_impl
    @never_raise
    def before_dataset_loaded(self, dataset_name: str) -> None:
        if not is_parameter(dataset_name):
            self._timers()["load:" + dataset_name] = time.perf_counter()

    @hook_impl
    @never_raise
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        self._finish("load", dataset_name, data)

    @hook_impl
    @never_raise
    def before_dataset_saved(self, dataset_name: str) -> None:
        if not is_parameter(dataset_name):
            self._timers()["save:" + dataset_name] = time.perf_counter()

    @hook_impl
    @never_raise
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        self._finish("save", dataset_name, data)

    def _finish(self, operation: str, dataset_name: str, data: Any) -> None:
        if is_parameter(dataset_name):
            return
        started = self._timers().pop(f"{operation}:{dataset_name}", None)
        elapsed_ms = (time.perf_counter() - started) * 1000.0 if started is not None else None
        pipe = self._statsd_pipeline()
        if pipe is None:
            return
        tags = dataset_tags(self._scope.run.project, dataset_name)
        if elapsed_ms is not None:
            pipe.timing(f"kedro.dataset.{operation}_duration{tags}", elapsed_ms)
        size = measure(data)
        if size.bytes is not None:
            pipe.gauge(f"kedro.dataset.size{tags}", size.bytes)
        if size.rows is not None:
            pipe.gauge(f"kedro.dataset.rows{tags}", size.rows)
        pipe.send()
