"""The run's trace in MLflow, built in the helper process from the timings the run recorded.

Nothing is traced live: every process of the run (ParallelRunner's workers too) writes its
nodes' and datasets' measured start times and durations to the run record
(:meth:`~kedro_observability.record.RunRecord.span`), and at the end of the run the helper
replays them through MLflow's client tracing API with explicit start and end times: one
trace per ``kedro run``, a root span for the run, a span per node under it and a span per
load and save under its node. The trace is linked to the MLflow run (its ``mlflow.sourceRun``)
and the run is tagged ``kedro.trace_id``.

A node's span is what ``kedro_node_duration_seconds`` measures: the node's function, from
``before_node_run`` to ``after_node_run``. Kedro loads a node's inputs before that and saves
its outputs after it, so the load and save spans sit just before and after their node's span.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

TRACE_TAG = "kedro.trace_id"


def span_records(recorded: Any) -> list[dict[str, Any]]:
    return list(getattr(recorded, "spans", None) or [])


def log_trace(
    client: Any,
    uri: str,
    experiment_id: str,
    run_id: str,
    root: dict[str, Any],
    spans: list[dict[str, Any]],
    start_ns: int,
    end_ns: int,
    status: str,
    error: str | None,
) -> str:
    """Log the run's trace; return its id. ``root``: the run span's attributes."""
    import mlflow
    from mlflow.entities import SpanStatus, SpanStatusCode

    spans = sorted(spans, key=lambda each: each["start_ns"])
    if spans:
        start_ns = min(start_ns, spans[0]["start_ns"])
        end_ns = max(end_ns, *(each["start_ns"] + each["duration_ns"] for each in spans))
    name = f"kedro run {root.get('kedro.pipeline') or '__default__'}"
    with _exporting_to(uri, len(spans) + 1):
        top = client.start_trace(
            name,
            span_type="CHAIN",
            attributes=root,
            tags={"kedro.run_id": str(root.get("kedro.run_id", "")), "kedro.pipeline": str(root.get("kedro.pipeline", ""))},
            experiment_id=experiment_id,
            start_time_ns=start_ns,
            run_id=run_id,
        )
        trace_id = top.trace_id
        node_spans: dict[str, str] = {}
        for record in [each for each in spans if each["kind"] == "node"]:
            span = client.start_span(
                record["name"],
                trace_id=trace_id,
                parent_id=top.span_id,
                span_type="CHAIN",
                attributes=_attributes(record),
                start_time_ns=record["start_ns"],
            )
            node_spans[record["name"]] = span.span_id
            client.end_span(trace_id, span.span_id, status=_status(record, SpanStatus, SpanStatusCode), end_time_ns=record["start_ns"] + record["duration_ns"])
        for record in [each for each in spans if each["kind"] != "node"]:
            parent = node_spans.get(record.get("node") or "", top.span_id)
            span = client.start_span(
                f"{record['kind']} {record['name']}",
                trace_id=trace_id,
                parent_id=parent,
                span_type="RETRIEVER" if record["kind"] == "load" else "UNKNOWN",
                attributes=_attributes(record),
                start_time_ns=record["start_ns"],
            )
            client.end_span(trace_id, span.span_id, status=_status(record, SpanStatus, SpanStatusCode), end_time_ns=record["start_ns"] + record["duration_ns"])
        final = SpanStatus(SpanStatusCode.OK) if status == "FINISHED" else SpanStatus(SpanStatusCode.ERROR, (error or status)[:1000])
        client.end_trace(trace_id, attributes={"kedro.status": status}, status=final, end_time_ns=end_ns)
        mlflow.flush_trace_async_logging()
    client.get_trace(trace_id)  # raises if the server did not store it
    client.set_tag(run_id, TRACE_TAG, trace_id)
    return trace_id


def _attributes(record: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "kedro.kind": record["kind"],
        "kedro.process": record["pid"],
        "kedro.thread": record["thread"],
        "kedro.duration_seconds": record["duration_ns"] / 1e9,
    }
    if record["kind"] == "node":
        attributes["kedro.node"] = record["name"]
    else:
        attributes["kedro.dataset"] = record["name"]
        attributes["kedro.node"] = record.get("node")
        for key in ("rows", "bytes"):
            if record.get(key) is not None:
                attributes[f"kedro.dataset.{key}"] = record[key]
    if record.get("error"):
        attributes["error.type"], _, attributes["error.message"] = record["error"].partition(": ")
    return attributes


def _status(record: dict[str, Any], span_status: Any, code: Any) -> Any:
    if record.get("status") == "ERROR":
        return span_status(code.ERROR, (record.get("error") or "")[:1000])
    return span_status(code.OK)


# Above this many spans a trace is exported in one batch (see _export_switches).
BATCH_ABOVE_SPANS = 200


@contextmanager
def _exporting_to(uri: str, span_count: int) -> Iterator[None]:
    """MLflow's tracer exports to the process-wide tracking URI, read when the tracer is made:
    point it at the run's store and make the tracer again (the helper may serve another store
    next). ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI, which is put back."""
    import mlflow
    import mlflow.tracing

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    switches = {**_otlp_switches(), **_export_switches(span_count)}
    saved = {name: os.environ.get(name) for name in switches}
    for name, value in switches.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    mlflow.set_tracking_uri(uri)
    mlflow.tracing.reset()
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        mlflow.tracing.reset()


def _export_switches(span_count: int) -> dict[str, str | None]:
    """How MLflow exports the spans, unless the user chose (any of these variables set).

    Synchronously, MLflow writes each span as it ends, one store transaction each: about
    12 ms a span on SQLite, 2.5 s for a 70-node run, 18 s for 500 nodes. Its asynchronous
    export with a batch span processor writes them in one transaction, but its queue's
    consumer polls once a second, so flushing it costs about 2 s whatever the size. So: one
    span at a time for small traces, one batch above ``BATCH_ABOVE_SPANS``."""
    chosen = ("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "MLFLOW_USE_BATCH_SPAN_PROCESSOR", "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE")
    if any(name in os.environ for name in chosen):
        return {}
    if span_count <= BATCH_ABOVE_SPANS:
        return {"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
    return {
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
        "MLFLOW_USE_BATCH_SPAN_PROCESSOR": "true",
        # The whole trace in one batch; OTel's queue is sized from it, so no span is dropped.
        "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": str(span_count),
    }


def _otlp_switches() -> dict[str, str | None]:
    """With OpenTelemetry's OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT set, MLflow sends traces to
    that collector instead of its store: ask it for both. Without OpenTelemetry's OTLP exporter
    installed MLflow could send the trace nowhere: the store only, and a warning."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return {}
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    module = "opentelemetry.exporter.otlp.proto." + ("grpc" if protocol == "grpc" else "http") + ".trace_exporter"
    if not _importable(module):
        logger.warning(
            "kedro_observability: OTEL_EXPORTER_OTLP_ENDPOINT is set, but %s is not installed "
            "(pip install opentelemetry-exporter-otlp): the run's trace goes to MLflow only.",
            module,
        )
        # MLflow also exports span metrics to that endpoint: it is hidden from MLflow meanwhile.
        return {name: None for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")}
    return {"MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT": "true"}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
