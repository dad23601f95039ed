// Full-size SD 1.5 or SDXL with random weights (speed does not depend on weight values).
// One JSON line per figure. Each case runs in its own process so peak RSS is
// per case: scripts/bench.sh runs them all.
//   stable_diffusion_bench --case peak|unet|text|vae|generate|kernels|parity --dtype fp32|bf16
//                          --size 512 [--family sd15|sdxl] [--steps 10]
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/models/attention.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/flash_attention.hpp"
#include "doppel/models/fused_norms.hpp"
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
  int steps = 10;
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
void print_decode_figure(const Options& options, const char* name, Decode decode,
                         const std::function<void(nlohmann::json&, double)>& add_rates = {}) {
  c10::InferenceMode inference;
  at::Tensor latents = Generator(0).randn({1, 4, options.size / 8, options.size / 8});
  double seconds = bench::median_seconds(options.repeats, [&] { decode(latents); });
  auto figure = base_figure(options, name);
  figure["seconds"] = seconds;
  if (add_rates) add_rates(figure, seconds);
  figure["peak_rss_mib"] = bench::peak_rss_mib();
  print_figure(figure);
}

// Multiply-adds x 2 of the VAE decoder at `size` x `size` pixels (convolutions and the mid
// block's attention matmuls; norms and activations are memory-bound and not counted), the
// same kind of count as the UNet's 1606.5 GFLOP.
double vae_decoder_flops(const VaeConfig& config, int64_t size) {
  double flops = 0;
  auto conv = [&](int64_t side, int64_t in, int64_t out, int64_t kernel) {
    flops += 2.0 * static_cast<double>(side * side * in * out * kernel * kernel);
  };
  auto resnet = [&](int64_t side, int64_t in, int64_t out) {
    conv(side, in, out, 3);
    conv(side, out, out, 3);
    if (in != out) conv(side, in, out, 1);
  };
  int64_t side = size / config.downscale_factor();
  int64_t channels = config.base_channels * config.channel_mult.back();
  if (config.use_quant_conv) conv(side, config.latent_channels, config.latent_channels, 1);
  conv(side, config.latent_channels, channels, 3);
  resnet(side, channels, channels);
  const auto tokens = static_cast<double>(side * side);
  for (int i = 0; i < 4; ++i) conv(side, channels, channels, 1);       // q, k, v, out
  flops += 2 * 2.0 * tokens * tokens * static_cast<double>(channels);  // QK^T and AV
  resnet(side, channels, channels);
  for (int64_t level = config.levels() - 1; level >= 0; --level) {
    const int64_t out = config.base_channels * config.channel_mult[static_cast<size_t>(level)];
    for (int64_t block = 0; block <= config.num_res_blocks; ++block) {
      resnet(side, channels, out);
      channels = out;
    }
    if (level > 0) {
      side *= 2;
      conv(side, channels, channels, 3);
    }
  }
  conv(side, channels, config.out_channels, 3);
  return flops;
}

void bench_vae(const Options& options, at::ScalarType dtype) {
  const VaeConfig config = VaeConfig::sd();
  AutoencoderKL vae(config, at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*vae, 3);
  const double gflop = vae_decoder_flops(config, options.size) / 1e9;
  const auto peak = bench::measure_machine_peak(at::get_num_threads());
  const double peak_gflops = dtype == at::kBFloat16 ? peak.bf16_gflops : peak.fp32_gflops;
  print_decode_figure(
      options, "vae_decode", [&](const at::Tensor& x) { vae->decode(x); },
      [&](nlohmann::json& figure, double seconds) {
        figure["gflop"] = gflop;
        figure["achieved_gflops"] = gflop / seconds;
        figure["machine_peak_gflops"] = peak_gflops;
        figure["fraction_of_peak"] = peak_gflops > 0 ? gflop / seconds / peak_gflops : 0.0;
      });
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

// The fused kernels (attention, GroupNorm + SiLU, LayerNorm) against the
// unfused path on the full-size random architecture: the same Euler sampling
// with CFG 7.5 from the same noise and prompt, `steps` steps, and the relative
// error of the final latents (|fused - unfused| / |unfused|), then of their VAE
// decodes.
void bench_parity(const Options& options, at::ScalarType dtype) {
  const UNetConfig config = unet_config(options);
  UNetModel unet(config, at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*unet, 1);
  AutoencoderKL vae(VaeConfig::sd(), at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*vae, 3);
  c10::InferenceMode inference;
  Generator generator(0);
  const int64_t latent = options.size / 8;
  const at::Tensor noise = generator.randn({1, 4, latent, latent});
  const at::Tensor context = generator.randn({2, 77, config.context_dim}).to(dtype);
  UNetExtraInputs extra;
  if (config.adm_in_channels > 0)
    extra.vector_conditioning = generator.randn({2, config.adm_in_channels});
  const at::Tensor alphas =
      make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kEpsilon));
  auto sigma_at = [&](int64_t t) {
    const double alpha = alphas[t].item<double>();
    return std::sqrt((1 - alpha) / alpha);
  };
  auto sample = [&](bool fused) {
    set_attention_kernel(fused ? AttentionKernel::kAutomatic : AttentionKernel::kUnfused);
    set_fused_norms(fused);
    at::Tensor x = noise * sigma_at(999);
    for (int step = 0; step < options.steps; ++step) {
      const int64_t t = 999 - step * 999 / options.steps;
      const int64_t next_t = 999 - (step + 1) * 999 / options.steps;
      const double sigma = sigma_at(t),
                   next_sigma = step + 1 < options.steps ? sigma_at(next_t) : 0;
      const at::Tensor scaled = (x / std::sqrt(sigma * sigma + 1)).to(dtype);
      const at::Tensor eps =
          unet->forward(at::cat({scaled, scaled}), at::full({1}, double(t)), context, extra)
              .to(at::kFloat);
      const at::Tensor guided =
          eps.slice(0, 1, 2) + 7.5 * (eps.slice(0, 0, 1) - eps.slice(0, 1, 2));
      x = x + (next_sigma - sigma) * guided;
    }
    return std::make_pair(x, vae->decode((x / 0.18215).to(dtype)).to(at::kFloat));
  };
  auto relative_error = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).norm().item<double>() / b.norm().item<double>();
  };
  auto start = std::chrono::steady_clock::now();
  const auto [fused_latents, fused_image] = sample(true);
  const double fused_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  const auto [unfused_latents, unfused_image] = sample(false);
  const double unfused_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto figure = base_figure(options, "fused_vs_unfused");
  figure["steps"] = options.steps;
  figure["latents_relative_error"] = relative_error(fused_latents, unfused_latents);
  figure["decoded_relative_error"] = relative_error(fused_image, unfused_image);
  figure["fused_seconds"] = fused_seconds;
  figure["unfused_seconds"] = unfused_seconds;
  print_figure(figure);
}

// The fused kernels alone against the unfused path on SD 1.5's shapes at
// --size (batch 2, CFG), alternating the two in one process so a shared
// machine's load affects both alike; one JSON line per shape with both median
// times, and the fused attention's matmul rate as a fraction of the bf16 peak.
void bench_kernels(const Options& options) {
  c10::InferenceMode inference;
  Generator generator(0);
  const int64_t tokens = (options.size / 8) * (options.size / 8);
  struct AttentionShape {
    const char* name;
    int64_t query_length, key_length, heads, head_dim;
  };
  const std::vector<AttentionShape> attention_shapes = {
      {"self_level1", tokens, tokens, 8, 40},
      {"cross_level1", tokens, 77, 8, 40},
      {"self_level2", tokens / 4, tokens / 4, 8, 80},
      {"self_level3", tokens / 16, tokens / 16, 8, 160},
      {"vae_mid", tokens, tokens, 1, 512},
  };
  const double peak = bench::measure_machine_peak(at::get_num_threads()).bf16_gflops;
  auto alternate = [&](const std::function<void()>& unfused, const std::function<void()>& fused) {
    std::vector<double> unfused_times, fused_times;
    auto time = [](const std::function<void()>& work) {
      const auto start = std::chrono::steady_clock::now();
      work();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    unfused();
    fused();
    for (int i = 0; i < std::max(options.repeats, 1) * 3; ++i) {
      unfused_times.push_back(time(unfused));
      fused_times.push_back(time(fused));
    }
    std::sort(unfused_times.begin(), unfused_times.end());
    std::sort(fused_times.begin(), fused_times.end());
    return std::make_pair(unfused_times[unfused_times.size() / 2],
                          fused_times[fused_times.size() / 2]);
  };
  for (const AttentionShape& shape : attention_shapes) {
    const int64_t batch = shape.heads == 1 ? 1 : 2;  // the VAE decodes one image
    const int64_t width = shape.heads * shape.head_dim;
    const at::Tensor q = generator.randn({batch, shape.query_length, width}).to(at::kBFloat16);
    const at::Tensor k = generator.randn({batch, shape.key_length, width}).to(at::kBFloat16);
    const at::Tensor v = generator.randn({batch, shape.key_length, width}).to(at::kBFloat16);
    auto run = [&](AttentionKernel kernel) {
      set_attention_kernel(kernel);
      multi_head_attention(q, k, v, shape.heads, /*upcast=*/shape.heads == 1);
    };
    const auto [unfused, fused] = alternate([&] { run(AttentionKernel::kUnfused); },
                                            [&] { run(AttentionKernel::kAutomatic); });
    const double gflop =
        4.0 * batch * shape.heads * shape.query_length * shape.key_length * shape.head_dim / 1e9;
    auto figure = base_figure(options, std::string("attention_") + shape.name);
    figure["unfused_seconds"] = unfused;
    figure["fused_seconds"] = fused;
    figure["ratio"] = fused / unfused;
    figure["gflop"] = gflop;
    figure["fused_fraction_of_peak"] = peak > 0 ? gflop / fused / peak : 0.0;
    figure["machine_peak_gflops"] = peak;
    print_figure(figure);
  }
  set_attention_kernel(AttentionKernel::kAutomatic);
  // GroupNorm + SiLU on the VAE decoder's largest activations and the UNet's first level.
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"group_norm_silu_vae_last", {1, 128, options.size, options.size}},
           {"group_norm_silu_unet_level1", {2, 320, options.size / 8, options.size / 8}}}) {
    layers::GroupNorm norm(32, shape[1], 1e-6, at::TensorOptions().dtype(at::kBFloat16));
    layers::randomize_parameters(*norm, 7);
    const at::Tensor x = generator.randn(shape).to(at::kBFloat16);
    const auto [unfused, fused] = alternate(
        [&] {
          set_fused_norms(false);
          norm->forward_silu(x);
        },
        [&] {
          set_fused_norms(true);
          norm->forward_silu(x);
        });
    auto figure = base_figure(options, name);
    figure["unfused_seconds"] = unfused;
    figure["fused_seconds"] = fused;
    figure["ratio"] = fused / unfused;
    print_figure(figure);
  }
  set_fused_norms(true);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Stable Diffusion 1.5 / SDXL benchmark (random weights)"};
  app.add_option("--family", options.family, "sd15 or sdxl")
      ->check(CLI::IsMember({"sd15", "sdxl"}));
  app.add_option("--case", options.test_case,
                 "peak, unet, text, vae, taesd, generate, kernels or parity (fused vs unfused)");
  app.add_option("--steps", options.steps, "parity: sampling steps");
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
  } else if (options.test_case == "kernels") {
    bench_kernels(options);
  } else if (options.test_case == "parity") {
    bench_parity(options, dtype);
  } else {
    std::cerr << "unknown --case " << options.test_case << "\n";
    return 2;
  }
  return 0;
}
