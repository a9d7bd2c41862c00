"""Time of one data validation by the validation hook: a 100k-row model input table.

The frame is the sample project's own model input table (generated raw data, then the
project's preprocessing), cut to exactly ``--rows`` rows. The suite is the sample project's
``conf/base/expectations/model_input_table.yml``, read through Kedro's config loader. The
GX objects are built once, as the hook builds them once per run; the figure is the median
time of one validation after ``--warmup`` validations, measured the way the hook validates
(``SuiteValidator.validate``: GX's run plus turning its result into failures).

Usage: ``python benchmarks/bench_validation.py [--rows 100000] [--repeats 20] [--budget-ms 150]``.
Exits with status 1 when the median exceeds the budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
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


def sample_suites():
    from kedro.config import OmegaConfigLoader

    from kedro_observability.suites import EXPECTATIONS_CONFIG_PATTERNS, parse_suites, read_suites

    loader = OmegaConfigLoader(
        conf_source=str(REPO / "project" / "conf"),
        base_env="base",
        default_run_env="local",
        config_patterns={"expectations": EXPECTATIONS_CONFIG_PATTERNS},
    )
    return parse_suites(read_suites(loader))


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-ms", type=float, default=150.0)
    options = parser.parse_args()

    from kedro_observability.suites import gx_modules
    from kedro_observability.validation import SuiteValidator

    frame = model_input_table(options.rows)
    import_ms = timed(gx_modules)
    suites = sample_suites()
    validator: list[SuiteValidator] = []
    build_ms = timed(lambda: validator.append(SuiteValidator(suites, sample_values=5)))

    def validate() -> None:
        outcome, _ = validator[0].validate(DATASET, frame, "save", "benchmark")
        if not outcome.success:
            raise SystemExit("the clean table failed its suite:\n" + outcome.summary())

    for _ in range(options.warmup):
        validate()
    times = [timed(validate) for _ in range(options.repeats)]
    median = statistics.median(times)

    defective = frame.copy()
    defective.loc[defective.index[::1000], "price"] = -1.0
    failing_ms = statistics.median(
        timed(lambda: validator[0].validate(DATASET, defective, "save", "benchmark")) for _ in range(5)
    )

    print(f"{DATASET}: {len(frame):,} rows x {frame.shape[1]} columns, {len(suites[DATASET].expectations)} expectations")
    print(f"one-time: import GX {import_ms:.0f} ms, build context and {len(suites)} suites {build_ms:.0f} ms")
    print(
        f"per validation (median of {options.repeats} after {options.warmup} warm-up): {median:.1f} ms "
        f"(min {min(times):.1f}, max {max(times):.1f}); with 100 failing rows: {failing_ms:.1f} ms"
    )
    within = median <= options.budget_ms
    print(f"budget {options.budget_ms:.0f} ms: {'met' if within else 'EXCEEDED'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
