#!/usr/bin/env bash
# The frontend gate of `make test`: type-check, unit tests, and a fresh build that must equal the
# committed bundle in static/voicechat (so `make run` serves exactly what the source says).
set -euo pipefail
cd "$(dirname "$0")/../frontend"

if ! command -v npm >/dev/null; then
  if [ -n "${CI:-}" ]; then echo "npm is required on CI for the frontend check" >&2; exit 1; fi
  echo "--- npm not found: skipped the frontend check (install Node.js 20+ to run it)"; exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc --noEmit
npx vitest run
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
VOICECHAT_OUT_DIR="$out" npx vite build --logLevel warn
for file in app.js app.css pcm-worklet.js; do
  if ! cmp -s "$out/$file" "../static/voicechat/$file"; then
    echo "the committed bundle differs from a fresh build (static/voicechat/$file); run make frontend" >&2
    exit 1
  fi
done
echo "--- frontend: types, tests and bundle are in step"
