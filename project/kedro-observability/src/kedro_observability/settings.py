"""The hooks' settings: one validated object built from ``observability.yml`` and the environment.

Every hook reads the same :class:`ObservabilitySettings`. It is loaded through the project's
Kedro config loader (the ``observability`` config pattern), then the environment variables
of the stack's contract override it, then it is checked: an unknown key or a value of the
wrong type raises :class:`SettingsError` naming the key and the file it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kedro_observability.conf_files import config_documents

logger = logging.getLogger(__name__)

CONFIG_KEY = "observability"
"""The key under which the project's config loader serves this file."""

CONFIG_PATTERNS = ["observability*", "observability*/**"]
"""The files the plugin adds to the project's config loader (:mod:`.config`)."""


class SettingsError(ValueError):
    """A setting in observability.yml (or its environment override) is not valid."""


@dataclass(frozen=True)
class StatsdSettings:
    """Where the statsd hooks send their packets."""

    enabled: bool = True
    host: str = "localhost"
    port: int = 9125

    def problems(self) -> dict[str, str]:
        if not 1 <= self.port <= 65535:
            return {"port": f"must be a UDP port between 1 and 65535, got {self.port}"}
        if not self.host.strip():
            return {"host": "must name a host, got an empty string"}
        return {}


@dataclass(frozen=True)
class MemorySettings:
    """Memory tracking of dataset loads and node runs (memory.py)."""

    enabled: bool = True
    interval_seconds: float = 0.05
    """How often a running node's resident memory is sampled, in a background thread."""
    log_loads: bool = True
    """Log "Loading <dataset> consumed <n> MiB" after every load."""

    def problems(self) -> dict[str, str]:
        if not 0.001 <= self.interval_seconds <= 60:
            return {"interval_seconds": f"must be between 0.001 and 60 seconds, got {self.interval_seconds}"}
        return {}


@dataclass(frozen=True)
class MlflowSettings:
    """Experiment tracking in MLflow (tracking.py)."""

    enabled: bool = True
    tracking_uri: str | None = None
    """None: a local SQLite file inside the project (no server needed)."""
    experiment_name: str | None = None
    """None: the project's name."""
    on_unavailable: Literal["fail", "warn"] = "fail"
    """What to do when the tracking server cannot be reached before the first node."""
    request_timeout_seconds: int = 5
    """Bound of the reachability check and of each MLflow HTTP request."""
    request_max_retries: int = 2
    """Retries of a failed MLflow HTTP request (MLflow's own default retries for ~4 minutes)."""
    long_params: Literal["truncate", "tag", "fail"] = "truncate"
    """Parameter values longer than MLflow accepts (6000 characters)."""
    metrics_dataset: str | None = None
    """Dataset holding the evaluation metrics: a mapping of names to numbers."""
    model_dataset: str | None = None
    """Dataset holding the trained scikit-learn model."""
    model_name: str = "model"
    registered_model_name: str | None = None
    """Also register the model under this name in the model registry."""
    model_input_example_dataset: str | None = None
    """Dataset whose first rows are the model's input example and give its signature."""
    input_example_rows: int = 5
    pip_requirements: list[str] = field(default_factory=lambda: ["scikit-learn", "numpy", "scipy", "skops"])
    """The model's requirements; a bare name is pinned to the installed version."""
    skops_trusted_types: list[str] = field(default_factory=list)
    """Classes of the model (``module.Class``) beyond scikit-learn's that MLflow's skops
    format may save and load: the project's own estimators, say."""
    fingerprints_dataset: str | None = None
    """Dataset of raw-file fingerprints ({name: {sha256, size_bytes, ...}}), logged as tags."""
    log_input_datasets: bool = True
    """Log the pipeline's input tables as MLflow dataset inputs, with their digests."""
    log_trace: bool = True
    """Log a trace of the run (a span per node, load and save) and its timeline (PNG, HTML)."""
    spool_folder: str = "data/observability-spool"
    """Where what could not reach the server is kept for ``kedro observability replay``
    (relative to the project, or absolute)."""
    replay_at_start: bool = False
    """Replay the spool while the next run's nodes run (in the MLflow helper process)."""
    warm_helper_seconds: int = 0
    """Keep the MLflow helper process this many seconds after a run, for the next ``kedro run``
    of the same project (MLflow imported, its store open); 0: it ends with its run."""

    def problems(self) -> dict[str, str]:
        if self.request_timeout_seconds <= 0:
            return {"request_timeout_seconds": f"must be more than 0 seconds, got {self.request_timeout_seconds}"}
        if self.request_max_retries < 0:
            return {"request_max_retries": f"must be 0 or more, got {self.request_max_retries}"}
        if not 0 <= self.warm_helper_seconds <= 86400:
            return {"warm_helper_seconds": f"must be between 0 (the helper ends with its run) and 86400 seconds, got {self.warm_helper_seconds}"}
        if self.input_example_rows < 1:
            return {"input_example_rows": f"must be 1 or more, got {self.input_example_rows}"}
        if not self.spool_folder.strip():
            return {"spool_folder": "must name a folder (relative to the project, or absolute), got an empty string"}
        if not self.model_name.strip():
            return {"model_name": "must name the logged model, got an empty string"}
        for name in ("experiment_name", "registered_model_name"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                return {name: "must be a name, or null for the default; got an empty string"}
        return {}


@dataclass(frozen=True)
class ValidationSettings:
    """Data validation with Great Expectations (validation.py, suites in conf/*/expectations/)."""

    enabled: bool = True
    policy_override: Literal["fail", "warn"] | None = None
    """fail or warn for every suite, whatever its own ``policy`` says; None: each suite decides."""
    sample_values: int = 5
    """Unexpected values quoted per failed expectation in errors, logs and the JSON report."""

    def problems(self) -> dict[str, str]:
        if self.sample_values < 0:
            return {"sample_values": f"must be 0 or more, got {self.sample_values}"}
        return {}


@dataclass(frozen=True)
class ObservabilitySettings:
    """All settings of the kedro_observability hooks."""

    statsd: StatsdSettings = field(default_factory=StatsdSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    input_paths: dict[str, list[str]] = field(default_factory=dict)
    """Node name -> names of the inputs that the node receives as file paths."""


_SECTIONS = [f.name for f in dataclasses.fields(ObservabilitySettings)]

# Contract: these environment variables win over observability.yml.
ENVIRONMENT_OVERRIDES: dict[str, tuple[str, ...]] = {
    "STATSD_HOST": ("statsd", "host"),
    "STATSD_PORT": ("statsd", "port"),
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
}


def load_settings(config_loader: Any) -> ObservabilitySettings:
    """Load, override from the environment and validate the settings of a Kedro project."""
    raw = _read_config(config_loader)
    overridden = apply_environment(raw)

    def locate(key: str) -> str:
        return locate_key(config_loader, key)

    return parse_settings(overridden, source=locate)


def apply_environment(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return a copy of ``raw`` with the contract's environment variables applied."""
    environ = os.environ if environ is None else environ
    result = _deep_copy(raw)
    for variable, path in ENVIRONMENT_OVERRIDES.items():
        value = environ.get(variable)
        if value is None or value == "":
            continue
        section = result
        for key in path[:-1]:
            existing = section.get(key)
            section[key] = dict(existing) if isinstance(existing, Mapping) else {}
            section = section[key]
        section[path[-1]] = value
    return result


def parse_settings(raw: Mapping[str, Any], source: str | Callable[[str], str] = "observability.yml") -> ObservabilitySettings:
    """Build :class:`ObservabilitySettings` from plain data, or raise :class:`SettingsError`.

    ``source`` names where a key came from, for error messages: a fixed description or a
    function from the dotted key to the file that holds it.
    """
    locate = source if callable(source) else (lambda _key: source)
    return _build_dataclass(ObservabilitySettings, raw, "", locate)


def _read_config(config_loader: Any) -> Mapping[str, Any]:
    # Imported here so that the settings can be parsed without Kedro installed.
    from kedro.config import MissingConfigException

    _refuse_non_mapping_files(config_loader)
    try:
        return config_loader[CONFIG_KEY] or {}
    except KeyError:
        logger.warning(
            "kedro_observability: the project's config loader (%s) serves no '%s' files, so "
            "observability.yml is not read and the defaults apply. Give it the config pattern "
            "'%s': %s in settings.py (CONFIG_LOADER_ARGS['config_patterns']).",
            type(config_loader).__name__,
            CONFIG_KEY,
            CONFIG_KEY,
            CONFIG_PATTERNS,
        )
    except MissingConfigException:
        logger.info("kedro_observability: no observability.yml found; using the defaults.")
    except Exception as error:  # noqa: BLE001 - OmegaConf's errors name no file
        files = ", ".join(str(path) for path, _ in config_documents(config_loader, CONFIG_KEY)) or "observability.yml"
        raise SettingsError(
            f"{files} could not be read as the plugin's settings ({type(error).__name__}: {error}). "
            "Its top level must be a mapping of sections (statsd, memory, validation, mlflow, "
            "input_paths) to their keys; `kedro observability init --force` writes a valid file."
        ) from None
    return {}


def _refuse_non_mapping_files(config_loader: Any) -> None:
    """Name the file whose top level is not a mapping, before OmegaConf fails on it namelessly."""
    for path, content in config_documents(config_loader, CONFIG_KEY):
        if not isinstance(content, Mapping):
            raise SettingsError(
                f"The top level of {path} must be a mapping of sections ({', '.join(_SECTIONS)}) "
                f"to their keys, got {_describe(content)}. Write it as `statsd:`, `mlflow:`, ... at "
                "the start of a line; `kedro observability init --force` writes a valid file."
            )


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in raw.items()}


def _build_dataclass(cls: type, raw: Any, prefix: str, locate: Callable[[str], str]) -> Any:
    if not isinstance(raw, Mapping):
        key = prefix.rstrip(".") or "(top level)"
        raise SettingsError(
            f"Setting '{key}' in {locate(key)} must be a mapping of keys to values, got {_describe(raw)}."
        )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            dotted = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise SettingsError(
                f"Unknown setting '{dotted}' in {locate(dotted)}.{hint} "
                f"Known keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(known))}."
            )
    values = {}
    for name in known & set(raw):
        values[name] = _convert(raw[name], hints[name], f"{prefix}{name}", locate)
    built = cls(**values)
    # A section may check its values beyond their types (ranges, combinations).
    for name, problem in (built.problems() if hasattr(built, "problems") else {}).items():
        key = f"{prefix}{name}"
        raise SettingsError(f"Setting '{key}' in {locate(key)} {problem}.")
    return built


def _convert(value: Any, hint: Any, key: str, locate: Callable[[str], str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, key + ".", locate)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, inner, key, locate)
    if origin is Literal:
        if value in args:
            return value
        raise _type_error(key, locate, "one of " + ", ".join(repr(a) for a in args), value)
    if origin is dict:
        key_type, value_type = args
        if not isinstance(value, Mapping):
            raise _type_error(key, locate, "a mapping", value)
        return {
            _convert(k, key_type, key, locate): _convert(v, value_type, f"{key}.{k}", locate)
            for k, v in value.items()
        }
    if origin is list:
        (item_type,) = args
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _type_error(key, locate, "a list", value)
        return [_convert(item, item_type, f"{key}[{i}]", locate) for i, item in enumerate(value)]
    return _convert_scalar(value, hint, key, locate)


def _convert_scalar(value: Any, hint: type, key: str, locate: Callable[[str], str]) -> Any:
    # Environment variables (directly or through oc.env) arrive as strings, so numbers
    # and booleans written as text are accepted; anything else must already match.
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[value.strip().lower()]
        raise _type_error(key, locate, "true or false", value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _type_error(key, locate, "an integer", value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _type_error(key, locate, "a number", value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, locate, "a string", value)
    raise TypeError(f"kedro_observability: no converter for {hint!r} (setting '{key}')")


# How a setting, or an environment variable of the plugin, spells a boolean.
BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _type_error(key: str, locate: Callable[[str], str], expected: str, value: Any) -> SettingsError:
    return SettingsError(f"Setting '{key}' in {locate(key)} must be {expected}, got {_describe(value)}.")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def locate_key(config_loader: Any, dotted_key: str) -> str:
    """Name the file a setting came from, so that the user knows what to edit."""
    for variable, path in ENVIRONMENT_OVERRIDES.items():
        if dotted_key == ".".join(path) and os.environ.get(variable):
            return f"the environment variable {variable}"
    # The run environment's files win, so they are searched first.
    documents = list(reversed(config_documents(config_loader, CONFIG_KEY)))
    # Mapping keys may contain dots themselves (namespaced node names), so try the
    # longest prefix of the key that a file holds.
    parts = dotted_key.split("[")[0].split(".")
    for length in range(len(parts), 0, -1):
        for candidate, content in documents:
            if _holds_key(content, parts[:length]):
                return str(candidate)
    return f"the '{CONFIG_KEY}' configuration"


def _holds_key(content: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(content, Mapping) or part not in content:
            return False
        content = content[part]
    return True
