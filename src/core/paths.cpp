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

std::filesystem::path default_cache_dir() {
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache)
    return std::filesystem::path(cache) / "doppel";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / ".cache" / "doppel";
  return std::filesystem::temp_directory_path() / "doppel-cache";
}

}  // namespace doppel
