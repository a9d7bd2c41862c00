"""Data validation: suites from conf/, clean data passing, defects failing or warning, under every runner.

The plugin (registered by its entry point, no HOOKS and no config pattern in the sample
project's settings.py) reads the suites of conf/<env>/expectations/ and validates through
kedro_observability.validation: most tests here are real `kedro run`s of the sample project.

These are the plugin's hooks (0.2, deprecated): the sample project now declares its validation
with `validator:` in conf/base/catalog.yml, which the hooks leave to Kedro's catalog
(tests/test_catalog_validator.py). The tests of the hooks run the sample through the
`without_validators` fixture: a conf/local/catalog.yml that redefines those entries without
`validator:`, so the hooks validate them with the suites' `policy`, as before.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.pipeline import node, pipeline

from conftest import REPO, RUNNERS, SAMPLE_SHUTTLES, make_runner, run_project
from kedro_observability import DataValidationError, ExpectationSuiteError
from kedro_observability.settings import ValidationSettings
from kedro_observability.validation.engine import SuiteValidator, ValidationRun
from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS, check_datasets, parse_suites, read_suites
from spaceflights.pipelines.data_generation.nodes import generate_raw_data
from spaceflights.pipelines.data_processing.nodes import create_model_input_table, preprocess_companies, preprocess_shuttles
from statsd_capture import UDPCapture

SUITES = ("companies", "shuttles", "reviews", "model_input_table")


@pytest.fixture
def without_validators(sample_project: Path) -> Path:
    """The sample copy with its validated entries redefined in conf/local/catalog.yml without
    `validator:` (an entry of conf/local replaces the whole entry of conf/base): the plugin's
    hooks, not Kedro's catalog, validate them."""
    base = yaml.safe_load((sample_project / "conf" / "base" / "catalog.yml").read_text())
    local = {name: {key: value for key, value in entry.items() if key != "validator"} for name, entry in base.items() if "validator" in entry}
    assert set(local) == set(SUITES), "the sample's validated datasets changed: update SUITES"
    (sample_project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(local, sort_keys=False))
    merged = OmegaConfigLoader(conf_source=str(sample_project / "conf"), base_env="base", default_run_env="local")["catalog"]
    assert not [name for name, entry in merged.items() if isinstance(entry, dict) and "validator" in entry]
    assert all(merged[name] == local[name] for name in SUITES)
    return sample_project


def validation_lines(capture: UDPCapture) -> tuple[Counter, dict[str, float]]:
    lines = capture.lines()
    runs = Counter((line.tags["dataset"], line.tags["status"]) for line in lines if line.name == "kedro.validation.runs")
    failed = {line.tags["dataset"]: line.value for line in lines if line.name == "kedro.validation.failed_expectations"}
    return runs, failed


def mlflow_reports(project: Path, tmp_path: Path) -> tuple[str, dict[str, dict]]:
    """Status of the project's one MLflow run, and the validation reports attached to it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("spaceflights").experiment_id])
    reports = {}
    for artifact in client.list_artifacts(run.info.run_id):
        if artifact.path.startswith("validation-"):
            local = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))
            reports[artifact.path] = json.loads(Path(local).read_text())
    return run.info.status, reports


def disable_mlflow(project: Path, extra: str = "") -> None:
    """conf/local/observability.yml: the plugin merges it key by key over conf/base."""
    (project / "conf" / "local" / "observability.yml").write_text("mlflow:\n  enabled: false\n" + extra)


def raw_tables() -> dict[str, pd.DataFrame]:
    companies, shuttles, reviews = generate_raw_data({"seed": 42, "n_shuttles": SAMPLE_SHUTTLES})
    return {"companies": companies, "shuttles": shuttles, "reviews": reviews}


def write_raw(project: Path, tables: dict[str, pd.DataFrame]) -> None:
    folder = project / "data" / "01_raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)


def set_policy(project: Path, dataset: str, policy: str) -> None:
    path = project / "conf" / "base" / "expectations" / f"{dataset}.yml"
    path.write_text(path.read_text().replace("policy: fail", f"policy: {policy}"))


def write_suite(project: Path, dataset: str, text: str) -> None:
    (project / "conf" / "base" / "expectations" / f"{dataset}.yml").write_text(textwrap.dedent(text))


# ---- suites as configuration -------------------------------------------------------------


def load_suites(tmp_path: Path, files: dict[str, str], env: str = "base"):
    conf = tmp_path / "conf"
    for name, text in files.items():
        path = conf / env / "expectations" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (conf / "base").mkdir(parents=True, exist_ok=True)
    (conf / "local").mkdir(exist_ok=True)
    loader = OmegaConfigLoader(
        conf_source=str(conf), base_env="base", default_run_env="local", config_patterns={"expectations": EXPECTATIONS_CONFIG_PATTERNS}
    )
    return parse_suites(read_suites(loader))


def test_suites_accept_class_and_snake_case_names_and_iso_dates_become_timestamps(tmp_path: Path) -> None:
    suites = load_suites(
        tmp_path,
        {
            "events.yml": """
            events:
              policy: warn
              expectations:
                - ExpectColumnValuesToBeUnique: {column: id}
                - expect_column_values_to_be_between: {column: at, min_value: "2024-01-01", max_value: "2024-12-31T23:59:59"}
            """
        },
    )

    (events,) = suites.values()
    assert events.policy == "warn" and events.source == "conf/base/expectations/events.yml"
    assert [spec.expectation_class.__name__ for spec in events.expectations] == ["ExpectColumnValuesToBeUnique", "ExpectColumnValuesToBeBetween"]
    assert events.expectations[1].arguments["min_value"] == pd.Timestamp("2024-01-01")

    validator = SuiteValidator(suites, sample_values=3)
    at = pd.to_datetime(["2024-03-01", "2023-06-30", "2024-07-01"])
    outcome, _ = validator.validate("events", pd.DataFrame({"id": [1, 2, 3], "at": at}), "load", "n")
    (failure,) = outcome.failures
    assert failure.column == "at" and failure.unexpected_count == 1 and failure.samples == (pd.Timestamp("2023-06-30"),)
    outcome, _ = validator.validate("events", pd.DataFrame({"id": [1, 2], "at": at[[0, 2]]}), "load", "n")
    assert outcome.success
    outcome, _ = validator.validate("events", pd.DataFrame({"id": [1, 2]}), "load", "n")
    (failure,) = outcome.failures
    assert failure.describe().startswith("expect_column_values_to_be_between(min_value=2024-01-01T00:00:00, max_value=2024-12-31T23:59:59) ")
    assert failure.describe().endswith("""on column 'at': could not be evaluated: Error: The column "at" in BatchData does not exist.""")


def test_policy_override_replaces_every_suites_own_policy(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "base" / "expectations").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "expectations" / "a.yml").write_text("a:\n  policy: fail\n  expectations: [{expect_column_to_exist: {column: x}}]\n")
    (conf / "base" / "expectations" / "b.yml").write_text("b:\n  policy: warn\n  expectations: [{expect_column_to_exist: {column: x}}]\n")
    loader = OmegaConfigLoader(
        conf_source=str(conf), base_env="base", default_run_env="local", config_patterns={"expectations": EXPECTATIONS_CONFIG_PATTERNS}
    )
    config = read_suites(loader)

    assert {name: suite.policy for name, suite in parse_suites(config).items()} == {"a": "fail", "b": "warn"}
    assert {name: suite.policy for name, suite in parse_suites(config, "warn").items()} == {"a": "warn", "b": "warn"}
    assert {name: suite.policy for name, suite in parse_suites(config, "fail").items()} == {"a": "fail", "b": "fail"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "- expect_column_values_to_be_uniqe: {column: id}",
            (
                "companies.expectations[1] in conf/base/expectations/companies.yml: unknown expectation "
                "'expect_column_values_to_be_uniqe'. Did you mean 'expect_column_values_to_be_unique'"
            ),
        ),
        (
            "- expect_column_values_to_be_between: {column: total_fleet_count, minimum: 1}",
            (
                "companies.expectations[1] (expect_column_values_to_be_between) in conf/base/expectations/companies.yml: "
                "unknown argument 'minimum'. Did you mean 'min_value'?"
            ),
        ),
        (
            "- expect_column_values_to_be_in_set: {column: iata_approved}",
            (
                "companies.expectations[1] (expect_column_values_to_be_in_set) in conf/base/expectations/companies.yml: "
                "missing argument 'value_set'."
            ),
        ),
        (
            "- expect_column_values_to_not_be_null: {column: id, mostly: lots}",
            (
                "companies.expectations[1] (expect_column_values_to_not_be_null) in conf/base/expectations/companies.yml: "
                "argument 'mostly' = 'lots' is not valid"
            ),
        ),
        (
            "- {expect_column_values_to_not_be_null: {column: id}, expect_column_values_to_be_unique: {column: id}}",
            "companies.expectations[1] in conf/base/expectations/companies.yml must map one expectation name to its arguments",
        ),
    ],
)
def test_an_invalid_entry_is_refused_with_its_file_and_entry(tmp_path: Path, entry: str, message: str) -> None:
    text = "companies:\n  expectations:\n    - expect_column_values_to_not_be_null: {column: id}\n    " + entry + "\n"

    with pytest.raises(ExpectationSuiteError) as error:
        load_suites(tmp_path, {"companies.yml": text})

    assert message in str(error.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  policy: stop\n  expectations: [{expect_column_values_to_not_be_null: {column: id}}]\n", "'companies.policy' in conf/local/expectations/companies.yml must be fail or warn, got 'stop'"),
        ("  expectation: [{expect_column_values_to_not_be_null: {column: id}}]\n", "Unknown key 'companies.expectation' in conf/local/expectations/companies.yml. Did you mean 'expectations'?"),
        ("  policy: warn\n", "'companies.expectations' in conf/local/expectations/companies.yml must be a non-empty list"),
    ],
)
def test_an_invalid_suite_is_refused_naming_the_environment_file_that_won(tmp_path: Path, body: str, message: str) -> None:
    valid = "companies:\n  expectations: [{expect_column_values_to_not_be_null: {column: id}}]\n"
    load_suites(tmp_path, {"companies.yml": valid})

    with pytest.raises(ExpectationSuiteError) as error:
        load_suites(tmp_path, {"companies.yml": "companies:\n" + body}, env="local")

    assert message in str(error.value)


def test_a_suite_for_no_dataset_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    suites = load_suites(tmp_path, {"typo.yml": "companys:\n  expectations: [{expect_column_values_to_not_be_null: {column: id}}]\n"})
    used = pipeline([node(len, "companies", "count", name="count")])

    with pytest.raises(ExpectationSuiteError, match=r"The suite 'companys' in conf/base/expectations/typo.yml is for no dataset.*Did you mean 'companies'\?"):
        check_datasets(suites, used, lambda: [used], DataCatalog())


@pytest.mark.usefixtures("without_validators")
def test_an_unknown_argument_stops_the_run_before_any_node(sample_project: Path) -> None:
    path = sample_project / "conf" / "base" / "expectations" / "shuttles.yml"
    path.write_text(path.read_text().replace("{column: engines, min_value: 1", "{column: engines, minimum: 1"))

    with pytest.raises(ExpectationSuiteError, match=r"shuttles\.expectations\[9\] \(expect_column_values_to_be_between\) in conf/base/expectations/shuttles\.yml: unknown argument 'minimum'"):
        run_project(sample_project)

    assert not (sample_project / "data" / "02_intermediate").exists()


@pytest.mark.usefixtures("without_validators")
def test_a_suite_for_a_dataset_of_another_pipeline_waits_for_that_pipeline(sample_project: Path, capture: UDPCapture) -> None:
    """X_test is a MemoryDataset of data_science only: a run of data_processing does not
    hold it, and the suite is checked against every pipeline of the project."""
    disable_mlflow(sample_project)
    write_suite(sample_project, "X_test", """
        X_test:
          expectations:
            - expect_column_values_to_be_between: {column: engines, min_value: 1, max_value: 8}
    """)

    run_project(sample_project, pipeline_names=["data_processing"])

    runs, _ = validation_lines(capture)
    assert runs == Counter({(dataset, "passed"): 1 for dataset in SUITES})
    capture.clear()

    run_project(sample_project, pipeline_names=["data_science"])

    runs, failed = validation_lines(capture)
    assert runs == Counter({("model_input_table", "passed"): 1, ("X_test", "passed"): 1})
    assert failed == {"model_input_table": 0.0, "X_test": 0.0}


def demo_with_validation(project: Path) -> None:
    """The demo project with statsd and validation on, and one version of its raw table."""
    from kedro.io.core import Version
    from kedro_datasets.pandas import CSVDataset

    (project / "conf" / "local" / "observability.yml").write_text("statsd:\n  enabled: true\nvalidation:\n  enabled: true\n")
    CSVDataset(filepath=str(project / "data" / "raw_table.csv"), version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        pd.DataFrame({"value": range(5)})
    )
    (project / "conf" / "base" / "expectations").mkdir()


def test_suites_are_checked_against_the_pipelines_a_run_did_not_load(demo_project: Path, capture: UDPCapture) -> None:
    """The demo's registry is find_pipelines(): a run of fingerprints loads that pipeline only.
    audit.sample is a MemoryDataset of the audit pipeline: in no catalog, in no loaded pipeline."""
    demo_with_validation(demo_project)
    write_suite(demo_project, "audit.sample", """
        audit.sample:
          expectations:
            - expect_table_row_count_to_equal: {value: 2}
    """)

    run_project(demo_project, pipeline_names=["fingerprints"])

    assert validation_lines(capture) == (Counter(), {})
    assert (demo_project / "data" / "row_count.json").exists()

    run_project(demo_project, pipeline_names=["audit"])

    assert validation_lines(capture) == (Counter({("audit.sample", "passed"): 1}), {"audit.sample": 0.0})


def test_a_misspelt_suite_is_refused_with_a_name_from_a_pipeline_the_run_did_not_load(demo_project: Path) -> None:
    demo_with_validation(demo_project)
    write_suite(demo_project, "audit.sampel", """
        audit.sampel:
          expectations:
            - expect_table_row_count_to_equal: {value: 2}
    """)

    with pytest.raises(ExpectationSuiteError) as error:
        run_project(demo_project, pipeline_names=["fingerprints"])

    message = str(error.value)
    assert "The suite 'audit.sampel' in conf/base/expectations/audit.sampel.yml is for no dataset of the catalog or of any pipeline of the project." in message
    assert "Did you mean 'audit.sample'" in message and "namespace included" in message
    assert not (demo_project / "data" / "row_count.json").exists()


@pytest.mark.parametrize("dataset_type", ["spark.SparkDataset", "polars.EagerPolarsDataset", "dask.ParquetDataset", "ibis.TableDataset"])
@pytest.mark.usefixtures("without_validators")
def test_a_suite_for_a_dataset_of_another_frame_library_is_refused_at_start(sample_project: Path, dataset_type: str) -> None:
    """The declared type is enough: pyspark, polars, dask or ibis need not be installed."""
    with (sample_project / "conf" / "base" / "catalog.yml").open("a") as catalog:
        catalog.write(f"\nfleet_frame:\n  type: {dataset_type}\n  filepath: data/03_primary/fleet.parquet\n")
    write_suite(sample_project, "fleet_frame", """
        fleet_frame:
          policy: warn
          expectations:
            - expect_column_values_to_not_be_null: {column: id}
    """)

    with pytest.raises(ExpectationSuiteError) as error:
        run_project(sample_project)

    message = str(error.value)
    assert (
        f"The suite 'fleet_frame' in conf/base/expectations/fleet_frame.yml validates pandas DataFrames, "
        f"but the catalog declares 'fleet_frame' as {dataset_type}, which loads and saves another kind of frame." in message
    )
    assert "Remove the suite, or validate a pandas dataset" in message
    # Refused before the project's own before_pipeline_run hook generated the raw data.
    assert not (sample_project / "data" / "01_raw").exists()


@pytest.mark.parametrize("policy", ["fail", "warn"])
@pytest.mark.usefixtures("without_validators")
def test_a_suite_for_data_that_is_no_dataframe_stops_the_run_or_only_warns(
    sample_project: Path, capture: UDPCapture, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    """metrics is a json.JSONDataset: its type passes the start, its data (a dict) cannot be validated."""
    disable_mlflow(sample_project)
    write_suite(sample_project, "metrics", f"""
        metrics:
          policy: {policy}
          expectations:
            - expect_table_row_count_to_be_between: {{min_value: 1}}
    """)
    expected = (
        "The suite of 'metrics' (conf/base/expectations/metrics.yml) validates pandas DataFrames, but 'metrics' "
        "was saved by node 'evaluate_model' as a dict. Remove the suite, or validate a dataset that holds a DataFrame."
    )

    with caplog.at_level(logging.WARNING, logger="kedro_observability"):
        if policy == "fail":
            with pytest.raises(ExpectationSuiteError) as error:
                run_project(sample_project)
            assert expected in str(error.value)
        else:
            run_project(sample_project)

    metrics_file = sample_project / "data" / "08_reporting" / "metrics.json"
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name.startswith("kedro_observability") and "'metrics'" in record.getMessage()
    ]
    runs, _ = validation_lines(capture)
    # The tables with suites were validated; metrics was not, so it is not counted.
    assert runs == Counter({(dataset, "passed"): 1 for dataset in SUITES})
    if policy == "fail":
        assert not metrics_file.exists() and warnings == []
    else:
        assert metrics_file.exists()
        assert warnings == [f"{expected} The suite's policy is warn: the run goes on, 'metrics' unvalidated."]


@pytest.mark.parametrize("validated_by", ["hooks", "catalog validators"])
def test_validation_disabled_reads_no_suite_and_validates_nothing(
    sample_project: Path, capture: UDPCapture, request: pytest.FixtureRequest, validated_by: str
) -> None:
    """Under the hooks, and under the sample's own `validator:`s, which then let data through."""
    if validated_by == "hooks":
        request.getfixturevalue("without_validators")
    disable_mlflow(sample_project, "validation:\n  enabled: false\n")
    # Neither a broken suite nor defective data stops the run: nothing is read or validated.
    write_suite(sample_project, "broken", "broken:\n  expectations: [{expect_nothing_at_all: {}}]\n")
    tables = raw_tables()
    corrupt_companies(tables)
    write_raw(sample_project, tables)

    run_project(sample_project)

    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()
    lines = capture.lines()
    assert any(line.name == "kedro.node.runs" for line in lines)
    assert not [line for line in lines if line.name.startswith("kedro.validation.")]


# ---- the sample pipeline -----------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.usefixtures("without_validators")
def test_clean_generated_data_passes_every_suite_under_each_runner(sample_project: Path, capture: UDPCapture, tmp_path: Path, runner: str) -> None:
    run_project(sample_project, runner=make_runner(runner))

    runs, failed = validation_lines(capture)
    assert {dataset for dataset, _ in runs} == set(SUITES)
    assert all(status == "passed" for _, status in runs)
    assert failed == dict.fromkeys(SUITES, 0.0)
    # Inputs are validated once per process: ParallelRunner's workers may each validate one.
    if runner != "ParallelRunner":
        assert runs == Counter({(dataset, "passed"): 1 for dataset in SUITES})
    # An output is validated before it is saved, not again when the next node loads it.
    assert runs[("model_input_table", "passed")] == 1
    status, reports = mlflow_reports(sample_project, tmp_path)
    assert status == "FINISHED"
    assert set(reports) == {f"validation-{dataset}.json" for dataset in SUITES}
    report = reports["validation-model_input_table.json"]
    assert report["success"] is True and report["meta"]["kedro"]["operation"] == "save"
    assert len(report["results"]) == 14 and report["statistics"]["unsuccessful_expectations"] == 0


def corrupt_companies(tables: dict[str, pd.DataFrame]) -> None:
    companies = tables["companies"]
    companies["id"] = companies["id"].astype(float)
    companies.loc[3, "id"] = np.nan
    companies.loc[9, "id"] = companies.loc[8, "id"]
    companies.loc[7, "company_location"] = "Atlantis"


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.usefixtures("without_validators")
def test_a_defective_input_stops_the_run_on_load_with_the_failures_named(sample_project: Path, capture: UDPCapture, runner: str) -> None:
    disable_mlflow(sample_project)
    tables = raw_tables()
    corrupt_companies(tables)
    write_raw(sample_project, tables)
    rows = len(tables["companies"])

    with pytest.raises(DataValidationError) as error:
        run_project(sample_project, runner=make_runner(runner))

    message = str(error.value)
    assert "Dataset 'companies' (loaded for node '" in message
    assert "failed 3 of 9 expectations of its suite in conf/base/expectations/companies.yml:" in message
    assert f"  - expect_column_values_to_not_be_null() on column 'id': 1 unexpected value of {rows} rows (0.62%), e.g. null" in message
    assert f"  - expect_column_values_to_be_unique() on column 'id': 2 unexpected values of {rows} rows (1.2%), e.g. 9.0, 9.0" in message
    assert "on column 'company_location': 1 unexpected value of 160 rows (0.62%), e.g. 'Atlantis'" in message
    assert "The suite's policy is fail" in message
    assert not (sample_project / "data" / "02_intermediate" / "preprocessed_companies.parquet").exists()
    assert not (sample_project / "data" / "03_primary").exists()
    runs, failed = validation_lines(capture)
    assert runs[("companies", "failed")] >= 1 and failed["companies"] == 3.0


def corrupt_shuttles(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Negative prices, a duplicated id and an unknown engine type; the model input table they make."""
    shuttles = tables["shuttles"]

    def model_input() -> pd.DataFrame:
        return create_model_input_table(preprocess_shuttles(shuttles), preprocess_companies(tables["companies"]), tables["reviews"])

    # Only shuttles with a rating and a rated company reach the table: corrupt those.
    rows = shuttles.index[shuttles["id"].isin(model_input()["shuttle_id"])]
    shuttles.loc[rows[:2], "price"] = ["$-120.0", "-$5.0"]
    shuttles.loc[rows[3], "id"] = shuttles.loc[rows[2], "id"]
    shuttles.loc[rows[4], "engine_type"] = "Warp"
    return model_input()


@pytest.mark.usefixtures("without_validators")
def test_a_defective_output_is_not_written_and_a_warned_input_lets_the_run_reach_it(
    sample_project: Path, capture: UDPCapture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    set_policy(sample_project, "shuttles", "warn")
    tables = raw_tables()
    expected = corrupt_shuttles(tables)
    write_raw(sample_project, tables)
    negative = sorted(expected.loc[expected["price"] <= 0, "price"])
    duplicated = int(expected["shuttle_id"].duplicated(keep=False).sum())
    assert negative and duplicated and (expected["engine_type"] == "Warp").any()

    with caplog.at_level(logging.WARNING, logger="kedro_observability"), pytest.raises(DataValidationError) as error:
        run_project(sample_project)

    message = str(error.value)
    assert "Dataset 'model_input_table' (saved by node 'create_model_input_table') failed 3 of 14 expectations" in message
    rows = len(expected)
    assert f"expect_column_values_to_be_between(min_value=0.0, strict_min=True) on column 'price': {len(negative)} unexpected values of {rows} rows" in message
    assert ", e.g. " + ", ".join(str(value) for value in negative) in message
    assert f"expect_column_values_to_be_unique() on column 'shuttle_id': {duplicated} unexpected values of {rows} rows" in message
    assert "on column 'engine_type': 1 unexpected value of" in message and "e.g. 'Warp'" in message
    assert "'model_input_table' was not saved" in message
    assert not (sample_project / "data" / "03_primary" / "model_input_table.parquet").exists()
    # shuttles only warned: its node ran and wrote its output.
    assert (sample_project / "data" / "02_intermediate" / "preprocessed_shuttles.parquet").exists()
    (warning,) = [record.getMessage() for record in caplog.records if "Dataset 'shuttles'" in record.getMessage()]
    assert "failed 3 of 16 expectations" in warning and "policy is warn: the run goes on" in warning
    assert "on column 'price': 2 unexpected values of 800 rows (0.25%), e.g. '$-120.0', '-$5.0'" in warning
    runs, failed = validation_lines(capture)
    assert runs[("shuttles", "failed")] == 1 and failed["shuttles"] == 3.0
    assert runs[("model_input_table", "failed")] == 1 and failed["model_input_table"] == 3.0
    status, reports = mlflow_reports(sample_project, tmp_path)
    assert status == "FAILED"
    report = reports["validation-model_input_table.json"]
    assert report["success"] is False and report["statistics"]["unsuccessful_expectations"] == 3
    assert report["meta"]["kedro"] == {**report["meta"]["kedro"], "dataset": "model_input_table", "operation": "save", "policy": "fail"}


@pytest.mark.usefixtures("without_validators")
def test_policy_override_warn_lets_a_defective_run_finish_and_counts_each_failure(sample_project: Path, capture: UDPCapture) -> None:
    disable_mlflow(sample_project, "validation:\n  policy_override: warn\n")
    tables = raw_tables()
    corrupt_companies(tables)
    corrupt_shuttles(tables)
    write_raw(sample_project, tables)

    run_project(sample_project, runner=make_runner("ThreadRunner"))

    assert (sample_project / "data" / "08_reporting" / "metrics.json").exists()
    runs, failed = validation_lines(capture)
    assert runs == Counter({("companies", "failed"): 1, ("shuttles", "failed"): 1, ("reviews", "passed"): 1, ("model_input_table", "failed"): 1})
    assert failed["companies"] == 3.0 and failed["shuttles"] == 3.0 and failed["reviews"] == 0.0
    assert failed["model_input_table"] >= 3.0


# ---- the validator itself ----------------------------------------------------------------


def test_concurrent_validations_each_judge_their_own_data(tmp_path: Path) -> None:
    suites = load_suites(tmp_path, {"numbers.yml": "numbers:\n  expectations:\n    - expect_column_values_to_be_between: {column: x, min_value: 0}\n"})
    validator = SuiteValidator(suites, sample_values=1)
    frames = {True: pd.DataFrame({"x": np.arange(20_000)}), False: pd.DataFrame({"x": -np.arange(1, 20_001)})}
    verdicts: list[tuple[bool, bool]] = []

    def validate(good: bool) -> None:
        for _ in range(8):
            outcome, _ = validator.validate("numbers", frames[good], "load", "n")
            verdicts.append((good, outcome.success))

    threads = [threading.Thread(target=validate, args=(index % 2 == 0,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # GX keeps the batch under validation in shared state: without the lock, about one
    # verdict in four belongs to another thread's frame.
    assert len(verdicts) == 48 and all(good == success for good, success in verdicts)


def test_a_load_during_another_threads_validation_waits_and_fails_with_it(tmp_path: Path) -> None:
    """ThreadRunner: two nodes load one input at once; it is validated once, and under fail
    the second node gets the first validation's error instead of running on bad data."""
    suites = load_suites(tmp_path, {"numbers.yml": "numbers:\n  expectations:\n    - expect_column_values_to_be_between: {column: x, min_value: 0}\n"})
    reporting, release = threading.Event(), threading.Event()
    reported = []

    def report(outcome, _result) -> None:
        reported.append((outcome.node, outcome.success))
        reporting.set()
        assert release.wait(30)

    validation = ValidationRun(suites, ValidationSettings(), frozenset(), report)
    errors: dict[str, BaseException] = {}

    def load(node_name: str, frame: pd.DataFrame) -> None:
        try:
            validation.check("numbers", frame, "load", node_name)
        except BaseException as error:  # noqa: BLE001 - kept for the assertions
            errors[node_name] = error

    first = threading.Thread(target=load, args=("first", pd.DataFrame({"x": [-1, 2]})))
    first.start()
    assert reporting.wait(30)
    second = threading.Thread(target=load, args=("second", pd.DataFrame({"x": [1, 2]})))
    second.start()
    second.join(0.5)
    waited = second.is_alive()
    release.set()
    first.join(30)
    second.join(30)

    assert waited, "the second load did not wait for the validation under way"
    assert reported == [("first", False)]
    assert isinstance(errors["first"], DataValidationError) and errors["second"] is errors["first"]
    assert "Dataset 'numbers' (loaded for node 'first') failed 1 of 1 expectations" in str(errors["first"])
    # A later save is validated again: outputs are checked before each save.
    validation.check("numbers", pd.DataFrame({"x": [1]}), "save", "third")
    assert reported == [("first", False), ("third", True)]


def test_validation_makes_no_network_call_writes_no_file_and_shows_no_progress_bar(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    script = f"""
        import os, socket
        def refuse(*args, **kwargs):
            raise AssertionError(f"network call: {{args}}")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse
        import pandas as pd
        from kedro.config import OmegaConfigLoader
        from kedro_observability.validation.engine import SuiteValidator
        from kedro_observability.validation.suites import EXPECTATIONS_CONFIG_PATTERNS, parse_suites, read_suites
        loader = OmegaConfigLoader(conf_source={str(REPO / "project" / "conf")!r}, base_env="base", default_run_env="local",
                                   config_patterns={{"expectations": EXPECTATIONS_CONFIG_PATTERNS}})
        validator = SuiteValidator(parse_suites(read_suites(loader)), sample_values=5)
        frame = pd.DataFrame({{"shuttle_id": [1, 1], "price": [-1.0, None]}})
        outcome, result = validator.validate("model_input_table", frame, "save", "n")
        result.to_json_dict()
        print("failed", len(outcome.failures))
    """
    # A script file, not `python -c`: pyspark, which GX imports when it is installed, takes a
    # main module without __file__ for its doctests and exits the process with status 0.
    program = tmp_path / "validate.py"
    program.write_text(textwrap.dedent(script))
    environment = {"HOME": str(home), "PATH": "/usr/bin:/bin", "KEDRO_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, str(program)], check=False, cwd=work, env=environment, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    # Duplicate id, null and negative price, and the 8 expectations of columns it lacks.
    assert "failed 11" in done.stdout
    assert "%|" not in done.stderr and "Calculating Metrics" not in done.stderr
    assert not list(work.iterdir()) and not list(home.iterdir())
