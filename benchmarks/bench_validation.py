"""Time of one data validation: a 100k-row model input table through the catalog validator.

The frame is the sample project's own model input table (generated raw data, then the
project's preprocessing), cut to exactly ``--rows`` rows. The suite is the sample project's
``conf/base/expectations/model_input_table.yml``, read through Kedro's config loader as a
``kedro run`` reads it. The figure is the median time of one
``GreatExpectationsValidator.validate`` (what Kedro's catalog calls on each save of
``model_input_table``) after ``--warmup`` validations, inside a run that keeps the JSON
report (as with MLflow on). Beside it: the same validation through the plugin's hooks
(``SuiteValidator``, GX's public ``ValidationDefinition.run``), the path of 0.2, measured first,
with GX untouched.

Usage: ``python benchmarks/bench_validation.py [--rows 100000] [--repeats 20] [--budget-ms 50] [--profile]``.
Exits with status 1 when the median exceeds the budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parent.parent
DATASET = "model_input_table"


def model_input_table(rows: int):
    from spaceflights.pipelines.data_generation.nodes import generate_raw_data
    from spaceflights.pipelines.data_processing.nodes import (
        create_model_input_table,
        preprocess_companies,
        preprocess_shuttles,
    )

    # About 9% of shuttles have no rating and are dropped by the join.
    companies, shuttles, reviews = generate_raw_data({"seed": 7, "n_shuttles": int(rows * 1.15) + 10})
    table = create_model_input_table(preprocess_shuttles(shuttles), preprocess_companies(companies), reviews)
    if len(table) < rows:
        raise SystemExit(f"generated {len(table)} rows, fewer than {rows}")
    return table.iloc[:rows].reset_index(drop=True)


def sample_config_loader():
    from kedro.config import OmegaConfigLoader

    from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS

    return OmegaConfigLoader(
        conf_source=str(REPO / "project" / "conf"),
        base_env="base",
        default_run_env="local",
        config_patterns={"expectations": EXPECTATIONS_CONFIG_PATTERNS},
    )


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000.0


def median_of(function: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        function()
    return [timed(function) for _ in range(repeats)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    parser.add_argument("--profile", action="store_true", help="print where one validation's time goes (cProfile)")
    options = parser.parse_args()

    from kedro_observability.identity import RunInfo
    from kedro_observability.lifecycle import Ending, ProjectScope, RunContext, RunLifecycle, set_current_project
    from kedro_observability.record import RunRecord
    from kedro_observability.settings import ObservabilitySettings
    from kedro_observability.validation import GreatExpectationsValidator
    from kedro_observability.validation.compiled import compiled_suite, suite_source
    from kedro_observability.validation.engine import SuiteValidator
    from kedro_observability.validation.suites import gx_modules, parse_suites, read_suites

    frame = model_input_table(options.rows)
    loader = sample_config_loader()
    set_current_project(ProjectScope(loader, None))
    import_ms = timed(gx_modules)

    # First, with GX untouched: the hooks' path, GX's public ValidationDefinition.run with
    # BASIC results of every expectation (the catalog validator memoizes a GX function).
    hook_suites = parse_suites(read_suites(loader))
    hook = SuiteValidator({DATASET: hook_suites[DATASET]}, sample_values=5)
    hooks = median_of(lambda: hook.validate(DATASET, frame, "save", "benchmark"), options.warmup, options.repeats)

    # Kedro builds the validator on the first save; building it builds the suite's GX objects.
    built: list[GreatExpectationsValidator] = []
    build_ms = timed(lambda: built.append(GreatExpectationsValidator(suite=DATASET)))
    validator = built[0]

    # Inside a run that keeps the report, as `kedro run` with MLflow on does.
    lifecycle = RunLifecycle()
    context = RunContext(RunInfo.outside_a_session(), ObservabilitySettings())
    context.record = RunRecord()
    lifecycle.begin(context, lambda _: None)
    context.operations.saving(DATASET, "create_model_input_table", frame)

    def validate() -> None:
        validator.validate(frame)

    try:
        times = median_of(validate, options.warmup, options.repeats)
        bare = context.record
        context.record = None
        without_report = median_of(validate, 1, options.repeats)
        context.record = bare

        from kedro_observability.validation.catalog import GreatExpectationsValidationError

        defective = frame.copy()
        defective.loc[defective.index[::1000], "price"] = -1.0
        context.operations.saving(DATASET, "create_model_input_table", defective)

        def validate_defective() -> None:
            try:
                validator.validate(defective)
            except GreatExpectationsValidationError:
                return
            raise SystemExit("the defective table passed its suite")

        failing = median_of(validate_defective, 1, 5)

        if options.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            for _ in range(10):
                validate()
            profile.disable()
            print("where 10 validations' time goes (cProfile, cumulative):")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    finally:
        lifecycle.end(context, Ending.finished())

    median = statistics.median(times)
    expectations = len(compiled_suite(suite_source(DATASET, None)).spec.expectations)
    print(f"{DATASET}: {len(frame):,} rows x {frame.shape[1]} columns, {expectations} expectations")
    print(f"one-time: import GX {import_ms:.0f} ms, build the suite's GX objects {build_ms:.0f} ms")
    print(
        f"catalog validator, per validation (median of {options.repeats} after {options.warmup} warm-up): "
        f"{median:.1f} ms (min {min(times):.1f}, max {max(times):.1f}); without the report "
        f"{statistics.median(without_report):.1f} ms; with 100 failing rows {statistics.median(failing):.1f} ms"
    )
    print(f"hooks' path (ValidationDefinition.run, BASIC): {statistics.median(hooks):.1f} ms (min {min(hooks):.1f}, max {max(hooks):.1f})")
    within = median <= options.budget_ms
    print(f"budget {options.budget_ms:.0f} ms: {'met' if within else 'EXCEEDED'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
