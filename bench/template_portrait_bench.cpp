// What a template portrait costs against a plain generation in the same run: the full-size SD 1.5
// architecture with random weights (speed does not depend on weight values), written once as a
// CompVis single file (fp16, ~2 GB in a temporary folder) so both go through GenerationSession.
// The template is a real photo from ../shared/testdata/faces scaled to 512x768; its face is
// repainted "only masked" at 512 with a Canny ControlNet of the full-size architecture.
//   template_portrait_bench [--steps 4] [--threads N] [--photo FILE] [--keep-model DIR]
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>

#include "bench_support.hpp"
#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/models/clip_text.hpp"
#include "doppel/models/control_net.hpp"
#include "doppel/models/layers.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/models/vae.hpp"
#include "doppel/studio/template_portrait.hpp"

using namespace doppel;
namespace fs = std::filesystem;

namespace {

void add_module(std::map<std::string, at::Tensor>& tensors, torch::nn::Module& module,
                const std::string& prefix) {
  for (const auto& item : module.named_parameters())
    tensors[prefix + item.key()] = item.value().detach().to(at::kHalf);
}

// A random SD 1.5 checkpoint and a random SD 1.5 ControlNet in `folder` (written once).
void write_random_models(const fs::path& folder) {
  fs::create_directories(folder);
  if (!fs::exists(folder / "random-sd15.safetensors")) {
    std::map<std::string, at::Tensor> tensors;
    UNetModel unet(UNetConfig::sd15());
    layers::randomize_parameters(*unet, 1);
    add_module(tensors, *unet, kUNetPrefix);
    unet = nullptr;
    AutoencoderKL vae(VaeConfig::sd());
    layers::randomize_parameters(*vae, 2);
    add_module(tensors, *vae, kVaePrefix);
    ClipTextModel text(ClipTextConfig::vit_l14());
    layers::randomize_parameters(*text, 3);
    add_module(tensors, *text, kSd1TextEncoderPrefix);
    save_safetensors(folder / "random-sd15.safetensors", tensors);
  }
  if (!fs::exists(folder / "random-canny.safetensors")) {
    ControlNetConfig config;
    config.unet = UNetConfig::sd15();
    ControlNetModel control(config);
    layers::randomize_parameters(*control, 4);
    std::map<std::string, at::Tensor> tensors;
    add_module(tensors, *control, kControlNetPrefix);
    save_safetensors(folder / "random-canny.safetensors", tensors);
  }
}

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
  std::string keep = (fs::temp_directory_path() / "doppel-template-bench").string();
  app.add_option("--steps", steps, "Sampling steps of both (few are enough for a ratio)");
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)");
  app.add_option("--photo", photo, "A photo with one face, used as the template");
  app.add_option("--keep-model", keep, "Where the random checkpoint is written (and reused)");
  CLI11_PARSE(app, argc, argv);
  try {
    at::set_num_threads(threads > 0 ? threads
                                    : static_cast<int>(std::thread::hardware_concurrency()));
    {
      c10::InferenceMode inference;
      write_random_models(keep);
    }
    SessionOptions options;
    options.model = ModelRef::file(fs::path(keep) / "random-sd15.safetensors");
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
    settings.canny = TemplateControl{(fs::path(keep) / "random-canny.safetensors").string()};
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
                         {"model", "sd15 random (fp16 file)"},
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
