// The IP-Adapter plus-face and image encoder that bring out a person from one photo in the
// studio (instant subjects, and styles with an identity `ip_adapter_scale`): the ones the
// operator registered in the models registry, else the h94 files in the models folder.
#pragma once
#include <filesystem>
#include <string>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::services {

// The IP-Adapter scale of an instant subject's shots when the style sets none: enough for the
// photo's face to lead, while the style's prompt still decides clothes, light and setting.
inline constexpr double kInstantIpAdapterScale = 0.7;

// The h94 file name of the plus-face adapter for a model family:
// "ip-adapter-plus-face_sd15.safetensors", or "ip-adapter-plus-face_sdxl_vit-h.safetensors".
std::string plus_face_adapter_file_name(ModelFamily family);

struct IdentityAdapterFiles {
  std::filesystem::path adapter;
  // A registered encoder whose features fit the adapter; empty: the one the engine finds
  // beside the adapter (h94's layout) or in <models>/image_encoder, which was checked to exist.
  std::filesystem::path encoder;
};

// The adapter for a model of `family`: the newest registered plus-face IP-Adapter of that
// family (any other face variant of it when there is none), else
// <models_dir>/ip_adapter/<plus_face_adapter_file_name>; and its encoder: a registered image
// encoder whose width fits, else the one found beside the adapter or in
// <models_dir>/image_encoder. Reads only headers. Throws doppel::Error kNotFound saying which
// file to add and where (or to register it in Settings) when either is missing.
IdentityAdapterFiles find_identity_adapter(store::Repository& repository, ModelFamily family,
                                           const std::filesystem::path& models_dir);

}  // namespace doppel::services
