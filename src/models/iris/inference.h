// The four IRIS inference strategies over the public encode_task/segment API, and sliding-window
// inference for inputs larger than the training patch:
//   one-shot           task embeddings of one reference
//   context ensemble   task embeddings averaged over k references
//   retrieval          per class, the top-k stored embeddings nearest (cosine) to the query's own
//                      pseudo-labelled embedding, similarity-weighted; from an index built over a
//                      reference pool or from the checkpoint's memory bank
//   in-context tuning  only the task embeddings are optimised (Adam, Dice + BCE) on the
//                      references, leave-one-out between references; the query's label is never
//                      an input, and network weights are untouched
// Every strategy refuses a query that is one of its own references.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "models/iris/iris_model.h"
#include "models/iris/memory_bank.h"

namespace iris::models {

// Where an image came from: a file and a slice or patch within it (-1: the whole file).
struct ImageId {
  std::string source;
  int64_t index = -1;
};

// True when both name the same file (compared as canonical paths) and the same slice/patch; an
// index of -1 (the whole file) matches every index of that file.
bool same_image(const ImageId& a, const ImageId& b);

// One labelled example. All references of one task have the same K classes, in the same order.
struct Reference {
  at::Tensor image;  // [in, *S]
  at::Tensor masks;  // [K, *S] 0/1, channel k = class k of the task
  ImageId id;
};

// Throws InputError naming both when the query is among the references.
void check_query_not_among_references(const ImageId& query,
                                      const std::vector<Reference>& references);

enum class Strategy { kOneShot, kEnsemble, kRetrieval, kTuning };
// "one-shot", "ensemble", "retrieval", "tuning"; InputError listing them otherwise.
Strategy parse_strategy(const std::string& name);
std::string strategy_name(Strategy strategy);

// Task embeddings [1, K, m + 1, C] of one reference (zero-padded to the model's stride).
at::Tensor one_shot_task(IrisModel& model, const Reference& reference);
// Element-wise mean of the references' task embeddings, [1, K, m + 1, C].
at::Tensor ensemble_task(IrisModel& model, const std::vector<Reference>& references);

// ---- in-context tuning

struct TuningOptions {
  int64_t steps = 20;
  double lr = 1e-3;  // Adam
  double dice_weight = 1.0;
  double bce_weight = 1.0;
};

struct TuningResult {
  at::Tensor task;             // [1, K, m + 1, C] tuned
  at::Tensor initial;          // [1, K, m + 1, C] before tuning: the context ensemble
  std::vector<double> losses;  // per step, mean over the references
};

// Optimises an offset to the task embeddings; nothing else receives gradients. With one
// reference its own embedding segments it (the only labelled example there is). With n > 1,
// leave-one-out: reference i is segmented with the mean embedding of the others plus the offset,
// so the offset learns to generalise across examples instead of memorising one; the result is the
// ensemble of all n plus the offset. Parameters' requires_grad flags and the training mode are
// restored afterwards; on CPU the result is deterministic.
TuningResult tune_task(IrisModel& model, const std::vector<Reference>& references,
                       const TuningOptions& options);

// ---- object-level retrieval

struct IndexEntry {
  std::string class_name;
  ImageId id;            // the reference the embedding came from
  at::Tensor embedding;  // [m + 1, C], CPU float
};

// Per-(reference, class) task embeddings of a reference pool, searched by cosine similarity of
// the flattened embeddings.
class EmbeddingIndex {
 public:
  void add(const std::string& class_name, const ImageId& id, const at::Tensor& embedding);
  const std::vector<IndexEntry>& entries() const { return entries_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  bool has_class(const std::string& class_name) const;

  struct Match {
    std::size_t entry = 0;  // position in entries()
    double similarity = 0;
  };
  // The k entries most similar to `query` ([m + 1, C]), best first; only entries of
  // `class_name` when it is not empty; entries from `exclude` (the query itself) never match.
  std::vector<Match> nearest(const at::Tensor& query, int64_t k, const std::string& class_name = "",
                             const ImageId& exclude = {}) const;
  // The top-k matches averaged with weights softmax(similarity / temperature), [m + 1, C].
  // InputError when nothing matches.
  at::Tensor retrieve(const at::Tensor& query, int64_t k, double temperature,
                      const std::string& class_name = "", const ImageId& exclude = {}) const;
  // Mean of all entries of a class (a task from a class name alone), [m + 1, C].
  at::Tensor class_mean(const std::string& class_name, const ImageId& exclude = {}) const;

 private:
  std::vector<IndexEntry> entries_;
};

// Encodes every reference once; class_names[k] names mask channel k (empty: "0", "1", ...). A
// class whose mask is empty on a reference is not indexed for that reference.
EmbeddingIndex build_embedding_index(IrisModel& model, const std::vector<Reference>& references,
                                     std::vector<std::string> class_names = {});

// [1, K, m + 1, C] from class names alone: each class's mean embedding in the index.
at::Tensor index_task(const EmbeddingIndex& index, const std::vector<std::string>& class_names,
                      const ImageId& exclude = {});

struct RetrievalOptions {
  int64_t top_k = 3;
  double temperature = 0.1;
  int64_t rounds = 1;  // pseudo-label -> retrieve rounds
};

// Query images [1, in, *S] and a task [1, K, m + 1, C] -> logits [1, K, *S].
using SegmentFn = std::function<at::Tensor(const at::Tensor& images, const at::Tensor& task)>;

// Object-level retrieval for one query: segment it with `initial`, encode the query with its own
// predicted masks, and replace each class's embedding by the top-k weighted nearest entries of
// the same class (any class when the index lacks it). A class predicted absent keeps its current
// embedding as the search key. Returns the final task [1, K, m + 1, C].
at::Tensor retrieve_task(IrisModel& model, const SegmentFn& segment, const at::Tensor& query_image,
                         const ImageId& query_id, const at::Tensor& initial,
                         const EmbeddingIndex& index, const std::vector<std::string>& class_names,
                         const RetrievalOptions& options);
// The same over the memory bank's entries of `dataset` (all datasets when empty).
at::Tensor retrieve_task(IrisModel& model, const SegmentFn& segment, const at::Tensor& query_image,
                         const at::Tensor& initial, const MemoryBank& bank,
                         const std::string& dataset, const RetrievalOptions& options);

// ---- sliding window

enum class Blend { kGaussian, kLinear };

struct SlidingWindowOptions {
  std::vector<int64_t> window;  // spatial window size; empty: the whole input in one pass
  double overlap = 0.5;         // fraction of a window shared with its neighbour, [0, 1)
  Blend blend = Blend::kGaussian;
  double sigma_scale = 0.125;  // Gaussian sigma = sigma_scale · window
};

// Window weights [*W]: separable Gaussian or tent, maximum 1, strictly positive at the borders.
at::Tensor blend_weights(const std::vector<int64_t>& window, Blend blend,
                         double sigma_scale = 0.125);

// Runs `fn` ([B, in, *W] -> [B, K, *W]) over overlapping windows of `images` [B, in, *S] and
// blends the logits into [B, K, *S]. Inputs smaller than the window are zero-padded. One window
// covering the input exactly gives fn(images) itself.
at::Tensor sliding_window(const std::function<at::Tensor(const at::Tensor&)>& fn,
                          const at::Tensor& images, const SlidingWindowOptions& options);

// segment() through the sliding window with one task embedding computed beforehand; without a
// window, the input is zero-padded to the model's stride and cropped back.
at::Tensor segment_logits(IrisModel& model, const at::Tensor& images, const at::Tensor& task,
                          const SlidingWindowOptions& options = {});

// ---- one query, one strategy

struct InferenceOptions {
  Strategy strategy = Strategy::kOneShot;
  std::vector<std::string> class_names;  // names of the K mask channels (retrieval)
  TuningOptions tuning;
  RetrievalOptions retrieval;
  SlidingWindowOptions window;
  // Retrieval sources: an index over a reference pool (preferred) or a memory bank; without
  // either, the references themselves are indexed.
  const EmbeddingIndex* index = nullptr;
  const MemoryBank* bank = nullptr;
  std::string bank_dataset;
};

struct InferenceResult {
  at::Tensor logits;      // [1, K, *S]
  at::Tensor task;        // [1, K, m + 1, C]
  double task_ms = 0;     // task embeddings (encoding, tuning, retrieval)
  double segment_ms = 0;  // the final segmentation
};

// Segments query_image [1, in, *S] with the strategy; the query's label is not an input. One-shot
// uses references[0]. InputError when the query is among the references or none are given where
// the strategy needs them.
InferenceResult infer(IrisModel& model, const at::Tensor& query_image, const ImageId& query_id,
                      const std::vector<Reference>& references, const InferenceOptions& options);

}  // namespace iris::models
