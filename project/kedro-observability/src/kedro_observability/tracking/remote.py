"""The MLflow run as the helper process (:mod:`.worker`) holds it: opened, filled, ended.

Everything here runs in the helper, never in the Kedro process: MLflow is imported here.
What it logs, and in which order at the end, is what the run's process logged before the
helper existed; only the model is logged earlier, as soon as it and its input example are
saved, and a failure of that is reported at the end, where it used to happen. What the
server could not be sent is spooled in the project (:mod:`.spool`) for a replay.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kedro_observability.tracking.content import TableHead, dataset_roles, evaluation_metrics, fingerprint_tags, input_sources, log_model, table_sample_from_head
from kedro_observability.tracking.delivery import Delivery, Opening, Trace, now_ms, send
from kedro_observability.tracking.local_store import store_lock
from kedro_observability.tracking.params import mlflow_key
from kedro_observability.tracking.server import MlflowTrackingError, answers, check_reachable, describe, open_run, run_name, run_tags
from kedro_observability.tracking.spool import spool, spool_folder
from kedro_observability.tracking.trace import span_records
from kedro_observability.tracking.worker import FinishRequest, OpenRequest

logger = logging.getLogger(__name__)

ERROR_TAG_LENGTH = 5000
STOPPED_BY_TAG = "kedro.stopped_by"


def prepare(uri: str, experiment_name: str) -> None:
    """Import MLflow and open the store before the run asks for its opening."""
    try:
        from mlflow import MlflowClient

        if not _local_store(uri):
            # A server costs one round trip, and one that is down would keep this helper in
            # MLflow's unbounded retries (the run's bounds are not set yet).
            return
        # Opening a new local store creates and migrates it: one process at a time.
        with store_lock(uri):
            MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment_name)
    except Exception as error:  # noqa: BLE001 - opening the run reports the same problem, in its words
        logger.debug("Preparing MLflow at %s failed: %s", uri, describe(error))


def prepare_end_of_run(settings: Any) -> None:
    """Import what the end of the run uses (the model's logging, the trace, the timeline's
    drawing: about 1.5 s), once the run is open and while the nodes run, not after them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mlflow.data  # noqa: F401
            import mlflow.models  # noqa: F401
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401 - what mlflow.sklearn serialises with, when installed
        except ImportError:
            pass
        if getattr(settings, "log_trace", False):
            try:
                import matplotlib

                matplotlib.use("Agg", force=True)
                import matplotlib.backends.backend_agg  # noqa: F401
                import matplotlib.figure  # noqa: F401
                import matplotlib.patches  # noqa: F401
                import mlflow.tracing  # noqa: F401
            except ImportError:
                pass


def replay_spool(request: OpenRequest) -> None:
    """``mlflow.replay_at_start``: send the spool while this run's nodes run; never raises."""
    from kedro_observability.tracking.spool import replay

    try:
        for outcome in replay(spool_folder(request.project_path, request.settings)):
            level = logging.INFO if outcome.completed else logging.WARNING
            logger.log(level, "kedro_observability: spooled run %s (MLflow run %s at %s): %s.", outcome.entry.name, outcome.run_id or "new", outcome.uri, outcome.message)
    except Exception as error:  # noqa: BLE001 - a replay must not touch the run under way
        logger.warning("kedro_observability: replaying the spool failed (%s); `kedro observability replay` tries again.", describe(error))


@dataclass
class _EarlyModel:
    """The outcome of logging the model while the pipeline ran."""

    error: Exception | None = None


@dataclass
class HelperRun:
    """One MLflow run and what the Kedro run has sent it so far.

    An offline run (the server did not answer before the first node, under
    ``mlflow.on_unavailable: warn``) has no client and no id: at its end it is created and
    sent if the server answers by then, and spooled otherwise."""

    client: Any
    request: OpenRequest
    run_id: str | None
    experiment_id: str | None
    sources: dict[str, Any]
    kept: dict[str, Any] = field(default_factory=dict)
    model: _EarlyModel | None = None
    opening: Opening | None = None
    not_kept: list[str] = field(default_factory=list)
    """What the run sent that the helper could not read or keep, for the end-of-run warning."""
    unsent_params: tuple[dict[str, str], dict[str, str]] | None = None
    """Parameters and parameter tags the server did not get when it created the run."""
    started_ms: int = field(default_factory=now_ms)

    @classmethod
    def open(cls, request: OpenRequest) -> HelperRun:
        """Create the run with its tags and params; raise what the run's process raises."""
        _sync_environment(request.http_environment)
        sources = input_sources(request.source_paths) if request.source_paths else {}
        if request.offline:
            return cls._offline(request, sources)
        try:
            opened = open_run(request.uri, request.settings, request.run, request.kedro_version, request.project_path, request.params)
        except MlflowTrackingError as error:
            if request.settings.on_unavailable != "warn" or answers(request.uri, request.settings.request_timeout_seconds):
                raise
            # It answered the run's probe, then went away before it created the run.
            logger.warning("kedro_observability: %s The run goes on (mlflow.on_unavailable: warn): it is sent at its end if the server answers by then, and spooled otherwise.", error)
            return cls._offline(request, sources)
        helper_run = cls(opened.client, request, opened.run_id, opened.experiment_id, sources)
        if opened.params_lost is not None:
            logger.warning(
                "kedro_observability: MLflow at %s stopped answering as it created run %s (%s). The run goes on: its "
                "parameters are sent with the rest of it at its end, or kept for `kedro observability replay`.",
                request.uri, opened.run_id, opened.params_lost,
            )  # fmt: skip
            helper_run.unsent_params = (dict(request.params.params), dict(request.params.tags))
        return helper_run

    @classmethod
    def _offline(cls, request: OpenRequest, sources: dict[str, Any]) -> HelperRun:
        run = request.run
        opening = Opening(
            experiment_name=request.settings.experiment_name or run.project,
            run_name=run_name(run),
            tags=run_tags(run, request.kedro_version, request.project_path),
            params=dict(request.params.params),
            param_tags=dict(request.params.tags),
            start_time_ms=now_ms(),
        )
        return cls(None, request, None, None, sources, opening=opening)

    def keep(self, key: str, value: Any) -> None:
        """Data for the run, sent as it was saved or loaded; the model is logged at once."""
        if isinstance(value, TableHead):
            value = table_sample_from_head(value)
        self.kept[key] = value
        roles = dataset_roles(self.request.settings)
        # To a local store only: a server gets no byte while the nodes run (the contract of
        # run.py), so there the model goes with everything else at the end.
        if _local_store(self.request.uri) and self.model is None and "data:model" in self._by_role() and ("example" not in roles or "data:example" in self._by_role()):
            self.model = _EarlyModel()
            try:
                by_role = self._by_role()
                log_model(self.client, self.request.uri, self.experiment_id, self.run_id, self.request.settings, by_role["data:model"], by_role.get("data:example"))
            except Exception as error:  # noqa: BLE001 - reported with everything else at the end
                self.model.error = error

    def _by_role(self) -> dict[str, Any]:
        roles = dataset_roles(self.request.settings)
        return {f"data:{role}": self.kept[f"data:{name}"] for role, name in roles.items() if f"data:{name}" in self.kept}

    def finish(self, request: FinishRequest) -> tuple[list[str], str | None, str | None]:
        """Send everything the run gathered, then its status; return what could not be
        logged, the spool folder of what is kept for a replay (None: nothing), and the run's id."""
        delivery = self._delivery(request)
        not_logged = list(request.not_logged) + self.not_kept
        lost: str | None = None
        if self.client is None:
            try:
                check_reachable(self.request.uri, self.request.settings.request_timeout_seconds)
                from mlflow import MlflowClient

                failed, lost = send(delivery, MlflowClient(tracking_uri=self.request.uri))
                not_logged += failed
            except MlflowTrackingError:
                lost = "the server still does not answer"
            except Exception as error:  # noqa: BLE001 - creating the run failed: everything is spooled
                lost = describe(error)
        else:
            failed, lost = send(delivery, self.client)
            not_logged += failed
        if lost is None:
            return not_logged, None, delivery.run_id
        pending = delivery.pending()
        not_logged += [f"{delivery.describe(step)}{f' ({lost})' if index == 0 else ''}" for index, step in enumerate(pending)]
        if delivery.run_id is None:
            not_logged.insert(0, "the run itself: MLflow has never seen it")
        try:
            label = f"{self.request.run.run_id}-{delivery.run_id or 'new-run'}"
            entry = spool(delivery, spool_folder(self.request.project_path, self.request.settings), label)
        except Exception as error:  # noqa: BLE001 - a full disk must not hide what was not logged
            not_logged.append(f"the spool, which could not be written ({describe(error)})")
            return not_logged, None, delivery.run_id
        return not_logged, str(entry), delivery.run_id

    def _delivery(self, request: FinishRequest) -> Delivery:
        """What the end of the run sends, as data (:mod:`.delivery`)."""
        for key, pickled in request.values.items():
            if key in self.kept:
                continue
            try:
                value = pickle.loads(pickled)
            except Exception as error:  # noqa: BLE001 - a class this process cannot import: named, the rest is sent
                self.not_kept.append(f"'{key.partition(':')[2]}' (the MLflow helper could not read it: {describe(error)})")
                continue
            self.kept[key] = table_sample_from_head(value) if isinstance(value, TableHead) else value
        values = self._by_role()
        ended_ms = round(request.ended_ns / 1e6) if request.ended_ns else now_ms()
        numbers = dict(request.recorded.metrics) if request.recorded is not None else {}
        numbers.update(evaluation_metrics(values.get("data:metrics")))
        tags = fingerprint_tags(values.get("data:fingerprints"))
        if request.error is not None:
            tags["kedro.error"] = request.error[:ERROR_TAG_LENGTH]
        if request.stopped_by is not None:
            tags[STOPPED_BY_TAG] = request.stopped_by
        delivery = Delivery(
            uri=self.request.uri,
            settings=self.request.settings,
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            status=request.status,
            end_time_ms=ended_ms,
            metrics={mlflow_key(key): (value, ended_ms) for key, value in numbers.items()},
            tags=tags,
            inputs={key[len("input:") :]: value for key, value in self.kept.items() if key.startswith("input:") and key[len("input:") :] in self.sources},
            source_paths=dict(self.request.source_paths),
            sources=self.sources,
            artifacts=list(request.recorded.artifacts) if request.recorded is not None else [],
            opening=self.opening,
        )
        if self.unsent_params is not None:
            delivery.params, delivery.param_tags = self.unsent_params
        if self.model is None:
            delivery.model, delivery.example = values.get("data:model"), values.get("data:example")
        else:
            delivery.model_error = self.model.error  # logged already, or failed: reported at its step
        if getattr(self.request.settings, "log_trace", False) and request.recorded is not None:
            delivery.trace = self._trace(request, span_records(request.recorded))
        return delivery

    def _trace(self, request: FinishRequest, spans: list[dict[str, Any]]) -> Trace:
        from kedro_observability.tracking.server import git_commit

        run = self.request.run
        root = {
            "kedro.project": run.project,
            "kedro.pipeline": run.pipeline,
            "kedro.runner": run.runner,
            "kedro.env": run.env,
            "kedro.run_id": run.run_id,
            "mlflow.run_id": self.run_id or "",
            "kedro.status": request.status,
            "git.commit": git_commit(self.request.project_path) or "",
        }
        if request.error:
            root["error.type"], _, root["error.message"] = request.error.partition(": ")
        now = time.time_ns()
        title = f"{run.project} · pipeline {run.pipeline} · {run.runner} · kedro run {run.run_id}"
        return Trace(root, spans, request.started_ns or now, request.ended_ns or now, request.error or request.stopped_by, title)


def _local_store(uri: str) -> bool:
    """True for a store on this machine's disk (SQLite, files): logging there is no network call."""
    return urlsplit(uri).scheme in {"", "file", "sqlite"}


def _sync_environment(variables: dict[str, str]) -> None:
    """MLflow's variables as the run's process has them now (the helper may be older than
    a variable the user set since)."""
    for name in [name for name in os.environ if name.startswith(("MLFLOW_", "OTEL_")) and name not in variables]:
        del os.environ[name]
    os.environ.update(variables)

