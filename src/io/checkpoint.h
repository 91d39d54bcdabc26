// Checkpoint files: PyTorch `torch.save` archives (.pt/.pth) and .safetensors, read into owned
// CPU tensors and written so that `torch.load(weights_only=True)` and the `safetensors` package
// read them back.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/torch_pickle.h"

namespace iris::io {

namespace fs = std::filesystem;

// Parameter name → tensor, in file order.
class StateDict {
 public:
  using Entry = std::pair<std::string, at::Tensor>;

  // Adds or replaces `name`.
  void insert(std::string name, at::Tensor tensor);
  const at::Tensor* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  std::int64_t numel() const;   // elements over all tensors
  std::int64_t nbytes() const;  // numel × element size over all tensors

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

// A whole checkpoint file: its top-level value (for .safetensors, a dict of the tensors) and,
// for .safetensors, the `__metadata__` strings.
struct Checkpoint {
  enum class Format { kTorch, kSafetensors };
  Format format = Format::kTorch;
  PickleValue root;
  std::map<std::string, std::string> metadata;
};

// --- torch.save archives ----------------------------------------------------------------------

// Reads a torch.save zip archive. Throws InputError naming the file for anything that is not a
// well-formed checkpoint of allowed types (see torch_pickle.h).
PickleValue read_torch_checkpoint(const fs::path& path);

// Writes `root` as a torch.save archive (atomically). Throws InputError for values it cannot
// represent, RuntimeFailure for I/O errors.
void write_torch_checkpoint(const fs::path& path, const PickleValue& root);

// --- safetensors ------------------------------------------------------------------------------

struct SafetensorsFile {
  StateDict tensors;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile read_safetensors(const fs::path& path);
void write_safetensors(const fs::path& path, const StateDict& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// --- either format --------------------------------------------------------------------------

// True for names ending in .safetensors; everything else is treated as a torch.save archive.
bool is_safetensors_path(const fs::path& path);

Checkpoint read_checkpoint(const fs::path& path);

// The state dict inside a checkpoint. With an empty `key`: the top level if it is a dict of
// tensors, else its "model" or "state_dict" entry (official SAM2 files are {"model": ...}).
// With a key: that top-level entry. `source` names the file in errors.
StateDict select_state_dict(const PickleValue& root, std::string_view key,
                            const std::string& source);

// An OrderedDict value holding the tensors of `sd`, as `model.state_dict()` would pickle.
PickleValue state_dict_value(const StateDict& sd);

}  // namespace iris::io
