"""Great Expectations as a Kedro catalog validator: the ``validator:`` key of catalog.yml.

Kedro 1.7 applies a dataset's declared validator on every load and save, in every runner
(its KEP-10)::

    shuttles:
      type: pandas.CSVDataset
      filepath: data/01_raw/shuttles.csv
      validator:
        class: kedro_observability.validation.GreatExpectationsValidator
        on: [load]          # load, save or both (Kedro's default)
        severity: error     # error: the load or save fails; warn: Kedro logs it, the run goes on
        options: {suite: shuttles}

``options`` name a suite of ``conf/<env>/expectations/`` (``suite``, its key there), or give
the expectations inline (``expectations``, a list in the format of the suite files, see
:mod:`.suites`). A failed validation raises :class:`GreatExpectationsValidationError`, a
Kedro ``DataValidationError`` whose message names the dataset, the node (told by the
plugin's dataset hooks) and each failed expectation with its column, unexpected count and
share and sample values. Under ``severity: error`` Kedro raises it before the dataset's
``save``: bad data is never written. Each validation in a run is counted in statsd
(``kedro_validation_runs_total``, ``kedro_validation_failed_expectations``) and its JSON
report kept for the MLflow run, through the plugin's run context
(:func:`kedro_observability.lifecycle.current_run`).

Kedro builds a validator from its options wherever it validates, ParallelRunner's workers
included (once per task, from the pickled catalog), and may call it from several threads at
once. So building one costs nothing and imports nothing: the GX objects of a suite are built
once per process on first use (:mod:`.compiled`), shared by every validator of that suite,
and each validation holds that suite's lock. Great Expectations is imported in the
background as soon as a catalog declares such a validator, not on the pipeline's thread.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kedro.validation.exceptions import CheckFailure, ValidationConfigurationError
from kedro.validation.exceptions import DataValidationError as KedroDataValidationError

from kedro_observability.lifecycle import ProjectScope, current_project, current_run, set_current_project
from kedro_observability.validation.compiled import CompiledSuite, compiled_suite, prefetch, suite_source
from kedro_observability.validation.engine import DataValidationError, FailedExpectation, ValidationOutcome
from kedro_observability.validation.suites import ExpectationSuiteError, SuiteConfig, _non_pandas_kind

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

    from kedro_observability.settings import ObservabilitySettings, ValidationSettings

logger = logging.getLogger(__name__)

VALIDATOR_PATH = "kedro_observability.validation.GreatExpectationsValidator"
"""The ``class`` of a ``validator:`` entry."""

_OPTIONS = ("suite", "expectations")
_ACTIONS = {"load": "loaded for node", "save": "saved by node"}


class GreatExpectationsConfigurationError(ValidationConfigurationError, ExpectationSuiteError):
    """A ``validator:`` entry that could never validate: a bad option, an unknown suite, a
    dataset that does not hold pandas DataFrames."""


class GreatExpectationsValidationError(KedroDataValidationError, DataValidationError):
    """A dataset failed the expectations of its catalog validator.

    Kedro's ``DataValidationError``, with :attr:`failures` for Kedro's API and this
    plugin's message: Kedro sets ``dataset_name`` and ``mode`` after it is raised, and they
    are read when the message is rendered.
    """

    def __init__(self, outcome: ValidationOutcome, failures: list[CheckFailure]) -> None:
        super().__init__(outcome.dataset, dataset_name=outcome.dataset, failures=failures)
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a ParallelRunner worker, it is pickled to the main process: rebuilt from
        # the outcome, with what Kedro set on it (dataset_name, mode, validator).
        return (type(self), (self.outcome, self.failures), dict(self.__dict__))

    def __str__(self) -> str:
        outcome = self.outcome
        dataset = self.dataset_name or outcome.dataset
        operation = outcome.operation if outcome.operation in _ACTIONS else self.mode
        return _describe(outcome, dataset, operation, _severity_of(dataset))


class GreatExpectationsValidator:
    """A Kedro validator (``validate(data) -> data``) running a Great Expectations suite
    on pandas DataFrames; see the module's documentation."""

    def __init__(self, suite: str | None = None, expectations: list[Any] | None = None) -> None:
        """Check the options and get the suite's GX objects of this process (built once per
        process and suite, GX imported then if the background import has not done it).

        Kedro builds a validator when it first validates its dataset in a process and raises
        what this raises as a configuration error, whatever the severity: a suite with an
        unknown expectation or argument stops the run there, naming its file and entry; it is
        never taken for data that failed (which ``severity: warn`` would only log).
        """
        self._source = suite_source(suite, expectations)
        self.suite = suite
        self.expectations = list(expectations) if expectations is not None else None
        self._key = self._source.key
        self._pid = os.getpid()
        self._compiled: CompiledSuite | None = None
        if _validation_settings(None).enabled:
            self._compiled = compiled_suite(self._source, self._key)

    def __repr__(self) -> str:
        return f"GreatExpectationsValidator(suite={self.suite!r})" if self.suite else "GreatExpectationsValidator(expectations=[...])"

    def __getstate__(self) -> dict[str, Any]:
        return {"suite": self.suite, "expectations": self.expectations}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Rebuilt from its options: the suite is found again in the process it lands in.
        self.__init__(**state)  # type: ignore[misc]

    def validate(self, data: Any) -> Any:
        """Return ``data`` unchanged, or raise :class:`GreatExpectationsValidationError`."""
        run = current_run()
        settings = _validation_settings(run.settings if run is not None else None)
        operation = run.operations.find(data) if run is not None else None
        dataset = operation.dataset if operation is not None else self._source.name
        if not settings.enabled:
            _say_once(f"off:{dataset}", "kedro_observability: validation.enabled is false in observability.yml: '%s' is not validated.", dataset)
            return data
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(data, pandas.DataFrame):
            where = f" {_ACTIONS[operation.operation]} '{operation.node}'" if operation is not None and operation.node else ""
            raise ExpectationSuiteError(
                f"The Great Expectations validator of '{dataset}' ({self._source.source}) validates pandas "
                f"DataFrames, but '{dataset}' was{where} a {type(data).__name__}. Remove its validator: "
                "from catalog.yml, or declare it on a dataset that holds a DataFrame."
            )
        severity = _severity_of(dataset)
        policy = "warn" if severity == "warn" or settings.policy_override == "warn" else "fail"
        compiled = self._compiled
        if compiled is None or self._pid != os.getpid():
            # Validation was off when it was built, or this is a forked copy: this process's.
            compiled = self._compiled = compiled_suite(self._source, self._key)
            self._pid = os.getpid()
        outcome, results = compiled.validate(
            data,
            dataset=dataset,
            operation=operation.operation if operation is not None else "unknown",
            node=operation.node if operation is not None else None,
            policy=policy,
            sample_values=settings.sample_values,
        )
        if run is not None:
            run.report_validation(outcome, lambda: compiled.report(outcome, results))
        if outcome.success:
            logger.info("Data validation of '%s' passed: %d expectations in %.0f ms.", dataset, outcome.evaluated, outcome.elapsed_ms)
            return data
        if settings.policy_override == "warn":
            # Kedro would raise under severity: error; the environment asked for warnings.
            logger.warning("%s\nvalidation.policy_override is warn in observability.yml: the run goes on.", _describe(outcome, dataset, outcome.operation, None, consequence=False))
            return data
        raise GreatExpectationsValidationError(outcome, [_check_failure(failure) for failure in outcome.failures])


# ---- the catalog --------------------------------------------------------------------------------


def declared_validators(catalog: CatalogProtocol) -> dict[str, Any]:
    """The catalog's Great Expectations validators: dataset name -> Kedro ``ValidatorSpec``."""
    specs = getattr(catalog, "validator_specs", None) or {}
    return {name: spec for name, spec in specs.items() if _is_ours(spec.class_path)}


def _is_ours(class_path: str) -> bool:
    # Only this package's paths are imported: another validator's package may be slow to
    # import, or missing (Kedro reports that itself, when it builds that validator).
    if not class_path.startswith("kedro_observability."):
        return False
    from kedro.utils import load_obj

    try:
        found = load_obj(class_path)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(found, type) and issubclass(found, GreatExpectationsValidator)


def catalog_created(catalog: CatalogProtocol, config_loader: Any, settings: ObservabilitySettings | None, suites: SuiteConfig | None) -> None:
    """Check the catalog's Great Expectations validators and start importing GX for them.

    Raises :class:`GreatExpectationsConfigurationError` for a validator that could never
    pass (its dataset is a Spark, polars, Dask or Ibis type; an unknown suite; a bad
    option), naming the dataset: when the catalog is created, not at the first save.
    """
    scope = ProjectScope(config_loader, settings, _suites=suites)
    set_current_project(scope)
    declared = declared_validators(catalog)
    if not declared:
        return
    for name, spec in declared.items():
        check_validator(catalog, name, spec.options)
        _warn_of_a_policy(name, spec, scope)
    scope.declared.update(declared)
    if settings is None or settings.validation.enabled:
        prefetch([suite_source(spec.options.get("suite"), spec.options.get("expectations")) for spec in declared.values()])


def check_validator(catalog: CatalogProtocol, name: str, options: Mapping[str, Any]) -> None:
    """Refuse the validator of ``name`` if it could never pass; see :func:`catalog_created`."""
    unknown = sorted(str(option) for option in options if option not in _OPTIONS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], _OPTIONS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise GreatExpectationsConfigurationError(
            f"The validator: of '{name}' in catalog.yml has the unknown option(s) {', '.join(unknown)}.{hint} "
            f"Its options: {', '.join(_OPTIONS)}."
        )
    kind = _non_pandas_kind(catalog, name)
    if kind is not None:
        raise GreatExpectationsConfigurationError(
            f"The catalog declares a Great Expectations validator on '{name}', whose type {kind} loads "
            "and saves another kind of frame than the pandas DataFrames it validates. Remove the "
            f"validator: of '{name}', or validate a pandas dataset (for example the output of a node "
            "that converts the frame with toPandas())."
        )
    try:
        suite_source(options.get("suite"), options.get("expectations"))
    except ValueError as error:
        raise GreatExpectationsConfigurationError(f"The validator: of '{name}' in catalog.yml cannot validate: {error}") from None


def _warn_of_a_policy(name: str, spec: Any, scope: ProjectScope) -> None:
    """A suite written for the hooks says ``policy: warn``; under ``validator:`` Kedro's severity decides."""
    suite = spec.options.get("suite")
    body = scope.suites().raw.get(suite) if suite else None
    if isinstance(body, Mapping) and body.get("policy") == "warn" and spec.severity != "warn":
        logger.warning(
            "kedro_observability: the suite '%s' (%s) says policy: warn, which only the plugin's hooks "
            "read; the validator: of '%s' in catalog.yml has severity %s, so a failure stops the run. "
            "Set 'severity: warn' there to go on warning, and drop 'policy' from the suite.",
            suite, scope.suites().source(suite), name, spec.severity,
        )


def check_pipeline(pipeline: Pipeline, catalog: CatalogProtocol) -> dict[str, Any]:
    """Check the validators of the pipeline's datasets that come from factory patterns (Kedro
    captures those when a dataset is first used); return every declared validator."""
    project = current_project()
    declared = dict(project.declared) if project is not None else {}
    resolver = getattr(catalog, "config_resolver", None)
    if resolver is None:
        return declared
    from kedro.validation import ValidatorSpec

    for name in sorted(pipeline.datasets() - set(declared)):
        try:
            if name in resolver.config or not resolver.match_dataset_pattern(name):
                continue
            config = resolver.resolve_pattern(name)
        except Exception:  # noqa: BLE001 - another catalog implementation: checked when used
            continue
        entry = config.get("validator") if isinstance(config, Mapping) else None
        if entry is None:
            continue
        spec = ValidatorSpec.from_dataset_config(name, entry)
        if _is_ours(spec.class_path):
            check_validator(catalog, name, spec.options)
            declared[name] = spec
    if project is not None:
        project.declared.update(declared)
    return declared


def suites_left_to_hooks(config: SuiteConfig, declared: Mapping[str, Any]) -> SuiteConfig:
    """The suites the plugin's hooks still validate: those of datasets without a Great
    Expectations ``validator:``, and not named by one (a dataset is never validated twice)."""
    taken = set(declared) | {str(spec.options.get("suite")) for spec in declared.values() if spec.options.get("suite")}
    raw = {name: body for name, body in config.raw.items() if str(name) not in taken}
    return SuiteConfig(raw, config.files)


# ---- messages ----------------------------------------------------------------------------------


def _describe(outcome: ValidationOutcome, dataset: str, operation: str | None, severity: str | None, consequence: bool = True) -> str:
    node = outcome.node
    where = f" ({_ACTIONS[operation]} '{node}')" if node and operation in _ACTIONS else ""
    head = (
        f"Dataset '{dataset}'{where} failed {len(outcome.failures)} of {outcome.evaluated} expectations "
        f"of its suite in {outcome.source}:"
    )
    lines = [head, *(f"  - {failure.describe()}" for failure in outcome.failures)]
    if consequence and operation in _ACTIONS:
        lines.append(_consequence(dataset, operation, node, severity))
    return "\n".join(lines)


def _consequence(dataset: str, operation: str, node: str, severity: str | None) -> str:
    if severity == "warn":
        return f"Its validator's severity is warn: '{dataset}' was {'saved' if operation == 'save' else 'loaded'} all the same and the run goes on."
    if operation == "save":
        stopped = f"'{dataset}' was not saved"
    else:
        stopped = f"node '{node}' did not run" if node else f"'{dataset}' was not loaded"
    told = "Its validator's severity is error" if severity == "error" else "Under severity: error (Kedro's default)"
    return (
        f"{told}: {stopped}. Fix the data upstream, or set 'severity: warn' in the validator: of "
        f"'{dataset}' in catalog.yml to let runs go on."
    )


def _check_failure(failure: FailedExpectation) -> CheckFailure:
    """Kedro's structured form of one failed expectation (``DataValidationError.failures``)."""
    return CheckFailure(
        message=failure.describe(),
        check=failure.expectation,
        column=failure.column,
        failure_count=failure.unexpected_count if failure.unexpected_count is not None else 1,
        failure_examples=list(failure.samples),
    )


def _severity_of(dataset: str) -> str | None:
    project = current_project()
    spec = project.declared.get(dataset) if project is not None else None
    return getattr(spec, "severity", None)


def _validation_settings(settings: ObservabilitySettings | None) -> ValidationSettings:
    if settings is None:
        project = current_project()
        settings = project.settings if project is not None else None
    if settings is None:
        from kedro_observability.settings import ValidationSettings

        return ValidationSettings()
    return settings.validation


_said: set[str] = set()


def _say_once(key: str, message: str, *arguments: Any) -> None:
    if key not in _said:
        _said.add(key)
        logger.info(message, *arguments)


__all__ = [
    "VALIDATOR_PATH",
    "GreatExpectationsConfigurationError",
    "GreatExpectationsValidationError",
    "GreatExpectationsValidator",
]
