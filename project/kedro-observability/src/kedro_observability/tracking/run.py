"""One MLflow run per ``kedro run``: opened before the first node, filled and closed at the end.

The run holds what ``CONTRACT.md`` lists: the ``kedro.*`` tags and the git commit, the
parameters the nodes consume, the evaluation metrics, node durations and dataset sizes, the
model with its signature and input example, the raw files' fingerprints, the input tables
with their digests, the artifacts recorded during the run, and FINISHED, FAILED or KILLED.

Why it is built this way:

- MLflow itself runs in a helper process (:mod:`.worker`, :mod:`.remote`), so that its
  import, its store and the model's logging cost the run's own process nothing but a
  socket. The run is created there with an :class:`~mlflow.MlflowClient` and addressed by
  its id from then on: MLflow's fluent API keeps the active run per thread, so ThreadRunner's
  threads and ParallelRunner's processes would each open a run of their own.
- Node and dataset events make no network call. Durations and sizes go to the run record
  (:mod:`kedro_observability.record`); the data logged at the end (metrics, model, input
  example, fingerprints, table heads) is handed to the helper as it is saved or loaded, or
  pickled to the record's folder when a forked ParallelRunner worker saw it. The model is
  logged as soon as it and its input example are saved, while later nodes run; the rest is
  sent when the run ends, in batches, and the run's end waits for all of it.
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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_observability.names import sanitize_name
from kedro_observability.record import Recorded
from kedro_observability.tracking.content import dataset_roles, head, input_paths, table_head
from kedro_observability.tracking.params import consumed_params, loggable_params, mlflow_key
from kedro_observability.tracking.server import MlflowTrackingError, bound_http_requests, check_reachable, default_tracking_uri, describe
from kedro_observability.tracking.spool import REPLAY_HINT
from kedro_observability.tracking.worker import FinishRequest, OpenRequest, TrackingWorker, WorkerGoneError

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

    from kedro_observability.identity import RunInfo
    from kedro_observability.record import RunRecord
    from kedro_observability.settings import MlflowSettings
    from kedro_observability.sizes import DataSize

__all__ = ["MlflowTrackingError", "TrackedRun", "start_tracking"]

logger = logging.getLogger(__name__)


@dataclass
class TrackedRun:
    """One tracked ``kedro run``; forked ParallelRunner workers hold a copy."""

    worker: TrackingWorker
    """The MLflow helper process that holds the run (:mod:`.worker`)."""
    uri: str
    run_id: str | None
    """None while the server has not answered (``on_unavailable: warn``)."""
    experiment_id: str | None
    settings: MlflowSettings
    roles: dict[str, str]
    """Dataset name -> what it holds for MLflow: metrics, model, example or fingerprints."""
    source_names: frozenset[str]
    """Inputs with a file path: their tables are logged as MLflow dataset inputs."""
    produced: frozenset[str]
    catalog: CatalogProtocol
    record: RunRecord
    http_variables: list[str]
    """MLflow's environment variables set for the run, to remove at its end."""
    main_pid: int = field(default_factory=os.getpid)
    started_ns: int = field(default_factory=time.time_ns)
    """When the run was opened: the start of its trace."""
    sent: set[str] = field(default_factory=set)
    unsent: dict[str, str] = field(default_factory=dict)
    """Keys the helper could not be sent (unpicklable data), with the reason."""
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def node_finished(self, node_name: str, duration_s: float | None, memory_peak: int | None) -> None:
        if duration_s is not None:
            self.record.metric(_metric_key("node_duration_seconds", node_name), duration_s)
        if memory_peak is not None:
            self.record.metric(_metric_key("memory_peak_bytes", node_name), memory_peak)

    def span(self, kind: str, name: str, node: str | None, start_ns: int, duration_s: float, error: str | None = None, size: DataSize | None = None) -> None:
        """Keep a measured node, load or save for the run's trace (mlflow.log_trace)."""
        if not self.settings.log_trace:
            return
        rows = size.rows if size is not None else None
        size_bytes = size.bytes if size is not None else None
        self.record.span(
            kind=kind, name=name, node=node, start_ns=start_ns, duration_ns=round(duration_s * 1e9),
            status="ERROR" if error else "OK", error=error, rows=rows, bytes=size_bytes,
        )  # fmt: skip

    def dataset_loaded(self, dataset_name: str, data: Any, size: DataSize) -> None:
        if not self._first_sight(dataset_name):
            return
        self._record_size(dataset_name, size)
        if dataset_name in self.source_names:
            table = table_head(data)
            if table is not None:
                self.keep(f"input:{dataset_name}", table)

    def dataset_saved(self, dataset_name: str, data: Any, size: DataSize) -> None:
        if self._first_sight(dataset_name):
            self._record_size(dataset_name, size)
        role = self.roles.get(dataset_name)
        if role is not None:
            self.keep(f"data:{dataset_name}", head(data, self.settings.input_example_rows) if role == "example" else data)

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

    def keep(self, key: str, value: Any) -> None:
        """Data for the end of the run: sent to the helper now (which logs the model at once),
        or pickled to the record's folder in a forked worker."""
        if os.getpid() == self.main_pid:
            try:
                self.worker.send(("keep", key, value))
            except WorkerGoneError:
                return  # reported when the run ends
            except Exception as error:  # noqa: BLE001 - data pickle refuses: reported at the end
                self.unsent[key] = describe(error)
                return
            self.sent.add(key)
            return
        target = self.record.kept_folder / (hashlib.sha1(key.encode()).hexdigest() + ".pkl")
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        # The value pickled apart from its key: only the helper unpickles it, and a value it
        # cannot read (a class it cannot import) is named instead of losing the rest.
        temporary.write_bytes(pickle.dumps((key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)), protocol=pickle.HIGHEST_PROTOCOL))
        temporary.replace(target)

    def _from_workers(self) -> dict[str, bytes]:
        """What forked ParallelRunner workers left in the record's folder, still pickled."""
        values = {}
        for path in sorted(self.record.kept_folder.glob("*.pkl")):
            key, pickled = pickle.loads(path.read_bytes())
            values[key] = pickled
        return values

    def finish(self, status: str, error: str | None = None, stopped_by: str | None = None) -> None:
        """Have the helper upload what the run gathered and set its status (FINISHED, FAILED
        or KILLED); wait for it, model logging included."""
        not_logged: list[str] = []
        spooled: str | None = None
        try:
            try:
                values = self._gathered_values(status)
                recorded = self.record.collect()
            except Exception as failure:  # noqa: BLE001 - the status must still be set
                not_logged.append(f"what the nodes recorded ({describe(failure)})")
                values, recorded = {}, Recorded()
            for key, reason in self.unsent.items():
                name = key.partition(":")[2]
                not_logged.append(f"the {self.roles.get(name, 'input')} '{name}' ({reason})")
            try:
                self.worker.send(("finish", FinishRequest(status, error, stopped_by, values, recorded, not_logged, self.started_ns, time.time_ns())))
                not_logged, spooled, self.run_id = self.worker.receive("finished")
            except WorkerGoneError as gone:
                not_logged.append(f"everything the run gathered and its status {status} ({describe(gone)})")
        finally:
            for variable in self.http_variables:
                os.environ.pop(variable, None)
        name = f"MLflow run {self.run_id}" if self.run_id else "The MLflow run of this kedro run"
        if spooled:
            logger.warning(
                "kedro_observability: %s at %s is incomplete. Not logged: %s. Kept for a replay in %s: %s (as FINISHED, FAILED or KILLED, with its real end time).",
                name, self.uri, "; ".join(not_logged), spooled, REPLAY_HINT,
            )  # fmt: skip
        elif not_logged:
            logger.warning("kedro_observability: %s at %s is incomplete. Not logged: %s.", name, self.uri, "; ".join(not_logged))
        else:
            logger.info("kedro_observability: MLflow run %s logged at %s (%s).", self.run_id, self.uri, status)

    def _gathered_values(self, status: str) -> dict[str, bytes]:
        """What the helper has not been sent, pickled: data from forked workers, and the
        configured datasets that no hook of this process saw, read back from the catalog."""
        values = {key: value for key, value in self._from_workers().items() if key not in self.sent}
        for name, role in self.roles.items():
            key = f"data:{name}"
            if key in self.sent or key in values or key in self.unsent:
                continue
            if status == "FINISHED" and name in self.produced:
                # Saved in a worker that ran no hook (ParallelRunner without fork): read it back.
                try:
                    data = self.catalog.load(name)
                except Exception as error:  # noqa: BLE001 - a MemoryDataset released by the runner
                    logger.warning("kedro_observability: could not read '%s' (mlflow %s dataset) for MLflow: %s", name, role, error)
                    continue
                value = head(data, self.settings.input_example_rows) if role == "example" else data
                try:
                    values[key] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as error:  # noqa: BLE001 - named at the run's end, the rest is sent
                    self.unsent[key] = describe(error)
        return values


def prepare_tracking(settings: MlflowSettings, project_path: Path, experiment_name: str) -> None:
    """Start the MLflow helper so that it imports MLflow and opens the store while Kedro
    builds the run; never raises (opening the run reports any problem)."""
    try:
        uri = settings.tracking_uri or default_tracking_uri(project_path)
        TrackingWorker.for_this_process(settings.warm_helper_seconds, project_path).send(("prepare", uri, settings.experiment_name or experiment_name))
    except Exception as error:  # noqa: BLE001 - a head start only
        logger.debug("Could not start the MLflow helper early: %s", describe(error))


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
    roles = {name: role for role, name in dataset_roles(settings).items()}
    paths = input_paths(pipeline, catalog, project_path) if settings.log_input_datasets else {}
    offline = False
    try:
        check_reachable(uri, settings.request_timeout_seconds)
    except MlflowTrackingError as error:
        if settings.on_unavailable != "warn":
            raise
        logger.warning(
            "kedro_observability: %s The run goes on (mlflow.on_unavailable: warn): what it logs is sent at its end "
            "if the server answers by then, and kept in %s otherwise, for `kedro observability replay`.",
            error, settings.spool_folder,
        )  # fmt: skip
        offline = True
    http_variables = bound_http_requests(settings)
    try:
        worker = TrackingWorker.for_this_process(settings.warm_helper_seconds, project_path)
        environment = {name: value for name, value in os.environ.items() if name.startswith(("MLFLOW_", "OTEL_"))}
        worker.send(("open", OpenRequest(uri, settings, run, kedro_version, project_path, params, paths, environment, offline)))
        error, run_id, experiment_id = worker.receive("opened")
        if error is not None:
            raise error
    except BaseException:
        for variable in http_variables:
            os.environ.pop(variable, None)
        raise
    return TrackedRun(worker, uri, run_id, experiment_id, settings, roles, frozenset(paths), frozenset(pipeline.all_outputs()), catalog, record, http_variables)


@lru_cache(maxsize=4096)
def _metric_key(measure_name: str, name: str) -> str:
    return mlflow_key(f"{measure_name}.{sanitize_name(name)}")
