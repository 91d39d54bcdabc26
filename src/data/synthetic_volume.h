// Synthetic 3D volumes for IRIS, deterministic by seed: a body-like ellipsoid holding K
// organ-like structures (ellipsoids whose surface is pushed in and out by smooth noise), each
// with its own intensity and texture, written as an MSD / nnU-Net imagesTr/labelsTr tree.
#pragma once

#include <cstdint>
#include <filesystem>

#include "io/volume.h"

namespace iris {

struct SyntheticVolumeOptions {
  int64_t cases = 4;
  int64_t size = 64;    // voxels per side
  int64_t classes = 3;  // organ labels 1..classes
  uint64_t seed = 0;
  double spacing_mm = 1.5;
};

struct SyntheticVolumeCase {
  Volume image;   // [S, S, S] float32
  Volume labels;  // [S, S, S] uint8, 0 background
};

// Case `index`; the same options and index give the same voxels. Every class is present.
SyntheticVolumeCase make_synthetic_volume(const SyntheticVolumeOptions& options, int64_t index);

// Writes imagesTr/case_NNN_0000.nii.gz, labelsTr/case_NNN.nii.gz and dataset.json (label names
// organ_1..organ_K) under `out`; returns the number of cases.
int64_t write_synthetic_volumes(const SyntheticVolumeOptions& options,
                                const std::filesystem::path& out);

}  // namespace iris
