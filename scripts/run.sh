#!/usr/bin/env bash
# The README's main command: install what is missing, build, and start the doppel studio
# (JSON API + workers, and the web studio when web/dist is built) on http://127.0.0.1:7860
# with its data in data/ (gitignored). Without --model the tiny built-in model is used, so it
# works with no downloads; extra arguments go to `doppel serve`
# (e.g. --model path/to/model.safetensors --port 8080).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh" >&2
web=()
[ ! -f "$root/web/dist/index.html" ] || web=(--web "$root/web/dist")
exec "$root/build/src/app/doppel" serve --data "$root/data" "${web[@]}" "$@"
