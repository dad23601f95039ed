// The installation's models as the studio uses them: what registering a path checks, and
// what the default model decides for the jobs queued while it is the default.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/services/job_payloads.hpp"
#include "doppel/store/records.hpp"

namespace doppel::services {

// The absolute, normalised form of a path given by a client or --model (so one file
// registers once however it is written): "models/../sd15.safetensors" -> "/work/sd15.safetensors".
std::string normalise_model_path(const std::string& path);

// The file or folder a client asks to register (POST /api/models), with symbolic links
// resolved, when it lies inside one of the server's model folders; a relative path is taken
// inside them. Anything outside, however written, is refused with one message that does not
// say whether it exists (kInvalidArgument), so the API cannot probe the server's disk.
std::string resolve_in_model_folders(const std::string& path,
                                     const std::vector<std::filesystem::path>& folders);

// A record for the model at `path` (normalised) of `kind` (store::kModelCheckpoint,
// kModelIpAdapter or kModelImageEncoder), after checking from its headers and config files (no
// weights are loaded) that it is one:
// - a checkpoint: a Stable Diffusion model the studio can shoot with (family, prediction);
// - an IP-Adapter (h94 .safetensors or .bin): family of the base model it was made for (its
//   image tokens' width: 2048 SDXL, 1024 SD 2.x, else SD 1.x) and its variant in `prediction`
//   ("base", "plus", "plus-face", "full-face"; plus and plus-face share their tensors' shapes,
//   so the file name tells them apart, as the engine's face crop does);
// - an image encoder (CLIP vision folder or file): `family` "vit-h-14", "vit-bigg-14" or
//   "clip-vision", and the width of its hidden states in `prediction`.
// `name` defaults to model_display_name(path). Throws doppel::Error (kInvalidArgument) with a
// message that says what is wrong and what to do: nothing there, not a model, only part of
// one, a pickle file, an inpainting model, or a file of another kind (named, with the kind to
// register it as).
store::Model inspect_model_for_registry(const std::string& path,
                                        const std::optional<std::string>& name,
                                        const std::string& kind = store::kModelCheckpoint);

// The training defaults (steps, rank, resolution) for subjects trained on `model`.
TrainingDefaults training_defaults(const store::Model& model);

}  // namespace doppel::services
