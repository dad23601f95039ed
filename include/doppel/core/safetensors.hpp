// The .safetensors format: a u64 header length, a JSON header, then raw
// little-endian tensor bytes. Files are mapped read-only and validated in full
// before any tensor is handed out.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace doppel {

struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates a file; throws doppel::Error naming the file and the
  // offending tensor when anything is malformed.
  static SafetensorsFile open(const std::filesystem::path& path);
  // Parses an in-memory copy (used by the fuzzer and by network uploads).
  static SafetensorsFile from_bytes(std::string bytes, const std::string& label = "<memory>");

  const std::string& label() const { return label_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;

  // A CPU tensor that aliases the mapped bytes (zero copy; it keeps the
  // mapping alive). Read-only in spirit: clone before writing.
  at::Tensor tensor(const std::string& name) const;

 private:
  struct Storage;
  static SafetensorsFile from_storage(std::shared_ptr<Storage> storage, const std::string& label);
  std::shared_ptr<Storage> storage_;
  std::string label_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device; contiguous copies are made) atomically: a temp
// file beside the target, fsync, then rename. Names are written sorted.
void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Serialises to bytes; the same layout save_safetensors writes.
std::string serialize_safetensors(const std::map<std::string, at::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Safetensors dtype string ("F16", "BF16", ...) for a torch dtype, and back.
std::string safetensors_dtype_name(at::ScalarType dtype);

}  // namespace doppel
