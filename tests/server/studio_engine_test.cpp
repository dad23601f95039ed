// The studio's worker and `doppel generate` share one generation path: a style pack that names a
// ControlNet, a VAE, an embedding and a hires fix shoots in the studio, and the CLI given the
// same settings writes the same pixels and the same A1111 parameters.
#include <gtest/gtest.h>

#include <cstdlib>

#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

namespace fs = std::filesystem;

void save_module(const fs::path& path, torch::nn::Module& module, const std::string& prefix) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : module.named_parameters())
    tensors[prefix + item.key()] = item.value().detach().clone();
  fs::create_directories(path.parent_path());
  save_safetensors(path, tensors);
}

// A models folder with the tokenizer of the real one and tiny files for the built-in model:
// a ControlNet, a VAE (other weights than the model's) and an embedding.
fs::path make_models_folder(const fs::path& root) {
  const fs::path models = root / "models";
  fs::create_directories(models);
  fs::create_directory_symlink(fs::absolute(default_models_dir() / "tokenizer"),
                               models / "tokenizer");
  ControlNetConfig config;
  config.unet = make_tiny_stable_diffusion().unet->config();
  config.hint_channels = {16, 16, 32, 32};
  ControlNetModel control(config);
  layers::randomize_parameters(*control, 21);
  save_module(models / "controlnet" / "tiny_control.safetensors", *control, kControlNetPrefix);
  StableDiffusionCheckpoint other = make_tiny_stable_diffusion(5);
  save_module(models / "vae" / "tiny_vae.safetensors", *other.vae, "first_stage_model.");
  at::Generator generator = at::detail::createCPUGenerator(3);
  fs::create_directories(models / "embeddings");
  save_safetensors(models / "embeddings" / "shiny.safetensors",
                   {{"emb_params", at::randn({2, 32}, generator)}});
  return models;
}

fs::path make_styles_folder(const fs::path& root) {
  const fs::path styles = root / "styles";
  fs::create_directories(styles);
  Image pose{64, 64, std::vector<uint8_t>(64 * 64 * 3)};
  for (size_t i = 0; i < pose.rgb.size(); ++i)
    pose.rgb[i] = static_cast<uint8_t>((i / 3) % 64 < 32 ? 230 : 20);  // a vertical edge
  write_png(styles / "pose.png", pose);
  write_file_atomically(styles / "engine.yaml", R"(id: engine
name: Engine test
name_zh: 引擎测试
description: Every engine feature a pack can name.
description_zh: 风格包能用到的每项引擎功能。
family: sd1
prompt: shiny portrait of {subject}, soft light
negative_prompt: blurry
sampler: euler
steps: 4
guidance: 6
width: 64
height: 64
vae: tiny_vae.safetensors
embeddings: [shiny]
controlnets:
  - model: tiny_control.safetensors
    image: pose.png
    preprocessor: canny
    weight: 0.9
    start: 0
    end: 0.8
hires: {scale: 1.5, strength: 0.5, steps: 2, upscaler: Latent}
)");
  return styles;
}

int run_doppel(const std::string& arguments) {
  return WEXITSTATUS(std::system(
      (std::string(DOPPEL_BINARY) + " --threads 1 " + arguments + " > /dev/null 2>&1").c_str()));
}

std::string quote(const std::string& text) {
  return "'" + text + "'";
}

TEST(StudioEngine, AStylePackWithEveryEngineFeatureShootsAsTheCliGenerates) {
  if (!fs::exists(default_models_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt"))
    GTEST_SKIP() << "no CLIP vocabulary (run scripts/install.sh)";
  const fs::path root = fresh_data_dir();
  const fs::path models = make_models_folder(root);
  const fs::path styles = make_styles_folder(root);
  ::setenv("DOPPEL_MODELS_DIR", models.c_str(), 1);

  server::ServerOptions options;
  options.styles_dir = styles;
  TestServer server(options);
  ApiClient client = first_account(server);
  const Answer subject = client.post("/api/subjects", {{"name", "Ada"}});
  ASSERT_EQ(subject.status, 201) << subject.raw;
  const Answer shoot = client.post(
      "/api/shoots",
      {{"subject_id", subject.body["id"]}, {"styles", {"engine"}}, {"count", 1}, {"seed", 11}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  EXPECT_EQ(run_all_jobs(worker), 1);
  const Answer images =
      client.get("/api/shoots/" + shoot.body["id"].get<std::string>() + "/images");
  ASSERT_EQ(images.body["images"].size(), 1u) << images.raw << client.get("/api/jobs").raw;
  const json image = images.body["images"][0];
  const std::string png = client.get(image["png_url"].get<std::string>()).raw;
  const GenerationParameters studio = GenerationParameters::parse(read_png_text(png).at(0).second);
  EXPECT_EQ(studio.get("VAE").value_or(""), "tiny_vae.safetensors");
  EXPECT_EQ(studio.get("TI hashes").value_or("").rfind("shiny: ", 0), 0u);
  EXPECT_EQ(studio.get("Hires upscale").value_or(""), "1.5");
  EXPECT_NE(studio.get("ControlNet 0").value_or("").find("Module: canny, Model: tiny_control"),
            std::string::npos);
  const Image studio_image = decode_image(png);
  EXPECT_EQ(studio_image.width, 96);

  // The CLI with the recipe's settings.
  const json recipe = image["recipe"];
  const fs::path out = root / "cli.png";
  ASSERT_EQ(run_doppel("generate --tiny-demo --prompt " + quote(recipe["prompt"]) + " --negative " +
                       quote(recipe["negative_prompt"]) + " --seed 11" +
                       " --steps 4 --cfg 6 --sampler euler --width 64 --height 64" + " --vae " +
                       (models / "vae" / "tiny_vae.safetensors").string() + " --control " +
                       (models / "controlnet" / "tiny_control.safetensors").string() + ":" +
                       (styles / "pose.png").string() + ":0.9:0:0.8" +
                       " --control-preprocessor canny --hires 1.5:0.5:2 --out " + out.string()),
            0);
  const std::string cli_png = read_file(out);
  EXPECT_EQ(decode_image(cli_png).rgb, studio_image.rgb) << "the same request, other pixels";
  EXPECT_EQ(read_png_text(cli_png).at(0).second, read_png_text(png).at(0).second);

  // A pack whose files are missing is refused when the shoot is asked for, naming the file.
  fs::remove(models / "controlnet" / "tiny_control.safetensors");
  const Answer refused = client.post(
      "/api/shoots", {{"subject_id", subject.body["id"]}, {"styles", {"engine"}}, {"count", 1}});
  EXPECT_EQ(refused.status, 409) << refused.raw;
  EXPECT_NE(refused.raw.find("tiny_control.safetensors"), std::string::npos) << refused.raw;
  ::unsetenv("DOPPEL_MODELS_DIR");
  fs::remove_all(root);
}

}  // namespace
}  // namespace doppel::test
