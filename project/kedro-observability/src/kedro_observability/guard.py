"""Hooks that observe must never be the reason a run fails."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_reported: set[tuple[str, type]] = set()


def never_raise(method: F) -> F:
    """Log an error of an observing hook once (per method and error type) instead of raising it.

    ``functools.wraps`` keeps the signature visible to pluggy, which passes hook arguments
    by name.
    """

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - observing must not break the pipeline
            key = (method.__qualname__, type(error))
            if key not in _reported:
                _reported.add(key)
                logger.warning(
                    "kedro_observability: %s failed and was skipped; the run goes on (%s: %s).",
                    method.__qualname__,
                    type(error).__name__,
                    error,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
            return None

    return guarded  # type: ignore[return-value]
