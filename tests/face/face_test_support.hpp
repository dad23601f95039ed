// Shared by the face tests: one analyzer per process (dlib's landmark model
// takes about a second to load) and readers for the golden files.
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "doppel/core/atomic_file.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "support/shared_data.hpp"

namespace doppel::test {

// A photo of ../shared/testdata/faces read at most `max_side` pixels on its longer side.
inline Image face_photo(const std::string& file, int max_side) {
  ImageReadOptions read;
  read.max_side = max_side;
  return read_image(faces_dir() / file, read);
}

inline std::filesystem::path face_golden_dir() {
  return golden_dir() / "faces";
}

// Skips the test when the model files are not installed.
#define DOPPEL_REQUIRE_FACE_MODELS()                                    \
  do {                                                                  \
    DOPPEL_REQUIRE_PATH(::doppel::default_landmark_model_path());       \
    DOPPEL_REQUIRE_PATH(::doppel::default_face_recognition_manifest()); \
  } while (0)

// The product's analyzer (EXIF applied, upsampled retry on).
inline FaceAnalyzer& product_analyzer() {
  static FaceAnalyzer analyzer{FaceAnalyzerOptions{}};
  return analyzer;
}

// As the goldens were made: no EXIF rotation, no upsampled retry.
inline FaceAnalyzer& golden_analyzer() {
  static FaceAnalyzer analyzer = [] {
    FaceAnalyzerOptions options;
    options.read.apply_exif_orientation = false;
    options.retry_upsampled_max_pixels = 0;
    return FaceAnalyzer{options};
  }();
  return analyzer;
}

// Runs work(analyzer_copy, i) for i < count on `threads` threads, each with
// its own copy of `prototype` (sharing the models); rethrows the first error.
inline void parallel_analyze(FaceAnalyzer& prototype, size_t count,
                             const std::function<void(FaceAnalyzer&, size_t)>& work,
                             int threads = 2) {
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      try {
        FaceAnalyzer analyzer = prototype;
        for (size_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) work(analyzer, i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  for (auto& worker : workers) worker.join();
  if (error) std::rethrow_exception(error);
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_file(path));
}

// labels.csv of the face test set: file -> (identity, faces, notes).
struct FaceLabel {
  std::string file, identity, faces, notes;
};
inline std::vector<FaceLabel> read_face_labels() {
  std::ifstream in(faces_dir() / "labels.csv");
  std::vector<FaceLabel> labels;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> fields(1);
    bool quoted = false;
    for (char c : line) {
      if (c == '"')
        quoted = !quoted;
      else if (c == ',' && !quoted)
        fields.emplace_back();
      else if (c != '\r')
        fields.back() += c;
    }
    if (fields.size() >= 4) labels.push_back({fields[0], fields[1], fields[2], fields[3]});
  }
  return labels;
}

// Photos of exactly one labelled person, without the derived and duplicate
// images the notes mark (synthetic edits, copies, crops, mirror images,
// cartoons): the "clean" set of golden/faces/eval_dev.json (95 photos).
inline std::vector<FaceLabel> clean_single_identity_photos() {
  std::vector<FaceLabel> out;
  for (const auto& label : read_face_labels()) {
    if (label.faces != "1" || label.identity.empty() || label.identity == "unknown" ||
        label.identity.find('+') != std::string::npos)
      continue;
    std::string notes = label.notes;
    std::transform(notes.begin(), notes.end(), notes.begin(), ::tolower);
    bool derived = false;
    for (const char* word : {"synthetic", "same photo", "crop of", "copy of", "mirror", "cartoon",
                             "stylized", "duplicate"})
      derived = derived || notes.find(word) != std::string::npos;
    if (!derived) out.push_back(label);
  }
  return out;
}

}  // namespace doppel::test
