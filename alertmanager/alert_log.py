"""alert-log: the stack's default notification receiver, needing no account anywhere.

Alertmanager's webhook receivers POST their notifications here (alertmanager.yml). Each one
is printed to stdout, one line per alert (`docker compose logs -f alert-log`), and the most
recent ones are kept in memory and shown on a page (http://127.0.0.1:9099 by default) and as
JSON (/api/notifications). Nothing is stored on disk: a restart starts an empty list, while
Alertmanager itself still knows every active alert (http://127.0.0.1:9093).

Standard library only, so it runs on any Python 3.9+ image (the stack uses the MLflow image it
already pulls). Usage: python alert_log.py [--listen HOST:PORT] [--keep N]
"""

from __future__ import annotations

import argparse
import html
import json
import signal
import sys
import threading
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Bigger bodies are not Alertmanager notifications; refuse them instead of buffering them.
MAX_BODY_BYTES = 5 * 1024 * 1024


class NotificationLog:
    """The last ``keep`` notifications, shared by the request threads."""

    def __init__(self, keep: int) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, route: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record one webhook payload (Alertmanager's version 4 format) and return the record."""
        record = {
            "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "route": route,
            "receiver": payload.get("receiver", ""),
            "status": payload.get("status", ""),
            "group_labels": payload.get("groupLabels") or {},
            "alerts": [
                {
                    "status": alert.get("status", ""),
                    "labels": alert.get("labels") or {},
                    "annotations": alert.get("annotations") or {},
                    "starts_at": alert.get("startsAt", ""),
                    "ends_at": alert.get("endsAt", ""),
                }
                for alert in payload.get("alerts") or []
            ],
        }
        with self._lock:
            self._items.append(record)
        return record

    def items(self) -> list[dict[str, Any]]:
        """Oldest first."""
        with self._lock:
            return list(self._items)


def log_lines(record: dict[str, Any]) -> list[str]:
    """What a person reads in `docker compose logs alert-log`: one line per alert."""
    lines = []
    for alert in record["alerts"]:
        labels, annotations = alert["labels"], alert["annotations"]
        where = " ".join(f"{key}={labels[key]}" for key in ("project", "pipeline", "node", "dataset") if key in labels)
        line = (
            f"{record['received_at']} [{labels.get('severity', '?')}] {alert['status'].upper()} "
            f"{labels.get('alertname', '?')} {where}: {annotations.get('summary', '')}"
        )
        if alert["status"] == "firing" and annotations.get("runbook"):
            line += f"\n    runbook: {annotations['runbook']}"
        lines.append(line)
    return lines


def render_page(records: list[dict[str, Any]]) -> str:
    """The notifications, newest first, as a self-refreshing HTML page."""
    rows = []
    for record in reversed(records):
        for alert in record["alerts"]:
            labels, annotations = alert["labels"], alert["annotations"]
            other = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
            rows.append(
                "<tr class='{status}'><td>{time}</td><td>{status}</td><td>{severity}</td><td>{name}</td>"
                "<td>{labels}</td><td><b>{summary}</b><br>{description}<br><i>Runbook:</i> {runbook}</td></tr>".format(
                    time=html.escape(record["received_at"]),
                    status=html.escape(alert["status"]),
                    severity=html.escape(labels.get("severity", "")),
                    name=html.escape(labels.get("alertname", "")),
                    labels=html.escape(other),
                    summary=html.escape(annotations.get("summary", "")),
                    description=html.escape(annotations.get("description", "")),
                    runbook=html.escape(annotations.get("runbook", "")),
                )
            )
    body = "\n".join(rows) or "<tr><td colspan='6'>No notification yet. Active alerts: Alertmanager, port 9093.</td></tr>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>Kedro alert notifications</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: .4em; vertical-align: top; text-align: left; }}
tr.firing td:nth-child(2) {{ color: #b00; font-weight: bold; }} tr.resolved td:nth-child(2) {{ color: #070; }}
</style></head><body>
<h1>Kedro alert notifications</h1>
<p>What Alertmanager sent to the default receivers, newest first (kept in memory, last {len(records)}).
Silence or inspect alerts in Alertmanager; route them to e-mail or Slack in alertmanager/alertmanager.yml.</p>
<table><tr><th>received (UTC)</th><th>status</th><th>severity</th><th>alert</th><th>labels</th><th>text</th></tr>
{body}
</table></body></html>
"""


def make_handler(log: NotificationLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self._reply(400, "text/plain", "a Content-Length is needed\n")
                return
            if length > MAX_BODY_BYTES:
                self._reply(413, "text/plain", "notification too large\n")
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
            except ValueError as error:
                self._reply(400, "text/plain", f"expected Alertmanager's webhook JSON: {error}\n")
                return
            record = log.add(self.path.strip("/") or "default", payload)
            for line in log_lines(record):
                print(line, flush=True)
            self._reply(200, "text/plain", "ok\n")

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/-/healthy", "/-/ready"):
                self._reply(200, "text/plain", "ok\n")
            elif self.path == "/api/notifications":
                self._reply(200, "application/json", json.dumps(log.items()))
            elif self.path in ("/", "/index.html"):
                self._reply(200, "text/html; charset=utf-8", render_page(log.items()))
            else:
                self._reply(404, "text/plain", "not found: try / or /api/notifications\n")

        def _reply(self, status: int, content_type: str, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the notifications are the log; health checks every 10 s are noise

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:9099", help="HOST:PORT to listen on (default %(default)s)")
    parser.add_argument("--keep", type=int, default=500, help="notifications kept for the page (default %(default)s)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(NotificationLog(args.keep)))
    # docker stop sends SIGTERM: leave serve_forever() and exit 0 instead of being killed.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"alert-log listening on {args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
