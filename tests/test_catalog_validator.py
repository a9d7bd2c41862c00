"""GreatExpectationsValidator as Kedro's catalog validator, through real `kedro run`s with real GX.

The sample project declares its validation in conf/base/catalog.yml (``validator:`` of the
three raw tables on load, of ``model_input_table`` on save). The runs go through a
KedroSession with the plugin registered by its entry point; statsd packets arrive on a real
UDP socket, reports in the project's own MLflow store.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO, RUNNERS, SAMPLE_SHUTTLES, make_runner, run_project
from kedro_observability.validation import GreatExpectationsValidationError, GreatExpectationsValidator
from kedro_observability.validation.catalog import GreatExpectationsConfigurationError
from statsd_capture import UDPCapture

sys.path.insert(0, str(REPO / "project" / "docker"))
from inject_bad_data import corrupt  # noqa: E402 - the stack's own corruption

RAW = ("companies", "shuttles", "reviews")
EXPECTATIONS = REPO / "project" / "conf" / "base" / "expectations"
# Each raw table is loaded by two nodes, and validated on each load; model_input_table is
# validated on its one save, not when split_data loads it.
VALIDATIONS = {"companies": 2, "shuttles": 2, "reviews": 2, "model_input_table": 1}
LOADED_BY = {
    "companies": {"fingerprint_raw_data", "preprocess_companies"},
    "shuttles": {"fingerprint_raw_data", "preprocess_shuttles"},
    "reviews": {"fingerprint_raw_data", "create_model_input_table"},
}
VALIDATOR = "kedro_observability.validation.GreatExpectationsValidator"


def observability(project: Path, **sections: dict[str, Any]) -> None:
    """conf/local/observability.yml with these sections (merged key by key over base's)."""
    (project / "conf" / "local" / "observability.yml").write_text(yaml.safe_dump(sections))


def quick(project: Path) -> None:
    """No memory sampler and no MLflow: the tests that do not read the MLflow run."""
    observability(project, memory={"enabled": False}, mlflow={"enabled": False})


def local_catalog(project: Path, entries: dict[str, Any]) -> None:
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(entries, sort_keys=False))


def base_entry(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "project" / "conf" / "base" / "catalog.yml").read_text())[name]


def raw_data(project: Path) -> Path:
    """The raw tables the sample project would generate, written as its first run does."""
    from spaceflights.pipelines.data_generation.nodes import generate_raw_data

    folder = project / "data" / "01_raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in zip(RAW, generate_raw_data({"seed": 42, "n_shuttles": SAMPLE_SHUTTLES}), strict=True):
        table.to_csv(folder / f"{name}.csv", index=False)
    return folder


def validations(capture: UDPCapture) -> Counter:
    """(dataset, status) -> validations counted in statsd."""
    counted: Counter = Counter()
    for line in capture.lines():
        if line.name == "kedro.validation.runs":
            counted[(line.tags["dataset"], line.tags["status"])] += int(line.value)
    return counted


def failed_expectations(capture: UDPCapture) -> dict[str, float]:
    """dataset -> the last kedro.validation.failed_expectations gauge."""
    return {line.tags["dataset"]: line.value for line in capture.lines() if line.name == "kedro.validation.failed_expectations"}


def suite_size(name: str) -> int:
    return len(yaml.safe_load((EXPECTATIONS / f"{name}.yml").read_text())[name]["expectations"])


def share(count: int, total: int) -> str:
    return f"({100.0 * count / total:.2g}%)"


# ---- valid data, every runner ---------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_validates_the_raw_tables_on_load_and_the_model_input_on_save(sample_project: Path, capture: UDPCapture, runner: str) -> None:
    quick(sample_project)

    run_project(sample_project, runner=make_runner(runner))

    assert validations(capture) == Counter({(name, "passed"): count for name, count in VALIDATIONS.items()})
    assert failed_expectations(capture) == dict.fromkeys(VALIDATIONS, 0.0)
    assert (sample_project / "data" / "03_primary" / "model_input_table.parquet").is_file()


def test_the_reports_are_in_the_mlflow_run_as_with_the_hooks(sample_project: Path, tmp_path: Path) -> None:
    observability(sample_project, memory={"enabled": False}, statsd={"enabled": False})

    run_project(sample_project)

    client = MlflowClient(f"sqlite:///{sample_project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("spaceflights").experiment_id])
    assert run.info.status == "FINISHED"
    assert sorted(each.path for each in client.list_artifacts(run.info.run_id)) == sorted([*(f"validation-{name}.json" for name in VALIDATIONS), "timeline.html", "timeline.png"])
    for name in VALIDATIONS:
        report = json.loads(Path(client.download_artifacts(run.info.run_id, f"validation-{name}.json", str(tmp_path))).read_text())
        kedro = report["meta"]["kedro"]
        assert report["success"] is True
        assert (kedro["dataset"], kedro["policy"], kedro["suite_file"]) == (name, "fail", f"conf/base/expectations/{name}.yml")
        if name == "model_input_table":
            assert (kedro["operation"], kedro["node"]) == ("save", "create_model_input_table")
        else:
            assert kedro["operation"] == "load" and kedro["node"] in LOADED_BY[name]
        assert len(report["results"]) == report["statistics"]["evaluated_expectations"] == suite_size(name)
        assert all(result["success"] for result in report["results"])


# ---- bad data ------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["SequentialRunner", "ParallelRunner"])
def test_a_corrupted_input_fails_the_run_with_the_precise_message(sample_project: Path, capture: UDPCapture, runner: str) -> None:
    """The stack's KEDRO_INJECT_BAD_DATA corruption; under ParallelRunner the error comes from
    a worker process, pickled."""
    quick(sample_project)
    shuttles_csv = raw_data(sample_project) / "shuttles.csv"
    corrupt(shuttles_csv, negative_fraction=0.05, duplicates=25)
    corrupted = pd.read_csv(shuttles_csv)
    rows = len(corrupted)
    negative = int(corrupted["price"].str.startswith("-").sum())
    duplicated = int(corrupted["id"].duplicated(keep=False).sum())

    with pytest.raises(GreatExpectationsValidationError) as raised:
        run_project(sample_project, runner=make_runner(runner))

    error = raised.value
    message = str(error)
    head = message.splitlines()[0]
    assert head.startswith("Dataset 'shuttles' (loaded for node '")
    assert head.split("'")[3] in LOADED_BY["shuttles"]
    assert head.endswith(f"failed 2 of {suite_size('shuttles')} expectations of its suite in conf/base/expectations/shuttles.yml:")
    assert f"  - expect_column_values_to_be_unique() on column 'id': {duplicated} unexpected values of {rows} rows {share(duplicated, rows)}, e.g. " in message
    assert f"on column 'price': {negative} unexpected values of {rows} rows {share(negative, rows)}, e.g. '-$" in message
    assert "Its validator's severity is error: node '" in message and "did not run" in message
    assert (error.dataset_name, error.mode) == ("shuttles", "load")
    assert sorted(failure.column for failure in error.failures) == ["id", "price"]
    assert {failure.failure_count for failure in error.failures} == {duplicated, negative}
    counted = validations(capture)
    assert counted[("shuttles", "failed")] >= 1 and counted[("shuttles", "passed")] == 0
    assert failed_expectations(capture)["shuttles"] == 2.0
    assert ("model_input_table", "passed") not in counted


def test_severity_warn_lets_the_run_go_on_and_under_error_bad_data_is_never_saved(sample_project: Path, capture: UDPCapture, caplog: pytest.LogCaptureFixture) -> None:
    """shuttles with negative prices, its validator at severity warn: the loads warn, and the
    model input table built from them fails its suite (price > 0) at its save, unwritten."""
    from kedro.framework.project import configure_project

    configure_project("spaceflights")  # Kedro's logging set up now, not in the run: caplog keeps its handler
    quick(sample_project)
    local_catalog(sample_project, {"shuttles": {**base_entry("shuttles"), "validator": {**base_entry("shuttles")["validator"], "severity": "warn"}}})
    corrupt(raw_data(sample_project) / "shuttles.csv", negative_fraction=0.05, duplicates=0)

    with pytest.raises(GreatExpectationsValidationError) as raised:
        run_project(sample_project)

    message = str(raised.value)
    assert message.startswith("Dataset 'model_input_table' (saved by node 'create_model_input_table') failed 1 of ")
    assert re.search(r"\n  - expect_column_values_to_be_between\(min_value=0\.0, strict_min=True\) on column 'price': \d+ unexpected values of \d+ rows \([\d.]+%\), e\.g\. -\d", message)
    assert "Its validator's severity is error: 'model_input_table' was not saved." in message
    assert not (sample_project / "data" / "03_primary" / "model_input_table.parquet").exists()
    warned = [record.getMessage() for record in caplog.records if "Dataset 'shuttles'" in record.getMessage()]
    assert len(warned) == 2  # both loads, each logged by Kedro's catalog
    assert all("Its validator's severity is warn: 'shuttles' was loaded all the same and the run goes on." in each for each in warned)
    counted = validations(capture)
    assert counted[("shuttles", "failed")] == 2
    assert counted[("model_input_table", "failed")] == 1
    assert failed_expectations(capture) == {"companies": 0.0, "reviews": 0.0, "shuttles": 1.0, "model_input_table": 1.0}


def test_policy_override_warn_turns_the_failure_into_a_warning(sample_project: Path, capture: UDPCapture) -> None:
    observability(sample_project, memory={"enabled": False}, mlflow={"enabled": False}, validation={"policy_override": "warn"})
    corrupt(raw_data(sample_project) / "shuttles.csv", negative_fraction=0.0, duplicates=5)

    run_project(sample_project, pipeline_names=["data_processing"])

    counted = validations(capture)
    assert counted[("shuttles", "failed")] == 2
    assert (sample_project / "data" / "03_primary" / "model_input_table.parquet").is_file()


# ---- refused at start ------------------------------------------------------------------------


def test_a_validator_on_a_spark_dataset_is_refused_before_the_first_node(sample_project: Path, capture: UDPCapture) -> None:
    quick(sample_project)
    local_catalog(
        sample_project,
        {"spark_shuttles": {"type": "spark.SparkDataset", "filepath": "data/01_raw/shuttles.parquet", "validator": {"class": VALIDATOR, "options": {"suite": "shuttles"}}}},
    )

    with pytest.raises(GreatExpectationsConfigurationError) as raised:
        run_project(sample_project)

    message = str(raised.value)
    assert "'spark_shuttles'" in message and "spark.SparkDataset" in message and "pandas DataFrames" in message
    assert not any(line.name.startswith("kedro.node") for line in capture.lines())
    assert not (sample_project / "data" / "01_raw" / "shuttles.csv").exists()  # not even the raw data hook ran


@pytest.mark.parametrize("kind", ["polars.CSVDataset", "dask.ParquetDataset", "ibis.TableDataset"])
def test_a_validator_on_another_frame_library_is_refused_when_the_catalog_is_created(sample_project: Path, kind: str) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    local_catalog(sample_project, {"other_frame": {"type": kind, "filepath": "data/x", "validator": {"class": VALIDATOR, "options": {"suite": "companies"}}}})
    bootstrap_project(sample_project)
    with KedroSession.create(project_path=sample_project) as session:
        context = session.load_context()
        with pytest.raises(GreatExpectationsConfigurationError, match=rf"'other_frame', whose type {re.escape(kind)} loads and saves another kind of frame"):
            context.catalog  # noqa: B018 - creating it is the test


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"suite": "shutles"}, r"no suite 'shutles' .* Did you mean 'shuttles'\?"), ({"suit": "shuttles"}, r"unknown option\(s\) suit\. Did you mean 'suite'\?")],
)
def test_an_unknown_suite_or_option_is_refused_when_the_catalog_is_created(sample_project: Path, options: dict[str, str], problem: str) -> None:
    local_catalog(sample_project, {"shuttles": {**base_entry("shuttles"), "validator": {"class": VALIDATOR, "options": options}}})

    with pytest.raises(GreatExpectationsConfigurationError, match=r"The validator: of 'shuttles' in catalog.yml .*" + problem):
        run_project(sample_project)


def test_a_broken_suite_stops_the_run_as_a_configuration_error_even_under_severity_warn(sample_project: Path, capture: UDPCapture) -> None:
    """Found when Kedro builds the validator (GX is not imported before the run for it): a
    configuration error, which Kedro raises whatever the severity, never a warning."""
    from kedro.validation import ValidationConfigurationError

    quick(sample_project)
    local_catalog(sample_project, {"shuttles": {**base_entry("shuttles"), "validator": {**base_entry("shuttles")["validator"], "severity": "warn"}}})
    suite = sample_project / "conf" / "base" / "expectations" / "shuttles.yml"
    suite.write_text(suite.read_text().replace("{column: engines, min_value: 1", "{column: engines, minimum: 1"))

    with pytest.raises(ValidationConfigurationError, match=r"shuttles\.expectations\[9\] \(expect_column_values_to_be_between\) in conf/base/expectations/shuttles\.yml: unknown argument 'minimum'"):
        run_project(sample_project)

    assert not (sample_project / "data" / "08_reporting" / "raw_fingerprints.json").exists()  # the first node did not run
    assert ("shuttles", "passed") not in validations(capture) and ("shuttles", "failed") not in validations(capture)


def test_a_suite_policy_warn_under_a_validator_of_severity_error_is_pointed_out(sample_project: Path, caplog: pytest.LogCaptureFixture) -> None:
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    configure_project("spaceflights")
    suite = sample_project / "conf" / "base" / "expectations" / "reviews.yml"
    suite.write_text(suite.read_text().replace("policy: fail", "policy: warn"))
    bootstrap_project(sample_project)
    with KedroSession.create(project_path=sample_project) as session:
        session.load_context().catalog  # noqa: B018 - creating it is the test

    (warning,) = [record.getMessage() for record in caplog.records if "policy: warn" in record.getMessage()]
    assert warning == (
        "kedro_observability: the suite 'reviews' (conf/base/expectations/reviews.yml) says policy: warn, which only "
        "the plugin's hooks read; the validator: of 'reviews' in catalog.yml has severity error, so a failure stops "
        "the run. Set 'severity: warn' there to go on warning, and drop 'policy' from the suite."
    )


# ---- the validator object ---------------------------------------------------------------------


def _inline() -> GreatExpectationsValidator:
    return GreatExpectationsValidator(
        expectations=[
            {"expect_column_values_to_not_be_null": {"column": "id"}},
            {"expect_column_values_to_be_between": {"column": "price", "min_value": 0}},
        ]
    )


def test_the_validator_and_its_error_survive_pickling_as_parallel_runner_needs() -> None:
    validator = pickle.loads(pickle.dumps(_inline()))
    good = pd.DataFrame({"id": [1, 2, 3], "price": [1.0, 2.0, 3.0]})
    assert validator.validate(good) is good

    with pytest.raises(GreatExpectationsValidationError) as raised:
        validator.validate(pd.DataFrame({"id": [1, 2, 3], "price": [1.0, -2.0, 3.0]}))
    raised.value.dataset_name, raised.value.mode = "prices", "save"  # as Kedro's catalog sets them
    copy = pickle.loads(pickle.dumps(raised.value))
    assert str(copy) == str(raised.value)
    assert "Dataset 'prices' failed 1 of 2 expectations" in str(copy)
    assert "1 unexpected value of 3 rows (33%), e.g. -2.0" in str(copy)
    assert [failure.failure_examples for failure in copy.failures] == [[-2.0]]


def test_one_validator_validates_from_many_threads_at_once() -> None:
    """Kedro shares one validator per dataset between ThreadRunner's threads."""
    from kedro_observability.lifecycle import set_current_project

    set_current_project(None)  # no project of an earlier test: inline expectations only
    validator = _inline()
    verdicts: dict[tuple[int, int], str] = {}

    def work(worker: int) -> None:
        for attempt in range(6):
            bad = (worker + attempt) % 2 == 1
            # Each bad frame has its own bad value: a result from another thread's frame shows.
            frame = pd.DataFrame({"id": range(2000), "price": [-1.0 - worker if bad and row == worker else 1.0 for row in range(2000)]})
            try:
                validator.validate(frame)
                verdicts[(worker, attempt)] = "passed"
            except GreatExpectationsValidationError as error:
                verdicts[(worker, attempt)] = str(error).splitlines()[1]

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad_price = "  - expect_column_values_to_be_between(min_value=0.0) on column 'price': 1 unexpected value of 2000 rows (0.05%), e.g. "
    assert verdicts == {
        (worker, attempt): "passed" if (worker + attempt) % 2 == 0 else f"{bad_price}{-1.0 - worker}"
        for worker in range(8)
        for attempt in range(6)
    }


def test_great_expectations_is_imported_beside_the_run_not_before_it(sample_project: Path) -> None:
    """The plugin's check of a new catalog starts GX's import on a thread of its own and
    returns at once; the first validation waits for it. A fresh process: this one has GX
    imported already."""
    raw_data(sample_project)
    quick(sample_project)
    script = f"""
import json, sys, threading, time
import kedro_observability.validation.catalog as catalog_module
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

checked = {{}}
check = catalog_module.catalog_created

def timed_check(*args):
    started = time.perf_counter()
    check(*args)
    checked["seconds"] = time.perf_counter() - started
    checked["importing"] = any(thread.name == "kedro-observability-gx-import" for thread in threading.enumerate())
    checked["imported"] = "great_expectations.expectations" in sys.modules

catalog_module.catalog_created = timed_check
bootstrap_project({str(sample_project)!r})
with KedroSession.create(project_path={str(sample_project)!r}) as session:
    catalog = session.load_context().catalog
    checked["rows"] = len(catalog.load("companies"))
print("RESULT", json.dumps(checked))
"""
    probe = sample_project / "probe.py"  # a file: pyspark, which GX imports, exits a `python -c` process
    probe.write_text(script)
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, cwd=sample_project, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["importing"] and not result["imported"]
    assert result["seconds"] < 0.25  # GX's import alone takes seconds
    assert result["rows"] > 0


def test_the_first_node_runs_once_great_expectations_is_imported(sample_project: Path) -> None:
    """GX's background import overlaps the run's start, never its nodes: a node importing
    what GX imports (scipy, pandas) on another thread could meet it half imported."""
    raw_data(sample_project)
    quick(sample_project)  # no MLflow run to open: the run's start is short
    script = f"""
import json, sys, threading
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

seen = []

class FirstNode:
    @hook_impl
    def before_node_run(self, node):
        if not seen:
            seen.append({{
                "importing": any(thread.name == "kedro-observability-gx-import" for thread in threading.enumerate()),
                "imported": "great_expectations.expectations" in sys.modules,
            }})

bootstrap_project({str(sample_project)!r})
settings.HOOKS = (*settings.HOOKS, FirstNode())
with KedroSession.create(project_path={str(sample_project)!r}) as session:
    session.run(pipeline_names=["data_generation"])  # its first node loads no validated dataset
print("RESULT", json.dumps(seen[0]))
"""
    probe = sample_project / "probe.py"  # a file: pyspark, which GX imports, exits a `python -c` process
    probe.write_text(script)
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=300, cwd=sample_project, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert json.loads(line.removeprefix("RESULT ")) == {"importing": False, "imported": True}
