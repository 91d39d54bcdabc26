#include "models/iris/memory_bank.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"

namespace iris::models {
namespace {

constexpr const char* kUpdatesSuffix = "#updates";

std::pair<std::string, std::string> split_key(const std::string& key) {
  const auto slash = key.find('/');
  return {key.substr(0, slash), key.substr(slash + 1)};
}

}  // namespace

MemoryBank::MemoryBank(double momentum) : momentum_(momentum) {
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    throw InputError(fmt::format("memory bank momentum {}: expected a value in [0, 1)", momentum));
  }
}

std::string MemoryBank::key(const std::string& dataset, const std::string& class_name) {
  if (dataset.empty() || dataset.find('/') != std::string::npos || class_name.empty()) {
    throw InputError(fmt::format("memory bank key '{}'/'{}': the dataset must be non-empty without "
                                 "'/', the class name non-empty",
                                 dataset, class_name));
  }
  return dataset + "/" + class_name;
}

void MemoryBank::update(const std::string& dataset, const std::string& class_name,
                        const at::Tensor& embedding) {
  TORCH_CHECK(embedding.dim() == 2, "memory bank: embedding must be [m + 1, C], got ", embedding.sizes());
  const at::Tensor value = embedding.detach().to(at::kCPU, at::kFloat).clone();
  auto [it, inserted] = entries_.try_emplace(key(dataset, class_name));
  Entry& entry = it->second;
  if (inserted) {
    entry.embedding = value;
  } else {
    TORCH_CHECK(entry.embedding.sizes() == value.sizes(), "memory bank: embedding for ", it->first,
                " changed shape from ", entry.embedding.sizes(), " to ", value.sizes());
    entry.embedding.mul_(momentum_).add_(value, 1.0 - momentum_);
  }
  ++entry.updates;
}

bool MemoryBank::contains(const std::string& dataset, const std::string& class_name) const {
  return entries_.count(key(dataset, class_name)) > 0;
}

at::Tensor MemoryBank::get(const std::string& dataset, const std::string& class_name) const {
  const auto it = entries_.find(key(dataset, class_name));
  if (it != entries_.end()) return it->second.embedding;
  std::string known;
  for (const auto& [k, e] : entries_) {
    if (split_key(k).first == dataset) known += (known.empty() ? "" : ", ") + split_key(k).second;
  }
  throw InputError(fmt::format("memory bank has no class '{}' for dataset '{}' (it holds: {})",
                               class_name, dataset, known.empty() ? "nothing for this dataset" : known));
}

std::vector<MemoryBank::Match> MemoryBank::nearest(const at::Tensor& query, int64_t k,
                                                   const std::string& dataset) const {
  const at::Tensor q = query.detach().to(at::kCPU, at::kFloat).reshape({-1});
  std::vector<Match> matches;
  for (const auto& [name, entry] : entries_) {
    auto [ds, cls] = split_key(name);
    if (!dataset.empty() && ds != dataset) continue;
    const at::Tensor e = entry.embedding.reshape({-1});
    TORCH_CHECK(e.numel() == q.numel(), "memory bank: query has ", q.numel(), " values, entry ", name,
                " has ", e.numel());
    const double similarity = at::cosine_similarity(q, e, 0, 1e-8).item<double>();
    matches.push_back({ds, cls, similarity});
  }
  std::stable_sort(matches.begin(), matches.end(),
                   [](const Match& a, const Match& b) { return a.similarity > b.similarity; });
  if (static_cast<int64_t>(matches.size()) > k) matches.resize(static_cast<std::size_t>(k));
  return matches;
}

at::Tensor MemoryBank::retrieve(const at::Tensor& query, int64_t k, double temperature,
                                const std::string& dataset) const {
  const auto matches = nearest(query, k, dataset);
  if (matches.empty()) {
    throw InputError(dataset.empty() ? std::string("memory bank is empty: nothing to retrieve")
                                     : "memory bank holds nothing for dataset '" + dataset + "'");
  }
  std::vector<double> sims;
  for (const auto& m : matches) sims.push_back(m.similarity / temperature);
  const at::Tensor weights = at::softmax(at::tensor(sims, at::kDouble), 0).to(at::kFloat);
  at::Tensor out = at::zeros_like(get(matches[0].dataset, matches[0].class_name));
  for (std::size_t i = 0; i < matches.size(); ++i) {
    out.add_(get(matches[i].dataset, matches[i].class_name), weights[static_cast<int64_t>(i)].item<float>());
  }
  return out;
}

std::map<std::string, at::Tensor> MemoryBank::state() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, entry] : entries_) {
    out[name] = entry.embedding;
    out[name + kUpdatesSuffix] = at::scalar_tensor(entry.updates, at::kLong);
  }
  return out;
}

void MemoryBank::load_state(const std::map<std::string, at::Tensor>& state) {
  std::map<std::string, Entry> loaded;
  for (const auto& [name, tensor] : state) {
    const std::string suffix = kUpdatesSuffix;
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      continue;
    }
    auto [ds, cls] = split_key(name);
    Entry entry{tensor.to(at::kCPU, at::kFloat).clone(), 1};
    if (const auto it = state.find(name + suffix); it != state.end()) entry.updates = it->second.item<int64_t>();
    loaded[key(ds, cls)] = std::move(entry);
  }
  entries_ = std::move(loaded);
}

void save_memory_bank(const MemoryBank& bank, torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive bank_archive;
  std::string names;
  int64_t i = 0;
  for (const auto& [name, tensor] : bank.state()) {
    names += name + "\n";
    bank_archive.write(fmt::format("t{}", i++), tensor);
  }
  bank_archive.write("names", c10::IValue(names));
  bank_archive.write("momentum", c10::IValue(bank.momentum()));
  archive.write("memory_bank", bank_archive);
}

MemoryBank load_memory_bank(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive bank_archive;
  archive.read("memory_bank", bank_archive);
  c10::IValue v;
  bank_archive.read("momentum", v);
  MemoryBank bank(v.toDouble());
  bank_archive.read("names", v);
  std::istringstream names(v.toStringRef());
  std::map<std::string, at::Tensor> entries;
  int64_t i = 0;
  for (std::string name; std::getline(names, name);) {
    at::Tensor t;
    bank_archive.read(fmt::format("t{}", i++), t);
    entries[name] = t;
  }
  bank.load_state(entries);
  return bank;
}

MemoryBank read_memory_bank(const std::string& checkpoint_path) {
  if (!std::filesystem::exists(checkpoint_path)) {
    throw InputError(file_message(checkpoint_path, "no such checkpoint"));
  }
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(checkpoint_path);
    torch::serialize::InputArchive bank_archive;
    if (!archive.try_read("memory_bank", bank_archive)) return MemoryBank();
    return load_memory_bank(archive);
  } catch (const c10::Error& e) {
    throw InputError(file_message(checkpoint_path, std::string("cannot read the memory bank: ") +
                                                       e.what_without_backtrace()));
  }
}

}  // namespace iris::models
