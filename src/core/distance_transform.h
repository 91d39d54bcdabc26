// Exact Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
// Functions", 2012): one linear pass per axis, any spacing. Brain masks (closing, margins) and
// surface metrics (HD95, NSD) use it; linear in the number of voxels and in memory, whatever the
// size of the surfaces.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace iris {

// Squared distance (spacing units) from every element of `mask` ([*S], 1 to 3 dims, bool) to the
// nearest true element; float64. `spacing` per dim, slowest first (empty: 1). Where the mask has no
// true element, every distance is +inf.
at::Tensor squared_distance_to(const at::Tensor& mask, const std::vector<double>& spacing = {});

}  // namespace iris
