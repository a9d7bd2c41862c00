"""Expectation suites as configuration: one YAML file per dataset under ``conf/<env>/expectations/``.

A suite file maps the dataset's catalog name to its policy and its expectations::

    companies:
      policy: fail        # fail: the run stops and the data is not written; warn: log, go on
      expectations:
        - expect_column_values_to_not_be_null: {column: id}
        - ExpectColumnValuesToBeUnique: {column: id}

Each expectation is a Great Expectations 1.x expectation, named by its class
(``ExpectColumnValuesToBeUnique``) or its snake_case type, with the arguments of that class.
Kedro's config loader serves the files (the ``expectations`` pattern), so environments,
``${oc.env:...}`` and ``${runtime_params:...}`` work as in any other configuration file.
When the run starts, every entry is built into its GX expectation: an unknown name or
argument stops the run with the file and the entry named.

GX models a datetime bound as a date unless it is given a timestamp, and a date never
compares with a datetime column, so ISO dates or times given as ``min_value`` or
``max_value`` become ``pandas.Timestamp``. Write regular expressions with non-capturing
groups, ``(?:...)``: pandas warns about capturing groups on every validation.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kedro_observability.conf_files import config_documents

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

EXPECTATIONS_KEY = "expectations"
"""The key under which the project's config loader serves the suites."""

EXPECTATIONS_CONFIG_PATTERNS = ["expectations*", "expectations*/**"]
"""The files the plugin adds to the project's config loader for the suites."""

Policy = Literal["fail", "warn"]
POLICIES: tuple[str, ...] = ("fail", "warn")
SUITE_KEYS = ("policy", "expectations")

# Set by the hook on every validation, or internal to GX: not for suite files.
_RESERVED_ARGUMENTS = frozenset({"id", "batch_id", "rendered_content", "result_format", "catch_exceptions", "windows"})
_ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_TIMESTAMP_ARGUMENTS = ("min_value", "max_value")


class ExpectationSuiteError(ValueError):
    """A suite in conf/*/expectations is not valid, or does not fit the data it is for."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One checked entry of a suite file."""

    expectation_class: type
    arguments: dict[str, Any]

    def build(self) -> Any:
        """A new GX expectation object (GX gives each one an id when it joins a suite)."""
        return self.expectation_class(**self.arguments)


@dataclass(frozen=True)
class SuiteSpec:
    """The checked suite of one dataset."""

    dataset: str
    policy: Policy
    expectations: tuple[ExpectationSpec, ...]
    source: str
    """The file that defines it, for messages."""


@dataclass(frozen=True)
class SuiteConfig:
    """The suites as the config loader serves them, and the file each comes from."""

    raw: Mapping[str, Any]
    files: Mapping[str, str]

    def source(self, dataset: str) -> str:
        return self.files.get(dataset, f"the '{EXPECTATIONS_KEY}' configuration")


def read_suites(config_loader: Any) -> SuiteConfig:
    """Read the project's suites; none when it has no ``expectations`` pattern or file."""
    from kedro.config import MissingConfigException

    try:
        raw = config_loader[EXPECTATIONS_KEY] or {}
    except KeyError:
        logger.warning(
            "kedro_observability: the project's config loader serves no '%s' files, so no data "
            "is validated. Give it the config pattern '%s': %s in settings.py.",
            EXPECTATIONS_KEY,
            EXPECTATIONS_KEY,
            EXPECTATIONS_CONFIG_PATTERNS,
        )
        return SuiteConfig({}, {})
    except MissingConfigException:
        logger.info("kedro_observability: no expectation suites in conf/; no data is validated.")
        return SuiteConfig({}, {})
    return SuiteConfig(raw, _suite_files(config_loader))


def parse_suites(config: SuiteConfig, policy_override: Policy | None = None) -> dict[str, SuiteSpec]:
    """Check every suite and build every expectation once; raise :class:`ExpectationSuiteError`."""
    return {
        str(dataset): _parse_suite(str(dataset), body, config.source(str(dataset)), policy_override)
        for dataset, body in config.raw.items()
    }


def check_datasets(
    suites: Mapping[str, SuiteSpec],
    pipeline: Pipeline,
    every_pipeline: Callable[[], list[Pipeline]],
    catalog: CatalogProtocol,
) -> None:
    """Refuse a suite that would never run or could never pass, before the first node.

    A suite must name a dataset of the catalog or of a pipeline of the project (all of them
    are read, ``every_pipeline``, only when the running one does not have it: a run of one
    pipeline is not failed by a suite for another), and that dataset must be able to hold a
    pandas DataFrame.
    """
    running = set(pipeline.datasets())
    known: set[str] | None = None
    for dataset, suite in suites.items():
        if dataset not in running and not _in_catalog(catalog, dataset):
            if known is None:
                known = {name for each in every_pipeline() for name in each.datasets()}
            if dataset not in known:
                close = difflib.get_close_matches(dataset, sorted(known), n=3)
                hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
                raise ExpectationSuiteError(
                    f"The suite '{dataset}' in {suite.source} is for no dataset of the catalog or of "
                    f"any pipeline of the project.{hint} Its key must be the dataset's catalog name, "
                    "namespace included."
                )
        kind = _non_pandas_kind(catalog, dataset)
        if kind is not None:
            raise ExpectationSuiteError(
                f"The suite '{dataset}' in {suite.source} validates pandas DataFrames, but the catalog "
                f"declares '{dataset}' as {kind}, which loads and saves another kind of frame. "
                "Remove the suite, or validate a pandas dataset (for example the output of a node "
                "that converts it with toPandas())."
            )


# Dataset types whose data is a frame of another library: their module path names it.
_OTHER_FRAME_LIBRARIES = ("spark", "polars", "dask", "ibis", "snowpark", "daft")


def _non_pandas_kind(catalog: CatalogProtocol, dataset: str) -> str | None:
    """The dataset's type when it holds Spark, polars, Dask or Ibis data; else None.

    The type its catalog entry declares is read as written, without building the dataset:
    building it imports its library, and a project without pyspark (say) would get an
    import error here, and no refusal, for a suite that could never pass.
    """
    if not _in_catalog(catalog, dataset):
        return None
    kind = path = _declared_type(catalog, dataset)
    if kind is None:
        try:
            entry = catalog.get(dataset)
        except Exception:  # noqa: BLE001 - a catalog that cannot build the entry reports it itself
            return None
        if entry is None:
            return None
        kind, path = type(entry).__name__, f"{type(entry).__module__}.{type(entry).__name__}"
    return kind if any(library in path.lower() for library in _OTHER_FRAME_LIBRARIES) else None


def _declared_type(catalog: CatalogProtocol, dataset: str) -> str | None:
    """The ``type`` of the dataset's catalog entry or factory pattern; None without one."""
    try:
        resolver = catalog.config_resolver  # type: ignore[attr-defined]
        config = resolver.config.get(dataset)
        if config is None and (resolver.match_dataset_pattern(dataset) or resolver.match_user_catch_all_pattern(dataset)):
            config = resolver.resolve_pattern(dataset)
    except Exception:  # noqa: BLE001 - another catalog implementation: its datasets are built instead
        return None
    declared = config.get("type") if isinstance(config, Mapping) else None
    if isinstance(declared, type):
        return f"{declared.__module__}.{declared.__qualname__}"
    return declared if isinstance(declared, str) else None


_GX_IMPORT = threading.Lock()
"""One thread at a time imports GX: two importing its circular modules at once can each
see the other's half initialised (``ImportError: ... partially initialized module``)."""


def gx_modules() -> tuple[Any, Any]:
    """Import Great Expectations (about 3 s, once per process) with its analytics off."""
    # Read by GX when a context is created; the context is also configured with analytics off.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with _GX_IMPORT, warnings.catch_warnings():
        # GX 1.24 imports sre_constants and sre_parse, deprecated since Python 3.11: noise in
        # every run's log that no user can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations
        import great_expectations.expectations

    return great_expectations, great_expectations.expectations


@lru_cache(maxsize=1)
def expectation_classes() -> dict[str, type]:
    """Every core GX expectation, by class name and by snake_case type."""
    _, expectations = gx_modules()
    classes: dict[str, type] = {}
    for name in dir(expectations):
        candidate = getattr(expectations, name)
        if (
            name.startswith("Expect")
            and isinstance(candidate, type)
            and issubclass(candidate, expectations.Expectation)
            and getattr(candidate, "expectation_type", None)
        ):
            classes[name] = candidate
            classes[candidate.expectation_type] = candidate
    return classes


def _parse_suite(dataset: str, body: Any, source: str, policy_override: Policy | None) -> SuiteSpec:
    if not isinstance(body, Mapping):
        raise ExpectationSuiteError(
            f"The suite '{dataset}' in {source} must be a mapping with 'expectations' (a list) "
            f"and optionally 'policy' (fail or warn), got {_show(body)}."
        )
    for key in body:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ExpectationSuiteError(
                f"Unknown key '{dataset}.{key}' in {source}.{hint} A suite has: {', '.join(SUITE_KEYS)}."
            )
    policy = body.get("policy", "fail")
    if policy not in POLICIES:
        raise ExpectationSuiteError(f"'{dataset}.policy' in {source} must be fail or warn, got {_show(policy)}.")
    entries = body.get("expectations")
    if not isinstance(entries, list) or not entries:
        raise ExpectationSuiteError(
            f"'{dataset}.expectations' in {source} must be a non-empty list of expectations, "
            f"got {_show(entries)}."
        )
    expectations = tuple(
        _parse_entry(entry, f"{dataset}.expectations[{index}]", source) for index, entry in enumerate(entries)
    )
    return SuiteSpec(dataset, policy_override or policy, expectations, source)


def _parse_entry(entry: Any, where: str, source: str) -> ExpectationSpec:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise ExpectationSuiteError(
            f"{where} in {source} must map one expectation name to its arguments, for example "
            f"'- expect_column_values_to_not_be_null: {{column: id}}', got {_show(entry)}."
        )
    ((name, arguments),) = entry.items()
    classes = expectation_classes()
    expectation_class = classes.get(str(name))
    if expectation_class is None:
        close = difflib.get_close_matches(str(name), sorted(classes), n=2)
        hint = f" Did you mean {' or '.join(repr(match) for match in close)}?" if close else ""
        raise ExpectationSuiteError(
            f"{where} in {source}: unknown expectation '{name}'.{hint} Use a Great Expectations "
            "1.x expectation: its class name (ExpectColumnValuesToNotBeNull) or snake_case type."
        )
    where = f"{where} ({expectation_class.expectation_type})"
    arguments = {} if arguments is None else arguments
    if not isinstance(arguments, Mapping):
        raise ExpectationSuiteError(f"{where} in {source}: the arguments must be a mapping, got {_show(arguments)}.")
    allowed = sorted(set(expectation_class.__fields__) - _RESERVED_ARGUMENTS)
    for argument in arguments:
        if argument not in allowed:
            raise ExpectationSuiteError(f"{where} in {source}: {_unknown_argument(str(argument), allowed)}")
    arguments = {str(key): _timestamp_bound(key, value) for key, value in arguments.items()}
    try:
        expectation_class(**arguments)
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise ExpectationSuiteError(f"{where} in {source}: {_describe_invalid(error, arguments)}") from None
    return ExpectationSpec(expectation_class, arguments)


def _timestamp_bound(key: Any, value: Any) -> Any:
    if key in _TIMESTAMP_ARGUMENTS and isinstance(value, str) and _ISO_TIMESTAMP.match(value):
        import pandas as pd

        return pd.Timestamp(value)
    return value


def _unknown_argument(argument: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(argument, allowed, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown argument '{argument}'.{hint} Its arguments: {', '.join(allowed)}."


def _describe_invalid(error: Exception, arguments: Mapping[str, Any]) -> str:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    problems: dict[str, list[str]] = {}
    for item in errors():
        field = ".".join(str(part) for part in item.get("loc", ())) or "(arguments)"
        problems.setdefault(field, [])
        if item.get("msg") not in problems[field]:
            problems[field].append(str(item.get("msg")))
    parts = []
    for field, messages in problems.items():
        if messages == ["field required"]:
            parts.append(f"missing argument '{field}'")
        elif field in arguments:
            # A union type lists one message per alternative: the first few say enough.
            parts.append(f"argument '{field}' = {_show(arguments[field])} is not valid ({'; '.join(messages[:3])})")
        else:
            parts.append(f"{field}: {'; '.join(messages[:3])}")
    return "; ".join(parts) + "."


def _in_catalog(catalog: Any, dataset: str) -> bool:
    try:
        return dataset in catalog
    except TypeError:  # a catalog without __contains__
        return False


def _suite_files(config_loader: Any) -> dict[str, str]:
    """Dataset name -> the file that defines its suite, the run environment's file winning."""
    files: dict[str, str] = {}
    for path, content in config_documents(config_loader, EXPECTATIONS_KEY):
        if isinstance(content, Mapping):
            shown = _relative_to_project(path, Path(config_loader.conf_source))
            files.update({str(key): shown for key in content})
    return files


def _relative_to_project(path: Path, conf_source: Path) -> str:
    try:
        return path.resolve().relative_to(conf_source.resolve().parent).as_posix()
    except ValueError:
        return str(path)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

