#!/usr/bin/env bash
# Installs what is missing, then configures and builds doppel into ./build and the web
# studio into ./web/dist.
#   scripts/build.sh [extra cmake -D options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install.sh"
jobs="${DOPPEL_BUILD_JOBS:-$(nproc)}"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDOPPEL_WERROR=ON "$@"
cmake --build "$root/build" -j "$jobs"
npm --prefix "$root/web" run build --silent >/dev/null
