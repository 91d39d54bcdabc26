#include "eval/metrics.h"

#include <cmath>
#include <limits>

#include "core/distance_transform.h"

namespace iris::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// [B, C, *S] -> bool [B, C', *S] with the background channel dropped when asked.
std::pair<at::Tensor, at::Tensor> prepare(const at::Tensor& pred, const at::Tensor& truth,
                                          const MetricOptions& o) {
  TORCH_CHECK(pred.sizes() == truth.sizes(), "metrics: prediction ", pred.sizes(),
              " and ground truth ", truth.sizes(), " differ");
  TORCH_CHECK(pred.dim() >= 3, "metrics expect [B, C, *spatial], got ", pred.sizes());
  auto p = pred.to(torch::kBool), g = truth.to(torch::kBool);
  if (!o.include_background) {
    TORCH_CHECK(pred.size(1) > 1, "include_background=false needs more than one channel");
    p = p.slice(1, 1);
    g = g.slice(1, 1);
  }
  return {p, g};
}

// Applies the empty-ground-truth rule to per-case overlap scores.
at::Tensor with_empty_rule(const at::Tensor& score, const at::Tensor& g_sum, const at::Tensor& p_sum,
                           const MetricOptions& o) {
  const auto empty = g_sum == 0;
  const auto fallback = o.ignore_empty ? torch::full_like(score, kNaN)
                                       : (p_sum == 0).to(torch::kFloat64);
  return torch::where(empty, fallback, score);
}

std::vector<double> spacing_for(int64_t dims, const std::vector<double>& spacing) {
  if (spacing.empty()) return std::vector<double>(static_cast<size_t>(dims), 1.0);
  TORCH_CHECK(static_cast<int64_t>(spacing.size()) == dims, "metrics: spacing has ",
              spacing.size(), " values for ", dims, " spatial dims");
  return spacing;
}

double percentile(const at::Tensor& values, double q) {
  const auto sorted = std::get<0>(values.sort());
  const int64_t n = sorted.numel();
  const double pos = q / 100.0 * static_cast<double>(n - 1);
  const auto lo = static_cast<int64_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, n - 1);
  const double a = sorted[lo].item<double>(), b = sorted[hi].item<double>();
  return a + (b - a) * (pos - static_cast<double>(lo));
}

}  // namespace

at::Tensor dice(const at::Tensor& pred, const at::Tensor& truth, const MetricOptions& o) {
  auto [p, g] = prepare(pred, truth, o);
  const auto inter = (p & g).flatten(2).sum(-1).to(torch::kFloat64);
  const auto ps = p.flatten(2).sum(-1).to(torch::kFloat64), gs = g.flatten(2).sum(-1).to(torch::kFloat64);
  const auto score = 2 * inter / (ps + gs).clamp_min(1);
  return with_empty_rule(score, gs, ps, o);
}

at::Tensor iou(const at::Tensor& pred, const at::Tensor& truth, const MetricOptions& o) {
  auto [p, g] = prepare(pred, truth, o);
  const auto inter = (p & g).flatten(2).sum(-1).to(torch::kFloat64);
  const auto uni = (p | g).flatten(2).sum(-1).to(torch::kFloat64);
  const auto ps = p.flatten(2).sum(-1).to(torch::kFloat64), gs = g.flatten(2).sum(-1).to(torch::kFloat64);
  return with_empty_rule(inter / uni.clamp_min(1), gs, ps, o);
}

at::Tensor mean_absolute_error(const at::Tensor& pred, const at::Tensor& truth, const MetricOptions& o) {
  TORCH_CHECK(pred.sizes() == truth.sizes(), "MAE: prediction ", pred.sizes(), " and ground truth ",
              truth.sizes(), " differ");
  auto p = pred.to(torch::kFloat64), g = truth.to(torch::kFloat64);
  TORCH_CHECK(p.min().item<double>() >= 0 && p.max().item<double>() <= 1 &&
                  g.min().item<double>() >= 0 && g.max().item<double>() <= 1,
              "MAE expects values in [0, 1] (probabilities or binary masks), not 0..255");
  if (!o.include_background) {
    p = p.slice(1, 1);
    g = g.slice(1, 1);
  }
  return (p - g).abs().flatten(2).mean(-1);
}

at::Tensor boundary(const at::Tensor& mask) {
  const auto m = mask.to(torch::kBool);
  auto interior = m.clone();
  for (int64_t d = 0; d < m.dim(); ++d) {
    const int64_t n = m.size(d);
    if (n < 2) {
      interior.zero_();
      break;
    }
    // A pixel is interior only if both neighbours along every axis are foreground.
    auto fwd = torch::zeros_like(m);
    fwd.narrow(d, 0, n - 1).copy_(m.narrow(d, 1, n - 1));
    auto bwd = torch::zeros_like(m);
    bwd.narrow(d, 1, n - 1).copy_(m.narrow(d, 0, n - 1));
    interior = interior & fwd & bwd;
  }
  return m & ~interior;
}

at::Tensor surface_distances(const at::Tensor& from, const at::Tensor& to,
                             const std::vector<double>& spacing_in) {
  const auto spacing = spacing_for(from.dim(), spacing_in);
  // The exact distance transform of `to`'s boundary, read at `from`'s boundary pixels: linear in
  // the image size whatever the size of the two surfaces (volumes of users' CT included).
  const at::Tensor squared = squared_distance_to(boundary(to), spacing);
  return squared.masked_select(boundary(from)).sqrt();
}

at::Tensor surface_dice(const at::Tensor& pred, const at::Tensor& truth, double tolerance,
                        const std::vector<double>& spacing, const MetricOptions& o) {
  auto [p, g] = prepare(pred, truth, o);
  auto out = torch::empty({p.size(0), p.size(1)}, torch::kFloat64);
  for (int64_t b = 0; b < p.size(0); ++b) {
    for (int64_t c = 0; c < p.size(1); ++c) {
      const auto pb = p[b][c], gb = g[b][c];
      const bool pe = !pb.any().item<bool>(), ge = !gb.any().item<bool>();
      double v;
      if (pe && ge) {
        v = kNaN;
      } else if (pe || ge) {
        v = 0.0;
      } else {
        const auto d_pg = surface_distances(pb, gb, spacing);
        const auto d_gp = surface_distances(gb, pb, spacing);
        const double ok = (d_pg <= tolerance).sum().item<double>() + (d_gp <= tolerance).sum().item<double>();
        v = ok / static_cast<double>(d_pg.numel() + d_gp.numel());
      }
      out[b][c] = v;
    }
  }
  return out;
}

at::Tensor hausdorff_distance(const at::Tensor& pred, const at::Tensor& truth, double q,
                              const std::vector<double>& spacing, const MetricOptions& o) {
  auto [p, g] = prepare(pred, truth, o);
  auto out = torch::empty({p.size(0), p.size(1)}, torch::kFloat64);
  for (int64_t b = 0; b < p.size(0); ++b) {
    for (int64_t c = 0; c < p.size(1); ++c) {
      const auto pb = p[b][c], gb = g[b][c];
      if (!pb.any().item<bool>() || !gb.any().item<bool>()) {
        out[b][c] = kNaN;
        continue;
      }
      out[b][c] = std::max(percentile(surface_distances(pb, gb, spacing), q),
                           percentile(surface_distances(gb, pb, spacing), q));
    }
  }
  return out;
}

Aggregate aggregate(const std::vector<FrameScore>& scores) {
  Aggregate a;
  std::map<std::string, std::map<std::string, std::pair<double, int64_t>>> sums;
  for (const auto& s : scores) {
    if (std::isnan(s.value)) {
      ++a.skipped;
      continue;
    }
    auto& acc = sums[s.cls][s.video];
    acc.first += s.value;
    ++acc.second;
    ++a.scored;
  }
  double macro = 0.0;
  for (const auto& [cls, videos] : sums) {
    double class_sum = 0.0;
    for (const auto& [video, acc] : videos) {
      const double m = acc.first / static_cast<double>(acc.second);
      a.per_video_class[cls][video] = m;
      class_sum += m;
    }
    a.per_class[cls] = class_sum / static_cast<double>(videos.size());
    macro += a.per_class[cls];
  }
  a.macro = a.per_class.empty() ? kNaN : macro / static_cast<double>(a.per_class.size());
  return a;
}

}  // namespace iris::eval
