// Merging LoRAs into a loaded full-size SD 1.5 (random weights, bf16 as the studio loads it):
// what a shoot's first portrait pays before sampling. The LoRAs are a random LCM-LoRA of the
// downloaded layout (rank 64, fp16, 278 modules) and a subject's LoRA as doppel's trainer saves
// it; each figure is the median of --repeats merges after a warm-up, each followed by removal.
//   lora_merge_bench [--repeats 3] [--checkpoint PATH] [--lcm-lora PATH] [--profile]
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>

#include "bench_support.hpp"
#include "doppel/checkpoint/lora.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/runtime.hpp"
#include "random_models.hpp"

using namespace doppel;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  int repeats = 3;
  bool profile = false;
  fs::path checkpoint = fs::temp_directory_path() / "doppel-random-sd15.safetensors";
  fs::path lcm_lora = fs::temp_directory_path() / "doppel-random-lcm-lora-sdv1-5.safetensors";
  CLI::App app{"LoRA merge into a full-size SD 1.5 (random weights)"};
  app.add_option("--repeats", repeats, "timed merges after a warm-up (median)");
  app.add_option("--checkpoint", checkpoint, "random SD 1.5 checkpoint (written once)");
  app.add_option("--lcm-lora", lcm_lora, "random LCM-LoRA (written once)");
  app.add_flag("--profile", profile, "print the ops of one more merge of both by self time");
  CLI11_PARSE(app, argc, argv);
  configure_threads(0);
  install_caching_cpu_allocator();

  bench::ensure_random_sd15_checkpoint(checkpoint);
  if (!fs::exists(lcm_lora)) bench::write_random_lcm_lora_sd15(checkpoint, lcm_lora);
  const fs::path subject_path =
      fs::temp_directory_path() /
      ("doppel-merge-bench-subject-" + std::to_string(getpid()) + ".safetensors");
  bench::write_random_subject_lora_sd15(checkpoint, subject_path, 16);
  const LoraFile lcm = load_lora(lcm_lora);
  const LoraFile subject = load_lora(subject_path);
  fs::remove(subject_path);  // the mapping stays readable

  ModelLoadOptions load;
  load.path = checkpoint;
  load.dtype = at::kBFloat16;
  load.compute_hash = false;
  StableDiffusionCheckpoint model = load_stable_diffusion(load);

  const std::vector<std::pair<std::string, std::vector<std::pair<LoraFile, double>>>> cases = {
      {"lcm_lora", {{lcm, 1.0}}},
      {"subject_lora", {{subject, 0.8}}},
      {"subject_and_lcm_lora", {{subject, 0.8}, {lcm, 1.0}}}};
  for (const auto& [name, loras] : cases) {
    size_t layers = 0;
    double removal = 0;
    const double merge = bench::median_seconds(repeats, [&] {
      AppliedLoras applied = apply_loras(model, loras);
      layers = 0;
      for (const LoraMergeReport& report : applied.reports()) layers += report.applied.size();
      const auto start = std::chrono::steady_clock::now();
      applied.remove();
      removal = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    bench::print_figure({{"figure", "lora_merge_" + name},
                         {"threads", at::get_num_threads()},
                         {"layers", layers},
                         {"merge_and_remove_seconds", merge},
                         {"remove_seconds", removal}});
  }
  if (profile) bench::print_op_profile([&] { apply_loras(model, cases.back().second); });
  return 0;
}
