#!/usr/bin/env bash
# Before and after on the same machine in the same minutes: builds one benchmark
# for another commit (default: the commit before HEAD) and for this checkout,
# runs the two binaries alternately and prints every pair's time ratio
# (this checkout / the other commit) and the median of the ratios, one JSON line.
# Figures taken on different days or instances differ by more than most changes
# do (docs/benchmarks.md); alternating cancels most of a shared machine's drift.
#
#   scripts/bench_compare.sh [--against REV] [--pairs N] -- BENCH [ARGS...]
#   e.g. scripts/bench.sh compare --pairs 3 -- stable_diffusion_bench --case unet --repeats 1
#
# Environment:
#   DOPPEL_BENCH_BUILD     this checkout's bench build directory (default build-bench)
#   DOPPEL_BENCH_PREVIOUS  worktree for REV (default ../bench-prev next to the checkout);
#                          created with `git worktree add`, built in its build-bench
#   DOPPEL_BUILD_LOCK      a file to hold (flock) while building, for shared machines
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
against="HEAD~1"
pairs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --against) against="$2"; shift 2 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "bench compare: unknown option '$1' (expected --against REV, --pairs N, then -- BENCH ARGS)" >&2
       exit 2 ;;
  esac
done
if [ $# -lt 1 ]; then
  echo "bench compare: name the benchmark after --, e.g. -- stable_diffusion_bench --case unet" >&2
  exit 2
fi
bench_name="$1"
shift
if ! [[ "$pairs" =~ ^[1-9][0-9]*$ ]]; then
  echo "bench compare: --pairs must be a positive number, not '$pairs'" >&2
  exit 2
fi
if [ ! -f "$root/bench/$bench_name.cpp" ]; then
  echo "bench compare: no benchmark '$bench_name' (bench/$bench_name.cpp); the benchmarks are:" \
    "$(cd "$root/bench" && ls ./*_bench.cpp | sed 's|^\./||; s|\.cpp$||' | tr '\n' ' ')" >&2
  exit 2
fi
previous_commit="$(git -C "$root" rev-parse --verify "$against^{commit}")"
current_commit="$(git -C "$root" rev-parse HEAD)"
[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] || current_commit="$current_commit+changes"

build_lock() {
  if [ -n "${DOPPEL_BUILD_LOCK:-}" ]; then flock "$DOPPEL_BUILD_LOCK" "$@"; else "$@"; fi
}

# Configures (once) and builds only the benchmark in one source tree.
build_bench() {
  local source="$1" build="$2"
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$source" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DDOPPEL_BUILD_TESTS=OFF -DDOPPEL_BUILD_BENCH=ON >&2
  fi
  build_lock cmake --build "$build" --target "$bench_name" >&2
}

previous_tree="${DOPPEL_BENCH_PREVIOUS:-$(dirname "$root")/bench-prev}"
if [ ! -e "$previous_tree/.git" ]; then
  git -C "$root" worktree add --detach "$previous_tree" "$previous_commit" >&2
elif [ "$(git -C "$previous_tree" rev-parse HEAD)" != "$previous_commit" ]; then
  if [ -n "$(git -C "$previous_tree" status --porcelain --untracked-files=no)" ]; then
    echo "bench compare: $previous_tree has local changes; it is only for benchmarking, clean it" >&2
    exit 2
  fi
  git -C "$previous_tree" checkout --quiet --detach "$previous_commit" >&2
fi
build_bench "$previous_tree" "$previous_tree/build-bench"
current_build="${DOPPEL_BENCH_BUILD:-$root/build-bench}"
build_bench "$root" "$current_build"
previous_binary="$previous_tree/build-bench/bench/$bench_name"
current_binary="$current_build/bench/$bench_name"

# The time of a run: the first timing field of its last JSON line.
run_seconds() {
  "$@" | tail -n 1 | jq -e 'first(.seconds_per_step, .seconds, .seconds_two_steps_total
                                  | numbers)'
}

previous_times=()
current_times=()
for ((pair = 0; pair < pairs; ++pair)); do
  # Alternate which build goes first: a machine that speeds up or slows down
  # during the run then favours neither.
  if ((pair % 2 == 0)); then
    previous_times+=("$(run_seconds "$previous_binary" "$@")")
    current_times+=("$(run_seconds "$current_binary" "$@")")
  else
    current_times+=("$(run_seconds "$current_binary" "$@")")
    previous_times+=("$(run_seconds "$previous_binary" "$@")")
  fi
  echo "pair $((pair + 1))/$pairs: previous ${previous_times[-1]} s, this ${current_times[-1]} s" >&2
done

jq -nc --arg bench "$bench_name" --arg args "$*" --arg previous "$previous_commit" \
  --arg current "$current_commit" \
  --argjson previous_seconds "$(printf '%s\n' "${previous_times[@]}" | jq -s .)" \
  --argjson current_seconds "$(printf '%s\n' "${current_times[@]}" | jq -s .)" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  [range($current_seconds | length) | $current_seconds[.] / $previous_seconds[.]] as $ratios
  | {figure: "interleaved_comparison", bench: $bench, arguments: $args,
     previous_commit: $previous, current_commit: $current,
     previous_seconds: $previous_seconds, current_seconds: $current_seconds,
     ratios: $ratios, median_ratio: ($ratios | median),
     min_ratio: ($ratios | min), max_ratio: ($ratios | max)}'
