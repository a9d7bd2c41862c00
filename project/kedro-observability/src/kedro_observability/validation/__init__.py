"""Data validation with Great Expectations: suites as configuration (:mod:`.suites`), applied
by Kedro's catalog (``validator:``, :mod:`.catalog`) or by the plugin's hooks (:mod:`.engine`).

:class:`GreatExpectationsValidator` is imported on first access: the plugin's entry point
imports this package in every Kedro command, and the validator needs Kedro's validation API.
"""

from __future__ import annotations

from typing import Any

from kedro_observability.validation.engine import DataValidationError
from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS, ExpectationSuiteError

_FROM_CATALOG = ("GreatExpectationsValidator", "GreatExpectationsValidationError", "GreatExpectationsConfigurationError")

__all__ = [
    "EXPECTATIONS_CONFIG_PATTERNS",
    "DataValidationError",
    "ExpectationSuiteError",
    "GreatExpectationsConfigurationError",
    "GreatExpectationsValidationError",
    "GreatExpectationsValidator",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_CATALOG:
        from kedro_observability.validation import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'kedro_observability.validation' has no attribute {name!r}")
