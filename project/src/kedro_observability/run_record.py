"""Run-level metrics and artifacts, gathered from every thread and worker process of a run.

Hooks that measure something the experiment tracker should keep (node durations, memory
peaks, validation reports) call :func:`record_metric` or :func:`record_artifact` wherever they
run. The tracking hook opens the record when the run starts and reads it all when the run
ends, so that everything lands in one tracking run in one batch, whatever the runner.

The record is a temporary folder: each process appends JSON lines to a file of its own
(no network on the hot path, no lock between processes). ParallelRunner's forked workers
inherit the folder's path. With no tracking hook active, recording does nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_state_lock = threading.Lock()
_write_lock = threading.Lock()
_folder: Path | None = None

_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class RunRecord:
    """What the run's hooks recorded: the last value of each metric, and artifact files."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


def open_record() -> None:
    """Start recording for a run (called by the tracking hook in the main process)."""
    global _folder
    _close_files()
    with _state_lock:
        if _folder is not None:
            shutil.rmtree(_folder, ignore_errors=True)
        _folder = Path(tempfile.mkdtemp(prefix="kedro-observability-run-"))
        (_folder / "artifacts").mkdir()


def is_recording() -> bool:
    return _folder is not None


def record_metric(key: str, value: float) -> None:
    """Keep ``value`` as the run's metric ``key`` (the last value recorded wins)."""
    folder = _folder
    if folder is None:
        return
    line = json.dumps({"key": key, "value": float(value)}) + "\n"
    with _write_lock:
        _metrics_file(folder).write(line)


_open_files: dict[tuple[int, Path], Any] = {}


def _metrics_file(folder: Path) -> Any:
    """This process's metrics file, opened once: several metrics are recorded per node.

    Line-buffered, so that each metric is on disk as soon as it is recorded, even in a
    ParallelRunner worker that is never told the run ended. Keyed by process id: a forked
    worker must not write through its parent's file object.
    """
    key = (os.getpid(), folder)
    file = _open_files.get(key)
    if file is None:
        file = _open_files[key] = open(folder / f"metrics-{os.getpid()}.jsonl", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    return file


def _close_files() -> None:
    with _write_lock:
        for file in _open_files.values():
            file.close()
        _open_files.clear()


def record_artifact(file_name: str, content: str | bytes) -> None:
    """Keep a file (a report, say) to attach to the run; unsafe characters become ``_``."""
    folder = _folder
    if folder is None:
        return
    path = folder / "artifacts" / (_SAFE_FILE_NAME.sub("_", file_name) or "_")
    data = content.encode("utf-8") if isinstance(content, str) else content
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_bytes(data)
    temporary.replace(path)


def collect_record() -> RunRecord:
    """Everything recorded so far, from every process (called at the end of the run)."""
    record = RunRecord()
    folder = _folder
    if folder is None:
        return record
    for metrics_file in sorted(folder.glob("metrics-*.jsonl")):
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by a worker killed mid-write
                continue
            record.metrics[entry["key"]] = entry["value"]
    record.artifacts = sorted(path for path in (folder / "artifacts").iterdir() if not path.name.startswith("."))
    return record


def close_record() -> None:
    """Stop recording and delete what was recorded."""
    global _folder
    _close_files()
    with _state_lock:
        if _folder is not None:
            shutil.rmtree(_folder, ignore_errors=True)
        _folder = None
