"""Write a small Kedro project for a test: a pipeline registry, parameters and observability.yml."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path


# A one-node pipeline: y = 2 * params:x.
DOUBLE_REGISTRY = """
    from kedro.pipeline import Pipeline, node


    def double(x: int) -> int:
        return 2 * x


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([node(double, "params:x", "y", name="double")])}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def make_tiny_project(folder: Path, package: str, registry: str, observability: str, parameters: str = "{}\n") -> Path:
    """A project in ``folder`` whose package ``package`` has ``registry`` as pipeline_registry.py
    (source, dedented) and whose conf/base holds ``observability`` and ``parameters``."""
    write(folder / "pyproject.toml", f"""
        [tool.kedro]
        package_name = "{package}"
        project_name = "{package}"
        kedro_init_version = "1.7.0"
        source_dir = "src"
    """)
    write(folder / "src" / package / "__init__.py", "")
    write(folder / "src" / package / "settings.py", "")
    write(folder / "src" / package / "pipeline_registry.py", registry)
    write(folder / "conf" / "base" / "catalog.yml", "{}\n")
    write(folder / "conf" / "base" / "parameters.yml", parameters)
    write(folder / "conf" / "base" / "observability.yml", observability)
    (folder / "conf" / "local").mkdir(exist_ok=True)
    return folder


def subprocess_environment(project: Path, **variables: str) -> dict[str, str]:
    """This process's environment for a `kedro run` of ``project``: its source importable, no
    contract variable inherited, telemetry off, wide log lines."""
    environment = {key: value for key, value in os.environ.items() if key not in {"MLFLOW_TRACKING_URI", "STATSD_HOST", "STATSD_PORT"}}
    inherited = os.environ.get("PYTHONPATH")
    environment.update(
        PYTHONPATH=str(project / "src") + (os.pathsep + inherited if inherited else ""),
        KEDRO_DISABLE_TELEMETRY="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        COLUMNS="400",  # one log line per message
    )
    environment.update(variables)
    return environment
