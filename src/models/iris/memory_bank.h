// Per-class task embeddings remembered across episodes: an exponential moving average per
// (dataset, class name), so "label 1" of two datasets never blends. Saved inside checkpoints
// through state()/load_state().
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace torch::serialize {
class InputArchive;
class OutputArchive;
}  // namespace torch::serialize

namespace iris::models {

class MemoryBank {
 public:
  explicit MemoryBank(double momentum = 0.999);

  // The first sighting stores the embedding; later ones do e <- momentum·e + (1 - momentum)·new.
  // embedding: [m + 1, C] (detached and copied).
  void update(const std::string& dataset, const std::string& class_name, const at::Tensor& embedding);
  bool contains(const std::string& dataset, const std::string& class_name) const;
  // Throws InputError naming the key and the classes the bank holds for that dataset.
  at::Tensor get(const std::string& dataset, const std::string& class_name) const;
  std::size_t size() const { return entries_.size(); }
  double momentum() const { return momentum_; }

  struct Match {
    std::string dataset;
    std::string class_name;
    double similarity = 0;  // cosine similarity of the flattened embeddings
  };
  // The k stored embeddings most similar to `query` ([m + 1, C]), best first; restricted to one
  // dataset when `dataset` is not empty.
  std::vector<Match> nearest(const at::Tensor& query, int64_t k, const std::string& dataset = "") const;
  // Object-level retrieval: the similarity-weighted mean of the top-k matches (weights are the
  // softmax of similarities / temperature). Throws InputError when the bank is empty.
  at::Tensor retrieve(const at::Tensor& query, int64_t k, double temperature = 0.1,
                      const std::string& dataset = "") const;

  // Flat name -> tensor map for checkpoints: "<dataset>/<class>" -> embedding, and
  // "<dataset>/<class>#updates" -> int64 count.
  std::map<std::string, at::Tensor> state() const;
  void load_state(const std::map<std::string, at::Tensor>& state);

 private:
  struct Entry {
    at::Tensor embedding;
    int64_t updates = 0;
  };
  static std::string key(const std::string& dataset, const std::string& class_name);
  double momentum_;
  std::map<std::string, Entry> entries_;  // key(dataset, class) -> entry
};

// The bank saved inside an IRIS training checkpoint (its "memory_bank" archive: momentum, the
// entry names one per line, tensors t0, t1, ... in that order); an empty bank when the checkpoint
// has none. InputError naming the file when it cannot be read.
MemoryBank read_memory_bank(const std::string& checkpoint_path);

// The bank inside a checkpoint archive (key "memory_bank": momentum, names, t0..tN), as `iris
// train` writes it. load_memory_bank throws c10::Error when the archive holds no bank.
void save_memory_bank(const MemoryBank& bank, torch::serialize::OutputArchive& archive);
MemoryBank load_memory_bank(torch::serialize::InputArchive& archive);

}  // namespace iris::models
