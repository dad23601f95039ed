// What an IP-Adapter costs: full-size architectures with random weights (speed does not depend
// on weight values). One JSON line per figure:
//  * ip_adapter_step_overhead: one SD 1.5 UNet CFG step (batch 2) at --size, plain and with an
//    IP-Adapter plus (16 image tokens in every attn2), measured alternately in the same run;
//  * ip_adapter_image_encoding: CLIP ViT-H/14 on one 224x224 image (a face crop), plus the
//    Resampler projection, against the plain UNet step of the same run.
//   ip_adapter_bench --dtype fp32|bf16 --size 512 --repeats 2
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/models/clip_vision.hpp"
#include "doppel/models/ip_adapter.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"

using namespace doppel;

namespace {

// h94's ip-adapter-plus_sd15: Resampler 768 wide, 12 heads of 64, depth 4, 16 queries, reading
// ViT-H's 1280-wide penultimate states.
IpAdapterConfig plus_sd15() {
  IpAdapterConfig config;
  config.kind = ImageProjectionKind::kResampler;
  config.image_embed_dim = 1280;
  config.cross_attention_dim = 768;
  config.tokens = 16;
  config.resampler_dim = 768;
  config.resampler_depth = 4;
  config.resampler_heads = 12;
  config.layer_widths = image_prompt_layer_widths(UNetConfig::sd15());
  for (size_t i = 0; i < config.layer_widths.size(); ++i)
    config.layer_keys.push_back(static_cast<int64_t>(2 * i + 1));
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype_name = "fp32";
  int64_t size = 512;
  int repeats = 2;
  CLI::App app{"IP-Adapter costs on SD 1.5 (random weights)"};
  app.add_option("--dtype", dtype_name, "fp32 or bf16");
  app.add_option("--size", size, "image side in pixels");
  app.add_option("--repeats", repeats, "timed runs after a warm-up (median)");
  CLI11_PARSE(app, argc, argv);
  configure_threads(0);
  install_caching_cpu_allocator();
  const at::ScalarType dtype = parse_compute_dtype(dtype_name);
  const auto options = at::TensorOptions().dtype(dtype);

  UNetModel unet(UNetConfig::sd15(), options);
  layers::randomize_parameters(*unet, 1);
  IpAdapter adapter(plus_sd15(), options);
  layers::randomize_parameters(*adapter, 2);
  ClipVisionModel encoder(ClipVisionConfig::vit_h14(), options);
  layers::randomize_parameters(*encoder, 3);
  c10::InferenceMode inference;
  Generator generator(0);
  const int64_t latent = size / 8;
  const at::Tensor x = generator.randn({2, 4, latent, latent});
  const at::Tensor t = at::full({1}, 500.0f);
  const at::Tensor context = generator.randn({2, 77, 768}).to(dtype);
  const at::Tensor pixels = generator.randn({1, 3, 224, 224});

  // What the pipeline does once per request: encode [negative, positive], project, and make
  // every layer's keys and values.
  auto prepare = [&] {
    const at::Tensor positive = encoder->forward(pixels).penultimate;
    const at::Tensor negative = encoder->blank_image_output().penultimate;  // kept after once
    return adapter->keys_values(adapter->project(at::cat({negative, positive})), 1.0);
  };
  auto image_prompt = std::make_shared<ImagePromptAttention>();
  for (ImagePromptBranch& branch : prepare()) image_prompt->layers.push_back({branch});
  UNetExtraInputs with_adapter;
  with_adapter.image_prompt = image_prompt;

  // One warm-up each, then plain and adapted steps alternately, so drift in machine load
  // hits both alike.
  auto seconds = [](const std::function<void()>& work) {
    const auto start = std::chrono::steady_clock::now();
    work();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto plain_step_run = [&] { unet->forward(x, t, context); };
  auto adapted_step_run = [&] { unet->forward(x, t, context, with_adapter); };
  plain_step_run();
  adapted_step_run();
  std::vector<double> plain, adapted;
  for (int round = 0; round < repeats; ++round) {
    plain.push_back(seconds(plain_step_run));
    adapted.push_back(seconds(adapted_step_run));
  }
  std::sort(plain.begin(), plain.end());
  std::sort(adapted.begin(), adapted.end());
  const double plain_step = plain[plain.size() / 2];
  const double adapted_step = adapted[adapted.size() / 2];
  bench::print_figure({{"figure", "ip_adapter_step_overhead_cfg_batch2"},
                       {"adapter", "plus_sd15 (16 tokens, 16 layers)"},
                       {"dtype", dtype_name},
                       {"size", size},
                       {"threads", at::get_num_threads()},
                       {"unet_seconds_per_step", plain_step},
                       {"unet_with_ip_adapter_seconds_per_step", adapted_step},
                       {"overhead_percent", (adapted_step / plain_step - 1.0) * 100.0}});
  const double encode = bench::median_seconds(repeats, [&] { encoder->forward(pixels); });
  const double per_request = bench::median_seconds(repeats, [&] { prepare(); });
  bench::print_figure({{"figure", "ip_adapter_image_encoding"},
                       {"encoder", "ViT-H/14 (632M parameters), 1 image 224x224"},
                       {"dtype", dtype_name},
                       {"threads", at::get_num_threads()},
                       {"encode_seconds", encode},
                       {"per_request_seconds", per_request},
                       {"per_request_in_plain_unet_steps", per_request / plain_step},
                       {"peak_rss_mib", bench::peak_rss_mib()}});
  return 0;
}
