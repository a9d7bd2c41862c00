"""``kedro observability``: set the plugin up in a project, and see what it does there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click



@click.group(name="kedro-observability")
def commands() -> None:
    """The commands Kedro adds to ``kedro`` inside a project (the project_commands entry point)."""


@commands.group(name="observability")
def observability() -> None:
    """Metrics, memory, MLflow tracking and validation of this project's runs."""


@observability.command()
@click.option("--env", "-e", default="base", show_default=True, help="The conf environment to write observability.yml to.")
@click.option("--force", is_flag=True, help="Overwrite an existing observability.yml.")
def init(env: str, force: bool) -> None:
    """Turn the plugin on: write conf/<env>/observability.yml and the plugin's logger."""
    from kedro_observability.scaffold import add_logger, guess_roles, render_settings

    metadata, context = _project()
    conf_source = Path(context.config_loader.conf_source)
    target = conf_source / env / "observability.yml"
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists; it is left as it is. `kedro observability init --force` overwrites it.")
    from kedro.framework.project import pipelines

    guesses = guess_roles(context.catalog, list(pipelines.values()))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_settings(metadata.package_name, guesses), encoding="utf-8")
    click.echo(f"Wrote {target}.")
    for role, name in (("model", guesses.model), ("metrics", guesses.metrics), ("model input example", guesses.model_input)):
        click.echo(f"  mlflow {role} dataset: {name or 'none found (set it, or leave it null)'}")
    click.echo(add_logger(metadata.project_path / "conf" / "logging.yml", _kedro_default_logging()) + ".")
    click.echo(
        "Next: check the mlflow section of that file, add suites under "
        f"conf/{env}/expectations/<dataset>.yml if you want validation, then `kedro run`. "
        "`kedro observability doctor` shows what is on."
    )


@observability.command()
def doctor() -> None:
    """Which features are on, the settings in force and their files, and whether statsd and MLflow answer."""
    from kedro_observability.doctor import report

    _, context = _project()
    click.echo(report(context))


@observability.command()
def replay() -> None:
    """Send MLflow what earlier runs could not (the spool), once its server answers.

    Each spooled run is completed with its real status and end time, or created with its
    original start time if the server never saw it. A run fully sent leaves the spool, so a
    second replay sends nothing twice. Exits with 1 while something is left in the spool.
    """
    from kedro_observability.settings import SettingsError, load_settings
    from kedro_observability.tracking.spool import pending_entries, replay as replay_spool, spool_folder

    metadata, context = _project()
    try:
        settings = load_settings(context.config_loader)
    except SettingsError as error:
        raise click.ClickException(str(error)) from error
    folder = spool_folder(Path(metadata.project_path), settings.mlflow)
    if not pending_entries(folder):
        click.echo(f"Nothing to replay: no spooled run in {folder}.")
        return
    outcomes = replay_spool(folder)
    for outcome in outcomes:
        run = f"MLflow run {outcome.run_id}" if outcome.run_id else "a run new to MLflow"
        click.echo(f"{outcome.entry.name}: {run} at {outcome.uri}, {outcome.status}: {outcome.message}.")
    left = [outcome for outcome in outcomes if not outcome.completed]
    click.echo(f"{len(outcomes) - len(left)} replayed, {len(left)} left in {folder}.")
    if left:
        raise SystemExit(1)


@observability.command(name="stop-helpers")
def stop_helpers() -> None:
    """End this user's MLflow helpers kept warm between runs (mlflow.warm_helper_seconds).

    A helper serving a run at that moment ends too, and that run says what it could not log.
    """
    import os
    import signal

    from kedro_observability.tracking.warm import warm_pids

    pids = warm_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    click.echo(f"Stopped {len(pids)} warm MLflow helper(s){': pid ' + ', '.join(map(str, pids)) if pids else ''}.")


def _project() -> tuple[object, object]:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    metadata = bootstrap_project(Path.cwd())
    session = KedroSession.create(project_path=metadata.project_path)
    return metadata, session.load_context()


def _kedro_default_logging() -> Path:
    """The logging file Kedro uses when a project has none (the rich one if rich is installed)."""
    import kedro.framework.project as project

    folder = Path(project.__file__).parent
    return folder / ("rich_logging.yml" if importlib.util.find_spec("rich") else "default_logging.yml")


