"""The run lifecycle: one :class:`RunContext` per ``kedro run``, begun and ended in one place.

:class:`RunLifecycle` begins a run before the first node (identity, statsd, the checks,
validation, the MLflow run) and ends it exactly once, however the run stops:

- it finishes, or a node fails (``after_pipeline_run`` / ``on_pipeline_error``);
- a ``before_pipeline_run`` of this plugin or of another hook raises: Kedro calls no
  ``on_pipeline_error`` then, so the plugin's wrapper around that hook ends the run;
- SIGINT or SIGTERM (Ctrl-C, ``docker compose stop``): Kedro calls no hook at all, so
  :class:`StopSignals` ends the run as KILLED, then lets the signal do what it did before;
- the process exits in the middle (``sys.exit`` in a node): an ``atexit`` handler ends it.

Ending a run counts it in statsd, stops the memory sampler, uploads and closes the MLflow
run and removes the run's temporary folders. Each step runs even if an earlier one failed.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedro_observability.memory import SAMPLER
from kedro_observability.process_exit import skip_final_collections
from kedro_observability.sizes import DataSize, is_opaque, measure

if TYPE_CHECKING:
    from types import FrameType

    from kedro_observability.identity import RunInfo
    from kedro_observability.metrics.publish import StatsdPublisher
    from kedro_observability.record import RunRecord
    from kedro_observability.settings import ObservabilitySettings
    from kedro_observability.tracking.run import TrackedRun
    from kedro_observability.validation.engine import ValidationOutcome, ValidationRun
    from kedro_observability.validation.suites import SuiteConfig

logger = logging.getLogger(__name__)

STOP_THREAD_NAME = "kedro-observability-stop"


@dataclass(frozen=True)
class Ending:
    """How a run ended: MLflow's status, the error, and the signal that stopped it."""

    status: str
    error: str | None = None
    stopped_by: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "FINISHED"

    @classmethod
    def finished(cls) -> Ending:
        return cls("FINISHED")

    @classmethod
    def failed(cls, error: BaseException) -> Ending:
        return cls("FAILED", f"{type(error).__name__}: {error}")

    @classmethod
    def killed(cls, stopped_by: str) -> Ending:
        return cls("KILLED", stopped_by=stopped_by)


@dataclass(frozen=True)
class DatasetOperation:
    """A load or save that the plugin's dataset hooks were told of."""

    dataset: str
    operation: str
    """``load`` or ``save``."""
    node: str | None


class DatasetOperations:
    """The loads and saves in progress in one process, for catalog validators.

    Kedro hands a validator the data alone. It calls it in the thread that loads or saves,
    right after the plugin's ``before_dataset_loaded`` or ``before_dataset_saved`` hook,
    except for saves of a runner in async mode, which go to a thread pool: saves are
    therefore also found by their data (the object itself, not its value).
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._saves: dict[int, list[tuple[Any, DatasetOperation]]] = {}

    def loading(self, dataset: str, node: str | None) -> None:
        self._local.current = (DatasetOperation(dataset, "load", node), None)

    def saving(self, dataset: str, node: str | None, data: Any) -> None:
        operation = DatasetOperation(dataset, "save", node)
        self._local.current = (operation, data)
        with self._lock:
            self._saves.setdefault(id(data), []).append((data, operation))

    def done(self, operation: str, dataset: str, data: Any = None) -> None:
        """The load or save has ended (its ``after_dataset_*`` hook)."""
        current = getattr(self._local, "current", None)
        if current is not None and current[0].dataset == dataset and current[0].operation == operation:
            self._local.current = None
        if operation == "save":
            with self._lock:
                waiting = self._saves.get(id(data), [])
                for index, (each, pending) in enumerate(waiting):
                    if each is data and pending.dataset == dataset:
                        del waiting[index]
                        break
                if not waiting:
                    self._saves.pop(id(data), None)

    def find(self, data: Any) -> DatasetOperation | None:
        """The load or save that ``data`` is going through, if the hooks told of it."""
        current = getattr(self._local, "current", None)
        if current is not None and current[0].operation == "save" and current[1] is data:
            return current[0]
        with self._lock:
            for each, pending in self._saves.get(id(data), ()):
                if each is data:
                    return pending
        if current is not None and current[0].operation == "load":
            return current[0]
        return None


@dataclass
class RunContext:
    """Everything the plugin knows about the current run; forked workers hold a copy."""

    info: RunInfo
    settings: ObservabilitySettings
    publisher: StatsdPublisher | None = None
    record: RunRecord | None = None
    tracked: TrackedRun | None = None
    validation: ValidationRun | None = None
    started: float = field(default_factory=time.perf_counter)
    owner_pid: int = field(default_factory=os.getpid)
    ended: bool = False
    operations: DatasetOperations = field(default_factory=DatasetOperations)
    _opaque_sizes: dict[str, DataSize] = field(default_factory=dict)
    _end_lock: threading.Lock = field(default_factory=threading.Lock)

    def size_of(self, dataset_name: str, data: Any) -> DataSize:
        """The data's size and rows, measured once per event for every sink.

        Objects that are not frames or arrays (a model, say) are sized by pickling them, so
        that is done once per dataset and process in a run: the size is the same at its save
        and at every later load.
        """
        if not is_opaque(data):
            return measure(data)
        size = self._opaque_sizes.get(dataset_name)
        if size is None:
            size = self._opaque_sizes[dataset_name] = measure(data)
        return size

    def report_validation(self, outcome: ValidationOutcome, report_json: Callable[[], str]) -> None:
        """Count one validation in statsd and keep its JSON report for the MLflow run."""
        if self.publisher is not None:
            self.publisher.validated(outcome.dataset, outcome.success, len(outcome.failures))
        if self.record is not None:
            self.record.artifact(f"validation-{outcome.dataset}.json", report_json())

    def claim_end(self) -> bool:
        """True for the one caller that ends this run."""
        with self._end_lock:
            if self.ended or os.getpid() != self.owner_pid:
                return False
            self.ended = True
            return True


@dataclass
class ProjectScope:
    """What the plugin read of the project when Kedro created its context, for catalog
    validators (Kedro builds them from their ``options`` alone, wherever it loads data)."""

    config_loader: Any
    settings: ObservabilitySettings | None
    """None: the plugin is off for the project (no observability.yml)."""
    declared: dict[str, Any] = field(default_factory=dict)
    """The catalog's Great Expectations validators by dataset (Kedro ``ValidatorSpec``s)."""
    _suites: SuiteConfig | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def suites(self) -> SuiteConfig:
        """The project's suite files (conf/<env>/expectations/), read once."""
        with self._lock:
            if self._suites is None:
                from kedro_observability.validation.suites import read_suites

                self._suites = read_suites(self.config_loader)
            return self._suites


class _Observed:
    """The project and run the plugin observes in this process: one of each at a time."""

    project: ProjectScope | None = None
    run: RunContext | None = None


def current_project() -> ProjectScope | None:
    """The project whose context the plugin saw created last in this process, if any."""
    return _Observed.project


def current_run() -> RunContext | None:
    """The run the plugin observes in this process (a forked worker's copy in a worker);
    None outside a run."""
    run = _Observed.run
    return run if run is not None and not run.ended else None


def set_current_project(scope: ProjectScope | None) -> None:
    """Make ``scope`` the project of :func:`current_project`."""
    _Observed.project = scope


class RunLifecycle:
    """Begins and ends the runs of one plugin object, one at a time."""

    def __init__(self) -> None:
        self.current: RunContext | None = None
        self._signals = StopSignals(self._stop)
        self._atexit_registered = False

    def begin(self, context: RunContext, start: Callable[[RunContext], None]) -> RunContext:
        """Make ``context`` the current run and ``start`` it; a failing start ends it as failed."""
        stale = self.current
        if stale is not None and not stale.ended:
            # A run interrupted in this process without a signal (KeyboardInterrupt raised
            # by a caller, say) that nobody ended: it is over now.
            self.end(stale, Ending.killed("a new run started in the same process"))
        self.current = _Observed.run = context
        self._signals.install()
        if not self._atexit_registered:
            skip_final_collections()  # first, so that it runs after _at_exit
            atexit.register(self._at_exit)
            self._atexit_registered = True
        try:
            start(context)
        except BaseException as error:
            self.end(context, Ending.failed(error))
            raise
        return context

    def adopt(self, context: RunContext | None) -> None:
        """Observe ``context``, a run begun by another process (a distributed runner's worker
        running one task), without beginning or ending it here; ``None`` lets it go."""
        self.current = _Observed.run = context

    def end(self, context: RunContext, ending: Ending) -> None:
        """End ``context`` once; later calls, and calls in worker processes, do nothing."""
        if not context.claim_end():
            return
        if self.current is context:
            self._signals.uninstall()
        if _Observed.run is context:
            _Observed.run = None
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the memory sampler", lambda: SAMPLER.shutdown(discard_windows=ending.status == "KILLED")),
        ]
        publisher = context.publisher
        if publisher is not None:
            duration_ms = (time.perf_counter() - context.started) * 1000.0
            steps.append(("the run's statsd metrics", lambda: publisher.pipeline_finished(ending.succeeded, duration_ms)))
        tracked = context.tracked
        if tracked is not None:
            steps.append(("the MLflow run", lambda: tracked.finish(ending.status, ending.error, ending.stopped_by)))
        record = context.record
        if record is not None:
            steps.append(("the run's temporary folder", record.close))
        validation = context.validation
        if validation is not None:
            steps.append(("validation's claim files", validation.close))
        for description, step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - every step must get its turn
                logger.warning("kedro_observability: ending %s failed (%s: %s).", description, type(error).__name__, error)
        context.validation = None
        if ending.stopped_by:
            logger.warning("kedro_observability: the run was stopped by %s; it is recorded as %s.", ending.stopped_by, ending.status)

    def _stop(self, signal_name: str) -> None:
        context = self.current
        if context is not None:
            self.end(context, Ending.killed(signal_name))

    def _at_exit(self) -> None:
        context = self.current
        if context is not None and not context.ended:
            self.end(context, Ending.killed("the process exiting during the run"))


class StopSignals:
    """SIGINT and SIGTERM end the current run as KILLED, then act as they did before.

    The run is ended on a thread of its own, not in the signal handler: the handler
    interrupts the main thread wherever it is, possibly holding a lock that ending needs.
    The previous handler is chained: a Python handler (Ctrl-C's KeyboardInterrupt, say) is
    called at once while the run ends beside it, and the process waits for that thread
    before it exits; the default action (SIGTERM's) comes once the run has ended, by
    sending the signal again with the default handler in place, so the process exits as
    it would have. An ignored signal stays ignored. Forked ParallelRunner workers inherit
    the handler and act as if it were not there.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: Callable[[str], None]) -> None:
        self._stop = stop
        self._previous: dict[int, Any] = {}
        self._owner_pid = 0
        self._stopping = False

    def install(self) -> None:
        """Handle the signals for the run that begins (main thread only: Python's rule)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._stopping = False
        if self._previous and self._owner_pid == os.getpid():
            return  # still installed from an earlier run of this process
        self._owner_pid = os.getpid()
        self._previous = {signum: signal.getsignal(signum) for signum in self.SIGNALS}
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Put the previous handlers back; from another thread (a stop) ours stay, passing
        every further signal on."""
        if os.getpid() != self._owner_pid or threading.current_thread() is not threading.main_thread():
            return
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        previous = signal.SIG_DFL if previous is None else previous
        if os.getpid() != self._owner_pid or self._stopping:
            _chain(signum, frame, previous)
            return
        if previous == signal.SIG_IGN:
            return
        self._stopping = True
        name = signal.Signals(signum).name
        if callable(previous):
            threading.Thread(target=self._stop, args=(name,), name=STOP_THREAD_NAME).start()
            previous(signum, frame)
            return

        def stop_then_default() -> None:
            try:
                self._stop(name)
            finally:
                _chain(signum, None, signal.SIG_DFL)

        threading.Thread(target=stop_then_default, name=STOP_THREAD_NAME).start()


def _chain(signum: int, frame: FrameType | None, previous: Any) -> None:
    """Do what ``previous`` (a handler, SIG_DFL or SIG_IGN) would have done with the signal."""
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        _die_of(signum)


def _die_of(signum: int) -> None:
    """Terminate the process by ``signum``'s default action, as without the plugin."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # Only the main thread may reset a handler: send it the signal again; its handler,
    # already stopping, passes it to the default action there.
    signal.pthread_kill(threading.main_thread().ident or 0, signum)
