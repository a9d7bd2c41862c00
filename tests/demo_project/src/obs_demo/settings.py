from omegaconf.resolvers import oc

from kedro_observability import CONFIG_PATTERNS, InputPathHook

HOOKS = (InputPathHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"observability": CONFIG_PATTERNS},
    "custom_resolvers": {"oc.env": oc.env},
}
