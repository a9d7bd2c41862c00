"""Every bound of the settings is checked when they load: a real `kedro run` (KedroSession) stops
before any node, naming the key, the file (or variable) and the bound. Parameter keys that
sanitise alike keep distinct, deterministic names in a real MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import run_project
from tiny_project import make_tiny_project
from kedro_observability.settings import SettingsError

LOCAL_FILE = Path("conf") / "local" / "observability.yml"


@pytest.mark.parametrize(
    ("yaml_text", "key", "bound"),
    [
        ("statsd:\n  port: 70000\n", "statsd.port", "between 1 and 65535, got 70000"),
        ("statsd:\n  port: 0\n", "statsd.port", "between 1 and 65535, got 0"),
        ("statsd:\n  port: -1\n", "statsd.port", "between 1 and 65535, got -1"),
        ("statsd:\n  host: '  '\n", "statsd.host", "must name a host"),
        ("memory:\n  interval_seconds: 0\n", "memory.interval_seconds", "between 0.001 and 60 seconds, got 0.0"),
        ("memory:\n  interval_seconds: 61\n", "memory.interval_seconds", "between 0.001 and 60 seconds, got 61.0"),
        ("mlflow:\n  request_timeout_seconds: 0\n", "mlflow.request_timeout_seconds", "more than 0 seconds, got 0"),
        ("mlflow:\n  request_timeout_seconds: -1\n", "mlflow.request_timeout_seconds", "more than 0 seconds, got -1"),
        ("mlflow:\n  request_max_retries: -5\n", "mlflow.request_max_retries", "0 or more, got -5"),
        ("mlflow:\n  warm_helper_seconds: -1\n", "mlflow.warm_helper_seconds", "between 0 (the helper ends with its run) and 86400 seconds, got -1"),
        ("mlflow:\n  input_example_rows: 0\n", "mlflow.input_example_rows", "1 or more, got 0"),
        ("mlflow:\n  model_name: ''\n", "mlflow.model_name", "must name the logged model"),
        ("mlflow:\n  experiment_name: ' '\n", "mlflow.experiment_name", "or null for the default"),
        ("mlflow:\n  registered_model_name: ''\n", "mlflow.registered_model_name", "or null for the default"),
        ("validation:\n  sample_values: -1\n", "validation.sample_values", "0 or more, got -1"),
    ],
)
def test_a_setting_out_of_bounds_stops_the_run_naming_key_file_and_bound(sample_project: Path, yaml_text: str, key: str, bound: str) -> None:
    local_file = sample_project / LOCAL_FILE
    local_file.write_text(yaml_text)

    with pytest.raises(SettingsError) as raised:
        run_project(sample_project)

    assert str(raised.value).startswith(f"Setting '{key}' in {local_file} "), raised.value
    assert bound in str(raised.value)
    assert not (sample_project / "data" / "01_raw").exists()  # no node ran


@pytest.mark.parametrize(
    ("variable", "value", "key", "bound"),
    [
        ("STATSD_PORT", "70000", "statsd.port", "between 1 and 65535, got 70000"),
        ("STATSD_PORT", "-1", "statsd.port", "between 1 and 65535, got -1"),
        ("STATSD_HOST", "   ", "statsd.host", "must name a host"),
    ],
)
def test_an_environment_value_out_of_bounds_names_the_variable(
    sample_project: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str, bound: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        run_project(sample_project)

    assert str(raised.value).startswith(f"Setting '{key}' in the environment variable {variable} "), raised.value
    assert bound in str(raised.value)
    assert not (sample_project / "data" / "01_raw").exists()


@pytest.mark.parametrize(("where", "yaml_text", "shown"), [("local", "- statsd\n- mlflow\n", "['statsd', 'mlflow'] (list)"), ("base", "[]\n", "[] (list)"), ("local", "9125\n", "9125 (int)")])
def test_a_file_whose_top_level_is_not_a_mapping_is_named(sample_project: Path, where: str, yaml_text: str, shown: str) -> None:
    bad_file = sample_project / "conf" / where / "observability.yml"
    bad_file.write_text(yaml_text)

    with pytest.raises(SettingsError) as raised:
        run_project(sample_project)

    message = str(raised.value)
    assert message.startswith(f"The top level of {bad_file} must be a mapping of sections"), message
    assert f"got {shown}" in message
    assert "ListConfig" not in message and "attribute access" not in message
    other = "base" if where == "local" else "local"
    assert str(sample_project / "conf" / other / "observability.yml") not in message
    assert not (sample_project / "data" / "01_raw").exists()


# ---- parameter keys that sanitise alike ----------------------------------------------------

PACKAGE = "tiny_bounds"

REGISTRY = """
    from kedro.pipeline import Pipeline, node


    def count(options: dict) -> int:
        return len(options)


    def register_pipelines() -> dict[str, Pipeline]:
        return {"__default__": Pipeline([node(count, "params:options", "n", name="count")])}
"""

OBSERVABILITY = """
    statsd: {enabled: false}
    memory: {enabled: false}
    validation: {enabled: false}
    mlflow: {enabled: true, tracking_uri: null, experiment_name: options}
"""


@pytest.fixture
def options_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One node consuming ``params:options``; MLflow on, to the default store in the project."""
    project = make_tiny_project(tmp_path / "options", PACKAGE, REGISTRY, OBSERVABILITY)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project / "src"))
    for variable in ("MLFLOW_TRACKING_URI", "STATSD_HOST", "STATSD_PORT"):
        monkeypatch.delenv(variable, raising=False)
    return project


def _suffixed(name: str) -> str:
    return name.replace("%", "_").replace("&", "_") + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]


def test_keys_that_sanitise_alike_get_distinct_names_whatever_their_order(options_project: Path) -> None:
    values = {"a%b": 7, "a&b": 8, "a_b": 9, "c%d": 1, "c&d": 2}
    orders = [["a%b", "a&b", "a_b", "c%d", "c&d"], ["a_b", "c&d", "a&b", "c%d", "a%b"]]
    logged = []
    for order in orders:
        lines = "".join(f"  '{name}': {values[name]}\n" for name in order)
        (options_project / "conf" / "base" / "parameters.yml").write_text("options:\n" + lines)
        run_project(options_project)
        client = MlflowClient(f"sqlite:///{(options_project / 'mlflow.db').as_posix()}")
        experiment = client.get_experiment_by_name("options")
        (run,) = [run for run in client.search_runs([experiment.experiment_id]) if run.info.run_id not in {r.info.run_id for r in logged}]
        logged.append(run)

    expected = {
        "options.a_b": "9",  # already a valid key: keeps it
        _suffixed("options.a%b"): "7",
        _suffixed("options.a&b"): "8",
        _suffixed("options.c%d"): "1",  # no plain name among them: both suffixed
        _suffixed("options.c&d"): "2",
    }
    for run in logged:
        assert run.info.status == "FINISHED"
        assert run.data.params == expected
