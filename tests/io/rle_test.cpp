#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/rle.h"
#include "test_util.h"

namespace iris {
namespace {

TEST(Rle, HandComputedExample) {
  // Column-major [0 1; 1 1; 0 0] -> columns (0,1,0),(1,1,0) -> runs 1,1,1,2,1.
  const auto mask = torch::tensor({0, 1, 1, 1, 0, 0}, torch::kByte).view({3, 2});
  const Rle rle = rle_encode(mask);
  EXPECT_EQ(rle.counts, (std::vector<uint64_t>{1, 1, 1, 2, 1}));
  EXPECT_EQ(rle.area(), 3);
  EXPECT_TRUE(torch::equal(rle_decode(rle), mask));
  EXPECT_EQ(rle_encode(torch::ones({2, 2})).counts, (std::vector<uint64_t>{0, 4}));
  EXPECT_EQ(rle_encode(torch::zeros({2, 2})).counts, (std::vector<uint64_t>{4}));
}

TEST(Rle, RoundTripsRandomMasksThroughTheStringForm) {
  torch::manual_seed(3);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t h = 1 + trial * 7 % 50, w = 1 + trial * 13 % 70;
    const auto mask = (torch::rand({h, w}) < 0.3 + 0.02 * trial).to(torch::kByte);
    const Rle rle = rle_encode(mask);
    const Rle back = rle_from_string(rle_to_string(rle), h, w);
    EXPECT_EQ(back.counts, rle.counts);
    EXPECT_TRUE(torch::equal(rle_decode(back), mask));
    EXPECT_EQ(rle.area(), mask.sum().item<int64_t>());
  }
}

TEST(Rle, MalformedInputsAreRejectedWithTheirReason) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(message([] { rle_from_string("~~", 2, 2); }).find("character '~'"), std::string::npos);
  EXPECT_NE(message([] { rle_from_string("1", 2, 2); }).find("cover 1 pixels, but size 2x2 has 4"),
            std::string::npos);
  EXPECT_NE(message([] { rle_from_string("h", 2, 2); }).find("ends in the middle"), std::string::npos);
  const auto bad_size = nlohmann::json::parse(R"({"size": [2], "counts": "4"})");
  EXPECT_NE(message([&] { rle_from_json(bad_size, "a.json: annotations[3].segmentation"); })
                .find("a.json: annotations[3].segmentation: missing or malformed \"size\""),
            std::string::npos);
  const auto no_counts = nlohmann::json::parse(R"({"size": [2, 2]})");
  EXPECT_NE(message([&] { rle_from_json(no_counts, "x"); }).find("missing field \"counts\""),
            std::string::npos);
  const auto neg = nlohmann::json::parse(R"({"size": [2, 2], "counts": [5, -1]})");
  EXPECT_NE(message([&] { rle_from_json(neg, "x"); }).find("non-negative"), std::string::npos);
}

TEST(Rle, AgreesWithPycocotools) {
  const auto python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << ".venv/bin/python not found (run scripts/install-deps.sh)";
  test::TempDir dir;
  write_file_atomic(dir / "ref.py", R"PY(
import json, numpy as np
from pycocotools import mask as m
rng = np.random.default_rng(7)
out = []
for t in range(25):
    h, w = int(rng.integers(1, 120)), int(rng.integers(1, 120))
    a = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if t % 5 == 0:  # blobs: long runs that need several 5-bit groups and negative deltas
        a = np.zeros((h, w), np.uint8); a[h // 4: 3 * h // 4 + 1, w // 3:] = 1
    r = m.encode(np.asfortranarray(a))
    out.append({"h": h, "w": w, "bits": "".join(map(str, a.flatten().tolist())),
                "counts": r["counts"].decode(), "area": int(m.area(r))})
print(json.dumps(out))
)PY");
  const auto result = test::run_command(python.string() + " " + (dir / "ref.py").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const auto& c : nlohmann::json::parse(result.output)) {
    const int64_t h = c["h"], w = c["w"];
    const std::string bits = c["bits"];
    auto mask = torch::empty({h * w}, torch::kByte);
    for (int64_t i = 0; i < h * w; ++i) mask[i] = bits[i] - '0';
    mask = mask.view({h, w});
    const Rle ours = rle_encode(mask);
    EXPECT_EQ(rle_to_string(ours), c["counts"].get<std::string>()) << h << "x" << w;
    EXPECT_EQ(ours.area(), c["area"].get<int64_t>());
    const Rle theirs = rle_from_string(c["counts"].get<std::string>(), h, w);
    EXPECT_TRUE(torch::equal(rle_decode(theirs), mask));
  }
}

}  // namespace
}  // namespace iris
