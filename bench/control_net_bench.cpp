// What a ControlNet costs per sampling step: full-size SD 1.5 UNet and SD 1.5 ControlNet
// (hint widths 16/32/96/256) with random weights, one CFG step (batch 2) with and without
// the ControlNet. One JSON line.
//   control_net_bench --dtype fp32|bf16 --size 512 --repeats 2
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"

using namespace doppel;

int main(int argc, char** argv) {
  std::string dtype_name = "fp32";
  int64_t size = 512;
  int repeats = 2;
  CLI::App app{"SD 1.5 ControlNet step overhead (random weights)"};
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
  ControlNetModel control(ControlNetConfig::sd15(), options);
  layers::randomize_parameters(*control, 2);
  c10::InferenceMode inference;
  Generator generator(0);
  const int64_t latent = size / 8;
  const at::Tensor x = generator.randn({2, 4, latent, latent});
  const at::Tensor t = at::full({1}, 500.0f);
  const at::Tensor context = generator.randn({2, 77, 768}).to(dtype);
  // One control image, expanded to the CFG batch as the pipeline does.
  const at::Tensor hint = at::rand({1, 3, size, size}).expand({2, -1, -1, -1});

  const double plain = bench::median_seconds(repeats, [&] { unet->forward(x, t, context); });
  const double controlled = bench::median_seconds(
      repeats, [&] { unet->forward(x, t, context, control->forward(x, t, context, hint, 1.0)); });
  bench::print_figure({{"figure", "controlnet_step_overhead_cfg_batch2"},
                       {"dtype", dtype_name},
                       {"size", size},
                       {"threads", at::get_num_threads()},
                       {"unet_seconds_per_step", plain},
                       {"unet_plus_controlnet_seconds_per_step", controlled},
                       {"overhead_percent", (controlled / plain - 1.0) * 100.0},
                       {"peak_rss_mib", bench::peak_rss_mib()}});
  return 0;
}
