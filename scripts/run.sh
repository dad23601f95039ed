#!/usr/bin/env bash
# The README's main command: install what is missing, build, and start doppel.
# Until the studio server lands this generates a portrait with a tiny model
# built in code (no downloads); pass a real checkpoint to use your own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh" >&2
exec "$root/build/src/app/doppel" generate --tiny-demo --prompt "a portrait photo of a person" \
  --out "$root/build/demo.png" "$@"
