// COCO run-length encoding of binary masks, bit-compatible with pycocotools: runs over the mask
// in column-major order, starting with a run of zeros; the compressed string form packs each
// count (delta to the count two back, after the first two) into 5-bit groups offset by '0'.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace iris {

struct Rle {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint64_t> counts;  // alternating runs of 0s and 1s, column-major

  int64_t area() const;  // number of foreground pixels
};

// mask: [H, W], any dtype; non-zero is foreground.
Rle rle_encode(const at::Tensor& mask);
// [H, W] uint8 with values 0/1. Throws InputError if the counts do not cover H*W exactly.
at::Tensor rle_decode(const Rle& rle);

std::string rle_to_string(const Rle& rle);
// Parses the compressed form; throws InputError on characters outside the alphabet or counts
// that do not add up to height*width.
Rle rle_from_string(const std::string& counts, int64_t height, int64_t width);

// COCO `segmentation` objects: {"size": [h, w], "counts": "<compressed>"} or with "counts" as a
// list of integers (uncompressed RLE). `where` names the file and field for error messages.
Rle rle_from_json(const nlohmann::json& segmentation, const std::string& where);
nlohmann::json rle_to_json(const Rle& rle);  // compressed form

}  // namespace iris
