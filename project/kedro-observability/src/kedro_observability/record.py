"""Run-level metrics and artifacts, gathered from every thread and worker process of a run.

What the experiment tracker keeps (node durations, memory peaks, dataset sizes, validation
reports) is written to the run's :class:`RunRecord` wherever it is measured, and read once
when the run ends, so that everything lands in one tracking run in one batch, whatever the
runner.

The record is a temporary folder: each process appends JSON lines to a file of its own
(no network on the hot path, no lock between processes). ParallelRunner's forked workers
inherit the record, and with it the folder's path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

TEMPORARY_PREFIX = "kedro-observability-"

_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Recorded:
    """What the run's hooks recorded: the last value of each metric, and artifact files."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    """The measured nodes, loads and saves (:meth:`RunRecord.span`), for the run's trace."""


class RunRecord:
    """The record of one run: a temporary folder, removed by :meth:`close`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX + "run-"))
        (self.folder / "artifacts").mkdir()
        (self.folder / "kept").mkdir()
        self._closed = False
        self._lock = threading.Lock()
        self._files: dict[tuple[str, int], IO[str]] = {}
        _open_records.add(self)

    def after_fork(self) -> None:
        # A forked worker must not write through its parent's file objects, and the lock
        # may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        self._files = {}

    def metric(self, key: str, value: float) -> None:
        """Keep ``value`` as the run's metric ``key`` (the last value recorded wins)."""
        if self._closed:
            return
        line = json.dumps({"key": key, "value": float(value)}) + "\n"
        with self._lock:
            self._metrics_file().write(line)

    def span(self, **fields: Any) -> None:
        """Keep one measured node, load or save (kind, name, node, start_ns, duration_ns,
        status...) with this process and thread, for the run's trace and timeline."""
        if self._closed:
            return
        fields.setdefault("pid", os.getpid())
        fields.setdefault("thread", threading.current_thread().name)
        line = json.dumps(fields, default=str) + "\n"
        with self._lock:
            self._metrics_file("spans").write(line)

    def _metrics_file(self, kind: str = "metrics") -> IO[str]:
        # Line-buffered, so that each metric is on disk as soon as it is recorded, even in a
        # ParallelRunner worker that is never told the run ended.
        pid = os.getpid()
        file = self._files.get((kind, pid))
        if file is None:
            file = self._files[(kind, pid)] = open(self.folder / f"{kind}-{pid}.jsonl", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return file

    def artifact(self, file_name: str, content: str | bytes) -> None:
        """Keep a file (a report, say) to attach to the run; unsafe characters become ``_``."""
        if self._closed:
            return
        path = self.folder / "artifacts" / (_SAFE_FILE_NAME.sub("_", file_name) or "_")
        data = content.encode("utf-8") if isinstance(content, str) else content
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_bytes(data)
        temporary.replace(path)

    @property
    def kept_folder(self) -> Path:
        """Where a worker process leaves data for the end of the run (see tracking)."""
        return self.folder / "kept"

    def collect(self) -> Recorded:
        """Everything recorded so far, from every process (called at the end of the run)."""
        recorded = Recorded()
        if self._closed:
            return recorded
        for metrics_file in sorted(self.folder.glob("metrics-*.jsonl")):
            for line in metrics_file.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut short by a worker killed mid-write
                    continue
                recorded.metrics[entry["key"]] = entry["value"]
        for spans_file in sorted(self.folder.glob("spans-*.jsonl")):
            for line in spans_file.read_text(encoding="utf-8").splitlines():
                try:
                    recorded.spans.append(json.loads(line))
                except ValueError:  # cut short by a killed worker
                    continue
        recorded.artifacts = sorted(path for path in (self.folder / "artifacts").iterdir() if not path.name.startswith("."))
        return recorded

    def close(self) -> None:
        """Stop recording and delete what was recorded."""
        self._closed = True
        with self._lock:
            for file in self._files.values():
                file.close()
            self._files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
        _open_records.discard(self)


_open_records: weakref.WeakSet[RunRecord] = weakref.WeakSet()


def _reset_in_child() -> None:
    for record in list(_open_records):
        record.after_fork()


os.register_at_fork(after_in_child=_reset_in_child)
