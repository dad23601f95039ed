// Full-size SD 1.5 or SDXL with random weights (speed does not depend on weight values).
// One JSON line per figure. Each case runs in its own process so peak RSS is
// per case: scripts/bench.sh runs them all.
//   stable_diffusion_bench --case peak|unet|text|vae|generate --dtype fp32|bf16 --size 512
//                          [--family sd15|sdxl]
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <cstdlib>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/tiny_autoencoder.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/vae.hpp"

using namespace doppel;
using doppel::bench::print_figure;

namespace {

struct Options {
  std::string family = "sd15";
  std::string test_case = "unet";
  std::string dtype = "bf16";
  int64_t size = 512;
  int repeats = 2;
  bool channels_last = false;
  bool profile = false;
};

nlohmann::json base_figure(const Options& options, const std::string& name) {
  const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
  return {{"figure", name},
          {"family", options.family},
          {"dtype", options.dtype},
          {"size", options.size},
          {"threads", at::get_num_threads()},
          {"channels_last", options.channels_last},
          {"aten_cpu_capability", capability ? capability : "default-dispatch"}};
}

// One sampling step with classifier-free guidance = one UNet call on batch 2.
UNetConfig unet_config(const Options& options) {
  return options.family == "sdxl" ? UNetConfig::sdxl() : UNetConfig::sd15();
}

void bench_unet(const Options& options, at::ScalarType dtype) {
  const UNetConfig config = unet_config(options);
  UNetModel unet(config, at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*unet, 1);
  unet->set_channels_last(options.channels_last);
  c10::InferenceMode inference;
  Generator generator(0);
  const int64_t latent = options.size / 8;
  at::Tensor x = generator.randn({2, 4, latent, latent});
  at::Tensor t = at::full({1}, 500.0f);
  at::Tensor context = generator.randn({2, 77, config.context_dim}).to(dtype);
  UNetExtraInputs extra;  // SDXL: pooled text + size embeddings
  if (config.adm_in_channels > 0)
    extra.vector_conditioning = generator.randn({2, config.adm_in_channels});
  // ATen's RecordFunction hooks get no inputs in Debian's libtorch 1.13 (an
  // internal assert), so FLOPs are not counted here: the SD1.5 UNet at 512x512,
  // batch 2, is 1606.5 GFLOP (convolutions, linear layers and attention
  // matmuls; the engine issue's count). Other sizes report no fraction.
  const double flops = options.size == 512 && options.family == "sd15" ? 1606.5e9 : 0.0;
  double seconds =
      bench::median_seconds(options.repeats, [&] { unet->forward(x, t, context, extra); });
  if (options.profile) bench::print_op_profile([&] { unet->forward(x, t, context, extra); });
  auto peak = bench::measure_machine_peak(at::get_num_threads());
  double peak_gflops = dtype == at::kBFloat16 ? peak.bf16_gflops : peak.fp32_gflops;
  auto figure = base_figure(options, "unet_step_cfg_batch2");
  figure["seconds_per_step"] = seconds;
  figure["machine_peak_gflops"] = peak_gflops;
  if (flops > 0) {
    figure["gflop_per_step"] = flops / 1e9;
    figure["achieved_gflops"] = flops / 1e9 / seconds;
    figure["fraction_of_peak"] = peak_gflops > 0 ? flops / 1e9 / seconds / peak_gflops : 0.0;
  }
  figure["peak_rss_mib"] = bench::peak_rss_mib();
  print_figure(figure);
}

void bench_text(const Options& options, at::ScalarType dtype) {
  ClipTextModel encoder(ClipTextConfig::vit_l14(), at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*encoder, 2);
  OpenClipTextModel second{nullptr};  // SDXL's OpenCLIP-G
  if (options.family == "sdxl") {
    second =
        OpenClipTextModel(ClipTextConfig::open_clip_vit_bigg14(), at::TensorOptions().dtype(dtype));
    layers::randomize_parameters(*second, 4);
  }
  c10::InferenceMode inference;
  at::Tensor ids = at::randint(0, 49407, {2, 77}, at::kLong);  // prompt + negative
  double seconds = bench::median_seconds(options.repeats, [&] {
    encoder->forward(ids);
    if (second) second->forward(ids);
  });
  auto figure = base_figure(options, "text_encode_prompt_and_negative");
  figure["seconds"] = seconds;
  figure["peak_rss_mib"] = bench::peak_rss_mib();
  print_figure(figure);
}

// Decode time of random latents at the requested size.
template <typename Decode>
void print_decode_figure(const Options& options, const char* name, Decode decode) {
  c10::InferenceMode inference;
  at::Tensor latents = Generator(0).randn({1, 4, options.size / 8, options.size / 8});
  double seconds = bench::median_seconds(options.repeats, [&] { decode(latents); });
  auto figure = base_figure(options, name);
  figure["seconds"] = seconds;
  figure["peak_rss_mib"] = bench::peak_rss_mib();
  print_figure(figure);
}

void bench_vae(const Options& options, at::ScalarType dtype) {
  AutoencoderKL vae(VaeConfig::sd(), at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*vae, 3);
  print_decode_figure(options, "vae_decode", [&](const at::Tensor& x) { vae->decode(x); });
}

// TAESD's decoder, which live previews use instead of the VAE.
void bench_taesd(const Options& options, at::ScalarType dtype) {
  TinyAutoencoderDecoder decoder(TinyAutoencoderConfig{}, at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*decoder, 5);
  print_decode_figure(options, "taesd_decode", [&](const at::Tensor& x) { decoder->forward(x); });
}

// Peak memory of a whole generation: all three models resident, text encode,
// two CFG steps and a decode (more steps do not raise the peak).
void bench_generate(const Options& options, at::ScalarType dtype) {
  auto tensor_options = at::TensorOptions().dtype(dtype);
  ClipTextModel encoder(ClipTextConfig::vit_l14(), tensor_options);
  const UNetConfig config = unet_config(options);
  UNetModel unet(config, tensor_options);
  AutoencoderKL vae(VaeConfig::sd(), tensor_options);
  layers::randomize_parameters(*encoder, 2);
  layers::randomize_parameters(*unet, 1);
  layers::randomize_parameters(*vae, 3);
  c10::InferenceMode inference;
  auto start = std::chrono::steady_clock::now();
  at::Tensor context =
      encoder->forward(at::randint(0, 49407, {2, 77}, at::kLong)).last_hidden_state;
  // SDXL's second encoder is not resident here: the UNet and VAE dominate the peak.
  if (config.context_dim != context.size(2))
    context = at::cat(
        {context, at::zeros({2, 77, config.context_dim - context.size(2)}, context.options())}, -1);
  UNetExtraInputs extra;
  if (config.adm_in_channels > 0)
    extra.vector_conditioning = Generator(1).randn({2, config.adm_in_channels});
  at::Tensor x = Generator(0).randn({1, 4, options.size / 8, options.size / 8});
  for (int step = 0; step < 2; ++step) {
    at::Tensor out = unet->forward(at::cat({x, x}), at::full({1}, 500.0f), context, extra);
    x = x - 0.1 * out.slice(0, 0, 1);
  }
  vae->decode(x / 0.18215);
  auto figure = base_figure(options, "generation_peak_rss");
  figure["peak_rss_mib"] = bench::peak_rss_mib();
  figure["seconds_two_steps_total"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print_figure(figure);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Stable Diffusion 1.5 / SDXL benchmark (random weights)"};
  app.add_option("--family", options.family, "sd15 or sdxl")
      ->check(CLI::IsMember({"sd15", "sdxl"}));
  app.add_option("--case", options.test_case, "peak, unet, text, vae, taesd or generate");
  app.add_option("--dtype", options.dtype, "fp32 or bf16");
  app.add_option("--size", options.size, "image side in pixels");
  app.add_option("--repeats", options.repeats, "timed runs after a warm-up (median)");
  app.add_flag("--channels-last", options.channels_last, "channels-last UNet activations");
  app.add_flag("--profile", options.profile, "unet: print one more step's ops by self time");
  CLI11_PARSE(app, argc, argv);
  configure_threads(0);
  install_caching_cpu_allocator();
  at::ScalarType dtype = parse_compute_dtype(options.dtype);
  if (options.test_case == "peak") {
    auto peak = bench::measure_machine_peak(at::get_num_threads(), 2.0);
    print_figure({{"figure", "machine_peak"},
                  {"threads", at::get_num_threads()},
                  {"fp32_fma_gflops", peak.fp32_gflops},
                  {"bf16_dot_gflops", peak.bf16_gflops}});
  } else if (options.test_case == "unet") {
    bench_unet(options, dtype);
  } else if (options.test_case == "text") {
    bench_text(options, dtype);
  } else if (options.test_case == "vae") {
    bench_vae(options, dtype);
  } else if (options.test_case == "taesd") {
    bench_taesd(options, dtype);
  } else if (options.test_case == "generate") {
    bench_generate(options, dtype);
  } else {
    std::cerr << "unknown --case " << options.test_case << "\n";
    return 2;
  }
  return 0;
}
