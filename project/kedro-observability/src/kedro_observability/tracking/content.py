"""What the MLflow run holds besides its tags and params: input tables, model, artifacts, metrics, fingerprints."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline

from kedro_observability.names import is_parameter
from kedro_observability.compat import dataset_load_path
from kedro_observability.settings import MlflowSettings
from kedro_observability.tracking.params import flatten, mlflow_key

logger = logging.getLogger(__name__)

DIGEST_ROWS = 10_000  # as in MLflow's own pandas digest
SCHEMA_ROWS = 1_000  # MLflow infers a schema value by value: 8 s for a million strings
DATASET_CONTEXT_TAG = "mlflow.data.context"


def input_paths(pipeline: Pipeline, catalog: Any, project_path: Path) -> dict[str, str]:
    """The paths (or URLs) of the pipeline's file-based inputs, resolved once before the run;
    the MLflow helper makes them DatasetSources."""
    paths = {}
    for name in sorted(pipeline.inputs()):
        if is_parameter(name):
            continue
        path = dataset_load_path(catalog.get(name))
        if path is None:
            continue
        paths[name] = path if "://" in path else str((project_path / path).resolve())
    return paths


@dataclass(frozen=True)
class TableHead:
    """The first rows of a loaded DataFrame and its size: what the MLflow helper needs for
    the dataset's digest and schema, taken where the data was loaded."""

    head: Any
    rows: int
    elements: int


@dataclass(frozen=True)
class TableSample:
    """What MLflow's dataset entity needs from a DataFrame."""

    digest: str
    rows: int
    elements: int
    head: Any


def table_head(data: Any) -> TableHead | None:
    """The first 10,000 rows of a pandas DataFrame and its size; None for other data."""
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(data, pandas.DataFrame):
        return None
    return TableHead(data.head(DIGEST_ROWS), len(data), int(data.size))


def table_sample_from_head(table: TableHead) -> TableSample:
    """Digest of a DataFrame from its head, and the rows its schema is inferred from.

    The digest follows MLflow's pandas recipe (the first 10,000 rows and the row count)
    without its pass over every cell. The schema is inferred from the first 1,000 rows:
    MLflow infers it value by value, 8 s for a million strings.
    """
    import numpy as np
    import pandas
    from mlflow.data.digest_utils import get_normalized_md5_digest

    head = table.head
    digest = get_normalized_md5_digest(
        [pandas.util.hash_pandas_object(head).values, np.int64(table.rows)] + [str(column).encode() for column in head.columns]
    )
    return TableSample(digest, table.rows, table.elements, head.head(SCHEMA_ROWS))


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


def head(data: Any, rows: int) -> Any:
    """The first ``rows`` rows of a table, or items of a sequence."""
    return data.head(rows) if hasattr(data, "head") else data[:rows]


def evaluation_metrics(metrics: Any) -> dict[str, float]:
    """The numbers in the metrics dataset's mapping, flattened to dotted names."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        logger.warning("kedro_observability: the mlflow metrics dataset holds a %s, not a mapping of names to numbers; not logged.", type(metrics).__name__)
        return {}
    return {key: float(value) for key, value in flatten(metrics) if isinstance(value, (int, float)) and not isinstance(value, bool)}


def fingerprint_tags(fingerprints: Any) -> dict[str, str]:
    """The fingerprints dataset's mapping as ``kedro.fingerprint.*`` tags."""
    if not isinstance(fingerprints, Mapping):
        return {}
    return {mlflow_key(f"kedro.fingerprint.{key}"): str(value) for key, value in flatten(fingerprints)}


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


def log_inputs(client: Any, run_id: str, inputs: dict[str, TableSample], sources: dict[str, Any]) -> None:
    """Log the input tables as the run's dataset inputs."""
    from mlflow.entities import DatasetInput, InputTag

    datasets = [
        DatasetInput(dataset_entity(name, sample, sources[name]), tags=[InputTag(DATASET_CONTEXT_TAG, "input")])
        for name, sample in sorted(inputs.items())
    ]
    client.log_inputs(run_id, datasets=datasets)


def log_model(client: Any, uri: str, experiment_id: str, run_id: str, settings: MlflowSettings, model: Any, example: Any) -> None:
    """Log the model with its signature, input example and pinned requirements."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = None
    if example is not None:
        signature = infer_signature(example, model.predict(example) if hasattr(model, "predict") else None)
    # Created here so that the model belongs to the run's experiment: log_model alone would
    # file it under the process-wide (default) experiment.
    logged = client.create_logged_model(experiment_id, name=settings.model_name, source_run_id=run_id)
    with _process_tracking_uri(uri):
        try:
            mlflow.sklearn.log_model(
                model,
                name=settings.model_name,
                signature=signature,
                input_example=example,
                pip_requirements=pinned_requirements(settings.pip_requirements),
                registered_model_name=settings.registered_model_name,
                run_id=run_id,
                model_id=logged.model_id,
                skops_trusted_types=list(settings.skops_trusted_types) or None,
            )
        except Exception as error:
            untrusted = _untrusted_types(model) if "untrusted types" in str(error).lower() else []
            if not untrusted:
                raise
            raise UntrustedModelError(
                f"the model holds classes that MLflow's skops format does not load unless told to trust them: "
                f"{', '.join(untrusted)}. If they are yours, list them under mlflow.skops_trusted_types in "
                "observability.yml."
            ) from error


class UntrustedModelError(RuntimeError):
    """The model's classes are not trusted by skops, and the setting that trusts them is named."""


def _untrusted_types(model: Any) -> list[str]:
    """The model's classes that skops would refuse to load; [] if skops cannot say."""
    try:
        import skops.io

        return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    except Exception:  # noqa: BLE001 - MLflow's own message is reported then
        return []


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


def log_artifacts(client: Any, run_id: str, paths: list[Path]) -> None:
    for path in paths:
        client.log_artifact(run_id, str(path))


def dataset_roles(settings: Any) -> dict[str, str]:
    """role (metrics, model, example, fingerprints) -> the catalog name configured for it."""
    return {
        role: name
        for role, name in [
            ("metrics", settings.metrics_dataset),
            ("model", settings.model_dataset),
            ("example", settings.model_input_example_dataset),
            ("fingerprints", settings.fingerprints_dataset),
        ]
        if name
    }
