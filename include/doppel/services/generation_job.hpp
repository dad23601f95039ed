// A "generate" job: one full generation request as the compatible APIs (AUTOMATIC1111's
// /sdapi/v1, OpenAI's /v1/images) receive it, queued like a studio shoot and run by a worker
// through its GenerationSession. Pictures travel as digests in the transient blob store
// (<data>/transient, encrypted like the main one), never inline in the queue's rows; the
// result names the PNGs the worker put there.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/store/blob_store.hpp"

namespace doppel::services {

inline constexpr const char* kGenerateJobKind = "generate";

// A ControlNet (or, for an IP-Adapter file, an image prompt) of a generate job.
struct GenerateControl {
  std::string model;         // server-side path, resolved inside the model folders
  std::string image_sha256;  // the picture, in the transient store
  std::string preprocessor = "none";
  double weight = 1.0;
  double start = 0.0;
  double end = 1.0;
};

struct GeneratePayload {
  std::string model_path;  // "" for the tiny built-in model
  std::optional<std::string> vae_path;
  std::string prompt;
  std::string negative_prompt;
  int64_t width = 512;
  int64_t height = 512;
  int64_t steps = 20;
  double guidance = 7.0;
  std::string sampler = "euler_a";
  bool karras = false;
  std::optional<std::string> timestep_spacing;  // leading | linspace | trailing
  double eta = 0.0;
  uint64_t seed = 0;
  int64_t batch_size = 1;
  int64_t batch_count = 1;
  int clip_skip = 1;
  // A1111's variation seed (subseed / subseed_strength); strength 0: none.
  uint64_t variation_seed = 0;
  double variation_strength = 0;
  // img2img / inpainting
  std::optional<std::string> init_image_sha256;
  // A1111's init_images beyond the first: image i starts from picture i % count.
  std::vector<std::string> further_init_images_sha256;
  double strength = 0.75;
  std::optional<std::string> mask_sha256;
  int mask_blur = 4;
  bool inpaint_only_masked = false;
  int inpaint_padding = 32;
  int inpaint_fill = 1;  // A1111's inpainting_fill (InpaintFill): 0 fill, 1 original, 2, 3
  // hires fix (text-to-image only)
  std::optional<HiresFix> hires;
  std::vector<GenerateControl> controls;
  std::vector<GenerateControl> ip_adapters;  // model = the adapter file
  // A1111's restore_faces: the face-detail pass when the worker's session offers one.
  bool face_detail = false;
};

nlohmann::json generate_payload_to_json(const GeneratePayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
GeneratePayload generate_payload_from_json(const nlohmann::json& json);

// The store for the pictures of compatible-API requests: <data_dir>/transient, with the
// same key as the main blob store. Nothing in it is referenced by a record; files older than
// a few request lifetimes are swept (sweep_transient_blobs).
store::BlobStore open_transient_blob_store(const std::filesystem::path& data_dir,
                                           const std::optional<std::filesystem::path>& key_file);
// Removes transient blobs older than `max_age_ms`; returns how many.
int sweep_transient_blobs(store::BlobStore& transient, int64_t max_age_ms);

// The SessionRequest a payload asks for, its pictures read from `transient`.
SessionRequest session_request_from_payload(const GeneratePayload& payload,
                                            const store::BlobStore& transient);

// Progress of a running job: fraction, message, `force` (a stage change); false stops it.
using GenerateProgress = std::function<bool(double, const std::string&, bool)>;

// A running generate job's live preview (A1111's "Approx cheap", a PNG at the latents' size):
// run_generate_job keeps the latest in the transient store and names it at the end of the
// job's progress message, after this marker ("sampling 3/20\npreview <sha256>"); it removes
// the picture when the job ends.
inline constexpr const char* kPreviewMarker = "\npreview ";
// Model calls between two previews (and the last call of each pass).
inline constexpr int64_t kGeneratePreviewEvery = 5;
// A progress message split into its text and its preview's digest ("" when it has none).
struct GenerateProgressMessage {
  std::string text;
  std::string preview_sha256;
};
GenerateProgressMessage split_generate_progress(const std::string& message);

// Runs the job on `session`: every image as a PNG with its A1111 "parameters" in the
// transient store. Result: {"images": [sha256...], "seeds": [...], "infotexts": [...],
// "model": name, "model_hash": hash}. When `skip_requested` (polled at every progress step)
// says so, the image being made is dropped and the next one begins (A1111's skip).
nlohmann::json run_generate_job(const GeneratePayload& payload, GenerationSession& session,
                                store::BlobStore& transient, const GenerateProgress& progress,
                                const std::function<bool()>& skip_requested = {});

}  // namespace doppel::services
