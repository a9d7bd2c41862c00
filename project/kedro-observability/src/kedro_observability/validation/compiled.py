"""The Great Expectations objects of the catalog validators' suites: built once per process.

Kedro builds a :class:`~kedro_observability.validation.catalog.GreatExpectationsValidator`
wherever it validates (ParallelRunner's workers included, once per task) and may call it from
several threads at once, so a validator holds nothing of GX itself. Its suite's GX objects
(an ephemeral context, a pandas data source per suite, the suite and a validator bound to
it) are built here on first use, once per process and suite, and shared; a forked worker
builds its own. GX is imported on a thread of its own as soon as a catalog declares such a
validator (:func:`prefetch`), so that the first validation does not wait for it.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kedro_observability.lifecycle import current_project
from kedro_observability.validation.engine import ValidationOutcome, _failure, report_json
from kedro_observability.validation.suites import SuiteConfig, SuiteSpec, _parse_suite, gx_modules

if TYPE_CHECKING:
    from kedro_observability.compat import BoundGxValidator

logger = logging.getLogger(__name__)

_INLINE = "the inline expectations of its validator: in catalog.yml"
# GX computes every expectation's success with this; the unexpected values quoted in
# messages and reports are fetched afterwards for the failed expectations only.
_PASS_OR_FAIL = {"result_format": "BOOLEAN_ONLY"}


# ---- suites, and their GX objects once per process --------------------------------------------


@dataclass(frozen=True)
class SuiteSource:
    """Where a validator's expectations come from, as raw configuration."""

    name: str
    body: Mapping[str, Any]
    source: str
    """The file that defines it, or the inline options, for messages."""

    @property
    def key(self) -> str:
        return json.dumps([self.name, self.source, self.body], sort_keys=True, default=repr)


def suite_source(suite: str | None, expectations: list[Any] | None) -> SuiteSource:
    """The suite that a validator's options name; ``ValueError`` for options that name none."""
    if (suite is None) == (expectations is None):
        raise ValueError(
            "give either 'suite' (the key of a suite in conf/<env>/expectations/) or "
            "'expectations' (a list, as in a suite file) in the validator's options, "
            f"not {'both' if suite is not None else 'neither'}"
        )
    if suite is not None and (not isinstance(suite, str) or not suite):
        raise ValueError(f"'suite' must be the name of a suite in conf/<env>/expectations/, got {suite!r}")
    if expectations is not None and (not isinstance(expectations, list) or not expectations):
        raise ValueError(f"'expectations' must be a non-empty list of expectations, got {expectations!r}")
    if suite is None:
        return SuiteSource("inline suite", {"expectations": expectations}, _INLINE)
    config = _project_suites(suite)
    body = config.raw.get(suite)
    if body is None:
        close = difflib.get_close_matches(suite, sorted(str(name) for name in config.raw), n=3)
        hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
        known = ", ".join(sorted(str(name) for name in config.raw)) or "none"
        raise ValueError(
            f"no suite '{suite}' in conf/<env>/expectations/ (suites: {known}).{hint} Name a key of a "
            f"suite file, or give the expectations inline (options: {{expectations: [...]}})."
        )
    return SuiteSource(suite, body, config.source(suite))


def _project_suites(suite: str) -> SuiteConfig:
    project = current_project()
    if project is None:
        raise ValueError(
            f"the suite '{suite}' is read from conf/<env>/expectations/ through the project's config "
            "loader, which the plugin gets when a KedroSession creates the project's context; no "
            "session created one in this process (a catalog built by hand, or a ParallelRunner "
            "worker started with 'spawn'). Use the catalog of a KedroSession (kedro run, kedro "
            "ipython, KEDRO_MP_CONTEXT=fork), or give the expectations inline: options: {expectations: [...]}"
        )
    return project.suites()


class CompiledSuite:
    """The GX objects of one suite in one process: a pandas data source of its own (so that
    suites never share the engine that holds the frame), its suite, and a validator built
    once (:class:`~kedro_observability.compat.BoundGxValidator`)."""

    def __init__(self, spec: SuiteSpec, context: Any, index: int) -> None:
        gx, _ = gx_modules()
        self.spec = spec
        self._lock = threading.Lock()
        name = f"kedro-{index}-{spec.dataset}"
        batches = context.data_sources.add_pandas(name).add_dataframe_asset("data")
        batch_definition = batches.add_batch_definition_whole_dataframe("whole")
        self._suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[each.build() for each in spec.expectations]))
        # The suite's order, for messages: GX validates grouped by column.
        self._order = {configuration.id: position for position, configuration in enumerate(self._suite.expectation_configurations)}
        from kedro_observability.compat import bind_gx_validator

        self._bound: BoundGxValidator | None = bind_gx_validator(context, batch_definition, self._suite)
        self._definition = None
        if self._bound is None:
            self._definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_definition, suite=self._suite))

    def validate(
        self, frame: Any, *, dataset: str, operation: str, node: str | None, policy: str, sample_values: int
    ) -> tuple[ValidationOutcome, list[Any]]:
        """The outcome of one validation of ``frame``, and GX's result of each expectation."""
        detail = {"result_format": "BASIC", "partial_unexpected_count": sample_values}
        started = time.perf_counter()
        with self._lock:
            results = self._run(frame, _PASS_OR_FAIL)
            failed = [result for result in results if not result.success]
            if failed:
                # Counts and sample values, for the failed expectations only.
                again = self._run(frame, detail, [result.expectation_config for result in failed])
                results = [result for result in results if result.success] + again
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        results.sort(key=lambda result: self._order.get(result.expectation_config.id, len(self._order)))
        failures = tuple(_failure(result) for result in results if not result.success)
        outcome = ValidationOutcome(dataset, operation, node or "", policy, self.spec.source, len(results), failures, elapsed_ms)
        return outcome, results

    def _run(self, frame: Any, result_format: dict[str, Any], configurations: list[Any] | None = None) -> list[Any]:
        if self._bound is not None:
            return self._bound.run(frame, result_format, configurations)
        assert self._definition is not None
        return list(self._definition.run(batch_parameters={"dataframe": frame}, result_format=result_format).results)

    def report(self, outcome: ValidationOutcome, results: list[Any]) -> str:
        """GX's results as one suite result, with what Kedro knows, as a JSON artifact."""
        import great_expectations
        from great_expectations.core import ExpectationSuiteValidationResult

        passed = sum(1 for result in results if result.success)
        suite_result = ExpectationSuiteValidationResult(
            success=passed == len(results),
            results=results,
            suite_name=self.spec.dataset,
            statistics={
                "evaluated_expectations": len(results),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(results) - passed,
                "success_percent": 100.0 * passed / len(results) if results else None,
            },
            meta={"great_expectations_version": great_expectations.__version__},
        )
        return report_json(outcome, suite_result)


class _Compiled:
    """Every :class:`CompiledSuite` of this process, and their GX context."""

    lock = threading.Lock()
    context: Any = None
    suites: ClassVar[dict[str, CompiledSuite]] = {}


def compiled_suite(source: SuiteSource, key: str | None = None) -> CompiledSuite:
    """The GX objects of ``source`` in this process, built on first use (GX imported then,
    if the background import has not done it). Raises :class:`ExpectationSuiteError` for a
    suite that is not valid, with its file and entry named. ``key``: ``source.key``, if known."""
    key = key or source.key
    compiled = _Compiled.suites.get(key)
    if compiled is not None:
        return compiled
    spec = _parse_suite(source.name, source.body, source.source, None)
    with _Compiled.lock:
        compiled = _Compiled.suites.get(key)
        if compiled is None:
            compiled = _Compiled.suites[key] = CompiledSuite(spec, _gx_context(), len(_Compiled.suites))
    return compiled


def _gx_context() -> Any:
    """This process's ephemeral GX context: in memory, analytics and progress bars off. Hold ``_Compiled.lock``."""
    if _Compiled.context is None:
        gx, _ = gx_modules()
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

        from kedro_observability.compat import memoize_gx_expectation_types

        memoize_gx_expectation_types()
        _Compiled.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
    return _Compiled.context


def _forget_in_child() -> None:
    # A forked worker may have been copied while another thread held these locks or was
    # half-way through GX: it builds its own (about 10 ms a suite; GX stays imported).
    _Compiled.lock = threading.Lock()
    _Compiled.context = None
    _Compiled.suites = {}


os.register_at_fork(after_in_child=_forget_in_child)


# ---- the background import ---------------------------------------------------------------------


class _Prefetch:
    thread: threading.Thread | None = None


def prefetch(sources: list[SuiteSource]) -> None:
    """Import GX and build ``sources`` on a thread of its own (once per process), so that the
    first validation does not wait 3 s for GX. A suite that fails to build here is built
    again, and its error raised, by its first validation."""
    if _Prefetch.thread is not None and _Prefetch.thread.is_alive():
        return
    sources = [source for source in sources if source.key not in _Compiled.suites]
    if not sources:
        return

    def build() -> None:
        for source in sources:
            try:
                compiled_suite(source)
            except Exception as error:  # noqa: BLE001 - raised again where it is used
                logger.debug("kedro_observability: suite %s not prepared: %s", source.name, error)

    _Prefetch.thread = threading.Thread(target=build, name="kedro-observability-gx-import", daemon=True)
    _Prefetch.thread.start()


def wait_for_prefetch() -> None:
    """Wait for the background import, if one runs: before the first node, whose imports
    (scipy, pandas: GX imports them too) must not meet modules half imported on that thread,
    and before a fork, whose child would hold copies of import locks that no thread of it
    releases (a ParallelRunner worker needs GX too)."""
    thread = _Prefetch.thread
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join()


def _reset_prefetch_in_child() -> None:
    _Prefetch.thread = None


os.register_at_fork(before=wait_for_prefetch, after_in_child=_reset_prefetch_in_child)
