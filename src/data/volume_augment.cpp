#include "data/volume_augment.h"

#include <ATen/CPUGeneratorImpl.h>

#include <vector>

#include "core/error.h"

namespace iris {

std::pair<at::Tensor, at::Tensor> augment_patch(const at::Tensor& image, const at::Tensor& masks,
                                                const PatchAugmentOptions& o,
                                                std::mt19937_64& rng) {
  if (image.dim() != 4 || masks.dim() != 4 || image.sizes().slice(1) != masks.sizes().slice(1)) {
    throw InputError("patch augmentation: expected image [C, D, H, W] and masks [K, D, H, W]");
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // All draws happen up front and in a fixed order, so the stream does not depend on the data.
  std::vector<int64_t> flip_dims;
  for (int64_t d = 1; d <= 3; ++d) {
    if (unit(rng) < o.flip_probability) flip_dims.push_back(d);
  }
  int64_t turns = 0;
  if (unit(rng) < o.rot90_probability) turns = 1 + static_cast<int64_t>(unit(rng) * 3) % 3;
  const bool intensity = unit(rng) < o.intensity_probability;
  const double factor = 1.0 + o.scale * (2.0 * unit(rng) - 1.0);
  const double offset = o.shift * (2.0 * unit(rng) - 1.0);
  const double gamma = 1.0 + o.gamma * (2.0 * unit(rng) - 1.0);
  const uint64_t noise_seed = rng();

  at::Tensor img = image, msk = masks;
  if (!flip_dims.empty()) {
    img = img.flip(flip_dims);
    msk = msk.flip(flip_dims);
  }
  if (turns != 0) {
    if (img.size(2) != img.size(3)) {
      throw InputError("patch augmentation: quarter turns need square H x W patches");
    }
    img = img.rot90(turns, {2, 3});
    msk = msk.rot90(turns, {2, 3});
  }
  if (intensity) {
    img = (img.clamp(0.0, 1.0).pow(gamma) * factor + offset);
    if (o.noise_std > 0) {
      at::Generator gen = at::detail::createCPUGenerator(noise_seed);
      img = img + o.noise_std * at::randn(img.sizes(), gen, img.scalar_type());
    }
    img = img.clamp(0.0, 1.0);
  }
  return {img.contiguous(), msk.contiguous()};
}

PatchEpisode augment_patch_episode(const PatchEpisode& episode, const PatchAugmentOptions& options,
                                   std::mt19937_64& rng) {
  PatchEpisode e = episode;
  std::tie(e.ref_image, e.ref_masks) = augment_patch(e.ref_image, e.ref_masks, options, rng);
  std::tie(e.query_image, e.query_masks) =
      augment_patch(e.query_image, e.query_masks, options, rng);
  return e;
}

}  // namespace iris
