"""The YAML files behind a key of Kedro's config loader, for naming them in error messages."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import yaml


def config_documents(config_loader: Any, key: str) -> list[tuple[Path, Any]]:
    """(file, parsed content) of every file the loader reads for ``key``: base first, then
    the run environment, so that a later document wins as it does in Kedro's merge.

    Kedro merges the files and forgets where each value came from; reading them again is
    the only way to tell a user which file to edit. Unreadable files are left out.
    """
    try:
        conf_source = Path(config_loader.conf_source)
        patterns = config_loader.config_patterns[key]
        environments = [config_loader.base_env, config_loader.env or config_loader.default_run_env]
    except (AttributeError, KeyError, TypeError):
        return []
    documents = []
    for environment in dict.fromkeys(str(name) for name in environments if name):
        folder = conf_source / environment
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.rglob("*")):
            if candidate.suffix not in {".yml", ".yaml", ".json"}:
                continue
            relative = candidate.relative_to(folder).as_posix()
            if not any(fnmatch.fnmatch(relative.rsplit(".", 1)[0], p) or fnmatch.fnmatch(relative, p) for p in patterns):
                continue
            try:
                content = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            # An empty file is an empty mapping; any other top level (a list, a number) is kept
            # as it is, for the caller to refuse by name.
            documents.append((candidate, {} if content is None else content))
    return documents
