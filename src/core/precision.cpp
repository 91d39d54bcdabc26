#include "core/precision.h"

#include <ATen/autocast_mode.h>
#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/torch_compat.h"

namespace iris {
namespace {

void check_autocast_device(c10::DeviceType device_type) {
  if (device_type != c10::kCPU && device_type != c10::kCUDA) {
    throw NotAvailableError(
        fmt::format("mixed precision: autocast on {} devices is not supported "
                    "(cpu and cuda are)",
                    c10::DeviceTypeName(device_type, /*lower_case=*/true)));
  }
}

// The two generations of LibTorch's autocast state API (per device type from 2.4 on).
#if IRIS_TORCH_AT_LEAST(2, 4)
bool get_enabled(c10::DeviceType t) {
  return at::autocast::is_autocast_enabled(t);
}
void set_enabled(c10::DeviceType t, bool on) {
  at::autocast::set_autocast_enabled(t, on);
}
c10::ScalarType get_dtype(c10::DeviceType t) {
  return at::autocast::get_autocast_dtype(t);
}
void set_dtype(c10::DeviceType t, c10::ScalarType d) {
  at::autocast::set_autocast_dtype(t, d);
}
#else
bool get_enabled(c10::DeviceType t) {
  return t == c10::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
void set_enabled(c10::DeviceType t, bool on) {
  if (t == c10::kCPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
}
c10::ScalarType get_dtype(c10::DeviceType t) {
  return t == c10::kCPU ? at::autocast::get_autocast_cpu_dtype()
                        : at::autocast::get_autocast_gpu_dtype();
}
void set_dtype(c10::DeviceType t, c10::ScalarType d) {
  if (t == c10::kCPU) {
    at::autocast::set_autocast_cpu_dtype(d);
  } else {
    at::autocast::set_autocast_gpu_dtype(d);
  }
}
#endif

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "bf16") return Precision::kBFloat16;
  if (name == "fp16") return Precision::kFloat16;
  throw ConfigError(fmt::format("precision '{}': expected fp32, bf16 or fp16", name));
}

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::kBFloat16:
      return "bf16";
    case Precision::kFloat16:
      return "fp16";
    case Precision::kFloat32:
      break;
  }
  return "fp32";
}

c10::ScalarType autocast_dtype(Precision precision) {
  switch (precision) {
    case Precision::kBFloat16:
      return c10::ScalarType::BFloat16;
    case Precision::kFloat16:
      return c10::ScalarType::Half;
    case Precision::kFloat32:
      break;
  }
  return c10::ScalarType::Float;
}

bool autocast_enabled(c10::DeviceType device_type) {
  check_autocast_device(device_type);
  return get_enabled(device_type);
}

c10::ScalarType autocast_dtype_now(c10::DeviceType device_type) {
  return autocast_enabled(device_type) ? get_dtype(device_type) : c10::ScalarType::Float;
}

AutocastScope::AutocastScope(c10::DeviceType device_type, Precision precision)
    : device_type_(device_type) {
  if (precision == Precision::kFloat32) return;
  check_autocast_device(device_type);
#if !IRIS_TORCH_AT_LEAST(2, 0)
  // 1.13's CPU autocast lacks casts for ops the models use (instance norm, conv3d, attention),
  // which then fail with dtype mismatches deep inside a forward.
  if (device_type == c10::kCPU) {
    throw NotAvailableError(
        fmt::format("precision {} on CPU needs LibTorch 2.x (this build: {}.{}); use fp32",
                    to_string(precision), TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR));
  }
#endif
  previous_enabled_ = get_enabled(device_type);
  previous_dtype_ = get_dtype(device_type);
  set_enabled(device_type, true);
  set_dtype(device_type, autocast_dtype(precision));
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // Cached casts of the weights live until the outermost scope ends, as in torch.autocast.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_enabled(device_type_, previous_enabled_);
  set_dtype(device_type_, previous_dtype_);
}

LossScaler::LossScaler(LossScalerOptions options) : options_(options), scale_(options.init_scale) {
  if (!(options_.init_scale > 0) || !(options_.growth_factor > 1) ||
      !(options_.backoff_factor > 0 && options_.backoff_factor < 1) ||
      options_.growth_interval < 1) {
    throw ConfigError(fmt::format(
        "loss scaler: expected init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and "
        "growth_interval >= 1, got {}, {}, {}, {}",
        options_.init_scale, options_.growth_factor, options_.backoff_factor,
        options_.growth_interval));
  }
}

at::Tensor LossScaler::scale(const at::Tensor& loss) const {
  return loss * scale_;
}

bool LossScaler::unscale_and_check(const std::vector<at::Tensor>& parameters) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return true;
  at::_foreach_mul_(grads, 1.0 / scale_);
  std::vector<at::Tensor> finite;
  finite.reserve(grads.size());
  for (const auto& g : grads) finite.push_back(at::isfinite(g).all());
  return at::stack(finite).all().item<bool>();
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
}

std::map<std::string, at::Tensor> LossScaler::state_dict() const {
  return {{"scale", at::scalar_tensor(scale_, at::kDouble)},
          {"growth_tracker", at::scalar_tensor(growth_tracker_, at::kLong)}};
}

void LossScaler::load_state_dict(const std::map<std::string, at::Tensor>& state) {
  for (const char* key : {"scale", "growth_tracker"}) {
    const auto it = state.find(key);
    if (it == state.end() || !it->second.defined() || it->second.numel() != 1) {
      throw InputError(fmt::format("loss scaler state: '{}' is missing or not a scalar", key));
    }
  }
  const double scale = state.at("scale").item<double>();
  if (!(scale > 0) || !std::isfinite(scale)) {
    throw InputError(fmt::format("loss scaler state: scale {} is not a positive number", scale));
  }
  scale_ = scale;
  growth_tracker_ = state.at("growth_tracker").item<int64_t>();
}

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return at::zeros({});
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.norm(2));
  const at::Tensor total = norms.size() == 1 ? norms[0] : at::stack(norms).norm(2);
  const at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coef);
  return total;
}

}  // namespace iris
