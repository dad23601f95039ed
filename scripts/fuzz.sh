#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs one of them.
#   scripts/fuzz.sh safetensors_fuzzer 300   # target, seconds
#   scripts/fuzz.sh image_fuzzer 300
#   scripts/fuzz.sh prompt_parser_fuzzer 300
#   scripts/fuzz.sh textual_inversion_fuzzer 300
#   scripts/fuzz.sh request_head_fuzzer 300    # the server's own HTTP head scanning
#   scripts/fuzz.sh json_body_fuzzer 300       # JSON body, Origin/Host and password checks
# New crashing inputs land in fuzz/artifacts/; copy them into
# tests/<layer>/data/<format>_fuzz_regressions/ once fixed so the test suite replays them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/fuzz.sh safetensors_fuzzer|image_fuzzer|prompt_parser_fuzzer|textual_inversion_fuzzer|request_head_fuzzer|json_body_fuzzer [seconds]}"
seconds="${2:-300}"
"$root/scripts/install.sh" >/dev/null
cmake -S "$root" -B "$root/build-fuzz" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DDOPPEL_BUILD_FUZZ=ON -DDOPPEL_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build-fuzz" --target "$target"
seeds="$root/fuzz/seeds/${target%_fuzzer}"
corpus="$root/build-fuzz/corpus/$target"
mkdir -p "$corpus" "$root/fuzz/artifacts"
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
  "$root/build-fuzz/fuzz/$target" "$corpus" "$seeds" -max_total_time="$seconds" \
  -rss_limit_mb=4096 -max_len=65536 -artifact_prefix="$root/fuzz/artifacts/" -print_final_stats=1
