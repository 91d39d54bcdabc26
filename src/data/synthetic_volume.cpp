#include "data/synthetic_volume.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/nifti.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

// Smooth noise in about [-1, 1]: a coarse random grid upsampled trilinearly to [S, S, S].
at::Tensor smooth_noise(at::Generator& gen, int64_t cells, int64_t size) {
  const at::Tensor coarse = at::randn({1, 1, cells, cells, cells}, gen, at::kFloat);
  return at::upsample_trilinear3d(coarse, {size, size, size}, /*align_corners=*/true)[0][0];
}

double uniform(at::Generator& gen, double lo, double hi) {
  return lo + (hi - lo) * at::rand({1}, gen, at::kDouble).item<double>();
}

}  // namespace

SyntheticVolumeCase make_synthetic_volume(const SyntheticVolumeOptions& o, int64_t index) {
  if (o.size < 16 || o.classes < 1 || o.classes > 255 || o.cases < 1) {
    throw ConfigError(
        fmt::format("synthetic volumes: need size >= 16, 1 <= classes <= 255 and "
                    "cases >= 1 (got size {}, classes {}, cases {})",
                    o.size, o.classes, o.cases));
  }
  // One stream per case so a case does not depend on how many came before it.
  at::Generator gen =
      at::detail::createCPUGenerator(o.seed * 1000003ULL + uint64_t(index) * 7919ULL + 17);
  const int64_t s = o.size;
  const at::Tensor axis = at::linspace(-1.0, 1.0, s, at::kFloat);
  const auto grids = at::meshgrid({axis, axis, axis}, "ij");  // z, y, x in [-1, 1]
  const at::Tensor &z = grids[0], &y = grids[1], &x = grids[2];

  // Body: a large ellipsoid with soft-tissue intensity and a gentle bias field.
  const at::Tensor body = ((x / 0.9).square() + (y / 0.8).square() + (z / 0.95).square()) <= 1.0;
  at::Tensor image =
      at::where(body, 0.25 + 0.05 * smooth_noise(gen, 4, s), at::zeros({}, at::kFloat));
  at::Tensor labels = at::zeros({s, s, s}, at::kByte);

  for (int64_t k = 1; k <= o.classes; ++k) {
    // Radii of 0.15..0.35 of the half-extent and centres kept inside the body.
    const double rx = uniform(gen, 0.15, 0.35), ry = uniform(gen, 0.15, 0.35),
                 rz = uniform(gen, 0.15, 0.35);
    const double cx = uniform(gen, -0.45, 0.45), cy = uniform(gen, -0.4, 0.4),
                 cz = uniform(gen, -0.5, 0.5);
    const double angle = uniform(gen, 0.0, M_PI);
    const at::Tensor u = (x - cx) * std::cos(angle) + (y - cy) * std::sin(angle);
    const at::Tensor v = -(x - cx) * std::sin(angle) + (y - cy) * std::cos(angle);
    const at::Tensor r = ((u / rx).square() + (v / ry).square() + ((z - cz) / rz).square()).sqrt();
    // Surface pushed in and out by up to ~30% of the radius.
    const at::Tensor organ = (r <= 1.0 + 0.3 * smooth_noise(gen, 5, s)) & body;
    const double mean = uniform(gen, 0.35, 1.0);
    const double texture = uniform(gen, 0.02, 0.12);
    const at::Tensor tissue = mean + texture * smooth_noise(gen, int64_t(uniform(gen, 6, 14)), s);
    image = at::where(organ, tissue, image);
    labels.masked_fill_(organ, k);
  }
  // Later organs may cover earlier ones; make sure each class keeps a core.
  for (int64_t k = 1; k <= o.classes; ++k) {
    if ((labels == k).any().item<bool>()) continue;
    const int64_t c = s / 2 + (k % 2 ? -1 : 1) * (k * 3 % (s / 4));
    labels.slice(0, c - 2, c + 2).slice(1, c - 2, c + 2).slice(2, c - 2, c + 2).fill_(k);
  }
  image = (image + 0.02 * at::randn({s, s, s}, gen, at::kFloat))
              .clamp_min(0)
              .masked_fill(body.logical_not(), 0);

  SyntheticVolumeCase out;
  const Affine affine = [&] {
    Affine a = Affine::diagonal(o.spacing_mm, o.spacing_mm, o.spacing_mm);
    for (int r = 0; r < 3; ++r) a(r, 3) = -0.5 * o.spacing_mm * (s - 1);  // centred on the origin
    return a;
  }();
  out.image.data = image.contiguous();
  out.image.affine = affine;
  out.labels.data = labels.contiguous();
  out.labels.affine = affine;
  return out;
}

int64_t write_synthetic_volumes(const SyntheticVolumeOptions& o, const fs::path& out) {
  fs::create_directories(out / "imagesTr");
  fs::create_directories(out / "labelsTr");
  nlohmann::json labels = {{"0", "background"}};
  for (int64_t k = 1; k <= o.classes; ++k) labels[std::to_string(k)] = fmt::format("organ_{}", k);
  nlohmann::json training = nlohmann::json::array();
  for (int64_t i = 0; i < o.cases; ++i) {
    const SyntheticVolumeCase c = make_synthetic_volume(o, i);
    const std::string id = fmt::format("case_{:03d}", i);
    write_nifti(out / "imagesTr" / (id + "_0000.nii.gz"), c.image);
    write_nifti(out / "labelsTr" / (id + ".nii.gz"), c.labels);
    training.push_back({{"image", "./imagesTr/" + id + "_0000.nii.gz"},
                        {"label", "./labelsTr/" + id + ".nii.gz"}});
  }
  const nlohmann::json dataset = {
      {"name", "iris-synthetic-volumes"},
      {"description", fmt::format("synthetic organ-like volumes, seed {}", o.seed)},
      {"modality", {{"0", "synthetic"}}},
      {"labels", labels},
      {"numTraining", o.cases},
      {"training", training},
      {"file_ending", ".nii.gz"}};
  write_file_atomic(out / "dataset.json", dataset.dump(2) + "\n");
  return o.cases;
}

}  // namespace iris
