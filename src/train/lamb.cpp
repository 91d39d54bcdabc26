#include "train/lamb.h"

#include <sstream>
#include <string>
#include <type_traits>

#include <cmath>

#include "core/error.h"

namespace iris {

void LambOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(max_weight_norm);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(max_trust_ratio);
}

void LambOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, max_weight_norm);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, max_trust_ratio);
}

void LambParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void LambParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(at::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(at::Tensor, exp_avg_sq);
}

Lamb::Lamb(const std::vector<torch::optim::OptimizerParamGroup>& param_groups, LambOptions defaults)
    : Optimizer(param_groups, std::make_unique<LambOptions>(defaults)) {
  const auto [beta1, beta2] = defaults.betas();
  if (defaults.lr() < 0 || defaults.eps() < 0 || defaults.weight_decay() < 0 ||
      defaults.max_weight_norm() < 0 || defaults.max_trust_ratio() < 0 || beta1 < 0 || beta1 >= 1 ||
      beta2 < 0 || beta2 >= 1) {
    throw ConfigError(
        "Lamb: lr, eps, weight_decay and the clamps must be >= 0 and betas in [0, 1)");
  }
}

namespace {

// The optimiser state is keyed by the parameter's TensorImpl: its address on LibTorch 2.x, the
// address printed as text on 1.13 (as LibTorch's own optimisers do there).
template <typename Map>
typename Map::key_type state_key(const Map&, at::TensorImpl* impl) {
  if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
    std::ostringstream text;
    text << impl;
    return text.str();
  } else {
    return impl;
  }
}

}  // namespace

at::Tensor Lamb::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const LambOptions&>(group.options());
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const at::Tensor grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "Lamb does not support sparse gradients");
      const auto key = state_key(state_, p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto fresh = std::make_unique<LambParamState>();
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<LambParamState&>(*it->second);
      s.step(s.step() + 1);
      at::Tensor& m = s.exp_avg();
      at::Tensor& v = s.exp_avg_sq();
      m.mul_(beta1).add_(grad, 1 - beta1);
      v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const double bias1 = 1 - std::pow(beta1, static_cast<double>(s.step()));
      const double bias2 = 1 - std::pow(beta2, static_cast<double>(s.step()));
      at::Tensor update = (m / bias1) / ((v / bias2).sqrt() + o.eps());
      if (o.weight_decay() != 0) update.add_(p, o.weight_decay());
      // Norms stay on the device: no host synchronisation per parameter.
      at::Tensor weight_norm = p.norm();
      if (o.max_weight_norm() > 0) weight_norm = weight_norm.clamp_max(o.max_weight_norm());
      const at::Tensor update_norm = update.norm();
      at::Tensor trust = at::where(weight_norm.gt(0).logical_and(update_norm.gt(0)),
                                   weight_norm / update_norm, at::ones_like(weight_norm));
      if (o.max_trust_ratio() > 0) trust = trust.clamp_max(o.max_trust_ratio());
      p.sub_(update.mul_(trust), o.lr());
    }
  }
  return loss;
}

void Lamb::save(torch::serialize::OutputArchive& archive) const {
  serialize(*this, archive);
}

void Lamb::load(torch::serialize::InputArchive& archive) {
  serialize(*this, archive);
}

}  // namespace iris
