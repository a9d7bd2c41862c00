"""One MLflow run per ``kedro run``: opened before the first node, filled and closed at the end.

The run holds what ``CONTRACT.md`` lists: the ``kedro.*`` tags and the git commit, the
parameters the nodes consume, the evaluation metrics, node durations and dataset sizes, the
model with its signature and input example, the raw files' fingerprints, the input tables
with their digests, the artifacts recorded during the run, and FINISHED, FAILED or KILLED.

Why it is built this way:

- The run is created in the main process with an :class:`~mlflow.MlflowClient` and addressed
  by its id from then on. MLflow's fluent API keeps the active run per thread, so
  ThreadRunner's threads and ParallelRunner's processes would each open a run of their own.
- Node and dataset events make no network call. Durations and sizes go to the run record
  (:mod:`kedro_observability.record`); the data logged at the end (metrics, model, input
  example, fingerprints, digests) is kept by reference, or pickled to the record's folder
  when a forked ParallelRunner worker saw it. Everything is sent when the run ends, in batches.
- Before the first node, an HTTP server must answer within ``request_timeout_seconds``, and
  MLflow's HTTP retries (about 4 minutes by default) are bounded for the run: a server that
  dies mid-run costs seconds, the pipeline's outputs are written anyway, and one warning
  lists what could not be logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_observability.names import sanitize_name
from kedro_observability.record import Recorded
from kedro_observability.tracking.content import evaluation_metrics, fingerprint_tags, head, input_sources, log_artifacts, log_inputs, log_model, table_sample
from kedro_observability.tracking.params import consumed_params, loggable_params, mlflow_key
from kedro_observability.tracking.server import MlflowTrackingError, bound_http_requests, check_reachable, default_tracking_uri, describe, log_entities, open_run

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

    from kedro_observability.identity import RunInfo
    from kedro_observability.record import RunRecord
    from kedro_observability.settings import MlflowSettings
    from kedro_observability.sizes import DataSize

__all__ = ["MlflowTrackingError", "TrackedRun", "start_tracking"]

logger = logging.getLogger(__name__)

ERROR_TAG_LENGTH = 5000
STOPPED_BY_TAG = "kedro.stopped_by"


@dataclass
class TrackedRun:
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
    catalog: CatalogProtocol
    record: RunRecord
    http_variables: list[str]
    """MLflow's environment variables set for the run, to remove at its end."""
    main_pid: int = field(default_factory=os.getpid)
    kept: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def node_finished(self, node_name: str, duration_s: float | None, memory_peak: int | None) -> None:
        if duration_s is not None:
            self.record.metric(_metric_key("node_duration_seconds", node_name), duration_s)
        if memory_peak is not None:
            self.record.metric(_metric_key("memory_peak_bytes", node_name), memory_peak)

    def dataset_loaded(self, dataset_name: str, data: Any, size: DataSize) -> None:
        if not self._first_sight(dataset_name):
            return
        self._record_size(dataset_name, size)
        if dataset_name in self.sources:
            sample = table_sample(data)
            if sample is not None:
                self._keep(f"input:{dataset_name}", sample)

    def dataset_saved(self, dataset_name: str, data: Any, size: DataSize) -> None:
        if self._first_sight(dataset_name):
            self._record_size(dataset_name, size)
        role = self.roles.get(dataset_name)
        if role is not None:
            self._keep(f"data:{dataset_name}", head(data, self.settings.input_example_rows) if role == "example" else data)

    def _record_size(self, dataset_name: str, size: DataSize) -> None:
        if size.bytes is not None:
            self.record.metric(_metric_key("dataset_size_bytes", dataset_name), size.bytes)
        if size.rows is not None:
            self.record.metric(_metric_key("dataset_rows", dataset_name), size.rows)

    def _first_sight(self, dataset_name: str) -> bool:
        """True the first time this process sees the dataset: size and digest are taken once."""
        with self.lock:
            if dataset_name in self.seen:
                return False
            self.seen.add(dataset_name)
            return True

    def _keep(self, key: str, value: Any) -> None:
        """Keep data for the end of the run: by reference here, pickled in a forked worker."""
        if os.getpid() == self.main_pid:
            self.kept[key] = value
            return
        target = self.record.kept_folder / (hashlib.sha1(key.encode()).hexdigest() + ".pkl")
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL))
        temporary.replace(target)

    def _everything_kept(self) -> dict[str, Any]:
        values = {}
        for path in sorted(self.record.kept_folder.glob("*.pkl")):
            key, value = pickle.loads(path.read_bytes())
            values[key] = value
        values.update(self.kept)
        return values

    def finish(self, status: str, error: str | None = None, stopped_by: str | None = None) -> None:
        """Upload what the run gathered and set its status (FINISHED, FAILED or KILLED)."""
        try:
            not_logged = self._upload(status, error, stopped_by)
        finally:
            for variable in self.http_variables:
                os.environ.pop(variable, None)
        if not_logged:
            logger.warning(
                "kedro_observability: MLflow run %s at %s is incomplete. Not logged: %s.",
                self.run_id,
                self.uri,
                "; ".join(not_logged),
            )
        else:
            logger.info("kedro_observability: MLflow run %s logged at %s (%s).", self.run_id, self.uri, status)

    def _upload(self, status: str, error: str | None, stopped_by: str | None) -> list[str]:
        """Send everything the run gathered, then its status; return what could not be logged."""
        from mlflow.entities import Metric

        not_logged: list[str] = []
        try:
            values = self._gathered_values(status)
            recorded = self.record.collect()
        except Exception as failure:  # noqa: BLE001 - the status must still be set
            not_logged.append(f"what the nodes recorded ({describe(failure)})")
            values, recorded = {}, Recorded()
        now = int(time.time() * 1000)
        numbers = dict(recorded.metrics)
        numbers.update(evaluation_metrics(values.get("metrics")))
        metrics = [Metric(mlflow_key(key), value, now, 0) for key, value in numbers.items()]
        tags = fingerprint_tags(values.get("fingerprints"))
        if error is not None:
            tags["kedro.error"] = error[:ERROR_TAG_LENGTH]
        if stopped_by is not None:
            tags[STOPPED_BY_TAG] = stopped_by
        inputs = {key[len("input:") :]: value for key, value in values.items() if key.startswith("input:")}

        steps: list[tuple[str, Callable[[], None]]] = [(f"{len(metrics)} metrics and {len(tags)} tags", lambda: log_entities(self.client, self.run_id, metrics, tags=tags))]
        if inputs:
            steps.append((f"{len(inputs)} dataset inputs", lambda: log_inputs(self.client, self.run_id, inputs, self.sources)))
        if status == "FINISHED" and values.get("model") is not None:
            steps.append(("the model", lambda: log_model(self.client, self.uri, self.experiment_id, self.run_id, self.settings, values["model"], values.get("example"))))
        if recorded.artifacts:
            steps.append((f"{len(recorded.artifacts)} artifacts", lambda: log_artifacts(self.client, self.run_id, recorded.artifacts)))
        steps.append((f"the run's status {status} (it stays RUNNING)", lambda: self.client.set_terminated(self.run_id, status)))

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
                    check_reachable(self.uri, self.settings.request_timeout_seconds)
                except MlflowTrackingError:
                    reachable = False  # each further call would only wait for its own retries
        return not_logged

    def _gathered_values(self, status: str) -> dict[str, Any]:
        """The configured datasets' data by role, plus the inputs' dataset fields."""
        kept = self._everything_kept()
        values = {key: value for key, value in kept.items() if key.startswith("input:")}
        for name, role in self.roles.items():
            if f"data:{name}" in kept:
                values[role] = kept[f"data:{name}"]
            elif status == "FINISHED" and name in self.produced:
                # Saved in a worker that ran no hook (ParallelRunner without fork): read it back.
                try:
                    data = self.catalog.load(name)
                except Exception as error:  # noqa: BLE001 - a MemoryDataset released by the runner
                    logger.warning("kedro_observability: could not read '%s' (mlflow %s dataset) for MLflow: %s", name, role, error)
                    continue
                values[role] = head(data, self.settings.input_example_rows) if role == "example" else data
        return values


def start_tracking(
    run: RunInfo,
    settings: MlflowSettings,
    kedro_version: str,
    project_path: Path,
    pipeline: Pipeline,
    catalog: CatalogProtocol,
    record: RunRecord,
) -> TrackedRun:
    """Open the MLflow run of ``run``; raise :class:`MlflowTrackingError` if it cannot be tracked."""
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
        client, experiment_id, run_id = open_run(uri, settings, run, kedro_version, project_path, params)
    except BaseException:
        for variable in http_variables:
            os.environ.pop(variable, None)
        raise
    return TrackedRun(client, uri, run_id, experiment_id, settings, roles, sources, frozenset(pipeline.all_outputs()), catalog, record, http_variables)


@lru_cache(maxsize=4096)
def _metric_key(measure_name: str, name: str) -> str:
    return mlflow_key(f"{measure_name}.{sanitize_name(name)}")
