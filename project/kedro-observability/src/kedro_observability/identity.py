"""Who a run is: its project, pipeline, runner and environment, as labels and tags.

Kedro calls ``after_context_created`` and the pipeline hooks only in the main process.
Under ParallelRunner the node and dataset hooks run in worker processes. Kedro 1.7 creates
them with the start method of ``KEDRO_MP_CONTEXT`` (or Python's default), and registers the
project's hooks in them only when they are forked: a forked worker holds a copy of the main
process's hook objects, state included, taken when the worker starts (after
``before_pipeline_run``). A spawned or forkserver worker runs no project hook at all, which
:func:`parallel_workers_problem` detects before any node runs.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from dataclasses import dataclass
from typing import Any

from kedro_observability.names import sanitize_name

DEFAULT_PIPELINE = "__default__"


class ParallelRunnerStartMethodError(RuntimeError):
    """ParallelRunner would start workers in which Kedro runs none of the project's hooks."""


@dataclass(frozen=True)
class RunInfo:
    """The identity of one ``kedro run``; ``project`` and ``pipeline`` are sanitised labels."""

    project: str
    pipeline: str
    run_id: str
    runner: str
    env: str

    @classmethod
    def from_run_params(cls, run_params: dict[str, Any], default_env: str = "local") -> RunInfo:
        return cls(
            project=project_label(),
            pipeline=pipeline_label(run_params),
            run_id=str(run_params.get("run_id") or ""),
            runner=runner_name(run_params.get("runner")),
            env=str(run_params.get("env") or default_env),
        )

    @classmethod
    def outside_a_session(cls) -> RunInfo:
        """A runner driven without KedroSession: no run id, the default pipeline."""
        return cls(project_label(), DEFAULT_PIPELINE, "", "SequentialRunner", "local")


def project_label() -> str:
    """The ``project`` label: the Kedro package name."""
    from kedro.framework.project import PACKAGE_NAME

    return sanitize_name(PACKAGE_NAME or "unknown")


def pipeline_label(run_params: dict[str, Any]) -> str:
    """The ``pipeline`` label: the pipeline(s) named on the command line, or ``__default__``."""
    names = run_params.get("pipeline_names") or []
    return sanitize_name("+".join(names)) if names else DEFAULT_PIPELINE


def runner_name(runner: Any) -> str:
    """The runner's class name. Kedro records a runner class by name but a runner instance
    by its repr, and None when it defaults to SequentialRunner."""
    match = re.search(r"\w*Runner\b", str(runner or ""))
    return match.group(0) if match else "SequentialRunner"


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
