"""End to end, with a real Docker engine: `docker compose up --wait`, pipeline runs, then
Grafana's HTTP API (dashboards provisioned in the Kedro folder, every panel query returning
data through Grafana's /api/ds/query), MLflow (the runs are there), persistence across
`down`/`up`, and a prompt stop of the kedro loop.

Skipped only when no Docker engine answers `docker info` (as on this project's CI machine);
.github/workflows/stack.yml runs it on GitHub's ubuntu-latest, which has Docker. With an
engine but no Compose v2 it FAILS.

The stack runs as its own compose project (kos-e2e-<pid>) on free ports, with a fast loop and
no password in its env file: the credentials service generates them, and the tests read them
as a user does, with `docker compose run --rm -T credentials show`. Issue 17 at the engine: the
one-shot credentials service exited 0, every container runs read-only, without capabilities,
with no-new-privileges and as its non-root user, MLflow refuses requests without the login,
and `down -v` forgets the passwords. `down -v` removes the stack at the end, volumes included.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from local_servers import free_port

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DASHBOARD_UIDS = ("kedro-overview", "kedro-nodes", "kedro-datasets")
UP_TIMEOUT = 1200  # the first build installs the project's requirements


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_command() -> list[str]:
    """`docker compose` (the plugin), else a standalone Compose v2; FAILS without one."""
    attempts = [["docker", "compose"], [str(REPO / ".tools" / "docker-compose")], ["docker-compose"]]
    for command in attempts:
        try:
            version = subprocess.run([*command, "version", "--short"], check=False, capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if version.returncode == 0 and re.match(r"v?2\.", version.stdout.strip()):
            return command
    pytest.fail("Docker runs but no Compose v2 was found (docker compose plugin, or bash tests/tools/install-compose.sh)", pytrace=False)


@dataclass
class Stack:
    compose: list[str]
    grafana: str
    prometheus: str
    mlflow: str

    shown: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def logins(self, fresh: bool = False) -> dict[str, tuple[str, str]]:
        """service -> (user, password), as `docker compose run --rm -T credentials show` prints them."""
        if fresh or not self.shown:
            shown = self.run("run", "--rm", "-T", "credentials", "show", timeout=300).stdout
            pattern = r"^(Grafana|MLflow) +\S+ +user: (\S+) +password: (\S+)"
            self.shown = {name: (user, password) for name, user, password in re.findall(pattern, shown, flags=re.MULTILINE)}
            assert set(self.shown) == {"Grafana", "MLflow"}, shown
        return self.shown

    @property
    def mlflow_login(self) -> tuple[str, str]:
        return self.logins()["MLflow"]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.compose, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{self.logs()}")
        return result

    def logs(self) -> str:
        result = subprocess.run([*self.compose, "logs", "--no-color", "--tail", "80"], check=False, capture_output=True, text=True, timeout=120, cwd=REPO)
        return result.stdout[-20000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    if not docker_engine_answers():
        pytest.skip("no Docker engine answers `docker info`")
    ports = {"PROMETHEUS_PORT": free_port(), "GRAFANA_PORT": free_port(), "MLFLOW_PORT": free_port()}
    env_file = tmp_path_factory.mktemp("stack") / ".env"
    example = (REPO / ".env.example").read_text()
    settings = {
        **{name: str(port) for name, port in ports.items()},
        "MLFLOW_ALLOWED_HOSTS": f"mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000,"
        f"localhost:{ports['MLFLOW_PORT']},127.0.0.1:{ports['MLFLOW_PORT']}",
        "KEDRO_RUN_INTERVAL": "5",
        "KEDRO_N_SHUTTLES_CHOICES": "1000 2000",
        # Every third run on corrupted data: validation fails and alerts fire, so that the
        # failure, validation and alert panels have something to show.
        "KEDRO_INJECT_BAD_DATA": "1",
        "KEDRO_INJECT_BAD_DATA_EVERY": "3",
    }
    lines = [line for line in example.splitlines() if line.split("=", 1)[0] not in settings]
    env_file.write_text("\n".join([*lines, *(f"{name}={value}" for name, value in settings.items())]) + "\n")
    compose = [*compose_command(), "-p", f"kos-e2e-{os.getpid()}", "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yml")]
    stack = Stack(
        compose,
        grafana=f"http://127.0.0.1:{ports['GRAFANA_PORT']}",
        prometheus=f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}",
        mlflow=f"http://127.0.0.1:{ports['MLFLOW_PORT']}",
    )
    try:
        stack.run("up", "--detach", "--build", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 300)
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


# ---------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------


def http(url: str, body: Any = None, auth: tuple[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def poll(what: str, check, timeout: float = 300, interval: float = 3) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {str(last)[:2000]})")


def prometheus_query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    status, body = http(f"{stack.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert status == 200, body
    return body["data"]["result"]


def admin(stack: Stack) -> tuple[str, str]:
    """Grafana's admin login, generated on the first start."""
    return stack.logins()["Grafana"]


# ---------------------------------------------------------------------------
# Tests, in order: the stack runs, data flows, Grafana and MLflow show it, restarts keep it
# ---------------------------------------------------------------------------


def test_every_service_is_running_and_healthy(stack: Stack) -> None:
    result = stack.run("ps", "--all", "--format", "json")
    lines = result.stdout.strip()
    services = json.loads(lines) if lines.startswith("[") else [json.loads(line) for line in lines.splitlines()]
    state = {item["Service"]: (item["State"], item.get("Health", "")) for item in services}
    long_running = {"statsd-exporter", "prometheus", "alertmanager", "alert-log", "grafana", "mlflow", "kedro"}
    assert set(state) == long_running | {"credentials"}
    assert all(state[name] == ("running", "healthy") for name in long_running), state
    [credentials] = [item for item in services if item["Service"] == "credentials"]
    assert credentials["State"] == "exited" and credentials.get("ExitCode") == 0, credentials


def test_every_container_is_hardened_as_the_compose_file_says(stack: Stack) -> None:
    result = stack.run("ps", "--all", "--quiet")
    ids = result.stdout.split()
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=60, check=True).stdout)
    by_service = {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in inspected}
    assert len(by_service) == 8
    for service, item in by_service.items():
        host = item["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        added = [name.removeprefix("CAP_") for name in host.get("CapAdd") or []]
        assert added == (["CHOWN"] if service == "credentials" else []), (service, added)
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), service
        user = item["Config"]["User"]
        if service == "credentials":
            assert user in ("", "0", "root"), user
            assert host["NetworkMode"] == "none"
        else:
            assert user and user.split(":")[0] not in ("0", "root"), (service, user)
    # Each running service's processes really run as that user.
    for service in ("prometheus", "grafana", "mlflow", "kedro", "alert-log", "statsd-exporter", "alertmanager"):
        top = subprocess.run(["docker", "top", by_service[service]["Id"], "-o", "uid"], capture_output=True, text=True, timeout=60, check=True).stdout.split()[1:]
        assert top and "0" not in top, (service, top)


def test_mlflow_refuses_requests_without_the_login(stack: Stack) -> None:
    url = f"{stack.mlflow}/api/2.0/mlflow/experiments/search?max_results=5"
    assert http(url)[0] == 401
    assert http(url, auth=(stack.mlflow_login[0], stack.mlflow_login[1] + "x"))[0] == 401
    assert http(url, auth=stack.mlflow_login)[0] == 200
    assert http(f"{stack.mlflow}/health")[0] == 200


def test_pipeline_runs_reach_prometheus(stack: Stack) -> None:
    poll(
        "two successful __default__ runs in Prometheus",
        lambda: [s for s in prometheus_query(stack, 'kedro_pipeline_runs_total{pipeline="__default__", status="success"}') if float(s["value"][1]) >= 2],
        timeout=600,
    )
    assert prometheus_query(stack, 'up{job="statsd-exporter"} == 1')
    assert prometheus_query(stack, "kedro_node_duration_seconds_count")
    assert prometheus_query(stack, "kedro_validation_runs_total")


def test_grafana_refuses_anonymous_access(stack: Stack) -> None:
    status, _ = http(f"{stack.grafana}/api/search")
    assert status == 401
    status, _ = http(f"{stack.grafana}/api/search", auth=("admin", "admin"))
    assert status == 401, "admin/admin must not work"


def test_grafana_has_the_datasource_and_the_dashboards_in_the_kedro_folder(stack: Stack) -> None:
    status, datasource = http(f"{stack.grafana}/api/datasources/uid/prometheus", auth=admin(stack))
    assert status == 200, datasource
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    for uid in DASHBOARD_UIDS:
        status, body = http(f"{stack.grafana}/api/dashboards/uid/{uid}", auth=admin(stack))
        assert status == 200, (uid, body)
        assert body["meta"]["folderTitle"] == "Kedro"
        assert body["meta"]["provisioned"] is True
        committed = json.loads((DASHBOARD_DIR / f"{uid}.json").read_text())
        assert [p["title"] for p in body["dashboard"]["panels"]] == [p["title"] for p in committed["panels"]]


def panel_queries() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for uid in DASHBOARD_UIDS:
        dashboard = json.loads((DASHBOARD_DIR / f"{uid}.json").read_text())
        for item in dashboard["panels"]:
            for query in item.get("targets", []):
                found.append((uid, f"{item['title']}/{query['refId']}", query))
    return found


def grafana_query(stack: Stack, query: dict[str, Any]) -> tuple[int, Any]:
    """One panel query through Grafana's backend, with every dashboard variable on All
    (Grafana itself interpolates $__rate_interval, $__interval and $__range)."""
    expr = re.sub(r"\$\{?(project|pipeline|node|dataset)\}?", ".*", query["expr"])
    body = {
        "from": "now-30m",
        "to": "now",
        "queries": [
            {
                "refId": query["refId"],
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "expr": expr,
                "instant": bool(query.get("instant")),
                "range": not query.get("instant"),
                "format": query.get("format", "time_series"),
                "intervalMs": 5000,
                "maxDataPoints": 400,
            }
        ],
    }
    return http(f"{stack.grafana}/api/ds/query", body, auth=admin(stack))


def has_values(response: Any, ref: str) -> bool:
    frames = response.get("results", {}).get(ref, {}).get("frames", [])
    return any(len(values) > 0 for frame in frames for values in frame.get("data", {}).get("values", [])[1:])


@pytest.mark.parametrize("uid, name, query", panel_queries(), ids=[f"{uid}/{name}" for uid, name, _ in panel_queries()])
def test_every_panel_query_returns_data_through_grafana(stack: Stack, uid: str, name: str, query: dict[str, Any]) -> None:
    def answer() -> Any:
        status, response = grafana_query(stack, query)
        assert status == 200, response
        error = response["results"][query["refId"]].get("error")
        assert not error, error
        return response if has_values(response, query["refId"]) else None

    poll(f"{uid} / {name} returning data", answer, timeout=300, interval=5)


def mlflow_runs(stack: Stack) -> list[dict[str, Any]]:
    login = stack.mlflow_login
    status, body = http(f"{stack.mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=spaceflights", auth=login)
    if status != 200:
        return []
    experiment = body["experiment"]["experiment_id"]
    status, body = http(f"{stack.mlflow}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment], "max_results": 1000}, auth=login)
    assert status == 200, body
    return body.get("runs", [])


def test_mlflow_has_the_runs(stack: Stack) -> None:
    runs = poll(
        "a FINISHED __default__ run in MLflow",
        lambda: [
            run for run in mlflow_runs(stack)
            if run["info"]["status"] == "FINISHED"
            and {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}.get("kedro.pipeline") == "__default__"
        ],
        timeout=300,
    )
    tags = {tag["key"] for tag in runs[0]["data"]["tags"]}
    assert {"kedro.run_id", "kedro.pipeline", "kedro.env", "kedro.version"} <= tags


def test_data_survives_down_and_up(stack: Stack) -> None:
    runs_before = {run["info"]["run_id"] for run in mlflow_runs(stack)}
    assert runs_before
    stack.run("down", "--timeout", "20")
    stack.run("up", "--detach", "--wait", "--wait-timeout", "600", timeout=900)

    assert runs_before <= {run["info"]["run_id"] for run in mlflow_runs(stack)}
    status, _ = http(f"{stack.grafana}/api/dashboards/uid/kedro-overview", auth=admin(stack))
    assert status == 200
    # Samples scraped before the restart are still in Prometheus' volume.
    poll("old samples in Prometheus", lambda: prometheus_query(stack, "count_over_time(kedro_pipeline_runs_total[30m]) > 20"), timeout=60)


def test_the_kedro_loop_stops_promptly(stack: Stack) -> None:
    started = time.monotonic()
    stack.run("stop", "--timeout", "30", "kedro")
    took = time.monotonic() - started
    assert took < 15, f"stopping kedro took {took:.0f} s: the loop does not handle SIGTERM"
    result = stack.run("ps", "--all", "--format", "json", "kedro")
    assert '"ExitCode":0' in result.stdout.replace(" ", ""), result.stdout



def test_down_v_forgets_the_passwords(stack: Stack) -> None:
    """Last: `docker compose down -v` deletes the credentials' volumes with the data; the next
    start (here `run credentials show`, which generates them as `up` would) has new ones."""
    before = stack.logins(fresh=True)
    stack.run("down", "--volumes", "--timeout", "20")
    after = stack.logins(fresh=True)
    assert after["Grafana"][1] != before["Grafana"][1]
    assert after["MLflow"][1] != before["MLflow"][1]

