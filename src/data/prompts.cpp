#include "data/prompts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "core/error.h"

namespace iris {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Felzenszwalb-Huttenlocher lower envelope of parabolas over the finite entries of f (stride
// `step`); infinite entries are skipped so that no INF - INF arithmetic happens.
void envelope_1d(double* f, int64_t n, int64_t step, std::vector<int64_t>& v,
                 std::vector<double>& z, std::vector<double>& out) {
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    const double fq = f[q * step];
    if (fq == kInf) continue;
    double s = -kInf;
    while (k >= 0) {
      const int64_t p = v[k];
      s = ((fq + double(q * q)) - (f[p * step] + double(p * p))) / double(2 * q - 2 * p);
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = k == 0 ? -kInf : s;
  }
  if (k < 0) return;  // nothing finite: the line stays infinite
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (j < k && z[j + 1] < double(q)) ++j;
    const int64_t p = v[j];
    out[q] = double((q - p) * (q - p)) + f[p * step];
  }
  for (int64_t q = 0; q < n; ++q) f[q * step] = out[q];
}

// Squared Euclidean distance from every pixel to the nearest pixel with target != 0; INF when
// there is none. Exact: separable row then column passes.
std::vector<double> squared_distance_to(const std::vector<uint8_t>& target, int64_t h, int64_t w) {
  std::vector<double> d(h * w);
  for (int64_t i = 0; i < h * w; ++i) d[i] = target[i] ? 0.0 : kInf;
  const int64_t n = std::max(h, w);
  std::vector<int64_t> v(n);
  std::vector<double> z(n + 1), out(n);
  for (int64_t y = 0; y < h; ++y) envelope_1d(d.data() + y * w, w, 1, v, z, out);
  for (int64_t x = 0; x < w; ++x) envelope_1d(d.data() + x, h, w, v, z, out);
  return d;
}

std::vector<uint8_t> mask_bytes(const at::Tensor& mask, const char* what) {
  TORCH_CHECK(mask.dim() == 2, what, ": expected a [H, W] mask, got ", mask.sizes());
  const at::Tensor m = (mask != 0).to(at::kByte).contiguous().cpu();
  const auto* p = m.data_ptr<uint8_t>();
  return std::vector<uint8_t>(p, p + m.numel());
}

// Squared distance to the background with a one-pixel background frame around the image.
std::vector<double> squared_distance_to_background(const std::vector<uint8_t>& inside, int64_t h,
                                                   int64_t w) {
  const int64_t ph = h + 2, pw = w + 2;
  std::vector<uint8_t> outside(ph * pw, 1);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) outside[(y + 1) * pw + x + 1] = inside[y * w + x] ? 0 : 1;
  }
  const std::vector<double> padded = squared_distance_to(outside, ph, pw);
  std::vector<double> d(h * w);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) d[y * w + x] = padded[(y + 1) * pw + x + 1];
  }
  return d;
}

// `count` distinct picks from [0, n) (Floyd's algorithm), in draw order.
std::vector<int64_t> pick_distinct(std::mt19937_64& rng, int64_t n, int64_t count) {
  count = std::min(count, n);
  std::vector<int64_t> picks;
  std::unordered_set<int64_t> seen;
  for (int64_t j = n - count; j < n; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    const int64_t chosen = seen.count(t) ? j : t;
    seen.insert(chosen);
    picks.push_back(chosen);
  }
  return picks;
}

std::optional<std::array<int64_t, 4>> box_of(const std::vector<uint8_t>& m, int64_t h, int64_t w) {
  int64_t x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      if (!m[y * w + x]) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (x1 < 0) return std::nullopt;
  return std::array<int64_t, 4>{x0, y0, x1, y1};
}

Prompt point_prompt(const std::vector<uint8_t>& m, int64_t h, int64_t w,
                    const std::array<int64_t, 4>& box, const PromptOptions& o,
                    std::mt19937_64& rng) {
  const std::vector<double> d = squared_distance_to_background(m, h, w);
  int64_t best = -1;
  std::vector<int64_t> inside;
  for (int64_t i = 0; i < h * w; ++i) {
    if (!m[i]) continue;
    if (best < 0 || d[i] > d[best]) best = i;  // strict: the first maximum wins
    inside.push_back(i);
  }
  std::vector<std::pair<int64_t, int32_t>> points{{best, 1}};
  inside.erase(std::find(inside.begin(), inside.end(), best));
  for (int64_t k : pick_distinct(rng, inside.size(), o.positive_points)) {
    points.push_back({inside[k], 1});
  }
  if (o.negative_points > 0) {
    const int64_t side = std::max(box[2] - box[0], box[3] - box[1]) + 1;
    const int64_t margin = std::max<int64_t>(
        o.negative_margin_min, static_cast<int64_t>(std::ceil(o.negative_margin * side)));
    const int64_t x0 = std::max<int64_t>(0, box[0] - margin), x1 = std::min(w - 1, box[2] + margin);
    const int64_t y0 = std::max<int64_t>(0, box[1] - margin), y1 = std::min(h - 1, box[3] + margin);
    std::vector<int64_t> outside;
    for (int64_t y = y0; y <= y1; ++y) {
      for (int64_t x = x0; x <= x1; ++x) {
        if (!m[y * w + x]) outside.push_back(y * w + x);
      }
    }
    if (outside.empty()) {
      for (int64_t i = 0; i < h * w; ++i) {
        if (!m[i]) outside.push_back(i);
      }
    }
    for (int64_t k : pick_distinct(rng, outside.size(), o.negative_points)) {
      points.push_back({outside[k], 0});
    }
  }
  Prompt p;
  p.type = PromptType::kPoint;
  const int64_t n = points.size();
  p.point_coords = at::empty({n, 2}, at::kFloat);
  p.point_labels = at::empty({n}, at::kInt);
  auto* c = p.point_coords.data_ptr<float>();
  auto* l = p.point_labels.data_ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    c[2 * i] = static_cast<float>(points[i].first % w);
    c[2 * i + 1] = static_cast<float>(points[i].first / w);
    l[i] = points[i].second;
  }
  return p;
}

Prompt box_prompt(const std::array<int64_t, 4>& box, int64_t h, int64_t w, const PromptOptions& o,
                  std::mt19937_64& rng) {
  std::array<double, 4> b{double(box[0]), double(box[1]), double(box[2]), double(box[3])};
  if (o.box_jitter > 0) {
    const double bw = box[2] - box[0] + 1, bh = box[3] - box[1] + 1;
    std::uniform_real_distribution<double> u(-o.box_jitter, o.box_jitter);
    for (int i = 0; i < 4; ++i) {
      const bool is_x = i % 2 == 0;
      b[i] = std::clamp(b[i] + u(rng) * (is_x ? bw : bh), 0.0, double(is_x ? w - 1 : h - 1));
    }
    if (b[0] > b[2]) std::swap(b[0], b[2]);
    if (b[1] > b[3]) std::swap(b[1], b[3]);
  }
  Prompt p;
  p.type = PromptType::kBox;
  p.box = at::tensor({float(b[0]), float(b[1]), float(b[2]), float(b[3])}, at::kFloat);
  return p;
}

Prompt mask_prompt(std::vector<uint8_t> m, int64_t h, int64_t w, const PromptOptions& o,
                   std::mt19937_64& rng) {
  if (o.mask_perturb_radius > 0) {
    const int64_t r =
        std::uniform_int_distribution<int64_t>(-o.mask_perturb_radius, o.mask_perturb_radius)(rng);
    std::vector<uint8_t> changed(h * w, 0);
    if (r > 0) {  // dilation: pixels within r of the mask
      const std::vector<double> d = squared_distance_to(m, h, w);
      for (int64_t i = 0; i < h * w; ++i) changed[i] = d[i] <= double(r * r);
    } else if (r < 0) {  // erosion: pixels farther than |r| from the background (not the border)
      std::vector<uint8_t> outside(h * w);
      for (int64_t i = 0; i < h * w; ++i) outside[i] = !m[i];
      const std::vector<double> d = squared_distance_to(outside, h, w);
      for (int64_t i = 0; i < h * w; ++i) changed[i] = m[i] && d[i] > double(r * r);
    }
    if (r != 0 && std::any_of(changed.begin(), changed.end(), [](uint8_t v) { return v != 0; })) {
      m = std::move(changed);
    }
  }
  Prompt p;
  p.type = PromptType::kMask;
  p.mask = at::from_blob(m.data(), {h, w}, at::kByte).clone();
  const int64_t s = o.mask_input_size;
  TORCH_CHECK(s > 0, "prompt: mask_input_size must be positive, got ", s);
  p.mask_input = at::_upsample_bilinear2d_aa(p.mask.to(at::kFloat).view({1, 1, h, w}), {s, s},
                                             /*align_corners=*/false)
                     .clamp(0.0, 1.0)
                     .view({1, s, s});
  return p;
}

}  // namespace

std::string prompt_type_name(PromptType type) {
  switch (type) {
    case PromptType::kPoint:
      return "point";
    case PromptType::kBox:
      return "box";
    case PromptType::kMask:
      return "mask";
  }
  return "?";
}

PromptType parse_prompt_type(const std::string& name) {
  for (PromptType t : {PromptType::kPoint, PromptType::kBox, PromptType::kMask}) {
    if (prompt_type_name(t) == name) return t;
  }
  throw InputError(fmt::format("unknown prompt type '{}' (expected point, box or mask)", name));
}

at::Tensor distance_to_background(const at::Tensor& mask) {
  const std::vector<uint8_t> m = mask_bytes(mask, "distance_to_background");
  const int64_t h = mask.size(0), w = mask.size(1);
  std::vector<double> d = squared_distance_to_background(m, h, w);
  at::Tensor out = at::empty({h, w}, at::kFloat);
  auto* o = out.data_ptr<float>();
  for (int64_t i = 0; i < h * w; ++i) o[i] = m[i] ? static_cast<float>(std::sqrt(d[i])) : 0.0f;
  return out;
}

std::optional<std::array<int64_t, 2>> farthest_interior_point(const at::Tensor& mask) {
  const std::vector<uint8_t> m = mask_bytes(mask, "farthest_interior_point");
  const int64_t h = mask.size(0), w = mask.size(1);
  if (!box_of(m, h, w)) return std::nullopt;
  std::mt19937_64 unused(0);
  const Prompt p = point_prompt(m, h, w, *box_of(m, h, w), PromptOptions{}, unused);
  const auto* c = p.point_coords.data_ptr<float>();
  return std::array<int64_t, 2>{static_cast<int64_t>(c[0]), static_cast<int64_t>(c[1])};
}

std::optional<std::array<int64_t, 4>> tight_box(const at::Tensor& mask) {
  return box_of(mask_bytes(mask, "tight_box"), mask.size(0), mask.size(1));
}

std::optional<Prompt> simulate_prompt(const at::Tensor& mask, PromptType type,
                                      const PromptOptions& options, std::mt19937_64& rng) {
  std::vector<uint8_t> m = mask_bytes(mask, "simulate_prompt");
  const int64_t h = mask.size(0), w = mask.size(1);
  const auto box = box_of(m, h, w);
  if (!box) return std::nullopt;
  switch (type) {
    case PromptType::kPoint:
      return point_prompt(m, h, w, *box, options, rng);
    case PromptType::kBox:
      return box_prompt(*box, h, w, options, rng);
    case PromptType::kMask:
      return mask_prompt(std::move(m), h, w, options, rng);
  }
  return std::nullopt;
}

std::pair<at::Tensor, at::Tensor> stack_point_prompts(const std::vector<Prompt>& prompts) {
  int64_t n = 0;
  for (const auto& p : prompts) {
    TORCH_CHECK(p.point_coords.defined(), "stack_point_prompts: a prompt has no points");
    n = std::max(n, p.point_coords.size(0));
  }
  const int64_t b = prompts.size();
  at::Tensor coords = at::zeros({b, n, 2}, at::kFloat);
  at::Tensor labels = at::full({b, n}, -1, at::kInt);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t k = prompts[i].point_coords.size(0);
    coords[i].narrow(0, 0, k).copy_(prompts[i].point_coords);
    labels[i].narrow(0, 0, k).copy_(prompts[i].point_labels);
  }
  return {coords, labels};
}

}  // namespace iris
