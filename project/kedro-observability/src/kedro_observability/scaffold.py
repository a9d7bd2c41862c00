"""What ``kedro observability init`` writes: observability.yml for this project, and its logger.

The file is filled from the project where that can be told from the catalog (the model,
the evaluation metrics, a model input), with every other key at its default and a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_observability.config import PLUGIN_LOGGER

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline


@dataclass(frozen=True)
class Guesses:
    """Datasets of the project that likely play a role for MLflow, with the alternatives."""

    model: str | None
    metrics: str | None
    model_input: str | None
    alternatives: dict[str, list[str]]


_MODEL_NAME = re.compile(r"(model|regressor|classifier|estimator|pipeline)s?$", re.IGNORECASE)
_METRICS_NAME = re.compile(r"metric|score|evaluation", re.IGNORECASE)
_TABLE_TYPES = {"CSVDataset", "ParquetDataset", "ExcelDataset", "SparkDataset", "SQLTableDataset"}
_INPUT_NAME = re.compile(r"^(x_test|x_val|x_valid|x_train|features|model_input_table)$", re.IGNORECASE)


def guess_roles(catalog: CatalogProtocol, pipelines: list[Pipeline]) -> Guesses:
    """The model, metrics and model-input datasets, from names and catalog types."""
    names = sorted({name for pipeline in pipelines for name in pipeline.datasets()} | set(_catalog_names(catalog)))
    names = [name for name in names if name != "parameters" and not name.startswith("params:")]

    def type_of(name: str) -> str:
        try:
            return type(catalog.get(name)).__name__ if name in catalog else ""
        except Exception:  # noqa: BLE001 - an entry that cannot be built says nothing
            return ""

    models = [name for name in names if _MODEL_NAME.search(name.rsplit(".", 1)[-1]) and "Pickle" in type_of(name) or "MlflowModel" in type_of(name)]
    models += [name for name in names if _MODEL_NAME.search(name.rsplit(".", 1)[-1]) and name not in models and type_of(name) not in _TABLE_TYPES]
    metrics = [name for name in names if _METRICS_NAME.search(name) and type_of(name) not in _TABLE_TYPES]
    inputs = sorted((name for name in names if _INPUT_NAME.match(name.rsplit(".", 1)[-1])), key=lambda name: name.lower() != "x_test")
    return Guesses(
        model=models[0] if models else None,
        metrics=metrics[0] if metrics else None,
        model_input=inputs[0] if inputs else None,
        alternatives={"model": models[1:], "metrics": metrics[1:], "model_input": inputs[1:]},
    )


def _catalog_names(catalog: Any) -> list[str]:
    try:
        return list(catalog.keys())
    except Exception:  # noqa: BLE001 - an older or custom catalog
        return []


def _value(name: str | None) -> str:
    return name if name is not None else "null"


def _choices(alternatives: list[str]) -> str:
    return f"  # other candidates: {', '.join(alternatives)}" if alternatives else ""


def render_settings(project_name: str, guesses: Guesses) -> str:
    """The text of conf/base/observability.yml for a project."""
    found = [
        f"{role} '{name}'"
        for role, name in (("the model", guesses.model), ("the metrics", guesses.metrics), ("the model input", guesses.model_input))
        if name
    ]
    summary = f"Filled from this project's catalog: {', '.join(found)}." if found else "No model or metrics dataset was found in the catalog: name them under mlflow."
    return f"""\
# kedro-observability settings for {project_name}, written by `kedro observability init`.
# {summary}
#
# conf/<env>/observability.yml (conf/local/ by default) overrides these key by key.
# Environment variables win over both: STATSD_HOST, STATSD_PORT, MLFLOW_TRACKING_URI.
# Unknown keys and wrong values stop the run before its first node, naming key and file.
# `kedro observability doctor` shows the settings in force and where each comes from.

# statsd metrics for Prometheus' statsd_exporter: runs, nodes, datasets, validation.
statsd:
  enabled: true
  host: localhost   # STATSD_HOST wins
  port: 9125        # STATSD_PORT wins; 1 to 65535

# Resident memory: growth across each dataset load, and each node's peak, sampled in a
# background thread every interval_seconds (0.001 to 60).
memory:
  enabled: true
  interval_seconds: 0.05
  log_loads: true   # log "Loading <dataset> consumed <n> MiB" after each load

# Great Expectations suites: conf/<env>/expectations/<dataset>.yml, one per dataset, each
# with its policy: fail (the run stops, bad data is not written) or warn (logged, counted).
validation:
  enabled: true
  policy_override: null   # fail or warn for every suite, whatever its own policy says
  sample_values: 5        # unexpected values quoted per failed expectation

# One MLflow run per `kedro run`: tags, the parameters the nodes read, node durations,
# dataset sizes, evaluation metrics, the model, and FINISHED, FAILED or KILLED.
mlflow:
  enabled: true
  # An MLflow server (http://...) or store; null: a SQLite file mlflow.db in the project,
  # no server needed. MLFLOW_TRACKING_URI wins.
  tracking_uri: null
  experiment_name: null        # null: the project's package name
  # When the server does not answer before the first node: fail (stop, naming the URI)
  # or warn (run on; what it logs is sent at its end, or spooled if the server is still down).
  on_unavailable: fail
  # What could not reach the server (down at start, or mid-run) is kept here until
  # `kedro observability replay` sends it; replay_at_start: true has each run try too.
  spool_folder: data/observability-spool
  replay_at_start: false
  # Seconds the MLflow helper process stays after a run for the next `kedro run` here
  # (MLflow imported, store open: seconds saved per run while you iterate); 0: it ends
  # with its run. `kedro observability stop-helpers` ends the warm ones.
  warm_helper_seconds: 0
  request_timeout_seconds: 5   # bounds each MLflow HTTP request (more than 0)
  request_max_retries: 2       # 0 or more; MLflow's own default retries for ~4 minutes
  long_params: truncate        # values over 6000 characters: truncate, tag or fail
  # Catalog names of what the run logs at its end; null logs nothing for that item.
  metrics_dataset: {_value(guesses.metrics)}{_choices(guesses.alternatives["metrics"])}
  # A scikit-learn model, logged with a signature and an input example taken from the
  # first input_example_rows rows of model_input_example_dataset.
  model_dataset: {_value(guesses.model)}{_choices(guesses.alternatives["model"])}
  model_name: model
  registered_model_name: null   # also register the model under this name
  model_input_example_dataset: {_value(guesses.model_input)}{_choices(guesses.alternatives["model_input"])}
  input_example_rows: 5
  # The model's requirements; a bare name is pinned to the installed version.
  pip_requirements: [scikit-learn, numpy, scipy]
  skops_trusted_types: []       # the model's own classes (module.Class) beyond scikit-learn's
  fingerprints_dataset: null    # {{file: {{sha256, ...}}}}, logged as kedro.fingerprint.* tags
  log_input_datasets: true      # the pipeline's file-based inputs as MLflow dataset inputs
  log_trace: true               # a trace per run (node, load, save spans) and timeline.png/.html

# Nodes that receive the file path of some inputs instead of their data, for example
#   my_node: [raw_table]
input_paths: {{}}
"""


LOGGER_BLOCK = f"  {PLUGIN_LOGGER}:\n    level: INFO\n"


def add_logger(logging_file: Path, default_config: Path) -> str:
    """Add the plugin's logger at INFO to the project's logging file; say what was done."""
    if logging_file.exists():
        text = logging_file.read_text(encoding="utf-8")
        if re.search(rf"^\s+{PLUGIN_LOGGER}\s*:", text, re.MULTILINE):
            return f"{logging_file} already configures the {PLUGIN_LOGGER} logger: left as it is"
        created = False
    else:
        text = default_config.read_text(encoding="utf-8")
        created = True
    match = re.search(r"^loggers:[^\n]*\n", text, re.MULTILINE)
    if match:
        text = text[: match.end()] + LOGGER_BLOCK + text[match.end() :]
    else:
        text = text.rstrip("\n") + "\n\nloggers:\n" + LOGGER_BLOCK
    logging_file.parent.mkdir(parents=True, exist_ok=True)
    logging_file.write_text(text, encoding="utf-8")
    verb = "created from Kedro's default logging" if created else "updated"
    return f"{logging_file} {verb}: the {PLUGIN_LOGGER} logger logs at INFO"
