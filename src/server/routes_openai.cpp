// OpenAI's Images API (/v1/images/generations, edits, variations) and /v1/models, answered in
// OpenAI's shapes and error bodies so its official clients work unchanged; API keys are
// doppel's bearer tokens (docs/compat.md). Generations go through the queue and the workers.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/log.hpp"
#include "server/a1111_request.hpp"
#include "server/auth.hpp"
#include "server/compat_support.hpp"
#include "server/http_support.hpp"

namespace doppel::server::compat {
namespace {

using nlohmann::json;
using OpenAiHandler = std::function<void(Context&, const store::Account&, const httplib::Request&,
                                         httplib::Response&)>;
constexpr int64_t kImageLinkMs = 3600'000;  // OpenAI's URLs are valid for an hour

void send_openai_error(httplib::Response& response, int status, const std::string& message,
                       const std::string& param, const std::string& code) {
  const std::string type = status == 401   ? "invalid_request_error"
                           : status == 429 ? "rate_limit_error"
                           : status >= 500 ? "server_error"
                                           : "invalid_request_error";
  send_json(response, status,
            {{"error",
              {{"message", message},
               {"type", type},
               {"param", param.empty() ? json(nullptr) : json(param)},
               {"code", code.empty() ? json(nullptr) : json(code)}}}});
}

RouteFunction openai_route(const std::shared_ptr<Context>& context, OpenAiHandler handler,
                           bool authenticated = true) {
  return [context, handler, authenticated](const httplib::Request& request,
                                           httplib::Response& response) {
    try {
      const store::Account account =
          authenticated ? authenticate(*context, request) : store::Account{};
      handler(*context, account, request, response);
    } catch (const ValidationError& error) {
      send_openai_error(response, 400, error.field() + ": " + error.what(), error.field(),
                        "invalid_type");
    } catch (const CompatError& error) {
      send_openai_error(response, error.status(), error.what(), error.param(), error.code());
    } catch (const Error& error) {
      const int status = http_status_for(error.code());
      if (status >= 500) log_error(request.method + " " + request.path + ": " + error.what());
      send_openai_error(
          response, status,
          status >= 500 ? "the server failed to answer; its log has the details" : error.what(), "",
          "");
    } catch (const std::exception& error) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_openai_error(response, 500, "the server failed to answer; its log has the details", "",
                        "");
    }
  };
}

// The request's fields, from a JSON body or (edits, variations) multipart form fields.
struct OpenAiRequest {
  json fields = json::object();
  std::map<std::string, std::string> files;  // image, mask: their bytes
};

OpenAiRequest read_multipart(const httplib::Request& request,
                             const std::vector<std::string>& names) {
  if (!request.is_multipart_form_data())
    throw CompatError(400, "send this request as multipart/form-data (image, prompt, ...)");
  OpenAiRequest parsed;
  for (const auto& [name, part] : request.files) {
    const std::string key = name == "image[]" ? "image" : name;
    if (std::find(names.begin(), names.end(), key) == names.end())
      throw CompatError(400, "Unrecognized request argument supplied: " + name, name,
                        "unknown_parameter");
    if (key == "image" || key == "mask") {
      if (!parsed.files.count(key)) parsed.files[key] = part.content;
    } else {
      // Form values are text: numbers are read as numbers where a number is expected.
      parsed.fields[key] = part.content;
    }
  }
  return parsed;
}

void check_fields(const json& body, const std::vector<std::string>& names) {
  for (const auto& item : body.items())
    if (std::find(names.begin(), names.end(), item.key()) == names.end())
      throw CompatError(400, "Unrecognized request argument supplied: " + item.key(), item.key(),
                        "unknown_parameter");
}

std::string string_param(const json& fields, const std::string& name, const std::string& fallback) {
  auto found = fields.find(name);
  if (found == fields.end() || found->is_null()) return fallback;
  if (!found->is_string())
    throw CompatError(400, "'" + name + "' must be a string", name, "invalid_type");
  return found->get<std::string>();
}

int64_t integer_param(const json& fields, const std::string& name, int64_t fallback, int64_t min,
                      int64_t max) {
  try {
    return int_field(fields, name, fallback, min, max);
  } catch (const ValidationError& error) {
    throw CompatError(400, "'" + name + "': " + error.what(), name,
                      error.type().rfind("type_error", 0) == 0 ? "invalid_type" : "invalid_value");
  }
}

// What every images request shares: model, n, size, quality, response format.
struct ImageSettings {
  services::GeneratePayload payload;
  std::string response_format = "b64_json";
  int64_t count = 1;
};

int64_t native_size(const store::Model& model) {
  if (model.builtin) return 64;
  return model.family == "sdxl" ? 1024 : 512;
}

ImageSettings read_settings(Context& context, const std::string& account_id, const json& fields,
                            std::optional<std::pair<int64_t, int64_t>> picture_size) {
  ImageSettings settings;
  services::GeneratePayload& payload = settings.payload;
  const std::string model_name = string_param(fields, "model", "");
  store::Model model = account_model(context, account_id);
  const bool openai_model = model_name.empty() || model_name.rfind("dall-e", 0) == 0 ||
                            model_name.rfind("gpt-image", 0) == 0;
  if (!openai_model) {
    auto found = find_model(context, model_name);
    if (!found)
      throw CompatError(404,
                        "The model '" + model_name +
                            "' does not exist; GET /v1/models lists this server's models",
                        "model", "model_not_found");
    model = *found;
  }
  payload.model_path = model.path;
  payload.clip_skip = options_of(context, account_id).clip_skip;
  settings.count = integer_param(fields, "n", 1, 1, 10);
  settings.response_format = string_param(fields, "response_format", "b64_json");
  if (settings.response_format != "b64_json" && settings.response_format != "url")
    throw CompatError(400, "'response_format' must be 'b64_json' or 'url'", "response_format",
                      "invalid_value");
  const std::string size = string_param(fields, "size", "auto");
  int64_t width = native_size(model), height = native_size(model);
  if (picture_size) std::tie(width, height) = *picture_size;
  if (size != "auto") {
    const size_t x = size.find('x');
    try {
      if (x == std::string::npos) throw std::invalid_argument(size);
      size_t used = 0;
      width = std::stoll(size.substr(0, x), &used);
      if (used != x) throw std::invalid_argument(size);
      height = std::stoll(size.substr(x + 1), &used);
      if (used != size.size() - x - 1) throw std::invalid_argument(size);
    } catch (const std::exception&) {
      throw CompatError(400, "'size' must be WIDTHxHEIGHT such as 1024x1024, or auto", "size",
                        "invalid_value");
    }
  }
  if (width < 64 || height < 64 || width > 2048 || height > 2048)
    throw CompatError(400, "'size' must be between 64x64 and 2048x2048", "size", "invalid_value");
  payload.width = width / 8 * 8;
  payload.height = height / 8 * 8;
  const std::string quality = string_param(fields, "quality", "auto");
  if (quality == "low")
    payload.steps = 12;
  else if (quality == "hd" || quality == "high")
    payload.steps = 40;
  else if (quality == "standard" || quality == "medium" || quality == "auto")
    payload.steps = 25;
  else
    throw CompatError(400, "'quality' must be low, medium, high, standard, hd or auto", "quality",
                      "invalid_value");
  payload.sampler = "dpmpp_2m";
  payload.karras = true;
  payload.guidance = 7.0;
  payload.seed = random_seed();
  payload.batch_size = settings.count;
  string_param(fields, "user", "");  // accepted: doppel's accounts already tell who asked
  if (string_param(fields, "output_format", "png") != "png")
    throw CompatError(400, "doppel returns PNG only; send output_format png", "output_format",
                      "invalid_value");
  if (string_param(fields, "background", "auto") == "transparent")
    throw CompatError(400, "transparent backgrounds are not supported", "background",
                      "invalid_value");
  return settings;
}

void respond_with_images(Context& context, const store::Account& account,
                         const ImageSettings& settings, const store::Job& job,
                         const httplib::Request& request, httplib::Response& response) {
  if (job.status == store::JobStatus::kCancelled)
    throw CompatError(409, "the generation was cancelled", "", "cancelled");
  const json result = json::parse(job.result_json.value_or("{}"), nullptr, false);
  json data = json::array();
  const json images = result.is_object() ? result.value("images", json::array()) : json::array();
  for (const json& sha : images) {
    json item = {{"revised_prompt", settings.payload.prompt}};
    if (settings.response_format == "url") {
      const std::string name = random_token();
      std::lock_guard lock(context.mutex);
      const int64_t now = store::unix_millis_now();
      for (auto it = context.image_links.begin(); it != context.image_links.end();)
        it = it->second.expires_at <= now ? context.image_links.erase(it) : std::next(it);
      context.image_links[name] = {account.id, sha.get<std::string>(), now + kImageLinkMs};
      // The address the client reached this server by.
      item["url"] =
          "http://" + request.get_header_value("Host") + "/v1/images/files/" + name + ".png";
    } else {
      item["b64_json"] = base64_encode(context.transient.get(sha.get<std::string>()));
    }
    data.push_back(item);
  }
  send_json(response, 200, {{"created", store::unix_millis_now() / 1000}, {"data", data}});
}

void generations(Context& context, const store::Account& account, const httplib::Request& request,
                 httplib::Response& response) {
  const json body = parse_body(context, request);
  check_fields(body, {"prompt", "model", "n", "quality", "response_format", "size", "style", "user",
                      "background", "moderation", "output_format", "output_compression", "stream",
                      "partial_images"});
  const std::string prompt = string_param(body, "prompt", "");
  if (prompt.empty())
    throw CompatError(400, "'prompt' is required", "prompt", "missing_required_parameter");
  if (prompt.size() > 32'000)
    throw CompatError(400, "'prompt' is longer than 32000 characters", "prompt", "invalid_value");
  if (body.value("stream", false) == true)
    throw CompatError(400, "streaming is not supported; leave 'stream' out", "stream",
                      "invalid_value");
  ImageSettings settings = read_settings(context, account.id, body, std::nullopt);
  services::GeneratePayload& payload = settings.payload;
  payload.prompt = prompt;
  const std::string style = string_param(body, "style", "vivid");
  if (style == "natural") {
    payload.guidance = 5.0;
  } else if (style != "vivid") {
    // A doppel style pack: its prompt around the request's, its sampler and settings.
    auto pack = std::find_if(context.styles.begin(), context.styles.end(),
                             [&](const StylePack& candidate) { return candidate.id == style; });
    if (pack == context.styles.end())
      throw CompatError(400, "'style' must be vivid, natural or a style pack id (GET /api/styles)",
                        "style", "invalid_value");
    payload.prompt = fill_prompt_template(pack->prompt, prompt);
    if (pack->prompt.find("{subject}") == std::string::npos)
      payload.prompt = prompt + ", " + pack->prompt;
    payload.negative_prompt = pack->negative_prompt;
    payload.sampler = pack->sampler;
    payload.karras = pack->karras;
    payload.guidance = pack->guidance;
    payload.clip_skip = pack->clip_skip;
    if (!body.contains("quality")) payload.steps = pack->steps;
  }
  respond_with_images(context, account, settings,
                      run_generation(context, account.id, payload, response), request, response);
}

// The alpha channel of a PNG as a repaint mask (OpenAI: fully transparent = edit here);
// nullopt when the picture has no alpha.
std::optional<Image> mask_from_alpha(const std::string& bytes) {
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<char*>(bytes.data()));
  const cv::Mat decoded = cv::imdecode(encoded, cv::IMREAD_UNCHANGED);
  if (decoded.empty() || decoded.channels() != 4) return std::nullopt;
  Image mask;
  mask.width = decoded.cols;
  mask.height = decoded.rows;
  mask.rgb.resize(static_cast<size_t>(mask.width) * mask.height * 3);
  bool any = false;
  for (int y = 0; y < decoded.rows; ++y)
    for (int x = 0; x < decoded.cols; ++x) {
      const bool transparent = decoded.depth() == CV_16U
                                   ? decoded.at<cv::Vec<uint16_t, 4>>(y, x)[3] == 0
                                   : decoded.at<cv::Vec4b>(y, x)[3] == 0;
      any = any || transparent;
      const uint8_t value = transparent ? 255 : 0;
      for (int c = 0; c < 3; ++c)
        mask.rgb[(static_cast<size_t>(y) * mask.width + x) * 3 + c] = value;
    }
  return any ? std::optional<Image>(mask) : std::nullopt;
}

std::string checked_file(Context& context, const OpenAiRequest& parsed, const std::string& name) {
  auto found = parsed.files.find(name);
  if (found == parsed.files.end())
    throw CompatError(400, "'" + name + "' is required (a PNG file)", name,
                      "missing_required_parameter");
  return picture_bytes(context, base64_encode(found->second), name);
}

void edits(Context& context, const store::Account& account, const httplib::Request& request,
           httplib::Response& response) {
  const OpenAiRequest parsed = read_multipart(
      request, {"image", "mask", "prompt", "n", "size", "response_format", "model", "user",
                "quality", "background", "output_format", "output_compression", "input_fidelity"});
  const std::string image_bytes = checked_file(context, parsed, "image");
  const Image image = decode_picture(context, image_bytes, "image");
  std::optional<Image> mask;
  if (parsed.files.count("mask")) {
    const std::string mask_bytes = checked_file(context, parsed, "mask");
    mask = mask_from_alpha(mask_bytes);
    if (!mask) {
      // No transparency: read it as a painted mask (white = repaint), as A1111 does.
      mask = decode_picture(context, mask_bytes, "mask");
    }
    if (mask->width != image.width || mask->height != image.height)
      throw CompatError(400, "the mask must have the same size as the image", "mask",
                        "invalid_value");
  } else {
    mask = mask_from_alpha(image_bytes);
    if (!mask)
      throw CompatError(400, "the image has no transparent area to edit and no mask was sent",
                        "mask", "missing_required_parameter");
  }
  const std::string prompt = string_param(parsed.fields, "prompt", "");
  if (prompt.empty())
    throw CompatError(400, "'prompt' is required", "prompt", "missing_required_parameter");
  ImageSettings settings = read_settings(
      context, account.id, parsed.fields,
      std::make_pair<int64_t, int64_t>(std::min(image.width, 2048), std::min(image.height, 2048)));
  services::GeneratePayload& payload = settings.payload;
  payload.prompt = prompt;
  payload.init_image_sha256 = context.transient.put(encode_png(image));
  payload.mask_sha256 = context.transient.put(encode_png(*mask));
  payload.strength = 1.0;
  respond_with_images(context, account, settings,
                      run_generation(context, account.id, payload, response), request, response);
}

void variations(Context& context, const store::Account& account, const httplib::Request& request,
                httplib::Response& response) {
  const OpenAiRequest parsed =
      read_multipart(request, {"image", "n", "size", "response_format", "model", "user"});
  const std::string image_bytes = checked_file(context, parsed, "image");
  const Image image = decode_picture(context, image_bytes, "image");
  ImageSettings settings = read_settings(
      context, account.id, parsed.fields,
      std::make_pair<int64_t, int64_t>(std::min(image.width, 2048), std::min(image.height, 2048)));
  services::GeneratePayload& payload = settings.payload;
  // A doppel or A1111 picture carries its prompt: variations keep to it.
  if (sniff_image_header(image_bytes).format == ImageFormat::kPng)
    for (const auto& [key, value] : read_png_text(image_bytes, "image"))
      if (key == "parameters") {
        const GenerationParameters parameters = GenerationParameters::parse(value);
        payload.prompt = parameters.prompt;
        payload.negative_prompt = parameters.negative_prompt;
      }
  payload.init_image_sha256 = context.transient.put(encode_png(image));
  payload.strength = 0.6;
  respond_with_images(context, account, settings,
                      run_generation(context, account.id, payload, response), request, response);
}

json model_object(const store::Model& model) {
  return {{"id", model.builtin ? model.name : model_title(model)},
          {"object", "model"},
          {"created", model.added_at / 1000},
          {"owned_by", "doppel"}};
}

}  // namespace

void register_openai_routes(const std::shared_ptr<Context>& context) {
  auto add = [&](const char* method, const char* path, const char* summary, OpenAiHandler handler,
                 bool authenticated = true) {
    context->add_route(method, path, summary,
                       openai_route(context, std::move(handler), authenticated));
  };
  add("POST", "/v1/images/generations", "OpenAI: create images from a prompt", generations);
  add("POST", "/v1/images/edits", "OpenAI: repaint the transparent or masked part of an image",
      edits);
  add("POST", "/v1/images/variations", "OpenAI: variations of an image", variations);
  add("GET", "/v1/models", "OpenAI: the registered checkpoints",
      [](Context& c, const store::Account&, const httplib::Request&, httplib::Response& r) {
        json data = json::array();
        for (const store::Model& model : registered_models(c)) data.push_back(model_object(model));
        send_json(r, 200, {{"object", "list"}, {"data", data}});
      });
  add("GET", "/v1/models/{model}", "OpenAI: one registered checkpoint",
      [](Context& c, const store::Account&, const httplib::Request& q, httplib::Response& r) {
        const auto model = find_model(c, q.matches[1]);
        if (!model)
          throw CompatError(404, "The model '" + std::string(q.matches[1]) + "' does not exist",
                            "model", "model_not_found");
        send_json(r, 200, model_object(*model));
      });
  // response_format "url": the link itself is the credential (random, valid for an hour), as
  // OpenAI's are, so it opens in a browser or an <img>.
  add(
      "GET", "/v1/images/files/{name}", "OpenAI: an image answered as a URL (valid one hour)",
      [](Context& c, const store::Account&, const httplib::Request& q, httplib::Response& r) {
        std::string name = q.matches[1];
        if (name.size() > 4 && name.substr(name.size() - 4) == ".png")
          name = name.substr(0, name.size() - 4);
        std::string sha;
        {
          std::lock_guard lock(c.mutex);
          auto link = c.image_links.find(name);
          if (link != c.image_links.end() && link->second.expires_at > store::unix_millis_now())
            sha = link->second.sha256;
        }
        if (sha.empty() || !c.transient.exists(sha))
          throw CompatError(404, "no such image (links are valid for an hour)", "", "not_found");
        r.set_content(c.transient.get(sha), "image/png");
      },
      false);
}

}  // namespace doppel::server::compat
