#include "dist/gradient_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <mutex>
#include <unordered_set>

namespace iris::dist {
namespace {

using torch::autograd::Node;
// std::shared_ptr<Node> before LibTorch 2.x, c10::intrusive_ptr<Node> after.
using NodePtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<at::Tensor>()));

constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;

// The autograd nodes `loss`'s backward will run.
std::unordered_set<const Node*> graph_nodes(const at::Tensor& loss) {
  std::unordered_set<const Node*> seen;
  std::vector<Node*> stack;
  if (Node* root = loss.grad_fn().get(); root != nullptr) {
    seen.insert(root);
    stack.push_back(root);
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      Node* next = edge.function.get();
      if (next != nullptr && seen.insert(next).second) stack.push_back(next);
    }
  }
  return seen;
}

}  // namespace

struct GradientSync::State {
  std::vector<at::Tensor> parameters;
  DistContext* dist = nullptr;
  bool overlap = false;
  std::vector<at::Tensor> flats;  // float64, one per bucket: what the all-reduce sums
  std::vector<at::Tensor> sums;   // one per parameter, a view into its bucket's flat
  std::vector<int64_t> bucket_of;
  std::vector<int64_t> bucket_parameters;
  std::vector<double> reached;  // 1 where some micro-batch produced a gradient
  // Kept alive with their hooks: a parameter's accumulator is otherwise held only by graphs.
  std::vector<NodePtr> accumulators;
  std::vector<uintptr_t> hook_keys;

  // The step in progress; the hooks run on autograd's threads.
  std::mutex mutex;
  bool armed = false;  // inside the last backward of the step
  std::vector<char> ready;
  std::vector<int64_t> waiting;  // per bucket: parameters not ready yet
  std::size_t next_bucket = 0;   // buckets start in index order on every rank
  std::vector<PendingCollective> pending;
  int64_t overlapped = 0, overlapped_last_step = 0;

  bool distributed() const { return dist != nullptr && dist->world_size() > 1; }

  void reset() {
    for (auto& f : flats) f.zero_();
    std::fill(reached.begin(), reached.end(), 0.0);
    std::fill(ready.begin(), ready.end(), 0);
    waiting = bucket_parameters;
    next_bucket = 0;
    pending.clear();
    overlapped = 0;
    armed = false;
  }

  // Moves parameter i's gradient, if any, into its accumulator (holding `mutex`).
  void take_gradient(std::size_t i) {
    auto& grad = parameters[i].mutable_grad();
    if (!grad.defined()) return;
    TORCH_CHECK(!ready[i], "GradientSync: a gradient of parameter ", i,
                " arrived after its bucket's all-reduce started (two last backward passes in "
                "one step?)");
    sums[i].add_(grad.to(at::kDouble));
    reached[i] = 1.0;
    grad = at::Tensor();
  }

  void mark_ready(std::size_t i) {
    ready[i] = 1;
    --waiting[static_cast<std::size_t>(bucket_of[i])];
  }

  // Starts every bucket, in order, whose parameters are all ready.
  void start_ready_buckets(bool in_backward) {
    while (next_bucket < flats.size() && waiting[next_bucket] == 0) {
      pending.push_back(dist->start_all_reduce_sum(flats[next_bucket]));
      if (in_backward) ++overlapped;
      ++next_bucket;
    }
  }

  void on_gradient(std::size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed) return;  // earlier micro-batches, or backward passes outside training steps
    at::NoGradGuard no_grad;
    take_gradient(i);
    mark_ready(i);
    start_ready_buckets(/*in_backward=*/true);
  }
};

GradientSync::GradientSync(std::vector<at::Tensor> parameters, DistContext* dist)
    : GradientSync(std::move(parameters), dist,
                   dist != nullptr ? dist->bucket_bytes() : kDefaultBucketBytes,
                   dist == nullptr || dist->overlap_backward()) {}

GradientSync::GradientSync(std::vector<at::Tensor> parameters, DistContext* dist,
                           int64_t bucket_bytes, bool overlap)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.parameters = std::move(parameters);
  s.dist = dist;
  s.overlap = overlap && s.distributed();
  const std::size_t n = s.parameters.size();
  s.bucket_of.assign(n, 0);
  s.sums.resize(n);
  s.reached.assign(n, 0.0);
  s.ready.assign(n, 0);
  // Buckets over the parameters in reverse order, one device each. The first is kept small
  // (as torch's DDP does) so that communication starts early in backward.
  const int64_t first_bucket_bytes = std::min<int64_t>(bucket_bytes, kFirstBucketBytes);
  std::vector<std::vector<std::size_t>> buckets;
  int64_t bytes = 0;
  for (std::size_t k = n; k-- > 0;) {
    const auto& p = s.parameters[k];
    const int64_t size = p.numel() * static_cast<int64_t>(sizeof(double));
    const int64_t cap = buckets.size() == 1 ? first_bucket_bytes : bucket_bytes;
    if (buckets.empty() || bytes >= cap ||
        s.parameters[buckets.back().front()].device() != p.device()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(k);
    bytes += size;
  }
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    int64_t total = 0;
    for (std::size_t i : buckets[b]) total += s.parameters[i].numel();
    const auto& first = s.parameters[buckets[b].front()];
    s.flats.push_back(at::zeros({total}, first.options().dtype(at::kDouble)));
    int64_t offset = 0;
    for (std::size_t i : buckets[b]) {
      const auto& p = s.parameters[i];
      s.sums[i] = s.flats.back().narrow(0, offset, p.numel()).view(p.sizes());
      s.bucket_of[i] = static_cast<int64_t>(b);
      offset += p.numel();
    }
    s.bucket_parameters.push_back(static_cast<int64_t>(buckets[b].size()));
  }
  if (s.overlap) {
    s.accumulators.resize(n);
    s.hook_keys.assign(n, 0);
    const std::weak_ptr<State> weak = state_;
    for (std::size_t i = 0; i < n; ++i) {
      if (!s.parameters[i].requires_grad()) continue;  // never reached: ready from the start
      s.accumulators[i] = torch::autograd::impl::grad_accumulator(s.parameters[i]);
      s.hook_keys[i] =
          s.accumulators[i]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
              [weak, i](const torch::autograd::variable_list& outputs,
                        const torch::autograd::variable_list&) {
                if (const auto state = weak.lock()) state->on_gradient(i);
                return outputs;
              }));
    }
  }
  s.reset();
}

GradientSync::~GradientSync() {
  for (std::size_t i = 0; i < state_->accumulators.size(); ++i) {
    if (state_->accumulators[i]) state_->accumulators[i]->del_post_hook(state_->hook_keys[i]);
  }
}

void GradientSync::zero() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->reset();
  for (auto& p : state_->parameters) p.mutable_grad() = at::Tensor();
}

void GradientSync::accumulate() {
  at::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(state_->mutex);
  for (std::size_t i = 0; i < state_->parameters.size(); ++i) state_->take_gradient(i);
}

void GradientSync::backward(const at::Tensor& loss, bool last) {
  State& s = *state_;
  if (!last || !s.overlap) {
    loss.backward();
    accumulate();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < s.parameters.size(); ++i) s.take_gradient(i);
    // Parameters this backward will not reach are done now; their buckets may start at once.
    const auto nodes = graph_nodes(loss);
    for (std::size_t i = 0; i < s.parameters.size(); ++i) {
      if (s.ready[i]) continue;
      if (!s.accumulators[i] || nodes.count(s.accumulators[i].get()) == 0) s.mark_ready(i);
    }
    s.start_ready_buckets(/*in_backward=*/false);
    s.armed = true;
  }
  try {
    loss.backward();
  } catch (...) {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.armed = false;
    throw;
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  s.armed = false;
}

void GradientSync::finish() {
  State& s = *state_;
  at::NoGradGuard no_grad;
  accumulate();
  if (s.distributed()) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      for (std::size_t i = 0; i < s.parameters.size(); ++i) {
        if (!s.ready[i]) s.mark_ready(i);
      }
      s.start_ready_buckets(/*in_backward=*/false);
    }
    // After every bucket, so that all ranks issue the same collectives in the same order.
    s.reached = s.dist->all_reduce_sum(s.reached);
    for (auto& p : s.pending) p.wait();
    s.pending.clear();
  }
  s.overlapped_last_step = s.overlapped;
  for (std::size_t i = 0; i < s.parameters.size(); ++i) {
    // A parameter no loss reached keeps no gradient, so the optimiser skips it as it would have.
    if (s.reached[i] == 0) continue;
    auto& p = s.parameters[i];
    at::Tensor grad = at::empty_like(p);  // the parameter's memory format (channels-last)
    grad.copy_(s.sums[i]);
    p.mutable_grad() = grad;
  }
}

int64_t GradientSync::buckets() const {
  return static_cast<int64_t>(state_->flats.size());
}

int64_t GradientSync::overlapped_buckets() const {
  return state_->overlapped_last_step;
}

}  // namespace iris::dist
