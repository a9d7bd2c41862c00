#!/usr/bin/env python3
"""Run a command with secrets read from files: every ``NAME__FILE=/path`` in the environment
becomes ``NAME=<the file's content>`` (one trailing newline dropped), then the command replaces
this process (exec: same PID, signals go straight to it).

The entrypoint of the kedro image (../Dockerfile) and of the stack's mlflow service
(../../docker-compose.yml): the passwords the `credentials` service generates reach them as
files on a read-only volume, never in `docker inspect` or the compose file. The same
``__FILE`` convention as Grafana's image (GF_SECURITY_ADMIN_PASSWORD__FILE).

    MLFLOW_TRACKING_PASSWORD__FILE=/run/secrets/mlflow_tracking_password with_secrets.py kedro run

Refused, with exit status 2 and a message naming the variable: no command, a NAME that is
also set directly (which one would win?), a file that cannot be read, or an empty one.
"""

from __future__ import annotations

import os
import sys

SUFFIX = "__FILE"
HINT = "with kedro-observability-stack, `docker compose up` runs the credentials service that writes it"


def die(message: str) -> None:
    print(f"with_secrets: error: {message}", file=sys.stderr)
    sys.exit(2)


def resolved_environment(environment: dict[str, str]) -> dict[str, str]:
    result = dict(environment)
    for name, path in environment.items():
        if not name.endswith(SUFFIX) or name == SUFFIX:
            continue
        target = name[: -len(SUFFIX)]
        if environment.get(target):
            die(f"both {target} and {name} are set: set only one")
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read()
        except OSError as error:
            die(f"{name}: cannot read {path} ({error.strerror or error}); {HINT}")
        value = value.removesuffix("\n")
        if not value:
            die(f"{name}: {path} is empty; {HINT}")
        result[target] = value
        del result[name]
    return result


def main(argv: list[str]) -> None:
    if not argv:
        die("no command given; usage: with_secrets.py COMMAND [ARGUMENT...]")
    environment = resolved_environment(dict(os.environ))
    try:
        os.execvpe(argv[0], argv, environment)
    except OSError as error:
        die(f"cannot run {argv[0]}: {error.strerror or error}")


if __name__ == "__main__":
    main(sys.argv[1:])
