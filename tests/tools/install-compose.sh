#!/usr/bin/env bash
# Install a real Docker Compose v2 binary (`docker-compose`) into <repo>/.tools/, for the
# tests that validate docker-compose.yml (tests/test_compose.py). `docker-compose config`
# needs no Docker engine, so this works in CI and on machines without Docker.
#
# Source: Debian 13 (trixie)'s `docker-compose` package (Compose v2.2x; Debian 12's own
# package is the old Python v1). The .deb is fetched with apt from the trixie suite using a
# throw-away sources file and apt state in a temporary directory, so the system's apt
# sources, lists and installed packages are left exactly as they were, and unpacked with
# `dpkg -x`. Only the static Go binary is kept.
#
# Idempotent: does nothing when .tools/docker-compose already runs as Compose v2.
#
# Needs: Debian (apt-get, dpkg-deb) with the debian-archive-keyring trixie keys (Debian
# 12.x ships them), and network access to a Debian mirror. The mirror is the one this
# system's apt already uses for Debian; set DEBIAN_MIRROR=<url> to choose another.
#
# Usage: bash tests/tools/install-compose.sh      (prints the installed version)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$REPO/.tools}"
TARGET="$TOOLS/docker-compose"
SUITE="${DEBIAN_SUITE:-trixie}"
KEYRING="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"

is_compose_v2() {
    "$1" version --short 2>/dev/null | grep -Eq '^v?2\.'
}

if [[ -x "$TARGET" ]] && is_compose_v2 "$TARGET"; then
    echo "docker-compose already installed: $TARGET ($("$TARGET" version --short))"
    exit 0
fi

for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found: this script needs Debian's apt" >&2; exit 1; }
done
[[ -r "$KEYRING" ]] || { echo "error: $KEYRING missing: apt-get install debian-archive-keyring" >&2; exit 1; }

# The Debian mirror this system already uses (the first non-security one), unless given.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(
        {
            grep -hs '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n' || true
            grep -hs '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                | sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}' || true
        } | grep -E '^https?://' | grep -v security | grep -E '/debian/?$' | head -n 1
    )" || true
fi
[[ -n "$mirror" ]] || { echo "error: no Debian mirror found in the apt sources: set DEBIAN_MIRROR" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/download" "$work/root"
echo "deb [signed-by=$KEYRING] $mirror $SUITE main" > "$work/sources.list"

# Every apt path that would otherwise point at the system's state goes to $work.
apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::State=$work"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$work/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "Debug::NoLocking=1"
)

echo "Fetching the docker-compose package list of Debian $SUITE from $mirror ..."
apt-get "${apt_opts[@]}" -q update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; exit 1; }
(cd "$work/download" && apt-get "${apt_opts[@]}" -q download docker-compose) >"$work/download.log" 2>&1 \
    || { cat "$work/download.log" >&2; exit 1; }
deb="$(ls "$work"/download/docker-compose_*.deb)"
echo "Unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/root"

binary=""
for candidate in "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$work/root/usr/bin/docker-compose"; do
    if [[ -f "$candidate" && ! -L "$candidate" ]]; then binary="$candidate"; break; fi
done
[[ -n "$binary" ]] || binary="$(find "$work/root" -type f -name docker-compose | head -n 1)"
[[ -n "$binary" ]] || { echo "error: no docker-compose binary in $deb" >&2; exit 1; }

mkdir -p "$TOOLS"
install -m 0755 "$binary" "$TARGET.tmp"
mv -f "$TARGET.tmp" "$TARGET"
is_compose_v2 "$TARGET" || { echo "error: $TARGET is not Compose v2: $("$TARGET" version 2>&1)" >&2; exit 1; }
echo "Installed $TARGET: $("$TARGET" version)"
