"""Memory hooks: resident memory grown by each dataset load, and each node's peak.

The usual recipe calls memory_profiler's ``memory_usage(-1, interval=0.1)`` around every load,
which samples once and then *sleeps* for the interval: about 0.1 s added to each load, and
even with ``interval=0`` it costs ~0.2 ms because it builds a new ``psutil.Process`` per call.
These hooks read the same number memory_profiler's psutil backend reads (``rss`` of
``psutil.Process().memory_info()``) from one reused Process object, ~12 µs a reading, and
never sleep on the pipeline's thread: a node's peak is sampled by a background thread that
starts with the node and stops when it ends, successfully or not.

Resident memory belongs to the whole process. Under ThreadRunner, concurrent nodes and loads
share it, so a node's peak includes what its neighbours held at the time. Under
ParallelRunner each worker process measures itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psutil
from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

from kedro_observability.base import ObservingHook, is_parameter
from kedro_observability.emitter import dataset_tags, node_tags
from kedro_observability.guard import never_raise
from kedro_observability.names import sanitize_name
from kedro_observability.run_record import record_metric

logger = logging.getLogger(__name__)

SAMPLER_THREAD_PREFIX = "kedro-observability-memory"
_MIB = 1024 * 1024

_process: psutil.Process | None = None
_process_pid = 0


def resident_bytes() -> int:
    """Resident memory of this process, from a Process object reused within the process."""
    global _process, _process_pid
    pid = os.getpid()
    if _process is None or _process_pid != pid:  # a forked worker must read its own memory
        _process, _process_pid = psutil.Process(pid), pid
    return _process.memory_info().rss


class PeakSampler:
    """Track the peak resident memory between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval: float, name: str) -> None:
        self._interval = interval
        self._stopped = threading.Event()
        self.start_bytes = resident_bytes()
        self._peak = self.start_bytes
        self._thread = threading.Thread(target=self._sample, name=f"{SAMPLER_THREAD_PREFIX}-{name}", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopped.wait(self._interval):
            self._peak = max(self._peak, resident_bytes())

    def stop(self) -> int:
        """Stop the thread and return the peak, at least the larger of start and end readings."""
        self._stopped.set()
        self._thread.join()
        return max(self._peak, resident_bytes())


class MemoryHook(ObservingHook):
    """Per dataset load: memory growth. Per node: peak resident memory while it ran."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._start_run(run_params)

    @hook_impl
    @never_raise
    def before_dataset_loaded(self, dataset_name: str) -> None:
        if self._scope.settings.memory.enabled and not is_parameter(dataset_name):
            self._timers()["load:" + dataset_name] = resident_bytes()

    @hook_impl
    @never_raise
    def after_dataset_loaded(self, dataset_name: str) -> None:
        before = self._timers().pop("load:" + dataset_name, None)
        if before is None:
            return
        # Memory freed while loading is not "consumed": report growth only.
        growth = max(0, resident_bytes() - before)
        if self._scope.settings.memory.log_loads:
            logger.info("Loading %s consumed %.1f MiB", dataset_name, growth / _MIB)
        emitter = self._emitter()
        pipe = emitter.pipeline() if emitter is not None else None
        if pipe is not None:
            pipe.gauge(f"kedro.dataset.load_memory{dataset_tags(self._scope.run.project, dataset_name)}", growth)
            pipe.send()

    @hook_impl
    @never_raise
    def before_node_run(self, node: Node) -> None:
        memory = self._scope.settings.memory
        if memory.enabled:
            self._timers()["node:" + node.name] = PeakSampler(memory.interval_seconds, node.name)

    @hook_impl
    @never_raise
    def after_node_run(self, node: Node) -> None:
        self._finish(node)

    @hook_impl
    @never_raise
    def on_node_error(self, node: Node) -> None:
        self._finish(node)


    def _finish(self, node: Node) -> None:
        sampler = self._timers().pop("node:" + node.name, None)
        if sampler is None:
            return
        peak = sampler.stop()
        record_metric(f"memory_peak_bytes.{sanitize_name(node.name)}", peak)
        emitter = self._emitter()
        pipe = emitter.pipeline() if emitter is not None else None
        if pipe is not None:
            run = self._scope.run
            pipe.gauge(f"kedro.node.memory_peak{node_tags(run.project, run.pipeline, node.name)}", peak)
            pipe.send()
