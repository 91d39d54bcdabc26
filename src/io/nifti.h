// NIfTI-1 / NIfTI-2 volumes (.nii, .nii.gz) through niftilib.
#pragma once

#include <filesystem>

#include "io/volume.h"

namespace iris {

// Reads any stored voxel type. Scaling (scl_slope, scl_inter) is applied when it changes values,
// giving float32; otherwise the stored type is kept (uint16/uint32 widen to int32/int64). The
// affine is the sform when its code is set, else the qform, else the pixdim diagonal (the order
// nibabel uses). Throws InputError naming the file: missing, not NIfTI, truncated data,
// unsupported type.
Volume read_nifti(const std::filesystem::path& path);

// Writes a NIfTI-1 file (.nii or .nii.gz by extension) with `volume.affine` as both sform and
// qform and the volume's form codes, atomically. Data types: uint8, int8, int16, int32, int64,
// float32, float64 (bool is written as uint8).
void write_nifti(const std::filesystem::path& path, const Volume& volume);

}  // namespace iris
