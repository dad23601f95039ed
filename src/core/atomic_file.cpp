#include "doppel/core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

std::string system_error_text() {
  return std::strerror(errno);
}

// Writes everything or throws; a full disk surfaces here as ENOSPC.
void write_all(int fd, std::string_view bytes, const std::filesystem::path& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "cannot write " + path.string() + ": " + system_error_text());
    }
    written += static_cast<size_t>(n);
  }
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::path folder = path.parent_path().empty() ? "." : path.parent_path();
  std::random_device entropy;
  std::filesystem::path temp =
      folder / ("." + path.filename().string() + ".tmp" + std::to_string(entropy()));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorCode::kIo, "cannot create " + temp.string() + ": " + system_error_text());
  try {
    write_all(fd, bytes, path);
    if (::fsync(fd) != 0)
      throw Error(ErrorCode::kIo, "cannot flush " + path.string() + ": " + system_error_text());
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    std::string reason = system_error_text();
    ::unlink(temp.c_str());
    throw Error(ErrorCode::kIo,
                "cannot move the new file into place at " + path.string() + ": " + reason);
  }
}

std::string read_file(const std::filesystem::path& path) {
  std::error_code status;
  if (!std::filesystem::is_regular_file(path, status))
    throw Error(ErrorCode::kNotFound, "file not found: " + path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, "cannot open " + path.string() + ": " + system_error_text());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::kIo, "cannot read " + path.string());
  return std::move(buffer).str();
}

}  // namespace doppel
