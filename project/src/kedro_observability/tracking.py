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
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from kedro_observability.base import ObservingHook, is_parameter
from kedro_observability.guard import never_raise
from kedro_observability.inputs import dataset_file_path
from kedro_observability.names import sanitize_name
from kedro_observability.run_record import RunRecord, close_record, collect_record, open_record, record_metric
from kedro_observability.runtime import RunInfo
from kedro_observability.settings import MlflowSettings
from kedro_observability.sizes import measure
from kedro_observability.tracking_params import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_AND_TAGS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    LoggableParams,
    ParameterTooLongError,
    consumed_params,
    flatten,
    loggable_params,
    mlflow_key,
)

logger = logging.getLogger(__name__)

ERROR_TAG_LENGTH = 5000
DIGEST_ROWS = 10_000  # as in MLflow's own pandas digest
SCHEMA_ROWS = 1_000  # MLflow infers a schema value by value: 8 s for a million strings
MAX_ENTITIES_PER_BATCH = 1000  # metrics, params and tags together, per log_batch call
DATASET_CONTEXT_TAG = "mlflow.data.context"
GIT_COMMIT_TAG = "mlflow.source.git.commit"


class MlflowTrackingError(RuntimeError):
    """The tracking server or store cannot be used, so the run would not be tracked."""


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
            logger.warning("kedro_observability: MLflow tracking could not start and is off for this run (%s).", _describe(error), exc_info=logger.isEnabledFor(logging.DEBUG))

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
            tracked.keep(f"data:{dataset_name}", _head(data, tracked.settings.input_example_rows) if role == "example" else data)

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


def default_tracking_uri(project_path: Path) -> str:
    """The contract's default store: a SQLite file inside the project (gitignored)."""
    return f"sqlite:///{(project_path / 'mlflow.db').resolve().as_posix()}"


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
    sources = _input_sources(pipeline, catalog, project_path) if settings.log_input_datasets else {}
    http_variables = _bound_http_requests(settings)
    try:
        client, experiment_id, run_id = _open_run(uri, settings, run, run_params, project_path, params, default_env)
    except BaseException:
        for variable in http_variables:
            os.environ.pop(variable, None)
        raise
    open_record()
    return _TrackedRun(client, uri, run_id, experiment_id, settings, roles, sources, frozenset(pipeline.all_outputs()), catalog, http_variables)


def _bound_http_requests(settings: MlflowSettings) -> list[str]:
    """Bound MLflow's HTTP timeout and retries for the run; variables the user set win."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.request_max_retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.request_timeout_seconds),
        # Waits of 0, 2, 4 s between retries instead of 0, 4, 8 s.
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    applied = [name for name in wanted if name not in os.environ]
    for name in applied:
        os.environ[name] = wanted[name]
    return applied


def _open_run(
    uri: str,
    settings: MlflowSettings,
    run: RunInfo,
    run_params: dict[str, Any],
    project_path: Path,
    params: LoggableParams,
    default_env: str,
) -> tuple[Any, str, str]:
    check_reachable(uri, settings.request_timeout_seconds)
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        local_default = not settings.tracking_uri
        experiment_id = _experiment_id(client, settings.experiment_name or run.project, uri, project_path if local_default else None)
        tags = {
            "kedro.run_id": run.run_id,
            "kedro.pipeline": run.pipeline,
            "kedro.env": str(run_params.get("env") or default_env),
            "kedro.version": str(run_params.get("kedro_version") or _kedro_version()),
            "kedro.runner": _runner_name(run_params.get("runner")),
        }
        commit = git_commit(project_path)
        if commit:
            tags[GIT_COMMIT_TAG] = commit
        user = _user()
        if user:
            tags["mlflow.user"] = user
        run_id = client.create_run(experiment_id, run_name=f"{run.pipeline} {run.run_id}".strip(), tags=tags).info.run_id
    except MlflowTrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any store or server error means: not tracked
        raise MlflowTrackingError(unavailable_message(uri, _describe(error))) from error
    try:
        log_entities(client, run_id, params=params.params, tags=params.tags)
    except Exception as error:  # noqa: BLE001
        _terminate_quietly(client, run_id)
        raise MlflowTrackingError(f"MLflow at {uri} refused the run's parameters ({_describe(error)}).") from error
    return client, experiment_id, run_id


def check_reachable(uri: str, timeout: float) -> None:
    """Raise :class:`MlflowTrackingError` unless an HTTP(S) server answers within ``timeout`` s.

    Any answer below HTTP 500 counts: authentication or routing problems are reported by the
    first MLflow call, in MLflow's words. Local stores (sqlite, file) are not probed. The
    probe runs in a daemon thread, so that even a hanging name lookup cannot outlast it.
    """
    if urlsplit(uri).scheme not in {"http", "https"}:
        return
    outcome: list[str | None] = []
    no_answer = f"no answer within {timeout} s"

    def probe() -> None:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError as error:
            outcome.append(None if error.code < 500 else f"it answered HTTP {error.code}")
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            outcome.append(no_answer if isinstance(reason, TimeoutError) else str(reason))

    thread = threading.Thread(target=probe, name="kedro-observability-mlflow-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome and outcome[0] is None:
        return
    reason = outcome[0] if outcome else no_answer
    raise MlflowTrackingError(unavailable_message(uri, reason))


def unavailable_message(uri: str, reason: str) -> str:
    """What went wrong with the tracking URI, and the three ways out."""
    if urlsplit(uri).scheme in {"http", "https"}:
        remedy = (
            "Start the stack's MLflow server (`docker compose up -d mlflow`), or track to a local "
            "SQLite file inside the project instead: unset MLFLOW_TRACKING_URI (and "
            "mlflow.tracking_uri in observability.yml)."
        )
    else:
        remedy = "Check that its folder exists and is writable, or set MLFLOW_TRACKING_URI to a running MLflow server."
    return (
        f"MLflow tracking at {uri} is not available: {reason}. {remedy} To run on without "
        "tracking when MLflow is down, set mlflow.on_unavailable: warn in observability.yml."
    )


def _experiment_id(client: Any, name: str, uri: str, local_project: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # In the default local store, artifacts go beside mlflow.db, not under the current directory.
        location = (local_project / "mlruns" / sanitize_name(name)).resolve().as_uri() if local_project else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by a concurrent run
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise MlflowTrackingError(
            f"The MLflow experiment '{name}' at {uri} is deleted. Restore it (`mlflow experiments "
            f"restore --experiment-id {experiment.experiment_id}`) or set mlflow.experiment_name "
            "in observability.yml to another name."
        )
    return experiment.experiment_id


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``; None without git, outside a repository, or if slow."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _runner_name(runner: Any) -> str:
    # Kedro records a runner class by name but a runner instance by its repr, and None
    # when it defaults to SequentialRunner.
    match = re.search(r"\w*Runner\b", str(runner or ""))
    return match.group(0) if match else "SequentialRunner"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return None


def _kedro_version() -> str:
    from kedro import __version__

    return __version__


def _input_sources(pipeline: Pipeline, catalog: Any, project_path: Path) -> dict[str, Any]:
    """MLflow DatasetSources of the pipeline's file-based inputs, resolved once before the run."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    sources = {}
    for name in sorted(pipeline.inputs()):
        if is_parameter(name):
            continue
        path = dataset_file_path(catalog.get(name))
        if path is None:
            continue
        if "://" not in path:
            path = str((project_path / path).resolve())
        try:
            with warnings.catch_warnings():
                # MLflow registers two local-file sources and warns each time that it chose one.
                warnings.simplefilter("ignore", UserWarning)
                sources[name] = resolve_dataset_source(path)
        except Exception as error:  # noqa: BLE001 - a scheme MLflow has no source type for
            logger.debug("No MLflow dataset source for '%s' (%s): %s", name, path, error)
    return sources


@dataclass(frozen=True)
class TableSample:
    """What MLflow's dataset entity needs from a DataFrame, taken where the data was loaded."""

    digest: str
    rows: int
    elements: int
    head: Any


def table_sample(data: Any) -> TableSample | None:
    """Digest and size of a pandas DataFrame, and its first rows; None for other data.

    The digest follows MLflow's pandas recipe (the first 10,000 rows and the row count)
    without its pass over every cell. The schema is inferred from the first 1,000 rows at
    the end of the run: MLflow infers it value by value, 8 s for a million strings.
    """
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(data, pandas.DataFrame):
        return None
    import numpy as np
    from mlflow.data.digest_utils import get_normalized_md5_digest

    head = data.head(DIGEST_ROWS)
    digest = get_normalized_md5_digest(
        [pandas.util.hash_pandas_object(head).values, np.int64(len(data))] + [str(column).encode() for column in data.columns]
    )
    return TableSample(digest, len(data), int(data.size), head.head(SCHEMA_ROWS))


def dataset_entity(name: str, sample: TableSample, source: Any) -> Any:
    """MLflow's dataset entity for an input table, as ``mlflow.log_input`` would log it."""
    import mlflow.data
    from mlflow.entities import Dataset

    with warnings.catch_warnings():
        # The schema hint about integer columns concerns model signatures, not lineage.
        warnings.simplefilter("ignore", UserWarning)
        fields = mlflow.data.from_pandas(sample.head, source=source, name=name, digest=sample.digest).to_dict()
    fields["profile"] = json.dumps({"num_rows": sample.rows, "num_elements": sample.elements})
    return Dataset(**fields)


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


def log_entities(client: Any, run_id: str, metrics: list[Any] | None = None, params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Send metrics, params and tags in as few ``log_batch`` calls as MLflow's limits allow."""
    from mlflow.entities import Param, RunTag

    keyed: list[Any] = [Param(key, value) for key, value in (params or {}).items()]
    keyed += [RunTag(key, value[:MAX_TAG_VALUE_LENGTH]) for key, value in (tags or {}).items()]
    pending = list(metrics or [])
    while keyed or pending:
        chunk, keyed = keyed[:MAX_PARAMS_AND_TAGS_PER_BATCH], keyed[MAX_PARAMS_AND_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(chunk))
        batch, pending = pending[:room], pending[room:]
        client.log_batch(
            run_id,
            metrics=batch,
            params=[entity for entity in chunk if isinstance(entity, Param)],
            tags=[entity for entity in chunk if isinstance(entity, RunTag)],
        )


def _upload(tracked: _TrackedRun, status: str, error: str | None) -> list[str]:
    """Send everything the run gathered, then its status; return what could not be logged."""
    from mlflow.entities import Metric

    not_logged: list[str] = []
    try:
        values = _gathered_values(tracked, status)
        record = collect_record()
    except Exception as failure:  # noqa: BLE001 - the status must still be set
        not_logged.append(f"what the nodes recorded ({_describe(failure)})")
        values, record = {}, RunRecord()
    now = int(time.time() * 1000)
    numbers = dict(record.metrics)
    numbers.update(_evaluation_metrics(values.get("metrics")))
    metrics = [Metric(mlflow_key(key), value, now, 0) for key, value in numbers.items()]
    tags = _fingerprint_tags(values.get("fingerprints"))
    if error is not None:
        tags["kedro.error"] = error[:ERROR_TAG_LENGTH]
    inputs = {key[len("input:") :]: value for key, value in values.items() if key.startswith("input:")}

    steps: list[tuple[str, Callable[[], None]]] = [(f"{len(metrics)} metrics and {len(tags)} tags", lambda: log_entities(tracked.client, tracked.run_id, metrics, tags=tags))]
    if inputs:
        steps.append((f"{len(inputs)} dataset inputs", lambda: _log_inputs(tracked, inputs)))
    if status == "FINISHED" and values.get("model") is not None:
        steps.append(("the model", lambda: _log_model(tracked, values["model"], values.get("example"))))
    if record.artifacts:
        steps.append((f"{len(record.artifacts)} artifacts", lambda: _log_artifacts(tracked, record.artifacts)))
    steps.append((f"the run's status {status} (it stays RUNNING)", lambda: tracked.client.set_terminated(tracked.run_id, status)))

    reachable = True
    for description, step in steps:
        if not reachable:
            not_logged.append(description)
            continue
        try:
            step()
        except Exception as failure:  # noqa: BLE001 - report and go on with the next step
            not_logged.append(f"{description} ({_describe(failure)})")
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
            values[role] = _head(data, tracked.settings.input_example_rows) if role == "example" else data
    return values


def _head(data: Any, rows: int) -> Any:
    return data.head(rows) if hasattr(data, "head") else data[:rows]


def _evaluation_metrics(metrics: Any) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        logger.warning("kedro_observability: the mlflow metrics dataset holds a %s, not a mapping of names to numbers; not logged.", type(metrics).__name__)
        return {}
    return {key: float(value) for key, value in flatten(metrics) if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _fingerprint_tags(fingerprints: Any) -> dict[str, str]:
    if not isinstance(fingerprints, Mapping):
        return {}
    return {mlflow_key(f"kedro.fingerprint.{key}"): str(value) for key, value in flatten(fingerprints)}


def _log_inputs(tracked: _TrackedRun, inputs: dict[str, TableSample]) -> None:
    from mlflow.entities import DatasetInput, InputTag

    datasets = [
        DatasetInput(dataset_entity(name, sample, tracked.sources[name]), tags=[InputTag(DATASET_CONTEXT_TAG, "input")])
        for name, sample in sorted(inputs.items())
    ]
    tracked.client.log_inputs(tracked.run_id, datasets=datasets)


def _log_model(tracked: _TrackedRun, model: Any, example: Any) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    settings = tracked.settings
    signature = None
    if example is not None:
        signature = infer_signature(example, model.predict(example) if hasattr(model, "predict") else None)
    # Created here so that the model belongs to the run's experiment: log_model alone would
    # file it under the process-wide (default) experiment.
    logged = tracked.client.create_logged_model(tracked.experiment_id, name=settings.model_name, source_run_id=tracked.run_id)
    with _process_tracking_uri(tracked.uri):
        mlflow.sklearn.log_model(
            model,
            name=settings.model_name,
            signature=signature,
            input_example=example,
            pip_requirements=pinned_requirements(settings.pip_requirements),
            registered_model_name=settings.registered_model_name,
            run_id=tracked.run_id,
            model_id=logged.model_id,
        )


def pinned_requirements(requirements: list[str]) -> list[str]:
    """Bare package names pinned to the installed version; anything else kept as written.

    Explicit requirements spare MLflow its inference, which costs seconds per model.
    """
    pinned = []
    for requirement in requirements:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement):
            try:
                requirement = f"{requirement}=={metadata.version(requirement)}"
            except metadata.PackageNotFoundError:
                logger.warning("kedro_observability: '%s' (mlflow.pip_requirements) is not installed; left out of the model's requirements.", requirement)
                continue
        pinned.append(requirement)
    return pinned


@contextmanager
def _process_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at ``uri`` while a model is logged.

    ``mlflow.sklearn.log_model`` takes no client and reads the process-wide URI.
    ``mlflow.set_tracking_uri`` also exports it as MLFLOW_TRACKING_URI, which this package reads
    as the user's choice, so the previous value is put back (None: unset again).
    """
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _log_artifacts(tracked: _TrackedRun, paths: list[Path]) -> None:
    for path in paths:
        tracked.client.log_artifact(tracked.run_id, str(path))


def _terminate_quietly(client: Any, run_id: str) -> None:
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001 - already reporting the first failure
        logger.debug("Could not mark MLflow run %s as failed", run_id, exc_info=True)


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
