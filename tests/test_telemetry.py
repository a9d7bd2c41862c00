"""Kedro's and MLflow's usage telemetry are off wherever this repository runs them: the test
suite, the Makefile and CI; and the two variables the README gives do turn them off in a
real `kedro run` (its name lookups recorded, and refused, by a sitecustomize: nothing leaves
the machine)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tiny_project import make_tiny_project, subprocess_environment, write

VARIABLES = ("KEDRO_DISABLE_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY")
TELEMETRY_HOSTS = ("mlflow-telemetry.io", "heapanalytics.com")
# Variables by which MLflow and kedro-telemetry guess they run in CI (and then send nothing).
CI_VARIABLES = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITHUB_ACTION", "DO_NOT_TRACK")

RECORDING_RESOLVER = """
    import os
    import socket

    _real_getaddrinfo = socket.getaddrinfo


    def getaddrinfo(host, *args, **kwargs):
        with open(os.environ["LOOKUPS"], "a") as lookups:
            lookups.write(f"{host}\\n")
        if host not in (None, "localhost", "127.0.0.1"):
            raise socket.gaierror(socket.EAI_NONAME, "refused by the test")
        return _real_getaddrinfo(host, *args, **kwargs)


    socket.getaddrinfo = getaddrinfo
"""

REGISTRY = """
    from kedro.pipeline import Pipeline, node


    def one() -> int:
        return 1


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([node(one, None, "a", name="one")])}
"""

OBSERVABILITY = """
    statsd: {enabled: false}
    memory: {enabled: false}
    validation: {enabled: false}
    mlflow: {enabled: true, tracking_uri: null}
"""


def test_the_test_suite_the_makefile_and_ci_turn_both_off() -> None:
    for variable in VARIABLES:
        assert os.environ[variable] == "true"  # conftest.py
        assert re.search(rf"^export {variable} := true$", (REPO / "Makefile").read_text(), re.MULTILINE), variable
        assert re.search(rf"^export {variable}=true$", (REPO / ".ci" / "run").read_text(), re.MULTILINE), variable
        for workflow in (REPO / ".github" / "workflows").glob("*.yml"):
            assert re.search(rf'^\s+{variable}: "true"$', workflow.read_text(), re.MULTILINE), (workflow.name, variable)


def _lookups_of_a_run(tmp_path: Path, name: str, telemetry_off: bool) -> list[str]:
    project = make_tiny_project(tmp_path / name, "tiny_telemetry", REGISTRY, OBSERVABILITY)
    harness = tmp_path / "harness"
    write(harness / "sitecustomize.py", RECORDING_RESOLVER)
    lookups = tmp_path / f"lookups-{name}"
    home = tmp_path / f"home-{name}"  # kedro-telemetry keeps a user id in the user's config folder
    environment = subprocess_environment(project, LOOKUPS=str(lookups), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    environment["PYTHONPATH"] = f"{harness}{os.pathsep}{environment['PYTHONPATH']}"
    for variable in CI_VARIABLES + (() if telemetry_off else VARIABLES):
        environment.pop(variable, None)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kedro")), "run"], cwd=project, env=environment, capture_output=True, text=True, timeout=120, check=False
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "MLflow run" in result.stdout + result.stderr  # MLflow was used, so its telemetry could run
    return lookups.read_text().split() if lookups.exists() else []


@pytest.mark.parametrize("telemetry_off", [True, False], ids=["variables-set", "variables-unset"])
def test_the_two_variables_keep_kedro_and_mlflow_from_their_telemetry_hosts(tmp_path: Path, telemetry_off: bool) -> None:
    looked_up = _lookups_of_a_run(tmp_path, "run", telemetry_off)

    contacted = sorted({host for host in looked_up for telemetry in TELEMETRY_HOSTS if host.endswith(telemetry)})
    if telemetry_off:
        assert contacted == [], looked_up
    else:
        # Without them, both look their hosts up: what the variables prevent, seen by this harness.
        assert len(contacted) == len(TELEMETRY_HOSTS), looked_up
