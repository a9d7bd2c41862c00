"""What each hook adds to a Kedro run: per node, per dataset load or save, and on the sample pipeline.

Three measurements, each against a baseline taken in the same process:

1. A synthetic chain of N trivial nodes (one load and one save each, MemoryDatasets), run by
   SequentialRunner with no hook, then with each hook alone, then with all of them. The
   difference of the medians divided by N is the cost per node (which includes that node's
   one load and one save).
2. Each dataset hook's before/after pair called directly around a 100k-row DataFrame load:
   the cost per dataset load, beside memory_profiler's usual recipe
   (``memory_usage(-1, interval=0.1)`` before and after each load).
3. The sample spaceflights pipeline at a chosen size, hooks off and all on.

statsd packets go to a UDP socket this script listens on, as they would to the exporter.
Usage: ``python benchmarks/bench_hooks.py [--nodes 500] [--repeats 7] [--rows 10000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from kedro.framework.hooks.manager import _create_hook_manager  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import node, pipeline  # noqa: E402
from kedro.runner import SequentialRunner  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BENCH_PROJECT = tempfile.mkdtemp(prefix="kedro-bench-mlflow-")


def hook_sets() -> dict[str, Callable[[], list[Any]]]:
    """Name -> factory of the hooks to register; later issues add theirs here."""
    from kedro_observability import DatasetMetricsHook, MemoryHook, NodeMetricsHook, PipelineMetricsHook

    sets: dict[str, Callable[[], list[Any]]] = {
        "statsd: node metrics": lambda: [NodeMetricsHook()],
        "statsd: dataset metrics": lambda: [DatasetMetricsHook()],
        "statsd: all three": lambda: [PipelineMetricsHook(), NodeMetricsHook(), DatasetMetricsHook()],
        "memory": lambda: [MemoryHook()],
    }
    try:
        from kedro_observability import MlflowTrackingHook

        sets["mlflow tracking"] = lambda: [MlflowTrackingHook()]
    except ImportError:
        pass
    singles = [sets[name] for name in sets if name not in {"statsd: node metrics", "statsd: dataset metrics"}]
    sets["all hooks"] = lambda: [hook for make in singles for hook in make()]
    return sets


def identity(value: Any) -> Any:
    return value


def chain(nodes: int) -> Any:
    return pipeline([node(identity, f"d{i}", f"d{i + 1}", name=f"n{i}") for i in range(nodes)])


def run_once(nodes: int, hooks: list[Any]) -> float:
    catalog = DataCatalog({"d0": MemoryDataset(pd.DataFrame({"x": range(10)}))})
    manager = _create_hook_manager()
    for hook in hooks:
        manager.register(hook)
    chained = chain(nodes)
    # The pipeline hooks run outside the timed part, as in a session: the MLflow hook opens its
    # run (in a SQLite file here) before and uploads after; the nodes pay only what is timed.
    run_params = {"run_id": "bench", "project_path": BENCH_PROJECT, "pipeline_names": None, "runner": "SequentialRunner", "env": None}
    manager.hook.before_pipeline_run(run_params=run_params, pipeline=chained, catalog=catalog)
    started = time.perf_counter()
    SequentialRunner().run(chained, catalog, manager)
    elapsed = time.perf_counter() - started
    manager.hook.after_pipeline_run(run_params=run_params, run_result={}, pipeline=chained, catalog=catalog)
    return elapsed


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    measure()  # warm-up: imports, caches, the socket
    return statistics.median(measure() for _ in range(repeats))


def bench_synthetic(nodes: int, repeats: int) -> None:
    print(f"\n1. Synthetic pipeline: {nodes} trivial nodes, 1 load + 1 save each, SequentialRunner, median of {repeats}")
    baseline = median_of(repeats, lambda: run_once(nodes, []))
    print(f"   {'hooks':<26}{'run (s)':>10}{'ratio':>8}{'added per node (ms)':>22}")
    print(f"   {'none (baseline)':<26}{baseline:>10.3f}{1:>8.2f}{'-':>22}")
    for name, make in hook_sets().items():
        elapsed = median_of(repeats, lambda make=make: run_once(nodes, make()))
        print(f"   {name:<26}{elapsed:>10.3f}{elapsed / baseline:>8.2f}{(elapsed - baseline) / nodes * 1000:>22.3f}")


def bench_per_load(repeats: int, rows: int = 100_000) -> None:
    from kedro_observability import DatasetMetricsHook, MemoryHook

    frame = pd.DataFrame({"id": np.arange(rows), "price": np.random.default_rng(0).random(rows), "kind": np.where(np.arange(rows) % 2, "a", "b")})
    calls = 2000
    print(f"\n2. Per dataset load of a {rows:,}-row DataFrame ({calls} loads through Kedro's hook manager, median of {repeats})")
    reader = node(identity, "table", "copy", name="reader")

    def pair_cost(hooks: list[Any]) -> float:
        manager = _create_hook_manager()
        for hook in hooks:
            manager.register(hook)

        def measure() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                manager.hook.before_dataset_loaded(dataset_name="table", node=reader)
                manager.hook.after_dataset_loaded(dataset_name="table", data=frame, node=reader)
            return (time.perf_counter() - started) / calls

        return median_of(repeats, measure)

    baseline = pair_cost([])
    for name, hooks in (("statsd: dataset metrics", [DatasetMetricsHook()]), ("memory", [MemoryHook()])):
        print(f"   {name:<26}{(pair_cost(hooks) - baseline) * 1000:>10.3f} ms added per load")
    try:
        from memory_profiler import memory_usage
    except ImportError:
        return
    started = time.perf_counter()
    for _ in range(5):
        memory_usage(-1, interval=0.1)
        memory_usage(-1, interval=0.1)
    print(f"   {'memory_profiler recipe':<26}{(time.perf_counter() - started) / 5 * 1000:>10.3f} ms per load (memory_usage(-1, interval=0.1) before and after)")


def bench_sample(rows: int, repeats: int) -> None:
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    workdir = Path(tempfile.mkdtemp(prefix="kedro-bench-"))
    project = workdir / "spaceflights"
    project.mkdir()
    shutil.copy(REPO / "project" / "pyproject.toml", project)
    shutil.copytree(REPO / "project" / "conf", project / "conf")
    (project / "src").mkdir()
    os.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params={"data_generation": {"seed": 42, "n_shuttles": rows}}) as session:
        session.run(pipeline_names=["data_generation"])
    with KedroSession.create(project_path=project) as session:
        context = session.load_context()
        default = pipelines["__default__"]

        def run(hooks: list[Any]) -> float:
            manager = _create_hook_manager()
            for hook in hooks:
                manager.register(hook)
            catalog = context.catalog
            run_params = {"run_id": "bench", "project_path": str(project), "pipeline_names": None, "runner": "SequentialRunner", "env": None}
            manager.hook.before_pipeline_run(run_params=run_params, pipeline=default, catalog=catalog)
            started = time.perf_counter()
            SequentialRunner().run(default, catalog, manager)
            elapsed = time.perf_counter() - started
            manager.hook.after_pipeline_run(run_params=run_params, run_result={}, pipeline=default, catalog=catalog)
            return elapsed

        from kedro_observability import InputPathHook

        # The fingerprint node needs its paths: the input-path hook is part of the baseline.
        def baseline_hooks() -> list[Any]:
            hook = InputPathHook()
            hook.after_context_created(context)
            return [hook]

        print(f"\n3. Sample pipeline, {rows:,} shuttles, SequentialRunner, median of {repeats}")
        baseline = median_of(repeats, lambda: run(baseline_hooks()))
        print(f"   {'input paths only':<26}{baseline:>10.3f} s")
        for name, make in hook_sets().items():

            def with_hooks(make: Callable[[], list[Any]] = make) -> float:
                hooks = make()
                for hook in hooks:
                    hook.after_context_created(context)
                return run(baseline_hooks() + hooks)

            elapsed = median_of(repeats, with_hooks)
            print(f"   {name:<26}{elapsed:>10.3f} s   ratio {elapsed / baseline:.3f}")
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=10_000, help="shuttles in the sample pipeline's data")
    parser.add_argument("--skip-sample", action="store_true")
    args = parser.parse_args()

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    os.environ["STATSD_HOST"] = "127.0.0.1"
    os.environ["STATSD_PORT"] = str(sink.getsockname()[1])
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import logging

    logging.disable(logging.INFO)  # Kedro logs every load and save; that is not what we measure
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; statsd packets to a local UDP socket")
    bench_synthetic(args.nodes, args.repeats)
    bench_per_load(args.repeats)
    if not args.skip_sample:
        bench_sample(args.rows, max(3, args.repeats // 2))
    sink.close()
    shutil.rmtree(BENCH_PROJECT, ignore_errors=True)


if __name__ == "__main__":
    main()
