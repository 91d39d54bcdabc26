#include "models/sam2/feature_cache.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "core/error.h"
#include "io/checkpoint.h"

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "iris-feature-cache-1";
constexpr const char* kPosPrefix = "pos-";
constexpr const char* kExtension = ".safetensors";

uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Two independent multiply-rotate lanes over 8-byte words: fast enough to digest feature maps
// and weights on every use (several GB/s), and 128 bits against accidental collisions.
class Hasher {
 public:
  void update(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      word(w);
    }
    uint64_t tail = size - i;  // the tail's length in the top byte keeps "ab" + "c" != "a" + "bc"
    for (size_t k = 0; i + k < size; ++k) tail |= uint64_t{p[i + k]} << (8 * (k + 1));
    word(tail ^ (uint64_t{size & 0xff} << 56));
    length_ += size;
  }
  void update(std::string_view s) { update(s.data(), s.size()); }
  void update(const at::Tensor& tensor) {
    const auto t = tensor.detach().to(at::kCPU).contiguous();
    update(std::string_view(c10::toString(t.scalar_type())));
    const auto sizes = t.sizes().vec();
    update(sizes.data(), sizes.size() * sizeof(int64_t));
    update(t.data_ptr(), t.numel() * t.element_size());
  }
  std::string hex() const {
    return fmt::format("{:016x}{:016x}", mix64(a_ ^ length_), mix64(b_ ^ rotl(length_, 32)));
  }

 private:
  void word(uint64_t w) {
    a_ = rotl(a_ ^ (w * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
    b_ = rotl(b_ + (w ^ 0x52dce729da3ed0b9ULL), 27) * 0x9e3779b97f4a7c15ULL + 0x38495ab5;
  }
  uint64_t a_ = 0x6a09e667f3bcc908ULL, b_ = 0xbb67ae8584caa73bULL, length_ = 0;
};

int64_t tensor_bytes(const std::vector<at::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

// A host tensor owning exactly its bytes (a view into a larger buffer would pin all of it),
// with the strides it came with: kernels may pick another path (and another summation order)
// for a channels-last input than for a contiguous one, which would break bitwise equality.
at::Tensor host_copy(const at::Tensor& t) {
  auto h = t.detach().to(at::kCPU);
  if (h.storage().nbytes() != static_cast<size_t>(h.numel()) * h.element_size()) {
    h = h.clone(at::MemoryFormat::Preserve);
  }
  return h;
}

std::string strides_text(const std::vector<at::Tensor>& ts) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : ts) j.push_back(t.strides().vec());
  return j.dump();
}

// Safetensors holds contiguous data; the recorded strides are put back on reading.
std::vector<at::Tensor> with_strides(std::vector<at::Tensor> ts, const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array() || j.size() != ts.size()) return {};
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto strides = j[i].get<std::vector<int64_t>>();
    if (strides.size() != static_cast<size_t>(ts[i].dim())) return {};
    auto t = at::empty_strided(ts[i].sizes(), strides, ts[i].options());
    t.copy_(ts[i]);
    ts[i] = t;
  }
  return ts;
}

bool requires_grad(torch::nn::Module& m) {
  for (const auto& p : m.parameters()) {
    if (p.requires_grad()) return true;
  }
  return false;
}

std::vector<at::Tensor> numbered(const io::StateDict& sd, const std::string& prefix) {
  std::vector<at::Tensor> out;
  for (size_t i = 0;; ++i) {
    const auto* t = sd.find(prefix + std::to_string(i));
    if (!t) return out;
    out.push_back(*t);
  }
}

io::StateDict numbered_dict(const std::vector<at::Tensor>& ts, const std::string& prefix) {
  io::StateDict sd;
  for (size_t i = 0; i < ts.size(); ++i) sd.insert(prefix + std::to_string(i), ts[i]);
  return sd;
}

bool is_entry_file(const fs::path& p) {
  const auto name = p.filename().string();
  return p.extension() == kExtension && name.rfind(kPosPrefix, 0) != 0 && name.front() != '.';
}

}  // namespace

std::string digest_bytes(const void* data, size_t size) {
  Hasher h;
  h.update(data, size);
  return h.hex();
}

std::string digest_tensor(const at::Tensor& tensor) {
  Hasher h;
  h.update(tensor);
  return h.hex();
}

const char* feature_stage_name(FeatureStage stage) {
  return stage == FeatureStage::kEncoder ? "image_encoder" : "projected";
}

FeatureCacheDecision decide_feature_cache(Sam2ModelImpl& model, bool augmented_input) {
  FeatureCacheDecision d;
  d.encoder_frozen = !requires_grad(*model.image_encoder);
  if (!d.encoder_frozen) {
    d.reason = "the image encoder trains (recipe includes ie): its features change every step";
    return d;
  }
  if (augmented_input) {
    d.reason = "frames are randomly augmented: a frame's input differs between epochs";
    return d;
  }
  const double drop = model.image_encoder->trunk->options.drop_path_rate;
  if (model.is_training() && drop > 0.0) {
    d.reason = fmt::format(
        "the frozen encoder drops paths at random in training mode (drop_path_rate {})", drop);
    return d;
  }
  const bool projections_train = model.config().use_high_res_features_in_sam &&
                                 (requires_grad(*model.sam_mask_decoder->conv_s0) ||
                                  requires_grad(*model.sam_mask_decoder->conv_s1));
  d.stage = projections_train ? FeatureStage::kEncoder : FeatureStage::kProjected;
  d.valid = true;
  d.reason = projections_train
                 ? "the image encoder is frozen and frames are not augmented (its output is "
                   "cached; the training mask decoder's conv_s0/conv_s1 run on every use)"
                 : "the image encoder and the high-resolution projections are frozen and frames "
                   "are not augmented";
  return d;
}

std::string frozen_weights_identity(Sam2ModelImpl& model, FeatureStage stage) {
  Hasher h;
  c10::Device device = c10::kCPU;
  auto add = [&](const std::string& prefix, torch::nn::Module& m) {
    for (const auto& p : m.named_parameters()) {
      h.update(prefix + p.key());
      h.update(p.value());
      device = p.value().device();
    }
    for (const auto& b : m.named_buffers()) {
      h.update(prefix + b.key());
      h.update(b.value());
    }
  };
  add("image_encoder.", *model.image_encoder);
  if (stage == FeatureStage::kProjected && model.config().use_high_res_features_in_sam) {
    add("sam_mask_decoder.conv_s0.", *model.sam_mask_decoder->conv_s0);
    add("sam_mask_decoder.conv_s1.", *model.sam_mask_decoder->conv_s1);
  }
  // CPU kernels may split reductions by thread count; GPU results differ from CPU ones.
  const std::string where = device.is_cpu() ? fmt::format("cpu-t{}", at::get_num_threads())
                                            : c10::DeviceTypeName(device.type(), true);
  return fmt::format("{}-s{}-{}-torch{}.{}.{}", h.hex(), model.image_size(), where,
                     TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
}

std::string preprocess_identity(int64_t image_size) {
  return fmt::format("rgb8-bicubic-aa-{0}x{0}-round-div255-imagenet-meanstd-noaug-f32", image_size);
}

std::string FeatureKey::text() const {
  return fmt::format("weights={} stage={} preprocess={} dataset={} video={} frame={}", weights,
                     stage, preprocess, dataset, video, frame);
}

std::string FeatureKey::digest() const {
  const auto t = text();
  return digest_bytes(t.data(), t.size());
}

// --- FeatureCache ------------------------------------------------------------------------------

FeatureCache::FeatureCache(FeatureCacheOptions options) : options_(std::move(options)) {
  if (options_.memory_budget_bytes < 0 || options_.disk_budget_bytes < 0) {
    throw ConfigError("feature cache budgets must be >= 0");
  }
  if (options_.disk_dir.empty()) return;
  std::error_code ec;
  fs::create_directories(options_.disk_dir, ec);
  if (ec || !fs::is_directory(options_.disk_dir)) {
    throw RuntimeFailure(fmt::format("{}: cannot create the feature cache folder: {}",
                                     options_.disk_dir.string(), ec.message()));
  }
}

std::string FeatureCache::share_pos(const std::vector<at::Tensor>& pos) {
  Hasher h;
  for (const auto& t : pos) h.update(t);
  auto digest = h.hex();
  if (!pos_sets_.count(digest)) {
    std::vector<at::Tensor> host;
    for (const auto& t : pos) host.push_back(host_copy(t));
    pos_bytes_ += tensor_bytes(host);
    pos_sets_[digest] = std::move(host);
  }
  return digest;
}

void FeatureCache::insert_memory(const std::string& text, Entry entry) {
  if (auto it = entries_.find(text); it != entries_.end()) {
    entry_bytes_ -= it->second.second.bytes;
    lru_.erase(it->second.first);
    entries_.erase(it);
  }
  if (entry.bytes + pos_bytes_ > options_.memory_budget_bytes) {
    ++stats_.rejected;
    return;
  }
  while (!lru_.empty() && entry_bytes_ + pos_bytes_ + entry.bytes > options_.memory_budget_bytes) {
    const auto victim = entries_.find(lru_.back());
    entry_bytes_ -= victim->second.second.bytes;
    entries_.erase(victim);
    lru_.pop_back();
    ++stats_.memory_evictions;
  }
  lru_.push_front(text);
  entry_bytes_ += entry.bytes;
  entries_.emplace(text, std::make_pair(lru_.begin(), std::move(entry)));
}

std::optional<BackboneOut> FeatureCache::find(const FeatureKey& key, const std::string& input) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto text = key.text();
  if (auto it = entries_.find(text); it != entries_.end()) {
    auto& [where, entry] = it->second;
    if (entry.input == input) {
      lru_.splice(lru_.begin(), lru_, where);
      ++stats_.memory_hits;
      return BackboneOut{entry.fpn, pos_sets_.at(entry.pos)};
    }
    entry_bytes_ -= entry.bytes;
    lru_.erase(where);
    entries_.erase(it);
    ++stats_.stale;
  } else if (!options_.disk_dir.empty()) {
    if (auto entry = read_disk(key)) {
      if (entry->input == input) {
        ++stats_.disk_hits;
        BackboneOut out{entry->fpn, pos_sets_.at(entry->pos)};
        insert_memory(text, std::move(*entry));
        return out;
      }
      ++stats_.stale;
    }
  }
  ++stats_.misses;
  return std::nullopt;
}

void FeatureCache::insert(const FeatureKey& key, const std::string& input,
                          const BackboneOut& features) {
  TORCH_CHECK(!features.backbone_fpn.empty() &&
                  features.backbone_fpn.size() == features.vision_pos_enc.size(),
              "feature cache: expected as many position encodings as feature levels");
  Entry entry;
  entry.input = input;
  for (const auto& t : features.backbone_fpn) entry.fpn.push_back(host_copy(t));
  entry.bytes = tensor_bytes(entry.fpn);
  std::lock_guard<std::mutex> lock(mutex_);
  entry.pos = share_pos(features.vision_pos_enc);
  ++stats_.stores;
  if (!options_.disk_dir.empty()) write_disk(key, entry);
  insert_memory(key.text(), std::move(entry));
}

std::optional<FeatureCache::Entry> FeatureCache::read_disk(const FeatureKey& key) {
  const auto path = options_.disk_dir / (key.digest() + kExtension);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  // Another process may evict or replace the file meanwhile: any failure is a miss.
  try {
    const auto file = io::read_safetensors(path);
    const auto meta = [&](const char* name) {
      const auto it = file.metadata.find(name);
      return it == file.metadata.end() ? std::string() : it->second;
    };
    if (meta("format") != kFormat || meta("key") != key.text()) return std::nullopt;
    Entry entry;
    entry.input = meta("input");
    entry.pos = meta("pos");
    entry.fpn = with_strides(numbered(file.tensors, "fpn."), meta("strides"));
    if (entry.fpn.empty()) return std::nullopt;
    entry.bytes = tensor_bytes(entry.fpn);
    if (!pos_sets_.count(entry.pos)) {
      const auto pos_file =
          io::read_safetensors(options_.disk_dir / (kPosPrefix + entry.pos + kExtension));
      const auto it = pos_file.metadata.find("strides");
      auto pos = with_strides(numbered(pos_file.tensors, "pos."),
                              it == pos_file.metadata.end() ? std::string() : it->second);
      Hasher h;
      for (const auto& t : pos) h.update(t);
      if (pos.empty() || h.hex() != entry.pos) return std::nullopt;
      pos_bytes_ += tensor_bytes(pos);
      pos_sets_[entry.pos] = std::move(pos);
    }
    if (entry.fpn.size() != pos_sets_.at(entry.pos).size()) return std::nullopt;
    fs::last_write_time(path, fs::file_time_type::clock::now(), ec);  // most recently used
    return entry;
  } catch (const Error&) {
    return std::nullopt;
  }
}

void FeatureCache::write_disk(const FeatureKey& key, const Entry& entry) {
  const auto& dir = options_.disk_dir;
  const auto pos_path = dir / (kPosPrefix + entry.pos + kExtension);
  std::error_code ec;
  if (!fs::exists(pos_path, ec)) {
    const auto& pos = pos_sets_.at(entry.pos);
    io::write_safetensors(pos_path, numbered_dict(pos, "pos."),
                          {{"format", kFormat}, {"strides", strides_text(pos)}});
  }
  io::write_safetensors(dir / (key.digest() + kExtension), numbered_dict(entry.fpn, "fpn."),
                        {{"format", kFormat},
                         {"key", key.text()},
                         {"input", entry.input},
                         {"pos", entry.pos},
                         {"strides", strides_text(entry.fpn)}});
  evict_disk();
}

void FeatureCache::evict_disk() {
  // The folder may be shared by concurrent runs of a sweep: always measure what is there.
  struct File {
    fs::path path;
    int64_t bytes;
    fs::file_time_type used;
  };
  std::vector<File> files;
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.disk_dir, ec)) {
    std::error_code fe;
    if (!e.is_regular_file(fe) || e.path().extension() != kExtension) continue;
    const auto bytes = static_cast<int64_t>(e.file_size(fe));
    if (fe) continue;
    total += bytes;
    if (is_entry_file(e.path())) files.push_back({e.path(), bytes, e.last_write_time(fe)});
  }
  std::sort(files.begin(), files.end(),
            [](const File& a, const File& b) { return a.used < b.used; });
  for (const auto& f : files) {
    if (total <= options_.disk_budget_bytes) break;
    std::error_code re;
    if (fs::remove(f.path, re)) {
      total -= f.bytes;
      ++stats_.disk_evictions;
    }
  }
  disk_bytes_ = total;
}

FeatureCacheStats FeatureCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

int64_t FeatureCache::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entry_bytes_ + pos_bytes_;
}

int64_t FeatureCache::disk_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return disk_bytes_;
}

int64_t FeatureCache::memory_entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(entries_.size());
}

// --- CachedImageEncoder ------------------------------------------------------------------------

CachedImageEncoder::CachedImageEncoder(Sam2Model model, FeatureCacheDecision decision,
                                       std::shared_ptr<FeatureCache> cache)
    : model_(std::move(model)), decision_(std::move(decision)) {
  if (!decision_.valid || !cache) return;
  cache_ = std::move(cache);
  weights_ = frozen_weights_identity(*model_, decision_.stage);
  preprocess_ = preprocess_identity(model_->image_size());
}

BackboneOut CachedImageEncoder::compute(const at::Tensor& img) {
  if (!decision_.encoder_frozen) return model_->forward_image(img);
  BackboneOut enc;
  {
    torch::NoGradGuard no_grad;  // constants of the step: no graph through the frozen encoder
    auto e = model_->image_encoder->forward(img);
    enc = BackboneOut{std::move(e.backbone_fpn), std::move(e.vision_pos_enc)};
  }
  return model_->project_high_res_features(std::move(enc));
}

BackboneOut CachedImageEncoder::forward_image(const at::Tensor& img, const FrameRef& frame) {
  TORCH_CHECK(img.dim() == 4 && img.size(0) == 1,
              "cached image encoder: expected [1, 3, S, S], got ", img.sizes());
  if (!cache_) return compute(img);
  std::error_code ec;
  FeatureKey key;
  key.weights = weights_;
  key.stage = feature_stage_name(decision_.stage);
  key.preprocess = preprocess_;
  key.dataset = fs::absolute(frame.dataset, ec).lexically_normal().string();
  key.video = frame.video;
  key.frame = frame.frame;
  const auto input = digest_tensor(img);
  BackboneOut out;
  if (auto hit = cache_->find(key, input)) {
    out = std::move(*hit);
    if (img.device() != out.backbone_fpn.front().device()) {
      for (auto& t : out.backbone_fpn) t = t.to(img.device());
      for (auto& t : out.vision_pos_enc) t = t.to(img.device());
    }
  } else {
    torch::NoGradGuard no_grad;
    if (decision_.stage == FeatureStage::kProjected) {
      out = model_->forward_image(img);
    } else {
      auto e = model_->image_encoder->forward(img);
      out = BackboneOut{std::move(e.backbone_fpn), std::move(e.vision_pos_enc)};
    }
    cache_->insert(key, input, out);
  }
  if (decision_.stage == FeatureStage::kEncoder) {
    out = model_->project_high_res_features(std::move(out));
  }
  return out;
}

}  // namespace iris::models::sam2
