"""Kedro settings of the sample project: the observability hooks and their config file."""

from omegaconf.resolvers import oc

from kedro_observability import (
    CONFIG_PATTERNS,
    DatasetMetricsHook,
    InputPathHook,
    MemoryHook,
    NodeMetricsHook,
    PipelineMetricsHook,
)
from spaceflights.hooks import GenerateMissingRawData

# Order matters only for before_pipeline_run: raw data is generated before any hook
# checks the catalog. pluggy calls hooks registered later first, so the generator is last.
HOOKS = (
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
    "config_patterns": {"observability": CONFIG_PATTERNS},
    # Kedro turns oc.env off outside credentials; observability.yml reads
    # STATSD_HOST, STATSD_PORT and MLFLOW_TRACKING_URI through it.
    "custom_resolvers": {"oc.env": oc.env},
}
