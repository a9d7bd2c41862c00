"""Input paths (input_paths in observability.yml): nodes receive the path actually loaded, under every runner."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io.core import Version
from kedro_datasets.pandas import CSVDataset

from conftest import DEMO_PROJECT, RUNNERS, make_runner, run_project
from kedro_observability import InputPathError, ParallelRunnerStartMethodError

OLD_VERSION = "2026-01-01T00.00.00.000Z"
NEW_VERSION = "2026-02-01T00.00.00.000Z"


def write_versions(project: Path) -> dict[str, Path]:
    """Save two versions of the demo's raw table; the newer one has more rows."""
    paths = {}
    for rows, version in ((3, OLD_VERSION), (5, NEW_VERSION)):
        dataset = CSVDataset(filepath=str(project / "data" / "raw_table.csv"), version=Version(None, version))
        dataset.save(pd.DataFrame({"value": range(rows)}))
        paths[version] = project / "data" / "raw_table.csv" / version / "raw_table.csv"
    return paths


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


@pytest.mark.parametrize("runner", RUNNERS)
def test_namespaced_node_receives_the_latest_version_path(demo_project: Path, runner: str) -> None:
    paths = write_versions(demo_project)

    run_project(demo_project, runner=make_runner(runner))

    fingerprint = read_json(demo_project / "data" / "fingerprint.json")
    newest = paths[NEW_VERSION]
    assert Path(fingerprint["path"]).resolve() == newest.resolve()
    assert fingerprint["sha256"] == hashlib.sha256(newest.read_bytes()).hexdigest()
    assert fingerprint["size_bytes"] == newest.stat().st_size
    # The node that is not configured still receives the loaded data.
    assert read_json(demo_project / "data" / "row_count.json") == 5


def test_pinned_load_version_gives_the_path_of_that_version(demo_project: Path) -> None:
    paths = write_versions(demo_project)

    run_project(demo_project, load_versions={"ns.raw_table": OLD_VERSION})

    fingerprint = read_json(demo_project / "data" / "fingerprint.json")
    assert Path(fingerprint["path"]).resolve() == paths[OLD_VERSION].resolve()
    assert read_json(demo_project / "data" / "row_count.json") == 3


def test_a_run_of_one_pipeline_accepts_the_input_paths_of_another(demo_project: Path) -> None:
    """The demo's registry is find_pipelines(): a run of fingerprints loads that pipeline only,
    and audit.fingerprint (configured in observability.yml) is looked up in every pipeline."""
    paths = write_versions(demo_project)

    run_project(demo_project, pipeline_names=["fingerprints"])

    assert Path(read_json(demo_project / "data" / "fingerprint.json")["path"]).resolve() == paths[NEW_VERSION].resolve()
    assert not (demo_project / "data" / "audit_fingerprint.json").exists()

    run_project(demo_project, pipeline_names=["audit"])

    audit = read_json(demo_project / "data" / "audit_fingerprint.json")
    assert Path(audit["path"]).resolve() == paths[NEW_VERSION].resolve()
    assert audit["sha256"] == hashlib.sha256(paths[NEW_VERSION].read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("input_paths", "expected"),
    [
        ({"ns.fingerprnt": ["ns.raw_table"]}, ["'ns.fingerprnt'", "no pipeline of the project", "ns.fingerprint"]),
        ({"fingerprint": ["ns.raw_table"]}, ["'fingerprint'", "namespace included"]),
        ({"ns.fingerprint": ["raw_table"]}, ["'raw_table'", "not one of its inputs", "ns.raw_table"]),
        ({"ns.copy_count": ["ns.row_count_in_memory"]}, ["'ns.row_count_in_memory'", "'ns.copy_count'", "MemoryDataset", "no file path"]),
    ],
    ids=["misspelt-node", "node-without-namespace", "input-not-of-node", "memory-dataset"],
)
def test_misconfiguration_stops_the_run_before_any_node(demo_project: Path, input_paths: dict, expected: list[str]) -> None:
    write_versions(demo_project)
    settings_file = demo_project / "conf" / "base" / "observability.yml"
    settings_file.write_text(json.dumps({**yaml.safe_load(settings_file.read_text()), "input_paths": input_paths}))

    with pytest.raises(InputPathError) as raised:
        run_project(demo_project)

    for fragment in expected:
        assert fragment in str(raised.value)
    assert not (demo_project / "data" / "fingerprint.json").exists()
    assert not (demo_project / "data" / "row_count.json").exists()


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_parallel_runner_with_hookless_workers_fails_before_any_node(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    """Kedro runs no project hook in spawned or forkserver workers: results would differ."""
    write_versions(demo_project)
    monkeypatch.setenv("KEDRO_MP_CONTEXT", start_method)

    with pytest.raises(ParallelRunnerStartMethodError, match=f"'{start_method}' start method.*KEDRO_MP_CONTEXT=fork"):
        run_project(demo_project, runner=make_runner("ParallelRunner"))

    assert not (demo_project / "data" / "fingerprint.json").exists()


def test_parallel_runner_forced_to_fork_works_whatever_python_default(demo_project: Path) -> None:
    """The advice of the error above holds: spawn as Python's default, KEDRO_MP_CONTEXT=fork."""
    paths = write_versions(demo_project)
    script = textwrap.dedent(
        f"""
        import multiprocessing, sys
        from pathlib import Path
        if __name__ == "__main__":
            multiprocessing.set_start_method("spawn")
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from conftest import make_runner, run_project
            run_project(Path.cwd(), runner=make_runner("ParallelRunner"))
        """
    )
    env = {**os.environ, "KEDRO_MP_CONTEXT": "fork", "PYTHONPATH": str(DEMO_PROJECT / "src")}
    result = subprocess.run([sys.executable, "-c", script], cwd=demo_project, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    fingerprint = read_json(demo_project / "data" / "fingerprint.json")
    assert Path(fingerprint["path"]).resolve() == paths[NEW_VERSION].resolve()
