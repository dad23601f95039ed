// Photo intake throughput: decode, detect, landmarks, align, embed and every
// gate, on photos scaled to 1024 px (longest side) and held as JPEG bytes.
//
//   face_intake_bench [--images DIR] [--threads N] [--rounds R]
//
// DIR defaults to $DOPPEL_SHARED_DIR/testdata/faces (or ../shared/...): the
// single-face photos of labels.csv are used. Prints one JSON line per figure:
// per-stage milliseconds on one thread, then photos/s with 1..N workers.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_quality.hpp"
#include "doppel/face/photo_intake.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::filesystem::path default_images_dir() {
  if (const char* env = std::getenv("DOPPEL_SHARED_DIR"); env && *env)
    return std::filesystem::path(env) / "testdata" / "faces";
  return std::filesystem::path(DOPPEL_DEFAULT_SHARED_DIR) / "testdata" / "faces";
}

// Single-face photos named in labels.csv, re-encoded as 1024 px JPEGs.
std::vector<std::string> load_photos(const std::filesystem::path& dir, int side) {
  std::ifstream labels(dir / "labels.csv");
  if (!labels) throw std::runtime_error("no labels.csv in " + dir.string());
  std::vector<std::string> photos;
  std::string line;
  std::getline(labels, line);
  while (std::getline(labels, line)) {
    const auto first = line.find(',');
    const auto second = line.find(',', first + 1);
    const auto third = line.find(',', second + 1);
    if (first == std::string::npos || third == std::string::npos) continue;
    const std::string file = line.substr(0, first);
    const std::string identity = line.substr(first + 1, second - first - 1);
    const std::string faces = line.substr(second + 1, third - second - 1);
    if (faces != "1" || identity.empty() || identity == "unknown") continue;
    cv::Mat image = cv::imread((dir / file).string(), cv::IMREAD_COLOR);
    if (image.empty()) continue;
    const double scale = double(side) / std::max(image.cols, image.rows);
    cv::Mat resized;
    cv::resize(image, resized, cv::Size(), scale, scale,
               scale < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
    std::vector<uint8_t> jpeg;
    cv::imencode(".jpg", resized, jpeg, {cv::IMWRITE_JPEG_QUALITY, 92});
    photos.emplace_back(jpeg.begin(), jpeg.end());
  }
  return photos;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace doppel;
  std::filesystem::path dir = default_images_dir();
  int max_threads = 2, rounds = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--images")
      dir = argv[i + 1];
    else if (flag == "--threads")
      max_threads = std::atoi(argv[i + 1]);
    else if (flag == "--rounds")
      rounds = std::atoi(argv[i + 1]);
  }
  const int side = 1024;
  std::vector<std::string> photos;
  try {
    photos = load_photos(dir, side);
  } catch (const std::exception& e) {
    std::cerr << "face_intake_bench: " << e.what() << " (pass --images DIR)\n";
    return 1;
  }
  if (photos.empty()) {
    std::cerr << "face_intake_bench: no photos found in " << dir << "\n";
    return 1;
  }

  // Per-stage cost on one thread (intra-op parallelism off, as in the workers).
  configure_threads(1);
  install_caching_cpu_allocator();
  const auto load_start = Clock::now();
  FaceAnalyzer analyzer;
  bench::print_figure({{"bench", "face_intake"},
                       {"figure", "model_load_seconds"},
                       {"value", seconds_since(load_start)}});
  BrisqueScorer brisque;
  double decode = 0, detect = 0, align = 0, embed = 0, gates = 0;
  int faces = 0;
  for (const auto& bytes : photos) {
    auto t = Clock::now();
    const Image image = decode_image(bytes);
    decode += seconds_since(t);
    t = Clock::now();
    const std::vector<FaceDetection> detections = analyzer.detector().detect(image);
    detect += seconds_since(t);
    if (detections.empty()) continue;
    ++faces;
    t = Clock::now();
    AnalyzedFace face;
    face.detection = detections.front();
    face.chip = extract_face_chip(image, face.detection);
    align += seconds_since(t);
    t = Clock::now();
    face.descriptor = analyzer.embed_chips({face.chip}).front();
    embed += seconds_since(t);
    t = Clock::now();
    const FaceQualityMeasures measures = measure_face_quality(image, face);
    const PortraitCrop portrait = extract_portrait_crop(image, face.detection);
    const double score = brisque.score(portrait.image);
    gates += seconds_since(t);
    (void)measures;
    (void)score;
  }
  const double n = double(photos.size());
  for (const auto& [stage, total] : {std::pair{"decode", decode},
                                     {"detect_landmarks", detect},
                                     {"align", align},
                                     {"embed", embed},
                                     {"gates", gates}})
    bench::print_figure({{"bench", "face_intake"},
                         {"figure", std::string("stage_ms_") + stage},
                         {"value", 1000 * total / n},
                         {"photos", photos.size()},
                         {"faces", faces},
                         {"input_px", side}});

  // Whole intake (PhotoIntake::examine on decoded bytes) with 1..N workers,
  // each with its own analyzer copy (shared models).
  for (int threads = 1; threads <= max_threads; ++threads) {
    std::atomic<size_t> next{0};
    std::atomic<int> accepted{0};
    const auto start = Clock::now();
    const std::clock_t cpu_start = std::clock();
    std::vector<std::thread> workers;
    for (int w = 0; w < threads; ++w)
      workers.emplace_back([&] {
        FaceAnalyzer local = analyzer;
        PhotoIntake intake(local);
        const size_t total = photos.size() * size_t(rounds);
        for (size_t i = next.fetch_add(1); i < total; i = next.fetch_add(1)) {
          const PhotoVerdict verdict =
              intake.examine(decode_image(photos[i % photos.size()]), "photo");
          if (verdict.accepted) accepted.fetch_add(1);
        }
      });
    for (auto& worker : workers) worker.join();
    const double elapsed = seconds_since(start);
    const double cpu_seconds = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    bench::print_figure({{"bench", "face_intake"},
                         {"figure", "photos_per_second"},
                         {"value", n * rounds / elapsed},
                         {"threads", threads},
                         {"photos", photos.size() * size_t(rounds)},
                         {"accepted", accepted.load()},
                         {"input_px", side},
                         {"hardware_threads", hardware_threads()},
                         // CPU time is unaffected by other load on a shared machine.
                         {"cpu_ms_per_photo", 1000 * cpu_seconds / (n * rounds)}});
  }
  return 0;
}
