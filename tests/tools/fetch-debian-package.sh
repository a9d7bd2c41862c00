#!/usr/bin/env bash
# Fetch Debian packages of another suite and unpack them, without touching the system's apt.
#
#   tests/tools/fetch-debian-package.sh SUITE DEST PACKAGE...
#
# For every PACKAGE, the .deb of Debian SUITE (trixie, sid, ...) is downloaded with apt-get
# using a throw-away sources file and apt state in a temporary directory, so the system's
# apt sources, lists and installed packages stay exactly as they were, and unpacked with
# `dpkg -x` into DEST/PACKAGE/ (replacing what was there). Nothing is installed: the callers
# (install-compose.sh, install-prometheus.sh) copy the static Go binaries they need out of it.
# Prints one line "PACKAGE VERSION" per package on stdout; progress goes to stderr.
#
# Needs: Debian (apt-get, dpkg, dpkg-deb) with the debian-archive-keyring keys of SUITE
# (Debian 12.x ships trixie's; sid is signed with the same keys), and network access to a
# Debian mirror. The mirror is the one this system's apt already uses for Debian; set
# DEBIAN_MIRROR=<url> to choose another, DEBIAN_KEYRING=<file> for another keyring.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 SUITE DEST PACKAGE..." >&2
    exit 2
fi
SUITE="$1"
DEST="$2"
shift 2
KEYRING="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"

for tool in apt-get dpkg dpkg-deb; do
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
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/download"
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

echo "Fetching the package lists of Debian $SUITE from $mirror ..." >&2
apt-get "${apt_opts[@]}" -q update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; exit 1; }
(cd "$work/download" && apt-get "${apt_opts[@]}" -q download "$@") >"$work/download.log" 2>&1 \
    || { cat "$work/download.log" >&2; exit 1; }

mkdir -p "$DEST"
for package in "$@"; do
    deb="$(ls "$work"/download/"${package}"_*.deb)"
    version="$(dpkg-deb --field "$deb" Version)"
    echo "Unpacking $(basename "$deb") into $DEST/$package" >&2
    rm -rf "${DEST:?}/$package"
    dpkg -x "$deb" "$DEST/$package"
    echo "$package $version"
done
