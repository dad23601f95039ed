#include "doppel/services/generation_job.hpp"

#include <algorithm>
#include <chrono>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/noise_schedule.hpp"

namespace doppel::services {
namespace {

using nlohmann::json;

json control_to_json(const GenerateControl& control) {
  return {{"model", control.model},
          {"image", control.image_sha256},
          {"preprocessor", control.preprocessor},
          {"weight", control.weight},
          {"start", control.start},
          {"end", control.end}};
}

GenerateControl control_from_json(const json& value) {
  GenerateControl control;
  control.model = value.at("model").get<std::string>();
  control.image_sha256 = value.at("image").get<std::string>();
  control.preprocessor = value.value("preprocessor", std::string("none"));
  control.weight = value.value("weight", 1.0);
  control.start = value.value("start", 0.0);
  control.end = value.value("end", 1.0);
  return control;
}

std::vector<GenerateControl> controls_from_json(const json& payload, const char* key) {
  std::vector<GenerateControl> controls;
  for (const json& value : payload.value(key, json::array()))
    controls.push_back(control_from_json(value));
  return controls;
}

// A picture of the request from the transient store; a missing one means the request
// outlived the store's sweep (or another server's data folder), which retrying cannot fix.
Image transient_image(const store::BlobStore& transient, const std::string& sha256,
                      const char* what) {
  if (!transient.exists(sha256))
    throw Error(ErrorCode::kNotFound, std::string("the request's ") + what +
                                          " is no longer in the transient store; send the "
                                          "request again");
  return decode_image(transient.get(sha256), {}, what);
}

}  // namespace

json generate_payload_to_json(const GeneratePayload& payload) {
  json value = {{"model_path", payload.model_path},
                {"prompt", payload.prompt},
                {"negative_prompt", payload.negative_prompt},
                {"width", payload.width},
                {"height", payload.height},
                {"steps", payload.steps},
                {"guidance", payload.guidance},
                {"sampler", payload.sampler},
                {"karras", payload.karras},
                {"eta", payload.eta},
                {"seed", payload.seed},
                {"batch_size", payload.batch_size},
                {"batch_count", payload.batch_count},
                {"clip_skip", payload.clip_skip},
                {"strength", payload.strength},
                {"mask_blur", payload.mask_blur},
                {"inpaint_only_masked", payload.inpaint_only_masked},
                {"inpaint_padding", payload.inpaint_padding},
                {"inpaint_fill", payload.inpaint_fill},
                {"face_detail", payload.face_detail}};
  if (payload.variation_strength != 0)
    value["variation"] = {{"seed", payload.variation_seed},
                          {"strength", payload.variation_strength}};
  if (!payload.further_init_images_sha256.empty())
    value["further_init_images"] = payload.further_init_images_sha256;
  if (payload.vae_path) value["vae_path"] = *payload.vae_path;
  if (payload.timestep_spacing) value["timestep_spacing"] = *payload.timestep_spacing;
  if (payload.init_image_sha256) value["init_image"] = *payload.init_image_sha256;
  if (payload.mask_sha256) value["mask"] = *payload.mask_sha256;
  if (payload.hires)
    value["hires"] = {{"scale", payload.hires->scale},
                      {"strength", payload.hires->denoising_strength},
                      {"steps", payload.hires->steps},
                      {"upscaler", payload.hires->upscaler}};
  if (payload.hires) {
    json& hires = value["hires"];
    if (payload.hires->sampler) {
      hires["sampler"] = *payload.hires->sampler;
      hires["karras"] = payload.hires->karras;
    }
    if (payload.hires->prompt) hires["prompt"] = *payload.hires->prompt;
    if (payload.hires->negative_prompt) hires["negative_prompt"] = *payload.hires->negative_prompt;
  }
  value["controls"] = json::array();
  for (const auto& control : payload.controls)
    value["controls"].push_back(control_to_json(control));
  value["ip_adapters"] = json::array();
  for (const auto& adapter : payload.ip_adapters)
    value["ip_adapters"].push_back(control_to_json(adapter));
  return value;
}

GeneratePayload generate_payload_from_json(const json& value) {
  try {
    GeneratePayload payload;
    payload.model_path = value.at("model_path").get<std::string>();
    if (value.contains("vae_path")) payload.vae_path = value["vae_path"].get<std::string>();
    payload.prompt = value.at("prompt").get<std::string>();
    payload.negative_prompt = value.at("negative_prompt").get<std::string>();
    payload.width = value.at("width").get<int64_t>();
    payload.height = value.at("height").get<int64_t>();
    payload.steps = value.at("steps").get<int64_t>();
    payload.guidance = value.at("guidance").get<double>();
    payload.sampler = value.at("sampler").get<std::string>();
    payload.karras = value.at("karras").get<bool>();
    if (value.contains("timestep_spacing"))
      payload.timestep_spacing = value["timestep_spacing"].get<std::string>();
    payload.eta = value.value("eta", 0.0);
    payload.seed = value.at("seed").get<uint64_t>();
    payload.batch_size = value.at("batch_size").get<int64_t>();
    payload.batch_count = value.at("batch_count").get<int64_t>();
    payload.clip_skip = value.value("clip_skip", 1);
    if (value.contains("init_image"))
      payload.init_image_sha256 = value["init_image"].get<std::string>();
    payload.strength = value.value("strength", 0.75);
    if (value.contains("mask")) payload.mask_sha256 = value["mask"].get<std::string>();
    payload.mask_blur = value.value("mask_blur", 4);
    payload.inpaint_only_masked = value.value("inpaint_only_masked", false);
    payload.inpaint_padding = value.value("inpaint_padding", 32);
    payload.inpaint_fill = value.value("inpaint_fill", 1);
    if (value.contains("variation")) {
      payload.variation_seed = value["variation"].at("seed").get<uint64_t>();
      payload.variation_strength = value["variation"].at("strength").get<double>();
    }
    if (value.contains("further_init_images"))
      payload.further_init_images_sha256 =
          value["further_init_images"].get<std::vector<std::string>>();
    if (value.contains("hires")) {
      const json& hires = value["hires"];
      HiresFix fix;
      fix.scale = hires.at("scale").get<double>();
      fix.denoising_strength = hires.at("strength").get<double>();
      fix.steps = hires.at("steps").get<int64_t>();
      fix.upscaler = hires.at("upscaler").get<std::string>();
      if (hires.contains("sampler")) {
        fix.sampler = hires["sampler"].get<std::string>();
        fix.karras = hires.value("karras", false);
      }
      if (hires.contains("prompt")) fix.prompt = hires["prompt"].get<std::string>();
      if (hires.contains("negative_prompt"))
        fix.negative_prompt = hires["negative_prompt"].get<std::string>();
      payload.hires = fix;
    }
    payload.controls = controls_from_json(value, "controls");
    payload.ip_adapters = controls_from_json(value, "ip_adapters");
    payload.face_detail = value.value("face_detail", false);
    return payload;
  } catch (const json::exception& error) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("malformed generate job payload: ") + error.what());
  }
}

store::BlobStore open_transient_blob_store(const std::filesystem::path& data_dir,
                                           const std::optional<std::filesystem::path>& key_file) {
  // The main store checks where the key lives and creates it; this one only reuses it.
  std::optional<store::EncryptionKey> key;
  if (key_file) key = store::EncryptionKey::load(*key_file);
  return store::BlobStore(data_dir / "transient", std::move(key));
}

int sweep_transient_blobs(store::BlobStore& transient, int64_t max_age_ms) {
  const auto now = std::filesystem::file_time_type::clock::now();
  int removed = 0;
  for (const std::string& sha256 : transient.list()) {
    std::error_code failed;
    const auto written = std::filesystem::last_write_time(transient.path_of(sha256), failed);
    if (failed) continue;
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - written);
    if (age.count() > max_age_ms && transient.remove(sha256)) ++removed;
  }
  return removed;
}

SessionRequest session_request_from_payload(const GeneratePayload& payload,
                                            const store::BlobStore& transient) {
  SessionRequest session_request;
  GenerationRequest& request = session_request.generation;
  request.prompt = payload.prompt;
  request.negative_prompt = payload.negative_prompt;
  request.width = payload.width;
  request.height = payload.height;
  request.steps = payload.steps;
  request.guidance_scale = payload.guidance;
  request.sampler = payload.sampler;
  request.karras = payload.karras;
  if (payload.timestep_spacing)
    request.timestep_spacing = parse_timestep_spacing(*payload.timestep_spacing);
  request.eta = payload.eta;
  request.seed = payload.seed;
  request.batch_size = payload.batch_size;
  request.batch_count = payload.batch_count;
  request.clip_skip = payload.clip_skip;
  if (payload.variation_strength != 0)
    request.variation = VariationSeed{payload.variation_seed, payload.variation_strength};
  if (payload.init_image_sha256) {
    request.init_image = transient_image(transient, *payload.init_image_sha256, "init image");
    request.strength = payload.strength;
  }
  for (const std::string& sha256 : payload.further_init_images_sha256)
    request.further_init_images.push_back(transient_image(transient, sha256, "init image"));
  if (payload.mask_sha256) {
    if (!request.init_image)
      throw Error(ErrorCode::kInvalidArgument, "a mask needs an init image to repaint");
    InpaintOptions inpaint;
    inpaint.mask = transient_image(transient, *payload.mask_sha256, "mask");
    inpaint.mask_blur = payload.mask_blur;
    inpaint.only_masked = payload.inpaint_only_masked;
    inpaint.only_masked_padding = payload.inpaint_padding;
    inpaint.fill = parse_inpaint_fill(std::to_string(payload.inpaint_fill));
    request.inpaint = inpaint;
  }
  request.hires = payload.hires;
  // A1111's restore_faces: doppel's face-detail pass (ADetailer's inpaint of the largest face)
  // rather than a GFPGAN/CodeFormer restorer.
  if (payload.face_detail) session_request.face_detail = FaceDetailOptions{};
  for (const GenerateControl& control : payload.controls)
    session_request.controls.push_back(
        {control.model, transient_image(transient, control.image_sha256, "ControlNet image"),
         control.preprocessor, control.weight, control.start, control.end});
  for (const GenerateControl& adapter : payload.ip_adapters) {
    ImagePromptSelection selection;
    selection.adapter = adapter.model;
    selection.image = transient_image(transient, adapter.image_sha256, "IP-Adapter image");
    selection.scale = adapter.weight;
    selection.guidance_start = adapter.start;
    selection.guidance_end = adapter.end;
    session_request.ip_adapters.push_back(std::move(selection));
  }
  return session_request;
}

GenerateProgressMessage split_generate_progress(const std::string& message) {
  const size_t marker = message.rfind(kPreviewMarker);
  if (marker == std::string::npos) return {message, ""};
  return {message.substr(0, marker),
          message.substr(marker + std::char_traits<char>::length(kPreviewMarker))};
}

json run_generate_job(const GeneratePayload& payload, GenerationSession& session,
                      store::BlobStore& transient, const GenerateProgress& progress,
                      const std::function<bool()>& skip_requested) {
  SessionRequest request = session_request_from_payload(payload, transient);
  // The latest live preview, named in every progress report after it (see kPreviewMarker).
  std::string preview;
  double fraction = 0;
  std::string text;
  const auto report = [&](bool force) {
    return progress(fraction, preview.empty() ? text : text + kPreviewMarker + preview, force);
  };
  struct RemovePreview {  // a preview outlives neither the job nor its failure
    store::BlobStore& transient;
    std::string& preview;
    ~RemovePreview() {
      try {
        if (!preview.empty()) transient.remove(preview);
      } catch (const std::exception&) {  // left to the transient store's sweep
      }
    }
  } remove_preview{transient, preview};
  request.preview_method = PreviewMethod::kApproxCheap;  // cheap enough for every request
  request.preview_every = kGeneratePreviewEvery;
  request.preview = [&](const Image& image, int64_t, int64_t) {
    const std::string previous = preview;
    preview = transient.put(encode_png(image));
    if (!previous.empty() && previous != preview) transient.remove(previous);
    report(true);
  };
  bool skipped = false;
  const auto images = session.generate(request, [&](const ProgressEvent& event) {
    if (skip_requested && skip_requested()) {
      skipped = true;
      throw SkipCurrentImage();
    }
    const double done =
        event.total > 0 ? static_cast<double>(event.step) / static_cast<double>(event.total) : 0.0;
    fraction = std::min(0.95 * done, 0.95);
    text = event.stage + " " + std::to_string(event.step) + "/" + std::to_string(event.total);
    return report(false);
  });
  if (images.empty() && !skipped)
    throw Error(ErrorCode::kInternal, "the pipeline returned no image");
  if (!progress(0.97, "saving", true))
    throw Error(ErrorCode::kCancelled, "the job was cancelled or taken over");
  json result = {{"images", json::array()},
                 {"seeds", json::array()},
                 {"infotexts", json::array()},
                 {"model", session.model_info().name},
                 {"model_hash", session.model_info().hash}};
  for (const GeneratedImage& image : images) {
    result["images"].push_back(transient.put(encode_generated_png(image)));
    result["seeds"].push_back(image.seed);
    result["infotexts"].push_back(image.parameters.to_text());
  }
  return result;
}

}  // namespace doppel::services
