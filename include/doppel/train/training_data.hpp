// A person's training photos and their captions, as kohya-ss reads a folder:
// every image file, each captioned by a same-named .txt beside it or by a
// default caption ("a photo of <trigger> <class>").
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "doppel/core/image.hpp"

namespace doppel {

struct TrainingExample {
  std::string source;  // file name, for messages
  Image image;
  std::string caption;
};

struct TrainingFolder {
  std::vector<TrainingExample> examples;  // sorted by file name
  std::vector<std::string> skipped;       // "<file>: <reason>", for the user
};

// "a photo of <trigger> <class>" with the empty parts left out.
std::string default_caption(const std::string& trigger, const std::string& class_word);

// Reads every image in `folder` (format judged by content; files that are not
// images are ignored, damaged images are listed in `skipped`). Throws
// kNotFound for a missing folder and kInvalidArgument when no usable image is
// left, saying what the folder held.
TrainingFolder read_training_folder(const std::filesystem::path& folder,
                                    const std::string& fallback_caption);

// Centre-crops to a square and resizes to resolution x resolution.
Image square_training_image(const Image& image, int resolution);

}  // namespace doppel
