#include "models/iris/inference.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"

namespace iris::models {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Inference runs in eval mode; the caller's mode comes back afterwards.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(IrisModel& model) : model_(model), was_training_(model->is_training()) {
    model_->eval();
  }
  ~EvalModeGuard() { model_->train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  IrisModel& model_;
  bool was_training_;
};

// No network parameter takes part in tuning's graph; the flags come back afterwards, also when
// tuning throws.
class FrozenParameters {
 public:
  explicit FrozenParameters(IrisModel& model) : parameters_(model->parameters()) {
    for (auto& p : parameters_) {
      flags_.push_back(p.requires_grad());
      p.requires_grad_(false);
    }
  }
  ~FrozenParameters() {
    for (std::size_t i = 0; i < parameters_.size(); ++i) parameters_[i].requires_grad_(flags_[i]);
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<bool> flags_;
};

c10::Device device_of(IrisModel& model) {
  const auto parameters = model->parameters();
  return parameters.empty() ? c10::Device(at::kCPU) : parameters.front().device();
}

int64_t stride_of(const IrisModel& model) {
  return int64_t{1} << model->options.stages;
}

// Zero-pads the trailing spatial dims of [B, C, *S] up to multiples of `stride`.
at::Tensor pad_to_stride(const at::Tensor& x, int64_t stride) {
  std::vector<int64_t> pad;  // last dim first, as constant_pad_nd wants
  bool any = false;
  for (int64_t d = x.dim() - 1; d >= 2; --d) {
    const int64_t extra = (stride - x.size(d) % stride) % stride;
    pad.push_back(0);
    pad.push_back(extra);
    any |= extra > 0;
  }
  return any ? at::constant_pad_nd(x, pad, 0) : x;
}

// [B, K, *P] -> [B, K, *S] with S the spatial size of `like`.
at::Tensor crop_like(const at::Tensor& x, const at::Tensor& like) {
  at::Tensor out = x;
  for (int64_t d = 2; d < x.dim(); ++d) out = out.narrow(d, 0, like.size(d));
  return out;
}

void check_reference(const IrisOptions& o, const Reference& r) {
  if (!r.image.defined() || !r.masks.defined() || r.image.dim() != o.spatial_dims + 1 ||
      r.masks.dim() != o.spatial_dims + 1 || r.image.sizes().slice(1) != r.masks.sizes().slice(1)) {
    throw InputError(fmt::format(
        "reference {}: expected an image [in, *S] and masks [K, *S] with {} spatial dims, got {} "
        "and {}",
        r.id.source.empty() ? "(in memory)" : r.id.source, o.spatial_dims,
        r.image.defined() ? c10::str(r.image.sizes()) : "none",
        r.masks.defined() ? c10::str(r.masks.sizes()) : "none"));
  }
}

// Soft Dice (s = 1, per batch and class, averaged) + mean BCE, the training loss.
at::Tensor segmentation_loss(const at::Tensor& logits, const at::Tensor& targets,
                             const TuningOptions& o) {
  const at::Tensor p = at::sigmoid(logits).flatten(2);
  const at::Tensor g = targets.flatten(2);
  const at::Tensor dice = 1 - (2 * (p * g).sum(-1) + 1) / (p.sum(-1) + g.sum(-1) + 1);
  return o.dice_weight * dice.mean() +
         o.bce_weight * at::binary_cross_entropy_with_logits(logits, targets);
}

std::vector<std::string> default_names(int64_t k, std::vector<std::string> names) {
  if (names.empty()) {
    for (int64_t i = 0; i < k; ++i) names.push_back(std::to_string(i));
  }
  if (static_cast<int64_t>(names.size()) != k) {
    throw InputError(fmt::format("{} class names given for {} mask channels", names.size(), k));
  }
  return names;
}

// Shared pseudo-label loop of both retrieval sources: `lookup(k, key)` gives class k's new
// embedding [m + 1, C] from the search key [m + 1, C].
at::Tensor retrieval_rounds(IrisModel& model, const SegmentFn& segment,
                            const at::Tensor& query_image, const at::Tensor& initial,
                            int64_t rounds,
                            const std::function<at::Tensor(int64_t, const at::Tensor&)>& lookup) {
  TORCH_CHECK(query_image.dim() == model->options.spatial_dims + 2 && query_image.size(0) == 1,
              "retrieval: query [1, in, *S] expected, got ", query_image.sizes());
  TORCH_CHECK(initial.dim() == 4 && initial.size(0) == 1,
              "retrieval: task [1, K, m + 1, C] expected, got ", initial.sizes());
  torch::NoGradGuard no_grad;
  EvalModeGuard mode(model);
  const c10::Device device = device_of(model);
  const at::Tensor query = query_image.to(device);
  at::Tensor task = initial.to(device);
  for (int64_t round = 0; round < std::max<int64_t>(rounds, 1); ++round) {
    const at::Tensor pseudo = (segment(query, task) > 0).to(at::kFloat);  // [1, K, *S]
    const int64_t stride = stride_of(model);
    const at::Tensor own =
        model->encode_task(pad_to_stride(query, stride), pad_to_stride(pseudo, stride));
    std::vector<at::Tensor> classes;
    for (int64_t k = 0; k < task.size(1); ++k) {
      const bool present = pseudo[0][k].any().item<bool>();
      classes.push_back(lookup(k, present ? own[0][k] : task[0][k]).to(device, at::kFloat));
    }
    task = at::stack(classes).unsqueeze(0);
  }
  return task;
}

}  // namespace

bool same_image(const ImageId& a, const ImageId& b) {
  if (a.source.empty() || b.source.empty()) return false;
  auto canonical = [](const std::string& p) {
    std::error_code ec;
    const fs::path c = fs::weakly_canonical(p, ec);
    return ec ? fs::path(p).lexically_normal() : c;
  };
  if (canonical(a.source) != canonical(b.source)) return false;
  return a.index < 0 || b.index < 0 || a.index == b.index;
}

void check_query_not_among_references(const ImageId& query,
                                      const std::vector<Reference>& references) {
  for (std::size_t i = 0; i < references.size(); ++i) {
    const ImageId& r = references[i].id;
    if (same_image(query, r)) {
      auto where = [](const ImageId& id) {
        return id.index < 0 ? id.source : fmt::format("{} (slice/patch {})", id.source, id.index);
      };
      throw InputError(fmt::format(
          "the query {} is also reference {} ({}): a query is never its own reference, since its "
          "label would leak into its prediction",
          where(query), i + 1, where(r)));
    }
  }
}

Strategy parse_strategy(const std::string& name) {
  if (name == "one-shot") return Strategy::kOneShot;
  if (name == "ensemble") return Strategy::kEnsemble;
  if (name == "retrieval") return Strategy::kRetrieval;
  if (name == "tuning") return Strategy::kTuning;
  throw InputError(
      fmt::format("strategy '{}': expected one-shot, ensemble, retrieval or tuning", name));
}

std::string strategy_name(Strategy strategy) {
  switch (strategy) {
    case Strategy::kOneShot:
      return "one-shot";
    case Strategy::kEnsemble:
      return "ensemble";
    case Strategy::kRetrieval:
      return "retrieval";
    case Strategy::kTuning:
      return "tuning";
  }
  return "?";
}

at::Tensor one_shot_task(IrisModel& model, const Reference& reference) {
  check_reference(model->options, reference);
  torch::NoGradGuard no_grad;
  EvalModeGuard mode(model);
  const c10::Device device = device_of(model);
  const int64_t stride = stride_of(model);
  return model->encode_task(
      pad_to_stride(reference.image.unsqueeze(0).to(device, at::kFloat), stride),
      pad_to_stride(reference.masks.unsqueeze(0).to(device, at::kFloat), stride));
}

at::Tensor ensemble_task(IrisModel& model, const std::vector<Reference>& references) {
  if (references.empty()) throw InputError("context ensemble: no references given");
  at::Tensor sum;
  for (const auto& r : references) {
    const at::Tensor t = one_shot_task(model, r);
    TORCH_CHECK(!sum.defined() || sum.sizes() == t.sizes(),
                "context ensemble: references give task embeddings of different shapes (",
                sum.sizes(), " vs ", t.sizes(), "): every reference needs the same classes");
    sum = sum.defined() ? sum + t : t;
  }
  return sum / static_cast<double>(references.size());
}

TuningResult tune_task(IrisModel& model, const std::vector<Reference>& references,
                       const TuningOptions& o) {
  if (references.empty()) throw InputError("in-context tuning: no references given");
  if (o.steps < 0 || !(o.lr > 0)) {
    throw InputError(fmt::format(
        "in-context tuning: steps {} and lr {}: expected steps >= 0, lr > 0", o.steps, o.lr));
  }
  EvalModeGuard mode(model);
  FrozenParameters frozen(model);
  const c10::Device device = device_of(model);
  const int64_t stride = stride_of(model);
  const auto n = static_cast<int64_t>(references.size());

  std::vector<at::Tensor> own;  // [1, K, m + 1, C] per reference
  for (const auto& r : references) own.push_back(one_shot_task(model, r));
  at::Tensor sum = own[0];
  for (int64_t i = 1; i < n; ++i) sum = sum + own[static_cast<std::size_t>(i)];
  TuningResult result;
  result.initial = sum / static_cast<double>(n);
  std::vector<at::Tensor> base;  // embedding reference i is segmented with (before the offset)
  for (int64_t i = 0; i < n; ++i) {
    base.push_back(n == 1 ? own[0]
                          : (sum - own[static_cast<std::size_t>(i)]) / static_cast<double>(n - 1));
  }
  std::vector<at::Tensor> images, masks;
  for (const auto& r : references) {
    images.push_back(pad_to_stride(r.image.unsqueeze(0).to(device, at::kFloat), stride));
    masks.push_back(r.masks.unsqueeze(0).to(device, at::kFloat));
  }

  at::Tensor offset = at::zeros_like(result.initial).requires_grad_(true);
  torch::optim::Adam adam(std::vector<at::Tensor>{offset}, torch::optim::AdamOptions(o.lr));
  torch::AutoGradMode grad(true);
  for (int64_t step = 0; step < o.steps; ++step) {
    adam.zero_grad();
    at::Tensor loss = at::zeros({}, offset.options());
    for (int64_t i = 0; i < n; ++i) {
      const auto s = static_cast<std::size_t>(i);
      const at::Tensor logits =
          crop_like(model->segment(images[s], base[s] + offset).logits, masks[s]);
      loss = loss + segmentation_loss(logits, masks[s], o) / static_cast<double>(n);
    }
    loss.backward();
    adam.step();
    result.losses.push_back(loss.item<double>());
  }
  result.task = (result.initial + offset).detach();
  return result;
}

void EmbeddingIndex::add(const std::string& class_name, const ImageId& id,
                         const at::Tensor& embedding) {
  TORCH_CHECK(embedding.dim() == 2, "embedding index: embedding [m + 1, C] expected, got ",
              embedding.sizes());
  if (!entries_.empty() && entries_.front().embedding.sizes() != embedding.sizes()) {
    throw InputError(fmt::format("embedding index: entry of shape {} does not match the index's {}",
                                 c10::str(embedding.sizes()),
                                 c10::str(entries_.front().embedding.sizes())));
  }
  entries_.push_back({class_name, id, embedding.detach().to(at::kCPU, at::kFloat).clone()});
}

bool EmbeddingIndex::has_class(const std::string& class_name) const {
  for (const auto& e : entries_) {
    if (e.class_name == class_name) return true;
  }
  return false;
}

std::vector<EmbeddingIndex::Match> EmbeddingIndex::nearest(const at::Tensor& query, int64_t k,
                                                           const std::string& class_name,
                                                           const ImageId& exclude) const {
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (!class_name.empty() && entries_[i].class_name != class_name) continue;
    if (same_image(entries_[i].id, exclude)) continue;
    candidates.push_back(i);
  }
  if (candidates.empty() || k <= 0) return {};
  const at::Tensor q = query.detach().to(at::kCPU, at::kFloat).reshape({1, -1});
  std::vector<at::Tensor> rows;
  for (std::size_t i : candidates) rows.push_back(entries_[i].embedding.reshape({-1}));
  const at::Tensor keys = at::stack(rows);  // [N, (m + 1)·C]
  TORCH_CHECK(keys.size(1) == q.size(1), "embedding index: query has ", q.size(1),
              " values, entries have ", keys.size(1));
  const at::Tensor sims = at::cosine_similarity(keys, q.expand_as(keys), 1, 1e-8).contiguous();
  std::vector<Match> matches;
  for (std::size_t j = 0; j < candidates.size(); ++j) {
    matches.push_back({candidates[j], sims[static_cast<int64_t>(j)].item<double>()});
  }
  // Ties keep index order, so results do not depend on the sort implementation.
  std::stable_sort(matches.begin(), matches.end(),
                   [](const Match& a, const Match& b) { return a.similarity > b.similarity; });
  if (static_cast<int64_t>(matches.size()) > k) matches.resize(static_cast<std::size_t>(k));
  return matches;
}

at::Tensor EmbeddingIndex::retrieve(const at::Tensor& query, int64_t k, double temperature,
                                    const std::string& class_name, const ImageId& exclude) const {
  if (!(temperature > 0))
    throw InputError(fmt::format("retrieval temperature {}: expected > 0", temperature));
  const auto matches = nearest(query, k, class_name, exclude);
  if (matches.empty()) {
    throw InputError(class_name.empty()
                         ? std::string("embedding index: nothing to retrieve from")
                         : "embedding index holds no embedding of class '" + class_name + "'");
  }
  std::vector<double> sims;
  for (const auto& m : matches) sims.push_back(m.similarity / temperature);
  const at::Tensor weights = at::softmax(at::tensor(sims, at::kDouble), 0).to(at::kFloat);
  at::Tensor out = at::zeros_like(entries_[matches[0].entry].embedding);
  for (std::size_t i = 0; i < matches.size(); ++i) {
    out.add_(entries_[matches[i].entry].embedding * weights[static_cast<int64_t>(i)]);
  }
  return out;
}

at::Tensor EmbeddingIndex::class_mean(const std::string& class_name, const ImageId& exclude) const {
  at::Tensor sum;
  int64_t count = 0;
  for (const auto& e : entries_) {
    if (e.class_name != class_name || same_image(e.id, exclude)) continue;
    sum = sum.defined() ? sum + e.embedding : e.embedding.clone();
    ++count;
  }
  if (count == 0)
    throw InputError("embedding index holds no embedding of class '" + class_name + "'");
  return sum / static_cast<double>(count);
}

EmbeddingIndex build_embedding_index(IrisModel& model, const std::vector<Reference>& references,
                                     std::vector<std::string> class_names) {
  EmbeddingIndex index;
  for (const auto& r : references) {
    const at::Tensor task = one_shot_task(model, r);  // [1, K, m + 1, C]
    class_names = default_names(task.size(1), std::move(class_names));
    for (int64_t k = 0; k < task.size(1); ++k) {
      if (r.masks[k].any().item<bool>())
        index.add(class_names[static_cast<std::size_t>(k)], r.id, task[0][k]);
    }
  }
  return index;
}

at::Tensor index_task(const EmbeddingIndex& index, const std::vector<std::string>& class_names,
                      const ImageId& exclude) {
  if (class_names.empty())
    throw InputError("a task from class names needs at least one class name");
  std::vector<at::Tensor> classes;
  for (const auto& name : class_names) classes.push_back(index.class_mean(name, exclude));
  return at::stack(classes).unsqueeze(0);
}

at::Tensor retrieve_task(IrisModel& model, const SegmentFn& segment, const at::Tensor& query_image,
                         const ImageId& query_id, const at::Tensor& initial,
                         const EmbeddingIndex& index, const std::vector<std::string>& class_names,
                         const RetrievalOptions& o) {
  const auto names = default_names(initial.size(1), class_names);
  return retrieval_rounds(model, segment, query_image, initial, o.rounds,
                          [&](int64_t k, const at::Tensor& key) {
                            const std::string& name = names[static_cast<std::size_t>(k)];
                            return index.retrieve(key, o.top_k, o.temperature,
                                                  index.has_class(name) ? name : "", query_id);
                          });
}

at::Tensor retrieve_task(IrisModel& model, const SegmentFn& segment, const at::Tensor& query_image,
                         const at::Tensor& initial, const MemoryBank& bank,
                         const std::string& dataset, const RetrievalOptions& o) {
  return retrieval_rounds(model, segment, query_image, initial, o.rounds,
                          [&](int64_t, const at::Tensor& key) {
                            return bank.retrieve(key, o.top_k, o.temperature, dataset);
                          });
}

at::Tensor blend_weights(const std::vector<int64_t>& window, Blend blend, double sigma_scale) {
  at::Tensor weights = at::ones({}, at::kFloat);
  for (std::size_t d = 0; d < window.size(); ++d) {
    const int64_t w = window[d];
    const at::Tensor x = at::arange(w, at::kDouble);
    const double centre = static_cast<double>(w - 1) / 2.0;
    at::Tensor axis;
    if (blend == Blend::kGaussian) {
      const double sigma = std::max(sigma_scale * static_cast<double>(w), 1e-3);
      axis = at::exp(-(x - centre).pow(2) / (2 * sigma * sigma));
    } else {
      axis = 1 - (x - centre).abs() / (centre + 1);
    }
    std::vector<int64_t> shape(window.size(), 1);
    shape[d] = w;
    weights = weights * axis.to(at::kFloat).reshape(shape);
  }
  weights = weights / weights.max();
  // Border voxels seen by one window only must keep a usable weight.
  return weights.clamp_min(1e-3);
}

at::Tensor sliding_window(const std::function<at::Tensor(const at::Tensor&)>& fn,
                          const at::Tensor& images, const SlidingWindowOptions& o) {
  if (o.window.empty()) return fn(images);
  const int64_t dims = images.dim() - 2;
  if (static_cast<int64_t>(o.window.size()) != dims) {
    throw InputError(fmt::format("sliding window of {} sizes for an input with {} spatial dims",
                                 o.window.size(), dims));
  }
  if (!(o.overlap >= 0 && o.overlap < 1)) {
    throw InputError(
        fmt::format("sliding window overlap {}: expected a value in [0, 1)", o.overlap));
  }
  // Window starts per dim, spread evenly so that the first and last windows touch the borders.
  std::vector<int64_t> padding;
  std::vector<std::vector<int64_t>> starts(static_cast<std::size_t>(dims));
  int64_t windows = 1;
  for (int64_t d = 0; d < dims; ++d) {
    const int64_t w = o.window[static_cast<std::size_t>(d)];
    if (w < 1)
      throw InputError(fmt::format("sliding window size {} along dim {}: expected >= 1", w, d));
    const int64_t size = std::max(images.size(d + 2), w);
    const int64_t step =
        std::max<int64_t>(1, static_cast<int64_t>(std::floor(w * (1 - o.overlap))));
    const int64_t n = size == w ? 1 : (size - w + step - 1) / step + 1;
    auto& s = starts[static_cast<std::size_t>(d)];
    for (int64_t i = 0; i < n; ++i) {
      s.push_back(n == 1 ? 0
                         : static_cast<int64_t>(
                               std::llround(static_cast<double>(i * (size - w)) / (n - 1))));
    }
    windows *= n;
  }
  for (int64_t d = dims - 1; d >= 0; --d) {
    padding.push_back(0);
    padding.push_back(
        std::max<int64_t>(0, o.window[static_cast<std::size_t>(d)] - images.size(d + 2)));
  }
  const at::Tensor padded = at::constant_pad_nd(images, padding, 0);
  if (windows == 1) return crop_like(fn(padded), images);

  const at::Tensor weights = blend_weights(o.window, o.blend, o.sigma_scale).to(images.device());
  at::Tensor sum, norm = at::zeros(padded.sizes().slice(2), weights.options());
  std::vector<std::size_t> at_window(static_cast<std::size_t>(dims), 0);
  for (int64_t w = 0; w < windows; ++w) {
    at::Tensor window = padded, sum_view, norm_view = norm;
    for (int64_t d = 0; d < dims; ++d) {
      const auto du = static_cast<std::size_t>(d);
      window = window.narrow(d + 2, starts[du][at_window[du]], o.window[du]);
    }
    const at::Tensor logits = fn(window);
    if (!sum.defined()) {
      std::vector<int64_t> shape{logits.size(0), logits.size(1)};
      for (int64_t d = 0; d < dims; ++d) shape.push_back(padded.size(d + 2));
      sum = at::zeros(shape, logits.options());
    }
    sum_view = sum;
    for (int64_t d = 0; d < dims; ++d) {
      const auto du = static_cast<std::size_t>(d);
      sum_view = sum_view.narrow(d + 2, starts[du][at_window[du]], o.window[du]);
      norm_view = norm_view.narrow(d, starts[du][at_window[du]], o.window[du]);
    }
    sum_view.add_(logits * weights);
    norm_view.add_(weights);
    // Next window: odometer over the dims, last dim fastest.
    for (int64_t d = dims - 1; d >= 0; --d) {
      const auto du = static_cast<std::size_t>(d);
      if (++at_window[du] < starts[du].size()) break;
      at_window[du] = 0;
    }
  }
  return crop_like(sum / norm, images);
}

at::Tensor segment_logits(IrisModel& model, const at::Tensor& images, const at::Tensor& task,
                          const SlidingWindowOptions& o) {
  TORCH_CHECK(images.dim() == model->options.spatial_dims + 2,
              "IRIS: images [B, in, *S] expected, got ", images.sizes());
  const int64_t stride = stride_of(model);
  for (int64_t w : o.window) {
    if (w % stride != 0) {
      throw InputError(
          fmt::format("sliding window size {} must be divisible by 2^stages = {}", w, stride));
    }
  }
  torch::NoGradGuard no_grad;
  EvalModeGuard mode(model);
  const c10::Device device = device_of(model);
  const at::Tensor t = task.to(device);
  auto fn = [&](const at::Tensor& x) {
    const at::Tensor batch_task = t.size(0) == x.size(0) ? t : t.expand({x.size(0), -1, -1, -1});
    return crop_like(model->segment(pad_to_stride(x, stride), batch_task).logits, x);
  };
  return sliding_window(fn, images.to(device, at::kFloat), o);
}

InferenceResult infer(IrisModel& model, const at::Tensor& query_image, const ImageId& query_id,
                      const std::vector<Reference>& references, const InferenceOptions& o) {
  check_query_not_among_references(query_id, references);
  TORCH_CHECK(query_image.dim() == model->options.spatial_dims + 2 && query_image.size(0) == 1,
              "IRIS: query [1, in, *S] expected, got ", query_image.sizes());
  auto need_references = [&] {
    if (references.empty()) {
      throw InputError(
          fmt::format("strategy {} needs at least one reference", strategy_name(o.strategy)));
    }
  };
  const SegmentFn segment = [&](const at::Tensor& images, const at::Tensor& task) {
    return segment_logits(model, images, task, o.window);
  };
  InferenceResult result;
  auto start = Clock::now();
  switch (o.strategy) {
    case Strategy::kOneShot:
      need_references();
      result.task = one_shot_task(model, references.front());
      break;
    case Strategy::kEnsemble:
      need_references();
      result.task = ensemble_task(model, references);
      break;
    case Strategy::kTuning:
      need_references();
      result.task = tune_task(model, references, o.tuning).task;
      break;
    case Strategy::kRetrieval: {
      if (o.index != nullptr) {
        const at::Tensor initial = references.empty()
                                       ? index_task(*o.index, o.class_names, query_id)
                                       : one_shot_task(model, references.front());
        result.task = retrieve_task(model, segment, query_image, query_id, initial, *o.index,
                                    o.class_names, o.retrieval);
      } else if (o.bank != nullptr) {
        at::Tensor initial;
        if (references.empty()) {
          std::vector<at::Tensor> classes;
          for (const auto& name : o.class_names)
            classes.push_back(o.bank->get(o.bank_dataset, name));
          if (classes.empty())
            throw InputError("retrieval from the memory bank needs references or class names");
          initial = at::stack(classes).unsqueeze(0);
        } else {
          initial = one_shot_task(model, references.front());
        }
        result.task = retrieve_task(model, segment, query_image, initial, *o.bank, o.bank_dataset,
                                    o.retrieval);
      } else {
        need_references();
        const EmbeddingIndex local = build_embedding_index(model, references, o.class_names);
        result.task = retrieve_task(model, segment, query_image, query_id,
                                    one_shot_task(model, references.front()), local, o.class_names,
                                    o.retrieval);
      }
      break;
    }
  }
  result.task_ms = ms_since(start);
  start = Clock::now();
  result.logits = segment(query_image, result.task);
  result.segment_ms = ms_since(start);
  return result;
}

}  // namespace iris::models
