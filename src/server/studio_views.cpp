#include "server/studio_views.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "doppel/core/error.hpp"
#include "doppel/face/subject_profile.hpp"

namespace doppel::server {

std::string subject_stage(const store::Subject& subject, const std::vector<store::Photo>& photos,
                          const std::vector<store::LoraVersion>& versions, int minimum_photos) {
  using store::LoraStatus;
  const auto has_status = [&](std::initializer_list<LoraStatus> wanted) {
    return std::any_of(versions.begin(), versions.end(), [&](const store::LoraVersion& version) {
      return std::find(wanted.begin(), wanted.end(), version.status) != wanted.end();
    });
  };
  if (has_status({LoraStatus::kQueued, LoraStatus::kTraining})) return "training";
  const auto accepted = std::count_if(photos.begin(), photos.end(), [](const store::Photo& photo) {
    return photo.verdict == store::PhotoVerdict::kAccepted;
  });
  if (subject.identity_source == store::kIdentityInstant)
    return accepted >= 1 ? "ready_to_shoot" : "needs_photos";
  if (has_status({LoraStatus::kReady})) return "trained";
  return accepted >= minimum_photos ? "ready_to_train" : "needs_photos";
}

nlohmann::json image_likeness_json(const store::Image& image) {
  using nlohmann::json;
  if (!image.likeness) return {{"likeness", nullptr}, {"likeness_label", nullptr}};
  if (!image.quality) return {{"likeness", nullptr}, {"likeness_label", "no face"}};
  return {{"likeness", *image.likeness}, {"likeness_label", likeness_label(*image.likeness)}};
}

nlohmann::json validation_likeness_json(const std::optional<double>& median) {
  using nlohmann::json;
  if (!median) return {{"validation_likeness", nullptr}, {"validation_faces", nullptr}};
  if (*median == 0.0) return {{"validation_likeness", nullptr}, {"validation_faces", "none"}};
  return {{"validation_likeness", *median}, {"validation_faces", "found"}};
}

std::string file_name_part(const std::string& text) {
  std::string out;
  size_t characters = 0;
  for (size_t i = 0; i < text.size() && characters < 40;) {
    const auto byte = static_cast<unsigned char>(text[i]);
    // A whole UTF-8 sequence (any script's letters) is kept as it is.
    const size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    if (byte >= 0xC0 && i + length <= text.size()) {
      bool valid = true;
      for (size_t k = 1; k < length; ++k)
        valid = valid && (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      if (valid) {
        out.append(text, i, length);
        i += length;
        ++characters;
        continue;
      }
    }
    const bool keep = std::isalnum(byte) != 0 || byte == '_' || byte == '-';
    if (keep && byte < 0x80) {
      out.push_back(static_cast<char>(byte));
      ++characters;
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
      ++characters;
    }
    ++i;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "portrait" : out;
}

std::string portrait_file_name(const std::string& subject, const std::string& style, size_t n,
                               size_t digits) {
  std::string number = std::to_string(n);
  if (number.size() < digits) number.insert(0, digits - number.size(), '0');
  return file_name_part(subject) + "-" + file_name_part(style) + "-" + number + ".png";
}

std::string upload_file_name(const std::string& client_name, size_t index) {
  const size_t slash = client_name.find_last_of("/\\");
  const std::string base = slash == std::string::npos ? client_name : client_name.substr(slash + 1);
  std::string name;
  for (char c : base)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) name.push_back(c);
  if (name.size() > 80) {
    size_t cut = 80;
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
    name = name.substr(0, cut) + "…";
  }
  const bool blank = name.find_first_not_of(' ') == std::string::npos;
  return blank ? "photo " + std::to_string(index + 1) : name;
}

std::string attachment_header(const std::string& file_name) {
  std::string ascii;
  std::string encoded;
  static const char* hex = "0123456789ABCDEF";
  for (char c : file_name) {
    const auto byte = static_cast<unsigned char>(c);
    ascii.push_back(byte < 0x80 && byte != '"' && byte != '\\' ? c : '_');
    if (std::isalnum(byte) != 0 || byte == '.' || byte == '-' || byte == '_') {
      encoded.push_back(c);
    } else {
      encoded += '%';
      encoded += hex[byte >> 4];
      encoded += hex[byte & 15];
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

DataFolderLock::DataFolderLock(const std::filesystem::path& data_dir) {
  const std::filesystem::path path = data_dir / "doppel.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0)
    throw Error(ErrorCode::kIo, "cannot create the lock file " + path.string() + ": " +
                                    std::strerror(errno) + "; check the data folder's permissions");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int failure = errno;
    ::close(fd_);
    fd_ = -1;
    if (failure == EWOULDBLOCK)
      throw Error(ErrorCode::kIo,
                  "the data folder " + data_dir.string() +
                      " is in use by another doppel server; stop that one first, or give this "
                      "one another folder with --data");
    throw Error(ErrorCode::kIo, "cannot lock " + path.string() + ": " + std::strerror(failure));
  }
}

DataFolderLock::~DataFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace doppel::server
