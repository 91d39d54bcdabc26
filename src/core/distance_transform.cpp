#include "core/distance_transform.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace iris {
namespace {

constexpr double kFar = std::numeric_limits<double>::max() / 4;

// One pass along a line of n samples `step` apart in memory and `spacing` apart in space; f holds
// squared distances (kFar: no sample yet).
void edt_line(double* f, int64_t n, int64_t step, double spacing, std::vector<double>& in,
              std::vector<int64_t>& v, std::vector<double>& z) {
  const double w = spacing * spacing;
  for (int64_t q = 0; q < n; ++q) in[q] = f[q * step];
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (in[q] >= kFar) continue;
    double s = 0;
    while (k >= 0) {
      const int64_t p = v[k];
      s = ((in[q] + w * q * q) - (in[p] + w * p * p)) / (2 * w * (q - p));
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = k == 0 ? -std::numeric_limits<double>::infinity() : s;
  }
  if (k < 0) return;  // no finite sample on this line
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (j < k && z[j + 1] < q) ++j;
    const double d = static_cast<double>(q - v[j]);
    f[q * step] = w * d * d + in[v[j]];
  }
}

}  // namespace

at::Tensor squared_distance_to(const at::Tensor& mask, const std::vector<double>& spacing_in) {
  const int64_t dims = mask.dim();
  TORCH_CHECK(dims >= 1 && dims <= 3, "distance transform: 1 to 3 dims, got ", mask.sizes());
  std::vector<double> spacing = spacing_in.empty() ? std::vector<double>(dims, 1.0) : spacing_in;
  TORCH_CHECK(static_cast<int64_t>(spacing.size()) == dims, "distance transform: ", spacing.size(),
              " spacings for ", dims, " dims");
  // As [n0, n1, n2] with leading singleton dims.
  const at::Tensor m = mask.to(at::kBool).reshape([&] {
    std::vector<int64_t> shape(3 - dims, 1);
    for (int64_t d = 0; d < dims; ++d) shape.push_back(mask.size(d));
    return shape;
  }());
  spacing.insert(spacing.begin(), 3 - dims, 1.0);
  at::Tensor d =
      at::where(m, at::zeros({}, at::kDouble), at::full({}, kFar, at::kDouble)).contiguous();
  if (!m.any().item<bool>())
    return at::full(mask.sizes(), std::numeric_limits<double>::infinity(), at::kDouble);
  const int64_t n0 = d.size(0), n1 = d.size(1), n2 = d.size(2);
  const int64_t longest = std::max({n0, n1, n2});
  std::vector<double> in(longest);
  std::vector<int64_t> v(longest);
  std::vector<double> z(longest + 1);
  double* f = d.data_ptr<double>();
  for (int64_t a = 0; a < n0; ++a)
    for (int64_t b = 0; b < n1; ++b) edt_line(f + (a * n1 + b) * n2, n2, 1, spacing[2], in, v, z);
  for (int64_t a = 0; a < n0; ++a)
    for (int64_t c = 0; c < n2; ++c) edt_line(f + a * n1 * n2 + c, n1, n2, spacing[1], in, v, z);
  for (int64_t b = 0; b < n1; ++b)
    for (int64_t c = 0; c < n2; ++c) edt_line(f + b * n2 + c, n0, n1 * n2, spacing[0], in, v, z);
  return d.view(mask.sizes());
}

}  // namespace iris
