#include "doppel/core/paths.hpp"

#include <cstdlib>

namespace doppel {

std::filesystem::path default_models_dir() {
  if (const char* env = std::getenv("DOPPEL_MODELS_DIR"); env && *env) return env;
  return DOPPEL_DEFAULT_MODELS_DIR;
}

std::filesystem::path default_landmark_model_path() {
  if (const char* env = std::getenv("DOPPEL_LANDMARKS_MODEL"); env && *env) return env;
  return "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
}

}  // namespace doppel
