#!/usr/bin/env bash
# The frontend gate of `make test`: types, the Vitest suite, and a fresh build that must equal the
# committed bundle in static/voicechat byte for byte (so `make run` serves exactly what the source says).
set -euo pipefail
cd "$(dirname "$0")/../frontend"

if ! command -v npm >/dev/null; then
  if [ -n "${CI:-}" ]; then echo "npm is required on CI for the frontend check" >&2; exit 1; fi
  echo "--- npm not found: skipped the frontend check (install Node.js 20.19+ to run it)"; exit 0
fi
# npm ci only when node_modules is missing or older than the lock file (npm writes .package-lock.json).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc --noEmit
npx vitest run

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
VOICECHAT_OUT_DIR="$out" npx vite build --logLevel warn
# site.css belongs to the Django templates, not to the build.
if ! diff -rq --exclude=site.css "$out" ../static/voicechat; then
  echo "the committed bundle differs from a fresh build; run make frontend" >&2
  exit 1
fi
echo "--- frontend: types, tests and the committed bundle are in step"
