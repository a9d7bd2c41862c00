"""Data validation with Great Expectations 1.x, in memory, while the pipeline runs.

The data Kedro already holds is validated: a dataset with a suite (see :mod:`.suites`) is
validated after it is loaded and before it is saved, so nothing is read twice, and under the
``fail`` policy bad data is never written: the error is raised from ``before_dataset_saved``,
before the dataset's ``save``. Under ``warn`` the failure is logged and counted and the run
goes on. Each validation is counted in statsd and its full GX result is kept as a JSON
artifact of the MLflow run.

Outputs of the run are validated before each save and not again when a later node loads
them. Inputs of the run are validated once per run, on their first load: under ThreadRunner
a node that loads an input while another thread validates it waits for that validation and
fails with it; under ParallelRunner the workers agree through claim files in a folder of the
run (the first to load an input validates it, the others wait for its verdict), so every
runner counts the same validations.
"""

from __future__ import annotations

import datetime
import json
import logging
import hashlib
import math
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_observability.validation.suites import ExpectationSuiteError, SuiteSpec, gx_modules

if TYPE_CHECKING:
    from kedro_observability.settings import ValidationSettings

logger = logging.getLogger(__name__)

_ACTIONS = {"load": "loaded for node", "save": "saved by node"}


class DataValidationError(Exception):
    """A dataset failed its expectation suite under the fail policy."""


@dataclass(frozen=True)
class FailedExpectation:
    """What a data engineer needs to find the bad rows."""

    expectation: str
    column: str | None
    unexpected_count: int | None
    element_count: int | None
    samples: tuple[Any, ...]
    observed: Any
    error: str | None

    def describe(self) -> str:
        where = f" on column '{self.column}'" if self.column is not None else ""
        if self.error:
            return f"{self.expectation}{where}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            share = ""
            if self.element_count:
                share = f" ({100.0 * self.unexpected_count / self.element_count:.2g}%)"
            total = f" of {self.element_count} rows" if self.element_count is not None else ""
            examples = f", e.g. {', '.join(_show_value(value) for value in self.samples)}" if self.samples else ""
            values = "value" if self.unexpected_count == 1 else "values"
            return f"{self.expectation}{where}: {self.unexpected_count} unexpected {values}{total}{share}{examples}"
        return f"{self.expectation}{where}: observed {_show_value(self.observed)}"


@dataclass(frozen=True)
class ValidationOutcome:
    """The result of validating one dataset once."""

    dataset: str
    operation: str
    node: str
    policy: str
    source: str
    evaluated: int
    failures: tuple[FailedExpectation, ...]
    elapsed_ms: float

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = (
            f"Dataset '{self.dataset}' ({_ACTIONS[self.operation]} '{self.node}') failed "
            f"{len(self.failures)} of {self.evaluated} expectations of its suite in {self.source}:"
        )
        return "\n".join([head, *(f"  - {failure.describe()}" for failure in self.failures)])


class SuiteValidator:
    """The GX objects of one run in one process, built once: an ephemeral context, a pandas
    data source with one dataframe batch definition, and per dataset a suite and its
    validation definition.

    GX keeps the batch it validates in the data source's execution engine, so two threads
    validating through one batch definition can validate each other's data; validations are
    serialised by a lock. That costs nothing measurable under ThreadRunner (GX's work is
    pure Python, bound by the GIL), and sharing one batch definition means the engine holds
    on to at most one frame, the last one validated, until the run ends.
    """

    def __init__(self, suites: dict[str, SuiteSpec], sample_values: int) -> None:
        gx, _ = gx_modules()
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.suites = suites
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._result_format = {"result_format": "BASIC", "partial_unexpected_count": sample_values}
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        batches = context.data_sources.add_pandas("kedro").add_dataframe_asset("data")
        batch_definition = batches.add_batch_definition_whole_dataframe("whole")
        self._definitions = {}
        for dataset, suite in suites.items():
            expectations = [spec.build() for spec in suite.expectations]
            gx_suite = context.suites.add(gx.ExpectationSuite(name=dataset, expectations=expectations))
            self._definitions[dataset] = context.validation_definitions.add(
                gx.ValidationDefinition(name=dataset, data=batch_definition, suite=gx_suite)
            )

    def validate(self, dataset: str, data: Any, operation: str, node: str) -> tuple[ValidationOutcome, Any]:
        """Validate ``data`` against the suite of ``dataset``: the outcome and GX's result."""
        import pandas as pd

        suite = self.suites[dataset]
        if not isinstance(data, pd.DataFrame):
            raise ExpectationSuiteError(
                f"The suite of '{dataset}' ({suite.source}) validates pandas DataFrames, but "
                f"'{dataset}' was {_ACTIONS[operation]} '{node}' as a {type(data).__name__}. "
                "Remove the suite, or validate a dataset that holds a DataFrame."
            )
        started = time.perf_counter()
        with self._lock:
            result = self._definitions[dataset].run(
                batch_parameters={"dataframe": data}, result_format=self._result_format
            )
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        failures = tuple(_failure(item) for item in result.results if not item.success)
        outcome = ValidationOutcome(
            dataset, operation, node, suite.policy, suite.source, len(result.results), failures, elapsed_ms
        )
        return outcome, result


class ValidationRun:
    """Validation during one run in one process: the validator, and which datasets it has
    validated (inputs are validated on their first load, outputs before each save).

    Each outcome is handed to ``report`` (statsd, the run record) before a failure under the
    fail policy is raised, so that a failed validation is counted and kept in any case.
    """

    def __init__(
        self,
        suites: dict[str, SuiteSpec],
        settings: ValidationSettings,
        produced: frozenset[str],
        report: Callable[[ValidationOutcome, Any], None],
        shared: Path | None = None,
    ) -> None:
        self.settings = settings
        self.produced = produced
        self.report = report
        self.validator = SuiteValidator(suites, settings.sample_values)
        self.lock = threading.Lock()
        self.claims: dict[str, Future] = {}
        # Created by the main process before any worker forks, so that every worker sees it.
        self.shared = shared or Path(tempfile.mkdtemp(prefix="kedro-observability-validation-"))
        self._owner_pid = os.getpid()

    def for_this_process(self) -> ValidationRun:
        """This run's validation, rebuilt in a forked ParallelRunner worker: a copied lock may
        be held by a thread that does not exist there. Costs milliseconds; GX is imported."""
        if self.validator.pid == os.getpid():
            return self
        return ValidationRun(self.validator.suites, self.settings, self.produced, self.report, self.shared)

    def close(self) -> None:
        """Remove the run's claim files (the main process, once the run has ended)."""
        if os.getpid() == self._owner_pid:
            shutil.rmtree(self.shared, ignore_errors=True)

    def check(self, dataset: str, data: Any, operation: str, node: str) -> None:
        """Validate ``data`` if ``dataset`` has a suite; raise :class:`DataValidationError` under fail."""
        if dataset not in self.validator.suites:
            return
        if operation == "load" and dataset in self.produced:
            return  # validated before it was saved
        with self.lock:
            claim = self.claims.get(dataset)
            if operation == "load" and claim is not None:
                mine = False
            else:
                claim = self.claims[dataset] = Future()
                mine = True
        if not mine:
            claim.result()  # raises the first validation's error, if it failed under fail
            return
        try:
            if operation == "save" or self._claim_across_processes(dataset) or not self._shared_verdict(dataset):
                self._validate_and_publish(dataset, data, operation, node)
        except BaseException as error:
            claim.set_exception(error)
            raise
        claim.set_result(None)

    def _claim_file(self, dataset: str, suffix: str) -> Path:
        return self.shared / (hashlib.sha1(dataset.encode()).hexdigest() + suffix)

    def _claim_across_processes(self, dataset: str) -> bool:
        """True if this process is the run's first to load ``dataset``: it validates it."""
        try:
            descriptor = os.open(self._claim_file(dataset, ".claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        except OSError:
            return True  # no shared folder (removed, or not writable): validate here
        with os.fdopen(descriptor, "w") as claim:
            claim.write(str(os.getpid()))
        return True

    def _validate_and_publish(self, dataset: str, data: Any, operation: str, node: str) -> None:
        if operation != "load":
            self._validate(dataset, data, operation, node)
            return
        verdict: BaseException | None = None
        try:
            self._validate(dataset, data, operation, node)
        except BaseException as error:
            verdict = error
            raise
        finally:
            self._publish_verdict(dataset, verdict)

    def _publish_verdict(self, dataset: str, verdict: BaseException | None) -> None:
        try:
            payload = pickle.dumps(verdict)
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled travels as text
            payload = pickle.dumps(DataValidationError(str(verdict)))
        temporary = self._claim_file(dataset, f".{os.getpid()}.{threading.get_ident()}")
        try:
            temporary.write_bytes(payload)
            temporary.replace(self._claim_file(dataset, ".verdict"))
        except OSError:
            pass  # the run has ended and removed the folder: nobody waits any more

    def _shared_verdict(self, dataset: str) -> bool:
        """Wait for the process that validates ``dataset`` and share its outcome (raise its
        error under fail); False if that process died without a verdict: validate here."""
        verdict_file, claim_file = self._claim_file(dataset, ".verdict"), self._claim_file(dataset, ".claim")
        while not verdict_file.exists():
            try:
                claimer = claim_file.read_text()
                if claimer:  # empty for the instant between creating the claim and writing it
                    os.kill(int(claimer), 0)
            except (ProcessLookupError, FileNotFoundError):
                return verdict_file.exists() and self._shared_verdict(dataset)
            except PermissionError:
                pass
            time.sleep(0.005)
        verdict = pickle.loads(verdict_file.read_bytes())
        if verdict is not None:
            raise verdict
        return True

    def _validate(self, dataset: str, data: Any, operation: str, node: str) -> None:
        try:
            outcome, result = self.validator.validate(dataset, data, operation, node)
        except ExpectationSuiteError as error:
            if self.validator.suites[dataset].policy != "warn":
                raise
            logger.warning("%s The suite's policy is warn: the run goes on, '%s' unvalidated.", error, dataset)
            return
        self.report(outcome, result)
        if outcome.success:
            logger.info(
                "Data validation of '%s' passed: %d expectations in %.0f ms.",
                dataset,
                outcome.evaluated,
                outcome.elapsed_ms,
            )
        elif outcome.policy == "warn":
            logger.warning("%s\nThe suite's policy is warn: the run goes on.", outcome.summary())
        else:
            consequence = "was not saved" if operation == "save" else f"node '{node}' did not run"
            raise DataValidationError(
                f"{outcome.summary()}\nThe suite's policy is fail: '{dataset}' {consequence}. Fix the "
                f"data upstream, or set 'policy: warn' in {outcome.source} to let runs go on."
            )


def _failure(item: Any) -> FailedExpectation:
    config = item.expectation_config
    arguments = {key: value for key, value in config.kwargs.items() if key not in ("batch_id", "column")}
    shown = ", ".join(f"{key}={_show_value(value)}" for key, value in arguments.items())
    result = item.result or {}
    return FailedExpectation(
        expectation=f"{config.type}({shown})",
        column=config.kwargs.get("column"),
        unexpected_count=result.get("unexpected_count"),
        element_count=result.get("element_count"),
        samples=tuple(result.get("partial_unexpected_list") or ()),
        observed=result.get("observed_value"),
        error=_exception_message(item.exception_info),
    )


def _exception_message(info: Any) -> str | None:
    # GX reports one exception either flat or keyed by the metric that raised it.
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    messages = [
        str(each.get("exception_message"))
        for each in info.values()
        if isinstance(each, dict) and each.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def report_json(outcome: ValidationOutcome, result: Any) -> str:
    """GX's full result with what Kedro knows of the validation, as a JSON artifact."""
    report = result.to_json_dict()
    report.setdefault("meta", {})["kedro"] = {
        "dataset": outcome.dataset,
        "operation": outcome.operation,
        "node": outcome.node,
        "policy": outcome.policy,
        "suite_file": outcome.source,
        "elapsed_ms": round(outcome.elapsed_ms, 1),
    }
    return json.dumps(report, indent=2, default=str)


def _show_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    text = value.isoformat() if isinstance(value, datetime.date) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
