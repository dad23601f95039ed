#include "server/zip_archive.hpp"

#include <zlib.h>

#include <algorithm>
#include <ctime>

#include "doppel/core/error.hpp"

namespace doppel::server {
namespace {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndRecordSignature = 0x06054b50;
constexpr uint64_t kLocalHeaderBytes = 30;
constexpr uint64_t kCentralHeaderBytes = 46;
constexpr uint64_t kEndRecordBytes = 22;
constexpr uint16_t kVersionNeeded = 10;             // 1.0: stored files only
constexpr uint16_t kVersionMadeBy = (3 << 8) | 20;  // Unix, 2.0
constexpr uint32_t kUnixFileMode = 0100644u << 16;  // regular file, rw-r--r--
constexpr uint16_t kUtf8NamesFlag = 1 << 11;        // general purpose bit 11

void put16(std::string& out, uint32_t value) {
  out.push_back(static_cast<char>(value & 0xFF));
  out.push_back(static_cast<char>((value >> 8) & 0xFF));
}

void put32(std::string& out, uint32_t value) {
  put16(out, value & 0xFFFF);
  put16(out, value >> 16);
}

struct DosTime {
  uint16_t time = 0;
  uint16_t date = (1 << 5) | 1;  // 1980-01-01, the earliest DOS date
};

DosTime dos_time(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  DosTime dos;
  if (!gmtime_r(&seconds, &utc) || utc.tm_year < 80) return dos;
  const int year = std::min(utc.tm_year + 1900, 2107) - 1980;  // 7 bits of years
  dos.time = static_cast<uint16_t>((utc.tm_hour << 11) | (utc.tm_min << 5) | (utc.tm_sec / 2));
  dos.date = static_cast<uint16_t>((year << 9) | ((utc.tm_mon + 1) << 5) | utc.tm_mday);
  return dos;
}

void check_name(const std::string& name) {
  auto refuse = [&](const std::string& why) {
    throw Error(ErrorCode::kInvalidArgument, "zip entry name '" + name + "' " + why);
  };
  if (name.empty()) refuse("is empty");
  if (name.size() > 0xFFFF) refuse("is longer than 65535 bytes");
  if (name.front() == '/') refuse("is absolute");
  if (name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
    refuse("holds a backslash or NUL byte");
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = std::min(name.find('/', start), name.size());
    if (name.compare(start, end - start, "..") == 0) refuse("leaves its folder with '..'");
    start = end + 1;
  }
}

}  // namespace

uint64_t stored_zip_size(uint64_t files, uint64_t name_bytes, uint64_t data_bytes) {
  return files * (kLocalHeaderBytes + kCentralHeaderBytes) + 2 * name_bytes + data_bytes +
         kEndRecordBytes;
}

ZipWriter::ZipWriter(Sink sink, uint64_t max_bytes)
    : sink_(std::move(sink)), max_bytes_(std::min(max_bytes, kMaxZipBytes)) {}

bool ZipWriter::emit(std::string_view bytes) {
  if (stopped_) return false;
  if (!sink_(bytes)) stopped_ = true;
  written_ += bytes.size();
  return !stopped_;
}

bool ZipWriter::add(const std::string& name, std::string_view bytes, int64_t modified_ms) {
  if (finished_) throw Error(ErrorCode::kInternal, "ZipWriter::add after finish");
  check_name(name);
  if (files_ >= kMaxZipFiles)
    throw Error(ErrorCode::kInvalidArgument, "a zip file without zip64 holds at most " +
                                                 std::to_string(kMaxZipFiles) + " files");
  // The archive as it would end if this were the last file: every field must still fit.
  const uint64_t total_if_last =
      written_ + directory_.size() + stored_zip_size(1, name.size(), bytes.size());
  if (total_if_last > max_bytes_)
    throw Error(ErrorCode::kInvalidArgument,
                "the zip file would be larger than " + std::to_string(max_bytes_) +
                    " bytes, more than a zip file without zip64 can hold");

  const uint32_t crc = static_cast<uint32_t>(
      crc32_z(crc32_z(0, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
  const DosTime when = dos_time(modified_ms);
  const bool ascii = std::all_of(name.begin(), name.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  const uint16_t flags = ascii ? 0 : kUtf8NamesFlag;
  const auto offset = static_cast<uint32_t>(written_);
  const auto size = static_cast<uint32_t>(bytes.size());

  std::string header;
  put32(header, kLocalHeaderSignature);
  put16(header, kVersionNeeded);
  put16(header, flags);
  put16(header, 0);  // method: stored
  put16(header, when.time);
  put16(header, when.date);
  put32(header, crc);
  put32(header, size);  // compressed size
  put32(header, size);  // uncompressed size
  put16(header, static_cast<uint32_t>(name.size()));
  put16(header, 0);  // extra field length
  header += name;

  put32(directory_, kCentralHeaderSignature);
  put16(directory_, kVersionMadeBy);
  put16(directory_, kVersionNeeded);
  put16(directory_, flags);
  put16(directory_, 0);
  put16(directory_, when.time);
  put16(directory_, when.date);
  put32(directory_, crc);
  put32(directory_, size);
  put32(directory_, size);
  put16(directory_, static_cast<uint32_t>(name.size()));
  put16(directory_, 0);  // extra field length
  put16(directory_, 0);  // comment length
  put16(directory_, 0);  // disk number
  put16(directory_, 0);  // internal attributes
  put32(directory_, kUnixFileMode);
  put32(directory_, offset);
  directory_ += name;
  ++files_;
  return emit(header) && emit(bytes);
}

bool ZipWriter::finish() {
  if (finished_) return !stopped_;
  finished_ = true;
  const auto directory_offset = static_cast<uint32_t>(written_);
  const auto directory_size = static_cast<uint32_t>(directory_.size());
  std::string end;
  put32(end, kEndRecordSignature);
  put16(end, 0);  // this disk
  put16(end, 0);  // disk of the central directory
  put16(end, static_cast<uint32_t>(files_));
  put16(end, static_cast<uint32_t>(files_));
  put32(end, directory_size);
  put32(end, directory_offset);
  put16(end, 0);  // comment length
  const bool sent = emit(directory_) && emit(end);
  directory_.clear();
  return sent;
}

}  // namespace doppel::server
