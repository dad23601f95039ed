#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs one of them.
#   scripts/fuzz.sh safetensors_fuzzer 300   # target, seconds
#   scripts/fuzz.sh image_fuzzer 300
#   scripts/fuzz.sh prompt_parser_fuzzer 300
#   scripts/fuzz.sh textual_inversion_fuzzer 300
#   scripts/fuzz.sh request_head_fuzzer 300    # the server's own HTTP head scanning
#   scripts/fuzz.sh json_body_fuzzer 300       # JSON body, Origin/Host and password checks
#   scripts/fuzz.sh http_request_fuzzer 300    # httplib's request and multipart parsing
# New crashing inputs land in fuzz/artifacts/; copy them into
# tests/<layer>/data/<format>_fuzz_regressions/ once fixed so the test suite replays them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/fuzz.sh safetensors_fuzzer|image_fuzzer|prompt_parser_fuzzer|textual_inversion_fuzzer|request_head_fuzzer|json_body_fuzzer|http_request_fuzzer [seconds]}"
seconds="${2:-300}"
"$root/scripts/install.sh" >/dev/null

# cpp-httplib's source, exactly the installed Debian version with Debian's patches, for the
# fuzz build only (Debian ships it as a shared library, which the fuzzer cannot instrument).
# apt checks the download against the signed index, so dpkg-source need not.
httplib_source() {
  local dir="$root/build-fuzz/third_party" version
  version="$(dpkg-query -W -f='${Version}' libcpp-httplib-dev)"
  if [ ! -f "$dir/httplib-$version/httplib.h" ]; then
    mkdir -p "$dir/apt/lists/partial" "$dir/download"
    echo "deb-src http://deb.debian.org/debian bookworm main" > "$dir/apt/sources.list"
    local apt_options=(-o "Dir::Etc::SourceList=$dir/apt/sources.list"
      -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/apt/lists")
    apt-get "${apt_options[@]}" update >/dev/null
    (cd "$dir/download" && apt-get "${apt_options[@]}" source --download-only \
      "cpp-httplib=$version" >/dev/null 2>&1)
    rm -rf "$dir/httplib-$version"
    dpkg-source --no-check -x "$dir/download"/cpp-httplib_*.dsc "$dir/httplib-$version" >/dev/null
  fi
  echo "$dir/httplib-$version"
}
extra=()
if [ "$target" = http_request_fuzzer ]; then
  extra=(-DDOPPEL_HTTPLIB_SOURCE_DIR="$(httplib_source)")
fi
cmake -S "$root" -B "$root/build-fuzz" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DDOPPEL_BUILD_FUZZ=ON -DDOPPEL_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >/dev/null
cmake --build "$root/build-fuzz" --target "$target"
seeds="$root/fuzz/seeds/${target%_fuzzer}"
corpus="$root/build-fuzz/corpus/$target"
mkdir -p "$corpus" "$root/fuzz/artifacts"
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
  "$root/build-fuzz/fuzz/$target" "$corpus" "$seeds" -max_total_time="$seconds" \
  -rss_limit_mb=4096 -max_len=65536 -artifact_prefix="$root/fuzz/artifacts/" -print_final_stats=1
