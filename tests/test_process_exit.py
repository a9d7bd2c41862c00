"""The exit of a `kedro run` process: the plugin spares it Python's last garbage collections
(gc.freeze at exit, after every other handler of the plugin), and
KEDRO_OBSERVABILITY_GC_AT_EXIT=true gives them back. Real `kedro run` processes: the project's
pipeline module registers an exit handler of its own, before the plugin's, which therefore
runs after the plugin's and sees what the interpreter's last collections will see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_project import DOUBLE_REGISTRY, make_tiny_project, subprocess_environment

OBSERVABILITY = """
    statsd: {enabled: false}
    memory: {enabled: false}
    mlflow: {enabled: false}
    validation: {enabled: false}
"""

# The project's own exit handler, registered when Kedro imports the pipeline registry: before
# the plugin's, which Python runs last-registered first.
REGISTRY = """
    import atexit
    import gc
    import sys

    atexit.register(lambda: print(f"objects frozen at exit: {gc.get_freeze_count()}", file=sys.stderr))
""" + DOUBLE_REGISTRY


def _frozen_at_exit(project: Path, **variables: str) -> int:
    completed = subprocess.run(
        [sys.executable, "-m", "kedro", "run"],
        check=False,
        cwd=project,
        env=subprocess_environment(project, **variables),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = re.search(r"objects frozen at exit: (\d+)", completed.stderr)
    assert found, completed.stderr[-3000:]
    return int(found.group(1))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path / "exiting", "exiting", REGISTRY, OBSERVABILITY, "x: 2\n")


def test_a_run_exits_without_the_final_collections(project: Path) -> None:
    # Every object alive at exit is in the permanent generation: the collections skip it.
    assert _frozen_at_exit(project) > 10_000


def test_gc_at_exit_true_keeps_pythons_collections(project: Path) -> None:
    assert _frozen_at_exit(project, KEDRO_OBSERVABILITY_GC_AT_EXIT="true") == 0


def test_a_project_that_disables_the_plugin_keeps_pythons_collections(project: Path) -> None:
    (project / "src" / "exiting" / "settings.py").write_text('DISABLE_HOOKS_FOR_PLUGINS = ("kedro-observability",)\n', encoding="utf-8")
    assert _frozen_at_exit(project) == 0
