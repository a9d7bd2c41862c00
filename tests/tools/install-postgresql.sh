#!/usr/bin/env bash
# Install Debian 12's PostgreSQL 15 server (initdb, pg_ctl, postgres) for the team profile's
# tests (tests/test_team_profile.py), which run a throw-away cluster of their own on
# 127.0.0.1 in a temporary folder (tests/team_servers.py) and stop it after.
#
# No cluster is created and no service started: /etc/postgresql-common/createcluster.conf
# says create_main_cluster = false before the package is installed (a `main` cluster that
# the package would start is of no use to the tests and would take port 5432).
#
# Idempotent: does nothing when /usr/lib/postgresql/<major>/bin has initdb and pg_ctl.
#
# Usage: bash tests/tools/install-postgresql.sh      (prints the server's version)
set -euo pipefail

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"

find_initdb() {
    ls -1d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r | while read -r bin; do
        if [[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]]; then echo "$bin/initdb"; break; fi
    done
}

initdb="$(find_initdb)"
if [[ -z "$initdb" ]]; then
    $SUDO mkdir -p /etc/postgresql-common
    if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
        echo "create_main_cluster = false" | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
    initdb="$(find_initdb)"
fi
[[ -n "$initdb" ]] || { echo "install-postgresql.sh: no initdb after installing postgresql-15" >&2; exit 1; }
echo "PostgreSQL server: $("$initdb" --version)"
