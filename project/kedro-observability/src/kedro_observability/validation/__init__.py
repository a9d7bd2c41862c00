"""Data validation with Great Expectations: suites as configuration (:mod:`.suites`),
validated in memory while the pipeline runs (:mod:`.engine`)."""

from kedro_observability.validation.engine import DataValidationError
from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS, ExpectationSuiteError

__all__ = ["DataValidationError", "EXPECTATIONS_CONFIG_PATTERNS", "ExpectationSuiteError"]
