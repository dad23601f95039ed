#include "doppel/train/training_data.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  std::string caption = text.str();
  // One caption per file; line breaks and surrounding space are not part of it.
  std::replace(caption.begin(), caption.end(), '\n', ' ');
  std::replace(caption.begin(), caption.end(), '\r', ' ');
  const auto first = caption.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return caption.substr(first, caption.find_last_not_of(" \t") - first + 1);
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, "cannot read " + path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace

std::string default_caption(const std::string& trigger, const std::string& class_word) {
  std::string caption = "a photo of";
  for (const std::string& word : {trigger, class_word}) {
    if (!word.empty()) caption += " " + word;
  }
  return caption;
}

TrainingFolder read_training_folder(const std::filesystem::path& folder,
                                    const std::string& fallback_caption) {
  std::error_code error;
  if (!std::filesystem::is_directory(folder, error)) {
    throw Error(ErrorCode::kNotFound,
                "training image folder " + folder.string() + " does not exist or is not a folder");
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.is_regular_file() && entry.path().extension() != ".txt") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());

  TrainingFolder result;
  int64_t not_images = 0;
  for (const auto& file : files) {
    const std::string name = file.filename().string();
    std::string bytes = read_bytes(file);
    try {
      sniff_image_header(bytes, name);
    } catch (const Error&) {
      ++not_images;  // not a picture at all (notes, .DS_Store, ...): ignored
      continue;
    }
    TrainingExample example;
    example.source = name;
    try {
      example.image = decode_image(bytes, {}, name);
    } catch (const Error& failure) {
      result.skipped.push_back(name + ": " + failure.what());
      continue;
    }
    std::filesystem::path caption_file = file;
    caption_file.replace_extension(".txt");
    example.caption = std::filesystem::exists(caption_file) ? read_text_file(caption_file) : "";
    if (example.caption.empty()) example.caption = fallback_caption;
    result.examples.push_back(std::move(example));
  }
  if (result.examples.empty()) {
    std::string held = std::to_string(files.size()) + " file(s)";
    if (not_images > 0) held += ", " + std::to_string(not_images) + " not an image";
    if (!result.skipped.empty()) {
      held += ", " + std::to_string(result.skipped.size()) + " damaged (" + result.skipped[0] + ")";
    }
    throw Error(ErrorCode::kInvalidArgument, "no usable training image in " + folder.string() +
                                                 " (" + held +
                                                 "); add PNG, JPEG or WebP photos of the person");
  }
  return result;
}

Image square_training_image(const Image& image, int resolution) {
  if (resolution < 8 || resolution % 8 != 0) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "training resolution must be a positive multiple of 8, got " + std::to_string(resolution));
  }
  const int side = std::min(image.width, image.height);
  const int left = (image.width - side) / 2, top = (image.height - side) / 2;
  Image square;
  square.width = square.height = side;
  square.rgb.resize(static_cast<size_t>(side) * side * 3);
  for (int y = 0; y < side; ++y) {
    const uint8_t* row =
        image.rgb.data() + ((static_cast<size_t>(top + y) * image.width) + left) * 3;
    std::copy(row, row + static_cast<size_t>(side) * 3,
              square.rgb.data() + static_cast<size_t>(y) * side * 3);
  }
  return resize_image(square, resolution, resolution);
}

}  // namespace doppel
