"""Kedro hooks that make pipeline runs observable: metrics, memory, tracking, validation.

Add the hooks you want to your project's ``settings.py``::

    from kedro_observability import DatasetMetricsHook, NodeMetricsHook, PipelineMetricsHook

    HOOKS = (PipelineMetricsHook(), NodeMetricsHook(), DatasetMetricsHook())

and let Kedro's config loader serve ``observability.yml`` (see :mod:`.settings`).
"""

from kedro_observability.inputs import InputPathError, InputPathHook
from kedro_observability.memory import MemoryHook
from kedro_observability.metrics import DatasetMetricsHook, NodeMetricsHook, PipelineMetricsHook
from kedro_observability.names import sanitize_name
from kedro_observability.runtime import ParallelRunnerStartMethodError
from kedro_observability.settings import CONFIG_PATTERNS, ObservabilitySettings, SettingsError
from kedro_observability.suites import EXPECTATIONS_CONFIG_PATTERNS, ExpectationSuiteError
from kedro_observability.tracking import MlflowTrackingError, MlflowTrackingHook
from kedro_observability.validation import DataValidationError, DataValidationHook

__all__ = [
    "CONFIG_PATTERNS",
    "DataValidationError",
    "DataValidationHook",
    "DatasetMetricsHook",
    "EXPECTATIONS_CONFIG_PATTERNS",
    "ExpectationSuiteError",
    "InputPathError",
    "InputPathHook",
    "MemoryHook",
    "MlflowTrackingError",
    "MlflowTrackingHook",
    "NodeMetricsHook",
    "ObservabilitySettings",
    "ParallelRunnerStartMethodError",
    "PipelineMetricsHook",
    "SettingsError",
    "sanitize_name",
]
