// TensorSource: the named tensors a model is loaded from, whatever files they
// live in. Tensors are produced lazily (safetensors entries alias the mapped
// file), so renaming or reshaping a source costs nothing until a load.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace doppel {

class SafetensorsFile;

struct TensorInfo {
  std::vector<int64_t> shape;
  at::ScalarType dtype = at::kFloat;
  std::string origin;  // where it comes from, for messages: "<file>: <name in file>"
};

class TensorSource {
 public:
  using Loader = std::function<at::Tensor()>;

  // Every tensor of an open safetensors file, named `name_prefix` + its name.
  void add_file(std::shared_ptr<const SafetensorsFile> file, const std::string& name_prefix = "");
  // Opens (and validates) a safetensors file and adds it as above.
  void add_file(const std::filesystem::path& path, const std::string& name_prefix = "");
  // An in-memory tensor (tests, converted tensors).
  void add_tensor(const std::string& name, const at::Tensor& tensor,
                  const std::string& origin = "<memory>");
  // A tensor computed on demand; `info` must describe what `loader` returns.
  void add(const std::string& name, TensorInfo info, Loader loader);
  // Every tensor of `other`, named `name_prefix` + its name there.
  void add_all(const TensorSource& other, const std::string& name_prefix = "");

  static TensorSource from_file(const std::filesystem::path& path);
  static TensorSource from_tensors(const std::map<std::string, at::Tensor>& tensors);

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Throws doppel::Error(kNotFound) naming the tensor when absent.
  const TensorInfo& info(const std::string& name) const;
  // The tensor as stored (CPU, storage dtype); may alias a mapped file: clone before writing.
  at::Tensor load(const std::string& name) const;
  // All names, sorted; or those starting with `prefix`.
  std::vector<std::string> names(const std::string& prefix = "") const;
  bool has_prefix(const std::string& prefix) const;

  // A source whose names are `rename(name)`; tensors for which it returns
  // nullopt keep their name. Two tensors mapped to one name -> kInvalidFile.
  TensorSource renamed(
      const std::function<std::optional<std::string>(const std::string&)>& rename) const;
  // Makes `name` load as `shape` (same element count), e.g. Linear [C, C] as a
  // 1x1 conv [C, C, 1, 1].
  void reshape(const std::string& name, const std::vector<int64_t>& shape);
  // Removes and returns the tensors under `prefix`, materialised, with the
  // prefix stripped (for converters that work on whole maps).
  std::map<std::string, at::Tensor> extract(const std::string& prefix);
  // The tensors under `prefix` materialised (prefix stripped), source unchanged.
  std::map<std::string, at::Tensor> tensors(const std::string& prefix = "") const;
  // Shapes of the tensors under `prefix` (prefix kept).
  std::map<std::string, std::vector<int64_t>> shapes(const std::string& prefix = "") const;

 private:
  struct Entry {
    TensorInfo info;
    Loader loader;
  };
  std::map<std::string, Entry> entries_;
};

// "[320, 4, 3, 3]"
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace doppel
