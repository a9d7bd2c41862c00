"""The kedro service's image and loop, without Docker.

- project/Dockerfile: pinned slim Python base, non-root user, dependencies in their own
  layer before the source, Kedro's, MLflow's and GX's telemetry off, with_secrets.py as the
  entrypoint; project/.dockerignore.
- project/docker/with_secrets.py, run for real: NAME__FILE becomes NAME for the command, which
  replaces it; unreadable, empty or doubly set secrets are refused by name.
- project/docker/run-loop.sh, run for real with a stand-in `kedro` on PATH: the data size
  knob, the bad-data knob, the interval, and a prompt, clean stop on SIGTERM.
- project/docker/inject_bad_data.py on real generated data: the corruption it promises,
  and the project's validation suites catching it.
- project/docker/healthcheck.py: healthy with a fresh heartbeat only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "project"
DOCKER_DIR = PROJECT / "docker"
DOCKERFILE = PROJECT / "Dockerfile"

FAKE_KEDRO = """#!/usr/bin/env bash
echo "kedro $*" >> "$CALLS"
if [[ "$*" == *data_generation* ]]; then
    mkdir -p data/01_raw
    printf 'id,price\\n1,"$1,000.0"\\n2,"$20.5"\\n3,"$3.0"\\n' > data/01_raw/shuttles.csv
fi
sleep "${FAKE_KEDRO_SECONDS:-0.1}"
"""


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------


def test_dockerfile_base_is_a_pinned_slim_python_311() -> None:
    bases = [argument for instruction, argument in dockerfile_instructions() if instruction == "FROM"]
    assert len(bases) == 1
    assert re.match(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?$", bases[0]), bases[0]


def test_dockerfile_installs_requirements_in_their_own_layer_before_the_source() -> None:
    steps = dockerfile_instructions()
    text = [f"{instruction} {argument}" for instruction, argument in steps]
    copy_requirements = next(i for i, line in enumerate(text) if line.startswith("COPY requirements.txt"))
    install = next(i for i, line in enumerate(text) if line.startswith("RUN pip install -r requirements.txt"))
    copy_source = next(i for i, line in enumerate(text) if line.startswith("COPY src"))
    assert copy_requirements < install < copy_source
    assert not any(line.startswith(("COPY . ", "ADD . ")) for line in text[:install]), "the source would bust the cache"


def test_dockerfile_runs_as_a_non_root_user_with_telemetry_off() -> None:
    steps = dockerfile_instructions()
    users = [argument.strip() for instruction, argument in steps if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    environment = " ".join(argument for instruction, argument in steps if instruction == "ENV")
    assert "KEDRO_DISABLE_TELEMETRY=true" in environment
    assert "MLFLOW_DISABLE_TELEMETRY=true" in environment
    assert "GX_ANALYTICS_ENABLED=false" in environment
    assert "PYTHONUNBUFFERED=1" in environment
    command = [argument for instruction, argument in steps if instruction == "CMD"][-1]
    assert "run-loop.sh" in command


def test_dockerfile_entrypoint_reads_secrets_from_files_and_keeps_the_loop_as_command() -> None:
    steps = dockerfile_instructions()
    assert [argument for instruction, argument in steps if instruction == "ENTRYPOINT"] == ['["python", "/app/docker/with_secrets.py"]']
    assert [argument for instruction, argument in steps if instruction == "CMD"] == ['["/app/docker/run-loop.sh"]']
    # COPY docker ./docker puts it at /app/docker/, and the chmod makes it executable.
    assert (DOCKER_DIR / "with_secrets.py").is_file() and os.access(DOCKER_DIR / "with_secrets.py", os.X_OK)


def test_dockerignore_keeps_data_and_local_state_out() -> None:
    patterns = {line.strip() for line in (PROJECT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {"data/", "mlflow.db", "mlruns/"} <= patterns
    assert any("__pycache__" in pattern for pattern in patterns)


def test_every_file_the_dockerfile_copies_exists() -> None:
    for instruction, argument in dockerfile_instructions():
        if instruction == "COPY":
            sources = [part for part in argument.split()[:-1] if not part.startswith("--")]
            for source in sources:
                assert (PROJECT / source).exists(), source


# ---------------------------------------------------------------------------
# run-loop.sh
# ---------------------------------------------------------------------------


@pytest.fixture
def loop_app(tmp_path: Path) -> dict[str, object]:
    """A fake /app: the docker/ scripts, and a stand-in kedro that records its arguments."""
    app = tmp_path / "app"
    shutil.copytree(DOCKER_DIR, app / "docker")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kedro = bin_dir / "kedro"
    kedro.write_text(FAKE_KEDRO)
    kedro.chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "KEDRO_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        "KEDRO_RUN_INTERVAL": "1",
    }
    return {"app": app, "calls": calls, "env": env, "heartbeat": tmp_path / "heartbeat"}


def start_loop(loop_app: dict[str, object], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", str(loop_app["app"] / "docker" / "run-loop.sh")],
        env={**loop_app["env"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_calls(calls: Path, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = calls.read_text().splitlines() if calls.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"only {lines} after {timeout} s")


def stop_loop(process: subprocess.Popen[str]) -> tuple[float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    return time.monotonic() - started, output


def test_run_loop_cycles_sizes_injects_bad_data_and_passes_run_args(loop_app: dict[str, object]) -> None:
    process = start_loop(
        loop_app,
        KEDRO_N_SHUTTLES_CHOICES="100 200",
        KEDRO_INJECT_BAD_DATA="1",
        KEDRO_INJECT_BAD_DATA_EVERY="2",
        KEDRO_RUN_ARGS="--runner ThreadRunner",
    )
    try:
        calls = wait_for_calls(loop_app["calls"], 6)
    finally:
        _, output = stop_loop(process)

    assert calls[:6] == [
        "kedro run --pipeline data_generation --params data_generation.n_shuttles=100",
        "kedro run --runner ThreadRunner",
        "kedro run --pipeline data_generation --params data_generation.n_shuttles=200",
        "kedro run --runner ThreadRunner",
        "kedro run --pipeline data_generation --params data_generation.n_shuttles=100",
        "kedro run --runner ThreadRunner",
    ]
    # Every second iteration (the 1st and the 3rd) is corrupted.
    assert output.count("inject_bad_data:") == 2, output
    assert process.returncode == 0
    assert loop_app["heartbeat"].exists()


def test_run_loop_without_knobs_just_runs_kedro(loop_app: dict[str, object]) -> None:
    process = start_loop(loop_app, KEDRO_N_SHUTTLES_CHOICES="", KEDRO_INJECT_BAD_DATA="0")
    try:
        calls = wait_for_calls(loop_app["calls"], 2)
    finally:
        stop_loop(process)
    assert calls[:2] == ["kedro run ", "kedro run "] or calls[:2] == ["kedro run", "kedro run"]


@pytest.mark.parametrize("busy", ["sleeping", "running"])
def test_run_loop_stops_promptly_on_sigterm(loop_app: dict[str, object], busy: str) -> None:
    extra = {"KEDRO_RUN_INTERVAL": "300"} if busy == "sleeping" else {"FAKE_KEDRO_SECONDS": "300"}
    process = start_loop(loop_app, KEDRO_N_SHUTTLES_CHOICES="", **extra)
    wait_for_calls(loop_app["calls"], 1)
    time.sleep(0.5)

    took, output = stop_loop(process)

    assert process.returncode == 0, output
    assert took < 3, f"the loop took {took:.1f} s to stop while {busy}"
    assert "stopping" in output


@pytest.mark.parametrize(
    "variable, value",
    [("KEDRO_RUN_INTERVAL", "soon"), ("KEDRO_N_SHUTTLES_CHOICES", "100 five"), ("KEDRO_N_SHUTTLES_CHOICES", "5"), ("KEDRO_INJECT_BAD_DATA", "yes")],
)
def test_run_loop_refuses_bad_settings(loop_app: dict[str, object], variable: str, value: str) -> None:
    process = start_loop(loop_app, **{variable: value})
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 2
    assert variable in output


# ---------------------------------------------------------------------------
# inject_bad_data.py
# ---------------------------------------------------------------------------


def test_inject_bad_data_makes_negative_prices_and_duplicate_ids(tmp_path: Path) -> None:
    import pandas as pd
    from spaceflights.pipelines.data_generation.nodes import generate_raw_data
    from spaceflights.pipelines.data_processing.nodes import preprocess_shuttles

    _, shuttles, _ = generate_raw_data({"seed": 1, "n_shuttles": 400})
    path = tmp_path / "shuttles.csv"
    shuttles.to_csv(path, index=False)

    result = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "inject_bad_data.py"), str(path), "--negative-fraction", "0.1", "--duplicates", "7"],
        check=False, capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stderr
    corrupted = pd.read_csv(path)
    assert len(corrupted) == 407
    assert corrupted["id"].duplicated().sum() == 7
    prices = preprocess_shuttles(corrupted)["price"]
    assert (prices[:400] < 0).sum() == 40  # every 10th row; the copies repeat the first 7 rows
    assert "40 negative prices, 7 duplicated ids" in result.stdout


def test_inject_bad_data_fails_clearly_without_the_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(DOCKER_DIR / "inject_bad_data.py"), str(tmp_path / "none.csv")], check=False, capture_output=True, text=True)
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_the_validation_suites_catch_the_injected_data(sample_project: Path) -> None:
    """The knob does what it is for: with injected data the run fails on validation."""
    from conftest import run_project
    from kedro_observability import DataValidationError

    run_project(sample_project, pipeline_names=["data_generation"])
    shuttles = sample_project / "data" / "01_raw" / "shuttles.csv"
    subprocess.run([sys.executable, str(DOCKER_DIR / "inject_bad_data.py"), str(shuttles)], check=True, capture_output=True)

    with pytest.raises(Exception) as failure:
        run_project(sample_project)
    # The catalog's validator raises the plugin's error (a Kedro DataValidationError too).
    assert isinstance(failure.value, DataValidationError), failure.value
    assert "shuttles" in str(failure.value)


# ---------------------------------------------------------------------------
# healthcheck.py
# ---------------------------------------------------------------------------


def run_healthcheck(heartbeat: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / "healthcheck.py")],
        env={**os.environ, "KEDRO_HEARTBEAT_FILE": str(heartbeat), **env},
        check=False, capture_output=True, text=True,
    )


def test_healthcheck_follows_the_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    assert run_healthcheck(heartbeat).returncode == 1
    heartbeat.touch()
    assert run_healthcheck(heartbeat).returncode == 0
    old = time.time() - 3600
    os.utime(heartbeat, (old, old))
    assert run_healthcheck(heartbeat, KEDRO_RUN_INTERVAL="60", KEDRO_HEALTH_GRACE="600").returncode == 1


# ---------------------------------------------------------------------------
# with_secrets.py
# ---------------------------------------------------------------------------

WITH_SECRETS = DOCKER_DIR / "with_secrets.py"
SHOW_ENVIRONMENT = "import json, os; print(json.dumps({'pid': os.getpid(), 'env': dict(os.environ)}))"


def with_secrets(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WITH_SECRETS), *command],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=30, check=False,
    )


def test_with_secrets_hands_each_file_to_the_command_as_its_variable(tmp_path: Path) -> None:
    import json

    password = tmp_path / "mlflow_tracking_password"
    password.write_text("s3cret with spaces, $dollar and 'quotes'\n")
    key = tmp_path / "key"
    key.write_text("no newline")
    process = subprocess.Popen(
        [sys.executable, str(WITH_SECRETS), sys.executable, "-c", SHOW_ENVIRONMENT],
        env={"PATH": os.environ["PATH"], "MLFLOW_TRACKING_PASSWORD__FILE": str(password), "OTHER_KEY__FILE": str(key), "PLAIN": "kept"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    output, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    seen = json.loads(output)
    assert seen["env"]["MLFLOW_TRACKING_PASSWORD"] == "s3cret with spaces, $dollar and 'quotes'"
    assert seen["env"]["OTHER_KEY"] == "no newline"
    assert seen["env"]["PLAIN"] == "kept"
    assert not [name for name in seen["env"] if name.endswith("__FILE")]
    assert seen["pid"] == process.pid, "the command must replace it (exec), so that signals reach it"


def test_with_secrets_passes_the_command_s_exit_status_on(tmp_path: Path) -> None:
    assert with_secrets(sys.executable, "-c", "raise SystemExit(7)").returncode == 7


@pytest.mark.parametrize("case", ["missing", "empty", "both set", "no command", "no such command"])
def test_with_secrets_refuses_what_cannot_work_naming_it(tmp_path: Path, case: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    command = ("true",)
    env = {
        "missing": {"MLFLOW_TRACKING_PASSWORD__FILE": str(tmp_path / "absent")},
        "empty": {"MLFLOW_TRACKING_PASSWORD__FILE": str(empty)},
        "both set": {"MLFLOW_TRACKING_PASSWORD__FILE": str(empty), "MLFLOW_TRACKING_PASSWORD": "direct"},
        "no command": {},
        "no such command": {},
    }[case]
    if case == "no command":
        command = ()
    if case == "no such command":
        command = (str(tmp_path / "no-such-program"),)

    result = with_secrets(*command, **env)

    assert result.returncode == 2, result
    assert result.stderr.startswith("with_secrets: error: ")
    assert "Traceback" not in result.stderr
    expected = {"missing": "MLFLOW_TRACKING_PASSWORD__FILE", "empty": "is empty", "both set": "both MLFLOW_TRACKING_PASSWORD and MLFLOW_TRACKING_PASSWORD__FILE", "no command": "no command", "no such command": "cannot run"}[case]
    assert expected in result.stderr

