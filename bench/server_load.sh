#!/usr/bin/env bash
# Load figures of the API (not a test): starts `doppel serve` on a scratch data folder with the
# tiny model, makes one shoot of 8 images, then runs wrk (Debian package `wrk`) against the
# image listing and the PNG download on loopback and prints requests/s, p99 latency and errors.
# Usage: bench/server_load.sh [build dir] [seconds per route]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
seconds="${2:-10}"
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)" >&2; exit 1; }
data="$(mktemp -d /tmp/doppel-load-XXXXXX)"
port=7899
"$build/src/app/doppel" serve --data "$data" --port "$port" --workers 1 --no-face-check \
  >"$data/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "serving on" "$data/serve.log" && break; sleep 0.1; done
api="http://127.0.0.1:$port"
token=$(grep -o 'token=[0-9a-f]*' "$data/serve.log" | head -1 | cut -d= -f2)
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -sf -c "$data/cookies" -X POST "$api/api/setup" -H "Content-Type: application/json" \
  -d "{\"token\":\"$token\",\"email\":\"load@example.com\",\"password\":\"load test password\"}" >/dev/null
csrf=$(awk '/doppel_csrf/ {print $7}' "$data/cookies")
bearer=$(curl -sf -b "$data/cookies" -H "X-CSRF-Token: $csrf" -X POST "$api/api/tokens" \
  -d '{"name":"load"}' | json '["token"]')
auth="Authorization: Bearer $bearer"
subject=$(curl -sf -H "$auth" -X POST "$api/api/subjects" -d '{"name":"Load"}' | json '["id"]')
shoot=$(curl -sf -H "$auth" -X POST "$api/api/shoots" \
  -d "{\"subject_id\":\"$subject\",\"styles\":[\"anime\",\"hanfu\"],\"count\":4,\"seed\":1}" | json '["id"]')
for _ in $(seq 600); do
  done_count=$(curl -sf -H "$auth" "$api/api/shoots/$shoot" | json '["images_done"]')
  [ "$done_count" -ge 8 ] && break
  sleep 0.2
done
image=$(curl -sf -H "$auth" "$api/api/shoots/$shoot/images" | json '["images"][0]["id"]')
for route in "/api/shoots/$shoot/images" "/api/images/$image/png" "/api/subjects"; do
  echo "== GET $route"
  wrk -t2 -c16 -d"${seconds}s" --latency -H "$auth" "$api$route" |
    grep -E "Requests/sec|99%|Non-2xx|Socket errors|requests in"
done
