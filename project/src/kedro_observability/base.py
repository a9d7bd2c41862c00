"""What the observing hooks (metrics, memory) have in common."""

from __future__ import annotations

import threading
from typing import Any

from kedro.framework.hooks import hook_impl
from statsd.client.udp import Pipeline

from kedro_observability.emitter import StatsdEmitter, emitter_for
from kedro_observability.runtime import RunInfo, RunScope


def is_parameter(dataset_name: str) -> bool:
    """Parameters are not datasets: no dataset metrics for them."""
    return dataset_name == "parameters" or dataset_name.startswith("params:")


class ObservingHook:
    """Settings and run identity, the statsd emitter, and per-thread timers.

    Subclasses that override ``before_pipeline_run`` must start the run (``_start_run``), and
    those that override ``after_pipeline_run`` or ``on_pipeline_error`` must end it.

    Timers live in thread-local storage because ThreadRunner runs nodes concurrently and
    a dataset may be loaded by two nodes at once: no shared mutable state is keyed by
    names that are not unique across threads.
    """

    def __init__(self) -> None:
        self._scope = RunScope()
        self._local = threading.local()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._scope.configure(context)

    def _start_run(self, run_params: dict[str, Any]) -> RunInfo:
        """Record the run; drop timers that an aborted earlier run left in this thread
        (a failed load, or a run that another hook stopped before it began)."""
        self._timers().clear()
        return self._scope.start(run_params)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._start_run(run_params)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._scope.end()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._scope.end()

    def _emitter(self) -> StatsdEmitter | None:
        statsd = self._scope.settings.statsd
        return emitter_for(statsd.host, statsd.port) if statsd.enabled else None

    def _statsd_pipeline(self) -> Pipeline | None:
        """A statsd pipeline for one event (one packet), or None when statsd is off."""
        emitter = self._emitter()
        return emitter.pipeline() if emitter is not None else None

    def _timers(self) -> dict[str, Any]:
        timers = getattr(self._local, "timers", None)
        if timers is None:
            timers = self._local.timers = {}
        return timers
