// Frozen-encoder feature cache: when the image encoder does not train and a frame's input is
// deterministic, its features are a function of (weights, preprocessing, frame) and can be
// computed once, then reused across epochs, validation passes and (through the disk tier) runs.
//
// Two tiers: host memory with a byte budget and LRU eviction, and an optional folder with one
// safetensors file per entry (written atomically, oldest-used evicted over its budget).
// Position encodings depend only on the feature shape, so each distinct set is stored once.
// Every entry also records a digest of the model input it was computed from; a hit whose
// input differs (a frame file replaced under the same name) is treated as a miss.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/sam2/sam2_model.h"

namespace iris::models::sam2 {

// 128-bit non-cryptographic digest (hex) of bytes; collisions are caught by the stored keys.
std::string digest_bytes(const void* data, size_t size);
// Digest of a tensor's dtype, shape and values (on any device; copied to the host).
std::string digest_tensor(const at::Tensor& tensor);

// What is cached: the output of the frozen part in front of the SAM heads.
enum class FeatureStage {
  kEncoder,    // image_encoder (trunk + neck) output; conv_s0/conv_s1 run on every use
  kProjected,  // forward_image output (conv_s0/conv_s1 applied): the mask decoder is frozen too
};
const char* feature_stage_name(FeatureStage stage);

struct FeatureCacheDecision {
  bool valid = false;           // the frozen part's output is a constant of the frame
  bool encoder_frozen = false;  // no image-encoder parameter requires grad
  FeatureStage stage = FeatureStage::kEncoder;
  std::string reason;  // why (not) valid, for the log
};

// Decides from the model's requires_grad flags (after a recipe is applied) and its mode.
// `augmented_input`: frames go through random augmentation.
FeatureCacheDecision decide_feature_cache(Sam2ModelImpl& model, bool augmented_input);

// Identity of the frozen weights behind `stage`: digest of their names, dtypes, shapes and
// values, plus the image size, device type, thread count and LibTorch version (the features
// are bitwise reproducible only under those).
std::string frozen_weights_identity(Sam2ModelImpl& model, FeatureStage stage);

// The preprocessing of sam2::preprocess_frames (RGB uint8 -> antialiased bicubic resize to
// S x S, round, /255, ImageNet mean/std), without augmentation.
std::string preprocess_identity(int64_t image_size);

struct FeatureKey {
  std::string weights;     // frozen_weights_identity
  std::string stage;       // feature_stage_name
  std::string preprocess;  // preprocess_identity
  std::string dataset;     // dataset path (absolute, normalised)
  std::string video;
  int64_t frame = 0;  // VideoFrame::index

  std::string text() const;    // canonical one-line form
  std::string digest() const;  // digest_bytes(text()): the file name of the entry
};

struct FeatureCacheOptions {
  int64_t memory_budget_bytes = int64_t{2048} << 20;
  std::filesystem::path disk_dir;  // empty: no disk tier
  int64_t disk_budget_bytes = int64_t{20480} << 20;
};

struct FeatureCacheStats {
  int64_t memory_hits = 0, disk_hits = 0, misses = 0;
  int64_t stale = 0;  // found, but computed from a different input: recomputed
  int64_t stores = 0, memory_evictions = 0, disk_evictions = 0;
  int64_t rejected = 0;  // larger than the memory budget on their own
};

class FeatureCache {
 public:
  explicit FeatureCache(FeatureCacheOptions options);

  // Features stored for `key` computed from an input with digest `input`, or nothing.
  std::optional<BackboneOut> find(const FeatureKey& key, const std::string& input);
  // Stores host copies (contiguous) of `features`.
  void insert(const FeatureKey& key, const std::string& input, const BackboneOut& features);

  FeatureCacheStats stats() const;
  int64_t memory_bytes() const;  // entries + shared position encodings
  int64_t disk_bytes() const;    // as known to this process
  int64_t memory_entries() const;
  const FeatureCacheOptions& options() const { return options_; }

 private:
  struct Entry {
    std::string input;
    std::vector<at::Tensor> fpn;
    std::string pos;  // digest of the position-encoding set
    int64_t bytes = 0;
  };
  using Lru = std::list<std::string>;  // key texts, most recent first

  std::string share_pos(const std::vector<at::Tensor>& pos);  // -> its digest (stored once)
  void insert_memory(const std::string& text, Entry entry);
  std::optional<Entry> read_disk(const FeatureKey& key);
  void write_disk(const FeatureKey& key, const Entry& entry);
  void evict_disk();

  FeatureCacheOptions options_;
  mutable std::mutex mutex_;
  Lru lru_;
  std::unordered_map<std::string, std::pair<Lru::iterator, Entry>> entries_;
  std::map<std::string, std::vector<at::Tensor>> pos_sets_;
  int64_t entry_bytes_ = 0, pos_bytes_ = 0;
  std::map<std::filesystem::path, int64_t> disk_files_;  // entry files -> bytes
  int64_t disk_bytes_ = 0;
  FeatureCacheStats stats_;
};

// Where a frame comes from (the part of the key that names it).
struct FrameRef {
  std::string dataset;
  std::string video;
  int64_t frame = 0;
};

// The model's forward_image through a cache. Without a cache (or when the decision says the
// features are not constants) it computes them; a frozen encoder always runs without autograd,
// and conv_s0/conv_s1 run with autograd at stage kEncoder so that a training mask decoder
// learns them.
class CachedImageEncoder {
 public:
  CachedImageEncoder(Sam2Model model, FeatureCacheDecision decision,
                     std::shared_ptr<FeatureCache> cache);

  // img: [1, 3, S, S] model input -> forward_image(img)
  BackboneOut forward_image(const at::Tensor& img, const FrameRef& frame);

  bool caching() const { return cache_ != nullptr; }
  const FeatureCacheDecision& decision() const { return decision_; }
  const std::shared_ptr<FeatureCache>& cache() const { return cache_; }

 private:
  BackboneOut compute(const at::Tensor& img);

  Sam2Model model_;
  FeatureCacheDecision decision_;
  std::shared_ptr<FeatureCache> cache_;  // null unless decision_.valid
  std::string weights_, preprocess_;
};

}  // namespace iris::models::sam2
