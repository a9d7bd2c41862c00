"""What the end of a run sends to MLflow, as plain data: sent at once, or spooled and replayed.

The helper process (:mod:`.remote`) turns what a run gathered into a :class:`Delivery` and
sends it step by step: the parameters if the server went away as it created the run, metrics
and tags, dataset inputs, the model, artifacts, the trace and its timeline, and last the
run's status with its real end time. When the server stops answering, the steps not yet
done are written to the spool (:mod:`.spool`) as they are, and ``kedro observability
replay`` sends them later with :func:`send`, the same code, so that a
replayed run holds what a run that never lost its server holds. A delivery for a run the
server never saw (it was down before the first node) carries its :class:`Opening`: the run
is then created with its original start time, tags and parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_observability.tracking.content import TableSample, input_sources, log_artifacts, log_inputs, log_model
from kedro_observability.tracking.server import answers, describe, log_entities

if TYPE_CHECKING:
    from kedro_observability.settings import MlflowSettings

logger = logging.getLogger(__name__)

STEPS = ("params", "metrics", "inputs", "model", "artifacts", "trace", "timeline", "status")
"""The order in which a delivery is sent; the status comes last, so that a run shown as
FINISHED holds everything."""


@dataclass
class Opening:
    """A run the server has never seen: what creating it takes."""

    experiment_name: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    param_tags: dict[str, str]
    """Parameters that the ``tag`` policy of ``long_params`` turned into tags."""
    start_time_ms: int


@dataclass
class Trace:
    """The run's trace: its root span's attributes and the recorded spans."""

    root: dict[str, Any]
    spans: list[dict[str, Any]]
    started_ns: int
    ended_ns: int
    message: str | None
    """The error (or what stopped the run) on the root span."""
    timeline_title: str


@dataclass
class Delivery:
    """Everything the end of one run sends to MLflow, and which of it is sent already."""

    uri: str
    settings: MlflowSettings
    run_id: str | None
    """None until an :class:`Opening` has created the run."""
    experiment_id: str | None
    status: str
    end_time_ms: int
    metrics: dict[str, tuple[float, int]] = field(default_factory=dict)
    """key -> (value, timestamp in ms): logged at step 0 with their original timestamps."""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    """Parameters not sent yet: the server stopped answering as it created the run, or the
    run was created from its :class:`Opening`."""
    param_tags: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, TableSample] = field(default_factory=dict)
    source_paths: dict[str, str] = field(default_factory=dict)
    model: Any = None
    example: Any = None
    model_error: Exception | None = None
    """The error of logging the model while the pipeline ran (local stores): raised at its step."""
    artifacts: list[Path] = field(default_factory=list)
    trace: Trace | None = None
    opening: Opening | None = None
    done: list[str] = field(default_factory=list)
    sources: dict[str, Any] | None = field(default=None, repr=False)
    """MLflow's DatasetSources of ``source_paths``, when the helper has them already."""

    def steps(self) -> list[str]:
        """The steps this delivery has, done or not, in their order."""
        wanted = {
            "params": bool(self.params or self.param_tags),
            "metrics": True,
            "inputs": bool(self.inputs),
            "model": self.status == "FINISHED" and (self.model is not None or self.model_error is not None),
            "artifacts": bool(self.artifacts),
            "trace": self.trace is not None,
            "timeline": self.trace is not None and bool(self.trace.spans),
            "status": True,
        }
        return [step for step in STEPS if wanted[step]]

    def pending(self) -> list[str]:
        return [step for step in self.steps() if step not in self.done]

    def describe(self, step: str) -> str:
        """A step as the end-of-run warning names it."""
        return {
            "params": f"{len(self.params) + len(self.param_tags)} parameters",
            "metrics": f"{len(self.metrics)} metrics and {len(self.tags)} tags",
            "inputs": f"{len(self.inputs)} dataset inputs",
            "model": "the model",
            "artifacts": f"{len(self.artifacts)} artifacts",
            "trace": f"the run's trace ({len(self.trace.spans) if self.trace else 0} spans)",
            "timeline": "the run's timeline (timeline.png, timeline.html)",
            "status": f"the run's status {self.status} (it stays RUNNING)",
        }[step]


def send(delivery: Delivery, client: Any, on_step: Callable[[Delivery], None] | None = None) -> tuple[list[str], str | None]:
    """Send the delivery's pending steps in order; ``on_step`` is called after each.

    Return the steps that failed while the server answered (reported and skipped: they
    would fail again), and, if the server stopped answering, the error that showed it: the
    step that met it and the rest stay pending."""
    if delivery.run_id is None:
        _create_run(delivery, client)
        if on_step is not None:
            on_step(delivery)
    failed: list[str] = []
    for step in delivery.pending():
        try:
            _SENDERS[step](delivery, client)
        except Exception as failure:  # noqa: BLE001 - report and go on with the next step
            if not answers(delivery.uri, delivery.settings.request_timeout_seconds):
                return failed, describe(failure)  # each further call would only wait for its own retries
            failed.append(f"{delivery.describe(step)} ({describe(failure)})")
        delivery.done.append(step)
        if on_step is not None:
            on_step(delivery)
    return failed, None


def _create_run(delivery: Delivery, client: Any) -> None:
    from mlflow.exceptions import MlflowException

    opening = delivery.opening
    assert opening is not None, "a delivery without a run id carries its opening"
    experiment = client.get_experiment_by_name(opening.experiment_name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(opening.experiment_name)
        except MlflowException:
            experiment_id = client.get_experiment_by_name(opening.experiment_name).experiment_id  # created meanwhile
    else:
        experiment_id = experiment.experiment_id
    run_id = _created_before(client, experiment_id, opening)
    if run_id is None:
        run_id = client.create_run(experiment_id, start_time=opening.start_time_ms, tags=opening.tags, run_name=opening.run_name).info.run_id
    delivery.experiment_id, delivery.run_id = experiment_id, run_id
    # The parameters are a step of their own: a server lost right after it created the run
    # must not leave the spool without the run's id (the next replay would create another).
    delivery.params, delivery.param_tags = dict(opening.params), dict(opening.param_tags)
    if delivery.trace is not None:
        delivery.trace.root["mlflow.run_id"] = delivery.run_id


def _created_before(client: Any, experiment_id: str, opening: Opening) -> str | None:
    """The run an earlier replay of this opening created, if that replay ended before the
    spool could record it (the process killed, say): same Kedro run id, same start time."""
    kedro_run_id = opening.tags.get("kedro.run_id", "")
    if not kedro_run_id or "'" in kedro_run_id:
        return None
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`kedro.run_id` = '{kedro_run_id}' and attributes.start_time = {opening.start_time_ms}",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _params(delivery: Delivery, client: Any) -> None:
    log_entities(client, delivery.run_id, params=delivery.params, tags=delivery.param_tags)


def _metrics(delivery: Delivery, client: Any) -> None:
    from mlflow.entities import Metric

    metrics = [Metric(key, value, timestamp, 0) for key, (value, timestamp) in delivery.metrics.items()]
    log_entities(client, delivery.run_id, metrics, tags=delivery.tags)


def _inputs(delivery: Delivery, client: Any) -> None:
    sources = delivery.sources if delivery.sources is not None else input_sources(delivery.source_paths)
    log_inputs(client, delivery.run_id, {name: sample for name, sample in delivery.inputs.items() if name in sources}, sources)


def _model(delivery: Delivery, client: Any) -> None:
    if delivery.model_error is not None:
        raise delivery.model_error  # logged while the pipeline ran, and failed: reported here, where it used to be
    if delivery.model is None:
        return  # logged while the pipeline ran
    log_model(client, delivery.uri, delivery.experiment_id, delivery.run_id, delivery.settings, delivery.model, delivery.example)


def _artifacts(delivery: Delivery, client: Any) -> None:
    log_artifacts(client, delivery.run_id, delivery.artifacts)


def _trace(delivery: Delivery, client: Any) -> None:
    from kedro_observability.tracking.trace import log_trace

    trace = delivery.trace
    assert trace is not None
    log_trace(client, delivery.uri, delivery.experiment_id, delivery.run_id, trace.root, trace.spans, trace.started_ns, trace.ended_ns, delivery.status, trace.message)


def _timeline(delivery: Delivery, client: Any) -> None:
    import tempfile

    from kedro_observability.tracking.timeline import timeline_html, timeline_png

    trace = delivery.trace
    assert trace is not None
    with tempfile.TemporaryDirectory(prefix="kedro-observability-timeline-") as folder:
        png, page = Path(folder) / "timeline.png", Path(folder) / "timeline.html"
        png.write_bytes(timeline_png(trace.spans, trace.timeline_title))
        page.write_text(timeline_html(trace.spans, trace.timeline_title), encoding="utf-8")
        log_artifacts(client, delivery.run_id, [png, page])


def _status(delivery: Delivery, client: Any) -> None:
    client.set_terminated(delivery.run_id, delivery.status, end_time=delivery.end_time_ms)


_SENDERS: dict[str, Callable[[Delivery, Any], None]] = {
    "params": _params,
    "metrics": _metrics,
    "inputs": _inputs,
    "model": _model,
    "artifacts": _artifacts,
    "trace": _trace,
    "timeline": _timeline,
    "status": _status,
}


def now_ms() -> int:
    return int(time.time() * 1000)
