"""Whole ``kedro run`` processes, timed side by side: what the plugin adds to a run, against
kedro-mlflow 2.0.3 doing comparable work.

Two projects, each run as a user runs it (``kedro run`` in a subprocess, its wall time from
start to exit):

- ``sample``: this repository's sample project at its default size (10,000 shuttles), from a
  copy of project/ in the cache folder, with this repository's virtualenv. Its fingerprint
  node needs the plugin's input paths to run at all, so its baseline is the plugin with every
  feature off but input_paths.
- ``flights``: a spaceflights-like project made by ``kedro new`` (Kedro's own template, no
  network): the nodes and catalog of Kedro's spaceflights-pandas starter (shuttles as an Excel
  file, parquet intermediates, the three reporting nodes), on generated data of the starter's
  size. It runs in two virtualenvs built here: one with this working tree's plugin
  (editable), one with kedro-mlflow 2.0.3 configured as its users do (``kedro mlflow init``,
  the model as an ``MlflowModelTrackingDataset``, the metrics as an
  ``MlflowMetricsHistoryDataset``). Each virtualenv's bare run (plugins disabled through
  ``DISABLE_HOOKS_FOR_PLUGINS``) is that virtualenv's baseline. Both track to a SQLite file in
  the project.

Both projects also run every feature, and MLflow alone, with ``mlflow.warm_helper_seconds``
(the MLflow helper kept between runs; the warm-up round starts it): the figure of a user's
second and later runs while they iterate. Helpers the benchmark kept warm are stopped (by
pid) when it ends.

Configurations are interleaved (one round runs each once, in an order rotated every round),
after one warm-up round; each figure is the median of the rounds with its min and max, and
each ratio is taken round by round against the baseline of the same round, so drift of the
machine hits both alike. statsd packets go to a UDP socket this script holds.

``--profile`` runs the every-feature configuration once under cProfile and ``-X importtime``
and prints where the seconds go: imports, run start, validation, model logging, uploads.

Usage: ``python benchmarks/bench_run.py [--rounds 7] [--projects sample,flights] [--profile]``.
Everything it builds lives under ``--cache`` (default ~/.cache/kedro-observability-bench).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kedro_observability.tracking.warm import warm_pids

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "project" / "kedro-observability"
KEDRO_MLFLOW = "kedro-mlflow==2.0.3"
DISABLE_VARIABLE = "BENCH_DISABLE_HOOKS_FOR_PLUGINS"
FEATURES = ("statsd", "memory", "mlflow", "validation")
WARM_SECONDS = 900
"""mlflow.warm_helper_seconds of the warm configurations: longer than a round."""
WARM = [("every feature, warm helper", "warm"), ("mlflow alone, warm helper", "only_mlflow_warm")]
FLIGHTS_PACKAGE = "bench_flights"
# What a spaceflights-pandas project installs, less its notebooks and kedro-viz.
FLIGHTS_REQUIREMENTS = [
    "kedro~=1.7.0",
    "kedro-datasets[pandas-csvdataset,pandas-exceldataset,pandas-parquetdataset,pickle-pickledataset,"
    "json-jsondataset,plotly-plotlydataset,plotly-jsondataset,matplotlib-matplotlibdataset]",
    "openpyxl",
    "scikit-learn",
    "seaborn",
]


@dataclass
class Configuration:
    """One way of running a project: the command, its environment, and its baseline."""

    name: str
    project: Path
    kedro: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None

    def command(self) -> list[str]:
        return [str(self.kedro), "run", *self.args]


# ---- setup ---------------------------------------------------------------------------------


def run_checked(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def base_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "KEDRO_MP_CONTEXT", "PYTHONPATH"}}
    env.update({"KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "120"})
    return env


def constraints(cache: Path) -> Path:
    """The sample project's pins without extras, so every virtualenv gets the same versions."""
    lines = []
    for line in (REPO / "project" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(re.sub(r"\[[^\]]*\]", "", line))
    path = cache / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def virtualenv(cache: Path, name: str, packages: list[str]) -> Path:
    """A virtualenv with ``packages``, rebuilt only when the list or the pins change."""
    folder = cache / f"venv-{name}"
    pins = constraints(cache)
    stamp = hashlib.sha256(("\n".join(packages) + pins.read_text()).encode()).hexdigest()
    marker = folder / ".bench-stamp"
    if marker.exists() and marker.read_text() == stamp:
        return folder
    print(f"  building the virtualenv {folder} (once)...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(folder)])
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run_checked([*pip, "-c", str(pins), *packages])
    marker.write_text(stamp)
    return folder


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def flights_project(cache: Path, venv: Path, name: str) -> Path:
    """``kedro new`` with Kedro's template, then the spaceflights-pandas starter's pipelines."""
    project = cache / name
    marker = project / ".bench-ready"
    if marker.exists():
        return project
    shutil.rmtree(project, ignore_errors=True)
    env = {**base_environment(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    scratch = cache / f"new-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    run_checked([str(venv / "bin" / "kedro"), "new", "--name", "Bench Flights", "--tools", "none", "--example", "n"], cwd=scratch, env=env)
    (scratch / "bench-flights").rename(project)
    shutil.rmtree(scratch)
    add_starter_pipelines(project)
    generate_flights_data(project, venv)
    settings = project / "src" / FLIGHTS_PACKAGE / "settings.py"
    settings.write_text(
        settings.read_text()
        + f"\n# The benchmark turns plugins off per run (its bare baseline).\nimport os as _os\n\n"
        f"DISABLE_HOOKS_FOR_PLUGINS = tuple(filter(None, _os.environ.get('{DISABLE_VARIABLE}', '').split(',')))\n"
    )
    marker.write_text("ready\n")
    return project


def add_starter_pipelines(project: Path) -> None:
    package = project / "src" / FLIGHTS_PACKAGE / "pipelines"
    write(package / "data_processing" / "__init__.py", "from .pipeline import create_pipeline  # noqa: F401\n")
    write(package / "data_processing" / "nodes.py", '''
        import pandas as pd


        def _is_true(x: pd.Series) -> pd.Series:
            return x == "t"


        def _parse_percentage(x: pd.Series) -> pd.Series:
            return x.str.replace("%", "").astype(float) / 100


        def _parse_money(x: pd.Series) -> pd.Series:
            return x.str.replace("$", "").str.replace(",", "").astype(float)


        def preprocess_companies(companies: pd.DataFrame) -> pd.DataFrame:
            companies["iata_approved"] = _is_true(companies["iata_approved"])
            companies["company_rating"] = _parse_percentage(companies["company_rating"])
            return companies


        def preprocess_shuttles(shuttles: pd.DataFrame) -> pd.DataFrame:
            shuttles["d_check_complete"] = _is_true(shuttles["d_check_complete"])
            shuttles["moon_clearance_complete"] = _is_true(shuttles["moon_clearance_complete"])
            shuttles["price"] = _parse_money(shuttles["price"])
            return shuttles


        def create_model_input_table(shuttles: pd.DataFrame, companies: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
            rated_shuttles = shuttles.merge(reviews, left_on="id", right_on="shuttle_id")
            rated_shuttles = rated_shuttles.drop("id", axis=1)
            model_input_table = rated_shuttles.merge(companies, left_on="company_id", right_on="id")
            return model_input_table.dropna()
    ''')
    write(package / "data_processing" / "pipeline.py", '''
        from kedro.pipeline import Node, Pipeline

        from .nodes import create_model_input_table, preprocess_companies, preprocess_shuttles


        def create_pipeline(**kwargs) -> Pipeline:
            return Pipeline([
                Node(preprocess_companies, "companies", "preprocessed_companies", name="preprocess_companies_node"),
                Node(preprocess_shuttles, "shuttles", "preprocessed_shuttles", name="preprocess_shuttles_node"),
                Node(create_model_input_table, ["preprocessed_shuttles", "preprocessed_companies", "reviews"], "model_input_table", name="create_model_input_table_node"),
            ])
    ''')
    write(package / "data_science" / "__init__.py", "from .pipeline import create_pipeline  # noqa: F401\n")
    write(package / "data_science" / "nodes.py", '''
        import logging

        import pandas as pd
        from sklearn.linear_model import LinearRegression
        from sklearn.metrics import max_error, mean_absolute_error, r2_score
        from sklearn.model_selection import train_test_split


        def split_data(data: pd.DataFrame, parameters: dict) -> tuple:
            X = data[parameters["features"]]
            y = data["price"]
            return train_test_split(X, y, test_size=parameters["test_size"], random_state=parameters["random_state"])


        def train_model(X_train: pd.DataFrame, y_train: pd.Series) -> LinearRegression:
            regressor = LinearRegression()
            regressor.fit(X_train, y_train)
            return regressor


        def evaluate_model(regressor: LinearRegression, X_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
            y_pred = regressor.predict(X_test)
            score = r2_score(y_test, y_pred)
            logging.getLogger(__name__).info("Model has a coefficient R^2 of %.3f on test data.", score)
            return {"r2_score": float(score), "mae": float(mean_absolute_error(y_test, y_pred)), "max_error": float(max_error(y_test, y_pred))}
    ''')
    write(package / "data_science" / "pipeline.py", '''
        from kedro.pipeline import Node, Pipeline

        from .nodes import evaluate_model, split_data, train_model


        def create_pipeline(**kwargs) -> Pipeline:
            return Pipeline([
                Node(split_data, ["model_input_table", "params:model_options"], ["X_train", "X_test", "y_train", "y_test"], name="split_data_node"),
                Node(train_model, ["X_train", "y_train"], "regressor", name="train_model_node"),
                Node(evaluate_model, ["regressor", "X_test", "y_test"], "metrics", name="evaluate_model_node"),
            ])
    ''')
    write(package / "reporting" / "__init__.py", "from .pipeline import create_pipeline  # noqa: F401\n")
    write(package / "reporting" / "nodes.py", '''
        import matplotlib
        import matplotlib.pyplot as plt
        import pandas as pd
        import plotly.express as px  # noqa: F401
        import plotly.graph_objs as go
        import seaborn as sn


        def compare_passenger_capacity_exp(preprocessed_shuttles: pd.DataFrame):
            return preprocessed_shuttles.groupby(["shuttle_type"]).mean(numeric_only=True).reset_index()


        def compare_passenger_capacity_go(preprocessed_shuttles: pd.DataFrame):
            data_frame = preprocessed_shuttles.groupby(["shuttle_type"]).mean(numeric_only=True).reset_index()
            return go.Figure([go.Bar(x=data_frame["shuttle_type"], y=data_frame["passenger_capacity"])])


        def create_confusion_matrix(companies: pd.DataFrame):
            matplotlib.use("Agg")
            actuals = [0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1]
            predicted = [1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1]
            df = pd.DataFrame({"y_Actual": actuals, "y_Predicted": predicted})
            confusion_matrix = pd.crosstab(df["y_Actual"], df["y_Predicted"], rownames=["Actual"], colnames=["Predicted"])
            fig, ax = plt.subplots(figsize=(8, 6))
            sn.heatmap(confusion_matrix, annot=True, fmt="d", cmap="Blues", ax=ax)
            ax.set_title("Confusion Matrix")
            plt.tight_layout()
            return fig
    ''')
    write(package / "reporting" / "pipeline.py", '''
        from kedro.pipeline import Node, Pipeline

        from .nodes import compare_passenger_capacity_exp, compare_passenger_capacity_go, create_confusion_matrix


        def create_pipeline(**kwargs) -> Pipeline:
            return Pipeline([
                Node(compare_passenger_capacity_exp, "preprocessed_shuttles", "shuttle_passenger_capacity_plot_exp"),
                Node(compare_passenger_capacity_go, "preprocessed_shuttles", "shuttle_passenger_capacity_plot_go"),
                Node(create_confusion_matrix, "companies", "dummy_confusion_matrix"),
            ])
    ''')
    write(project / "conf" / "base" / "catalog.yml", """
        companies:
          type: pandas.CSVDataset
          filepath: data/01_raw/companies.csv

        reviews:
          type: pandas.CSVDataset
          filepath: data/01_raw/reviews.csv

        shuttles:
          type: pandas.ExcelDataset
          filepath: data/01_raw/shuttles.xlsx
          load_args:
            engine: openpyxl

        preprocessed_companies:
          type: pandas.ParquetDataset
          filepath: data/02_intermediate/preprocessed_companies.parquet

        preprocessed_shuttles:
          type: pandas.ParquetDataset
          filepath: data/02_intermediate/preprocessed_shuttles.parquet

        model_input_table:
          type: pandas.ParquetDataset
          filepath: data/03_primary/model_input_table.parquet

        regressor:
          type: pickle.PickleDataset
          filepath: data/06_models/regressor.pickle
          versioned: true

        shuttle_passenger_capacity_plot_exp:
          type: plotly.PlotlyDataset
          filepath: data/08_reporting/shuttle_passenger_capacity_plot_exp.json
          versioned: true
          plotly_args:
            type: bar
            fig:
              x: shuttle_type
              y: passenger_capacity
              orientation: h
            layout:
              xaxis_title: Shuttles
              yaxis_title: Average passenger capacity
              title: Shuttle Passenger capacity

        shuttle_passenger_capacity_plot_go:
          type: plotly.JSONDataset
          filepath: data/08_reporting/shuttle_passenger_capacity_plot_go.json
          versioned: true

        dummy_confusion_matrix:
          type: matplotlib.MatplotlibDataset
          filepath: data/08_reporting/dummy_confusion_matrix.png
          versioned: true
    """)
    write(project / "conf" / "base" / "parameters_data_science.yml", """
        model_options:
          test_size: 0.2
          random_state: 3
          features:
            - engines
            - passenger_capacity
            - crew
            - d_check_complete
            - moon_clearance_complete
            - iata_approved
            - company_rating
            - review_scores_rating
    """)


def generate_flights_data(project: Path, venv: Path) -> None:
    """Raw tables shaped and sized like the starter's (10,000 companies, 15,500 shuttles and
    reviews), from the sample project's seeded generator; the shuttles as an Excel file."""
    sys.path.insert(0, str(REPO / "project" / "src"))
    from spaceflights.pipelines.data_generation.nodes import generate_raw_data

    companies, shuttles, reviews = generate_raw_data({"seed": 7, "n_shuttles": 50_000})
    companies = companies.head(10_000)
    shuttles = shuttles[shuttles["company_id"] <= len(companies)].head(15_500)
    reviews = reviews[reviews["shuttle_id"].isin(shuttles["id"])]
    raw = project / "data" / "01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    companies.to_csv(raw / "companies.csv", index=False)
    reviews.to_csv(raw / "reviews.csv", index=False)
    shuttles.to_csv(raw / "shuttles.csv", index=False)
    convert = "import pandas as pd, sys; pd.read_csv(sys.argv[1]).to_excel(sys.argv[2], index=False)"
    run_checked([str(venv / "bin" / "python"), "-c", convert, str(raw / "shuttles.csv"), str(raw / "shuttles.xlsx")])
    (raw / "shuttles.csv").unlink()


def configure_observability(project: Path, venv: Path) -> None:
    """``kedro observability init``, suites on three tables, and one environment per feature."""
    if not (project / "conf" / "base" / "observability.yml").exists():
        env = {**base_environment(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        run_checked([str(venv / "bin" / "kedro"), "observability", "init"], cwd=project, env=env)
    expectations = project / "conf" / "base" / "expectations"
    write(expectations / "companies.yml", """
        companies:
          policy: fail
          expectations:
            - expect_column_values_to_not_be_null: {column: id}
            - expect_column_values_to_be_unique: {column: id}
            - expect_column_values_to_match_regex: {column: company_rating, regex: '^\\d+%$', mostly: 0.9}
    """)
    write(expectations / "shuttles.yml", """
        shuttles:
          policy: fail
          expectations:
            - expect_column_values_to_not_be_null: {column: id}
            - expect_column_values_to_be_between: {column: engines, min_value: 0, max_value: 10}
            - expect_column_values_to_be_in_set: {column: d_check_complete, value_set: [t, f]}
    """)
    write(expectations / "model_input_table.yml", """
        model_input_table:
          policy: warn
          expectations:
            - expect_table_row_count_to_be_between: {min_value: 1}
            - expect_column_values_to_not_be_null: {column: price}
            - expect_column_values_to_be_between: {column: review_scores_rating, min_value: 0, max_value: 100}
    """)
    feature_environments(project)


def feature_environments(project: Path, keep_input_paths: bool = False) -> None:
    """conf/only_<feature>/observability.yml turns every other feature off; conf/no_features
    turns them all off (input_paths stay as the base file has them); conf/warm and
    conf/only_mlflow_warm keep the MLflow helper warm between runs."""
    for kept in (*FEATURES, None):
        lines = [f"{feature}:\n  enabled: {'true' if feature == kept else 'false'}\n" for feature in FEATURES]
        name = f"only_{kept}" if kept else "no_features"
        write(project / "conf" / name / "observability.yml", "".join(lines))
    warm = f"  warm_helper_seconds: {WARM_SECONDS}\n"
    write(project / "conf" / "warm" / "observability.yml", "mlflow:\n" + warm)
    only_mlflow = (project / "conf" / "only_mlflow" / "observability.yml").read_text()
    write(project / "conf" / "only_mlflow_warm" / "observability.yml", only_mlflow.replace("mlflow:\n  enabled: true\n", "mlflow:\n  enabled: true\n" + warm))


def configure_kedro_mlflow(project: Path, venv: Path) -> None:
    """``kedro mlflow init``, the model and metrics through kedro-mlflow's datasets (in the
    ``kedro_mlflow`` environment), tracking to a SQLite file like the plugin's default."""
    env = {**base_environment(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    target = project / "conf" / "kedro_mlflow"
    if not (target / "mlflow.yml").exists():
        target.mkdir(parents=True, exist_ok=True)
        run_checked([str(venv / "bin" / "kedro"), "mlflow", "init", "--env", "kedro_mlflow"], cwd=project, env=env)
    settings = target / "mlflow.yml"
    text = settings.read_text()
    text = re.sub(r"mlflow_tracking_uri:.*", f"mlflow_tracking_uri: sqlite:///{(project / 'mlflow.db').as_posix()}", text, count=1)
    settings.write_text(text)
    # MlflowMetricsHistoryDataset takes {name: {"value": v, "step": n}}: its users' nodes return that.
    nodes = project / "src" / FLIGHTS_PACKAGE / "pipelines" / "data_science" / "nodes.py"
    nodes.write_text(nodes.read_text().replace(
        'return {"r2_score": float(score), "mae": float(mean_absolute_error(y_test, y_pred)), "max_error": float(max_error(y_test, y_pred))}',
        'return {"r2_score": {"value": float(score), "step": 0}, "mae": {"value": float(mean_absolute_error(y_test, y_pred)), "step": 0}, '
        '"max_error": {"value": float(max_error(y_test, y_pred)), "step": 0}}',
    ))
    write(target / "catalog.yml", """
        regressor:
          type: kedro_mlflow.io.models.MlflowModelTrackingDataset
          flavor: mlflow.sklearn

        metrics:
          type: kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset
    """)


def sample_project(cache: Path) -> Path:
    """A copy of project/ (its conf, code and settings), data generated by its first run."""
    project = cache / "sample"
    for part in ("conf", "src"):
        shutil.rmtree(project / part, ignore_errors=True)
    project.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "project" / "conf", project / "conf")
    shutil.copytree(REPO / "project" / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "project" / "pyproject.toml", project)
    feature_environments(project)
    return project


def configurations(cache: Path, projects: Iterable[str]) -> dict[str, list[Configuration]]:
    found: dict[str, list[Configuration]] = {}
    if "sample" in projects:
        project = sample_project(cache)
        kedro = Path(sys.executable).parent / "kedro"
        baseline = "input paths only"
        found["sample"] = [
            Configuration(baseline, project, kedro, ["--env", "no_features"]),
            Configuration("every feature", project, kedro, [], baseline=baseline),
            *(Configuration(f"{feature} alone", project, kedro, ["--env", f"only_{feature}"], baseline=baseline) for feature in FEATURES),
            *(Configuration(name, project, kedro, ["--env", env], baseline=baseline) for name, env in WARM),
        ]
    if "flights" in projects:
        ours = virtualenv(cache, "observability", [*FLIGHTS_REQUIREMENTS, "-e", f"{PLUGIN}[all]"])
        theirs = virtualenv(cache, "kedro-mlflow", [*FLIGHTS_REQUIREMENTS, KEDRO_MLFLOW])
        project = flights_project(cache, ours, "flights")
        configure_observability(project, ours)
        other = flights_project(cache, theirs, "flights-kedro-mlflow")
        configure_kedro_mlflow(other, theirs)
        kedro, their_kedro = ours / "bin" / "kedro", theirs / "bin" / "kedro"
        found["flights"] = [
            Configuration("bare", project, kedro, [], {DISABLE_VARIABLE: "kedro-observability"}),
            Configuration("plugin on, no feature", project, kedro, ["--env", "no_features"], baseline="bare"),
            Configuration("every feature", project, kedro, [], baseline="bare"),
            *(Configuration(f"{feature} alone", project, kedro, ["--env", f"only_{feature}"], baseline="bare") for feature in FEATURES),
            *(Configuration(name, project, kedro, ["--env", env], baseline="bare") for name, env in WARM),
            Configuration("kedro-mlflow venv: bare", other, their_kedro, [], {DISABLE_VARIABLE: "kedro-mlflow,kedro_mlflow"}),
            Configuration("kedro-mlflow 2.0.3", other, their_kedro, ["--env", "kedro_mlflow"], baseline="kedro-mlflow venv: bare"),
        ]
    return found


# ---- timing --------------------------------------------------------------------------------


def timed(configuration: Configuration, env: dict[str, str], log: Path) -> float:
    """Wall seconds of one whole ``kedro run`` process; a failed run stops the benchmark."""
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.run(configuration.command(), cwd=configuration.project, env={**env, **configuration.env}, stdout=output, stderr=subprocess.STDOUT, check=False)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"'{configuration.name}' failed ({process.returncode}); its output: {log}\n{log.read_text()[-3000:]}")
    return elapsed


def measure(project: str, runs: list[Configuration], rounds: int, env: dict[str, str], logs: Path) -> None:
    samples: dict[str, list[float]] = {run.name: [] for run in runs}
    print(f"\n{project}: {rounds} rounds after one warm-up, configurations interleaved", flush=True)
    for round_number in range(rounds + 1):
        shift = round_number % len(runs)
        for run in runs[shift:] + runs[:shift]:
            elapsed = timed(run, env, logs / f"{project}-{_slug(run.name)}.log")
            if round_number:
                samples[run.name].append(elapsed)
    print(f"  {'configuration':<26}{'median s':>9}{'min':>7}{'max':>7}   {'ratio (min-max)':<19}{'added s':>8}")
    for run in runs:
        times = samples[run.name]
        line = f"  {run.name:<26}{statistics.median(times):>9.2f}{min(times):>7.2f}{max(times):>7.2f}"
        if run.baseline is not None:
            base = samples[run.baseline]
            ratios = [mine / theirs for mine, theirs in zip(times, base, strict=True)]
            added = statistics.median(mine - theirs for mine, theirs in zip(times, base, strict=True))
            line += f"   x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}){'':<3}{added:>+8.2f}"
        else:
            line += "   (baseline)"
        print(line, flush=True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---- profile -------------------------------------------------------------------------------

# Where the plugin's seconds go: (label, regex on cProfile's "file:line(function)").
PROFILE_GROUPS = [
    ("plugin: after_context_created", r"kedro_observability/plugin\.py:\d+\(after_context_created\)"),
    ("plugin: run start (before_pipeline_run)", r"kedro_observability/plugin\.py:\d+\(before_pipeline_run\)"),
    ("  GX import and suites", r"kedro_observability/validation/suites\.py:\d+\(parse_suites\)"),
    ("  GX context and validation definitions", r"kedro_observability/validation/engine\.py:\d+\(__init__\)"),
    ("  MLflow run opened", r"kedro_observability/plugin\.py:\d+\(_start_tracking\)"),
    ("validation of datasets", r"kedro_observability/validation/engine\.py:\d+\(check\)"),
    ("plugin: node and dataset hooks", r"kedro_observability/plugin\.py:\d+\((before|after)_(node_run|dataset_loaded|dataset_saved)\)"),
    ("plugin: run end", r"kedro_observability/lifecycle\.py:\d+\(end\)"),
    ("  MLflow uploads (finish)", r"kedro_observability/tracking/\w+\.py:\d+\(finish\)"),
    ("  model logging", r"kedro_observability/tracking/content\.py:\d+\(log_model\)"),
    ("kedro-mlflow hooks", r"kedro_mlflow/framework/hooks/mlflow_hook\.py:\d+\(\w+\)"),
    ("kedro-mlflow model save", r"kedro_mlflow/io/models/mlflow_model_tracking_dataset\.py:\d+\(_save\)"),
]
IMPORTED = ("great_expectations", "mlflow", "sqlalchemy", "alembic", "skops", "scipy", "kedro_observability", "kedro_mlflow", "statsd", "psutil", "opentelemetry", "pyspark")


def profile(project: str, run: Configuration, env: dict[str, str], logs: Path) -> None:
    """One run under cProfile (times inflated by the profiler, shares are what to read) and
    one under -X importtime (the seconds each package's imports took)."""
    python = run.kedro.parent / "python"
    stats_file = logs / f"{project}-{_slug(run.name)}.prof"
    command = [str(python), "-m", "cProfile", "-o", str(stats_file), "-m", "kedro", "run", *run.args]
    started = time.perf_counter()
    subprocess.run(command, cwd=run.project, env={**env, **run.env}, capture_output=True, check=True)
    total = time.perf_counter() - started
    stats = pstats.Stats(str(stats_file))
    cumulative: dict[str, float] = {}
    for (filename, line, function), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{line}({function})"
        for label, pattern in PROFILE_GROUPS:
            if re.search(pattern, where):
                # Wrappers and their callees both match: the outermost (largest) is the figure.
                cumulative[label] = max(cumulative.get(label, 0.0), cum)
    print(f"\n{project}, {run.name}, under cProfile: {total:.2f} s in all (the profiler slows Python code down)")
    for label, _ in PROFILE_GROUPS:
        if label in cumulative:
            print(f"  {label:<44}{cumulative[label]:>7.2f} s")
    imports = subprocess.run([str(python), "-X", "importtime", "-m", "kedro", "run", *run.args], cwd=run.project, env={**env, **run.env}, capture_output=True, text=True, check=True).stderr
    by_package: dict[str, float] = {}
    for line in imports.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1e6
    shown = ", ".join(f"{name} {by_package[name]:.2f}" for name in IMPORTED if by_package.get(name, 0) >= 0.01)
    print(f"  imports in the run's main process (s, -X importtime): {shown or 'none of the plugin'}")


# ---- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--projects", default="sample,flights")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "kedro-observability-bench")
    parser.add_argument("--profile", action="store_true", help="where the seconds go, instead of the timing")
    args = parser.parse_args()
    projects = [name.strip() for name in args.projects.split(",") if name.strip()]
    args.cache.mkdir(parents=True, exist_ok=True)
    logs = args.cache / "logs"
    logs.mkdir(exist_ok=True)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    env = {**base_environment(), "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(sink.getsockname()[1])}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; whole `kedro run` processes, wall time")
    already_warm = set(warm_pids())
    try:
        print("Setting up (virtualenvs and projects are built once, in the cache folder)...", flush=True)
        found = configurations(args.cache, projects)
        for project, runs in found.items():
            if args.profile:
                chosen = [run for run in runs if run.name in {"every feature", "kedro-mlflow 2.0.3"}]
                for run in chosen:
                    timed(run, env, logs / "warm-up.log")
                    profile(project, run, env, logs)
            else:
                measure(project, runs, args.rounds, env, logs)
    finally:
        sink.close()
        # The warm configurations' helpers, by pid (a user's own warm helpers are left alone).
        for pid in set(warm_pids()) - already_warm:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
