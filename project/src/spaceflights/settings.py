"""Kedro settings of the sample project: the observability hooks and their config file."""

from omegaconf.resolvers import oc

from kedro_observability import (
    CONFIG_PATTERNS,
    EXPECTATIONS_CONFIG_PATTERNS,
    DataValidationHook,
    DatasetMetricsHook,
    InputPathHook,
    MemoryHook,
    MlflowTrackingHook,
    NodeMetricsHook,
    PipelineMetricsHook,
)
from spaceflights.hooks import GenerateMissingRawData

# pluggy calls hooks registered later first. The generator is last, so raw data exists
# before any hook checks the catalog. MLflow tracking is first: it opens its run only once
# every other hook has let the run start, and collects what they recorded after they have
# finished. (Validation orders its dataset hooks itself, with trylast and tryfirst.)
HOOKS = (
    MlflowTrackingHook(),
    DataValidationHook(),
    PipelineMetricsHook(),
    NodeMetricsHook(),
    DatasetMetricsHook(),
    MemoryHook(),
    InputPathHook(),
    GenerateMissingRawData(),
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Suites of the validation hook: conf/<env>/expectations/<dataset>.yml.
    "config_patterns": {"observability": CONFIG_PATTERNS, "expectations": EXPECTATIONS_CONFIG_PATTERNS},
    # Kedro turns oc.env off outside credentials; observability.yml reads
    # STATSD_HOST, STATSD_PORT and MLFLOW_TRACKING_URI through it.
    "custom_resolvers": {"oc.env": oc.env},
}
