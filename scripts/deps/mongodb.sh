#!/usr/bin/env bash
# Installs the MongoDB-wire-compatible stand-in the MongoDB backend's tests run against:
# SecantusDB (`secantusd-py`, a single-node replica set on WiredTiger, GPL-2.0, run as a separate
# process) in a venv under .tools/secantus (gitignored). Pinned: there is no final release and pip
# would otherwise pick the newest pre-release. Idempotent and quiet when already installed.
# Not needed when the tests run against a real MongoDB (MONGODB_URI=... scripts/test.sh).
set -euo pipefail

version="0.7.0b3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.tools/secantus"
stamp="$venv/.zenkoctl-secantus-version"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -x "$venv/bin/secantusd-py" ]; then
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "scripts/deps/mongodb.sh: python3 (>= 3.10, with the venv module) is required" >&2
    exit 1
fi

echo "scripts/deps/mongodb.sh: installing SecantusDB==$version into .tools/secantus" >&2
start=$(date +%s)
rm -rf "$venv"
mkdir -p "$root/.tools"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==$version" >&2
"$venv/bin/secantusd-py" --help >/dev/null
echo "$version" > "$stamp"
echo "scripts/deps/mongodb.sh: done in $(( $(date +%s) - start )) s" >&2
