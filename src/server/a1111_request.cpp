#include "server/a1111_request.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/diffusion/control_preprocessors.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel::server::compat {
namespace {

using nlohmann::json;

const json* present(const json& body, const std::string& name) {
  auto found = body.find(name);
  return found == body.end() || found->is_null() ? nullptr : &*found;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

[[noreturn]] void out_of_range(const std::string& name, double min, double max) {
  throw ValidationError(
      name, "ensure this value is between " + format_number(min) + " and " + format_number(max),
      "value_error.number.not_in_range");
}

// The centre of `image` with the aspect ratio of width x height (A1111's "Crop and resize").
Image crop_to_aspect(const Image& image, int64_t width, int64_t height) {
  const double target = static_cast<double>(width) / static_cast<double>(height);
  int crop_width = image.width;
  int crop_height = image.height;
  if (static_cast<double>(image.width) / image.height > target)
    crop_width = std::max(1, static_cast<int>(std::lround(image.height * target)));
  else
    crop_height = std::max(1, static_cast<int>(std::lround(image.width / target)));
  const PixelRegion region{(image.width - crop_width) / 2, (image.height - crop_height) / 2,
                           (image.width - crop_width) / 2 + crop_width,
                           (image.height - crop_height) / 2 + crop_height};
  return crop_image(image, region);
}

// A1111's "Resize and fill": the whole picture fitted inside width x height, the rest filled by
// stretching its edge pixels.
Image fit_and_fill(const Image& image, int64_t width, int64_t height) {
  const double scale = std::min(static_cast<double>(width) / image.width,
                                static_cast<double>(height) / image.height);
  const int inner_width = std::max(1, static_cast<int>(std::lround(image.width * scale)));
  const int inner_height = std::max(1, static_cast<int>(std::lround(image.height * scale)));
  const Image inner = resize_image(image, inner_width, inner_height);
  Image canvas;
  canvas.width = static_cast<int>(width);
  canvas.height = static_cast<int>(height);
  canvas.rgb.resize(static_cast<size_t>(width) * height * 3);
  const int left = (canvas.width - inner_width) / 2;
  const int top = (canvas.height - inner_height) / 2;
  for (int y = 0; y < canvas.height; ++y) {
    const int source_y = std::clamp(y - top, 0, inner_height - 1);
    for (int x = 0; x < canvas.width; ++x) {
      const int source_x = std::clamp(x - left, 0, inner_width - 1);
      for (int c = 0; c < 3; ++c)
        canvas.rgb[(static_cast<size_t>(y) * canvas.width + x) * 3 + c] =
            inner.rgb[(static_cast<size_t>(source_y) * inner_width + source_x) * 3 + c];
    }
  }
  return canvas;
}

Image apply_resize_mode(const Image& image, int64_t mode, int64_t width, int64_t height) {
  if (mode == 1) return crop_to_aspect(image, width, height);
  if (mode == 2) return fit_and_fill(image, width, height);
  return image;  // 0 "Just resize", 3 "Just resize (latent upscale)": the pipeline resizes
}

Image inverted(Image image) {
  for (uint8_t& value : image.rgb) value = static_cast<uint8_t>(255 - value);
  return image;
}

std::string put_png(Context& context, const Image& image) {
  return context.transient.put(encode_png(image));
}

// "ControlNet" units of alwayson_scripts, in the extension's dictionary form.
void read_control_units(Context& context, const json& scripts, const std::optional<Image>& init,
                        services::GeneratePayload& payload) {
  for (const auto& [script, settings] : scripts.items()) {
    if (lower(script) != "controlnet")
      throw CompatError(422, "always on script " + script +
                                 " not found (doppel has the ControlNet extension's units only)");
    const json* args = settings.is_object() ? present(settings, "args") : nullptr;
    if (!args) continue;
    if (!args->is_array())
      throw ValidationError("alwayson_scripts.controlnet.args", "value is not a valid list",
                            "type_error.list");
    int index = 0;
    for (const json& unit : *args) {
      const std::string where = "ControlNet unit " + std::to_string(index++);
      if (!unit.is_object())
        throw CompatError(422, where +
                                   " must be a dictionary {module, model, image, weight, ...}; "
                                   "the extension's positional lists are not accepted");
      if (!bool_field(unit, "enabled", true)) continue;
      const std::string module = lower(text_field(unit, "module", "none"));
      const std::string model = text_field(unit, "model", "None");
      if (model.empty() || lower(model) == "none") continue;  // the extension skips it too
      const bool ip_adapter = module.rfind("ip-adapter", 0) == 0 ||
                              lower(model).find("ip-adapter") != std::string::npos ||
                              lower(model).find("ip_adapter") != std::string::npos;
      const std::vector<std::string> extensions = {".safetensors", ".pth", ".bin", ".pt"};
      auto file = find_model_folder_file(context, "controlnet", model, extensions);
      if (!file && ip_adapter)
        file = find_model_folder_file(context, "ipadapter", model, extensions);
      if (!file)
        throw CompatError(404, where + ": model '" + model +
                                   "' not found; GET /controlnet/model_list lists the files in "
                                   "the models/controlnet folder");
      // The picture: "image" (a string, or {"image", "mask"}), "input_image" (older clients),
      // else the img2img init image, as the extension does.
      std::optional<Image> picture;
      const json* image = present(unit, "image");
      if (!image) image = present(unit, "input_image");
      if (image && image->is_object()) image = present(*image, "image");
      if (image) {
        if (!image->is_string())
          throw ValidationError(where + ".image", "str type expected", "type_error.str");
        picture = decode_picture(
            context, picture_bytes(context, image->get<std::string>(), where + " image"),
            where + " image");
      } else if (init) {
        picture = init;
      } else {
        throw CompatError(422, where + " has no image (send 'image' as base64)");
      }
      services::GenerateControl control;
      control.model = file->string();
      control.weight = number_field(unit, "weight", 1.0, 0.0, 2.0);
      control.start = number_field(unit, "guidance_start", 0.0, 0.0, 1.0);
      control.end = number_field(unit, "guidance_end", 1.0, 0.0, 1.0);
      if (ip_adapter) {
        control.image_sha256 = put_png(context, *picture);
        payload.ip_adapters.push_back(control);
        continue;
      }
      if (module == "none" || module.empty()) {
        control.image_sha256 = put_png(context, *picture);
      } else if (module == "canny") {
        // Made here, with the unit's thresholds; the worker gets the finished map.
        const double low = number_field(unit, "threshold_a", 100, 1, 255);
        const double high = number_field(unit, "threshold_b", 200, 1, 255);
        control.image_sha256 = put_png(context, canny_edge_map(*picture, low, high));
      } else if (module == "openpose_faceonly" || module == "face_pose") {
        control.preprocessor = "face_pose";
        control.image_sha256 = put_png(context, *picture);
      } else {
        throw CompatError(422, where + ": module '" + module +
                                   "' is not available; GET /controlnet/module_list lists them");
      }
      payload.controls.push_back(control);
    }
  }
}

}  // namespace

int64_t int_field(const json& body, const std::string& name, int64_t fallback, int64_t min,
                  int64_t max) {
  const json* value = present(body, name);
  if (!value) return fallback;
  int64_t number = 0;
  if (value->is_number_integer()) {
    number = value->get<int64_t>();
  } else if (value->is_number_float() && std::floor(value->get<double>()) == value->get<double>() &&
             std::abs(value->get<double>()) < 9e18) {
    number = static_cast<int64_t>(value->get<double>());
  } else if (value->is_string()) {
    try {
      size_t used = 0;
      number = std::stoll(value->get<std::string>(), &used);
      if (used != value->get<std::string>().size()) throw std::invalid_argument("rest");
    } catch (const std::exception&) {
      throw ValidationError(name, "value is not a valid integer", "type_error.integer");
    }
  } else {
    throw ValidationError(name, "value is not a valid integer", "type_error.integer");
  }
  if (number < min || number > max)
    out_of_range(name, static_cast<double>(min), static_cast<double>(max));
  return number;
}

double number_field(const json& body, const std::string& name, double fallback, double min,
                    double max) {
  const json* value = present(body, name);
  if (!value) return fallback;
  double number = 0;
  if (value->is_number()) {
    number = value->get<double>();
  } else if (value->is_string()) {
    try {
      size_t used = 0;
      number = std::stod(value->get<std::string>(), &used);
      if (used != value->get<std::string>().size()) throw std::invalid_argument("rest");
    } catch (const std::exception&) {
      throw ValidationError(name, "value is not a valid float", "type_error.float");
    }
  } else {
    throw ValidationError(name, "value is not a valid float", "type_error.float");
  }
  if (!std::isfinite(number) || number < min || number > max) out_of_range(name, min, max);
  return number;
}

bool bool_field(const json& body, const std::string& name, bool fallback) {
  const json* value = present(body, name);
  if (!value) return fallback;
  if (value->is_boolean()) return value->get<bool>();
  if (value->is_number_integer() && (value->get<int64_t>() == 0 || value->get<int64_t>() == 1))
    return value->get<int64_t>() == 1;
  if (value->is_string()) {
    const std::string text = lower(value->get<std::string>());
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  }
  throw ValidationError(name, "value could not be parsed to a boolean", "type_error.bool");
}

std::string text_field(const json& body, const std::string& name, const std::string& fallback) {
  const json* value = present(body, name);
  if (!value) return fallback;
  if (value->is_string()) return value->get<std::string>();
  if (value->is_number()) return value->dump();
  throw ValidationError(name, "str type expected", "type_error.str");
}

std::vector<std::string> text_list_field(const json& body, const std::string& name) {
  const json* value = present(body, name);
  if (!value) return {};
  if (!value->is_array())
    throw ValidationError(name, "value is not a valid list", "type_error.list");
  std::vector<std::string> texts;
  for (const json& item : *value) {
    if (!item.is_string())
      throw ValidationError(name, "str type expected (in the list)", "type_error.str");
    texts.push_back(item.get<std::string>());
  }
  return texts;
}

void apply_sampler(services::GeneratePayload& payload, const std::string& sampler,
                   const std::string& scheduler) {
  if (auto a1111 = sampler_from_a1111_name(sampler)) {
    payload.sampler = a1111->first;
    payload.karras = a1111->second;
  } else {
    try {
      payload.sampler = find_sampler(sampler).name;
      payload.karras = sampler.size() > 7 && sampler.substr(sampler.size() - 7) == "_karras";
    } catch (const Error&) {
      throw CompatError(404,
                        "Sampler not found: '" + sampler +
                            "'; GET /sdapi/v1/samplers lists the names (e.g. \"Euler a\", "
                            "\"DPM++ 2M\")",
                        "sampler_name");
    }
  }
  const std::string schedule = lower(scheduler);
  if (schedule.empty() || schedule == "automatic") return;
  if (schedule == "karras") {
    if (!find_sampler(payload.sampler).supports_karras)
      throw CompatError(422, "the sampler '" + sampler + "' has no Karras schedule", "scheduler");
    payload.karras = true;
    return;
  }
  const auto spacing = spacing_from_a1111_schedule_type(scheduler);
  if (!spacing)
    throw CompatError(422,
                      "Scheduler not found: '" + scheduler +
                          "'; GET /sdapi/v1/schedulers lists the ones doppel has",
                      "scheduler");
  payload.timestep_spacing = timestep_spacing_name(*spacing);
}

std::vector<PromptStyle> prompt_styles(const std::vector<StylePack>& packs) {
  std::vector<PromptStyle> styles;
  for (const StylePack& pack : packs)
    styles.push_back(
        {pack.id, fill_prompt_template(pack.prompt, "{prompt}"), pack.negative_prompt});
  return styles;
}

void apply_styles(const std::vector<StylePack>& packs, const std::vector<std::string>& names,
                  std::string& prompt, std::string& negative_prompt) {
  const auto styles = prompt_styles(packs);
  auto apply = [](const std::string& style, const std::string& text) {
    if (style.empty()) return text;
    const size_t at = style.find("{prompt}");
    if (at == std::string::npos) return text.empty() ? style : text + ", " + style;
    std::string result = style;
    for (size_t place = result.find("{prompt}"); place != std::string::npos;
         place = result.find("{prompt}", place + text.size()))
      result.replace(place, 8, text);
    return result;
  };
  for (const std::string& name : names) {
    auto style = std::find_if(styles.begin(), styles.end(),
                              [&](const PromptStyle& candidate) { return candidate.name == name; });
    if (style == styles.end()) {
      auto pack = std::find_if(packs.begin(), packs.end(),
                               [&](const StylePack& candidate) { return candidate.name == name; });
      if (pack == packs.end())
        throw CompatError(422,
                          "style '" + name + "' not found; GET /sdapi/v1/prompt-styles lists them");
      style = styles.begin() + (pack - packs.begin());
    }
    prompt = apply(style->prompt, prompt);
    negative_prompt = apply(style->negative_prompt, negative_prompt);
  }
}

A1111Generation read_a1111_generation(Context& context, const std::string& account_id,
                                      const json& body, bool img2img) {
  A1111Generation generation;
  services::GeneratePayload& payload = generation.payload;
  const AccountOptions account = options_of(context, account_id);

  // override_settings: the checkpoint, CLIP skip and VAE of this request only.
  const json* overrides = present(body, "override_settings");
  if (overrides && !overrides->is_object())
    throw ValidationError("override_settings", "value is not a valid dict", "type_error.dict");
  const json settings = overrides ? *overrides : json::object();
  store::Model model = account_model(context, account_id);
  if (const json* name = present(settings, "sd_model_checkpoint")) {
    if (!name->is_string())
      throw ValidationError("override_settings.sd_model_checkpoint", "str type expected",
                            "type_error.str");
    auto found = find_model(context, name->get<std::string>());
    if (!found)
      throw CompatError(404, "Model not found: '" + name->get<std::string>() +
                                 "'; GET /sdapi/v1/sd-models lists the registered checkpoints");
    model = *found;
  }
  payload.model_path = model.path;
  generation.model_title = model_title(model);
  payload.clip_skip =
      static_cast<int>(int_field(settings, "CLIP_stop_at_last_layers", account.clip_skip, 1, 12));
  const std::string vae = text_field(settings, "sd_vae", account.vae);
  if (!vae.empty() && vae != "Automatic" && vae != "None") {
    auto file = find_model_folder_file(context, "vae", vae, {".safetensors", ".pt", ".ckpt"});
    if (!file)
      throw CompatError(404, "VAE not found: '" + vae + "'; GET /sdapi/v1/sd-vae lists them");
    payload.vae_path = file->string();
    generation.vae_name = file->filename().string();
  }

  payload.prompt = text_field(body, "prompt", "");
  payload.negative_prompt = text_field(body, "negative_prompt", "");
  generation.styles = text_list_field(body, "styles");
  apply_styles(context.styles, generation.styles, payload.prompt, payload.negative_prompt);
  std::string sampler = text_field(body, "sampler_name", "");
  if (sampler.empty()) sampler = text_field(body, "sampler_index", "Euler");
  apply_sampler(payload, sampler, text_field(body, "scheduler", "Automatic"));

  // A1111 floors sizes to multiples of 8; doppel caps them at 4 megapixels.
  payload.width = int_field(body, "width", 512, 64, 2048) / 8 * 8;
  payload.height = int_field(body, "height", 512, 64, 2048) / 8 * 8;
  payload.steps = int_field(body, "steps", 50, 1, 150);
  payload.guidance = number_field(body, "cfg_scale", 7.0, 0.0, 30.0);
  payload.batch_size = int_field(body, "batch_size", 1, 1, 8);
  payload.batch_count = int_field(body, "n_iter", 1, 1, 16);
  const int64_t seed = int_field(body, "seed", -1, -1, int64_t(1) << 53);
  payload.seed = seed < 0 ? random_seed() : static_cast<uint64_t>(seed);
  // A1111's variation seed; -1 draws one, as for the seed. seed_resize_from_w/h: ignored.
  const int64_t subseed = int_field(body, "subseed", -1, -1, int64_t(1) << 53);
  generation.subseed = subseed < 0 ? static_cast<int64_t>(random_seed()) : subseed;
  generation.subseed_strength = number_field(body, "subseed_strength", 0.0, 0.0, 1.0);
  payload.variation_seed = static_cast<uint64_t>(generation.subseed);
  payload.variation_strength = generation.subseed_strength;
  if (payload.sampler == "ddim") payload.eta = number_field(body, "eta", 0.0, 0.0, 1.0);
  if (bool_field(body, "tiling", false))
    throw CompatError(422,
                      "tiling (seamless textures) is not supported by doppel; send "
                      "\"tiling\": false");
  if (!text_field(body, "script_name", "").empty())
    throw CompatError(422, "Script '" + text_field(body, "script_name", "") +
                               "' not found (doppel runs no A1111 scripts; ControlNet units go "
                               "in alwayson_scripts)");
  generation.restore_faces = bool_field(body, "restore_faces", false);
  payload.face_detail = generation.restore_faces;
  generation.send_images = bool_field(body, "send_images", true);
  bool_field(body, "save_images", false);  // checked, then ignored: see docs/compat.md

  std::optional<Image> init;
  if (img2img) {
    const json* images = present(body, "init_images");
    if (!images) throw CompatError(404, "Init image not found (send init_images: [base64])");
    if (!images->is_array() || images->empty() ||
        !std::all_of(images->begin(), images->end(), [](const json& x) { return x.is_string(); }))
      throw ValidationError("init_images", "value is not a valid list of str", "type_error.list");
    if (images->size() > 16)
      throw CompatError(422, "at most 16 init_images (got " + std::to_string(images->size()) + ")",
                        "init_images");
    const int64_t resize_mode = int_field(body, "resize_mode", 0, 0, 3);
    // A1111: image i of the run starts from init_images[i % count].
    for (size_t i = 0; i < images->size(); ++i) {
      const std::string name = "init_images[" + std::to_string(i) + "]";
      Image picture = apply_resize_mode(
          decode_picture(context, picture_bytes(context, (*images)[i].get<std::string>(), name),
                         name),
          resize_mode, payload.width, payload.height);
      if (i == 0) {
        payload.init_image_sha256 = put_png(context, picture);
        init = std::move(picture);
      } else {
        payload.further_init_images_sha256.push_back(put_png(context, picture));
      }
    }
    payload.strength = number_field(body, "denoising_strength", 0.75, 0.0, 1.0);
    if (payload.strength <= 0) payload.strength = 0.01;  // A1111 0 keeps the picture
    generation.denoising_strength = payload.strength;
    if (const json* mask = present(body, "mask")) {
      if (!mask->is_string()) throw ValidationError("mask", "str type expected", "type_error.str");
      Image picture = apply_resize_mode(
          decode_picture(context, picture_bytes(context, mask->get<std::string>(), "mask"), "mask"),
          resize_mode, payload.width, payload.height);
      if (int_field(body, "inpainting_mask_invert", 0, 0, 1) == 1) picture = inverted(picture);
      payload.mask_sha256 = put_png(context, picture);
      payload.mask_blur = static_cast<int>(int_field(body, "mask_blur", 4, 0, 64));
      payload.inpaint_only_masked = bool_field(body, "inpaint_full_res", true);
      payload.inpaint_padding =
          static_cast<int>(int_field(body, "inpaint_full_res_padding", 32, 0, 256));
      // A1111's default is 0, "fill": the masked area starts from the colours around it.
      payload.inpaint_fill = static_cast<int>(int_field(body, "inpainting_fill", 0, 0, 3));
    }
  } else if (bool_field(body, "enable_hr", false)) {
    HiresFix hires;
    hires.scale = number_field(body, "hr_scale", 2.0, 1.0, 4.0);
    const int64_t resize_x = int_field(body, "hr_resize_x", 0, 0, 4096);
    const int64_t resize_y = int_field(body, "hr_resize_y", 0, 0, 4096);
    if (resize_x > 0 || resize_y > 0)  // a target size wins over the scale, as in A1111
      hires.scale = std::clamp(std::max(static_cast<double>(resize_x) / payload.width,
                                        static_cast<double>(resize_y) / payload.height),
                               1.0, 4.0);
    hires.denoising_strength = number_field(body, "denoising_strength", 0.7, 0.01, 1.0);
    hires.steps = int_field(body, "hr_second_pass_steps", 0, 0, 150);
    std::string upscaler = text_field(body, "hr_upscaler", "Latent");
    if (upscaler == "None") upscaler = "Lanczos";
    const std::vector<std::string> known = {"Latent", "Latent (nearest)", "Latent (bicubic)",
                                            "Lanczos", "Nearest"};
    if (std::find(known.begin(), known.end(), upscaler) == known.end())
      throw CompatError(422, "hr_upscaler '" + upscaler +
                                 "' is not available; doppel has Latent, Latent (nearest), "
                                 "Latent (bicubic), Lanczos, Nearest and None");
    hires.upscaler = upscaler;
    // The second pass's own sampler (A1111 1.9's hr_sampler_name / hr_scheduler) and prompts
    // (styles applied as to the main ones); empty or "Use same sampler": the first pass's.
    const std::string hr_sampler = text_field(body, "hr_sampler_name", "");
    if (!hr_sampler.empty() && hr_sampler != "Use same sampler") {
      services::GeneratePayload second;
      std::string scheduler = text_field(body, "hr_scheduler", "Automatic");
      if (scheduler == "Use same scheduler") scheduler = text_field(body, "scheduler", "Automatic");
      apply_sampler(second, hr_sampler, scheduler);
      hires.sampler = second.sampler;
      hires.karras = second.karras;
    }
    std::string hr_prompt = text_field(body, "hr_prompt", "");
    std::string hr_negative_prompt = text_field(body, "hr_negative_prompt", "");
    if (!hr_prompt.empty() || !hr_negative_prompt.empty()) {
      if (hr_prompt.empty()) hr_prompt = text_field(body, "prompt", "");
      if (hr_negative_prompt.empty()) hr_negative_prompt = text_field(body, "negative_prompt", "");
      apply_styles(context.styles, generation.styles, hr_prompt, hr_negative_prompt);
      if (hr_prompt != payload.prompt) hires.prompt = hr_prompt;
      if (hr_negative_prompt != payload.negative_prompt) hires.negative_prompt = hr_negative_prompt;
    }
    payload.hires = hires;
    generation.denoising_strength = hires.denoising_strength;
  }
  if (const json* scripts = present(body, "alwayson_scripts")) {
    if (!scripts->is_object())
      throw ValidationError("alwayson_scripts", "value is not a valid dict", "type_error.dict");
    read_control_units(context, *scripts, init, payload);
  }
  return generation;
}

std::string a1111_info(const A1111Generation& generation, const json& result) {
  const services::GeneratePayload& payload = generation.payload;
  const json seeds = result.value("seeds", json::array());
  const json infotexts = result.value("infotexts", json::array());
  const size_t count = seeds.size();
  json subseeds = json::array();
  for (size_t i = 0; i < count; ++i)
    subseeds.push_back(generation.subseed + static_cast<int64_t>(i));
  char stamp[32] = {};
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &utc);
  json info = {
      {"prompt", payload.prompt},
      {"all_prompts", json(std::vector<std::string>(count, payload.prompt))},
      {"negative_prompt", payload.negative_prompt},
      {"all_negative_prompts", json(std::vector<std::string>(count, payload.negative_prompt))},
      {"seed", seeds.empty() ? json(payload.seed) : seeds[0]},
      {"all_seeds", seeds},
      {"subseed", subseeds.empty() ? json(generation.subseed) : subseeds[0]},
      {"all_subseeds", subseeds},
      {"subseed_strength", generation.subseed_strength},
      {"width", payload.width},
      {"height", payload.height},
      {"sampler_name", a1111_sampler_name(payload.sampler, payload.karras)},
      {"cfg_scale", payload.guidance},
      {"steps", payload.steps},
      {"batch_size", payload.batch_size},
      {"restore_faces", generation.restore_faces},
      {"face_restoration_model", generation.restore_faces ? json("face detail") : json(nullptr)},
      {"sd_model_name", result.value("model", generation.model_title)},
      {"sd_model_hash", result.value("model_hash", "")},
      {"sd_vae_name", generation.vae_name ? json(*generation.vae_name) : json(nullptr)},
      {"sd_vae_hash", nullptr},
      {"seed_resize_from_w", -1},
      {"seed_resize_from_h", -1},
      {"denoising_strength", generation.denoising_strength},
      {"extra_generation_params", json::object()},
      {"index_of_first_image", 0},
      {"infotexts", infotexts},
      {"styles", generation.styles},
      {"job_timestamp", stamp},
      {"clip_skip", payload.clip_skip},
      {"is_using_inpainting_conditioning", false},
      {"version", doppel_version()}};
  return info.dump();
}

json parsed_parameters(const std::string& text) {
  json parsed = json::object();
  if (text.empty()) return parsed;
  const GenerationParameters parameters = GenerationParameters::parse(text);
  parsed["Prompt"] = parameters.prompt;
  parsed["Negative prompt"] = parameters.negative_prompt;
  for (const auto& [key, value] : parameters.settings) {
    parsed[key] = value;
    const size_t x = value.find('x');
    if (key == "Size" && x != std::string::npos) {
      parsed["Size-1"] = value.substr(0, x);
      parsed["Size-2"] = value.substr(x + 1);
    }
  }
  return parsed;
}

}  // namespace doppel::server::compat
