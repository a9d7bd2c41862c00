"""The plugin's place in the project's configuration: its files, their merge, and the opt-in.

A project adopts the plugin by having an ``observability.yml`` (``kedro observability init``
writes one). The plugin gives the project's config loader its two file patterns and a
key-by-key ("soft") merge for them when the context is created, so that nobody edits
``CONFIG_LOADER_ARGS`` and ``conf/local/observability.yml`` holding one key overrides that
key only, where Kedro's default merge would replace the whole section.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kedro_observability.conf_files import config_documents
from kedro_observability.settings import CONFIG_KEY, CONFIG_PATTERNS
from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS, EXPECTATIONS_KEY

if TYPE_CHECKING:
    from kedro.config import AbstractConfigLoader

logger = logging.getLogger(__name__)

PLUGIN_LOGGER = "kedro_observability"
ENABLE_HINT = "run `kedro observability init` in the project to turn it on"


def register_config(config_loader: AbstractConfigLoader) -> bool:
    """Add the plugin's patterns and merge strategy to ``config_loader``; False if it has none.

    A pattern or strategy the project already set for these keys is left as it is.
    """
    patterns = getattr(config_loader, "config_patterns", None)
    if not isinstance(patterns, dict):
        return False
    patterns.setdefault(CONFIG_KEY, list(CONFIG_PATTERNS))
    patterns.setdefault(EXPECTATIONS_KEY, list(EXPECTATIONS_CONFIG_PATTERNS))
    strategy = getattr(config_loader, "merge_strategy", None)
    if isinstance(strategy, dict):
        strategy.setdefault(CONFIG_KEY, "soft")
    return True


def opted_in(config_loader: AbstractConfigLoader) -> bool:
    """True when the project has an observability file in its base or run environment."""
    return bool(config_documents(config_loader, CONFIG_KEY))


def raise_logger_to_info() -> None:
    """Show the plugin's INFO lines under Kedro's default logging, as Kedro does for its own.

    Kedro raises only ``kedro`` and the project's package to INFO; a level the project set
    for this logger (in conf/logging.yml) is kept.
    """
    plugin_logger = logging.getLogger(PLUGIN_LOGGER)
    if plugin_logger.level == logging.NOTSET:
        plugin_logger.setLevel(logging.INFO)
