#include "data/subject_episodes.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "core/error.h"
#include "data/preprocess.h"

namespace iris {
namespace {

// Atlas intensity above which a pixel is brain (the atlas T1 in [0, 1], background 0).
constexpr double kBrainLevel = 0.02;

int64_t pick(std::mt19937_64& rng, int64_t n) {
  return std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
}

double uniform(std::mt19937_64& rng, double a, double b) {
  return std::uniform_real_distribution<double>(a, b)(rng);
}

// A random ellipsoid in the atlas's space (mm), centred on a brain pixel of the reference slice,
// cut to the bright tissue, the dark tissue or the whole brain of the atlas; masks [S, S] on the
// reference and query rows. Nothing when too small on the reference.
std::optional<std::pair<at::Tensor, at::Tensor>> random_class(std::mt19937_64& rng,
                                                              const SubjectSlices& a, int64_t ra,
                                                              const SubjectSlices& b, int64_t rb,
                                                              int64_t min_area) {
  const at::Tensor brain = (a.tissue[ra] > kBrainLevel).nonzero();  // [N, 2]
  if (brain.size(0) == 0) return std::nullopt;
  const at::Tensor p = brain[pick(rng, brain.size(0))];
  const at::Tensor centre = a.source_mm.select(1, ra)
                                .index({at::indexing::Slice(), p[0], p[1]})
                                .to(at::kDouble);  // [3] mm
  const double radius[3] = {uniform(rng, 8, 30), uniform(rng, 8, 30), uniform(rng, 6, 24)};
  const double angle = uniform(rng, 0, M_PI), c = std::cos(angle), s = std::sin(angle);
  const at::Tensor brain_tissue = a.tissue[ra].masked_select(a.tissue[ra] > kBrainLevel);
  const double threshold = brain_tissue.median().item<double>();
  const int64_t cut = pick(rng, 3);  // 0 bright, 1 dark, 2 brain
  auto mask = [&](const SubjectSlices& subject, int64_t row) {
    const at::Tensor x = subject.source_mm.select(1, row).to(at::kDouble);  // [3, S, S]
    const at::Tensor dx = x[0] - centre[0], dy = x[1] - centre[1], dz = x[2] - centre[2];
    const at::Tensor u = (dx * c + dy * s) / radius[0], v = (dy * c - dx * s) / radius[1];
    const at::Tensor w = dz / radius[2];
    const at::Tensor t = subject.tissue[row];
    at::Tensor m = (u * u + v * v + w * w <= 1) & (t > kBrainLevel);
    if (cut == 0) m = m & (t > threshold);
    if (cut == 1) m = m & (t <= threshold);
    return m.to(at::kFloat);
  };
  at::Tensor ref = mask(a, ra), query = mask(b, rb);
  if (ref.sum().item<double>() < static_cast<double>(min_area)) return std::nullopt;
  return std::make_pair(ref, query);
}

}  // namespace

SubjectSlices slice_subject(const Subject& subject, const std::string& label_map, int64_t size,
                            int64_t min_area) {
  const auto it = subject.labels.find(label_map);
  if (it == subject.labels.end()) {
    throw InputError(fmt::format("subject slices: no label map '{}' in the subject", label_map));
  }
  SubjectSlices out;
  const at::Tensor counts = (subject.atlas_intensity > kBrainLevel).flatten(1).sum(1);
  for (int64_t k = 0; k < counts.size(0); ++k) {
    if (counts[k].item<int64_t>() >= 500) out.levels.push_back(k);
  }
  if (out.levels.empty()) throw InputError("subject slices: no slice shows the brain");
  const at::Tensor rows = at::tensor(out.levels, at::kLong);
  const SquareFrame f = square_frame(subject.image.nj(), subject.image.ni());
  out.images = to_square(subject.image.data.index_select(0, rows), f, size, false).contiguous();
  out.labels =
      to_square(it->second.data.index_select(0, rows), f, size, true).to(at::kLong).contiguous();
  out.tissue = to_square(subject.atlas_intensity.index_select(0, rows), f, size, true).contiguous();
  std::vector<at::Tensor> positions;
  for (int64_t c = 0; c < 3; ++c) {
    positions.push_back(to_square(subject.source_mm[c].index_select(0, rows), f, size, true));
  }
  out.source_mm = at::stack(positions).contiguous();
  for (int64_t z = 0; z < out.rows(); ++z) {
    const at::Tensor n = at::bincount(out.labels[z].reshape({-1}).clamp_min(0));
    const auto* c = n.data_ptr<int64_t>();
    for (int64_t v = 1; v < n.numel(); ++v) {
      if (c[v] >= min_area) out.present[v].push_back(z);
    }
  }
  return out;
}

CrossSubjectSampler::CrossSubjectSampler(std::vector<SubjectSlices> subjects)
    : subjects_(std::move(subjects)) {
  if (subjects_.size() < 2) {
    throw InputError("cross-subject episodes need at least two subjects (reference and query)");
  }
}

std::vector<int64_t> CrossSubjectSampler::episode_classes() const {
  std::map<int64_t, int64_t> holders;
  for (const auto& s : subjects_) {
    for (const auto& [v, rows] : s.present) ++holders[v];
  }
  std::vector<int64_t> out;
  for (const auto& [v, n] : holders) {
    if (n >= 2) out.push_back(v);
  }
  return out;
}

Episode CrossSubjectSampler::sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                                    const CrossSubjectOptions& o) const {
  if (classes.empty()) throw InputError("cross-subject episodes: no classes to sample from");
  const int64_t n = subjects();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int64_t anchor = classes[pick(rng, classes.size())];
    const int64_t sa = pick(rng, n);
    const SubjectSlices& a = subjects_[sa];
    const auto it = a.present.find(anchor);
    if (it == a.present.end()) continue;
    const int64_t ra = it->second[pick(rng, it->second.size())];
    int64_t sb = pick(rng, n - 1);
    if (sb >= sa) ++sb;
    const SubjectSlices& b = subjects_[sb];
    // Query rows near the reference's level, holding the anchor (or, sometimes, any).
    const bool allow_absent = uniform(rng, 0, 1) < o.absent_query_probability;
    const auto& anchor_rows =
        b.present.count(anchor) ? b.present.at(anchor) : std::vector<int64_t>{};
    std::vector<int64_t> candidates;
    for (int64_t r = 0; r < b.rows(); ++r) {
      if (std::abs(b.levels[r] - a.levels[ra]) > o.level_gap) continue;
      if (allow_absent || std::binary_search(anchor_rows.begin(), anchor_rows.end(), r)) {
        candidates.push_back(r);
      }
    }
    if (candidates.empty()) continue;
    const int64_t rb = candidates[pick(rng, candidates.size())];
    std::vector<int64_t> chosen{anchor}, others;
    for (int64_t c : classes) {
      const auto found = a.present.find(c);
      if (c != anchor && found != a.present.end() &&
          std::binary_search(found->second.begin(), found->second.end(), ra)) {
        others.push_back(c);
      }
    }
    std::shuffle(others.begin(), others.end(), rng);
    for (int64_t c : others) {
      if (static_cast<int64_t>(chosen.size()) >= o.classes_per_episode) break;
      chosen.push_back(c);
    }
    Episode e;
    e.ref_slice = sa * 1000 + a.levels[ra];
    e.query_slice = sb * 1000 + b.levels[rb];
    e.ref_image = a.images[ra].unsqueeze(0);
    e.query_image = b.images[rb].unsqueeze(0);
    std::vector<at::Tensor> rm, qm;
    for (int64_t c : chosen) {
      std::optional<std::pair<at::Tensor, at::Tensor>> replaced;
      if (o.random_class_probability > 0 && uniform(rng, 0, 1) < o.random_class_probability) {
        for (int tries = 0; tries < 5 && !replaced; ++tries) {
          replaced = random_class(rng, a, ra, b, rb, o.min_area);
        }
      }
      e.class_values.push_back(replaced ? -1 : c);
      rm.push_back(replaced ? replaced->first : a.mask(ra, c));
      qm.push_back(replaced ? replaced->second : b.mask(rb, c));
    }
    e.ref_masks = at::stack(rm);
    e.query_masks = at::stack(qm);
    return e;
  }
  throw InputError(fmt::format(
      "cross-subject episodes: no reference/query pair found for {} classes", classes.size()));
}

}  // namespace iris
