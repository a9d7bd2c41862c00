"""What every hook knows about the current run, in the main process and in ParallelRunner workers.

Kedro calls ``after_context_created`` and the pipeline hooks only in the main process.
Under ParallelRunner the node and dataset hooks run in worker processes: with the ``fork``
start method they are copies of the main process's hook objects, state included; with
``spawn`` or ``forkserver`` Kedro imports the project's settings afresh, so the hooks start
empty. :class:`RunScope` covers both: the main process publishes the run's identity and
settings in an environment variable that spawned workers inherit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from typing import Any

from kedro_observability.names import sanitize_name
from kedro_observability.settings import ObservabilitySettings, apply_environment, load_settings, parse_settings

logger = logging.getLogger(__name__)

RUN_ENVIRONMENT_VARIABLE = "KEDRO_OBSERVABILITY_RUN"
DEFAULT_PIPELINE = "__default__"


class ParallelRunnerStartMethodError(RuntimeError):
    """ParallelRunner would start workers in which Kedro registers none of the project's hooks."""


@dataclass(frozen=True)
class RunInfo:
    """The identity of one ``kedro run``; the label values are already sanitised."""

    project: str
    pipeline: str
    run_id: str
    settings: ObservabilitySettings

    def to_json(self) -> str:
        return json.dumps(
            {
                "project": self.project,
                "pipeline": self.pipeline,
                "run_id": self.run_id,
                "settings": json.loads(self.settings.to_json()),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        data = json.loads(text)
        settings = parse_settings(data["settings"], source="the parent process")
        return cls(data["project"], data["pipeline"], data["run_id"], settings)


def project_label() -> str:
    """The ``project`` label: the Kedro package name."""
    from kedro.framework.project import PACKAGE_NAME

    return sanitize_name(PACKAGE_NAME or "unknown")


def pipeline_label(run_params: dict[str, Any]) -> str:
    """The ``pipeline`` label: the pipeline(s) named on the command line, or ``__default__``."""
    names = run_params.get("pipeline_names") or []
    return sanitize_name("+".join(names)) if names else DEFAULT_PIPELINE


def check_parallel_runner_start_method(run_params: dict[str, Any]) -> None:
    """Fail before any node runs when ParallelRunner's workers would run without hooks.

    Kedro bootstraps the project in a worker only when ``multiprocessing.get_start_method()``
    is spawn or forkserver, but it creates the workers with ``KEDRO_MP_CONTEXT`` when that is
    set. With ``KEDRO_MP_CONTEXT=spawn`` (or forkserver) and the default ``fork`` start
    method, the workers import no project settings and silently run no node or dataset
    hook: metrics and input paths would differ from the other runners.
    """
    if "ParallelRunner" not in str(run_params.get("runner", "")):
        return
    requested = os.environ.get("KEDRO_MP_CONTEXT")
    if requested not in {"spawn", "forkserver"}:
        return
    default = multiprocessing.get_start_method()
    if default in {"spawn", "forkserver"}:
        return
    raise ParallelRunnerStartMethodError(
        f"ParallelRunner would start its workers with KEDRO_MP_CONTEXT={requested} while "
        f"Python's multiprocessing start method is '{default}'. In that combination Kedro "
        "does not load the project's settings in the workers, so no node or dataset hook "
        "would run there (no node metrics, and nodes configured in input_paths would get "
        "data instead of file paths). Either unset KEDRO_MP_CONTEXT, or also make "
        f"'{requested}' the default start method, for example with "
        f"multiprocessing.set_start_method('{requested}') at the top of your project's "
        "__main__.py."
    )


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
        """Record the run (``before_pipeline_run``) and publish it for spawned workers."""
        check_parallel_runner_start_method(run_params)
        run = RunInfo(
            project=project_label(),
            pipeline=pipeline_label(run_params),
            run_id=str(run_params.get("run_id") or ""),
            settings=self.settings,
        )
        with self._lock:
            self._run = run
        os.environ[RUN_ENVIRONMENT_VARIABLE] = run.to_json()
        return run

    def end(self) -> None:
        """Forget the run (``after_pipeline_run`` / ``on_pipeline_error``)."""
        with self._lock:
            self._run = None
        os.environ.pop(RUN_ENVIRONMENT_VARIABLE, None)

    @property
    def settings(self) -> ObservabilitySettings:
        with self._lock:
            if self._settings is None:
                inherited = _inherited_run()
                self._settings = inherited.settings if inherited else _default_settings()
            return self._settings

    @property
    def run(self) -> RunInfo:
        """The current run; in a spawned worker, the one its parent published."""
        with self._lock:
            if self._run is not None:
                return self._run
        inherited = _inherited_run()
        if inherited is not None:
            with self._lock:
                self._run = inherited
                if self._settings is None:
                    self._settings = inherited.settings
            return inherited
        # Called outside ``KedroSession.run`` (a runner driven directly): no pipeline hooks.
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


def _inherited_run() -> RunInfo | None:
    text = os.environ.get(RUN_ENVIRONMENT_VARIABLE)
    if not text:
        return None
    try:
        return RunInfo.from_json(text)
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("kedro_observability: ignoring a malformed %s (%s).", RUN_ENVIRONMENT_VARIABLE, error)
        return None


def _default_settings() -> ObservabilitySettings:
    return parse_settings(apply_environment({}), source="the environment")
