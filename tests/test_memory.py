"""Memory: load growth and node peaks that are right in size, and samplers that always stop.

Nodes of a chosen size run under a real Kedro runner driven by ``ObservabilityHooks(settings=...)``
(no KedroSession); the sample project runs through a KedroSession as ``kedro run`` does. Every
measurement is read from the statsd packets received on a real UDP socket, or from the MLflow run.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner, ThreadRunner
from kedro_datasets.pickle import PickleDataset
from mlflow import MlflowClient

from conftest import run_project
from kedro_observability import ObservabilityHooks, ObservabilitySettings, SettingsError, sanitize_name
from kedro_observability.memory import SAMPLER_THREAD_PREFIX, resident_bytes
from kedro_observability.settings import MlflowSettings, StatsdSettings, ValidationSettings, parse_settings
from statsd_capture import UDPCapture

MB = 1_000_000


def memory_settings(capture: UDPCapture) -> ObservabilitySettings:
    """statsd to the capture socket and memory on (the defaults: 50 ms interval, loads logged);
    MLflow and validation need a session's project and are off."""
    return ObservabilitySettings(
        statsd=StatsdSettings(host="127.0.0.1", port=capture.port),
        mlflow=MlflowSettings(enabled=False),
        validation=ValidationSettings(enabled=False),
    )


def run_with_plugin(nodes: list, catalog: DataCatalog, capture: UDPCapture, runner=None) -> ObservabilityHooks:
    hooks = ObservabilityHooks(settings=memory_settings(capture))
    manager = _create_hook_manager()
    manager.register(hooks)
    (runner or SequentialRunner()).run(pipeline(nodes), catalog, manager)
    return hooks


def sampler_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(SAMPLER_THREAD_PREFIX)]


def no_sampler_thread_within(seconds: float) -> bool:
    """The sampler exits once no node is running: within one interval (50 ms)."""
    deadline = time.monotonic() + seconds
    while sampler_threads():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def gauges(capture: UDPCapture, name: str, label: str) -> dict[str, float]:
    return {line.tags[label]: line.value for line in capture.lines() if line.name == name}


def allocate_and_hold(seconds: float) -> int:
    block = np.ones(200 * MB // 8)  # 200 MB, touched, so resident
    time.sleep(seconds)
    return int(block[:10].sum())


def test_a_node_that_allocates_200_mb_reports_a_peak_that_far_above_its_start(capture: UDPCapture) -> None:
    start = resident_bytes()

    run_with_plugin([node(allocate_and_hold, "params:hold", "held", name="big_node")], DataCatalog({"params:hold": MemoryDataset(0.3)}), capture)

    peak = gauges(capture, "kedro.node.memory_peak", "node")["big_node"]
    assert peak >= start + 195 * MB


def test_a_node_shorter_than_the_interval_reports_the_larger_of_start_and_end(capture: UDPCapture) -> None:
    """The peak of a very short node is only seen if its memory is still held at the end."""
    kept: list = []

    def allocate_and_keep() -> int:
        kept.append(np.ones(100 * MB // 8))
        return 1

    start = resident_bytes()
    run_with_plugin([node(allocate_and_keep, None, "kept", name="short_node")], DataCatalog(), capture)

    assert gauges(capture, "kedro.node.memory_peak", "node")["short_node"] >= start + 95 * MB
    kept.clear()


def test_loading_a_frame_of_known_size_reports_growth_of_that_order(tmp_path: Path, capture: UDPCapture, caplog: pytest.LogCaptureFixture) -> None:
    dataset = PickleDataset(filepath=str(tmp_path / "big.pickle"))
    dataset.save(np.arange(150 * MB // 8, dtype=np.float64))  # 150 MB once loaded
    catalog = DataCatalog({"big_array": dataset})

    # The line is logged by the plugin's module now (kedro_observability.plugin, was .memory).
    with caplog.at_level(logging.INFO, logger="kedro_observability"):
        run_with_plugin([node(lambda array: float(array[-1]), "big_array", "last", name="read_big")], catalog, capture)

    growth = gauges(capture, "kedro.dataset.load_memory", "dataset")["big_array"]
    assert 100 * MB <= growth <= 400 * MB
    assert "Loading big_array consumed" in caplog.text and "MiB" in caplog.text


def test_a_failing_node_stops_its_sampler(capture: UDPCapture) -> None:
    def fail_after_allocating() -> None:
        block = np.ones(50 * MB // 8)
        raise RuntimeError(f"boom after {block.size} floats")

    hooks = ObservabilityHooks(settings=memory_settings(capture))
    manager = _create_hook_manager()
    manager.register(hooks)

    with pytest.raises(RuntimeError, match="boom"):
        SequentialRunner().run(pipeline([node(fail_after_allocating, None, "nothing", name="failing_node")]), DataCatalog(), manager)

    assert no_sampler_thread_within(1.0)
    assert hooks._timers() == {}
    assert "failing_node" in gauges(capture, "kedro.node.memory_peak", "node")


def test_concurrent_nodes_each_get_their_own_peak_and_no_thread_survives(capture: UDPCapture) -> None:
    nodes = [node(allocate_and_hold, "params:hold", f"held_{index}", name=f"parallel_{index}") for index in range(3)]

    run_with_plugin(nodes, DataCatalog({"params:hold": MemoryDataset(0.2)}), capture, runner=ThreadRunner(max_workers=3))

    peaks = gauges(capture, "kedro.node.memory_peak", "node")
    assert set(peaks) == {"parallel_0", "parallel_1", "parallel_2"}
    assert all(value >= 195 * MB for value in peaks.values())
    assert no_sampler_thread_within(1.0)


def test_node_peaks_are_recorded_for_the_tracking_run(sample_project: Path, capture: UDPCapture) -> None:
    """The MLflow run holds each node's peak: the same measurement statsd got."""
    run_project(sample_project)

    peaks = gauges(capture, "kedro.node.memory_peak", "node")
    client = MlflowClient(f"sqlite:///{sample_project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("spaceflights").experiment_id])
    recorded = {key.removeprefix("memory_peak_bytes."): value for key, value in run.data.metrics.items() if key.startswith("memory_peak_bytes.")}
    assert len(recorded) == 7
    assert recorded == {sanitize_name(name): value for name, value in peaks.items()}
    assert all(value > 0 for value in recorded.values())


def test_the_sample_pipeline_reports_every_node_and_raw_load(sample_project: Path, capture: UDPCapture) -> None:
    run_project(sample_project)

    peaks = gauges(capture, "kedro.node.memory_peak", "node")
    assert len(peaks) == 7 and all(value > 10 * MB for value in peaks.values())
    assert sampler_threads() == []  # the end of the run stops the sampler at once
    assert {"companies", "shuttles", "reviews", "model_input_table"} <= set(gauges(capture, "kedro.dataset.load_memory", "dataset"))


def test_memory_can_be_switched_off_and_the_interval_is_checked(sample_project: Path, capture: UDPCapture) -> None:
    (sample_project / "conf" / "local" / "observability.yml").write_text("memory:\n  enabled: false\n")
    run_project(sample_project)
    lines = capture.lines()
    assert [line for line in lines if line.name == "kedro.node.runs"]  # the run did send its statsd metrics
    assert not [line for line in lines if "memory" in line.name]

    with pytest.raises(SettingsError, match="'memory.interval_seconds'.*between 0.001 and 60"):
        parse_settings({"memory": {"interval_seconds": 0}})
