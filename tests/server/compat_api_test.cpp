// Contract tests of the compatible APIs (`doppel serve --compat-api`): request bodies of the
// shapes AUTOMATIC1111 and OpenAI clients send, hand-written from their documented schemas,
// replayed against a server with workers on the tiny built-in model; the answers are checked
// field by field, and bad bodies get the errors those APIs give.
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <future>
#include <thread>

#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "server/compat_support.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;
using server::compat::base64_decode;
using server::compat::base64_encode;

// A models folder with a tiny ControlNet for the built-in model.
fs::path make_models_folder(const fs::path& root) {
  const fs::path models = root / "compat-models";
  ControlNetConfig config;
  config.unet = make_tiny_stable_diffusion().unet->config();
  config.hint_channels = {16, 16, 32, 32};
  ControlNetModel control(config);
  layers::randomize_parameters(*control, 21);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : control->named_parameters())
    tensors[kControlNetPrefix + item.key()] = item.value().detach().clone();
  fs::create_directories(models / "controlnet");
  save_safetensors(models / "controlnet" / "tiny_canny.safetensors", tensors);
  return models;
}

server::ServerOptions compat_options(int max_queued = 32) {
  server::ServerOptions options;
  options.compat_api = true;
  options.max_queued_generations = max_queued;
  options.model_dirs = {make_models_folder(fresh_data_dir())};
  return options;
}

// A server with the compatible routes, its first account and (once started) a worker.
struct CompatServer {
  explicit CompatServer(server::ServerOptions options = compat_options())
      : server(std::move(options)), account(first_account(server)) {}
  void start_worker() {
    services::WorkerOptions options = server.worker_options();
    options.idle_poll_ms = 20;
    workers.emplace(options, 1);
  }
  TestServer server;
  ApiClient account;
  std::optional<services::WorkerPool> workers;
};

// The body the widely used A1111 clients send: every field, nulls for the unused ones.
json txt2img_body() {
  return {{"enable_hr", false},
          {"denoising_strength", 0.7},
          {"hr_scale", 2},
          {"hr_upscaler", "Latent"},
          {"hr_second_pass_steps", 0},
          {"hr_resize_x", 0},
          {"hr_resize_y", 0},
          {"firstphase_width", 0},
          {"prompt", "a portrait of a woman"},
          {"styles", json::array()},
          {"seed", 42},
          {"subseed", -1},
          {"subseed_strength", 0.0},
          {"seed_resize_from_h", 0},
          {"seed_resize_from_w", 0},
          {"sampler_name", "DPM++ 2M"},
          {"scheduler", "Karras"},
          {"batch_size", 2},
          {"n_iter", 1},
          {"steps", 4},
          {"cfg_scale", 7.0},
          {"width", 64},
          {"height", 64},
          {"restore_faces", false},
          {"tiling", false},
          {"do_not_save_samples", false},
          {"negative_prompt", "blurry"},
          {"eta", 1.0},
          {"s_churn", 0},
          {"override_settings", json::object()},
          {"override_settings_restore_afterwards", true},
          {"script_args", json::array()},
          {"script_name", nullptr},
          {"send_images", true},
          {"save_images", false},
          {"alwayson_scripts", json::object()},
          {"use_deprecated_controlnet", false}};
}

Image gradient(int width, int height) {
  Image image{width, height, std::vector<uint8_t>(size_t(width) * height * 3)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c)
        image.rgb[(size_t(y) * width + x) * 3 + c] = uint8_t((x * 4 + y * 2 + c * 60) % 256);
  return image;
}

std::string data_url(const Image& image) {
  return "data:image/png;base64," + base64_encode(encode_png(image));
}

std::string parameters_of(const std::string& png) {
  for (const auto& [key, value] : read_png_text(png))
    if (key == "parameters") return value;
  return "";
}

std::string basic(const std::string& user, const std::string& password) {
  return "Basic " + base64_encode(user + ":" + password);
}

std::string bearer_of(ApiClient& client) {
  return client.headers().find("Authorization")->second;
}

TEST(CompatApi, RoutesAreOffUnlessEnabled) {
  TestServer server;
  ApiClient account = first_account(server);
  EXPECT_EQ(account.post("/sdapi/v1/txt2img", txt2img_body()).status, 404);
  EXPECT_EQ(account.get("/sdapi/v1/sd-models").status, 404);
  EXPECT_EQ(account.get("/v1/models").status, 404);
}

TEST(CompatApi, Base64RoundTripsAndRefusesGarbage) {
  for (const std::string& text :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(text)).value(), text);
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(base64_decode("aGVs*G8=").has_value());
  EXPECT_FALSE(base64_decode("aGVsbG8=aa").has_value());
  EXPECT_FALSE(base64_decode("a").has_value());
}

TEST(CompatApi, Txt2imgAnswersLikeA1111) {
  CompatServer compat;
  compat.start_worker();
  const Answer answer = compat.account.post("/sdapi/v1/txt2img", txt2img_body());
  ASSERT_EQ(answer.status, 200) << answer.raw;
  ASSERT_EQ(answer.body["images"].size(), 2u);
  EXPECT_EQ(answer.body["parameters"]["prompt"], "a portrait of a woman");
  ASSERT_TRUE(answer.body["info"].is_string());
  const json info = json::parse(answer.body["info"].get<std::string>());
  EXPECT_EQ(info["seed"], 42);
  EXPECT_EQ(info["all_seeds"], json::array({42, 43}));
  EXPECT_EQ(info["all_prompts"].size(), 2u);
  EXPECT_EQ(info["width"], 64);
  EXPECT_EQ(info["steps"], 4);
  EXPECT_EQ(info["sampler_name"], "DPM++ 2M Karras");
  EXPECT_EQ(info["sd_model_name"], kTinyModelName);
  ASSERT_EQ(info["infotexts"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const std::string png = base64_decode(answer.body["images"][i].get<std::string>()).value();
    const Image image = decode_image(png);
    EXPECT_EQ(image.width, 64);
    EXPECT_EQ(image.height, 64);
    const std::string parameters = parameters_of(png);
    EXPECT_EQ(parameters, info["infotexts"][i].get<std::string>());
    const auto parsed = GenerationParameters::parse(parameters);
    EXPECT_EQ(parsed.prompt, "a portrait of a woman");
    EXPECT_EQ(parsed.get("Seed").value_or(""), std::to_string(42 + i));
    EXPECT_EQ(parsed.get("Sampler").value_or(""), "DPM++ 2M Karras");
    EXPECT_EQ(parsed.get("Steps").value_or(""), "4");
  }
  // The same seed gives the same picture; -1 draws a seed and reports it.
  json again = txt2img_body();
  again["batch_size"] = 1;
  const Answer same = compat.account.post("/sdapi/v1/txt2img", again);
  ASSERT_EQ(same.status, 200) << same.raw;
  EXPECT_EQ(decode_image(base64_decode(same.body["images"][0].get<std::string>()).value()).rgb,
            decode_image(base64_decode(answer.body["images"][0].get<std::string>()).value()).rgb);
  again["seed"] = -1;
  again["send_images"] = false;
  const Answer random = compat.account.post("/sdapi/v1/txt2img", again);
  ASSERT_EQ(random.status, 200) << random.raw;
  EXPECT_TRUE(random.body["images"].empty());
  EXPECT_GE(json::parse(random.body["info"].get<std::string>())["seed"].get<int64_t>(), 0);
  // restore_faces runs the face-detail pass (a picture without a face keeps its pixels).
  again["restore_faces"] = true;
  again["send_images"] = true;
  const Answer restored = compat.account.post("/sdapi/v1/txt2img", again);
  ASSERT_EQ(restored.status, 200) << restored.raw;
  EXPECT_EQ(json::parse(restored.body["info"].get<std::string>())["restore_faces"], true);
  again["restore_faces"] = false;
  // The hires fix doubles the size.
  again["enable_hr"] = true;
  again["send_images"] = true;
  const Answer hires = compat.account.post("/sdapi/v1/txt2img", again);
  ASSERT_EQ(hires.status, 200) << hires.raw;
  EXPECT_EQ(decode_image(base64_decode(hires.body["images"][0].get<std::string>()).value()).width,
            128);
}

TEST(CompatApi, Img2imgInpaintsOnlyTheMask) {
  CompatServer compat;
  compat.start_worker();
  const Image init = gradient(64, 64);
  Image mask{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) mask.rgb[(size_t(y) * 64 + x) * 3 + c] = 255;
  json body = txt2img_body();
  body["batch_size"] = 1;
  body["init_images"] = {data_url(init)};
  body["mask"] = base64_encode(encode_png(mask));
  body["denoising_strength"] = 0.9;
  body["inpaint_full_res"] = 0;
  body["mask_blur"] = 2;
  body["resize_mode"] = 0;
  body["include_init_images"] = false;
  const Answer answer = compat.account.post("/sdapi/v1/img2img", body);
  ASSERT_EQ(answer.status, 200) << answer.raw;
  EXPECT_TRUE(answer.body["parameters"]["init_images"].is_null());
  const Image result =
      decode_image(base64_decode(answer.body["images"][0].get<std::string>()).value());
  ASSERT_EQ(result.width, 64);
  int changed_kept = 0, changed_masked = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const size_t at = (size_t(y) * 64 + x) * 3;
      const bool differs = result.rgb[at] != init.rgb[at] || result.rgb[at + 1] != init.rgb[at + 1];
      if (x >= 40) changed_kept += differs;
      if (x < 16) changed_masked += differs;
    }
  EXPECT_EQ(changed_kept, 0);      // far from the mask: exactly the init image
  EXPECT_GT(changed_masked, 500);  // inside it: repainted
  // A missing init image is A1111's 404.
  body.erase("init_images");
  EXPECT_EQ(compat.account.post("/sdapi/v1/img2img", body).status, 404);
}

TEST(CompatApi, ControlNetUnitsSteerTheGeneration) {
  CompatServer compat;
  compat.start_worker();
  const Answer models = compat.account.get("/controlnet/model_list");
  ASSERT_EQ(models.status, 200) << models.raw;
  EXPECT_EQ(models.body["model_list"], json::array({"tiny_canny"}));
  EXPECT_NE(compat.account.get("/controlnet/module_list").raw.find("canny"), std::string::npos);
  const Answer detect = compat.account.post(
      "/controlnet/detect",
      {{"controlnet_module", "canny"},
       {"controlnet_input_images", {base64_encode(encode_png(gradient(64, 64)))}},
       {"controlnet_threshold_a", 50},
       {"controlnet_threshold_b", 120}});
  ASSERT_EQ(detect.status, 200) << detect.raw;
  EXPECT_EQ(decode_image(base64_decode(detect.body["images"][0].get<std::string>()).value()).width,
            64);

  json body = txt2img_body();
  body["batch_size"] = 1;
  const Answer plain = compat.account.post("/sdapi/v1/txt2img", body);
  body["alwayson_scripts"] = {{"controlnet",
                               {{"args",
                                 {{{"enabled", true},
                                   {"module", "canny"},
                                   {"model", "tiny_canny [0123abcd]"},
                                   {"weight", 1.5},
                                   {"image", base64_encode(encode_png(gradient(64, 64)))},
                                   {"guidance_start", 0.0},
                                   {"guidance_end", 1.0},
                                   {"control_mode", "Balanced"}}}}}}};
  const Answer steered = compat.account.post("/sdapi/v1/txt2img", body);
  ASSERT_EQ(plain.status, 200) << plain.raw;
  ASSERT_EQ(steered.status, 200) << steered.raw;
  const std::string png = base64_decode(steered.body["images"][0].get<std::string>()).value();
  EXPECT_NE(parameters_of(png).find("ControlNet 0"), std::string::npos) << parameters_of(png);
  EXPECT_NE(decode_image(png).rgb,
            decode_image(base64_decode(plain.body["images"][0].get<std::string>()).value()).rgb);
  body["alwayson_scripts"]["controlnet"]["args"][0]["model"] = "no_such_control";
  const Answer missing = compat.account.post("/sdapi/v1/txt2img", body);
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.value("detail", "").find("no_such_control"), std::string::npos);
  body["alwayson_scripts"] = {{"Dynamic Prompts", {{"args", json::array()}}}};
  EXPECT_EQ(compat.account.post("/sdapi/v1/txt2img", body).status, 422);
}

TEST(CompatApi, BadBodiesGetA1111Errors) {
  server::ServerOptions options = compat_options();
  options.max_photo_pixels = 1000;  // so a 64x64 picture is "too large"
  CompatServer compat(options);
  auto post = [&](json body, const std::string& path = "/sdapi/v1/txt2img") {
    return compat.account.post(path, body);
  };
  json body = txt2img_body();
  body["steps"] = "many";
  Answer answer = post(body);
  EXPECT_EQ(answer.status, 422);
  EXPECT_EQ(answer.body["detail"][0]["loc"], json::array({"body", "steps"}));
  EXPECT_EQ(answer.body["detail"][0]["type"], "type_error.integer");
  body = txt2img_body();
  body["width"] = json::array({64});
  EXPECT_EQ(post(body).status, 422);
  body = txt2img_body();
  body["cfg_scale"] = 500;
  EXPECT_EQ(post(body).status, 422);
  body = txt2img_body();
  body["sampler_name"] = "Euler b";
  answer = post(body);
  EXPECT_EQ(answer.status, 404);
  EXPECT_NE(answer.body.value("detail", "").find("Sampler not found"), std::string::npos);
  EXPECT_EQ(answer.body.value("error", ""), "HTTPException");
  body = txt2img_body();
  body["scheduler"] = "Exponential";
  EXPECT_EQ(post(body).status, 422);
  body = txt2img_body();
  body["override_settings"] = {{"sd_model_checkpoint", "sd_xl_base_1.0.safetensors [31e35c80fc]"}};
  EXPECT_EQ(post(body).status, 404);
  body = txt2img_body();
  body["tiling"] = true;
  EXPECT_EQ(post(body).status, 422);
  body = txt2img_body();
  body["styles"] = {"no such style"};
  EXPECT_EQ(post(body).status, 422);
  body = txt2img_body();
  body["init_images"] = {"!!! not base64 !!!"};
  EXPECT_EQ(post(body, "/sdapi/v1/img2img").status, 400);
  body["init_images"] = {base64_encode("plain text, no picture")};
  EXPECT_EQ(post(body, "/sdapi/v1/img2img").status, 400);
  body["init_images"] = {base64_encode(encode_png(gradient(64, 64)))};
  EXPECT_EQ(post(body, "/sdapi/v1/img2img").status, 413);
  EXPECT_EQ(compat.account.post_raw("/sdapi/v1/txt2img", "{not json").status, 400);
}

TEST(CompatApi, InformationRoutes) {
  CompatServer compat;
  ApiClient& client = compat.account;
  const Answer samplers = client.get("/sdapi/v1/samplers");
  ASSERT_EQ(samplers.status, 200);
  std::set<std::string> names;
  for (const json& sampler : samplers.body) names.insert(sampler["name"].get<std::string>());
  EXPECT_TRUE(names.count("Euler a") && names.count("DPM++ 2M") && names.count("DDIM"));
  EXPECT_NE(client.get("/sdapi/v1/schedulers").raw.find("\"Karras\""), std::string::npos);
  const Answer models = client.get("/sdapi/v1/sd-models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body[0]["title"], kTinyModelName);
  EXPECT_TRUE(models.body[0].contains("model_name") && models.body[0].contains("hash"));
  const Answer styles = client.get("/sdapi/v1/prompt-styles");
  ASSERT_EQ(styles.status, 200);
  ASSERT_FALSE(styles.body.empty());
  EXPECT_NE(styles.body[0]["prompt"].get<std::string>().find("{prompt}"), std::string::npos);
  EXPECT_EQ(client.get("/sdapi/v1/face-restorers").body[0]["name"], "face detail");
  EXPECT_EQ(client.get("/sdapi/v1/upscalers").body[0]["name"], "None");
  EXPECT_GT(client.get("/sdapi/v1/memory").body["ram"]["total"].get<int64_t>(), 0);
  EXPECT_EQ(client.get("/sdapi/v1/cmd-flags").body["api"], true);
  EXPECT_TRUE(client.get("/sdapi/v1/loras").body.is_array());
  EXPECT_TRUE(client.get("/sdapi/v1/embeddings").body["loaded"].is_object());
  EXPECT_EQ(client.post("/sdapi/v1/refresh-checkpoints").status, 200);
  EXPECT_EQ(client.post("/sdapi/v1/interrogate", {{"image", ""}}).status, 422);
  const Answer idle = client.get("/sdapi/v1/progress");
  ASSERT_EQ(idle.status, 200);
  EXPECT_EQ(idle.body["progress"], 0.0);
  EXPECT_EQ(idle.body["state"]["job_count"], 0);
  EXPECT_TRUE(idle.body.contains("current_image") && idle.body.contains("eta_relative"));
  // png-info reads the parameters chunk.
  Image image = gradient(16, 16);
  const std::string png = encode_png(image, {{"parameters",
                                              "a cat\nNegative prompt: dog\nSteps: 7, Sampler: "
                                              "Euler a, CFG scale: 7, Seed: 1, Size: 16x16"}});
  const Answer info = client.post("/sdapi/v1/png-info", {{"image", base64_encode(png)}});
  ASSERT_EQ(info.status, 200) << info.raw;
  EXPECT_EQ(info.body["parameters"]["Steps"], "7");
  EXPECT_EQ(info.body["parameters"]["Size-1"], "16");
  EXPECT_EQ(info.body["parameters"]["Prompt"], "a cat");
}

TEST(CompatApi, OptionsAreTheAccountsOwn) {
  CompatServer compat;
  ApiClient other = another_account(compat.server, compat.account);
  Answer options = compat.account.get("/sdapi/v1/options");
  ASSERT_EQ(options.status, 200);
  EXPECT_EQ(options.body["sd_model_checkpoint"], kTinyModelName);
  EXPECT_EQ(options.body["CLIP_stop_at_last_layers"], 1);
  EXPECT_EQ(options.body["sd_vae"], "Automatic");
  EXPECT_EQ(compat.account
                .post("/sdapi/v1/options", {{"CLIP_stop_at_last_layers", 2},
                                            {"sd_model_checkpoint", kTinyModelName},
                                            {"show_progressbar", true}})
                .status,
            200);
  EXPECT_EQ(compat.account.get("/sdapi/v1/options").body["CLIP_stop_at_last_layers"], 2);
  EXPECT_EQ(other.get("/sdapi/v1/options").body["CLIP_stop_at_last_layers"], 1);
  EXPECT_EQ(compat.account.post("/sdapi/v1/options", {{"sd_model_checkpoint", "nope"}}).status,
            404);
  EXPECT_EQ(compat.account.post("/sdapi/v1/options", {{"sd_vae", "nope.safetensors"}}).status, 404);
  EXPECT_EQ(compat.account.post("/sdapi/v1/options", {{"CLIP_stop_at_last_layers", 40}}).status,
            422);
}

TEST(CompatApi, SignsInWithBasicOrBearer) {
  CompatServer compat;
  ApiClient anonymous(compat.server, {});
  Answer answer = anonymous.get("/sdapi/v1/sd-models");
  EXPECT_EQ(answer.status, 401);
  bool challenge = false;
  for (const auto& [name, value] : answer.headers)
    challenge = challenge || (name == "WWW-Authenticate" && value == "Basic");
  EXPECT_TRUE(challenge);
  const std::string token = bearer_of(compat.account).substr(7);
  EXPECT_EQ(ApiClient(compat.server,
                      {{"Authorization", basic("ada@example.com", "correct horse battery")}})
                .get("/sdapi/v1/sd-models")
                .status,
            200);
  EXPECT_EQ(ApiClient(compat.server,
                      {{"Authorization", basic("ADA@example.com ", "correct horse battery")}})
                .get("/sdapi/v1/options")
                .status,
            200);
  EXPECT_EQ(ApiClient(compat.server, {{"Authorization", basic("anyone", token)}})
                .get("/sdapi/v1/sd-models")
                .status,
            200);
  EXPECT_EQ(ApiClient(compat.server, {{"Authorization", basic("ada@example.com", "wrong")}})
                .get("/sdapi/v1/sd-models")
                .status,
            401);
  EXPECT_EQ(ApiClient(compat.server, {{"Authorization", "Bearer " + std::string(64, 'a')}})
                .get("/v1/models")
                .status,
            401);
  const Answer openai = ApiClient(compat.server, {}).get("/v1/models");
  EXPECT_EQ(openai.status, 401);
  EXPECT_EQ(openai.body["error"]["code"], "invalid_api_key");
  EXPECT_EQ(openai.body["error"]["type"], "invalid_request_error");
}

// One account's generation is invisible to another, whose interrupt does not touch it.
TEST(CompatApi, AccountsSeeAndStopOnlyTheirOwnGenerations) {
  CompatServer compat;
  ApiClient other = another_account(compat.server, compat.account);
  json body = txt2img_body();
  body["batch_size"] = 1;
  auto waiting = std::async(std::launch::async, [&] {
    ApiClient client(compat.server, compat.account.headers());
    return client.post("/sdapi/v1/txt2img", body);
  });
  json progress;
  for (int tries = 0; tries < 200; ++tries) {
    progress = compat.account.get("/sdapi/v1/progress").body;
    if (progress["state"]["job_count"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(progress["state"]["job_count"], 1);
  EXPECT_EQ(other.get("/sdapi/v1/progress").body["state"]["job_count"], 0);
  EXPECT_EQ(other.post("/sdapi/v1/interrupt").status, 200);
  EXPECT_EQ(compat.account.get("/sdapi/v1/progress").body["state"]["job_count"], 1);
  compat.start_worker();
  const Answer answer = waiting.get();
  ASSERT_EQ(answer.status, 200) << answer.raw;
  EXPECT_EQ(answer.body["images"].size(), 1u);
}

TEST(CompatApi, AFullQueueAnswers503WithRetryAfter) {
  CompatServer compat(compat_options(1));
  json body = txt2img_body();
  body["batch_size"] = 1;
  auto waiting = std::async(std::launch::async, [&] {
    ApiClient client(compat.server, compat.account.headers());
    return client.post("/sdapi/v1/txt2img", body);
  });
  for (int tries = 0; tries < 200; ++tries) {
    if (compat.account.get("/sdapi/v1/progress").body["state"]["job_count"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const Answer refused = compat.account.post("/sdapi/v1/txt2img", body);
  EXPECT_EQ(refused.status, 503);
  std::string retry_after;
  for (const auto& [name, value] : refused.headers)
    if (name == "Retry-After") retry_after = value;
  EXPECT_FALSE(retry_after.empty());
  const Answer openai = compat.account.post("/v1/images/generations",
                                            {{"prompt", "a cat"}, {"size", "64x64"}, {"n", 1}});
  EXPECT_EQ(openai.status, 503);
  EXPECT_EQ(openai.body["error"]["code"], "queue_full");
  compat.start_worker();
  EXPECT_EQ(waiting.get().status, 200);
}

// An RGBA PNG whose left half is transparent (OpenAI's edit area).
std::string half_transparent_png() {
  cv::Mat picture(64, 64, CV_8UC4, cv::Scalar(40, 120, 200, 255));
  picture(cv::Rect(0, 0, 32, 64)).setTo(cv::Scalar(0, 0, 0, 0));
  std::vector<uchar> bytes;
  cv::imencode(".png", picture, bytes);
  return std::string(bytes.begin(), bytes.end());
}

TEST(CompatApi, OpenAiImagesApi) {
  CompatServer compat;
  compat.start_worker();
  ApiClient& client = compat.account;
  const Answer models = client.get("/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["object"], "list");
  EXPECT_EQ(models.body["data"][0]["id"], kTinyModelName);
  EXPECT_EQ(models.body["data"][0]["object"], "model");
  EXPECT_EQ(client.get(std::string("/v1/models/") + kTinyModelName).status, 200);

  const Answer created = client.post("/v1/images/generations", {{"model", "dall-e-2"},
                                                                {"prompt", "a lighthouse"},
                                                                {"n", 2},
                                                                {"size", "64x64"},
                                                                {"quality", "low"},
                                                                {"response_format", "b64_json"},
                                                                {"user", "tester"}});
  ASSERT_EQ(created.status, 200) << created.raw;
  EXPECT_GT(created.body["created"].get<int64_t>(), 1'600'000'000);
  ASSERT_EQ(created.body["data"].size(), 2u);
  const std::string png =
      base64_decode(created.body["data"][0]["b64_json"].get<std::string>()).value();
  EXPECT_EQ(decode_image(png).width, 64);
  EXPECT_NE(parameters_of(png).find("a lighthouse"), std::string::npos);

  const Answer linked = client.post("/v1/images/generations", {{"prompt", "a lighthouse"},
                                                               {"size", "64x64"},
                                                               {"response_format", "url"},
                                                               {"style", "natural"}});
  ASSERT_EQ(linked.status, 200) << linked.raw;
  const std::string url = linked.body["data"][0]["url"];
  const std::string path = url.substr(url.find("/v1/images/files/"));
  const Answer file = ApiClient(compat.server, {}).get(path);  // the link is the credential
  EXPECT_EQ(file.status, 200);
  EXPECT_EQ(decode_image(file.raw).width, 64);
  EXPECT_EQ(
      ApiClient(compat.server, {}).get("/v1/images/files/" + std::string(64, 'f') + ".png").status,
      404);

  // Errors in OpenAI's shape.
  Answer error = client.post("/v1/images/generations", {{"size", "64x64"}});
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.body["error"]["param"], "prompt");
  EXPECT_EQ(error.body["error"]["type"], "invalid_request_error");
  error = client.post("/v1/images/generations", {{"prompt", "x"}, {"colour", "red"}});
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.body["error"]["code"], "unknown_parameter");
  error = client.post("/v1/images/generations", {{"prompt", "x"}, {"n", "lots"}});
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.body["error"]["param"], "n");
  error = client.post("/v1/images/generations", {{"prompt", "x"}, {"size", "big"}});
  EXPECT_EQ(error.body["error"]["param"], "size");
  error = client.post("/v1/images/generations", {{"prompt", "x"}, {"model", "sd9"}});
  EXPECT_EQ(error.status, 404);
  EXPECT_EQ(error.body["error"]["code"], "model_not_found");

  // Edits repaint the transparent half only; variations keep the size.
  httplib::MultipartFormDataItems edit = {
      {"image", half_transparent_png(), "image.png", "image/png"},
      {"prompt", "a red door", "", ""},
      {"n", "1", "", ""},
      {"response_format", "b64_json", "", ""}};
  const Answer edited = client.upload("/v1/images/edits", edit);
  ASSERT_EQ(edited.status, 200) << edited.raw;
  const Image result =
      decode_image(base64_decode(edited.body["data"][0]["b64_json"].get<std::string>()).value());
  ASSERT_EQ(result.width, 64);
  const size_t kept = (size_t(10) * 64 + 60) * 3;  // an opaque pixel far from the edit
  EXPECT_EQ(result.rgb[kept], 200);
  EXPECT_EQ(result.rgb[kept + 1], 120);
  EXPECT_EQ(result.rgb[kept + 2], 40);
  httplib::MultipartFormDataItems opaque = {
      {"image", encode_png(gradient(64, 64)), "image.png", "image/png"},
      {"prompt", "a red door", "", ""}};
  error = client.upload("/v1/images/edits", opaque);
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.body["error"]["param"], "mask");
  httplib::MultipartFormDataItems variation = {{"image", png, "image.png", "image/png"},
                                               {"n", "1", "", ""}};
  const Answer varied = client.upload("/v1/images/variations", variation);
  ASSERT_EQ(varied.status, 200) << varied.raw;
  EXPECT_EQ(
      decode_image(base64_decode(varied.body["data"][0]["b64_json"].get<std::string>()).value())
          .width,
      64);
}

// A1111's current_image: the running job's Approx cheap preview (a PNG at the latents' size),
// null once nothing runs.
TEST(CompatApi, ProgressShowsTheLivePreviewWhileAJobRuns) {
  CompatServer compat;
  compat.start_worker();
  json body = txt2img_body();
  body["batch_size"] = 1;
  body["steps"] = 150;  // slow enough to be seen running
  body["sampler_name"] = "Euler";
  auto waiting = std::async(std::launch::async, [&] {
    ApiClient client(compat.server, compat.account.headers());
    return client.post("/sdapi/v1/txt2img", body);
  });
  std::optional<Image> preview;
  json seen;
  for (int tries = 0; tries < 1000 && !preview; ++tries) {
    seen = compat.account.get("/sdapi/v1/progress").body;
    if (seen["current_image"].is_string()) {
      const auto png = base64_decode(seen["current_image"].get<std::string>());
      ASSERT_TRUE(png.has_value());
      preview = decode_image(*png);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_TRUE(preview.has_value()) << "no preview seen; last progress: " << seen.dump();
  EXPECT_EQ(preview->width, 8);  // 64 / 8: the latents' size
  EXPECT_EQ(preview->height, 8);
  // The preview's name is not part of what A1111 clients read as text.
  EXPECT_EQ(seen["textinfo"].get<std::string>().find("preview"), std::string::npos)
      << seen["textinfo"];
  EXPECT_GT(seen["state"]["sampling_step"].get<int>(), 0);
  // Nor of what the studio's job list shows.
  for (const json& job : compat.account.get("/api/jobs").body["jobs"])
    EXPECT_EQ(job["progress_message"].get<std::string>().find("preview"), std::string::npos)
        << job["progress_message"];
  const Answer answer = waiting.get();
  ASSERT_EQ(answer.status, 200) << answer.raw;
  const Answer idle = compat.account.get("/sdapi/v1/progress");
  EXPECT_TRUE(idle.body["current_image"].is_null());
}

// A1111's skip drops the image being made; the request answers with the others.
TEST(CompatApi, SkipDropsTheImageBeingMadeAndTheRequestGoesOn) {
  CompatServer compat;
  compat.start_worker();
  json body = txt2img_body();
  body["batch_size"] = 3;
  body["steps"] = 150;  // slow enough to be seen running
  body["sampler_name"] = "Euler";
  auto waiting = std::async(std::launch::async, [&] {
    ApiClient client(compat.server, compat.account.headers());
    return client.post("/sdapi/v1/txt2img", body);
  });
  json seen;
  for (int tries = 0; tries < 1000; ++tries) {
    seen = compat.account.get("/sdapi/v1/progress").body;
    if (seen["state"]["sampling_step"].get<int>() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(seen["state"]["sampling_step"].get<int>(), 0) << seen.dump();
  EXPECT_EQ(compat.account.post("/sdapi/v1/skip").status, 200);
  const Answer answer = waiting.get();
  ASSERT_EQ(answer.status, 200) << answer.raw;
  EXPECT_EQ(answer.body["images"].size(), 2u);
  const json info = json::parse(answer.body["info"].get<std::string>());
  EXPECT_EQ(info["all_seeds"].size(), 2u);
}

Image decoded_image(const Answer& answer, size_t index) {
  return decode_image(base64_decode(answer.body["images"][index].get<std::string>()).value());
}

double mean_difference(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) sum += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return sum / static_cast<double>(a.rgb.size());
}

TEST(CompatApi, SubseedsMakeVariationsAsA1111) {
  CompatServer compat;
  compat.start_worker();
  json body = txt2img_body();
  body["batch_size"] = 1;
  body["sampler_name"] = "Euler";  // deterministic: strength 1 is the subseed's own picture
  body["scheduler"] = "Automatic";
  const Answer plain = compat.account.post("/sdapi/v1/txt2img", body);
  json other = body;
  other["seed"] = 7;
  const Answer seven = compat.account.post("/sdapi/v1/txt2img", other);
  body["subseed"] = 7;
  body["subseed_strength"] = 0.0;
  const Answer none = compat.account.post("/sdapi/v1/txt2img", body);
  body["subseed_strength"] = 1.0;
  const Answer full = compat.account.post("/sdapi/v1/txt2img", body);
  body["subseed_strength"] = 0.5;
  body["batch_size"] = 2;
  const Answer half = compat.account.post("/sdapi/v1/txt2img", body);
  for (const Answer* answer : {&plain, &seven, &none, &full, &half})
    ASSERT_EQ(answer->status, 200) << answer->raw;
  EXPECT_EQ(decoded_image(none, 0).rgb, decoded_image(plain, 0).rgb);
  EXPECT_LT(mean_difference(decoded_image(full, 0), decoded_image(seven, 0)), 0.5);
  EXPECT_GT(mean_difference(decoded_image(half, 0), decoded_image(plain, 0)), 0.5);
  EXPECT_GT(mean_difference(decoded_image(half, 0), decoded_image(seven, 0)), 0.5);
  // Both images keep the seed; the subseed counts up (A1111's all_seeds / all_subseeds).
  const json info = json::parse(half.body["info"].get<std::string>());
  EXPECT_EQ(info["all_seeds"], json::array({42, 42}));
  EXPECT_EQ(info["all_subseeds"], json::array({7, 8}));
  EXPECT_EQ(info["subseed_strength"], 0.5);
  const std::string text =
      parameters_of(base64_decode(half.body["images"][1].get<std::string>()).value());
  EXPECT_NE(text.find("Seed: 42,"), std::string::npos) << text;
  EXPECT_NE(text.find("Variation seed: 8, Variation seed strength: 0.5"), std::string::npos)
      << text;
  EXPECT_EQ(parameters_of(base64_decode(none.body["images"][0].get<std::string>()).value())
                .find("Variation seed"),
            std::string::npos);
  body["subseed_strength"] = 1.5;
  EXPECT_EQ(compat.account.post("/sdapi/v1/txt2img", body).status, 422);
}

Image solid_colour(uint8_t r, uint8_t g, uint8_t b) {
  Image image{64, 64, {}};
  for (int i = 0; i < 64 * 64; ++i) image.rgb.insert(image.rgb.end(), {r, g, b});
  return image;
}

TEST(CompatApi, Img2imgTakesEveryInitImageAndTheInpaintingFill) {
  CompatServer compat;
  compat.start_worker();
  const Image red = solid_colour(220, 30, 30);
  const Image blue = solid_colour(30, 30, 220);
  json body = txt2img_body();
  body["batch_size"] = 1;
  body["denoising_strength"] = 0.5;
  body["init_images"] = {data_url(red)};
  const Answer from_red = compat.account.post("/sdapi/v1/img2img", body);
  body["init_images"] = {data_url(blue)};
  body["seed"] = 43;
  const Answer from_blue = compat.account.post("/sdapi/v1/img2img", body);
  body["init_images"] = {data_url(red), base64_encode(encode_png(blue))};
  body["seed"] = 42;
  body["batch_size"] = 2;
  const Answer both = compat.account.post("/sdapi/v1/img2img", body);
  for (const Answer* answer : {&from_red, &from_blue, &both})
    ASSERT_EQ(answer->status, 200) << answer->raw;
  EXPECT_EQ(decoded_image(both, 0).rgb, decoded_image(from_red, 0).rgb);   // seed 42, red
  EXPECT_EQ(decoded_image(both, 1).rgb, decoded_image(from_blue, 0).rgb);  // seed 43, blue
  body["init_images"] = {data_url(red), 5};
  EXPECT_EQ(compat.account.post("/sdapi/v1/img2img", body).status, 422);

  // inpainting_fill: each mode its own start for the masked left third; the rest is kept.
  Image mask{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) mask.rgb[(size_t(y) * 64 + x) * 3 + c] = 255;
  const Image init = gradient(64, 64);
  body["batch_size"] = 1;
  body["init_images"] = {data_url(init)};
  body["mask"] = base64_encode(encode_png(mask));
  body["inpaint_full_res"] = false;
  body["mask_blur"] = 0;
  std::vector<std::vector<uint8_t>> results;
  for (int fill = 0; fill <= 3; ++fill) {
    body["inpainting_fill"] = fill;
    const Answer answer = compat.account.post("/sdapi/v1/img2img", body);
    ASSERT_EQ(answer.status, 200) << answer.raw;
    const Image result = decoded_image(answer, 0);
    for (int y = 0; y < 64; ++y)
      for (int x = 24; x < 64; ++x)
        for (int c = 0; c < 3; ++c) {
          const size_t at = (size_t(y) * 64 + x) * 3 + c;
          ASSERT_EQ(result.rgb[at], init.rgb[at]) << "fill " << fill << " at " << x << "," << y;
        }
    for (const auto& earlier : results) EXPECT_NE(result.rgb, earlier) << "fill " << fill;
    results.push_back(result.rgb);
  }
  body["inpainting_fill"] = 4;
  EXPECT_EQ(compat.account.post("/sdapi/v1/img2img", body).status, 422);
}

TEST(CompatApi, HiresFixTakesItsOwnSamplerAndPrompts) {
  CompatServer compat;
  compat.start_worker();
  json body = txt2img_body();
  body["batch_size"] = 1;
  body["enable_hr"] = true;
  body["hr_scale"] = 1.5;
  body["hr_sampler_name"] = "Euler";
  body["hr_scheduler"] = "Automatic";
  body["hr_prompt"] = "a landscape";
  body["hr_negative_prompt"] = "";
  const Answer answer = compat.account.post("/sdapi/v1/txt2img", body);
  ASSERT_EQ(answer.status, 200) << answer.raw;
  const std::string text =
      parameters_of(base64_decode(answer.body["images"][0].get<std::string>()).value());
  EXPECT_NE(text.find("Hires sampler: Euler"), std::string::npos) << text;
  EXPECT_NE(text.find("Hires prompt: a landscape"), std::string::npos) << text;
  EXPECT_EQ(text.find("Hires negative prompt"), std::string::npos) << text;
  // The same sampler and prompts as the first pass are not overrides.
  body["hr_sampler_name"] = "Use same sampler";
  body["hr_prompt"] = "";
  const Answer same = compat.account.post("/sdapi/v1/txt2img", body);
  ASSERT_EQ(same.status, 200) << same.raw;
  const std::string same_text =
      parameters_of(base64_decode(same.body["images"][0].get<std::string>()).value());
  EXPECT_EQ(same_text.find("Hires sampler"), std::string::npos) << same_text;
  EXPECT_EQ(same_text.find("Hires prompt"), std::string::npos) << same_text;
  body["hr_sampler_name"] = "Euler b";
  EXPECT_EQ(compat.account.post("/sdapi/v1/txt2img", body).status, 404);
}

}  // namespace
}  // namespace doppel::test
