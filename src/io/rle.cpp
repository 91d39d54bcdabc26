#include "io/rle.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace iris {
namespace {

void check_total(const Rle& rle, const std::string& where) {
  uint64_t total = 0;
  for (uint64_t c : rle.counts) total += c;
  const uint64_t expected = static_cast<uint64_t>(rle.height) * static_cast<uint64_t>(rle.width);
  if (total != expected) {
    throw InputError(fmt::format("{}: RLE counts cover {} pixels, but size {}x{} has {}", where,
                                 total, rle.height, rle.width, expected));
  }
}

}  // namespace

int64_t Rle::area() const {
  int64_t a = 0;
  for (std::size_t i = 1; i < counts.size(); i += 2) a += static_cast<int64_t>(counts[i]);
  return a;
}

Rle rle_encode(const at::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2, "rle_encode expects a [H, W] mask, got ", mask.sizes());
  Rle rle;
  rle.height = mask.size(0);
  rle.width = mask.size(1);
  // Column-major order = row-major order of the transpose.
  const at::Tensor flat = (mask != 0).t().contiguous().to(at::kByte).reshape({-1});
  const uint8_t* p = flat.data_ptr<uint8_t>();
  const int64_t n = flat.numel();
  uint8_t current = 0;
  uint64_t run = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] != current) {
      rle.counts.push_back(run);
      run = 0;
      current = p[i];
    }
    ++run;
  }
  rle.counts.push_back(run);
  return rle;
}

at::Tensor rle_decode(const Rle& rle) {
  check_total(rle, "RLE");
  at::Tensor flat = at::zeros({rle.width * rle.height}, at::kByte);
  uint8_t* p = flat.data_ptr<uint8_t>();
  int64_t pos = 0;
  for (std::size_t i = 0; i < rle.counts.size(); ++i) {
    const auto run = static_cast<int64_t>(rle.counts[i]);
    if (i % 2 == 1) std::fill(p + pos, p + pos + run, uint8_t{1});
    pos += run;
  }
  return flat.view({rle.width, rle.height}).t().contiguous();
}

std::string rle_to_string(const Rle& rle) {
  std::string s;
  for (std::size_t i = 0; i < rle.counts.size(); ++i) {
    int64_t x = static_cast<int64_t>(rle.counts[i]);
    if (i > 2) x -= static_cast<int64_t>(rle.counts[i - 2]);
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;  // arithmetic shift keeps the sign, as the reference does
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

Rle rle_from_string(const std::string& counts, int64_t height, int64_t width) {
  Rle rle;
  rle.height = height;
  rle.width = width;
  std::size_t p = 0;
  while (p < counts.size()) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      if (p >= counts.size()) {
        throw InputError("RLE counts string ends in the middle of a number");
      }
      const int c = static_cast<unsigned char>(counts[p]) - 48;
      if (c < 0 || c > 63) {
        throw InputError(fmt::format("RLE counts string has character '{}' at {}; expected '0'..'o'",
                                     counts[p], p));
      }
      if (k >= 12) throw InputError("RLE counts string holds a number too large for 64 bits");
      x |= static_cast<int64_t>(c & 0x1f) << (5 * k);
      more = c & 0x20;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= static_cast<int64_t>(-1) << (5 * k);  // sign-extend
    }
    if (rle.counts.size() > 2) x += static_cast<int64_t>(rle.counts[rle.counts.size() - 2]);
    if (x < 0) throw InputError(fmt::format("RLE counts string decodes to a negative run ({})", x));
    rle.counts.push_back(static_cast<uint64_t>(x));
  }
  check_total(rle, "RLE");
  return rle;
}

Rle rle_from_json(const nlohmann::json& seg, const std::string& where) {
  if (!seg.is_object()) throw InputError(where + ": expected an RLE object {\"size\", \"counts\"}");
  if (!seg.contains("size") || !seg["size"].is_array() || seg["size"].size() != 2 ||
      !seg["size"][0].is_number_integer() || !seg["size"][1].is_number_integer()) {
    throw InputError(where + ": missing or malformed \"size\" (expected [height, width])");
  }
  const int64_t h = seg["size"][0].get<int64_t>(), w = seg["size"][1].get<int64_t>();
  if (h < 0 || w < 0) throw InputError(where + ": negative \"size\"");
  if (!seg.contains("counts")) throw InputError(where + ": missing field \"counts\"");
  const auto& counts = seg["counts"];
  try {
    if (counts.is_string()) return rle_from_string(counts.get<std::string>(), h, w);
    if (counts.is_array()) {
      Rle rle;
      rle.height = h;
      rle.width = w;
      for (const auto& c : counts) {
        if (!c.is_number_unsigned() && !(c.is_number_integer() && c.get<int64_t>() >= 0)) {
          throw InputError("\"counts\" must hold non-negative integers");
        }
        rle.counts.push_back(c.get<uint64_t>());
      }
      check_total(rle, "RLE");
      return rle;
    }
  } catch (const InputError& e) {
    throw InputError(where + ": " + e.what());
  }
  throw InputError(where + ": \"counts\" must be a string (compressed RLE) or a list of integers");
}

nlohmann::json rle_to_json(const Rle& rle) {
  return {{"size", {rle.height, rle.width}}, {"counts", rle_to_string(rle)}};
}

}  // namespace iris
