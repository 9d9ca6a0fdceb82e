#!/usr/bin/env bash
# Installs the Node harness of tests/arsenal (Scality Arsenal 8.5.16 from npm, with
# local stand-ins for its GitHub-only dependencies) exactly as package-lock.json
# pins it. Idempotent and quiet when already installed: npm ci runs only when
# node_modules is missing or was installed from a different lock file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/tests/arsenal"
stamp="$dir/node_modules/.zenkoctl-lock.sha256"

for tool in node npm sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "scripts/deps/arsenal.sh: '$tool' is required (Node.js >= 20 with npm)" >&2
        exit 1
    fi
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "scripts/deps/arsenal.sh: Node.js >= 20 required, found $(node --version)" >&2
    exit 1
fi

want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && [ -f "$dir/node_modules/@scality/arsenal/package.json" ]; then
    exit 0
fi

echo "scripts/deps/arsenal.sh: installing tests/arsenal node_modules (npm ci)" >&2
start=$(date +%s)
(
    cd "$dir"
    # --omit=optional skips ioctl (a native addon Arsenal only uses to set
    # FS_DIRSYNC_FL; without it the reference logs a warning and goes on).
    npm ci --omit=optional --no-audit --no-fund --loglevel=error >&2
)
echo "$want" > "$stamp"
echo "scripts/deps/arsenal.sh: done in $(( $(date +%s) - start )) s" >&2
