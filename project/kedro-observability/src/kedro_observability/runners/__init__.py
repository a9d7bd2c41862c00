"""Runners beyond Kedro's own: ``kedro run --runner kedro_observability.runners.DaskRunner``."""

from __future__ import annotations

from typing import Any

__all__ = ["DaskRunner"]


def __getattr__(name: str) -> Any:
    # dask.distributed is imported only by whoever uses the runner.
    if name == "DaskRunner":
        from kedro_observability.runners.dask_runner import DaskRunner

        return DaskRunner
    raise AttributeError(name)
