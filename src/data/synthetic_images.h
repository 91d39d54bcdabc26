// Deterministic 2D image folders in the Kvasir-SEG layout (images/<id>.jpg beside masks/<id>.jpg,
// JPEG masks of one binary class), for the README's worked example and the tests: endoscopy-like
// RGB scenes (a textured, unevenly lit mucosa) with one "polyp" each, an ellipse of another tint
// at a random place, size and orientation. `iris data synth images`.
#pragma once

#include <cstdint>
#include <filesystem>

namespace iris {

struct SyntheticImageOptions {
  int64_t cases = 40;
  int64_t width = 96, height = 80;
  uint64_t seed = 0;
  int jpeg_quality = 90;  // images; masks are written at 75, as lossy as users' Kvasir masks
};

// Writes the folder; returns the number of images.
int64_t write_synthetic_image_folder(const SyntheticImageOptions& options,
                                     const std::filesystem::path& out);

}  // namespace iris
