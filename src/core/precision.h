// Mixed precision: the `run.precision` / `--precision` setting, an RAII autocast scope, and the
// dynamic loss scaler fp16 training needs (bf16 has float32's exponent range and needs none).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace iris {

enum class Precision { kFloat32, kBFloat16, kFloat16 };

// "fp32", "bf16" or "fp16"; ConfigError naming the value and the accepted ones otherwise.
Precision parse_precision(const std::string& name);
std::string to_string(Precision precision);
// The dtype autocast computes in: kFloat for kFloat32.
c10::ScalarType autocast_dtype(Precision precision);

// Autocast for one device type while alive: eligible ops (matmul, conv, linear, attention) run in
// the precision's dtype, the rest keep their inputs' dtype. Restores the previous enabled state and
// dtype on exit and clears the cast cache when the outermost scope ends, as torch.autocast does.
// Scopes nest. kFloat32 is a no-op (it does not switch off an enclosing scope). Backward passes
// belong outside the scope. Throws NotAvailableError for device types without autocast and for
// fp16 on CPU with LibTorch 1.13 (bf16 only there).
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device_type, Precision precision);
  AutocastScope(const c10::Device& device, Precision precision)
      : AutocastScope(device.type(), precision) {}
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

  bool active() const { return active_; }

 private:
  c10::DeviceType device_type_;
  bool active_ = false;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Float;
};

// Is autocast on for this device type now (any scope, ours or LibTorch's)?
bool autocast_enabled(c10::DeviceType device_type);
// The type autocast computes in on this device type now (Float when autocast is off).
c10::ScalarType autocast_dtype_now(c10::DeviceType device_type);

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // consecutive finite steps before the scale grows
};

// Dynamic loss scaling for fp16 training (the GradScaler recipe): the loss is multiplied by the
// scale before backward so small gradients survive fp16; gradients are divided by it before
// clipping and the optimiser step. A step whose gradients hold inf/NaN is skipped and the scale
// backs off; after growth_interval finite steps in a row it grows.
//
//   loss_scaler.scale(loss).backward();
//   const bool finite = loss_scaler.unscale_and_check(params);
//   if (finite) { clip; optimizer.step(); }
//   loss_scaler.update(finite);
class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions options = {});

  // loss · scale (no host synchronisation).
  at::Tensor scale(const at::Tensor& loss) const;
  // Divides the parameters' gradients by the scale in place and tells whether all are finite.
  // This is the one host synchronisation an fp16 step needs: skipping the optimiser step is a
  // host-side decision, so the finiteness flag has to be read back.
  bool unscale_and_check(const std::vector<at::Tensor>& parameters);
  // Backs off after a non-finite step, grows after growth_interval finite ones.
  void update(bool finite);

  double scale_value() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  const LossScalerOptions& options() const { return options_; }

  // {"scale": float64 scalar, "growth_tracker": int64 scalar}, for checkpoints.
  std::map<std::string, at::Tensor> state_dict() const;
  // Throws InputError when a key is missing or not a scalar.
  void load_state_dict(const std::map<std::string, at::Tensor>& state);

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
};

// Gradient-norm clipping like torch::nn::utils::clip_grad_norm_ (same arithmetic) without reading
// the norm back: returns it as a device tensor, so a training step need not wait for the device.
at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm);

}  // namespace iris
