"""observability.yml: loaded through Kedro's config loader, environment first, validated at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from conftest import run_project
from kedro_observability.settings import CONFIG_PATTERNS, SettingsError, load_settings, parse_settings


def make_loader(conf: Path, **kwargs) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        conf_source=str(conf),
        base_env="base",
        default_run_env="local",
        config_patterns={"observability": CONFIG_PATTERNS},
        custom_resolvers={"oc.env": oc.env},
        **kwargs,
    )


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("STATSD_HOST", "STATSD_PORT", "MLFLOW_TRACKING_URI", "KOS_TEST_HOST"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    return tmp_path / "conf"


def test_defaults_match_the_contract_when_nothing_is_configured(conf: Path) -> None:
    settings = load_settings(make_loader(conf))

    assert (settings.statsd.host, settings.statsd.port) == ("localhost", 9125)
    assert settings.input_paths == {}


def test_the_sample_projects_file_is_valid_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATSD_HOST", "statsd-exporter")
    monkeypatch.setenv("STATSD_PORT", "9999")
    sample_conf = Path(__file__).resolve().parent.parent / "project" / "conf"

    settings = load_settings(make_loader(sample_conf))

    assert (settings.statsd.host, settings.statsd.port) == ("statsd-exporter", 9999)
    assert settings.input_paths["fingerprint_raw_data"] == ["companies", "shuttles", "reviews"]


def test_environment_wins_over_a_literal_value_in_the_file(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (conf / "base" / "observability.yml").write_text("statsd:\n  host: from-file\n  port: 1234\n")
    monkeypatch.setenv("STATSD_HOST", "from-env")

    settings = load_settings(make_loader(conf))

    assert (settings.statsd.host, settings.statsd.port) == ("from-env", 1234)


def test_oc_env_reads_any_variable_with_a_default(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (conf / "base" / "observability.yml").write_text("statsd:\n  host: ${oc.env:KOS_TEST_HOST,fallback}\n")
    assert load_settings(make_loader(conf)).statsd.host == "fallback"

    monkeypatch.setenv("KOS_TEST_HOST", "set-by-env")
    assert load_settings(make_loader(conf)).statsd.host == "set-by-env"


def test_local_environment_overrides_base(conf: Path) -> None:
    (conf / "base" / "observability.yml").write_text("statsd:\n  enabled: true\n")
    (conf / "local" / "observability.yml").write_text("statsd:\n  enabled: false\n")

    assert load_settings(make_loader(conf)).statsd.enabled is False


def test_unknown_key_names_the_key_the_file_and_a_suggestion(conf: Path) -> None:
    (conf / "local" / "observability.yml").write_text("statsd:\n  hots: example\n")

    with pytest.raises(SettingsError) as raised:
        load_settings(make_loader(conf))

    message = str(raised.value)
    assert "'statsd.hots'" in message
    assert str(conf / "local" / "observability.yml") in message
    assert "Did you mean 'statsd.host'" in message


def test_unknown_top_level_section_is_rejected(conf: Path) -> None:
    (conf / "base" / "observability.yml").write_text("stats:\n  host: example\n")

    with pytest.raises(SettingsError, match=r"Unknown setting 'stats' in .*base/observability.yml.*'statsd'"):
        load_settings(make_loader(conf))


@pytest.mark.parametrize(
    ("yaml_text", "key", "expected"),
    [
        ("statsd:\n  port: not-a-port\n", "statsd.port", "an integer"),
        ("statsd:\n  port: 9125.5\n", "statsd.port", "an integer"),
        ("statsd:\n  enabled: maybe\n", "statsd.enabled", "true or false"),
        ("statsd:\n  host: [a, b]\n", "statsd.host", "a string"),
        ("statsd: localhost\n", "statsd", "a mapping"),
        ("input_paths:\n  fingerprint_raw_data: companies\n", "input_paths.fingerprint_raw_data", "a list"),
        ("input_paths:\n  ns.node: [1]\n", "input_paths.ns.node[0]", "a string"),
    ],
)
def test_wrong_type_names_the_key_the_file_and_the_expected_type(conf: Path, yaml_text: str, key: str, expected: str) -> None:
    (conf / "base" / "observability.yml").write_text(yaml_text)

    with pytest.raises(SettingsError) as raised:
        load_settings(make_loader(conf))

    message = str(raised.value)
    assert f"'{key}'" in message
    assert str(conf / "base" / "observability.yml") in message
    assert f"must be {expected}" in message


def test_a_bad_environment_value_names_the_variable(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATSD_PORT", "ninety")

    with pytest.raises(SettingsError, match="'statsd.port' in the environment variable STATSD_PORT must be an integer"):
        load_settings(make_loader(conf))


def test_numbers_and_booleans_written_as_text_are_accepted() -> None:
    settings = parse_settings({"statsd": {"port": " 9200 ", "enabled": "off"}})

    assert settings.statsd.port == 9200
    assert settings.statsd.enabled is False


def test_project_without_the_config_pattern_warns_and_uses_defaults(conf: Path, caplog: pytest.LogCaptureFixture) -> None:
    loader = OmegaConfigLoader(conf_source=str(conf), base_env="base", default_run_env="local")

    with caplog.at_level(logging.WARNING):
        settings = load_settings(loader)

    assert settings.statsd.port == 9125
    assert "CONFIG_LOADER_ARGS" in caplog.text


def test_invalid_settings_stop_kedro_run_before_any_node(sample_project: Path) -> None:
    (sample_project / "conf" / "local" / "observability.yml").write_text("statsd:\n  port: abc\n")

    with pytest.raises(SettingsError, match="statsd.port"):
        run_project(sample_project)

    assert not (sample_project / "data" / "01_raw").exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"memory": {"interval_seconds": 0}}, r"'memory.interval_seconds' .* between 0.001 and 60"),
        ({"validation": {"sample_values": -1}}, r"'validation.sample_values' .* 0 or more"),
    ],
)
def test_values_out_of_range_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(raw)
