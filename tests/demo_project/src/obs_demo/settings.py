"""Kedro settings of the demo project.

The kedro-observability plugin registers itself through its entry point and adds its
config patterns to the config loader: nothing of it appears here.
"""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
