"""kedro-observability: a Kedro plugin that makes pipeline runs observable.

statsd metrics for Prometheus, memory per load and node, one MLflow run per ``kedro run``,
Great Expectations validation and file-path inputs, under every runner. Installed, it
registers itself through Kedro's ``kedro.hooks`` entry point; a project turns it on with
``kedro observability init``, which writes ``conf/base/observability.yml``.
"""

from __future__ import annotations

from typing import Any

from kedro_observability.identity import ParallelRunnerStartMethodError
from kedro_observability.inputs import InputPathError
from kedro_observability.names import sanitize_name
from kedro_observability.plugin import ObservabilityHooks
from kedro_observability.settings import ObservabilitySettings, SettingsError
from kedro_observability.tracking.server import MlflowTrackingError
from kedro_observability.validation import DataValidationError, ExpectationSuiteError

__version__ = "0.2.0"

__all__ = [
    "DataValidationError",
    "ExpectationSuiteError",
    "InputPathError",
    "MlflowTrackingError",
    "ObservabilityHooks",
    "ObservabilitySettings",
    "ParallelRunnerStartMethodError",
    "SettingsError",
    "__version__",
    "sanitize_name",
]

_RETIRED_HOOKS = {
    "DataValidationHook",
    "DatasetMetricsHook",
    "InputPathHook",
    "MemoryHook",
    "MlflowTrackingHook",
    "NodeMetricsHook",
    "PipelineMetricsHook",
    "CONFIG_PATTERNS",
    "EXPECTATIONS_CONFIG_PATTERNS",
}


def __getattr__(name: str) -> Any:
    # The 0.1 API, for users upgrading: say what replaces it instead of a bare ImportError.
    if name in _RETIRED_HOOKS:
        raise ImportError(
            f"kedro_observability.{name} is gone in 0.2: the plugin registers one hook object "
            "through its entry point and adds its config patterns itself. Remove the "
            "kedro_observability hooks from HOOKS and the observability/expectations patterns "
            "from CONFIG_LOADER_ARGS in settings.py, and turn features off in "
            "observability.yml (statsd.enabled, memory.enabled, mlflow.enabled, "
            "validation.enabled). See CHANGELOG.md."
        )
    raise AttributeError(f"module 'kedro_observability' has no attribute {name!r}")
