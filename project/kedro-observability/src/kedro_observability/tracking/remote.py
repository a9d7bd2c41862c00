"""The MLflow run as the helper process (:mod:`.worker`) holds it: opened, filled, ended.

Everything here runs in the helper, never in the Kedro process: MLflow is imported here.
What it logs, and in which order at the end, is what the run's process logged before the
helper existed; only the model is logged earlier, as soon as it and its input example are
saved, and a failure of that is reported at the end, where it used to happen.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kedro_observability.tracking.content import TableHead, dataset_roles, evaluation_metrics, fingerprint_tags, log_artifacts, log_inputs, log_model, table_sample_from_head
from kedro_observability.tracking.local_store import store_lock
from kedro_observability.tracking.params import mlflow_key
from kedro_observability.tracking.server import MlflowTrackingError, check_reachable, describe, log_entities, open_run
from kedro_observability.tracking.worker import FinishRequest, OpenRequest

logger = logging.getLogger(__name__)

ERROR_TAG_LENGTH = 5000
STOPPED_BY_TAG = "kedro.stopped_by"


def prepare(uri: str, experiment_name: str) -> None:
    """Import MLflow and open the store before the run asks for its opening."""
    try:
        from mlflow import MlflowClient

        # Opening a new local store creates and migrates it: one process at a time.
        with store_lock(uri):
            MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment_name)
    except Exception as error:  # noqa: BLE001 - opening the run reports the same problem, in its words
        logger.debug("Preparing MLflow at %s failed: %s", uri, describe(error))


def prepare_model_logging() -> None:
    """Import what logging the model uses, once the run is open and while the nodes run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mlflow.data  # noqa: F401
            import mlflow.models  # noqa: F401
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401 - what mlflow.sklearn serialises with, when installed
        except ImportError:
            pass


@dataclass
class _EarlyModel:
    """The outcome of logging the model while the pipeline ran."""

    error: Exception | None = None


@dataclass
class HelperRun:
    """One open MLflow run and what the Kedro run has sent it so far."""

    client: Any
    request: OpenRequest
    run_id: str
    experiment_id: str
    sources: dict[str, Any]
    kept: dict[str, Any] = field(default_factory=dict)
    model: _EarlyModel | None = None

    @classmethod
    def open(cls, request: OpenRequest) -> HelperRun:
        """Create the run with its tags and params; raise what the run's process raises."""
        _sync_environment(request.http_environment)
        sources = input_sources(request.source_paths) if request.source_paths else {}
        client, experiment_id, run_id = open_run(request.uri, request.settings, request.run, request.kedro_version, request.project_path, request.params)
        return cls(client, request, run_id, experiment_id, sources)

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
                self._log_model(self._by_role())
            except Exception as error:  # noqa: BLE001 - reported with everything else at the end
                self.model.error = error

    def _by_role(self) -> dict[str, Any]:
        roles = dataset_roles(self.request.settings)
        return {f"data:{role}": self.kept[f"data:{name}"] for role, name in roles.items() if f"data:{name}" in self.kept}

    def _log_model(self, values: dict[str, Any]) -> None:
        settings = self.request.settings
        log_model(self.client, self.request.uri, self.experiment_id, self.run_id, settings, values["data:model"], values.get("data:example"))

    def finish(self, request: FinishRequest) -> list[str]:
        """Send everything the run gathered, then its status; return what could not be logged."""
        return self._upload(request)

    def _upload(self, request: FinishRequest) -> list[str]:
        from mlflow.entities import Metric

        for key, value in request.values.items():
            self.kept.setdefault(key, table_sample_from_head(value) if isinstance(value, TableHead) else value)
        values = self._by_role()
        not_logged = list(request.not_logged)
        recorded_metrics = dict(request.recorded.metrics) if request.recorded is not None else {}
        artifacts = list(request.recorded.artifacts) if request.recorded is not None else []
        now = int(time.time() * 1000)
        numbers = recorded_metrics
        numbers.update(evaluation_metrics(values.get("data:metrics")))
        metrics = [Metric(mlflow_key(key), value, now, 0) for key, value in numbers.items()]
        tags = fingerprint_tags(values.get("data:fingerprints"))
        if request.error is not None:
            tags["kedro.error"] = request.error[:ERROR_TAG_LENGTH]
        if request.stopped_by is not None:
            tags[STOPPED_BY_TAG] = request.stopped_by
        inputs = {key[len("input:") :]: value for key, value in self.kept.items() if key.startswith("input:") and key[len("input:") :] in self.sources}

        steps: list[tuple[str, Callable[[], None]]] = [(f"{len(metrics)} metrics and {len(tags)} tags", lambda: log_entities(self.client, self.run_id, metrics, tags=tags))]
        if inputs:
            steps.append((f"{len(inputs)} dataset inputs", lambda: log_inputs(self.client, self.run_id, inputs, self.sources)))
        if request.status == "FINISHED" and values.get("data:model") is not None:
            steps.append(("the model", lambda: self._model_step(values)))
        if artifacts:
            steps.append((f"{len(artifacts)} artifacts", lambda: log_artifacts(self.client, self.run_id, artifacts)))
        spans = list(getattr(request.recorded, "spans", None) or [])
        if getattr(self.request.settings, "log_trace", False) and request.recorded is not None:
            steps.append((f"the run's trace ({len(spans)} spans)", lambda: self._trace(request, spans)))
            if spans:
                steps.append(("the run's timeline (timeline.png, timeline.html)", lambda: self._timeline(spans)))
        steps.append((f"the run's status {request.status} (it stays RUNNING)", lambda: self.client.set_terminated(self.run_id, request.status)))

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
                    check_reachable(self.request.uri, self.request.settings.request_timeout_seconds)
                except MlflowTrackingError:
                    reachable = False  # each further call would only wait for its own retries
        return not_logged

    def _trace(self, request: FinishRequest, spans: list[dict[str, Any]]) -> None:
        from kedro_observability.tracking.server import git_commit
        from kedro_observability.tracking.trace import log_trace

        run = self.request.run
        root = {
            "kedro.project": run.project,
            "kedro.pipeline": run.pipeline,
            "kedro.runner": run.runner,
            "kedro.env": run.env,
            "kedro.run_id": run.run_id,
            "mlflow.run_id": self.run_id,
            "kedro.status": request.status,
            "git.commit": git_commit(self.request.project_path) or "",
        }
        if request.error:
            root["error.type"], _, root["error.message"] = request.error.partition(": ")
        now = time.time_ns()
        log_trace(self.client, self.request.uri, self.experiment_id, self.run_id, root, spans, request.started_ns or now, request.ended_ns or now, request.status, request.error or request.stopped_by)

    def _timeline(self, spans: list[dict[str, Any]]) -> None:
        import tempfile
        from pathlib import Path

        from kedro_observability.tracking.timeline import timeline_html, timeline_png

        run = self.request.run
        title = f"{run.project} · pipeline {run.pipeline} · {run.runner} · kedro run {run.run_id}"
        with tempfile.TemporaryDirectory(prefix="kedro-observability-timeline-") as folder:
            png, page = Path(folder) / "timeline.png", Path(folder) / "timeline.html"
            png.write_bytes(timeline_png(spans, title))
            page.write_text(timeline_html(spans, title), encoding="utf-8")
            log_artifacts(self.client, self.run_id, [png, page])

    def _model_step(self, values: dict[str, Any]) -> None:
        """The model's place among the steps: logged already (its error, if any, is raised
        here, where it used to be raised), or logged now."""
        if self.model is None:
            self._log_model(values)
        elif self.model.error is not None:
            raise self.model.error


def _local_store(uri: str) -> bool:
    """True for a store on this machine's disk (SQLite, files): logging there is no network call."""
    return urlsplit(uri).scheme in {"", "file", "sqlite"}


def input_sources(paths: dict[str, str]) -> dict[str, Any]:
    """MLflow DatasetSources of the pipeline's file-based inputs."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    sources = {}
    for name, path in sorted(paths.items()):
        try:
            with warnings.catch_warnings():
                # MLflow registers two local-file sources and warns each time that it chose one.
                warnings.simplefilter("ignore", UserWarning)
                sources[name] = resolve_dataset_source(path)
        except Exception as error:  # noqa: BLE001 - a scheme MLflow has no source type for
            logger.debug("No MLflow dataset source for '%s' (%s): %s", name, path, error)
    return sources


def _sync_environment(variables: dict[str, str]) -> None:
    """MLflow's variables as the run's process has them now (the helper may be older than
    a variable the user set since)."""
    for name in [name for name in os.environ if name.startswith(("MLFLOW_", "OTEL_")) and name not in variables]:
        del os.environ[name]
    os.environ.update(variables)

