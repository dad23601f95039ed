#!/usr/bin/env bash
# The README's test command: install what is missing, build, run the whole suite.
# Golden and photo data are read from ../shared (override: DOPPEL_SHARED_DIR);
# tests that need them report "skipped" when the folder is absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$(date +%s)
"$root/scripts/build.sh"
built=$(date +%s)
echo "doppel: build took $((built - start)) s"
cd "$root/build"
status=0
ctest --output-on-failure -j "$(nproc)" --timeout 600 || status=$?
echo "doppel: tests took $(($(date +%s) - built)) s"
exit $status
