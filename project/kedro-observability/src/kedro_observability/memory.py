"""Memory: resident memory grown by each dataset load, and each node's peak.

The usual recipe calls memory_profiler's ``memory_usage(-1, interval=0.1)`` around every load,
which samples once and then *sleeps* for the interval: about 0.1 s added to each load, and
even with ``interval=0`` it costs ~0.2 ms because it builds a new ``psutil.Process`` per call.
These hooks read the same number memory_profiler's psutil backend reads (``rss`` of
``psutil.Process().memory_info()``) from one reused Process object, ~12 µs a reading, and
never sleep on the pipeline's thread: a node's peak is sampled by a background thread while
the node runs, and its window closes when the node ends, successfully or not.

Resident memory belongs to the whole process. Under ThreadRunner, concurrent nodes and loads
share it, so a node's peak includes what its neighbours held at the time. Under
ParallelRunner each worker process measures itself.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading

import psutil

logger = logging.getLogger(__name__)

SAMPLER_THREAD_PREFIX = "kedro-observability-memory"
MIB = 1024 * 1024

_process: psutil.Process | None = None
_process_pid = 0


def resident_bytes() -> int:
    """Resident memory of this process, from a Process object reused within the process."""
    global _process, _process_pid
    pid = os.getpid()
    if _process is None or _process_pid != pid:  # a forked worker must read its own memory
        _process, _process_pid = psutil.Process(pid), pid
    return _process.memory_info().rss


class PeakSampler:
    """Peak resident memory over windows (one per running node), from one background thread.

    Starting a thread per node and joining it costs ~0.3 ms, most of this hook's per-node
    budget, so one thread per process samples for every open window. It starts with the
    first window and exits as soon as it finds none open (so no thread outlives a node by
    more than one interval), or at once when :meth:`shutdown` is called at the end of a run.
    A forked ParallelRunner worker starts its own.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child the thread is gone and the lock may have been held by it.
        self._lock = threading.Lock()
        self._windows: dict[int, int] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._interval = 0.05

    def open(self, interval: float) -> int:
        """Start a window; returns its token. The first reading is taken now."""
        reading = resident_bytes()
        with self._lock:
            token = next(self._tokens)
            self._windows[token] = reading
            self._interval = interval
            if self._thread is None:
                self._wake = threading.Event()
                self._thread = threading.Thread(target=self._sample, args=(self._wake,), name=SAMPLER_THREAD_PREFIX, daemon=True)
                self._thread.start()
        return token

    def close(self, token: int) -> int:
        """End a window: its peak, at least the larger of its first and last readings."""
        reading = resident_bytes()
        with self._lock:
            return max(self._windows.pop(token, reading), reading)

    def shutdown(self, *, discard_windows: bool = False) -> None:
        """Stop the thread now if no window is open (end of a run); ``discard_windows`` closes
        the windows of nodes that will never finish (a run stopped by a signal)."""
        with self._lock:
            if discard_windows:
                self._windows.clear()
            thread = self._thread if not self._windows else None
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _sample(self, wake: threading.Event) -> None:
        while True:
            wake.wait(self._interval)
            reading = resident_bytes()
            with self._lock:
                if not self._windows or wake.is_set():
                    if not self._windows:
                        self._thread = None
                        return
                    wake.clear()
                for token, peak in self._windows.items():
                    if reading > peak:
                        self._windows[token] = reading


SAMPLER = PeakSampler()
"""The process's sampler: one thread for every node running in this process."""
