"""Kedro settings of the sample project.

The kedro-observability plugin registers itself through its entry point and reads
conf/<env>/observability.yml: nothing of it appears here.
"""

from spaceflights.hooks import GenerateMissingRawData

HOOKS = (GenerateMissingRawData(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
