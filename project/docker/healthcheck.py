#!/usr/bin/env python3
"""Healthcheck of the kedro service (../../docker-compose.yml).

Healthy while run-loop.sh is alive and cycling: its heartbeat file (touched before and
after every iteration) is younger than KEDRO_RUN_INTERVAL plus KEDRO_HEALTH_GRACE seconds
(default 1800: the longest a single data generation plus pipeline run may take).
"""

from __future__ import annotations

import os
import sys
import time

HEARTBEAT = os.environ.get("KEDRO_HEARTBEAT_FILE", "/tmp/kedro-run-loop.heartbeat")


def main() -> int:
    limit = int(os.environ.get("KEDRO_RUN_INTERVAL", "60")) + int(os.environ.get("KEDRO_HEALTH_GRACE", "1800"))
    try:
        age = time.time() - os.path.getmtime(HEARTBEAT)
    except OSError:
        print(f"no heartbeat at {HEARTBEAT}: run-loop.sh is not running")
        return 1
    if age > limit:
        print(f"last heartbeat {age:.0f} s ago (limit {limit} s): the loop is stuck")
        return 1
    print(f"last heartbeat {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
