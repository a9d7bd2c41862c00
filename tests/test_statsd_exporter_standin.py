"""Tests of the statsd_exporter stand-in and of the project's statsd-exporter/mapping.yml.

(a) The stand-in reproduces recordings of the real statsd_exporter
    (tests/fixtures/statsd-exporter, see its README.md).
(b) The project's mapping turns every statsd name the hooks send into exactly the
    declared Prometheus metric (names, types, labels), with nothing unmapped.
(c) Label values that the hooks' sanitisation produces survive the trip unchanged.

If the recordings are missing the tests fail rather than skip.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import EXPORTER_RECORDINGS, declared_metrics  # noqa: E402
from statsd_exporter_standin import SUPPORTED_KEYS, StandIn, load_mappings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = EXPORTER_RECORDINGS
MAPPING = REPO / "statsd-exporter" / "mapping.yml"
ODD_CASE = "invalid-and-odd-lines"
MISSING = "<fixtures missing>"

CASES = sorted(p.parent.name for p in FIXTURES.glob("*/mapping.yml")) or [MISSING]
CASES = [c for c in CASES if c != ODD_CASE]

# What the hooks send (one line per statsd name) and the Prometheus metric it must become.
HOOK_LINES = {
    "kedro.pipeline.runs,project=demo,pipeline=__default__,status=success:1|c": "kedro_pipeline_runs_total",
    "kedro.pipeline.duration,project=demo,pipeline=__default__:1234.567890|ms": "kedro_pipeline_duration_seconds",
    "kedro.pipeline.last_success_timestamp,project=demo,pipeline=__default__:1732650000|g":
        "kedro_pipeline_last_success_timestamp_seconds",
    "kedro.pipeline.last_failure_timestamp,project=demo,pipeline=__default__:1732650100|g":
        "kedro_pipeline_last_failure_timestamp_seconds",
    "kedro.node.duration,project=demo,pipeline=__default__,node=split_data:12.500000|ms": "kedro_node_duration_seconds",
    "kedro.node.runs,project=demo,pipeline=__default__,node=split_data,status=failure:1|c": "kedro_node_runs_total",
    "kedro.node.memory_peak,project=demo,pipeline=__default__,node=split_data:123456789|g":
        "kedro_node_memory_peak_bytes",
    "kedro.dataset.size,project=demo,dataset=companies:2048|g": "kedro_dataset_size_bytes",
    "kedro.dataset.rows,project=demo,dataset=companies:77|g": "kedro_dataset_rows",
    "kedro.dataset.load_duration,project=demo,dataset=companies:3.250000|ms": "kedro_dataset_load_duration_seconds",
    "kedro.dataset.save_duration,project=demo,dataset=companies:8.000000|ms": "kedro_dataset_save_duration_seconds",
    "kedro.dataset.load_memory,project=demo,dataset=companies:4096|g": "kedro_dataset_load_memory_bytes",
    "kedro.validation.runs,project=demo,dataset=companies,status=passed:1|c": "kedro_validation_runs_total",
    "kedro.validation.failed_expectations,project=demo,dataset=companies:2|g": "kedro_validation_failed_expectations",
}

# ---- helpers ---------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, str], Samples]:
    """Parse Prometheus text format strictly enough for tests: (types, helps, samples)."""
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ", 1)
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
        elif line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            raw = m.group(2) or ""
            pairs = _LABEL.findall(raw)
            assert "".join(f'{k}="{v}",' for k, v in pairs).rstrip(",") == raw, f"bad labels: {line!r}"
            labels = frozenset((k, re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], v)) for k, v in pairs)
            key = (m.group(1), labels)
            assert key not in samples, f"duplicate series: {line!r}"
            samples[key] = float(m.group(3))
    return types, helps, samples


def only(samples: Samples, prefix: str) -> Samples:
    return {k: v for k, v in samples.items() if k[0].startswith(prefix)}


def unmapped(samples: Samples) -> float:
    return samples[("statsd_exporter_events_unmapped_total", frozenset())]


def family_of(sample_name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count", ""):
        base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
        if sample_name.endswith(suffix) and base in types:
            return base
    raise AssertionError(f"sample {sample_name} has no # TYPE line")


def case_dir(case: str) -> Path:
    if case == MISSING or not (FIXTURES / case / "mapping.yml").is_file():
        pytest.fail(f"statsd_exporter fixtures not found in {FIXTURES}")
    return FIXTURES / case


def input_lines(case: Path) -> list[str]:
    return [line for line in (case / "input.statsd").read_text(encoding="utf-8").split("\n") if line]


def send_udp(standin: StandIn, packets: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet.encode("utf-8"), ("127.0.0.1", standin.udp_port))


def exposition_after(standin: StandIn, lines: list[str], transport: str) -> str:
    """Give ``lines`` to the stand-in by ``feed`` or over real UDP; its /metrics text."""
    if transport == "feed":
        for line in lines:
            standin.feed(line)
        return standin.render()
    standin.start()
    send_udp(standin, lines)
    assert standin.wait_for_lines(len(lines), timeout=10), "UDP lines did not all arrive"
    return scrape(standin)


def scrape(standin: StandIn) -> str:
    with urllib.request.urlopen(standin.metrics_url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode("utf-8")


def contract_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """The declared metrics: name -> (type, label names)."""
    return declared_metrics()


def sanitize(name: str) -> str:
    """The plugin's own label sanitisation, the one every hook uses."""
    from kedro_observability.names import sanitize_name

    return str(sanitize_name(name))


# ---- (a) the stand-in against recordings of the real exporter -------------------------------
def test_fixtures_are_present() -> None:
    assert FIXTURES.is_dir(), f"{FIXTURES} missing"
    assert MISSING not in CASES and len(CASES) >= 10 and (FIXTURES / ODD_CASE).is_dir()


@pytest.mark.parametrize("transport", ["feed", "udp"])
@pytest.mark.parametrize("case", CASES)
def test_standin_reproduces_recording(case: str, transport: str) -> None:
    folder = case_dir(case)
    lines = input_lines(folder)
    with StandIn(folder / "mapping.yml") as standin:
        text = exposition_after(standin, lines, transport)
    _, _, got = parse_exposition(text)
    _, _, expected = parse_exposition((folder / "expected.prom").read_text(encoding="utf-8"))
    assert only(got, "kedro_") == pytest.approx(only(expected, "kedro_"), rel=1e-12, abs=0)
    assert unmapped(got) == unmapped(expected)


def test_standin_counts_broken_lines_like_the_real_exporter() -> None:
    folder = case_dir(ODD_CASE)
    standin = StandIn(folder / "mapping.yml")
    for line in input_lines(folder):
        standin.feed(line)
    _, _, got = parse_exposition(standin.render())
    _, _, expected = parse_exposition((folder / "expected.prom").read_text(encoding="utf-8"))
    expected = {k: v for k, v in expected.items() if k[0] != "statsd_exporter_metrics_total"}
    assert {k: v for k, v in got.items() if k in expected or k[0].startswith("kedro_")} == expected


def test_multi_line_packets_and_negative_gauges() -> None:
    standin = StandIn(MAPPING)
    name = "kedro.dataset.load_memory,project=p,dataset=d"
    standin.feed(f"{name}:0|g\n{name}:-512|g")  # how the statsd client sends a negative gauge
    standin.feed("kedro.node.runs,project=p,pipeline=q,node=n,status=success:1|c|@0.5\n")
    _, _, got = parse_exposition(standin.render())
    assert got[("kedro_dataset_load_memory_bytes", frozenset({("project", "p"), ("dataset", "d")}))] == -512
    assert got[("kedro_node_runs_total", frozenset({("project", "p"), ("pipeline", "q"), ("node", "n"),
                                                    ("status", "success")}))] == 2
    assert standin.lines_received == 3 and unmapped(got) == 0


def test_http_endpoints_and_stop() -> None:
    with StandIn(MAPPING).start() as standin:
        base = standin.metrics_url.rsplit("/", 1)[0]
        with urllib.request.urlopen(base + "/-/healthy", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/nothing", timeout=5)
        port = standin.http_port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_command_line_runs(tmp_path: Path) -> None:
    script = Path(__file__).with_name("statsd_exporter_standin.py")
    proc = subprocess.Popen([sys.executable, str(script), "--mapping", str(MAPPING),
                             "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split("metrics at ")[1].strip()
        with urllib.request.urlopen(url, timeout=5) as response:
            assert b"statsd_exporter_events_unmapped_total 0" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stand_in_rejects_keys_it_does_not_implement(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yml"
    path.write_text("mappings:\n  - match: a.b\n    name: a_b\n    ttl: 1m\n")
    with pytest.raises(ValueError, match="not supported"):
        StandIn(path)
    path.write_text("mappings:\n  - match: a.b\n    timer_type: histogram\n    name: a_b\n")
    with pytest.raises(ValueError, match="not supported"):
        StandIn(path)


# ---- (b) the project's mapping against the contract ------------------------------------------
def test_project_mapping_yields_exactly_the_contract() -> None:
    contract = contract_metrics()
    standin = StandIn(MAPPING)
    for line in HOOK_LINES:
        standin.feed(line)
    types, helps, samples = parse_exposition(standin.render())
    kedro_types = {n: t for n, t in types.items() if not n.startswith("statsd_exporter_")}
    assert kedro_types == {name: kind for name, (kind, _) in contract.items()}
    for (name, labels), _ in only(samples, "kedro_").items():
        family = family_of(name, types)
        assert {k for k, _ in labels} - {"le"} == contract[family][1], name
        assert helps[family] and helps[family] != "Metric autogenerated by statsd_exporter."
    assert unmapped(samples) == 0
    assert sorted(HOOK_LINES.values()) == sorted(contract), "test table and contract diverge"


@pytest.mark.parametrize("line", list(HOOK_LINES))
def test_each_statsd_name_maps_to_its_metric(line: str) -> None:
    standin = StandIn(MAPPING)
    standin.feed(line)
    types, _, samples = parse_exposition(standin.render())
    assert {n for n in types if n.startswith("kedro_")} == {HOOK_LINES[line]}
    assert unmapped(samples) == 0


@pytest.mark.parametrize("kind", ["counter", "gauge", "ms"])
def test_wrong_statsd_type_stays_unmapped(kind: str) -> None:
    standin = StandIn(MAPPING)
    wrong = {"counter": "kedro.dataset.size,project=p,dataset=d:1|c",
             "gauge": "kedro.node.duration,project=p,pipeline=q,node=n:1|g",
             "ms": "kedro.node.runs,project=p,pipeline=q,node=n,status=success:1|ms"}[kind]
    standin.feed(wrong)
    assert unmapped(parse_exposition(standin.render())[2]) == 1


def test_real_statsd_client_over_udp() -> None:
    statsd = pytest.importorskip("statsd")
    with StandIn(MAPPING).start() as standin:
        client = statsd.StatsClient("127.0.0.1", standin.udp_port)
        client.timing("kedro.node.duration,project=p,pipeline=q,node=n", 12.5)
        client.incr("kedro.node.runs,project=p,pipeline=q,node=n,status=success")
        client.gauge("kedro.dataset.load_memory,project=p,dataset=d", -2048)
        client.gauge("kedro.dataset.rows,project=p,dataset=d", 10)
        assert standin.wait_for_lines(5, timeout=10)
        types, _, samples = parse_exposition(scrape(standin))
    assert samples[("kedro_node_duration_seconds_sum", frozenset({("project", "p"), ("pipeline", "q"),
                                                                   ("node", "n")}))] == pytest.approx(0.0125)
    assert samples[("kedro_dataset_load_memory_bytes", frozenset({("project", "p"), ("dataset", "d")}))] == -2048
    assert samples[("kedro_dataset_rows", frozenset({("project", "p"), ("dataset", "d")}))] == 10
    assert unmapped(samples) == 0


def test_duration_buckets_cover_5ms_to_1h() -> None:
    mappings, _, _ = load_mappings(MAPPING)
    by_name = {m.name: m for m in mappings}
    for name in ("kedro_node_duration_seconds", "kedro_pipeline_duration_seconds"):
        assert by_name[name].observer_type == "histogram"
        assert by_name[name].buckets[0] == 0.005 and by_name[name].buckets[-1] == 3600
    for name in ("kedro_dataset_load_duration_seconds", "kedro_dataset_save_duration_seconds"):
        assert by_name[name].observer_type == "histogram" and by_name[name].buckets[-1] >= 60
    histograms = {n for n, (kind, _) in contract_metrics().items() if kind == "histogram"}
    assert histograms <= {m.name for m in mappings if m.observer_type == "histogram"}


def test_project_mapping_uses_only_keys_the_stand_in_implements() -> None:
    doc = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    assert set(doc) <= SUPPORTED_KEYS["top"]
    assert set(doc.get("defaults", {})) <= SUPPORTED_KEYS["defaults"]
    for m in doc["mappings"]:
        assert set(m) <= SUPPORTED_KEYS["mapping"], m
        assert set(m.get("histogram_options") or {}) <= SUPPORTED_KEYS["histogram_options"]
        assert m.get("help") and "labels" not in m and m.get("action", "map") == "map", m
    load_mappings(MAPPING)  # validates names, globs and buckets as the real exporter would


def test_rendered_page_passes_promtool() -> None:
    import prometheus_binaries

    promtool = prometheus_binaries.path("promtool")  # .tools/ first; fails when missing
    standin = StandIn(MAPPING)
    for line in HOOK_LINES:
        standin.feed(line)
    result = subprocess.run([promtool, "check", "metrics"], input=standin.render(), text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- (c) hostile label values ----------------------------------------------------------------
HOSTILE = ["n" * 300, "ns.sub-node.split_data", "params:model_options", "x,y=z", "brackets(x)[y]<z>",
           "café déjà vu", "--dash--", "...", "a|b#c@d", "new\nline", "", "123", "le", "__default__"]


@pytest.mark.parametrize("transport", ["feed", "udp"])
def test_sanitised_label_values_round_trip(transport: str) -> None:
    values = list(dict.fromkeys(sanitize(v) for v in HOSTILE))
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", v) for v in values)
    long = sanitize("p" * 300)
    lines = [f"kedro.node.duration,project={long},pipeline={long},node={v}:5|ms" for v in values]
    lines += [f"kedro.dataset.size,project={long},dataset={v}:{i}|g" for i, v in enumerate(values)]
    with StandIn(MAPPING) as standin:
        text = exposition_after(standin, lines, transport)
    _, _, samples = parse_exposition(text)
    assert unmapped(samples) == 0
    assert samples[("statsd_exporter_tag_errors_total", frozenset())] == 0
    for i, v in enumerate(values):
        key = frozenset({("project", long), ("dataset", v)})
        assert samples[("kedro_dataset_size_bytes", key)] == i
        node_key = frozenset({("project", long), ("pipeline", long), ("node", v)})
        assert samples[("kedro_node_duration_seconds_count", node_key)] == 1
    assert len(only(samples, "kedro_dataset_size_bytes")) == len(set(values))
    assert math.isclose(sum(v for (n, _), v in samples.items() if n == "kedro_node_duration_seconds_sum"),
                        0.005 * len(values))
