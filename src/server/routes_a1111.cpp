// AUTOMATIC1111's API (/sdapi/v1/...) and its ControlNet extension's routes (/controlnet/...),
// answered in their shapes so unmodified A1111 clients work (docs/compat.md). Generations go
// through the durable queue and the workers like every studio shoot.
#include <fstream>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/diffusion/control_preprocessors.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "server/a1111_request.hpp"
#include "server/compat_support.hpp"
#include "server/http_support.hpp"

namespace doppel::server::compat {
namespace {

using nlohmann::json;
using A1111Handler = std::function<void(Context&, const store::Account&, const httplib::Request&,
                                        httplib::Response&)>;

void send_a1111_error(httplib::Response& response, int status, const std::string& detail) {
  send_json(response, status,
            {{"error", "HTTPException"}, {"detail", detail}, {"body", ""}, {"errors", detail}});
}

// Signs in, runs `handler` and answers any failure as A1111 (FastAPI) does.
RouteFunction a1111_route(const std::shared_ptr<Context>& context, A1111Handler handler) {
  return [context, handler](const httplib::Request& request, httplib::Response& response) {
    try {
      const store::Account account = authenticate(*context, request);
      handler(*context, account, request, response);
    } catch (const ValidationError& error) {
      send_json(response, 422,
                {{"detail", json::array({{{"loc", json::array({"body", error.field()})},
                                          {"msg", error.what()},
                                          {"type", error.type()}}})}});
    } catch (const CompatError& error) {
      if (error.status() == 401) response.set_header("WWW-Authenticate", "Basic");
      send_a1111_error(response, error.status(), error.what());
    } catch (const Error& error) {
      const int status = http_status_for(error.code());
      if (status >= 500) log_error(request.method + " " + request.path + ": " + error.what());
      send_a1111_error(
          response, status,
          status >= 500 ? "the server failed to answer; its log has the details" : error.what());
    } catch (const std::exception& error) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_a1111_error(response, 500, "the server failed to answer; its log has the details");
    }
  };
}

void generate(Context& context, const store::Account& account, const httplib::Request& request,
              httplib::Response& response, bool img2img) {
  const json body = parse_body(context, request);
  const A1111Generation generation = read_a1111_generation(context, account.id, body, img2img);
  const store::Job job = run_generation(context, account.id, generation.payload, response);
  const json result = job.result_json ? json::parse(*job.result_json, nullptr, false) : json();
  json images = json::array();
  if (generation.send_images)
    for (const std::string& png : generated_pngs(context, job))
      images.push_back(base64_encode(png));
  // A1111 echoes the request ("parameters"), without the pictures unless asked for them.
  json parameters = body;
  if (img2img && !bool_field(body, "include_init_images", false)) {
    parameters["init_images"] = nullptr;
    parameters["mask"] = nullptr;
  }
  send_json(response, 200,
            {{"images", images},
             {"parameters", parameters},
             {"info", a1111_info(generation, result.is_object() ? result : json::object())}});
}

std::vector<store::Job> generate_jobs(Context& context, const std::string& account_id,
                                      store::JobStatus status) {
  std::vector<store::Job> jobs;
  for (store::Job& job : context.jobs.list(account_id, status, 200))
    if (job.kind == services::kGenerateJobKind) jobs.push_back(std::move(job));
  return jobs;
}

// The running job's latest live preview as A1111's current_image (base64 PNG), or null.
json current_image(Context& context, const std::string& preview_sha256) {
  if (preview_sha256.empty()) return nullptr;
  try {
    return base64_encode(context.transient.get(preview_sha256));
  } catch (const Error&) {
    return nullptr;  // replaced by a newer preview (or the job ended) since the record was read
  }
}

void progress(Context& context, const store::Account& account, const httplib::Request& request,
              httplib::Response& response) {
  const auto running = generate_jobs(context, account.id, store::JobStatus::kRunning);
  const auto queued = generate_jobs(context, account.id, store::JobStatus::kQueued);
  json state = {{"skipped", false}, {"interrupted", false}, {"stopping_generation", false},
                {"job", ""},        {"job_count", 0},       {"job_timestamp", "0"},
                {"job_no", 0},      {"sampling_step", 0},   {"sampling_steps", 0}};
  if (running.empty() && queued.empty()) {
    send_json(response, 200,
              {{"progress", 0.0},
               {"eta_relative", 0.0},
               {"state", state},
               {"current_image", nullptr},
               {"textinfo", nullptr}});
    return;
  }
  const store::Job& job = running.empty() ? queued.back() : running.front();
  state["job"] = "job(" + job.id + ")";
  state["job_count"] = running.size() + queued.size();
  state["job_timestamp"] = std::to_string(job.created_at / 1000);
  // "sampling 3/20" -> step 3 of 20; then the live preview's digest, if any
  const services::GenerateProgressMessage split =
      services::split_generate_progress(job.progress_message);
  const std::string& message = split.text;
  const size_t slash = message.rfind('/');
  if (slash != std::string::npos) {
    const size_t space = message.rfind(' ', slash);
    try {
      state["sampling_step"] = std::stoll(message.substr(space + 1, slash - space - 1));
      state["sampling_steps"] = std::stoll(message.substr(slash + 1));
    } catch (const std::exception&) {
    }
  }
  const double fraction = std::max(0.01, job.progress);
  const double elapsed = static_cast<double>(store::unix_millis_now() - job.created_at) / 1000.0;
  send_json(response, 200,
            {{"progress", std::min(fraction, 1.0)},
             {"eta_relative", std::max(0.0, elapsed / fraction - elapsed)},
             {"state", state},
             // A1111's ?skip_current_image=true leaves the picture out.
             {"current_image", request.get_param_value("skip_current_image") == "true"
                                   ? json(nullptr)
                                   : current_image(context, split.preview_sha256)},
             {"textinfo", message.empty() ? json(nullptr) : json(message)}});
}

// A1111's interrupt stops the generation running now; doppel cancels the account's running
// generate jobs (their requests answer with the images made so far: none).
void interrupt(Context& context, const store::Account& account, const httplib::Request&,
               httplib::Response& response) {
  for (const store::Job& job : generate_jobs(context, account.id, store::JobStatus::kRunning))
    context.jobs.cancel(account.id, job.id);
  send_json(response, 200, json::object());
}

// A1111's skip ends the image being made and goes on with the next of the request (A1111 ends
// the current batch; doppel makes a request's images one at a time).
void skip(Context& context, const store::Account& account, const httplib::Request&,
          httplib::Response& response) {
  for (const store::Job& job : generate_jobs(context, account.id, store::JobStatus::kRunning))
    context.jobs.skip_current(account.id, job.id);
  send_json(response, 200, json::object());
}

json options_json(Context& context, const std::string& account_id) {
  const AccountOptions options = options_of(context, account_id);
  return {{"sd_model_checkpoint", model_title(account_model(context, account_id))},
          {"sd_checkpoint_hash", nullptr},
          {"CLIP_stop_at_last_layers", options.clip_skip},
          {"sd_vae", options.vae},
          {"samples_format", "png"},
          {"enable_pnginfo", true},
          {"eta_ddim", 0.0},
          {"eta_ancestral", 1.0},
          {"sd_checkpoint_cache", 0},
          {"sd_vae_checkpoint_cache", 0}};
}

void set_options(Context& context, const store::Account& account, const httplib::Request& request,
                 httplib::Response& response) {
  const json body = parse_body(context, request);
  AccountOptions options = options_of(context, account.id);
  if (body.contains("sd_model_checkpoint") && !body["sd_model_checkpoint"].is_null()) {
    const std::string name = text_field(body, "sd_model_checkpoint", "");
    const auto model = find_model(context, name);
    if (!model)
      throw CompatError(
          404, "model '" + name + "' not found; GET /sdapi/v1/sd-models lists the checkpoints");
    options.model_id = model->id;
  }
  options.clip_skip =
      static_cast<int>(int_field(body, "CLIP_stop_at_last_layers", options.clip_skip, 1, 12));
  const std::string vae = text_field(body, "sd_vae", options.vae);
  if (vae != "Automatic" && vae != "None" &&
      !find_model_folder_file(context, "vae", vae, {".safetensors", ".pt", ".ckpt"}))
    throw CompatError(404, "VAE '" + vae + "' not found; GET /sdapi/v1/sd-vae lists them");
  options.vae = vae;
  {
    std::lock_guard lock(context.mutex);
    context.account_options[account.id] = options;
  }
  send_json(response, 200, nullptr);  // A1111 answers null; other keys are accepted, unused
}

json sd_models(Context& context) {
  json list = json::array();
  for (const store::Model& model : registered_models(context))
    list.push_back({{"title", model_title(model)},
                    {"model_name", model.name},
                    {"hash", nullptr},
                    {"sha256", nullptr},
                    {"filename", model.path},
                    {"config", nullptr}});
  return list;
}

json samplers() {
  json list = json::array();
  for (const SamplerInfo& sampler : sampler_registry())
    list.push_back(
        {{"name", a1111_sampler_name(sampler.name, false)},
         {"aliases", json::array({sampler.name})},
         {"options", sampler.supports_karras ? json{{"scheduler", "karras"}} : json::object()}});
  return list;
}

json schedulers() {
  auto entry = [](const char* name, const char* label, double rho) {
    return json{{"name", name},
                {"label", label},
                {"aliases", nullptr},
                {"default_rho", rho},
                {"need_inner_model", false}};
  };
  return json::array({entry("automatic", "Automatic", -1), entry("karras", "Karras", 7),
                      entry("uniform", "Uniform", -1), entry("sgm_uniform", "SGM Uniform", -1),
                      entry("normal", "Normal", -1), entry("ddim", "DDIM", -1)});
}

json upscalers() {
  json list = json::array();
  for (const char* name : {"None", "Lanczos", "Nearest"})
    list.push_back({{"name", name},
                    {"model_name", nullptr},
                    {"model_path", nullptr},
                    {"model_url", nullptr},
                    {"scale", 4}});
  return list;
}

json memory() {
  std::ifstream meminfo("/proc/meminfo");
  int64_t total = 0, available = 0;
  std::string key;
  int64_t kilobytes = 0;
  std::string unit;
  while (meminfo >> key >> kilobytes >> unit) {
    if (key == "MemTotal:") total = kilobytes * 1024;
    if (key == "MemAvailable:") available = kilobytes * 1024;
  }
  return {{"ram", {{"free", available}, {"used", total - available}, {"total", total}}},
          {"cuda", {{"error", "doppel computes on the CPU here (no CUDA device)"}}}};
}

void png_info(Context& context, const store::Account&, const httplib::Request& request,
              httplib::Response& response) {
  const json body = parse_body(context, request);
  const std::string bytes = picture_bytes(context, text_field(body, "image", ""), "image");
  json items = json::object();
  std::string parameters;
  if (sniff_image_header(bytes).format == ImageFormat::kPng) {
    for (const auto& [key, value] : read_png_text(bytes, "image")) {
      if (key == "parameters")
        parameters = value;
      else
        items[key] = value;
    }
  }
  send_json(
      response, 200,
      {{"info", parameters}, {"items", items}, {"parameters", parsed_parameters(parameters)}});
}

json controlnet_models(Context& context) {
  json names = json::array();
  for (const char* folder : {"controlnet", "ipadapter"})
    for (const auto& file :
         model_folder_files(context, folder, {".safetensors", ".pth", ".bin", ".pt"}))
      names.push_back(file.stem().string());
  return {{"model_list", names}};
}

void controlnet_detect(Context& context, const store::Account&, const httplib::Request& request,
                       httplib::Response& response) {
  const json body = parse_body(context, request);
  const std::string module = text_field(body, "controlnet_module", "none");
  const json images = body.value("controlnet_input_images", json::array());
  if (!images.is_array() || images.empty())
    throw CompatError(422, "controlnet_input_images must be a list of base64 pictures");
  json maps = json::array();
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string field = "controlnet_input_images[" + std::to_string(i) + "]";
    if (!images[i].is_string()) throw ValidationError(field, "str type expected", "type_error.str");
    const Image picture =
        decode_picture(context, picture_bytes(context, images[i].get<std::string>(), field), field);
    if (module == "none" || module == "None") {
      maps.push_back(base64_encode(encode_png(picture)));
    } else if (module == "canny") {
      maps.push_back(base64_encode(encode_png(
          canny_edge_map(picture, number_field(body, "controlnet_threshold_a", 100, 1, 255),
                         number_field(body, "controlnet_threshold_b", 200, 1, 255)))));
    } else {
      throw CompatError(422, "module '" + module +
                                 "' cannot preview here; /controlnet/detect has none and canny "
                                 "(openpose_faceonly runs inside generations)");
    }
  }
  send_json(response, 200, {{"images", maps}, {"info", "Success"}});
}

// Answers a fixed JSON value.
A1111Handler constant(json value) {
  return [value](Context&, const store::Account&, const httplib::Request&,
                 httplib::Response& response) { send_json(response, 200, value); };
}

A1111Handler unavailable(const std::string& what) {
  return [what](Context&, const store::Account&, const httplib::Request&, httplib::Response&) {
    throw CompatError(422, what + " is not available in doppel (docs/compat.md)");
  };
}

}  // namespace

void register_a1111_routes(const std::shared_ptr<Context>& context) {
  auto add = [&](const char* method, const char* path, const char* summary, A1111Handler handler) {
    context->add_route(method, path, summary, a1111_route(context, std::move(handler)));
  };
  auto files_json = [](Context& ctx, const char* folder, std::vector<std::string> extensions,
                       bool lora) {
    json list = json::array();
    for (const auto& file : model_folder_files(ctx, folder, extensions)) {
      if (lora)
        list.push_back({{"name", file.stem().string()},
                        {"alias", file.stem().string()},
                        {"path", file.string()},
                        {"metadata", json::object()}});
      else
        list.push_back({{"model_name", file.filename().string()}, {"filename", file.string()}});
    }
    return list;
  };
  add("POST", "/sdapi/v1/txt2img", "A1111: text to image",
      [](Context& c, const store::Account& a, const httplib::Request& q, httplib::Response& r) {
        generate(c, a, q, r, false);
      });
  add("POST", "/sdapi/v1/img2img", "A1111: image to image and inpainting",
      [](Context& c, const store::Account& a, const httplib::Request& q, httplib::Response& r) {
        generate(c, a, q, r, true);
      });
  add("GET", "/sdapi/v1/progress", "A1111: progress of the account's generation", progress);
  add("POST", "/sdapi/v1/interrupt", "A1111: stop the account's running generation", interrupt);
  add("POST", "/sdapi/v1/skip", "A1111: drop the image being made, go on with the next", skip);
  add("GET", "/sdapi/v1/options", "A1111: the account's options",
      [](Context& c, const store::Account& a, const httplib::Request&, httplib::Response& r) {
        send_json(r, 200, options_json(c, a.id));
      });
  add("POST", "/sdapi/v1/options", "A1111: set checkpoint, CLIP skip, VAE", set_options);
  add("GET", "/sdapi/v1/cmd-flags", "A1111: command-line flags",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        send_json(r, 200,
                  {{"api", true},
                   {"nowebui", c.options.web_dir.empty()},
                   {"listen", c.options.host != "127.0.0.1" && c.options.host != "localhost"},
                   {"port", c.options.port},
                   {"api_auth", nullptr},
                   {"lowvram", false},
                   {"medvram", false},
                   {"no_half", false},
                   {"xformers", false},
                   {"skip_torch_cuda_test", true}});
      });
  add("GET", "/sdapi/v1/samplers", "A1111: samplers", constant(samplers()));
  add("GET", "/sdapi/v1/schedulers", "A1111: schedulers", constant(schedulers()));
  add("GET", "/sdapi/v1/upscalers", "A1111: upscalers (hires fix)", constant(upscalers()));
  add("GET", "/sdapi/v1/latent-upscale-modes", "A1111: latent upscale modes",
      constant(json::array(
          {{{"name", "Latent"}}, {{"name", "Latent (nearest)"}}, {{"name", "Latent (bicubic)"}}})));
  add("GET", "/sdapi/v1/sd-models", "A1111: the registered checkpoints",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        send_json(r, 200, sd_models(c));
      });
  add("GET", "/sdapi/v1/sd-vae", "A1111: VAE files (models/vae)",
      [files_json](Context& c, const store::Account&, const httplib::Request&,
                   httplib::Response& r) {
        send_json(r, 200, files_json(c, "vae", {".safetensors", ".pt", ".ckpt"}, false));
      });
  add("GET", "/sdapi/v1/loras", "A1111: LoRA files (models/lora)",
      [files_json](Context& c, const store::Account&, const httplib::Request&,
                   httplib::Response& r) {
        send_json(r, 200, files_json(c, "lora", {".safetensors"}, true));
      });
  add("GET", "/sdapi/v1/embeddings", "A1111: textual-inversion embeddings",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        json loaded = json::object();
        for (const auto& file :
             model_folder_files(c, "embeddings", {".safetensors", ".pt", ".bin"}))
          loaded[file.stem().string()] = {{"step", nullptr},
                                          {"sd_checkpoint", nullptr},
                                          {"sd_checkpoint_name", nullptr},
                                          {"shape", nullptr},
                                          {"vectors", nullptr}};
        send_json(r, 200, {{"loaded", loaded}, {"skipped", json::object()}});
      });
  add("GET", "/sdapi/v1/prompt-styles", "A1111: prompt styles (doppel's style packs)",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        json list = json::array();
        for (const PromptStyle& style : prompt_styles(c.styles))
          list.push_back({{"name", style.name},
                          {"prompt", style.prompt},
                          {"negative_prompt", style.negative_prompt}});
        send_json(r, 200, list);
      });
  add("GET", "/sdapi/v1/face-restorers", "A1111: face restorers (restore_faces runs this)",
      constant(json::array({{{"name", "face detail"}, {"cmd_dir", nullptr}}})));
  add("GET", "/sdapi/v1/hypernetworks", "A1111: hypernetworks (none)", constant(json::array()));
  add("GET", "/sdapi/v1/realesrgan-models", "A1111: RealESRGAN (none)", constant(json::array()));
  add("GET", "/sdapi/v1/scripts", "A1111: scripts (none)",
      constant({{"txt2img", json::array()}, {"img2img", json::array()}}));
  add("GET", "/sdapi/v1/script-info", "A1111: scripts (none)", constant(json::array()));
  add("GET", "/sdapi/v1/extensions", "A1111: extensions (none)", constant(json::array()));
  add("GET", "/sdapi/v1/memory", "A1111: memory",
      [](Context&, const store::Account&, const httplib::Request&, httplib::Response& r) {
        send_json(r, 200, memory());
      });
  for (const char* path :
       {"/sdapi/v1/refresh-checkpoints", "/sdapi/v1/refresh-vae", "/sdapi/v1/refresh-loras",
        "/sdapi/v1/unload-checkpoint", "/sdapi/v1/reload-checkpoint"})
    add("POST", path, "A1111: nothing to do (folders are read on every request)",
        constant(nullptr));
  add("POST", "/sdapi/v1/png-info", "A1111: the parameters of a PNG", png_info);
  add("POST", "/sdapi/v1/interrogate", "A1111: interrogate (unavailable)",
      unavailable("interrogate (CLIP / DeepBooru captions)"));
  add("POST", "/sdapi/v1/extra-single-image", "A1111: extras (unavailable)",
      unavailable("extras (upscalers, face restorers)"));
  add("POST", "/sdapi/v1/extra-batch-images", "A1111: extras (unavailable)",
      unavailable("extras (upscalers, face restorers)"));
  add("GET", "/controlnet/version", "ControlNet extension: API version",
      constant({{"version", 2}}));
  add("GET", "/controlnet/model_list", "ControlNet extension: models",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        send_json(r, 200, controlnet_models(c));
      });
  add("GET", "/controlnet/module_list", "ControlNet extension: preprocessors",
      constant({{"module_list",
                 {"none", "canny", "openpose_faceonly", "ip-adapter_clip_sd15",
                  "ip-adapter_clip_sdxl", "ip-adapter_clip_sdxl_plus_vith"}}}));
  add("POST", "/controlnet/detect", "ControlNet extension: run a preprocessor", controlnet_detect);
}

}  // namespace doppel::server::compat
