"""``kedro observability doctor``: what the plugin does in this project, and whether its
destinations answer."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from typing import TYPE_CHECKING, Any

from kedro_observability import __version__
from kedro_observability.config import ENABLE_HINT, opted_in
from kedro_observability.conf_files import config_documents
from kedro_observability.settings import CONFIG_KEY, SettingsError, load_settings, locate_key

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext

    from kedro_observability.settings import ObservabilitySettings

EXPORTER_WEB_PORT = 9102  # statsd_exporter's default /metrics port


def report(context: KedroContext) -> str:
    loader = context.config_loader
    lines = [f"kedro-observability {__version__}"]
    if not opted_in(loader):
        lines.append(f"Off for this project: no observability.yml in conf/. To turn it on, {ENABLE_HINT}.")
        return "\n".join(lines)
    files = [str(path) for path, _ in config_documents(loader, CONFIG_KEY)]
    lines.append("Settings files: " + ", ".join(files))
    try:
        settings = load_settings(loader)
    except SettingsError as error:
        lines.append(f"The settings are not valid, so no run would start: {error}")
        return "\n".join(lines)
    lines += ["", "Features:"]
    lines += _features(settings, context)
    lines += ["", "Settings in force (and where each comes from):"]
    for key, value in _flatten(dataclasses.asdict(settings)):
        lines.append(f"  {key} = {value!r}  [{_origin(loader, key)}]")
    lines += ["", "Destinations:"]
    lines += _statsd_status(settings)
    lines += _mlflow_status(settings, context)
    return "\n".join(lines)


def _features(settings: ObservabilitySettings, context: KedroContext) -> list[str]:
    from kedro_observability.validation.suites import read_suites

    suites = read_suites(context.config_loader).raw if settings.validation.enabled else {}
    return [
        f"  statsd metrics: {'on, to ' + settings.statsd.host + ':' + str(settings.statsd.port) + '/udp' if settings.statsd.enabled else 'off (statsd.enabled)'}",
        f"  memory: {'on' if settings.memory.enabled else 'off (memory.enabled)'}",
        f"  MLflow tracking: {'on' if settings.mlflow.enabled else 'off (mlflow.enabled)'}",
        f"  validation: {'on, suites for ' + ', '.join(sorted(map(str, suites))) if suites else ('on, but no suite in conf/<env>/expectations/' if settings.validation.enabled else 'off (validation.enabled)')}",
        f"  input paths: {', '.join(sorted(settings.input_paths)) or 'none configured'}",
    ]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value and prefix != "input_paths.":
        items: list[tuple[str, Any]] = []
        for key, item in value.items():
            items += _flatten(item, f"{prefix}{key}.") if isinstance(item, dict) and key != "input_paths" else [(f"{prefix}{key}", item)]
        return items
    return [(prefix.rstrip("."), value)]


def _origin(loader: Any, key: str) -> str:
    where = locate_key(loader, key)
    return "default" if where.startswith("the '") else where


def _statsd_status(settings: ObservabilitySettings) -> list[str]:
    if not settings.statsd.enabled:
        return ["  statsd: off"]
    host, port = settings.statsd.host, settings.statsd.port
    try:
        address = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
    except OSError as error:
        return [f"  statsd: {host} cannot be resolved ({error}): set STATSD_HOST or statsd.host"]
    lines = [f"  statsd: {host}:{port}/udp resolves to {address[4][0]}"]
    url = f"http://{host}:{EXPORTER_WEB_PORT}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as page:
            found = b"statsd_exporter" in page.read(200_000)
        lines.append(f"  statsd_exporter: its page {url} answers{'' if found else ' (but it is not a statsd_exporter page)'}")
    except OSError:
        lines.append(f"  statsd_exporter: no page at {url} (UDP itself cannot tell whether anything listens)")
    return lines


def _mlflow_status(settings: ObservabilitySettings, context: KedroContext) -> list[str]:
    if not settings.mlflow.enabled:
        return ["  MLflow: off"]
    from kedro_observability.tracking.server import MlflowTrackingError, check_reachable, default_tracking_uri
    from kedro_observability.tracking.spool import pending_entries, spool_folder

    folder = spool_folder(context.project_path, settings.mlflow)
    spooled = pending_entries(folder)
    lines = [f"  MLflow spool: {len(spooled)} run(s) in {folder} wait for `kedro observability replay`"] if spooled else []
    lines += _warm_helpers(settings.mlflow.warm_helper_seconds)
    uri = settings.mlflow.tracking_uri or default_tracking_uri(context.project_path)
    if not uri.startswith(("http://", "https://")):
        return [f"  MLflow: the local store {uri}; browse it with `mlflow ui --backend-store-uri {uri}`", *lines]
    try:
        check_reachable(uri, settings.mlflow.request_timeout_seconds)
    except MlflowTrackingError as error:
        return [f"  MLflow: {error}", *lines]
    return [f"  MLflow: {uri} answers; open it in a browser to see the runs", *lines]


def _warm_helpers(warm_seconds: int) -> list[str]:
    from kedro_observability.tracking.warm import warm_pids

    pids = warm_pids()
    running = f"{len(pids)} of yours running (pid {', '.join(map(str, pids))}; `kedro observability stop-helpers` ends them)" if pids else "none of yours running"
    if warm_seconds:
        return [f"  MLflow helper: kept warm {warm_seconds} s after each run (mlflow.warm_helper_seconds); {running}"]
    return [f"  MLflow helper: ends with each run (mlflow.warm_helper_seconds: 0); warm helpers: {running}"] if pids else []


__all__ = ["report"]
