#!/usr/bin/env bash
# Builds and runs the benchmarks (full-size architectures, random weights).
# Prints one JSON line per figure; not part of the test suite.
#   scripts/bench.sh            # everything
#   scripts/bench.sh sd         # Stable Diffusion 1.5 only
#   scripts/bench.sh sdxl       # SDXL only (about 15 minutes on 2 cores)
#   scripts/bench.sh train      # LoRA training steps only
#   scripts/bench.sh baseline   # PyTorch eager UNet step (installs Debian's python3-torch)
#   scripts/bench.sh studio     # a 12-portrait studio shoot at the fast speed, end to end,
#                               # and the LoRA merges its first portrait pays
#                               # (about 10 minutes; needs ../shared/testdata/faces)
#   scripts/bench.sh compare [--against REV] [--pairs N] -- BENCH [ARGS...]
#       # REV's BENCH (default: the commit before HEAD) and this checkout's, run
#       # alternately N times (default 5); prints each pair's ratio and their median
#       # (docs/benchmarks.md "Before and after")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-all}"
if [ "$what" = compare ]; then
  shift
  exec "$root/scripts/bench_compare.sh" "$@"
fi
"$root/scripts/install.sh" >&2
cmake -S "$root" -B "$root/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDOPPEL_BUILD_TESTS=OFF -DDOPPEL_BUILD_BENCH=ON >&2
cmake --build "$root/build-bench" >&2
bench="$root/build-bench/bench"
if [ "$what" = all ] || [ "$what" = sd ]; then
  sd="$bench/stable_diffusion_bench"
  "$sd" --case peak
  for dtype in bf16 fp32; do
    for size in 512 256; do "$sd" --case unet --dtype "$dtype" --size "$size" --repeats 3; done
    "$sd" --case text --dtype "$dtype"
    "$sd" --case vae --dtype "$dtype" --size 512
    "$sd" --case taesd --dtype "$dtype" --size 512
  done
  "$sd" --case generate --dtype bf16 --size 512
  "$bench/control_net_bench" --dtype bf16 --size 512
  "$bench/ip_adapter_bench" --dtype bf16 --size 512 --repeats 3
fi
if [ "$what" = all ] || [ "$what" = sdxl ]; then
  sd="$bench/stable_diffusion_bench --family sdxl --repeats 1"
  for size in 1024 768; do $sd --case unet --dtype bf16 --size "$size"; done
  $sd --case text --dtype bf16
  $sd --case vae --dtype bf16 --size 1024
  $sd --case generate --dtype bf16 --size 1024
fi
if [ "$what" = all ] || [ "$what" = train ]; then
  for dtype in bf16 fp32; do
    for size in 512 384; do
      "$bench/lora_training_bench" --dtype "$dtype" --size "$size" --repeats 3
      "$bench/lora_training_bench" --dtype "$dtype" --size "$size" --repeats 3 --checkpointing
    done
  done
fi
if [ "$what" = all ] || [ "$what" = baseline ]; then
  if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-torch >&2
  fi
  for dtype in bf16 fp32; do
    /usr/bin/python3 "$root/bench/pytorch_eager_baseline.py" --dtype "$dtype" --size 512
    "$bench/stable_diffusion_bench" --case unet --dtype "$dtype" --size 512 --repeats 3
  done
fi
if [ "$what" = studio ]; then
  "$bench/studio_shoot_bench" --portraits 12 --speed fast --width 512 --height 768
  "$bench/lora_merge_bench" --repeats 3
fi
if [ "$what" = all ] || [ "$what" = face ]; then
  [ -x "$bench/face_intake_bench" ] && "$bench/face_intake_bench"
fi
exit 0
