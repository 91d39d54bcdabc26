// Lamb against an independent element-by-element implementation of the paper's update, its
// checkpoint round trip, and its selection from the trainer's config.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "core/build_info.h"
#include "core/config.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "train/lamb.h"
#if IRIS_HAVE_NIFTI
#include "train/iris_trainer.h"
#endif

namespace iris {
namespace {

// One parameter of the reference: weights and moments as plain doubles.
struct RefParam {
  std::vector<double> w, m, v;
};

struct RefOptions {
  double lr, beta1, beta2, eps, weight_decay, max_weight_norm, max_trust_ratio;
};

// The paper's Algorithm 2 for one tensor, written out loop by loop.
void reference_step(RefParam& p, const std::vector<double>& g, int64_t t, const RefOptions& o) {
  const std::size_t n = p.w.size();
  std::vector<double> update(n);
  double w_sq = 0, u_sq = 0;
  for (std::size_t i = 0; i < n; ++i) {
    p.m[i] = o.beta1 * p.m[i] + (1 - o.beta1) * g[i];
    p.v[i] = o.beta2 * p.v[i] + (1 - o.beta2) * g[i] * g[i];
    const double m_hat = p.m[i] / (1 - std::pow(o.beta1, t));
    const double v_hat = p.v[i] / (1 - std::pow(o.beta2, t));
    update[i] = m_hat / (std::sqrt(v_hat) + o.eps) + o.weight_decay * p.w[i];
    w_sq += p.w[i] * p.w[i];
    u_sq += update[i] * update[i];
  }
  double w_norm = std::sqrt(w_sq);
  if (o.max_weight_norm > 0) w_norm = std::min(w_norm, o.max_weight_norm);
  const double u_norm = std::sqrt(u_sq);
  double trust = (w_norm > 0 && u_norm > 0) ? w_norm / u_norm : 1.0;
  if (o.max_trust_ratio > 0) trust = std::min(trust, o.max_trust_ratio);
  for (std::size_t i = 0; i < n; ++i) p.w[i] -= o.lr * trust * update[i];
}

// Deterministic gradient of parameter `k` at step `t`: mixed signs and scales.
std::vector<double> gradient(int64_t k, int64_t t, std::size_t n) {
  std::vector<double> g(n);
  for (std::size_t i = 0; i < n; ++i) {
    g[i] = std::sin(0.7 * static_cast<double>(i) + 1.3 * static_cast<double>(t) + k) *
           std::pow(10.0, static_cast<double>(k) - 1.0);
  }
  return g;
}

at::Tensor as_tensor(const std::vector<double>& x, at::IntArrayRef shape) {
  return torch::tensor(x, torch::kDouble).view(shape).clone();
}

std::vector<double> as_vector(const at::Tensor& t) {
  const at::Tensor c = t.detach().contiguous().to(torch::kDouble);
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// A weight matrix, a bias and a zero-initialised tensor (trust ratio 1 on its first step).
std::vector<std::pair<std::vector<double>, std::vector<int64_t>>> initial_params() {
  std::vector<double> a(12), b(5, 0.0), c(7, 0.0);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::cos(1.1 * static_cast<double>(i)) * 0.5;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 0.01 * static_cast<double>(i);
  return {{a, {3, 4}}, {b, {5}}, {c, {7}}};
}

void run_against_reference(const LambOptions& options, const RefOptions& ref_options) {
  const auto init = initial_params();
  std::vector<at::Tensor> params;
  std::vector<RefParam> ref;
  for (const auto& [values, shape] : init) {
    params.push_back(as_tensor(values, shape).requires_grad_(true));
    ref.push_back(
        {values, std::vector<double>(values.size(), 0.0), std::vector<double>(values.size(), 0.0)});
  }
  Lamb lamb(params, options);
  for (int64_t t = 1; t <= 6; ++t) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      const auto g = gradient(static_cast<int64_t>(k), t, ref[k].w.size());
      params[k].mutable_grad() = as_tensor(g, params[k].sizes());
      reference_step(ref[k], g, t, ref_options);
    }
    lamb.step();
    for (std::size_t k = 0; k < params.size(); ++k) {
      const auto got = as_vector(params[k]);
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_LE(std::abs(got[i] - ref[k].w[i]), 1e-6 * std::max(1e-3, std::abs(ref[k].w[i])))
            << "step " << t << ", parameter " << k << ", element " << i;
      }
    }
  }
}

TEST(Lamb, MatchesTheElementwiseReference) {
  run_against_reference(LambOptions(0.01).weight_decay(0.01).eps(1e-6),
                        {0.01, 0.9, 0.999, 1e-6, 0.01, 0, 0});
}

TEST(Lamb, MatchesTheReferenceWithWeightNormAndTrustRatioClamps) {
  // A weight-norm clamp below ||w|| of the matrix and a trust cap that binds on the bias.
  run_against_reference(LambOptions(0.05)
                            .betas(std::make_tuple(0.8, 0.99))
                            .weight_decay(0.1)
                            .eps(1e-8)
                            .max_weight_norm(0.5)
                            .max_trust_ratio(0.02),
                        {0.05, 0.8, 0.99, 1e-8, 0.1, 0.5, 0.02});
}

TEST(Lamb, SavedAndLoadedStateContinuesExactly) {
  const auto init = initial_params();
  std::vector<at::Tensor> a, b;
  for (const auto& [values, shape] : init) {
    a.push_back(as_tensor(values, shape).to(torch::kFloat).requires_grad_(true));
  }
  const LambOptions options = LambOptions(0.02).weight_decay(0.01).max_trust_ratio(10);
  Lamb first(a, options);
  auto step = [](Lamb& lamb, std::vector<at::Tensor>& params, int64_t t) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      params[k].mutable_grad() =
          as_tensor(gradient(static_cast<int64_t>(k), t, params[k].numel()), params[k].sizes())
              .to(torch::kFloat);
    }
    lamb.step();
  };
  for (int64_t t = 1; t <= 3; ++t) step(first, a, t);
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    first.save(archive);
    archive.save_to(bytes);
  }
  for (const auto& p : a) b.push_back(p.detach().clone().requires_grad_(true));
#if IRIS_TORCH_AT_LEAST(2, 0)
  Lamb second(b, LambOptions(123.0));  // options come from the archive
#else
  Lamb second(b, options);  // LibTorch 1.13's optimiser archives restore the state, not the options
#endif
  {
    std::istringstream in(bytes.str());
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    second.load(archive);
  }
  EXPECT_DOUBLE_EQ(second.param_groups()[0].options().get_lr(), 0.02);
  EXPECT_FALSE(second.state().empty());
  for (int64_t t = 4; t <= 6; ++t) {
    step(first, a, t);
    step(second, b, t);
  }
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(torch::equal(a[k], b[k])) << "parameter " << k;
  }
}

TEST(Lamb, RejectsInvalidOptions) {
  std::vector<at::Tensor> params{torch::zeros({2}, torch::requires_grad())};
  EXPECT_THROW(Lamb(params, LambOptions(-1.0)), ConfigError);
  EXPECT_THROW(Lamb(params, LambOptions(0.1).betas(std::make_tuple(1.0, 0.9))), ConfigError);
  EXPECT_THROW(Lamb(params, LambOptions(0.1).max_trust_ratio(-1)), ConfigError);
}

#if IRIS_HAVE_NIFTI
TEST(Lamb, ChosenByOptimNameAndAnUnknownNameIsAConfigError) {
  EXPECT_EQ(load_config<IrisTrainConfig>({"", {"optim.name=lamb"}}).optim.name, "lamb");
  try {
    load_config<IrisTrainConfig>({"", {"optim.name=sgd"}});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("sgd"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lamb"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace iris
