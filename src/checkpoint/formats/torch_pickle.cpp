#include "doppel/checkpoint/formats/torch_pickle.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

constexpr int kMaxDepth = 64;
constexpr int64_t kMaxDims = 16;

[[noreturn]] void damaged(const std::string& label, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, label + ": not a readable torch.save file (" + what + ")");
}

uint64_t read_le(const std::string& bytes, uint64_t offset, int width, const std::string& label) {
  if (offset > bytes.size() || bytes.size() - offset < static_cast<uint64_t>(width))
    damaged(label, "a zip record runs past the end of the file");
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i)
    value = (value << 8) | static_cast<unsigned char>(bytes[offset + static_cast<uint64_t>(i)]);
  return value;
}

struct ZipEntry {
  uint64_t data_offset = 0;  // of the local header until resolved
  uint64_t size = 0;
  int method = 0;
};

// The central directory of a zip archive: name -> entry. Only what torch.save writes is
// needed, but any valid archive (zip64 included) is read.
std::map<std::string, ZipEntry> read_zip_directory(const std::string& bytes,
                                                   const std::string& label) {
  if (bytes.size() < 22) damaged(label, "too short for a zip archive");
  // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
  std::optional<uint64_t> end_record;
  const uint64_t lowest = bytes.size() > 65557 ? bytes.size() - 65557 : 0;
  for (uint64_t at = bytes.size() - 22;; --at) {
    if (read_le(bytes, at, 4, label) == 0x06054b50) {
      end_record = at;
      break;
    }
    if (at == lowest) break;
  }
  if (!end_record) damaged(label, "no zip end-of-directory record");
  uint64_t count = read_le(bytes, *end_record + 10, 2, label);
  uint64_t directory = read_le(bytes, *end_record + 16, 4, label);
  if ((count == 0xFFFF || directory == 0xFFFFFFFF) && *end_record >= 20 &&
      read_le(bytes, *end_record - 20, 4, label) == 0x07064b50) {
    const uint64_t zip64_end = read_le(bytes, *end_record - 12, 8, label);
    if (read_le(bytes, zip64_end, 4, label) != 0x06064b50)
      damaged(label, "a broken zip64 end-of-directory record");
    count = read_le(bytes, zip64_end + 32, 8, label);
    directory = read_le(bytes, zip64_end + 48, 8, label);
  }
  if (count > bytes.size() / 46) damaged(label, "more zip entries than the file can hold");
  std::map<std::string, ZipEntry> entries;
  uint64_t at = directory;
  for (uint64_t i = 0; i < count; ++i) {
    if (read_le(bytes, at, 4, label) != 0x02014b50) damaged(label, "a broken zip directory");
    ZipEntry entry;
    entry.method = static_cast<int>(read_le(bytes, at + 10, 2, label));
    entry.size = read_le(bytes, at + 20, 4, label);
    uint64_t uncompressed = read_le(bytes, at + 24, 4, label);
    const uint64_t name_length = read_le(bytes, at + 28, 2, label);
    const uint64_t extra_length = read_le(bytes, at + 30, 2, label);
    const uint64_t comment_length = read_le(bytes, at + 32, 2, label);
    entry.data_offset = read_le(bytes, at + 42, 4, label);
    if (at + 46 + name_length > bytes.size()) damaged(label, "a zip name runs past the end");
    std::string name = bytes.substr(at + 46, name_length);
    // zip64 sizes and offset live in extra field 0x0001, in this order, when saturated.
    uint64_t extra = at + 46 + name_length;
    const uint64_t extra_end = extra + extra_length;
    while (extra + 4 <= extra_end) {
      const uint64_t id = read_le(bytes, extra, 2, label);
      const uint64_t length = read_le(bytes, extra + 2, 2, label);
      uint64_t field = extra + 4;
      if (id == 1) {
        auto take = [&](uint64_t& value) {
          if (value == 0xFFFFFFFF && field + 8 <= extra + 4 + length) {
            value = read_le(bytes, field, 8, label);
            field += 8;
          }
        };
        take(uncompressed);
        take(entry.size);
        take(entry.data_offset);
      }
      extra += 4 + length;
    }
    if (entry.method == 0 && uncompressed != entry.size)
      damaged(label, "zip entry " + name + " has inconsistent sizes");
    entries[name] = entry;
    at = extra_end + comment_length;
  }
  for (auto& [name, entry] : entries) {
    const uint64_t local = entry.data_offset;
    if (read_le(bytes, local, 4, label) != 0x04034b50)
      damaged(label, "zip entry " + name + " has no local header");
    entry.data_offset =
        local + 30 + read_le(bytes, local + 26, 2, label) + read_le(bytes, local + 28, 2, label);
    if (entry.data_offset > bytes.size() || bytes.size() - entry.data_offset < entry.size)
      damaged(label, "zip entry " + name + " runs past the end of the file");
  }
  return entries;
}

at::ScalarType storage_dtype(const std::string& global, const std::string& label) {
  static const std::map<std::string, at::ScalarType> types = {
      {"torch.FloatStorage", at::kFloat},       {"torch.HalfStorage", at::kHalf},
      {"torch.BFloat16Storage", at::kBFloat16}, {"torch.DoubleStorage", at::kDouble},
      {"torch.LongStorage", at::kLong},         {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},       {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},         {"torch.BoolStorage", at::kBool}};
  auto found = types.find(global);
  if (found == types.end()) damaged(label, "unknown storage type " + global);
  return found->second;
}

bool is_module_class(const std::string& global) {
  return global.rfind("torch.nn.modules.", 0) == 0;
}

// The globals this reader understands. Nothing else is ever accepted.
bool is_allowed_global(const std::string& global) {
  static const char* const names[] = {
      "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state", "collections.OrderedDict",
      "torch.jit._pickle.restore_type_tag"};
  for (const char* name : names)
    if (global == name) return true;
  if (global.rfind("torch.", 0) == 0 && global.size() > 13 &&
      global.compare(global.size() - 7, 7, "Storage") == 0 &&
      global.find('.', 6) == std::string::npos)
    return true;
  return is_module_class(global);
}

class Unpickler {
 public:
  Unpickler(const std::string& bytes, const std::map<std::string, ZipEntry>& zip,
            std::string prefix, const std::string& label)
      : bytes_(bytes), zip_(zip), prefix_(std::move(prefix)), label_(label) {}

  PickleRef run(uint64_t begin, uint64_t end) {
    at_ = begin;
    end_ = end;
    while (true) {
      const unsigned char op = static_cast<unsigned char>(take(1)[0]);
      switch (op) {
        case 0x80:
          take(1);
          break;  // PROTO
        case 0x95:
          take(8);
          break;     // FRAME
        case '.': {  // STOP
          PickleRef result = pop();
          return result;
        }
        case 'N':
          push(make(PickleValue::Kind::kNone));
          break;
        case 0x88:
          push(make_int(PickleValue::Kind::kBool, 1));
          break;
        case 0x89:
          push(make_int(PickleValue::Kind::kBool, 0));
          break;
        case 'K':
          push(make_int(PickleValue::Kind::kInt, unsigned_le(1)));
          break;
        case 'M':
          push(make_int(PickleValue::Kind::kInt, unsigned_le(2)));
          break;
        case 'J':
          push(make_int(PickleValue::Kind::kInt, static_cast<int32_t>(unsigned_le(4))));
          break;
        case 0x8a: {  // LONG1: little-endian two's complement
          const int64_t length = unsigned_le(1);
          if (length > 8) unsupported("integers wider than 64 bits");
          const std::string raw = take(static_cast<size_t>(length));
          uint64_t value = 0;
          for (int64_t i = length - 1; i >= 0; --i)
            value = (value << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(i)]);
          if (length > 0 && length < 8 && (static_cast<unsigned char>(raw.back()) & 0x80))
            value |= ~uint64_t{0} << (8 * length);
          push(make_int(PickleValue::Kind::kInt, static_cast<int64_t>(value)));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const std::string raw = take(8);
          uint64_t bits = 0;
          for (char c : raw) bits = (bits << 8) | static_cast<unsigned char>(c);
          auto value = make(PickleValue::Kind::kFloat);
          std::memcpy(&value->number, &bits, sizeof bits);
          push(value);
          break;
        }
        case 'X':
          push(make_text(PickleValue::Kind::kString, unsigned_le(4)));
          break;
        case 0x8c:
          push(make_text(PickleValue::Kind::kString, unsigned_le(1)));
          break;
        case 'T':
          push(make_text(PickleValue::Kind::kString, unsigned_le(4)));
          break;
        case 'U':
          push(make_text(PickleValue::Kind::kString, unsigned_le(1)));
          break;
        case 'B':
          push(make_text(PickleValue::Kind::kBytes, unsigned_le(4)));
          break;
        case 'C':
          push(make_text(PickleValue::Kind::kBytes, unsigned_le(1)));
          break;
        case '(':
          marks_.push_back(stack_.size());
          break;
        case ')':
          push(make(PickleValue::Kind::kTuple));
          break;
        case 0x85:
          tuple_of(1);
          break;
        case 0x86:
          tuple_of(2);
          break;
        case 0x87:
          tuple_of(3);
          break;
        case 't':
          tuple_of(stack_.size() - pop_mark());
          break;
        case ']':
          push(make(PickleValue::Kind::kList));
          break;
        case 'l': {
          auto list = make(PickleValue::Kind::kList);
          for (auto& item : take_since_mark()) append(*list, item);
          push(list);
          break;
        }
        case 'a': {
          PickleRef item = pop();
          append(*top(PickleValue::Kind::kList), item);
          break;
        }
        case 'e': {
          std::vector<PickleRef> items = take_since_mark();
          PickleValue& list = *top(PickleValue::Kind::kList);
          for (auto& item : items) append(list, item);
          break;
        }
        case '}':
          push(make(PickleValue::Kind::kDict));
          break;
        case 'd': {
          auto dict = make(PickleValue::Kind::kDict);
          set_items(*dict, take_since_mark());
          push(dict);
          break;
        }
        case 's': {
          PickleRef value = pop();
          PickleRef key = pop();
          set_items(*top(PickleValue::Kind::kDict), {key, value});
          break;
        }
        case 'u': {
          std::vector<PickleRef> items = take_since_mark();
          set_items(*top(PickleValue::Kind::kDict), items);
          break;
        }
        case 'q':
          memo(unsigned_le(1));
          break;
        case 'r':
          memo(unsigned_le(4));
          break;
        case 0x94:
          memo(static_cast<int64_t>(memo_.size()));
          break;
        case 'h':
          push(recall(unsigned_le(1)));
          break;
        case 'j':
          push(recall(unsigned_le(4)));
          break;
        case 'c': {
          std::string module = line();
          std::string name = line();
          push(global(module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PickleRef name = pop();
          PickleRef module = pop();
          if (module->kind != PickleValue::Kind::kString ||
              name->kind != PickleValue::Kind::kString)
            damaged(label_, "STACK_GLOBAL without names");
          push(global(module->text + "." + name->text));
          break;
        }
        case 'Q':
          push(persistent_load(pop()));
          break;
        case 'R': {
          PickleRef arguments = pop();
          PickleRef callable = pop();
          push(reduce(*callable, *arguments));
          break;
        }
        case 0x81: {  // NEWOBJ
          PickleRef arguments = pop();
          PickleRef type = pop();
          if (type->kind != PickleValue::Kind::kGlobal || !is_module_class(type->text))
            unsupported("constructing " + describe(*type));
          auto object = make(PickleValue::Kind::kObject);
          object->text = type->text;
          push(object);
          break;
        }
        case 'b': {  // BUILD: an object's state becomes its attributes
          PickleRef state = pop();
          PickleValue& target = *peek();
          if (target.kind == PickleValue::Kind::kTensor) break;  // parameter state
          if (target.kind != PickleValue::Kind::kObject)
            unsupported("setting the state of " + describe(target));
          if (state->kind == PickleValue::Kind::kTuple && !state->items.empty())
            state = state->items.front();  // (dict state, slot state)
          if (state->kind == PickleValue::Kind::kDict) {
            std::vector<PickleRef> flat;
            for (auto& [key, value] : state->entries) {
              flat.push_back(key);
              flat.push_back(value);
            }
            check_mutable(target);
            set_entries(target, flat);
          }
          break;
        }
        case '0':
          pop();
          break;
        case '1':
          take_since_mark();
          break;
        case '2':
          push(peek());
          break;
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          unsupported(std::string("pickle opcode ") + hex);
        }
      }
    }
  }

 private:
  [[noreturn]] void unsupported(const std::string& what) const {
    throw Error(ErrorCode::kUnsupported,
                label_ + ": uses " + what +
                    ", which doppel's safe reader does not accept (it reads only plain "
                    "tensors and containers); convert the file to .safetensors");
  }

  std::string take(size_t count) {
    if (at_ > end_ || end_ - at_ < count) damaged(label_, "the pickle ends early");
    std::string result = bytes_.substr(at_, count);
    at_ += count;
    return result;
  }
  int64_t unsigned_le(int width) {
    const std::string raw = take(static_cast<size_t>(width));
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i)
      value = (value << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(i)]);
    return static_cast<int64_t>(value);
  }
  std::string line() {
    const size_t newline = bytes_.find('\n', at_);
    if (newline == std::string::npos || newline >= end_ || newline - at_ > 256)
      damaged(label_, "a GLOBAL name without an end");
    std::string result = bytes_.substr(at_, newline - at_);
    at_ = newline + 1;
    return result;
  }

  static PickleRef make(PickleValue::Kind kind) {
    auto value = std::make_shared<PickleValue>();
    value->kind = kind;
    return value;
  }
  static PickleRef make_int(PickleValue::Kind kind, int64_t integer) {
    auto value = make(kind);
    value->integer = integer;
    return value;
  }
  PickleRef make_text(PickleValue::Kind kind, int64_t length) {
    auto value = make(kind);
    value->text = take(static_cast<size_t>(length));
    return value;
  }

  void push(PickleRef value) { stack_.push_back(std::move(value)); }
  PickleRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      damaged(label_, "the pickle stack underflows");
    PickleRef value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  PickleRef peek() {
    if (stack_.empty()) damaged(label_, "the pickle stack underflows");
    return stack_.back();
  }
  PickleValue* top(PickleValue::Kind kind) {
    PickleRef value = peek();
    if (value->kind != kind) damaged(label_, "a container operation on " + describe(*value));
    check_mutable(*value);
    return value.get();
  }
  size_t pop_mark() {
    if (marks_.empty()) damaged(label_, "no MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    return mark;
  }
  std::vector<PickleRef> take_since_mark() {
    const size_t mark = pop_mark();
    if (mark > stack_.size()) damaged(label_, "a MARK above the stack");
    std::vector<PickleRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  // Containers are filled while on the stack; once one is nested in another it is frozen.
  // That keeps recorded depths exact and makes reference cycles impossible.
  void check_mutable(const PickleValue& value) {
    if (nested_.count(&value)) damaged(label_, "a container changed after it was nested");
  }
  void adopt(PickleValue& parent, const PickleRef& child) {
    if (child.get() == &parent) damaged(label_, "a container inside itself");
    nested_.insert(child.get());
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > kMaxDepth) damaged(label_, "containers nested too deeply");
  }
  void append(PickleValue& list, const PickleRef& item) {
    adopt(list, item);
    list.items.push_back(item);
  }
  // Duplicate keys are kept; find() returns the last, as a Python dict would hold it.
  void set_entries(PickleValue& dict, const std::vector<PickleRef>& flat) {
    if (flat.size() % 2 != 0) damaged(label_, "a dict with an odd number of items");
    for (size_t i = 0; i < flat.size(); i += 2) {
      adopt(dict, flat[i]);
      adopt(dict, flat[i + 1]);
      dict.entries.emplace_back(flat[i], flat[i + 1]);
    }
  }
  void set_items(PickleValue& dict, const std::vector<PickleRef>& flat) { set_entries(dict, flat); }
  void tuple_of(size_t count) {
    if (count > stack_.size()) damaged(label_, "a tuple larger than the stack");
    auto tuple = make(PickleValue::Kind::kTuple);
    std::vector<PickleRef> items(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end());
    for (size_t i = 0; i < count; ++i) pop();
    for (auto& item : items) append(*tuple, item);
    push(tuple);
  }

  void memo(int64_t index) {
    if (index < 0 || index > (1 << 24)) damaged(label_, "a memo index out of range");
    memo_[index] = peek();
  }
  PickleRef recall(int64_t index) {
    auto found = memo_.find(index);
    if (found == memo_.end()) damaged(label_, "a memo reference to nothing");
    return found->second;
  }

  PickleRef global(const std::string& name) {
    if (!is_allowed_global(name)) unsupported("the Python global " + name);
    auto value = make(PickleValue::Kind::kGlobal);
    value->text = name;
    return value;
  }

  static std::string describe(const PickleValue& value) {
    switch (value.kind) {
      case PickleValue::Kind::kGlobal:
        return "the global " + value.text;
      case PickleValue::Kind::kObject:
        return "an object of " + value.text;
      default:
        return "a value of kind " + std::to_string(static_cast<int>(value.kind));
    }
  }

  int64_t integer(const PickleValue& value, const std::string& what) const {
    if (value.kind != PickleValue::Kind::kInt) damaged(label_, what + " is not an integer");
    return value.integer;
  }

  // ('storage', storage_type, key, location, numel): the bytes of data/<key>.
  PickleRef persistent_load(const PickleRef& id) {
    if (id->kind != PickleValue::Kind::kTuple || id->items.size() < 5 ||
        !id->items[0]->is_string("storage") || id->items[1]->kind != PickleValue::Kind::kGlobal ||
        id->items[2]->kind != PickleValue::Kind::kString)
      damaged(label_, "a persistent id that is not a tensor storage");
    const std::string& key = id->items[2]->text;
    if (auto cached = storages_.find(key); cached != storages_.end()) return cached->second;
    const at::ScalarType dtype = storage_dtype(id->items[1]->text, label_);
    const int64_t numel = integer(*id->items[4], "a storage size");
    auto entry = zip_.find(prefix_ + "data/" + key);
    if (entry == zip_.end()) damaged(label_, "storage " + key + " is missing from the archive");
    if (entry->second.method != 0)
      throw Error(ErrorCode::kUnsupported,
                  label_ + ": compressed zip entries are not read; save it with torch.save");
    const auto element = static_cast<int64_t>(c10::elementSize(dtype));
    if (numel < 0 || static_cast<uint64_t>(numel) > entry->second.size / element)
      damaged(label_, "storage " + key + " is smaller than its declared size");
    auto storage = make(PickleValue::Kind::kStorage);
    storage->tensor = at::empty({numel}, at::TensorOptions().dtype(dtype));
    if (numel > 0)
      std::memcpy(storage->tensor.data_ptr(), bytes_.data() + entry->second.data_offset,
                  static_cast<size_t>(numel * element));
    storages_[key] = storage;
    return storage;
  }

  std::vector<int64_t> integers(const PickleValue& tuple, const std::string& what) const {
    if (tuple.kind != PickleValue::Kind::kTuple && tuple.kind != PickleValue::Kind::kList)
      damaged(label_, what + " is not a tuple");
    if (static_cast<int64_t>(tuple.items.size()) > kMaxDims)
      damaged(label_, what + " has too many dimensions");
    std::vector<int64_t> values;
    for (const auto& item : tuple.items) values.push_back(integer(*item, what));
    return values;
  }

  // _rebuild_tensor_v2(storage, offset, size, stride, ...), bounds-checked, copied out.
  PickleRef rebuild_tensor(const PickleValue& arguments) {
    if (arguments.items.size() < 4 || arguments.items[0]->kind != PickleValue::Kind::kStorage)
      damaged(label_, "a tensor without its storage");
    const at::Tensor& storage = arguments.items[0]->tensor;
    const int64_t offset = integer(*arguments.items[1], "a tensor offset");
    const std::vector<int64_t> sizes = integers(*arguments.items[2], "a tensor size");
    const std::vector<int64_t> strides = integers(*arguments.items[3], "a tensor stride");
    if (sizes.size() != strides.size()) damaged(label_, "tensor sizes and strides differ in rank");
    const int64_t available = storage.numel();
    if (offset < 0 || offset > available) damaged(label_, "a tensor offset outside its storage");
    constexpr int64_t kMaxElements = int64_t{1} << 28;
    int64_t elements = 1;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 0 || strides[i] < 0) damaged(label_, "a negative tensor size or stride");
      if (sizes[i] > 0 && elements > kMaxElements / sizes[i])
        damaged(label_, "a tensor of more than 2^28 elements");
      elements *= sizes[i];
    }
    if (elements > 0) {
      // The highest element the view reads must lie inside the storage.
      if (offset >= available) damaged(label_, "a tensor offset outside its storage");
      int64_t room = available - 1 - offset;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] <= 1 || strides[i] == 0) continue;
        if (sizes[i] - 1 > room / strides[i])
          damaged(label_, "a tensor that reads past its storage");
        room -= (sizes[i] - 1) * strides[i];
      }
    }
    const bool empty = elements == 0;
    auto tensor = make(PickleValue::Kind::kTensor);
    tensor->tensor = empty ? at::empty(sizes, storage.options())
                           : storage.as_strided(sizes, strides, offset).clone();
    return tensor;
  }

  PickleRef reduce(const PickleValue& callable, const PickleValue& arguments) {
    if (callable.kind != PickleValue::Kind::kGlobal) unsupported("calling " + describe(callable));
    if (arguments.kind != PickleValue::Kind::kTuple) damaged(label_, "REDUCE without a tuple");
    const std::string& name = callable.text;
    if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(arguments);
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (arguments.items.empty() || arguments.items[0]->kind != PickleValue::Kind::kTensor)
        damaged(label_, "a parameter without its tensor");
      return arguments.items[0];
    }
    if (name == "torch.jit._pickle.restore_type_tag") {  // libtorch's (value, type name)
      if (arguments.items.empty()) damaged(label_, "a type tag without its value");
      return arguments.items[0];
    }
    if (name == "collections.OrderedDict") {
      if (!arguments.items.empty()) unsupported("OrderedDict built from items");
      return make(PickleValue::Kind::kDict);
    }
    if (is_module_class(name)) {
      auto object = make(PickleValue::Kind::kObject);
      object->text = name;
      return object;
    }
    unsupported("calling " + name);
  }

  const std::string& bytes_;
  const std::map<std::string, ZipEntry>& zip_;
  std::string prefix_;
  const std::string& label_;
  uint64_t at_ = 0;
  uint64_t end_ = 0;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::map<int64_t, PickleRef> memo_;
  std::map<std::string, PickleRef> storages_;
  std::set<const PickleValue*> nested_;
};

}  // namespace

PickleRef PickleValue::find(const std::string& key) const {
  for (auto entry = entries.rbegin(); entry != entries.rend(); ++entry)
    if (entry->first->is_string(key)) return entry->second;
  return nullptr;
}

PickleRef read_torch_file(const std::string& bytes, const std::string& label) {
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x80)
    throw Error(ErrorCode::kUnsupported,
                label +
                    ": a legacy (PyTorch < 1.6) torch.save file; load and re-save it with a "
                    "current PyTorch, or convert it to .safetensors");
  if (bytes.size() < 4 || bytes.compare(0, 4, "PK\x03\x04") != 0)
    damaged(label, "it is not a zip archive");
  const std::map<std::string, ZipEntry> zip = read_zip_directory(bytes, label);
  const ZipEntry* pickle = nullptr;
  std::string prefix;
  for (const auto& [name, entry] : zip) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pickle = &entry;
      prefix = name.substr(0, slash + 1);
      break;
    }
  }
  if (!pickle) damaged(label, "no data.pkl in the archive");
  if (pickle->method != 0)
    throw Error(ErrorCode::kUnsupported,
                label + ": compressed zip entries are not read; save it with torch.save");
  if (auto order = zip.find(prefix + "byteorder"); order != zip.end()) {
    if (bytes.compare(order->second.data_offset, order->second.size, "little") != 0)
      throw Error(ErrorCode::kUnsupported, label + ": a big-endian torch.save file");
  }
  Unpickler unpickler(bytes, zip, prefix, label);
  return unpickler.run(pickle->data_offset, pickle->data_offset + pickle->size);
}

}  // namespace doppel
