"""A Kedro runner on a ``dask.distributed`` cluster, with the plugin's hooks in the workers.

    kedro run --runner kedro_observability.runners.DaskRunner

The scheduler is ``DASK_SCHEDULER_ADDRESS`` (``tcp://host:8786``) when set; otherwise a
``LocalCluster`` of ``DASK_N_WORKERS`` worker processes (2 by default, one thread each) on
127.0.0.1 is started for the run and closed after it.

Each node is a Dask task submitted once its dependencies' tasks are; its inputs are read from
the catalog in the worker, and outputs that the catalog keeps in memory live in the cluster
(a ``distributed.Variable`` per dataset and run) until the run ends. In the worker, the task
builds a hook manager as Kedro's ParallelRunner does for its workers (the project's hooks and
the plugins' entry points), and gives the kedro-observability hooks the run of the
``kedro run`` that submitted it (:class:`WorkerRun`: its identity, settings, statsd address,
MLflow run and the project's expectation suites): node and dataset metrics go to statsd from
the worker, memory is sampled in the worker, and what the MLflow run keeps (durations, peaks,
sizes, the model and its example, validation reports) comes back with the task's result and
lands in the one MLflow run of the ``kedro run``, as under ParallelRunner.

A node that fails raises in the worker: its failure is counted there (on_node_error), the task
fails, and the run fails with the node's error, after the tasks already running ended.
"""

from __future__ import annotations

import os
import pickle
import shutil
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from itertools import chain
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, MemoryDataset
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager
    from typing import Self

DEFAULT_WORKERS = 2


class DaskDataset(AbstractDataset):
    """A dataset held by the cluster's scheduler, for the outputs a catalog keeps in memory."""

    def __init__(self, name: str, run_key: str) -> None:
        self._variable_name = f"kedro-{run_key}-{name}"

    def _variable(self) -> Any:
        from distributed import Variable

        return Variable(self._variable_name)

    def load(self) -> Any:
        return self._variable().get(timeout=600)

    def save(self, data: Any) -> None:
        self._variable().set(data)

    def release(self) -> None:
        try:
            self._variable().delete()
        except Exception:  # noqa: BLE001, S110 - already gone, or the cluster is closing
            pass

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"variable": self._variable_name}


# ---------------------------------------------------------------------------
# The run, as a worker gets it
# ---------------------------------------------------------------------------


@dataclass
class WorkerRun:
    """What a worker needs of the driver's run (picklable): built from the plugin's current
    run in the process of ``kedro run``, adopted by the plugin's hooks in each worker."""

    key: str
    info: Any = None
    settings: Any = None
    tracked: dict[str, Any] | None = None
    project: tuple[Any, Any, Any] | None = None

    @classmethod
    def of_current_run(cls, key: str) -> WorkerRun:
        from kedro_observability.lifecycle import current_project, current_run

        run = cls(key)
        context = current_run()
        if context is None:
            return run
        run.info, run.settings = context.info, context.settings
        if context.tracked is not None:
            skipped = {"worker", "catalog", "record", "lock", "seen", "sent", "unsent"}
            run.tracked = {
                each.name: getattr(context.tracked, each.name)
                for each in fields(context.tracked)
                if each.name not in skipped
            }
        project = current_project()
        if project is not None and project.settings is not None:
            run.project = (project.settings, project.declared, project.suites())
        return run


@dataclass
class Harvest:
    """What the plugin's hooks kept in a worker for the MLflow run during one task."""

    metrics: dict[str, float] = field(default_factory=dict)
    kept: list[tuple[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)


class _WorkerState:
    """Per worker process: the project configured once, the statsd publisher once per run."""

    lock = threading.Lock()
    package: str | None = None
    publishers: dict[str, Any] = {}  # noqa: RUF012 - one process-wide cache


def _hook_manager(package_name: str | None) -> PluginManager:
    """The project's hooks and the plugins' entry points, as Kedro's ParallelRunner registers
    them in a worker it starts, the project configured first (a Dask worker is no fork)."""
    from kedro.framework.hooks.manager import (
        _create_hook_manager,
        _register_hooks,
        _register_hooks_entry_points,
    )
    from kedro.framework.project import configure_project, settings

    with _WorkerState.lock:
        if package_name and _WorkerState.package != package_name:
            configure_project(package_name)
            _WorkerState.package = package_name
    manager = _create_hook_manager()
    _register_hooks(manager, settings.HOOKS)
    _register_hooks_entry_points(manager, settings.DISABLE_HOOKS_FOR_PLUGINS)
    return manager


class _Adopted:
    """The plugin's hooks in this worker observe ``run`` for one task; then the harvest."""

    def __init__(self, run: WorkerRun) -> None:
        self.run = run
        self.record: Any = None
        self.harvest = Harvest()

    def __enter__(self) -> Self:
        if self.run.info is None:
            return self
        from kedro_observability import lifecycle
        from kedro_observability.metrics.emitter import emitter_for
        from kedro_observability.metrics.publish import StatsdPublisher
        from kedro_observability.plugin import hooks
        from kedro_observability.record import RunRecord
        from kedro_observability.tracking.run import TrackedRun

        settings = self.run.settings
        context = lifecycle.RunContext(self.run.info, settings)
        if settings.statsd.enabled:
            with _WorkerState.lock:
                publisher = _WorkerState.publishers.get(self.run.key)
                if publisher is None:
                    emitter = emitter_for(settings.statsd.host, settings.statsd.port)
                    emitter.connect()
                    publisher = _WorkerState.publishers[self.run.key] = StatsdPublisher(
                        emitter, self.run.info
                    )
            context.publisher = publisher
        if self.run.tracked is not None:
            self.record = RunRecord()
            context.record = self.record
            # main_pid is the driver's: this process keeps data in the record, as a fork would.
            context.tracked = TrackedRun(
                worker=None, catalog=None, record=self.record, **self.run.tracked
            )  # type: ignore[arg-type]
        if self.run.project is not None:
            project_settings, declared, suites = self.run.project
            lifecycle.set_current_project(
                lifecycle.ProjectScope(None, project_settings, declared, suites)
            )
        hooks.adopt_run(context)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.run.info is None:
            return
        from kedro_observability.plugin import hooks

        hooks.adopt_run(None)
        if self.record is None:
            return
        try:
            recorded = self.record.collect()
            self.harvest.metrics = dict(recorded.metrics)
            self.harvest.spans = recorded.spans  # each with the worker's pid and thread
            self.harvest.artifacts = [
                (path.name, path.read_bytes()) for path in recorded.artifacts
            ]
            for path in sorted(self.record.kept_folder.glob("*.pkl")):
                key, pickled = pickle.loads(path.read_bytes())  # the value apart (TrackedRun.keep)
                self.harvest.kept.append((key, pickle.loads(pickled)))
        finally:
            self.record.close()
            shutil.rmtree(self.record.folder, ignore_errors=True)


def _run_node(
    node: Node,
    catalog: CatalogProtocol,
    is_async: bool,
    run_id: str | None,
    run: WorkerRun,
    package_name: str | None,
    *dependencies: Any,
) -> tuple[str, Harvest]:
    """One node in a Dask worker, with the hooks observing the driver's run."""
    hook_manager = _hook_manager(package_name)
    with _Adopted(run) as adopted:
        Task(
            node=node,
            catalog=catalog,
            hook_manager=hook_manager,
            is_async=is_async,
            run_id=run_id,
        ).execute()
    return node.name, adopted.harvest


def _forget_run(key: str) -> None:
    _WorkerState.publishers.pop(key, None)


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


class DaskRunner(AbstractRunner):
    """Runs each node as a task on a ``dask.distributed`` cluster (see the module's docstring)."""

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | None = None,
        is_async: bool = False,
    ) -> None:
        super().__init__(is_async=is_async)
        self._address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        self._n_workers = n_workers or int(
            os.environ.get("DASK_N_WORKERS", DEFAULT_WORKERS)
        )

    def _get_executor(self, max_workers: int) -> None:
        """Unused: the cluster is the executor (:meth:`_run`)."""

    def _connect(self) -> tuple[Any, Any]:
        from distributed import Client, LocalCluster

        if self._address:
            return Client(self._address), None
        cluster = LocalCluster(
            n_workers=self._n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, protocol="tcp",
        )  # fmt: skip
        return Client(cluster), cluster

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        from distributed import as_completed, wait

        from kedro.framework.project import PACKAGE_NAME

        key = uuid.uuid4().hex
        produced = set(pipeline.all_outputs())
        in_cluster: dict[str, DaskDataset] = {}
        for name in sorted(produced):
            if isinstance(
                catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset
            ):
                in_cluster[name] = catalog[name] = DaskDataset(name, key)
        run = WorkerRun.of_current_run(key)
        client, cluster = self._connect()
        try:
            node_dependencies = pipeline.node_dependencies
            load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
            futures: dict[Node, Any] = {}
            for node in pipeline.nodes:  # topologically sorted
                dependencies = [
                    futures[dependency] for dependency in node_dependencies[node]
                ]
                futures[node] = client.submit(
                    _run_node, node, catalog, self._is_async, run_id, run, PACKAGE_NAME, *dependencies,
                    key=f"{node.name}-{key}", pure=False, retries=0,
                )  # fmt: skip
            nodes_by_future = {future.key: node for node, future in futures.items()}
            for done, future in enumerate(
                as_completed(list(futures.values())), start=1
            ):
                node = nodes_by_future[future.key]
                if future.status == "error":
                    # Cancel what has not started; the tasks already running end on their own.
                    pending = [each for each in futures.values() if not each.done()]
                    client.cancel(pending)
                    wait(
                        [each for each in futures.values() if each.status == "pending"],
                        timeout=60,
                    )
                    future.result()  # raises the node's error, with its traceback
                name, harvest = future.result()
                self._merge(harvest)
                self._logger.info("Completed node: %s", name)
                self._logger.info("Completed %d out of %d tasks", done, len(futures))
                for dataset in node.inputs:
                    load_counts[dataset] -= 1
                    if (
                        load_counts[dataset] < 1
                        and dataset in in_cluster
                        and dataset not in pipeline.outputs()
                    ):
                        in_cluster[dataset].release()
            # Pipeline outputs kept in memory: back into the driver's catalog, as MemoryDatasets.
            for name, dataset in in_cluster.items():
                if name in pipeline.outputs():
                    catalog[name] = MemoryDataset(dataset.load())
        finally:
            for dataset in in_cluster.values():
                dataset.release()
            try:
                client.run(_forget_run, key)
            except Exception:  # noqa: BLE001, S110 - the cluster may be gone already
                pass
            client.close()
            if cluster is not None:
                cluster.close()

    @staticmethod
    def _merge(harvest: Harvest) -> None:
        """What a worker kept for the MLflow run, into the driver's run."""
        from kedro_observability.lifecycle import current_run

        context = current_run()
        if context is None:
            return
        if context.record is not None:
            for key, value in harvest.metrics.items():
                context.record.metric(key, value)
            for name, content in harvest.artifacts:
                context.record.artifact(name, content)
            for span in harvest.spans:
                context.record.span(**span)
        if context.tracked is not None:
            for key, value in harvest.kept:
                context.tracked.keep(key, value)
