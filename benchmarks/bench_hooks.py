"""What each hook adds to a Kedro run: per node, per dataset load, and on the sample pipeline.

Three measurements, each against a baseline taken in the same process, with the
configurations interleaved (baseline, hook A, hook B, ..., baseline, hook A, ...) so that
drift of the machine hits them all alike; the figure is the median of the repeats.

1. A synthetic chain of N trivial nodes (one load and one save each, MemoryDatasets) run by
   SequentialRunner with no hook, with each hook alone and with all of them. The difference
   from the baseline divided by N is the cost per node (its one load and one save included).
2. The dataset hooks' before/after pair called through Kedro's hook manager around a
   100k-row DataFrame: the cost per dataset load, beside memory_profiler's usual recipe
   (``memory_usage(-1, interval=0.1)`` before and after a load).
3. The sample spaceflights pipeline at a chosen size (``--rows``, 1,000,000 works), without
   and with the hooks, configured from the project's own conf/ (validation suites included).

Pipeline hooks (``before_pipeline_run``/``after_pipeline_run``) run outside the timed part, as
they would around a session's run: the MLflow hook opens its run (a SQLite file in a temporary
folder) before, and uploads after. statsd packets go to a UDP socket this script listens on.

Usage: ``python benchmarks/bench_hooks.py [--nodes 500] [--repeats 7] [--rows 10000]``.
"""

from __future__ import annotations

import argparse
import logging
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
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from kedro.framework.hooks.manager import _create_hook_manager  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import node, pipeline  # noqa: E402
from kedro.runner import SequentialRunner  # noqa: E402

from kedro_observability import ObservabilityHooks, ObservabilitySettings  # noqa: E402
from kedro_observability.settings import MemorySettings, MlflowSettings, StatsdSettings, ValidationSettings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HookFactory = Callable[[], list[Any]]


def observability(**enabled: bool) -> ObservabilityHooks:
    """The plugin's hook object with only the named features on (statsd, memory, mlflow,
    validation), driven without a KedroSession through ``ObservabilityHooks(settings=...)``."""
    settings = ObservabilitySettings(
        statsd=StatsdSettings(enabled=enabled.get("statsd", False), host=os.environ["STATSD_HOST"], port=int(os.environ["STATSD_PORT"])),
        memory=MemorySettings(enabled=enabled.get("memory", False), log_loads=False),
        mlflow=MlflowSettings(enabled=enabled.get("mlflow", False), on_unavailable="warn"),
        validation=ValidationSettings(enabled=enabled.get("validation", False)),
    )
    return ObservabilityHooks(settings=settings)


def hook_sets() -> dict[str, HookFactory]:
    """Name -> factory of the hooks to register."""
    sets: dict[str, HookFactory] = {
        "statsd": lambda: [observability(statsd=True)],
        "memory": lambda: [observability(memory=True)],
        "mlflow tracking": lambda: [observability(mlflow=True)],
        "validation": lambda: [observability(validation=True)],
        "all hooks": lambda: [observability(statsd=True, memory=True, mlflow=True, validation=True)],
    }
    return sets


def timed_run(chosen: Any, catalog: Any, hooks: list[Any], project_path: Path, context: Any = None) -> float:
    """Run ``chosen`` with ``hooks``; only the runner's work is timed."""
    manager = _create_hook_manager()
    for hook in hooks:
        if context is not None:
            hook.after_context_created(context=context)
        manager.register(hook)
    run_params = {"run_id": "bench", "project_path": str(project_path), "pipeline_names": None, "runner": "SequentialRunner", "env": None}
    manager.hook.before_pipeline_run(run_params=run_params, pipeline=chosen, catalog=catalog)
    started = time.perf_counter()
    SequentialRunner().run(chosen, catalog, manager)
    elapsed = time.perf_counter() - started
    manager.hook.after_pipeline_run(run_params=run_params, run_result={}, pipeline=chosen, catalog=catalog)
    return elapsed


def interleaved_samples(configurations: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Times of each configuration, measured round-robin after one warm-up round."""
    samples: dict[str, list[float]] = {name: [] for name in configurations}
    for round_number in range(repeats + 1):
        for name, measure in configurations.items():
            elapsed = measure()
            if round_number:
                samples[name].append(elapsed)
    return samples


def interleaved_medians(configurations: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median time of each configuration, measured round-robin after one warm-up round."""
    return {name: statistics.median(values) for name, values in interleaved_samples(configurations, repeats).items()}


def identity(value: Any) -> Any:
    return value


def bench_synthetic(nodes: int, repeats: int, workdir: Path) -> None:
    chained = pipeline([node(identity, f"d{i}", f"d{i + 1}", name=f"n{i}") for i in range(nodes)])

    def measure(make: HookFactory) -> Callable[[], float]:
        def run() -> float:
            catalog = DataCatalog({"d0": MemoryDataset(pd.DataFrame({"x": range(10)}))})
            return timed_run(chained, catalog, make(), workdir)

        return run

    configurations = {"none (baseline)": measure(lambda: [])}
    configurations.update({name: measure(make) for name, make in hook_sets().items()})
    samples = interleaved_samples(configurations, repeats)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["none (baseline)"]
    quartiles = statistics.quantiles(samples["none (baseline)"], n=4)
    print(f"\n1. Synthetic pipeline: {nodes} trivial nodes, 1 load + 1 save each, SequentialRunner, median of {repeats}")
    print(f"   (noise: the baseline's interquartile range is {(quartiles[2] - quartiles[0]) / nodes * 1000:.3f} ms per node)")
    print(f"   {'hooks':<26}{'run (s)':>10}{'ratio':>8}{'added per node (ms)':>22}")
    for name, elapsed in medians.items():
        added = "-" if name == "none (baseline)" else f"{(elapsed - baseline) / nodes * 1000:.3f}"
        print(f"   {name:<26}{elapsed:>10.3f}{elapsed / baseline:>8.2f}{added:>22}")


def bench_per_load(repeats: int, rows: int = 100_000) -> None:
    frame = pd.DataFrame({"id": np.arange(rows), "price": np.random.default_rng(0).random(rows), "kind": np.where(np.arange(rows) % 2, "a", "b")})
    calls = 2000
    reader = node(identity, "table", "copy", name="reader")

    def measure(hooks: list[Any]) -> Callable[[], float]:
        manager = _create_hook_manager()
        for hook in hooks:
            manager.register(hook)

        def run() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                manager.hook.before_dataset_loaded(dataset_name="table", node=reader)
                manager.hook.after_dataset_loaded(dataset_name="table", data=frame, node=reader)
            return (time.perf_counter() - started) / calls

        return run

    medians = interleaved_medians(
        {"none": measure([]), "statsd: dataset metrics": measure([observability(statsd=True)]), "memory": measure([observability(memory=True)])},
        repeats,
    )
    print(f"\n2. Per dataset load of a {rows:,}-row DataFrame ({calls} loads through Kedro's hook manager, median of {repeats})")
    for name in ("statsd: dataset metrics", "memory"):
        print(f"   {name:<26}{(medians[name] - medians['none']) * 1000:>10.3f} ms added per load")

    try:
        from memory_profiler import memory_usage
    except ImportError:
        print("   (memory_profiler is not installed: its recipe is not timed)")
        return

    loads = 5
    started = time.perf_counter()
    for _ in range(loads):
        memory_usage(-1, interval=0.1)
        memory_usage(-1, interval=0.1)
    naive = (time.perf_counter() - started) / loads
    print(f"   {'memory_profiler recipe':<26}{naive * 1000:>10.3f} ms added per load (memory_usage(-1, interval=0.1) before and after)")


def bench_sample(rows: int, repeats: int, workdir: Path) -> None:
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kedro_observability.plugin import hooks as plugin_hooks

    project = workdir / "spaceflights"
    project.mkdir()
    shutil.copy(REPO / "project" / "pyproject.toml", project)
    shutil.copytree(REPO / "project" / "conf", project / "conf")
    # One environment per configuration; the fingerprint node needs its input paths, so
    # the baseline is the plugin with every feature off.
    features = ("statsd", "memory", "mlflow", "validation")
    environments = {"input paths only": "no_features", **{feature: f"only_{feature}" for feature in features}, "all hooks": "base"}
    for name in environments.values():
        if name != "base":
            (project / "conf" / name).mkdir()
            lines = [f"{feature}:\n  enabled: {'true' if name == f'only_{feature}' else 'false'}\n" for feature in features]
            (project / "conf" / name / "observability.yml").write_text("".join(lines))
    (project / "src").mkdir()
    os.chdir(project)
    bootstrap_project(project)
    generation = {"data_generation": {"seed": 42, "n_shuttles": rows}}
    with KedroSession.create(project_path=project, runtime_params=generation) as session:
        session.run(pipeline_names=["data_generation"])
    sessions = {label: KedroSession.create(project_path=project, env=None if env == "base" else env) for label, env in environments.items()}
    default = pipelines["__default__"]

    def measure(label: str) -> Callable[[], float]:
        def run() -> float:
            # The plugin's own hook object, as Kedro registers it: loading the context hands
            # it that environment's observability.yml and suites.
            context = sessions[label].load_context()
            return timed_run(default, context.catalog, [plugin_hooks], project)

        return run

    medians = interleaved_medians({label: measure(label) for label in environments}, repeats)
    baseline = medians["input paths only"]
    print(f"\n3. Sample pipeline, {rows:,} shuttles, 7 nodes, SequentialRunner, median of {repeats} (the runner's work only)")
    print(f"   {'hooks':<26}{'run (s)':>10}{'ratio':>8}")
    for name, elapsed in medians.items():
        print(f"   {name:<26}{elapsed:>10.3f}{elapsed / baseline:>8.2f}")


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
    logging.disable(logging.WARNING)  # Kedro logs every load and save; that is not what we measure
    workdir = Path(tempfile.mkdtemp(prefix="kedro-bench-"))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; statsd packets to a local UDP socket")
    try:
        bench_synthetic(args.nodes, args.repeats, workdir)
        bench_per_load(args.repeats)
        if not args.skip_sample:
            bench_sample(args.rows, max(3, args.repeats // 2), workdir)
    finally:
        sink.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
