#include "io/checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>

#include <fstream>
#include <optional>

#include "core/atomic_file.h"
#include "core/error.h"

namespace iris::io {
namespace {

// LibTorch errors carry a backtrace and context lines; the first line is the message.
std::string first_line(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  const auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  return msg;
}

// Tells the usual wrong files apart before LibTorch's zip reader sees them.
void check_zip_magic(const fs::path& path, const std::string& source) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(file_message(source, "no such file"));
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::string_view(magic, 4) == std::string_view("PK\x03\x04", 4)) return;
  if (in.gcount() >= 1 && static_cast<unsigned char>(magic[0]) == 0x80) {
    throw InputError(file_message(source,
                                  "legacy (pre-1.6) torch.save format is not supported; "
                                  "re-save it with a current torch.save"));
  }
  throw InputError(file_message(source, "not a PyTorch checkpoint (not a zip archive)"));
}

StateDict to_state_dict(const PickleDict& dict, const std::string& source, std::string_view what) {
  StateDict sd;
  for (const auto& [key, value] : dict.items) {
    if (!key.is_string()) {
      throw InputError(file_message(
          source,
          fmt::format("{} has a key of type {}, not a tensor name", what, key.type_name())));
    }
    if (!value.is_tensor()) {
      throw InputError(file_message(source, fmt::format("{} entry '{}' is {}, not a tensor", what,
                                                        key.as_string(), value.describe())));
    }
    sd.insert(key.as_string(), value.as_tensor());
  }
  return sd;
}

bool is_tensor_dict(const PickleValue& v) {
  if (!v.is_dict()) return false;
  for (const auto& [key, value] : v.as_dict().items) {
    if (!key.is_string() || !value.is_tensor()) return false;
  }
  return true;
}

std::string entry_names(const PickleDict& dict) {
  std::vector<std::string> names;
  for (const auto& [key, value] : dict.items) {
    names.push_back(key.is_string() ? key.as_string() : key.describe());
    if (names.size() == 20) {
      names.push_back(fmt::format("... {} more", dict.items.size() - 20));
      break;
    }
  }
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

// --- StateDict ----------------------------------------------------------------------------

void StateDict::insert(std::string name, at::Tensor tensor) {
  const auto [it, inserted] = index_.emplace(name, entries_.size());
  if (inserted) {
    entries_.emplace_back(std::move(name), std::move(tensor));
  } else {
    entries_[it->second].second = std::move(tensor);
  }
}

const at::Tensor* StateDict::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

std::int64_t StateDict::numel() const {
  std::int64_t n = 0;
  for (const auto& [name, t] : entries_) n += t.numel();
  return n;
}

std::int64_t StateDict::nbytes() const {
  std::int64_t n = 0;
  for (const auto& [name, t] : entries_)
    n += t.numel() * static_cast<std::int64_t>(t.element_size());
  return n;
}

// --- torch.save archives ------------------------------------------------------------------

PickleValue read_torch_checkpoint(const fs::path& path) {
  const std::string source = path.string();
  check_zip_magic(path, source);
  try {
    caffe2::serialize::PyTorchStreamReader reader(source);
    if (!reader.hasRecord("data.pkl")) {
      throw InputError(file_message(source,
                                    "archive has no data.pkl (a TorchScript file? only "
                                    "torch.save checkpoints are supported)"));
    }
    if (reader.hasRecord("byteorder")) {
      auto [ptr, n] = reader.getRecord("byteorder");
      const std::string order(static_cast<const char*>(ptr.get()), n);
      if (order != "little") {
        throw InputError(
            file_message(source, fmt::format("byte order '{}' is not supported", order)));
      }
    }
    auto [pickle_ptr, pickle_size] = reader.getRecord("data.pkl");
    const std::string_view pickle(static_cast<const char*>(pickle_ptr.get()), pickle_size);

    // One storage per key, shared by every tensor that views it.
    std::unordered_map<std::string, c10::Storage> storages;
    const PersistentLoad load = [&](const PickleTuple& pid) -> PickleValue {
      const auto& items = pid.items;
      const auto bad = [&](const std::string& what) {
        return InputError(file_message(source, "pickle: " + what));
      };
      if (items.size() != 5 || !items[0].is_string() || items[0].as_string() != "storage") {
        throw bad("persistent id is not ('storage', type, key, location, numel)");
      }
      if (!items[1].is_global() || !items[2].is_string() || !items[3].is_string() ||
          !items[4].is_int() || items[4].as_int() < 0) {
        throw bad("malformed storage persistent id");
      }
      const auto dtype = storage_class_dtype(items[1].as_global().name);
      if (!dtype) throw bad("unknown storage type " + items[1].as_global().qualified());
      const std::string& key = items[2].as_string();
      const std::int64_t numel = items[4].as_int();
      std::int64_t expected = 0;
      if (__builtin_mul_overflow(numel, static_cast<std::int64_t>(c10::elementSize(*dtype)),
                                 &expected)) {
        throw bad(fmt::format("storage '{}' size overflows", key));
      }
      auto it = storages.find(key);
      if (it == storages.end()) {
        const std::string record = "data/" + key;
        if (!reader.hasRecord(record)) {
          throw bad(
              fmt::format("unknown storage '{}' (the archive has no record {})", key, record));
        }
        auto [ptr, n] = reader.getRecord(record);
        c10::Storage storage(c10::Storage::use_byte_size_t(), n, std::move(ptr), nullptr, false);
        it = storages.emplace(key, std::move(storage)).first;
      }
      if (static_cast<std::int64_t>(it->second.nbytes()) < expected) {
        throw bad(
            fmt::format("storage '{}' holds {} bytes, fewer than the {} elements x {} bytes "
                        "it declares",
                        key, it->second.nbytes(), numel, c10::elementSize(*dtype)));
      }
      return PickleStorage{it->second, *dtype};
    };
    return unpickle(pickle, source, load);
  } catch (const c10::Error& e) {
    throw InputError(file_message(source, "unreadable PyTorch archive: " + first_line(e)));
  } catch (const std::bad_alloc&) {
    // A forged zip directory can declare records far larger than the file.
    throw InputError(file_message(source, "a record of the archive is too large to load"));
  }
}

void write_torch_checkpoint(const fs::path& path, const PickleValue& root) {
  const TorchPickle pickled = pickle_for_torch(root);
  AtomicFile file(path);
  std::optional<RuntimeFailure> write_error;  // miniz is C: no exceptions through it
  try {
    caffe2::serialize::PyTorchStreamWriter writer(
        [&](const void* data, std::size_t n) -> std::size_t {
          if (write_error) return 0;
          try {
            file.write(std::string_view(static_cast<const char*>(data), n));
          } catch (const RuntimeFailure& e) {
            write_error = e;
            return 0;
          }
          return n;
        });
    writer.writeRecord("data.pkl", pickled.pickle.data(), pickled.pickle.size());
    writer.writeRecord("byteorder", "little", 6);
    for (const auto& [key, storage] : pickled.storages) {
      writer.writeRecord("data/" + key, storage.data_ptr().get(), storage.nbytes());
    }
    writer.writeEndOfFile();
  } catch (const c10::Error& e) {
    if (write_error) throw *write_error;
    throw RuntimeFailure(file_message(path.string(), "cannot write archive: " + first_line(e)));
  }
  if (write_error) throw *write_error;
  file.commit();
}

// --- either format ------------------------------------------------------------------------

bool is_safetensors_path(const fs::path& path) {
  return path.extension() == ".safetensors";
}

Checkpoint read_checkpoint(const fs::path& path) {
  Checkpoint ckpt;
  if (is_safetensors_path(path)) {
    auto file = read_safetensors(path);
    ckpt.format = Checkpoint::Format::kSafetensors;
    ckpt.root = state_dict_value(file.tensors);
    ckpt.root.as_dict().ordered = false;
    ckpt.metadata = std::move(file.metadata);
  } else {
    ckpt.root = read_torch_checkpoint(path);
  }
  return ckpt;
}

StateDict select_state_dict(const PickleValue& root, std::string_view key,
                            const std::string& source) {
  if (!root.is_dict()) {
    throw InputError(file_message(
        source, fmt::format("top level is {}, not a dict of tensors", root.describe())));
  }
  const PickleDict& top = root.as_dict();
  if (!key.empty()) {
    const PickleValue* entry = top.find(key);
    if (!entry) {
      throw InputError(file_message(
          source, fmt::format("no top-level entry '{}' (entries: {})", key, entry_names(top))));
    }
    if (!entry->is_dict()) {
      throw InputError(file_message(
          source, fmt::format("entry '{}' is {}, not a dict of tensors", key, entry->describe())));
    }
    return to_state_dict(entry->as_dict(), source, fmt::format("entry '{}'", key));
  }
  if (is_tensor_dict(root)) return to_state_dict(top, source, "top level");
  for (const char* candidate : {"model", "state_dict"}) {
    const PickleValue* entry = top.find(candidate);
    if (entry && entry->is_dict()) {
      return to_state_dict(entry->as_dict(), source, fmt::format("entry '{}'", candidate));
    }
  }
  throw InputError(file_message(source, fmt::format("no state dict found among the top-level "
                                                    "entries ({}); name the entry to use",
                                                    entry_names(top))));
}

PickleValue state_dict_value(const StateDict& sd) {
  auto dict = make_dict(true);
  for (const auto& [name, tensor] : sd) dict->set(name, tensor);
  return dict;
}

}  // namespace iris::io
