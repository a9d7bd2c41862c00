"""The plugin's one hook object: Kedro's hook calls, turned into measurements for every sink.

Kedro registers :data:`hooks` through the ``kedro.hooks`` entry point of the
``kedro-observability`` distribution (``DISABLE_HOOKS_FOR_PLUGINS = ("kedro-observability",)``
in settings.py turns it off). A project without ``observability.yml`` is left alone.

One object owns the run: the pipeline hooks are pluggy wrappers, so the run begins before
every other hook's ``before_pipeline_run`` and ends after every other hook's
``after_pipeline_run`` or ``on_pipeline_error``, whatever the registration order. Each node
and dataset event is measured once (time, memory, size) and handed to each enabled sink:
statsd, the MLflow run, the log, validation.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

from kedro_observability.compat import every_registered_pipeline
from kedro_observability.config import ENABLE_HINT, opted_in, raise_logger_to_info, register_config
from kedro_observability.guard import never_raise
from kedro_observability.identity import ParallelRunnerStartMethodError, RunInfo, parallel_workers_problem
from kedro_observability.inputs import check_input_paths, input_paths_for
from kedro_observability.lifecycle import Ending, RunContext, RunLifecycle
from kedro_observability.memory import MIB, SAMPLER, resident_bytes
from kedro_observability.metrics.emitter import emitter_for
from kedro_observability.metrics.publish import StatsdPublisher
from kedro_observability.names import is_parameter
from kedro_observability.settings import ObservabilitySettings, load_settings
from kedro_observability.sizes import NO_SIZE

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

    from kedro_observability.validation.engine import ValidationOutcome
    from kedro_observability.validation.suites import SuiteConfig

logger = logging.getLogger(__name__)

_hinted_off = False


class ObservabilityHooks:
    """statsd metrics, memory, MLflow tracking, validation and input paths for Kedro runs."""

    def __init__(self, settings: ObservabilitySettings | None = None) -> None:
        """``settings``: for runners driven without a KedroSession (no context to read
        observability.yml from); given, they are used as they are and conf/ is not read."""
        self._given = settings
        self._settings: ObservabilitySettings | None = settings
        self._suites: SuiteConfig | None = None
        self._loader: Any = None
        self._default_env = "local"
        self._lifecycle = RunLifecycle()
        self._outside: RunContext | None = None
        self._outside_lock = threading.Lock()
        # Timers and memory windows per thread: ThreadRunner runs nodes concurrently and a
        # dataset may be loaded by two nodes at once, so nothing is keyed by name across threads.
        self._local = threading.local()

    # ---- the session -------------------------------------------------------------------

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        global _hinted_off
        loader = context.config_loader
        self._settings = self._given
        self._loader = None
        if not _claim(context, self):
            self._settings = None
            return
        self._loader = loader  # for the catalog's validators, whether the plugin is on or not
        if self._given is not None:
            return
        register_config(loader)
        raise_logger_to_info()
        if not opted_in(loader):
            if not _hinted_off:
                _hinted_off = True
                logger.info("kedro-observability is installed but off for this project: %s.", ENABLE_HINT)
            return
        self._settings = load_settings(loader)
        self._default_env = str(getattr(loader, "default_run_env", None) or "local")
        if self._settings.mlflow.enabled:
            from kedro_observability.identity import project_label
            from kedro_observability.tracking.run import prepare_tracking

            # First: the MLflow helper imports MLflow and opens the store on the other core
            # while Kedro builds the catalog and the suites are parsed.
            prepare_tracking(self._settings.mlflow, Path(context.project_path), project_label())
        self._suites = None
        if self._settings.validation.enabled:
            from kedro_observability.validation.suites import read_suites

            self._suites = read_suites(loader)

    @hook_impl
    def after_catalog_created(self, catalog: CatalogProtocol) -> None:
        if self._loader is None:
            return  # not this object's context (a second registration)
        from kedro_observability.validation.catalog import catalog_created

        # Refuses a Great Expectations validator: that could never pass, and starts GX's import.
        catalog_created(catalog, self._loader, self._settings, self._suites)

    # ---- the run -------------------------------------------------------------------------

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> Generator[None, Any, Any]:
        settings = self._settings
        if settings is None:
            return (yield)
        info = RunInfo.from_run_params(run_params, self._default_env)
        context = RunContext(info, settings)
        self._lifecycle.begin(context, lambda started: self._start(started, run_params, pipeline, catalog))
        try:
            return (yield)
        except BaseException as error:
            # Kedro calls no on_pipeline_error for a failure here: this is the run's end.
            self._lifecycle.end(context, Ending.failed(error))
            raise

    @hook_impl(wrapper=True)
    def after_pipeline_run(self) -> Generator[None, Any, Any]:
        try:
            result = yield
        except BaseException as error:
            self._end(Ending.failed(error))
            raise
        self._end(Ending.finished())
        return result

    @hook_impl(wrapper=True)
    def on_pipeline_error(self, error: Exception) -> Generator[None, Any, Any]:
        try:
            return (yield)
        finally:
            self._end(Ending.failed(error))

    def _end(self, ending: Ending) -> None:
        context = self._lifecycle.current
        if context is not None:
            self._lifecycle.end(context, ending)

    def _start(self, context: RunContext, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Everything that may stop the run comes before the MLflow run is opened."""
        settings = context.settings
        if settings.statsd.enabled:
            emitter = emitter_for(settings.statsd.host, settings.statsd.port)
            emitter.connect()
            context.publisher = StatsdPublisher(emitter, context.info)
        problem = parallel_workers_problem(run_params)
        if problem and settings.input_paths:
            # Nodes would silently get data instead of paths: results that differ by runner.
            raise ParallelRunnerStartMethodError(problem)
        if problem and (settings.statsd.enabled or settings.memory.enabled):
            logger.warning("kedro_observability: %s", problem)
        if settings.input_paths:
            check_input_paths(settings.input_paths, pipeline, every_registered_pipeline, catalog)
        hook_suites = self._suites
        validated_by_catalog: set[str] = set()
        if self._loader is not None:
            from kedro_observability.validation.catalog import check_pipeline, suites_left_to_hooks

            declared = check_pipeline(pipeline, catalog)
            validated_by_catalog = set(declared) & pipeline.datasets()
            if problem and any(spec.options.get("suite") for spec in declared.values()):
                raise ParallelRunnerStartMethodError(
                    f"{problem} The Great Expectations validators of {', '.join(sorted(declared))} in catalog.yml "
                    "read their suites through the session, which such workers do not have."
                )
            if hook_suites is not None:
                # A dataset with a validator: in catalog.yml is validated by Kedro's catalog only.
                hook_suites = suites_left_to_hooks(hook_suites, declared)
        if hook_suites is not None and hook_suites.raw:
            from kedro_observability.validation.engine import ValidationRun
            from kedro_observability.validation.suites import check_datasets, parse_suites

            suites = parse_suites(hook_suites, settings.validation.policy_override)
            check_datasets(suites, pipeline, every_registered_pipeline, catalog)
            # Built in the main process, so that forked ParallelRunner workers inherit GX
            # already imported (about 3 s each otherwise).
            context.validation = ValidationRun(suites, settings.validation, frozenset(pipeline.all_outputs()), self._validated)
        if settings.mlflow.enabled:
            self._start_tracking(context, run_params, pipeline, catalog)
        if validated_by_catalog:
            from kedro_observability.validation.compiled import wait_for_prefetch

            # GX's background import overlapped the run's start; it is over before the first
            # node, whose imports must not race it (see wait_for_prefetch). A run that
            # validates nothing does not wait for a GX it does not use.
            wait_for_prefetch()

    def _start_tracking(self, context: RunContext, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        from kedro_observability.record import RunRecord
        from kedro_observability.tracking.params import ParameterTooLongError
        from kedro_observability.tracking.run import start_tracking
        from kedro_observability.tracking.server import MlflowTrackingError, describe

        settings = context.settings.mlflow
        record = RunRecord()
        project_path = Path(run_params.get("project_path") or Path.cwd())
        kedro_version = str(run_params.get("kedro_version") or "")
        try:
            context.tracked = start_tracking(context.info, settings, kedro_version, project_path, pipeline, catalog, record)
            context.record = record
            return
        except ParameterTooLongError:
            record.close()
            raise  # mlflow.long_params: fail asked for exactly this
        except MlflowTrackingError as error:
            record.close()
            if settings.on_unavailable == "fail":
                raise
            logger.warning("kedro_observability: %s The run goes on without MLflow tracking (mlflow.on_unavailable: warn).", error)
        except Exception as error:  # noqa: BLE001 - a fault of tracking must not stop the pipeline
            record.close()
            logger.warning(
                "kedro_observability: MLflow tracking could not start and is off for this run (%s).",
                describe(error),
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )

    def adopt_run(self, context: RunContext | None) -> None:
        """Measure nodes and datasets for ``context``, a run begun by another process: for a
        runner whose workers are not forked (kedro_observability.runners.DaskRunner)."""
        self._lifecycle.adopt(context)

    def _active(self) -> RunContext | None:
        context = self._lifecycle.current
        if context is None and self._given is not None and self._settings is not None:
            # A runner driven without a KedroSession: no before_pipeline_run begins a run.
            return self._outside_session()
        return context if context is not None and not context.ended else None

    def _outside_session(self) -> RunContext:
        """The run of a runner driven directly, with the given settings: nodes and datasets
        are measured (default identity); there is no run to count, track or validate."""
        with self._outside_lock:
            context = self._outside
            if context is None or context.owner_pid != os.getpid():
                settings = self._given
                assert settings is not None
                context = RunContext(RunInfo.outside_a_session(), settings)
                if settings.statsd.enabled:
                    context.publisher = StatsdPublisher(emitter_for(settings.statsd.host, settings.statsd.port), context.info)
                self._outside = context
            return context

    # ---- nodes ---------------------------------------------------------------------------

    @hook_impl
    def before_node_run(self, node: Node, catalog: CatalogProtocol) -> dict[str, str] | None:
        context = self._active()
        if context is None:
            return None
        self._node_started(context, node)
        names = context.settings.input_paths.get(node.name)
        if not names:
            return None
        paths = input_paths_for(node.name, names, catalog)
        logger.debug("Node '%s' receives file paths for %s", node.name, ", ".join(paths))
        return paths

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._node_finished(node, succeeded=True)

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        self._node_finished(node, succeeded=False, error=error)

    @never_raise
    def _node_started(self, context: RunContext, node: Node) -> None:
        memory = context.settings.memory
        window = SAMPLER.open(memory.interval_seconds) if memory.enabled else None
        self._timers()["node:" + node.name] = (time.perf_counter(), window, time.time_ns())

    @never_raise
    def _node_finished(self, node: Node, succeeded: bool, error: BaseException | None = None) -> None:
        # Popped first: whatever happens next, a finished node leaves nothing behind.
        started = self._timers().pop("node:" + node.name, None)
        if started is None:
            return
        began, window, began_ns = started
        duration_s = time.perf_counter() - began
        peak = SAMPLER.close(window) if window is not None else None
        context = self._active()
        if context is None:
            return
        if context.publisher is not None:
            context.publisher.node_finished(node.name, succeeded, duration_s * 1000.0, peak)
        if context.tracked is not None:
            context.tracked.node_finished(node.name, duration_s, peak)
            # The trace's node span: the very duration statsd was sent.
            context.tracked.span("node", node.name, None, began_ns, duration_s, error=None if succeeded else f"{type(error).__name__}: {error}")

    # ---- datasets ------------------------------------------------------------------------

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str, node: Node) -> None:
        context = self._active()
        if context is not None:
            # For a catalog validator, which Kedro hands the data alone, right after this hook.
            context.operations.loading(dataset_name, node.name)
        self._dataset_started("load", dataset_name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        context = self._active()
        if context is None:
            return
        context.operations.done("load", dataset_name)
        if is_parameter(dataset_name):
            return
        self._dataset_finished(context, "load", dataset_name, data, node.name)
        # After the measurements, so that a load that fails validation is still measured.
        self._validate(context, dataset_name, data, "load", node)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        context = self._active()
        if context is None or is_parameter(dataset_name):
            return
        # Before the timer: a save that validation refuses is not measured as a save.
        self._validate(context, dataset_name, data, "save", node)
        context.operations.saving(dataset_name, node.name, data)
        self._dataset_started("save", dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        context = self._active()
        if context is None or is_parameter(dataset_name):
            return
        context.operations.done("save", dataset_name, data)
        self._dataset_finished(context, "save", dataset_name, data, node.name)

    @never_raise
    def _dataset_started(self, operation: str, dataset_name: str) -> None:
        context = self._active()
        if context is None or is_parameter(dataset_name):
            return
        memory_before = resident_bytes() if operation == "load" and context.settings.memory.enabled else None
        self._timers()[f"{operation}:{dataset_name}"] = (time.perf_counter(), memory_before, time.time_ns())

    @never_raise
    def _dataset_finished(self, context: RunContext, operation: str, dataset_name: str, data: Any, node_name: str) -> None:
        started = self._timers().pop(f"{operation}:{dataset_name}", None)
        duration_ms = growth = None
        if started is not None:
            began, memory_before, began_ns = started
            duration_ms = (time.perf_counter() - began) * 1000.0
            if memory_before is not None:
                # Memory freed while loading is not "consumed": growth only.
                growth = max(0, resident_bytes() - memory_before)
                if context.settings.memory.log_loads:
                    logger.info("Loading %s consumed %.1f MiB", dataset_name, growth / MIB)
        wanted = context.publisher is not None or context.tracked is not None
        size = context.size_of(dataset_name, data) if wanted else NO_SIZE
        if context.publisher is not None:
            context.publisher.dataset_done(operation, dataset_name, duration_ms, size, growth)
        if context.tracked is not None:
            if operation == "load":
                context.tracked.dataset_loaded(dataset_name, data, size)
            else:
                context.tracked.dataset_saved(dataset_name, data, size)
            if duration_ms is not None:
                context.tracked.span(operation, dataset_name, node_name, began_ns, duration_ms / 1000.0, size=size)

    # ---- validation ----------------------------------------------------------------------

    def _validate(self, context: RunContext, dataset_name: str, data: Any, operation: str, node: Node) -> None:
        validation = context.validation
        if validation is None:
            return
        validation = context.validation = validation.for_this_process()
        validation.check(dataset_name, data, operation, node.name)

    def _validated(self, outcome: ValidationOutcome, result: Any) -> None:
        """Count one validation in statsd and keep its report for the MLflow run."""
        context = self._active()
        if context is None:
            return
        if context.publisher is not None:
            context.publisher.validated(outcome.dataset, outcome.success, len(outcome.failures))
        if context.record is not None:
            from kedro_observability.validation.engine import report_json

            context.record.artifact(f"validation-{outcome.dataset}.json", report_json(outcome, result))

    def _timers(self) -> dict[str, Any]:
        timers = getattr(self._local, "timers", None)
        if timers is None:
            timers = self._local.timers = {}
        return timers


_claimed: tuple[Any, ObservabilityHooks] | None = None


def _claim(context: KedroContext, hooks: ObservabilityHooks) -> bool:
    """One hook object per context: a second registration (the entry point and HOOKS both)
    would count everything twice."""
    global _claimed
    if _claimed is not None and _claimed[0] is context and _claimed[1] is not hooks:
        logger.warning(
            "kedro_observability: the plugin's hooks are registered twice (its entry point and "
            "settings.HOOKS); the second registration is ignored. Remove ObservabilityHooks() "
            "from HOOKS, or add 'kedro-observability' to DISABLE_HOOKS_FOR_PLUGINS."
        )
        return False
    _claimed = (context, hooks)
    return True


hooks = ObservabilityHooks()
"""The object Kedro registers through the ``kedro.hooks`` entry point."""
