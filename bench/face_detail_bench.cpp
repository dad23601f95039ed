// What the face-detail pass (ADetailer) costs next to the generation it follows: the full-size
// SD 1.5 architecture with random weights (speed does not depend on weight values), through
// GenerationSession as every caller uses it. One JSON line per figure:
//  * face_detail_pass: a txt2img portrait (--width x --height, --steps) and then the pass on it
//    (one face, inpainted "only masked" at the same size at --strength), timed in the same run,
//    and their ratio.
// Random weights draw no face, so the face finder reports a fixed portrait face (a 160x200 box
// centred at 40 % of the height): the pass's work is the same as for a detected face.
// The random checkpoint is written once to --checkpoint (about 2 GB in bf16) and reused.
//   face_detail_bench --dtype bf16 --steps 8 --width 512 --height 768
#include <CLI/CLI.hpp>

#include <chrono>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "random_models.hpp"

using namespace doppel;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "bf16";
  int64_t steps = 8, width = 512, height = 768;
  double strength = 0.4;
  std::filesystem::path checkpoint =
      std::filesystem::temp_directory_path() / "doppel-random-sd15.safetensors";
  CLI::App app{"The face-detail pass against the generation it follows (SD 1.5, random weights)"};
  app.add_option("--dtype", dtype, "fp32, bf16 or auto");
  app.add_option("--steps", steps, "sampling steps of the generation (the pass takes strength x)");
  app.add_option("--width", width, "portrait width");
  app.add_option("--height", height, "portrait height");
  app.add_option("--strength", strength, "the pass's denoising strength");
  app.add_option("--checkpoint", checkpoint, "where the random checkpoint is written and reused");
  CLI11_PARSE(app, argc, argv);
  configure_threads(0);
  install_caching_cpu_allocator();

  {
    const auto start = std::chrono::steady_clock::now();
    if (bench::ensure_random_sd15_checkpoint(checkpoint))
      bench::print_figure({{"figure", "random_checkpoint_written"},
                           {"path", checkpoint.string()},
                           {"seconds", seconds_since(start)}});
  }
  SessionOptions options;
  options.model = ModelRef::file(checkpoint);
  options.dtype = dtype;
  const PixelRegion face{static_cast<int>(width / 2 - 80), static_cast<int>(height * 2 / 5 - 100),
                         static_cast<int>(width / 2 + 80), static_cast<int>(height * 2 / 5 + 100)};
  options.face_finder.name = "fixed_portrait_face";
  options.face_finder.find = [face](const Image&, bool) {
    DetectedFace detected;
    detected.box = face;
    return std::vector<DetectedFace>{detected};
  };
  GenerationSession session(options);

  SessionRequest request;
  request.generation.prompt = "portrait photo of a woman in a garden, soft light";
  request.generation.negative_prompt = "blurry";
  request.generation.width = width;
  request.generation.height = height;
  request.generation.steps = steps;
  request.generation.sampler = "dpmpp_2m";
  request.generation.seed = 1;
  session.generate(request);  // warm-up: first-call allocations and kernel choices
  auto start = std::chrono::steady_clock::now();
  const GeneratedImage portrait = session.generate(request).front();
  const double generation_seconds = seconds_since(start);

  request.face_detail = FaceDetailOptions{};
  request.face_detail->strength = strength;
  FaceDetailReport report;
  start = std::chrono::steady_clock::now();
  session.detail_faces(portrait, request, {}, &report);
  const double detail_seconds = seconds_since(start);

  bench::print_figure(
      {{"figure", "face_detail_pass"},
       {"family", "sd15"},
       {"dtype", dtype},
       {"threads", at::get_num_threads()},
       {"width", width},
       {"height", height},
       {"steps", steps},
       {"strength", strength},
       {"pass_steps", static_cast<int64_t>(static_cast<double>(steps) * strength)},
       {"crop", {report.repainted.at(0).crop.width(), report.repainted.at(0).crop.height()}},
       {"generation_seconds", generation_seconds},
       {"face_detail_seconds", detail_seconds},
       {"ratio_to_generation", detail_seconds / generation_seconds}});
  return 0;
}
