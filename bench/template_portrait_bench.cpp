// What a template portrait costs against a plain generation in the same run: the full-size SD 1.5
// architecture with random weights (speed does not depend on weight values), written once as a
// CompVis single file (bench/random_models, shared with the other benches) so both go through
// GenerationSession.
// The template is a real photo from ../shared/testdata/faces scaled to 512x768; its face is
// repainted "only masked" at 512 with a Canny ControlNet of the full-size architecture.
//   template_portrait_bench [--steps 4] [--threads N] [--photo FILE] [--checkpoint FILE]
//                           [--control-net FILE]
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>

#include "bench_support.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/studio/template_portrait.hpp"
#include "random_models.hpp"

using namespace doppel;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Template portrait vs plain generation, SD 1.5 at 512x768 (random weights)"};
  int64_t steps = 4;
  int threads = 0;
  std::string photo = (fs::path(DOPPEL_DEFAULT_SHARED_DIR) / "testdata" / "faces" /
                       "angelina_jolie__deepface_img10.jpg")
                          .string();
  std::string checkpoint = (fs::temp_directory_path() / "doppel-random-sd15.safetensors").string();
  std::string control_net =
      (fs::temp_directory_path() / "doppel-random-canny-sd15.safetensors").string();
  app.add_option("--steps", steps, "Sampling steps of both (few are enough for a ratio)");
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)");
  app.add_option("--photo", photo, "A photo with one face, used as the template");
  app.add_option("--checkpoint", checkpoint, "The random SD 1.5 checkpoint (written if missing)");
  app.add_option("--control-net", control_net, "The random Canny ControlNet (written if missing)");
  CLI11_PARSE(app, argc, argv);
  try {
    at::set_num_threads(threads > 0 ? threads
                                    : static_cast<int>(std::thread::hardware_concurrency()));
    const bench::MachinePeak peak = bench::measure_machine_peak(at::get_num_threads());
    {
      c10::InferenceMode inference;
      bench::ensure_random_sd15_checkpoint(checkpoint);
      bench::ensure_random_sd15_control_net(control_net);
    }
    SessionOptions options;
    options.model = ModelRef::file(checkpoint);
    GenerationSession session(options);

    SessionRequest plain;
    plain.generation.prompt = "photo of a woman on a beach, golden hour";
    plain.generation.negative_prompt = "blurry";
    plain.generation.width = 512;
    plain.generation.height = 768;
    plain.generation.steps = steps;
    plain.generation.sampler = "euler";
    plain.generation.seed = 1;
    auto start = std::chrono::steady_clock::now();
    session.generate(plain);
    const double plain_seconds = seconds_since(start);

    PortraitTemplate settings;
    settings.id = "bench";
    settings.prompt = "photo of {subject}, golden hour";
    settings.negative_prompt = "blurry";
    settings.sampler = "euler";
    settings.karras = false;
    settings.steps = steps;
    settings.strength = 1.0;  // every step runs, as in the plain generation
    settings.canny = TemplateControl{control_net};
    TemplatePortraitRequest request;
    request.settings = settings;
    request.picture = resize_image(read_image(photo), 512, 768);
    request.subjects.push_back({"woman", {}, {}, std::nullopt});
    request.seed = 1;
    FaceDetector detector(default_landmark_model_path());
    const auto faces = find_template_faces(request.picture, detector, settings.mask);
    start = std::chrono::steady_clock::now();
    render_template_portrait(session, request, faces);
    const double template_seconds = seconds_since(start);

    bench::print_figure({{"bench", "template_portrait"},
                         {"model", "sd15 random (bf16 file)"},
                         {"machine_peak_gflops", peak.bf16_gflops},
                         {"dtype", c10::toString(session.compute_dtype())},
                         {"size", "512x768"},
                         {"steps", steps},
                         {"threads", at::get_num_threads()},
                         {"plain_seconds", plain_seconds},
                         {"template_seconds", template_seconds},
                         {"ratio", template_seconds / plain_seconds},
                         {"faces", faces.size()}});
  } catch (const std::exception& error) {
    std::cerr << "template_portrait_bench: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
