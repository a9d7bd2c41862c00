"""Where the tests find prometheus, promtool, alertmanager and amtool, and which versions they accept.

Order: the binary's environment variable ($PROMETHEUS, $PROMTOOL, $ALERTMANAGER, $AMTOOL),
then <repo>/.tools/ (tests/tools/install-prometheus.sh puts Debian sid's packages there),
then PATH. docker-compose.yml pins Prometheus 3.x, so a Prometheus 2.x (Debian 12's own
package, still on many PATHs) is refused rather than used: its range selectors and `le`
labels behave differently. A missing or too old binary FAILS the test, never skips it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools"
INSTALL_HINT = "run `make system-deps` (or bash tests/tools/install-prometheus.sh), which puts Debian sid's packages into .tools/"

# binary -> (environment variable, lowest accepted version)
REQUIREMENTS: dict[str, tuple[str, tuple[int, int]]] = {
    "prometheus": ("PROMETHEUS", (3, 0)),
    "promtool": ("PROMTOOL", (3, 0)),
    "alertmanager": ("ALERTMANAGER", (0, 28)),
    "amtool": ("AMTOOL", (0, 28)),
}


def version_of(path: str) -> tuple[int, int, int] | None:
    """The version `path --version` prints (Prometheus tools all print "name, version X.Y.Z ...")."""
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", result.stdout + result.stderr)
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


@functools.cache
def find(name: str) -> tuple[str, tuple[int, int, int]]:
    """(path, version) of the first acceptable ``name``; fails the calling test when there is none."""
    variable, lowest = REQUIREMENTS[name]
    candidates = [os.environ.get(variable), str(TOOLS / name), shutil.which(name)]
    refused = []
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        version = version_of(candidate)
        if version is not None and version[:2] >= lowest:
            return candidate, version
        shown = ".".join(map(str, version)) if version else "unknown version"
        refused.append(f"{candidate} ({shown})")
    wanted = ".".join(map(str, lowest))
    found = f"; refused, older than {wanted}: {', '.join(refused)}" if refused else ""
    pytest.fail(
        f"No {name} >= {wanted} at ${variable}, {TOOLS / name} or on PATH{found}. To install it, {INSTALL_HINT}.",
        pytrace=False,
    )


# Debian builds Alertmanager without its embedded templates: the binary reads them from the
# package's data folder, an absolute path compiled in, and refuses every config without them
# ("failed to parse templates: open .../default.tmpl"). amtool does not need them.
DEBIAN_ALERTMANAGER_DATA = Path("/usr/share/prometheus/alertmanager")
DEBIAN_ALERTMANAGER_TEMPLATES = ("default.tmpl", "email.tmpl")


def is_debian_build(path: str) -> bool:
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return "debian" in (result.stdout + result.stderr).lower()


def path(name: str) -> str:
    """The path of an acceptable ``name`` binary (see :func:`find`); for Debian's alertmanager,
    only once the package's templates are where it reads them."""
    binary = find(name)[0]
    if name == "alertmanager" and is_debian_build(binary):
        missing = [file for file in DEBIAN_ALERTMANAGER_TEMPLATES if not (DEBIAN_ALERTMANAGER_DATA / file).is_file()]
        if missing:
            pytest.fail(
                f"{binary} is Debian's build, which reads its templates from {DEBIAN_ALERTMANAGER_DATA}/ and "
                f"cannot start without {', '.join(missing)}. They are in Debian's prometheus-alertmanager "
                f"package; if tests/tools/install-prometheus.sh did not put them there, copy them from it: "
                f"bash tests/tools/fetch-debian-package.sh sid /tmp/am prometheus-alertmanager && sudo install "
                f"-D -m 0644 -t {DEBIAN_ALERTMANAGER_DATA} /tmp/am/prometheus-alertmanager{DEBIAN_ALERTMANAGER_DATA}/"
                f"{{default,email}}.tmpl (or point $ALERTMANAGER at an upstream build, which embeds them).",
                pytrace=False,
            )
    return binary
