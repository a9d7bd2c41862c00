"""What every hook knows about the current run, in the main process and in ParallelRunner workers.

Kedro calls ``after_context_created`` and the pipeline hooks only in the main process.
Under ParallelRunner the node and dataset hooks run in worker processes. Kedro 1.7 creates
them with the start method of ``KEDRO_MP_CONTEXT`` (or Python's default), and registers the
project's hooks in them only when they are forked: a forked worker holds a copy of the main
process's hook objects, state included, taken when the worker starts (after
``before_pipeline_run``). A spawned or forkserver worker runs no project hook at all, which
:func:`parallel_workers_problem` detects before any node runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from typing import Any

from kedro_observability.names import sanitize_name
from kedro_observability.settings import ObservabilitySettings, apply_environment, load_settings, parse_settings

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE = "__default__"


class ParallelRunnerStartMethodError(RuntimeError):
    """ParallelRunner would start workers in which Kedro runs none of the project's hooks."""


@dataclass(frozen=True)
class RunInfo:
    """The identity of one ``kedro run``; the label values are already sanitised."""

    project: str
    pipeline: str
    run_id: str
    settings: ObservabilitySettings


def project_label() -> str:
    """The ``project`` label: the Kedro package name."""
    from kedro.framework.project import PACKAGE_NAME

    return sanitize_name(PACKAGE_NAME or "unknown")


def pipeline_label(run_params: dict[str, Any]) -> str:
    """The ``pipeline`` label: the pipeline(s) named on the command line, or ``__default__``."""
    names = run_params.get("pipeline_names") or []
    return sanitize_name("+".join(names)) if names else DEFAULT_PIPELINE


def parallel_workers_problem(run_params: dict[str, Any]) -> str | None:
    """Say why ParallelRunner's workers would run no project hook, or None if they will.

    Kedro starts the workers with ``KEDRO_MP_CONTEXT`` or, unset, Python's default start
    method. Only forked workers inherit the configured project; spawned and forkserver
    workers import Kedro afresh and run no node or dataset hook, silently.
    """
    if "ParallelRunner" not in str(run_params.get("runner", "")):
        return None
    requested = os.environ.get("KEDRO_MP_CONTEXT")
    method = requested if requested in {"fork", "spawn", "forkserver"} else multiprocessing.get_start_method()
    if method == "fork":
        return None
    source = "KEDRO_MP_CONTEXT" if requested == method else "Python's default start method"
    return (
        f"ParallelRunner would start its workers with the '{method}' start method ({source}). "
        "Kedro does not load the project's settings in such workers, so no node or dataset "
        "hook runs there: no node or dataset metrics, and nodes configured in input_paths "
        "would receive data instead of file paths. Set KEDRO_MP_CONTEXT=fork (Linux, macOS), "
        "or use ThreadRunner."
    )


def registered_pipelines() -> list[Any]:
    """Every pipeline of the project's registry; empty outside a configured project."""
    from kedro.framework.project import pipelines

    try:
        return list(pipelines.values())
    except Exception as error:  # noqa: BLE001 - a broken registry is reported by Kedro itself
        logger.debug("Could not read the pipeline registry: %s", error)
        return []


class RunScope:
    """Settings and run identity for one hook object; thread-safe."""

    def __init__(self) -> None:
        self._settings: ObservabilitySettings | None = None
        self._run: RunInfo | None = None
        self._lock = threading.Lock()

    def configure(self, context: Any) -> ObservabilitySettings:
        """Load the settings from a ``KedroContext`` (``after_context_created``)."""
        settings = settings_for(context.config_loader)
        with self._lock:
            self._settings = settings
        return settings

    def start(self, run_params: dict[str, Any]) -> RunInfo:
        """Record the run (``before_pipeline_run``)."""
        run = RunInfo(
            project=project_label(),
            pipeline=pipeline_label(run_params),
            run_id=str(run_params.get("run_id") or ""),
            settings=self.settings,
        )
        with self._lock:
            self._run = run
        return run

    def end(self) -> None:
        """Forget the run (``after_pipeline_run`` / ``on_pipeline_error``)."""
        with self._lock:
            self._run = None

    @property
    def settings(self) -> ObservabilitySettings:
        with self._lock:
            if self._settings is None:
                # No KedroContext (a runner driven directly): the defaults and the environment.
                self._settings = parse_settings(apply_environment({}), source="the environment")
            return self._settings

    @property
    def run(self) -> RunInfo:
        """The current run, or a default identity outside ``KedroSession.run``."""
        with self._lock:
            if self._run is not None:
                return self._run
        return RunInfo(project_label(), DEFAULT_PIPELINE, "", self.settings)


_settings_cache: dict[int, tuple[Any, ObservabilitySettings]] = {}
_settings_cache_lock = threading.Lock()


def settings_for(config_loader: Any) -> ObservabilitySettings:
    """Load the settings once per config loader, so that all hooks share one object."""
    with _settings_cache_lock:
        cached = _settings_cache.get(id(config_loader))
        # The loader itself is kept in the entry so that its id cannot be reused.
        if cached is not None and cached[0] is config_loader:
            return cached[1]
        settings = load_settings(config_loader)
        _settings_cache.clear()
        _settings_cache[id(config_loader)] = (config_loader, settings)
        return settings
