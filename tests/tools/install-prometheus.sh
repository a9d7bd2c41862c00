#!/usr/bin/env bash
# Install Prometheus 3.x (prometheus, promtool) and Alertmanager (alertmanager, amtool) into
# <repo>/.tools/, for the tests that run them (tests/test_prometheus_config.py,
# tests/test_metrics_in_prometheus.py, tests/test_alertmanager.py, ...).
#
# docker-compose.yml pins prom/prometheus v3.x; Debian 12's own prometheus is 2.42 and its
# alertmanager 0.25, whose semantics differ (range selectors, `le` normalisation, config
# fields). So the packages come from Debian sid (prometheus/promtool 3.5, alertmanager 0.33),
# fetched and unpacked by fetch-debian-package.sh without touching the system's apt.
# Debian's Go binaries link only against libc and run on Debian 12.
#
# Debian builds Alertmanager without its notification templates compiled in: the binary reads
# them from /usr/share/prometheus/alertmanager/ and refuses any config without them, so the
# package's two templates are installed there too (root or sudo).
#
# Idempotent: does nothing when .tools/ already holds a Prometheus 3.x and an Alertmanager.
# DEBIAN_SUITE=<suite> picks another suite (it must have Prometheus 3.x).
#
# Usage: bash tests/tools/install-prometheus.sh      (prints the installed versions)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$REPO/.tools}"
SUITE="${DEBIAN_SUITE:-sid}"
TEMPLATES=/usr/share/prometheus/alertmanager
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO=sudo

versions() {
    "$TOOLS/prometheus" --version 2>/dev/null | head -n 1
    "$TOOLS/promtool" --version 2>/dev/null | head -n 1
    "$TOOLS/alertmanager" --version 2>/dev/null | head -n 1
    "$TOOLS/amtool" --version 2>/dev/null | head -n 1
}

installed() {
    local lines
    lines="$(versions)" || return 1
    grep -Eq '^prometheus, version 3\.' <<<"$lines" \
        && grep -Eq '^promtool, version 3\.' <<<"$lines" \
        && grep -Eq '^alertmanager, version 0\.' <<<"$lines" \
        && grep -Eq '^amtool, version 0\.' <<<"$lines" \
        && [[ -f "$TEMPLATES/default.tmpl" && -f "$TEMPLATES/email.tmpl" ]]
}

if installed; then
    echo "Prometheus and Alertmanager already installed in $TOOLS:"
    versions
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$HERE/fetch-debian-package.sh" "$SUITE" "$work" prometheus promtool prometheus-alertmanager

mkdir -p "$TOOLS"
# binary in the package -> name in .tools/ (Debian calls the Alertmanager prometheus-alertmanager).
for pair in \
    prometheus/usr/bin/prometheus:prometheus \
    promtool/usr/bin/promtool:promtool \
    prometheus-alertmanager/usr/bin/prometheus-alertmanager:alertmanager \
    prometheus-alertmanager/usr/bin/amtool:amtool; do
    source="$work/${pair%%:*}"
    target="$TOOLS/${pair##*:}"
    [[ -f "$source" ]] || { echo "error: ${pair%%:*} is not in the $SUITE packages" >&2; exit 1; }
    install -m 0755 "$source" "$target.tmp"
    mv -f "$target.tmp" "$target"
done

$SUDO install -D -m 0644 -t "$TEMPLATES" \
    "$work/prometheus-alertmanager/usr/share/prometheus/alertmanager/default.tmpl" \
    "$work/prometheus-alertmanager/usr/share/prometheus/alertmanager/email.tmpl"

installed || { echo "error: the binaries in $TOOLS do not run as Prometheus 3.x / Alertmanager:" >&2; versions >&2; exit 1; }
echo "Installed into $TOOLS:"
versions
