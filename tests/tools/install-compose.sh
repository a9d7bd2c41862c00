#!/usr/bin/env bash
# Install a real Docker Compose v2 binary (`docker-compose`) into <repo>/.tools/, for the
# tests that validate docker-compose.yml (tests/test_compose.py). `docker-compose config`
# needs no Docker engine, so this works in CI and on machines without Docker.
#
# Source: Debian 13 (trixie)'s `docker-compose` package (Compose v2.2x; Debian 12's own
# package is the old Python v1), fetched and unpacked by fetch-debian-package.sh (a
# throw-away apt state, so the system's apt is left exactly as it was, then `dpkg -x`).
# Only the static Go binary is kept.
#
# Idempotent: does nothing when .tools/docker-compose already runs as Compose v2.
#
# Needs what fetch-debian-package.sh needs: Debian's apt, the trixie keys of
# debian-archive-keyring (Debian 12.x ships them) and a Debian mirror (DEBIAN_MIRROR).
#
# Usage: bash tests/tools/install-compose.sh      (prints the installed version)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$REPO/.tools}"
TARGET="$TOOLS/docker-compose"
SUITE="${DEBIAN_SUITE:-trixie}"

is_compose_v2() {
    "$1" version --short 2>/dev/null | grep -Eq '^v?2\.'
}

if [[ -x "$TARGET" ]] && is_compose_v2 "$TARGET"; then
    echo "docker-compose already installed: $TARGET ($("$TARGET" version --short))"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$HERE/fetch-debian-package.sh" "$SUITE" "$work" docker-compose >/dev/null
root="$work/docker-compose"

binary=""
for candidate in "$root/usr/libexec/docker/cli-plugins/docker-compose" "$root/usr/bin/docker-compose"; do
    if [[ -f "$candidate" && ! -L "$candidate" ]]; then binary="$candidate"; break; fi
done
[[ -n "$binary" ]] || binary="$(find "$root" -type f -name docker-compose | head -n 1)"
[[ -n "$binary" ]] || { echo "error: no docker-compose binary in Debian $SUITE's docker-compose package" >&2; exit 1; }

mkdir -p "$TOOLS"
install -m 0755 "$binary" "$TARGET.tmp"
mv -f "$TARGET.tmp" "$TARGET"
is_compose_v2 "$TARGET" || { echo "error: $TARGET is not Compose v2: $("$TARGET" version 2>&1)" >&2; exit 1; }
echo "Installed $TARGET: $("$TARGET" version)"
