#include "dist/gradient_sync.h"

namespace iris::dist {

GradientSync::GradientSync(std::vector<at::Tensor> parameters, DistContext* dist,
                           int64_t bucket_bytes)
    : parameters_(std::move(parameters)), dist_(dist), bucket_bytes_(bucket_bytes) {
  for (const auto& p : parameters_) sums_.push_back(at::zeros_like(p, at::kDouble));
  const c10::Device device = parameters_.empty() ? c10::Device(c10::kCPU) : parameters_[0].device();
  reached_ = at::zeros({static_cast<int64_t>(parameters_.size())},
                       at::TensorOptions().dtype(at::kDouble).device(device));
}

void GradientSync::zero() {
  for (auto& s : sums_) s.zero_();
  reached_.zero_();
  for (auto& p : parameters_) p.mutable_grad() = at::Tensor();
}

void GradientSync::accumulate() {
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    auto& grad = parameters_[i].mutable_grad();
    if (!grad.defined()) continue;  // not reached by this micro-batch's loss
    sums_[i].add_(grad.to(at::kDouble));
    reached_[static_cast<int64_t>(i)] = 1.0;
    grad = at::Tensor();
  }
}

void GradientSync::finish() {
  at::NoGradGuard no_grad;
  if (dist_ != nullptr && dist_->world_size() > 1) {
    auto tensors = sums_;
    tensors.push_back(reached_);
    dist_->all_reduce_sum(tensors, bucket_bytes_);
  }
  const auto reached = reached_.cpu();
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    // A parameter no loss reached keeps no gradient, so the optimiser skips it as it would have.
    if (reached[static_cast<int64_t>(i)].item<double>() == 0) continue;
    parameters_[i].mutable_grad() = sums_[i].to(parameters_[i].scalar_type());
  }
}

}  // namespace iris::dist
