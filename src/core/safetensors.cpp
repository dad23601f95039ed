#include "doppel/core/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

// Owns the bytes: either a read-only mapping or an in-memory string.
struct SafetensorsFile::Storage {
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* mapping = nullptr;
  std::string owned;
  ~Storage() {
    if (mapping) ::munmap(mapping, size);
  }
};

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  size_t bytes;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8},    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8},  {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},     {"I8", at::kChar, 1},   {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& info : kDtypes)
    if (name == info.name) return &info;
  return nullptr;
}

const DtypeInfo& dtype_info(at::ScalarType type) {
  for (const auto& info : kDtypes)
    if (info.type == type) return info;
  throw Error(ErrorCode::kUnsupported,
              std::string("dtype ") + c10::toString(type) + " cannot be stored in safetensors");
}

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, label + " is not a valid safetensors file: " + what);
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

}  // namespace

std::string safetensors_dtype_name(at::ScalarType dtype) {
  return dtype_info(dtype).name;
}

// Validates everything before any tensor is exposed: header bounds, JSON,
// dtypes, shape x dtype == byte span, spans in range, ordered and disjoint.
static void parse_header(const uint8_t* data, size_t size, const std::string& label,
                         std::vector<SafetensorsEntry>& entries,
                         std::map<std::string, std::string>& metadata, uint64_t& data_start) {
  if (size < 8) fail(label, "the file is shorter than the 8-byte header length");
  uint64_t header_length = read_u64_le(data);
  // A safetensors header is a JSON object right after its length. Another format's first bytes
  // read as a length give a huge meaningless number: name the real problem instead.
  const bool impossible_length = header_length > kMaxHeaderBytes || header_length > size - 8;
  if (size > 8 && data[8] != '{' && impossible_length) {
    std::string hint = "; use a .safetensors file";
    if (data[0] == 'P' && data[1] == 'K')
      hint =
          " (it is a zip archive, such as a PyTorch .ckpt/.pt file); convert it to "
          ".safetensors first";
    else if (data[0] == 0x89 && data[1] == 'P' && data[2] == 'N' && data[3] == 'G')
      hint = " (it is a PNG image)";
    else if (data[0] == 0x80)
      hint =
          " (it looks like a Python pickle, such as a .ckpt/.bin file); convert it to "
          ".safetensors first";
    fail(label, "not a safetensors file: it does not begin with a safetensors header" + hint);
  }
  if (header_length > kMaxHeaderBytes)
    fail(label, "header length " + std::to_string(header_length) + " exceeds 100 MB");
  if (header_length > size - 8)
    fail(label, "header length " + std::to_string(header_length) +
                    " runs past the end of the file (truncated download?)");
  data_start = 8 + header_length;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_length);
  } catch (const nlohmann::json::exception& e) {
    fail(label, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail(label, "header is not a JSON object");
  const uint64_t data_size = size - data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) fail(label, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(label, "__metadata__ value '" + m.key() + "' is not a string");
        metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const nlohmann::json& spec = *it;
    auto where = "tensor '" + name + "': ";
    if (!spec.is_object()) fail(label, where + "entry is not an object");
    if (!spec.contains("dtype") || !spec["dtype"].is_string()) fail(label, where + "missing dtype");
    const DtypeInfo* dtype = find_dtype(spec["dtype"].get<std::string>());
    if (!dtype) fail(label, where + "unknown dtype '" + spec["dtype"].get<std::string>() + "'");
    if (!spec.contains("shape") || !spec["shape"].is_array()) fail(label, where + "missing shape");
    if (!spec.contains("data_offsets") || !spec["data_offsets"].is_array() ||
        spec["data_offsets"].size() != 2)
      fail(label, where + "data_offsets must be [begin, end]");
    SafetensorsEntry entry;
    entry.name = name;
    entry.dtype = dtype->type;
    unsigned __int128 elements = 1;
    for (const auto& dim : spec["shape"]) {
      if (!dim.is_number_unsigned()) fail(label, where + "shape has a non-integer or negative dim");
      uint64_t d = dim.get<uint64_t>();
      if (d > (1ull << 48)) fail(label, where + "shape dimension is absurdly large");
      entry.shape.push_back(static_cast<int64_t>(d));
      elements *= d;
      if (elements > (static_cast<unsigned __int128>(1) << 62))
        fail(label, where + "shape has too many elements");
    }
    for (const auto& offset : spec["data_offsets"])
      if (!offset.is_number_unsigned()) fail(label, where + "data_offsets are not integers");
    entry.begin = spec["data_offsets"][0].get<uint64_t>();
    entry.end = spec["data_offsets"][1].get<uint64_t>();
    if (entry.end < entry.begin) fail(label, where + "data_offsets end before they begin");
    if (entry.end > data_size)
      fail(label, where + "data runs past the end of the file (ends at byte " +
                      std::to_string(entry.end) + " of " + std::to_string(data_size) + ")");
    unsigned __int128 expected = elements * dtype->bytes;
    if (expected != entry.end - entry.begin)
      fail(label, where + "shape and dtype need " +
                      std::to_string(static_cast<uint64_t>(expected)) +
                      " bytes but the span holds " + std::to_string(entry.end - entry.begin));
    entries.push_back(std::move(entry));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(label,
           "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap");
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string label = path.string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw Error(ErrorCode::kNotFound, "file not found: " + label);
    throw Error(ErrorCode::kIo, "cannot open " + label + ": " + std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kInvalidFile, label + " is not a regular file");
  }
  auto storage = std::make_shared<Storage>();
  storage->size = static_cast<size_t>(info.st_size);
  if (storage->size > 0) {
    void* mapping = ::mmap(nullptr, storage->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      ::close(fd);
      throw Error(ErrorCode::kIo, "cannot map " + label + ": " + std::strerror(errno));
    }
    storage->mapping = mapping;
    storage->data = static_cast<const uint8_t*>(mapping);
  }
  ::close(fd);
  return from_storage(std::move(storage), label);
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& label) {
  auto storage = std::make_shared<Storage>();
  storage->owned = std::move(bytes);
  storage->data = reinterpret_cast<const uint8_t*>(storage->owned.data());
  storage->size = storage->owned.size();
  return from_storage(std::move(storage), label);
}

SafetensorsFile SafetensorsFile::from_storage(std::shared_ptr<Storage> storage,
                                              const std::string& label) {
  SafetensorsFile file;
  file.storage_ = std::move(storage);
  file.label_ = label;
  uint64_t data_start = 0;
  parse_header(file.storage_->data, file.storage_->size, label, file.entries_, file.metadata_,
               data_start);
  for (auto& entry : file.entries_) {
    entry.begin += data_start;
    entry.end += data_start;
  }
  for (size_t i = 0; i < file.entries_.size(); ++i) file.index_[file.entries_[i].name] = i;
  return file;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return index_.count(name) > 0;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw Error(ErrorCode::kNotFound, label_ + " has no tensor named '" + name + "'");
  return entries_[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  auto options = at::TensorOptions().dtype(e.dtype).device(at::kCPU);
  const size_t bytes = e.end - e.begin;
  const size_t alignment = dtype_info(e.dtype).bytes;
  const uint8_t* start = storage_->data + e.begin;
  // Tensor views must be aligned to their element size; headers of arbitrary
  // length can misalign the data section, in which case we copy.
  if (bytes == 0 || reinterpret_cast<uintptr_t>(start) % alignment != 0) {
    at::Tensor copy = at::empty(e.shape, options);
    if (bytes) std::memcpy(copy.data_ptr(), start, bytes);
    return copy;
  }
  auto keep_alive = storage_;
  return at::from_blob(
      const_cast<uint8_t*>(start), e.shape, [keep_alive](void*) {}, options);
}

std::string serialize_safetensors(const std::map<std::string, at::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {  // std::map: sorted by name
    if (name == "__metadata__")
      throw Error(ErrorCode::kInvalidArgument, "'__metadata__' is reserved as a tensor name");
    at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(cpu.numel()) * dtype_info(cpu.scalar_type()).bytes;
    header[name] = {{"dtype", safetensors_dtype_name(cpu.scalar_type())},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(cpu);
  }
  std::string json = header.dump();
  while (json.size() % 8 != 0) json.push_back(' ');  // keeps the data section 8-byte aligned
  std::string out;
  out.reserve(8 + json.size() + offset);
  uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  out += json;
  for (const auto& t : contiguous)
    out.append(static_cast<const char*>(t.data_ptr()),
               static_cast<size_t>(t.numel()) * dtype_info(t.scalar_type()).bytes);
  return out;
}

void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace doppel
