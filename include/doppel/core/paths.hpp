// Where doppel finds its bundled model data (installed by scripts/install.sh).
#pragma once
#include <filesystem>

namespace doppel {

// $DOPPEL_MODELS_DIR, else the models/ folder of the source tree doppel was
// built from (scripts/install.sh fills it: tokenizer/, face/).
std::filesystem::path default_models_dir();

// dlib's 68-point predictor: $DOPPEL_LANDMARKS_MODEL, else Debian's libdlib-data path.
std::filesystem::path default_landmark_model_path();

// What the command line keeps between runs (drawn template pictures, file hashes):
// $XDG_CACHE_HOME/doppel, else ~/.cache/doppel.
std::filesystem::path default_cache_dir();

}  // namespace doppel
