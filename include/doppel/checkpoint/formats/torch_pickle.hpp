// Reading torch.save files (the zip format of PyTorch >= 1.6) without a Python
// interpreter and without executing anything: a small zip reader plus an interpreter for
// the pickle opcodes torch.save emits for plain data (dicts, lists, tuples, strings,
// numbers, tensors). Globals are never resolved to code: only a fixed list of names is
// understood (tensor and parameter rebuilding, typed storages, OrderedDict, libtorch's type
// tags, and module objects kept as inert attribute bags); any other name is refused with
// kUnsupported.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace doppel {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kBytes,
    kTuple,
    kList,
    kDict,
    kTensor,
    kObject,
    kGlobal,
    kStorage
  };
  Kind kind = Kind::kNone;
  int64_t integer = 0;           // kBool, kInt
  double number = 0;             // kFloat
  std::string text;              // kString, kBytes; kGlobal and kObject: "module.name"
  std::vector<PickleRef> items;  // kTuple, kList
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // kDict; kObject: its attributes
  at::Tensor tensor;                                     // kTensor, kStorage (1-D, CPU)
  int depth = 1;                                         // nesting depth, bounded

  bool is_string(const std::string& value) const { return kind == Kind::kString && text == value; }
  // The value under a string key of a dict (or an object's attribute); nullptr if absent.
  PickleRef find(const std::string& key) const;
};

// The object torch.save pickled, from the bytes of a .pt/.bin/.ckpt file. `label` names the
// file in messages. Throws kInvalidFile for damaged or non-torch data, kUnsupported for
// legacy (pre-1.6) files, compressed entries and globals outside the allowed list.
PickleRef read_torch_file(const std::string& bytes, const std::string& label);

}  // namespace doppel
