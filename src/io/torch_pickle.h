// A restricted pickle reader and writer for what `torch.save` emits: dicts, OrderedDicts, lists,
// tuples, numbers, strings and tensors. Like `torch.load(weights_only=True)`, it resolves only an
// allow-list of globals and refuses every other one before anything could run.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/core/Storage.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace iris::io {

class PickleValue;

struct PickleList {
  std::vector<PickleValue> items;
};

struct PickleTuple {
  std::vector<PickleValue> items;
};

// A dict in insertion order. `ordered` marks a collections.OrderedDict; `attributes` holds what
// BUILD set on it (state_dict()'s `_metadata`).
struct PickleDict {
  std::vector<std::pair<PickleValue, PickleValue>> items;
  std::vector<std::pair<std::string, PickleValue>> attributes;
  bool ordered = false;

  // The value under a string key, or nullptr.
  const PickleValue* find(std::string_view key) const;
  // Python `d[key] = value`: replaces an existing key in place, else appends. Keys must be
  // str, int, bool, float or None; throws std::invalid_argument otherwise.
  void set(PickleValue key, PickleValue value);

 private:
  std::unordered_map<std::string, std::size_t> index_;  // hashable key → position in items
};

// A `module.name` reference produced by GLOBAL; only allow-listed names ever become one.
struct PickleGlobal {
  std::string module;
  std::string name;
  std::string qualified() const { return module + "." + name; }
};

// A storage returned by persistent_load: raw bytes plus the element type the pickle declared.
struct PickleStorage {
  c10::Storage storage;
  c10::ScalarType dtype;
};

// One unpickled value. Containers are shared (pickle memo semantics); tensors own their memory.
class PickleValue {
 public:
  // In the order of the variant's alternatives: kind() is the variant index.
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kDouble,
    kString,
    kList,
    kTuple,
    kDict,
    kTensor,
    kGlobal,
    kStorage
  };

  PickleValue() = default;
  PickleValue(bool v) : v_(v) {}
  PickleValue(int v) : v_(std::int64_t{v}) {}
  PickleValue(std::int64_t v) : v_(v) {}
  PickleValue(double v) : v_(v) {}
  PickleValue(std::string v) : v_(std::move(v)) {}
  PickleValue(const char* v) : v_(std::string(v)) {}
  PickleValue(std::shared_ptr<PickleList> v) : v_(std::move(v)) {}
  PickleValue(std::shared_ptr<PickleTuple> v) : v_(std::move(v)) {}
  PickleValue(std::shared_ptr<PickleDict> v) : v_(std::move(v)) {}
  PickleValue(at::Tensor v) : v_(std::move(v)) {}
  PickleValue(PickleGlobal v) : v_(std::move(v)) {}
  PickleValue(PickleStorage v) : v_(std::move(v)) {}

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_double() const { return kind() == Kind::kDouble; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_tuple() const { return kind() == Kind::kTuple; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_tensor() const { return kind() == Kind::kTensor; }
  bool is_global() const { return kind() == Kind::kGlobal; }
  bool is_storage() const { return kind() == Kind::kStorage; }

  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_double() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  PickleList& as_list() const { return *std::get<std::shared_ptr<PickleList>>(v_); }
  PickleTuple& as_tuple() const { return *std::get<std::shared_ptr<PickleTuple>>(v_); }
  PickleDict& as_dict() const { return *std::get<std::shared_ptr<PickleDict>>(v_); }
  const at::Tensor& as_tensor() const { return std::get<at::Tensor>(v_); }
  const PickleGlobal& as_global() const { return std::get<PickleGlobal>(v_); }
  const PickleStorage& as_storage() const { return std::get<PickleStorage>(v_); }

  // A short description for messages: "int 3", "dict (2 entries)", "tensor [2, 3] float32".
  std::string describe() const;
  // Python's name for the kind: "int", "str", "dict", "Tensor", ...
  const char* type_name() const;

 private:
  std::variant<std::monostate, bool, std::int64_t, double, std::string, std::shared_ptr<PickleList>,
               std::shared_ptr<PickleTuple>, std::shared_ptr<PickleDict>, at::Tensor, PickleGlobal,
               PickleStorage>
      v_;
};

std::shared_ptr<PickleDict> make_dict(bool ordered);

// persistent_load: receives the BINPERSID tuple ('storage', <XStorage global>, key, location,
// numel) and returns a storage value. Throws InputError for keys it cannot resolve.
using PersistentLoad = std::function<PickleValue(const PickleTuple& pid)>;

// Unpickles `data`. `source` names the file in every error ("ckpt.pt: data.pkl: ..."). Errors are
// InputError: unknown or disallowed opcode or global, truncation, stack misuse, tensor views
// outside their storage, recursive structures.
PickleValue unpickle(std::string_view data, const std::string& source, const PersistentLoad& load);

// Python's name for an element type: "float32", "bfloat16", "int64", "bool", ...
std::string dtype_name(c10::ScalarType dtype);

// The element type of a legacy storage class (`FloatStorage` → float32), if known.
std::optional<c10::ScalarType> storage_class_dtype(std::string_view name);
// The storage class name for an element type (float32 → `FloatStorage`); throws for others.
std::string storage_class_name(c10::ScalarType dtype);

// Result of pickling for torch.save: the protocol-2 pickle plus the storages it references,
// named "0", "1", ... in order (each to be written as the record `data/<key>`).
struct TorchPickle {
  std::string pickle;
  std::vector<std::pair<std::string, c10::Storage>> storages;
};

// Pickles `root` the way torch.save does. Tensors sharing a CPU storage keep sharing it; other
// tensors (CUDA, conjugated, ...) are copied to a contiguous CPU tensor first.
TorchPickle pickle_for_torch(const PickleValue& root);

}  // namespace iris::io
