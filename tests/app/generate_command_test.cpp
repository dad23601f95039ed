// Runs the real `doppel generate` binary, as a user would.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

std::string quote(const std::string& text) {
  return "'" + text + "'";
}

// Runs doppel with `arguments`; returns the exit status, stderr into `errors`.
int run_doppel(const std::string& arguments, std::string* errors = nullptr) {
  // One log per test process: CTest runs these tests in parallel.
  auto log = std::filesystem::temp_directory_path() /
             ("doppel_app_test_stderr_" + std::to_string(::getpid()) + ".txt");
  int status = std::system((std::string(DOPPEL_BINARY) + " --threads 1 " + arguments + " 2> " +
                            log.string() + " > /dev/null")
                               .c_str());
  if (errors) *errors = read_file(log);
  return WEXITSTATUS(status);
}

// Largest per-channel difference between two images of the same size.
int max_pixel_difference(const std::filesystem::path& a, const std::filesystem::path& b) {
  Image first = read_image(a), second = read_image(b);
  EXPECT_EQ(first.rgb.size(), second.rgb.size());
  int worst = 0;
  for (size_t i = 0; i < std::min(first.rgb.size(), second.rgb.size()); ++i)
    worst = std::max(worst, std::abs(int(first.rgb[i]) - int(second.rgb[i])));
  return worst;
}

// The reference pipeline, seeded 42, made golden/sd1/goldens/txt2img/euler.png;
// `doppel generate --seed 42` must write the same pixels (+-1) and its recipe.
TEST(GenerateCommand, SeededPngEqualsTheReferenceImage) {
  auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "sd1" / "diffusers");
  auto out = temp_folder("doppel_generate_golden") / "euler.png";
  std::string errors;
  ASSERT_EQ(
      run_doppel(
          "generate --model " + (golden / "sd1" / "diffusers").string() + " --prompt " +
              quote("a photograph of an astronaut riding a horse") + " --negative " +
              quote("blurry, low quality") +
              " --sampler euler --steps 10 --cfg 7.5 --seed 42 --width 64 --height 64 --dtype fp32"
              " --out " +
              out.string(),
          &errors),
      0)
      << errors;
  EXPECT_LE(max_pixel_difference(out, golden / "sd1" / "goldens" / "txt2img" / "euler.png"), 1);
  auto text = read_png_text(read_file(out));
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text[0].first, "parameters");
  auto parameters = GenerationParameters::parse(text[0].second);
  EXPECT_EQ(parameters.negative_prompt, "blurry, low quality");
  EXPECT_EQ(parameters.get("Seed").value(), "42");
  EXPECT_EQ(parameters.get("Sampler").value(), "Euler");
  EXPECT_EQ(parameters.get("CFG scale").value(), "7.5");
  EXPECT_EQ(parameters.get("Model hash").value().size(), 10u);
  EXPECT_NE(errors.find("sampling"), std::string::npos);  // the progress bar was drawn
}

// golden/ipadapter: `doppel generate --ip-adapter` gives the reference pipeline's image (±1).
TEST(GenerateCommand, IpAdapterRunEqualsTheReferenceImage) {
  const auto golden = test::golden_dir() / "ipadapter";
  DOPPEL_REQUIRE_PATH(golden / "models" / "ip-adapter_sd15.safetensors");
  const auto out = temp_folder("doppel_generate_ip_adapter") / "ip.png";
  std::string errors;
  ASSERT_EQ(
      run_doppel("generate --model " + (golden / ".." / "sd1" / "diffusers").string() +
                     " --prompt " + quote("a portrait photograph of a woman in a garden") +
                     " --negative " + quote("blurry, low quality") +
                     " --sampler ddim --steps 8 --cfg 7.5 --seed 2024 --width 64 --height 64"
                     " --dtype fp32 --ip-adapter " +
                     (golden / "models" / "ip-adapter_sd15.safetensors").string() + " --ip-image " +
                     (golden / "images" / "angelina_jolie__deepface_img10.jpg").string() +
                     " --ip-scale 0.6 --out " + out.string(),
                 &errors),
      0)
      << errors;
  EXPECT_LE(max_pixel_difference(out, golden / "goldens" / "txt2img_sd15_base_ddim8_ip0.6.png"), 1);
  const auto parameters = GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  EXPECT_NE(parameters.get("ControlNet 0").value_or("").find("Module: ip-adapter_clip_sd15"),
            std::string::npos)
      << parameters.to_text();
  // An adapter without its picture is refused before anything loads.
  EXPECT_NE(run_doppel("generate --tiny-demo --ip-adapter " +
                           (golden / "models" / "ip-adapter_sd15.safetensors").string(),
                       &errors),
            0);
  EXPECT_NE(errors.find("--ip-image"), std::string::npos) << errors;
}

// golden/lora: the same run with the kohya LoRA merged at 0.7 into both models.
TEST(GenerateCommand, LoraMergedRunEqualsTheReferenceImage) {
  auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "lora" / "sd1_tiny_lora_kohya.safetensors");
  auto out = temp_folder("doppel_generate_lora") / "lora.png";
  std::string errors;
  ASSERT_EQ(
      run_doppel(
          "generate --model " + (golden / "sd1" / "diffusers").string() + " --lora " +
              (golden / "lora" / "sd1_tiny_lora_kohya.safetensors").string() + ":0.7 --prompt " +
              quote("a photograph of an astronaut riding a horse") + " --negative " +
              quote("blurry, low quality") +
              " --sampler euler --steps 10 --cfg 7.5 --seed 42 --width 64 --height 64 --dtype fp32"
              " --out " +
              out.string(),
          &errors),
      0)
      << errors;
  EXPECT_LE(max_pixel_difference(out, golden / "lora" / "txt2img_euler_lora0.7.png"), 1);
  auto parameters = GenerationParameters::parse(read_png_text(read_file(out))[0].second);
  EXPECT_NE(parameters.prompt.find("<lora:sd1_tiny_lora_kohya:0.7>"), std::string::npos);
  EXPECT_EQ(parameters.get("Lora hashes").value().size(),
            std::string("sd1_tiny_lora_kohya: ").size() + 12);
}

// <lora:NAME:WEIGHT> in the prompt finds NAME.safetensors in --lora-dir and gives
// the same image as --lora, with the tag taken out of the encoded text.
TEST(GenerateCommand, LoraPromptTagsResolveInTheLoraFolder) {
  auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "lora" / "sd1_tiny_lora_kohya.safetensors");
  auto folder = temp_folder("doppel_generate_lora_tag");
  std::filesystem::create_directories(folder / "loras");
  std::filesystem::copy_file(golden / "lora" / "sd1_tiny_lora_kohya.safetensors",
                             folder / "loras" / "face.safetensors");
  std::string common = "generate --model " + (golden / "sd1" / "diffusers").string() +
                       " --lora-dir " + (folder / "loras").string() + " --negative " +
                       quote("blurry, low quality") +
                       " --sampler euler --steps 10 --cfg 7.5 --seed 42 --width 64 --height 64"
                       " --dtype fp32";
  std::string errors;
  ASSERT_EQ(run_doppel(common + " --out " + (folder / "tag.png").string() + " --prompt " +
                           quote("a photograph of an astronaut riding a horse <lora:face:0.7>"),
                       &errors),
            0)
      << errors;
  EXPECT_LE(max_pixel_difference(folder / "tag.png", golden / "lora" / "txt2img_euler_lora0.7.png"),
            1);
  EXPECT_EQ(run_doppel(common + " --out " + (folder / "missing.png").string() + " --prompt " +
                           quote("portrait <lora:nobody:1>"),
                       &errors),
            1);
  EXPECT_NE(errors.find("nobody.safetensors"), std::string::npos) << errors;
}

// --vae swaps in another VAE (here the model's own, as a diffusers vae/ folder, so the
// pixels must still equal the reference) and A1111's "VAE" / "VAE hash" are recorded;
// --embeddings resolves a prompt word to its vectors and records "TI hashes".
TEST(GenerateCommand, VaeAndEmbeddingsAreUsedAndRecorded) {
  auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "sd1" / "diffusers" / "vae");
  auto folder = temp_folder("doppel_generate_vae_ti");
  std::string common = "generate --model " + (golden / "sd1" / "diffusers").string() +
                       " --negative " + quote("blurry, low quality") +
                       " --sampler euler --steps 10 --cfg 7.5 --seed 42 --width 64 --height 64"
                       " --dtype fp32";
  std::string errors;
  ASSERT_EQ(run_doppel(common + " --vae " + (golden / "sd1" / "diffusers" / "vae").string() +
                           " --out " + (folder / "vae.png").string() + " --prompt " +
                           quote("a photograph of an astronaut riding a horse"),
                       &errors),
            0)
      << errors;
  EXPECT_LE(max_pixel_difference(folder / "vae.png",
                                 golden / "sd1" / "goldens" / "txt2img" / "euler.png"),
            1);
  auto parameters =
      GenerationParameters::parse(read_png_text(read_file(folder / "vae.png"))[0].second);
  EXPECT_EQ(parameters.get("VAE").value_or(""), "vae");
  EXPECT_EQ(parameters.get("VAE hash").value_or("").size(), 10u);

  std::filesystem::create_directories(folder / "embeddings");
  save_safetensors(folder / "embeddings" / "astro-pilot.safetensors",
                   {{"emb_params", at::linspace(-1, 1, 64).reshape({2, 32})}});
  ASSERT_EQ(run_doppel(common + " --embeddings " + (folder / "embeddings").string() + " --out " +
                           (folder / "ti.png").string() + " --prompt " +
                           quote("a photograph of an astro-pilot riding a horse"),
                       &errors),
            0)
      << errors;
  parameters = GenerationParameters::parse(read_png_text(read_file(folder / "ti.png"))[0].second);
  EXPECT_EQ(parameters.get("TI hashes").value_or("").rfind("astro-pilot: ", 0), 0u);
  EXPECT_EQ(parameters.get("TI hashes").value_or("").size(),
            std::string("astro-pilot: ").size() + 12);
  EXPECT_GT(max_pixel_difference(folder / "ti.png", folder / "vae.png"), 0);

  save_safetensors(folder / "embeddings" / "wide.safetensors",
                   {{"emb_params", at::zeros({1, 768})}});
  EXPECT_EQ(run_doppel(common + " --embeddings " + (folder / "embeddings").string() + " --out " +
                           (folder / "wide.png").string() + " --prompt " + quote("a wide horse"),
                       &errors),
            1);
  EXPECT_NE(errors.find("wide.safetensors"), std::string::npos) << errors;
  EXPECT_NE(errors.find("768"), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(folder / "wide.png"));
}

TEST(GenerateCommand, TinyDemoWritesABatchWithPerImageSeeds) {
  auto folder = temp_folder("doppel_generate_demo");
  std::string errors;
  ASSERT_EQ(
      run_doppel("generate --tiny-demo --prompt portrait --steps 2 --seed 5 --batch 2 --out " +
                     (folder / "demo.png").string(),
                 &errors),
      0)
      << errors;
  EXPECT_TRUE(std::filesystem::exists(folder / "demo-1-5.png"));
  EXPECT_TRUE(std::filesystem::exists(folder / "demo-2-6.png"));
  EXPECT_NE(errors.find("checkpoint"), std::string::npos);  // says how to use a real model
}

TEST(GenerateCommand, HiresFixMakesTheLargerImageAndSaysSoInItsMetadata) {
  auto folder = temp_folder("doppel_generate_hires");
  const auto out = folder / "hires.png";
  std::string errors;
  ASSERT_EQ(run_doppel("generate --tiny-demo --prompt portrait --steps 4 --seed 3 --hires 2:0.5:3 "
                       "--hires-upscaler Lanczos --out " +
                           out.string(),
                       &errors),
            0)
      << errors;
  const Image image = read_image(out);
  EXPECT_EQ(image.width, 128);
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  EXPECT_EQ(parameters.get("Size").value(), "64x64");
  EXPECT_EQ(parameters.get("Hires upscale").value(), "2");
  EXPECT_EQ(parameters.get("Hires steps").value(), "3");
  EXPECT_EQ(parameters.get("Hires upscaler").value(), "Lanczos");
  EXPECT_EQ(
      run_doppel("generate --tiny-demo --prompt p --hires 2x --out " + out.string() + "x", &errors),
      1);
  EXPECT_NE(errors.find("SCALE:STRENGTH"), std::string::npos) << errors;
}

TEST(GenerateCommand, InpaintAndOutpaintKeepWhatTheMaskKeeps) {
  auto folder = temp_folder("doppel_generate_inpaint");
  Image init;
  init.width = init.height = 64;
  for (int i = 0; i < 64 * 64; ++i) init.rgb.insert(init.rgb.end(), {90, uint8_t(i % 64 * 4), 30});
  Image mask = init;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const uint8_t value = x >= 32 && y >= 32 ? 255 : 0;
      std::fill_n(&mask.rgb[(size_t(y) * 64 + x) * 3], 3, value);
    }
  write_png(folder / "init.png", init);
  write_png(folder / "mask.png", mask);
  const auto out = folder / "inpainted.png";
  std::string errors;
  ASSERT_EQ(run_doppel("generate --tiny-demo --prompt portrait --steps 3 --seed 2 --init-image " +
                           (folder / "init.png").string() + " --mask " +
                           (folder / "mask.png").string() + " --mask-blur 2 --out " + out.string(),
                       &errors),
            0)
      << errors;
  const Image inpainted = read_image(out);
  EXPECT_TRUE(std::equal(inpainted.rgb.begin(), inpainted.rgb.begin() + 64 * 20 * 3,
                         init.rgb.begin()));  // the top rows are outside the mask
  EXPECT_NE(inpainted.rgb, init.rgb);
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  EXPECT_EQ(parameters.get("Mask blur").value(), "2");

  const auto wider = folder / "outpainted.png";
  ASSERT_EQ(run_doppel(
                "generate --tiny-demo --prompt portrait --steps 3 --strength 1 --init-image " +
                    (folder / "init.png").string() + " --outpaint 0,0,30,0 --out " + wider.string(),
                &errors),
            0)
      << errors;
  const Image outpainted = read_image(wider);
  EXPECT_EQ(outpainted.width, 96);  // 64 + 30, grown to a multiple of 8
  EXPECT_EQ(outpainted.height, 64);
  EXPECT_TRUE(std::equal(outpainted.rgb.begin(), outpainted.rgb.begin() + 30 * 3,
                         init.rgb.begin()));  // the original's left part is untouched

  EXPECT_EQ(run_doppel("generate --tiny-demo --prompt p --mask " + (folder / "mask.png").string() +
                           " --out " + (folder / "x.png").string(),
                       &errors),
            1);
  EXPECT_NE(errors.find("--init-image"), std::string::npos) << errors;
  EXPECT_EQ(
      run_doppel("generate --tiny-demo --prompt p --init-image " + (folder / "init.png").string() +
                     " --outpaint 1,2 --out " + (folder / "x.png").string(),
                 &errors),
      1);
  EXPECT_NE(errors.find("LEFT,TOP,RIGHT,BOTTOM"), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(folder / "x.png"));
}

TEST(GenerateCommand, VariationSeedsAndInpaintFill) {
  auto folder = temp_folder("doppel_generate_variation");
  const auto out = folder / "varied.png";
  std::string errors;
  ASSERT_EQ(run_doppel("generate --tiny-demo --prompt portrait --steps 2 --seed 5 --subseed 9 "
                       "--subseed-strength 0.25 --out " +
                           out.string(),
                       &errors),
            0)
      << errors;
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  EXPECT_EQ(parameters.get("Seed").value_or(""), "5");
  EXPECT_EQ(parameters.get("Variation seed").value_or(""), "9");
  EXPECT_EQ(parameters.get("Variation seed strength").value_or(""), "0.25");

  Image init;
  init.width = init.height = 64;
  for (int i = 0; i < 64 * 64; ++i) init.rgb.insert(init.rgb.end(), {90, uint8_t(i % 64 * 4), 30});
  Image mask = init;
  for (int i = 0; i < 64 * 64; ++i)
    std::fill_n(&mask.rgb[size_t(i) * 3], 3, i % 64 >= 32 ? 255 : 0);
  write_png(folder / "init.png", init);
  write_png(folder / "mask.png", mask);
  const std::string inpaint =
      "generate --tiny-demo --prompt portrait --steps 3 --seed 2 --init-image " +
      (folder / "init.png").string() + " --mask " + (folder / "mask.png").string() +
      " --mask-blur 0 --out ";
  ASSERT_EQ(run_doppel(inpaint + (folder / "original.png").string(), &errors), 0) << errors;
  ASSERT_EQ(
      run_doppel(inpaint + (folder / "nothing.png").string() + " --inpaint-fill \"latent nothing\"",
                 &errors),
      0)
      << errors;
  const Image original = read_image(folder / "original.png");
  const Image nothing = read_image(folder / "nothing.png");
  EXPECT_NE(original.rgb, nothing.rgb);
  for (int y = 0; y < 64; ++y)  // the left half is kept either way
    EXPECT_TRUE(std::equal(&nothing.rgb[size_t(y) * 64 * 3],
                           &nothing.rgb[size_t(y) * 64 * 3] + 32 * 3,
                           &init.rgb[size_t(y) * 64 * 3]));
  EXPECT_NE(
      run_doppel(inpaint + (folder / "bad.png").string() + " --inpaint-fill sideways", &errors), 0);
  EXPECT_NE(errors.find("latent nothing"), std::string::npos) << errors;
}

TEST(GenerateCommand, SdxlCheckpointGenerates) {
  const auto sdxl = test::golden_dir() / "sdxl";
  DOPPEL_REQUIRE_PATH(sdxl / "sdxl_tiny_single_file_fp16.safetensors");
  auto folder = temp_folder("doppel_generate_sdxl");
  const auto out = folder / "sdxl.png";
  std::string errors;
  ASSERT_EQ(
      run_doppel("generate --model " + (sdxl / "sdxl_tiny_single_file_fp16.safetensors").string() +
                     " --config " + (sdxl / "diffusers").string() + " --tokenizer " +
                     (test::golden_dir() / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").string() +
                     " --prompt \"a portrait\" --width 64 --height 64 --steps 3 --seed 4 --out " +
                     out.string(),
                 &errors),
      0)
      << errors;
  EXPECT_EQ(read_image(out).width, 64);
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  EXPECT_EQ(parameters.get("Model").value(), "sdxl_tiny_single_file_fp16");
}

// --control steers the run, weight 0 changes nothing, and the PNG records it. (Parity with the
// reference ControlNet pipeline is tested in the diffusion layer: its golden run starts from
// saved noise of no stated seed.)
TEST(GenerateCommand, ControlNetSteersTheImageAndIsRecorded) {
  auto golden = test::golden_dir();
  DOPPEL_REQUIRE_PATH(golden / "sd1" / "diffusers");
  DOPPEL_REQUIRE_PATH(golden / "controlnet" / "controlnet_tiny_ldm_single_file_fp16.safetensors");
  auto folder = temp_folder("doppel_generate_controlnet");
  const auto out = folder / "control.png";
  const std::string control =
      (golden / "controlnet" / "controlnet_tiny_ldm_single_file_fp16.safetensors").string() + ":" +
      (golden / "controlnet" / "goldens" / "control_image.png").string();
  const std::string common =
      "generate --model " + (golden / "sd1" / "diffusers").string() + " --prompt " +
      quote("a photograph of an astronaut riding a horse") + " --negative " +
      quote("blurry, low quality") +
      " --sampler ddim --steps 10 --cfg 7.5 --seed 42 --width 64 --height 64 --dtype fp32";
  std::string errors;
  ASSERT_EQ(run_doppel(common + " --control " + control + ":0.8 --out " + out.string(), &errors), 0)
      << errors;
  const auto plain = folder / "plain.png";
  ASSERT_EQ(run_doppel(common + " --out " + plain.string(), &errors), 0) << errors;
  EXPECT_GT(max_pixel_difference(out, plain), 8);
  const auto unweighted = folder / "weight0.png";
  ASSERT_EQ(
      run_doppel(common + " --control " + control + ":0 --out " + unweighted.string(), &errors), 0)
      << errors;
  EXPECT_EQ(max_pixel_difference(unweighted, plain), 0);
  const GenerationParameters parameters =
      GenerationParameters::parse(read_png_text(read_file(out)).at(0).second);
  const std::string recorded = parameters.get("ControlNet 0").value_or("");
  EXPECT_EQ(recorded.rfind("Module: none, Model: controlnet_tiny_ldm_single_file_fp16 [", 0), 0u)
      << recorded;
  EXPECT_NE(recorded.find("Weight: 0.8, Resize Mode: Just Resize, Guidance Start: 0, Guidance "
                          "End: 1"),
            std::string::npos)
      << recorded;

  // Two ControlNets, the second through canny over part of the steps.
  const auto both = folder / "both.png";
  ASSERT_EQ(run_doppel(common + " --control " + control + ":0.5 --control " + control +
                           ":0.7:0.2:0.8 --control-preprocessor none --control-preprocessor "
                           "canny --out " +
                           both.string(),
                       &errors),
            0)
      << errors;
  const GenerationParameters two =
      GenerationParameters::parse(read_png_text(read_file(both)).at(0).second);
  EXPECT_NE(two.get("ControlNet 1").value_or("").find("Module: canny"), std::string::npos);
  EXPECT_NE(two.get("ControlNet 1").value_or("").find("Guidance Start: 0.2, Guidance End: 0.8"),
            std::string::npos);

  // Bad specs and files say what is wrong and write nothing.
  const auto bad = folder / "bad.png";
  EXPECT_EQ(
      run_doppel(common + " --control " + control + ":0.5:0.2 --out " + bad.string(), &errors), 1);
  EXPECT_NE(errors.find("CONTROLNET:IMAGE"), std::string::npos) << errors;
  EXPECT_EQ(
      run_doppel(common + " --control " +
                     (golden / "sd1" / "sd1_tiny_single_file_fp16.safetensors").string() + ":" +
                     (golden / "controlnet" / "goldens" / "control_image.png").string() +
                     " --out " + bad.string(),
                 &errors),
      1);
  EXPECT_NE(errors.find("not a ControlNet"), std::string::npos) << errors;
  EXPECT_EQ(run_doppel(common + " --control " + control + " --control-preprocessor sketch --out " +
                           bad.string(),
                       &errors),
            1);
  EXPECT_NE(errors.find("canny, face_pose or none"), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(bad));
}

// A TAESD decoder file with random weights, under taesd_decoder.safetensors' names.
void write_random_taesd(const std::filesystem::path& path) {
  std::map<std::string, at::Tensor> tensors;
  auto conv = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    tensors[name + ".weight"] = at::randn({out, in, 3, 3}) / std::sqrt(in * 9.0);
    if (bias) tensors[name + ".bias"] = at::zeros({out});
  };
  conv("1", 64, 4, true);
  for (int block : {3, 4, 5, 8, 9, 10, 13, 14, 15, 18})
    for (int index : {0, 2, 4})
      conv(std::to_string(block) + ".conv." + std::to_string(index), 64, 64, true);
  for (int plain : {7, 12, 17}) conv(std::to_string(plain), 64, 64, false);
  conv("19", 3, 64, true);
  save_safetensors(path, tensors);
}

TEST(GenerateCommand, TaesdWritesALivePreviewBesideTheImage) {
  auto folder = temp_folder("doppel_generate_preview");
  write_random_taesd(folder / "taesd_decoder.safetensors");
  const auto out = folder / "portrait.png";
  std::string errors;
  ASSERT_EQ(
      run_doppel("generate --tiny-demo --prompt portrait --steps 4 --preview-every 2 --taesd " +
                     (folder / "taesd_decoder.safetensors").string() + " --out " + out.string(),
                 &errors),
      0)
      << errors;
  const Image preview = read_image(folder / "portrait-preview.png");
  EXPECT_EQ(preview.width, 64);
  EXPECT_EQ(read_image(out).width, 64);
  save_safetensors(folder / "other.safetensors", {{"lora_unet_x.alpha", at::ones({})}});
  EXPECT_EQ(run_doppel("generate --tiny-demo --prompt p --taesd " +
                           (folder / "other.safetensors").string() + " --out " +
                           (folder / "x.png").string(),
                       &errors),
            1);
  EXPECT_NE(errors.find("not a TAESD decoder"), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(folder / "x.png"));
}

TEST(GenerateCommand, BadInputGivesAClearErrorAndNoFile) {
  auto folder = temp_folder("doppel_generate_bad");
  auto out = folder / "x.png";
  std::string errors;
  EXPECT_EQ(
      run_doppel("generate --tiny-demo --prompt p --width 100 --out " + out.string(), &errors), 1);
  EXPECT_NE(errors.find("multiple of 8"), std::string::npos) << errors;
  EXPECT_EQ(run_doppel("generate --tiny-demo --prompt p --steps 0 --out " + out.string(), &errors),
            1);
  EXPECT_NE(errors.find("steps"), std::string::npos) << errors;
  auto not_a_model = folder / "model.safetensors";
  std::system(("echo garbage > " + not_a_model.string()).c_str());
  EXPECT_EQ(
      run_doppel("generate --model " + not_a_model.string() + " --prompt p --out " + out.string(),
                 &errors),
      1);
  EXPECT_NE(errors.find("model.safetensors"), std::string::npos) << errors;
  EXPECT_EQ(run_doppel("generate --model /nonexistent.safetensors --prompt p --out " + out.string(),
                       &errors),
            1);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder), {}), 1);  // only the input
}

}  // namespace
}  // namespace doppel
