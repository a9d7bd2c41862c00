"""The MLflow hook: every ``kedro run`` becomes one MLflow run, whatever the runner.

The run holds what ../shared/CONTRACT.md lists: the ``kedro.*`` tags and the git commit, the
parameters the nodes consume, the evaluation metrics, node durations and dataset sizes, the
model with its signature and input example, the raw files' fingerprints, the input tables
with their digests, the artifacts other hooks recorded, and FINISHED or FAILED.

Why it is built this way:

- The run is created in the main process by ``before_pipeline_run`` with an
  :class:`~mlflow.MlflowClient` and addressed by its id from then on. MLflow's fluent API keeps
  the active run per thread, so ThreadRunner's threads and ParallelRunner's processes would
  each open a run of their own.
- Node and dataset hooks make no network call. Durations and sizes go to the run record
  (:mod:`.run_record`); the data logged at the end (metrics, model, input example,
  fingerprints, digests) is kept by reference, or pickled to a folder when a forked
  ParallelRunner worker saw it. Everything is sent when the pipeline ends, in batches.
- Before the first node, an HTTP server must answer within ``request_timeout_seconds``, and
  MLflow's HTTP retries (about 4 minutes by default) are bounded for the run: a server that
  dies mid-run costs seconds, the pipeline's outputs are written anyway, and one warning
  lists what could not be logged.

Talking to the server is in :mod:`.tracking_server`, what is logged at the end in
:mod:`.tracking_content`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from kedro_observability.base import ObservingHook, is_parameter
from kedro_observability.guard import never_raise
from kedro_observability.names import sanitize_name
from kedro_observability.run_record import RunRecord, close_record, collect_record, open_record, record_metric
from kedro_observability.runtime import RunInfo
from kedro_observability.settings import MlflowSettings
from kedro_observability.sizes import measure
from kedro_observability.tracking_content import evaluation_metrics, fingerprint_tags, head, input_sources, log_artifacts, log_inputs, log_model, table_sample
from kedro_observability.tracking_params import ParameterTooLongError, consumed_params, loggable_params, mlflow_key
from kedro_observability.tracking_server import MlflowTrackingError, bound_http_requests, check_reachable, default_tracking_uri, describe, log_entities, open_run

__all__ = ["MlflowTrackingError", "MlflowTrackingHook"]

logger = logging.getLogger(__name__)

ERROR_TAG_LENGTH = 5000


@dataclass
class _TrackedRun:
    """One tracked ``kedro run``; forked ParallelRunner workers hold a copy."""

    client: Any
    uri: str
    run_id: str
    experiment_id: str
    settings: MlflowSettings
    roles: dict[str, str]
    """Dataset name -> what it holds for MLflow: metrics, model, example or fingerprints."""
    sources: dict[str, Any]
    """Input dataset name -> its MLflow DatasetSource."""
    produced: frozenset[str]
    catalog: Any
    http_variables: list[str]
    """MLflow's environment variables this hook set for the run, to remove at its end."""
    main_pid: int = field(default_factory=os.getpid)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kedro-observability-mlflow-")))
    kept: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first_sight(self, dataset_name: str) -> bool:
        """True the first time this process sees the dataset: size and digest are taken once."""
        with self.lock:
            if dataset_name in self.seen:
                return False
            self.seen.add(dataset_name)
            return True

    def keep(self, key: str, value: Any) -> None:
        """Keep data for the end of the run: by reference here, pickled in a forked worker."""
        if os.getpid() == self.main_pid:
            self.kept[key] = value
            return
        target = self.folder / (hashlib.sha1(key.encode()).hexdigest() + ".pkl")
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL))
        temporary.replace(target)

    def everything_kept(self) -> dict[str, Any]:
        values = {}
        for path in sorted(self.folder.glob("*.pkl")):
            key, value = pickle.loads(path.read_bytes())
            values[key] = value
        values.update(self.kept)
        return values


class MlflowTrackingHook(ObservingHook):
    """One MLflow run per ``kedro run``: tags, params, metrics, model, lineage and status."""

    def __init__(self) -> None:
        super().__init__()
        self._default_env = "local"
        self._tracked: _TrackedRun | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        super().after_context_created(context)
        self._default_env = str(getattr(context.config_loader, "default_run_env", None) or "local")

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        run = self._start_run(run_params)
        settings = run.settings.mlflow
        if not settings.enabled:
            return
        try:
            self._tracked = _start(run, settings, run_params, pipeline, catalog, self._default_env)
        except ParameterTooLongError:
            raise  # mlflow.long_params: fail asked for exactly this
        except MlflowTrackingError as error:
            if settings.on_unavailable == "fail":
                raise
            logger.warning("kedro_observability: %s The run goes on without MLflow tracking (mlflow.on_unavailable: warn).", error)
        except Exception as error:  # noqa: BLE001 - a fault of this hook must not stop the pipeline
            logger.warning("kedro_observability: MLflow tracking could not start and is off for this run (%s).", describe(error), exc_info=logger.isEnabledFor(logging.DEBUG))

    @hook_impl
    @never_raise
    def before_node_run(self, node: Node) -> None:
        if self._tracked is not None:
            self._timers()[node.name] = time.perf_counter()

    @hook_impl
    @never_raise
    def after_node_run(self, node: Node) -> None:
        self._node_finished(node)

    @hook_impl
    @never_raise
    def on_node_error(self, node: Node) -> None:
        self._node_finished(node)

    @hook_impl
    @never_raise
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        tracked = self._tracked
        if tracked is None or is_parameter(dataset_name) or not tracked.first_sight(dataset_name):
            return
        _record_size(dataset_name, data)
        if dataset_name in tracked.sources:
            sample = table_sample(data)
            if sample is not None:
                tracked.keep(f"input:{dataset_name}", sample)

    @hook_impl
    @never_raise
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        tracked = self._tracked
        if tracked is None or is_parameter(dataset_name):
            return
        if tracked.first_sight(dataset_name):
            _record_size(dataset_name, data)
        role = tracked.roles.get(dataset_name)
        if role is not None:
            tracked.keep(f"data:{dataset_name}", head(data, tracked.settings.input_example_rows) if role == "example" else data)

    @hook_impl
    @never_raise
    def after_pipeline_run(self) -> None:
        self._finish("FINISHED")

    @hook_impl
    @never_raise
    def on_pipeline_error(self, error: Exception) -> None:
        self._finish("FAILED", f"{type(error).__name__}: {error}")

    def _node_finished(self, node: Node) -> None:
        started = self._timers().pop(node.name, None)
        if started is not None and self._tracked is not None:
            record_metric(_metric_key("node_duration_seconds", node.name), time.perf_counter() - started)

    def _finish(self, status: str, error: str | None = None) -> None:
        tracked, self._tracked = self._tracked, None
        self._scope.end()
        if tracked is None:
            return
        try:
            not_logged = _upload(tracked, status, error)
        finally:
            close_record()
            shutil.rmtree(tracked.folder, ignore_errors=True)
            for variable in tracked.http_variables:
                os.environ.pop(variable, None)
        if not_logged:
            logger.warning(
                "kedro_observability: MLflow run %s at %s is incomplete. Not logged: %s.",
                tracked.run_id,
                tracked.uri,
                "; ".join(not_logged),
            )
        else:
            logger.info("kedro_observability: MLflow run %s logged at %s (%s).", tracked.run_id, tracked.uri, status)


def _start(run: RunInfo, settings: MlflowSettings, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any, default_env: str) -> _TrackedRun:
    project_path = Path(run_params.get("project_path") or Path.cwd())
    uri = settings.tracking_uri or default_tracking_uri(project_path)
    # All that can fail locally comes first, so that a refused parameter leaves no run behind.
    params = loggable_params(consumed_params(pipeline, catalog), settings.long_params)
    roles = {
        name: role
        for role, name in [
            ("metrics", settings.metrics_dataset),
            ("model", settings.model_dataset),
            ("example", settings.model_input_example_dataset),
            ("fingerprints", settings.fingerprints_dataset),
        ]
        if name
    }
    sources = input_sources(pipeline, catalog, project_path) if settings.log_input_datasets else {}
    http_variables = bound_http_requests(settings)
    try:
        client, experiment_id, run_id = open_run(uri, settings, run, run_params, project_path, params, default_env)
    except BaseException:
        for variable in http_variables:
            os.environ.pop(variable, None)
        raise
    open_record()
    return _TrackedRun(client, uri, run_id, experiment_id, settings, roles, sources, frozenset(pipeline.all_outputs()), catalog, http_variables)


@lru_cache(maxsize=4096)
def _metric_key(measure_name: str, name: str) -> str:
    # Named like the memory hook's ``memory_peak_bytes.<node>``.
    return mlflow_key(f"{measure_name}.{sanitize_name(name)}")


def _record_size(dataset_name: str, data: Any) -> None:
    size = measure(data)
    if size.bytes is not None:
        record_metric(_metric_key("dataset_size_bytes", dataset_name), size.bytes)
    if size.rows is not None:
        record_metric(_metric_key("dataset_rows", dataset_name), size.rows)


def _upload(tracked: _TrackedRun, status: str, error: str | None) -> list[str]:
    """Send everything the run gathered, then its status; return what could not be logged."""
    from mlflow.entities import Metric

    not_logged: list[str] = []
    try:
        values = _gathered_values(tracked, status)
        record = collect_record()
    except Exception as failure:  # noqa: BLE001 - the status must still be set
        not_logged.append(f"what the nodes recorded ({describe(failure)})")
        values, record = {}, RunRecord()
    now = int(time.time() * 1000)
    numbers = dict(record.metrics)
    numbers.update(evaluation_metrics(values.get("metrics")))
    metrics = [Metric(mlflow_key(key), value, now, 0) for key, value in numbers.items()]
    tags = fingerprint_tags(values.get("fingerprints"))
    if error is not None:
        tags["kedro.error"] = error[:ERROR_TAG_LENGTH]
    inputs = {key[len("input:") :]: value for key, value in values.items() if key.startswith("input:")}

    steps: list[tuple[str, Callable[[], None]]] = [(f"{len(metrics)} metrics and {len(tags)} tags", lambda: log_entities(tracked.client, tracked.run_id, metrics, tags=tags))]
    if inputs:
        steps.append((f"{len(inputs)} dataset inputs", lambda: log_inputs(tracked.client, tracked.run_id, inputs, tracked.sources)))
    if status == "FINISHED" and values.get("model") is not None:
        steps.append(("the model", lambda: log_model(tracked.client, tracked.uri, tracked.experiment_id, tracked.run_id, tracked.settings, values["model"], values.get("example"))))
    if record.artifacts:
        steps.append((f"{len(record.artifacts)} artifacts", lambda: log_artifacts(tracked.client, tracked.run_id, record.artifacts)))
    steps.append((f"the run's status {status} (it stays RUNNING)", lambda: tracked.client.set_terminated(tracked.run_id, status)))

    reachable = True
    for description, step in steps:
        if not reachable:
            not_logged.append(description)
            continue
        try:
            step()
        except Exception as failure:  # noqa: BLE001 - report and go on with the next step
            not_logged.append(f"{description} ({describe(failure)})")
            try:
                check_reachable(tracked.uri, tracked.settings.request_timeout_seconds)
            except MlflowTrackingError:
                reachable = False  # each further call would only wait for its own retries
    return not_logged


def _gathered_values(tracked: _TrackedRun, status: str) -> dict[str, Any]:
    """The configured datasets' data by role, plus the inputs' dataset fields."""
    kept = tracked.everything_kept()
    values = {key: value for key, value in kept.items() if key.startswith("input:")}
    for name, role in tracked.roles.items():
        if f"data:{name}" in kept:
            values[role] = kept[f"data:{name}"]
        elif status == "FINISHED" and name in tracked.produced:
            # Saved in a worker that ran no hook (ParallelRunner without fork): read it back.
            try:
                data = tracked.catalog.load(name)
            except Exception as error:  # noqa: BLE001 - a MemoryDataset released by the runner
                logger.warning("kedro_observability: could not read '%s' (mlflow %s dataset) for MLflow: %s", name, role, error)
                continue
            values[role] = head(data, tracked.settings.input_example_rows) if role == "example" else data
    return values
