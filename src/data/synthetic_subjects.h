// Many subjects from one brain: each a random smooth deformation and rigid pose of the Colin27
// image and its label maps, with its intensities changed (gamma, smooth bias field, blur, noise),
// in the spirit of SynthSeg (Billot et al., Medical Image Analysis 2023). One brain in one pose
// cannot teach in-context segmentation (copying the reference mask is as good as segmenting);
// subjects that differ in shape, pose and contrast can. The real image in a pose no subject had is
// then a fair query.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/atlas.h"
#include "io/volume.h"

namespace iris {

struct SubjectOptions {
  double spacing_mm = 2.0;       // output grid (RAS, the atlas's extent)
  double rotation_degrees = 12;  // about the S axis (in the axial plane), uniform in +-
  double tilt_degrees = 4;       // about the R and A axes
  double shift_mm = 8;           // per axis, uniform in +-
  double scale = 0.08;           // isotropic zoom in [1 - scale, 1 + scale]
  double deformation_mm = 3;     // std of the smooth displacement at its control points
  double control_spacing_mm = 40;
  double gamma = 0.3;        // intensity exponent exp(N(0, gamma))
  double bias = 0.2;         // std of the log bias field on its control points
  double blur_voxels = 0.8;  // Gaussian sigma uniform in [0, blur_voxels]
  double noise = 0.03;       // std of the noise added inside the brain (intensities in [0, 1])
};

struct Subject {
  Volume image;                          // [nk, nj, ni] float in [0, 1]; 0 outside the brain
  std::map<std::string, Volume> labels;  // per label map, int64, on the image's grid
  at::Tensor source_mm;        // [3, nk, nj, ni] atlas world position (x, y, z) drawn from
  at::Tensor atlas_intensity;  // [nk, nj, ni] the atlas T1 there, in [0, 1], unchanged
};

// A generated subject: pose, deformation and intensities drawn from `seed` alone.
Subject make_subject(const MricronAtlas& atlas, const SubjectOptions& options, uint64_t seed);

// The real atlas image and label maps in a rigid pose drawn from `seed` (rotation, tilt, shift at
// the options' bounds' full size in a random direction each, no zoom, no deformation, real
// intensities): the query a user would bring.
Subject pose_atlas(const MricronAtlas& atlas, const SubjectOptions& options, uint64_t seed);

}  // namespace iris
