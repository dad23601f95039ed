// LoRA training step on the full-size SD 1.5 UNet with random weights: rank 16
// on attention and feed-forward, batch 1, fp32 master adapters, AdamW.
// One JSON line per figure; run each configuration in its own process
// (scripts/bench.sh train) so peak RSS is per configuration.
//   lora_training_bench --dtype bf16|fp32 --size 512 [--checkpointing] [--repeats 2] [--profile]
//                       [--attention automatic|unfused|fused-portable|fused-vector]
// --attention picks multi_head_attention's kernel, so runs of one binary with
// each can be interleaved to compare them on a shared machine.
//   lora_training_bench --case attention [--repeats 5]
// times the forward and backward of SD 1.5's largest attention layers at 512x512
// (self-attention over 4096 tokens, cross-attention over 77; 8 heads of 40) with
// the unfused and the fused vector kernel alternately, and prints their ratio.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/models/attention.hpp"
#include "doppel/models/flash_attention.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/train/lora_network.hpp"
#include "doppel/train/lora_trainer.hpp"
#include "doppel/train/optimizer.hpp"

using namespace doppel;

namespace {

// Forward and backward of one attention layer's q, k, v (bf16, requiring grad).
double time_attention_layer(int64_t key_length, AttentionKernel kernel) {
  Generator generator(1);
  const auto options = at::TensorOptions().dtype(at::kBFloat16);
  const at::Tensor q = generator.randn({1, 4096, 320}).to(options).requires_grad_(true);
  const at::Tensor k = generator.randn({1, key_length, 320}).to(options).requires_grad_(true);
  const at::Tensor v = generator.randn({1, key_length, 320}).to(options).requires_grad_(true);
  const at::Tensor grad_out = generator.randn({1, 4096, 320}).to(options);
  set_attention_kernel(kernel);
  const double seconds =
      bench::median_seconds(1, [&] { multi_head_attention(q, k, v, 8).backward(grad_out); });
  set_attention_kernel(AttentionKernel::kAutomatic);
  return seconds;
}

void compare_attention_kernels(int repeats) {
  for (const int64_t key_length : {int64_t{4096}, int64_t{77}}) {
    std::vector<double> unfused, fused, ratios;
    for (int i = 0; i < repeats; ++i) {
      unfused.push_back(time_attention_layer(key_length, AttentionKernel::kUnfused));
      fused.push_back(time_attention_layer(key_length, AttentionKernel::kFusedVectorBf16));
      ratios.push_back(fused.back() / unfused.back());
    }
    auto median = [](std::vector<double> values) {
      std::sort(values.begin(), values.end());
      return values[values.size() / 2];
    };
    // Per layer: forward 2, backward 4 products of 2 * 8 * 4096 * Lk * 40 flops (unfused).
    const double gflop = 6 * 2.0 * 8 * 4096 * static_cast<double>(key_length) * 40 / 1e9;
    bench::print_figure({{"figure", "training_attention_layer"},
                         {"query_length", 4096},
                         {"key_length", key_length},
                         {"heads", 8},
                         {"head_dim", 40},
                         {"unfused_seconds", median(unfused)},
                         {"fused_vector_seconds", median(fused)},
                         {"fused_over_unfused_median_ratio", median(ratios)},
                         {"model_gflop", gflop},
                         {"threads", at::get_num_threads()}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype_name = "bf16";
  int64_t size = 512;
  int64_t rank = 16;
  int repeats = 2;
  bool checkpointing = false;
  bool profile = false;
  std::string bench_case = "step";
  std::string attention = "automatic";
  CLI::App app("LoRA training step benchmark (SD 1.5 architecture, random weights)");
  app.add_option("--dtype", dtype_name, "fp32 or bf16");
  app.add_option("--size", size, "Training resolution in pixels");
  app.add_option("--rank", rank, "LoRA rank");
  app.add_option("--repeats", repeats, "Timed steps after one warm-up step");
  app.add_flag("--checkpointing", checkpointing, "Gradient checkpointing");
  app.add_flag("--profile", profile, "Print the ops of one more step by self time to stderr");
  const std::map<std::string, AttentionKernel> attention_kernels = {
      {"automatic", AttentionKernel::kAutomatic},
      {"unfused", AttentionKernel::kUnfused},
      {"fused-portable", AttentionKernel::kFusedPortable},
      {"fused-vector", AttentionKernel::kFusedVectorBf16}};
  app.add_option("--attention", attention, "Attention kernel")
      ->check(CLI::IsMember({"automatic", "unfused", "fused-portable", "fused-vector"}));
  app.add_option("--case", bench_case, "step (a training step) or attention (one layer)")
      ->check(CLI::IsMember({"step", "attention"}));
  CLI11_PARSE(app, argc, argv);
  set_attention_kernel(attention_kernels.at(attention));
  if (bench_case == "attention") {
    configure_threads(0);
    install_caching_cpu_allocator();
    compare_attention_kernels(repeats);
    return 0;
  }
  configure_threads(0);
  install_caching_cpu_allocator();
  const at::ScalarType dtype = dtype_name == "fp32" ? at::kFloat : at::kBFloat16;

  StableDiffusionCheckpoint model;
  model.unet = UNetModel(UNetConfig::sd15(), at::TensorOptions().dtype(dtype));
  layers::randomize_parameters(*model.unet, 1);
  for (auto& parameter : model.unet->parameters()) parameter.requires_grad_(false);
  model.unet->set_gradient_checkpointing(checkpointing);
  LoraNetworkOptions network_options;
  network_options.rank = rank;
  network_options.alpha = static_cast<double>(rank);
  LoraNetwork network(model, network_options);
  std::vector<at::Tensor> parameters;
  int64_t adapter_values = 0;
  for (const auto& [name, parameter] : network.named_parameters()) {
    parameters.push_back(parameter);
    adapter_values += parameter.numel();
  }
  AdamW optimizer(parameters, AdamWOptions{});

  Generator generator(0);
  const int64_t latent = size / 8;
  const at::Tensor latents = generator.randn({1, 4, latent, latent});
  const at::Tensor context = generator.randn({1, 77, 768});
  const at::Tensor alphas =
      make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kEpsilon));
  int64_t step = 0;
  auto train_step = [&] {
    const at::Tensor noise = generator.randn(latents.sizes());
    const at::Tensor timesteps = at::tensor(std::vector<int64_t>{100 + 97 * (step++ % 9)});
    lora_training_loss(*model.unet, latents, noise, timesteps, context, alphas,
                       PredictionType::kEpsilon, 5.0)
        .backward();
    optimizer.step(1e-4);
    optimizer.zero_grad();
  };
  const double seconds = bench::median_seconds(repeats, train_step);
  if (profile) bench::print_op_profile(train_step);
  const auto peak = bench::measure_machine_peak(at::get_num_threads());
  const double peak_gflops = dtype == at::kBFloat16 ? peak.bf16_gflops : peak.fp32_gflops;
  nlohmann::json figure = {{"figure", "lora_training_step"},
                           {"dtype", dtype_name},
                           {"size", size},
                           {"rank", rank},
                           {"batch", 1},
                           {"gradient_checkpointing", checkpointing},
                           {"attention", attention},
                           {"adapter_parameters", adapter_values},
                           {"threads", at::get_num_threads()},
                           {"seconds_per_step", seconds},
                           {"machine_peak_gflops", peak_gflops},
                           {"peak_rss_mib", bench::peak_rss_mib()}};
  if (size == 512) {
    // Forward at 512, batch 1: 803.25 GFLOP (half the CFG step's 1606.5, see
    // stable_diffusion_bench); backward computes input gradients only (frozen
    // weights get none), about as much again. Recomputation is not counted.
    const double gflop = 2 * 803.25;
    figure["model_gflop_per_step"] = gflop;
    figure["achieved_gflops"] = gflop / seconds;
    figure["fraction_of_peak"] = peak_gflops > 0 ? gflop / seconds / peak_gflops : 0.0;
  }
  bench::print_figure(figure);
  return 0;
}
