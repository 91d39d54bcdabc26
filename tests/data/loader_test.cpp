#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <set>

#include "core/build_info.h"
#include "core/error.h"
#include "data/augment.h"
#include "data/clips.h"
#include "data/loader.h"
#include "data/prompts.h"
#include "data/synthetic_video.h"
#include "test_util.h"

namespace iris {
namespace {

using test::TempDir;

// [H, W] uint8 union of discs (cx, cy, r).
at::Tensor discs(int64_t h, int64_t w, const std::vector<std::array<double, 3>>& list) {
  const at::Tensor ys = at::arange(h, at::kDouble).view({h, 1});
  const at::Tensor xs = at::arange(w, at::kDouble).view({1, w});
  at::Tensor m = at::zeros({h, w}, at::kBool);
  for (const auto& [cx, cy, r] : list) {
    m = m | ((xs - cx).pow(2) + (ys - cy).pow(2) <= r * r);
  }
  return m.to(at::kByte);
}

at::Tensor random_mask(int64_t h, int64_t w, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::array<double, 3>> list;
  for (int i = 0; i < 3; ++i) list.push_back({u(rng) * w, u(rng) * h, 2 + u(rng) * h / 4});
  return discs(h, w, list);
}

uint8_t at_pixel(const at::Tensor& mask, double x, double y) {
  const int64_t xi = std::lround(x), yi = std::lround(y);
  if (xi < 0 || yi < 0 || yi >= mask.size(0) || xi >= mask.size(1)) return 0;
  return mask[yi][xi].item<uint8_t>();
}

// --- prompts --------------------------------------------------------------------------------

TEST(Prompts, DistanceTransformIsExact) {
  for (uint64_t seed = 0; seed < 4; ++seed) {
    const int64_t h = 17, w = 23;
    const at::Tensor m = random_mask(h, w, seed);
    const at::Tensor d = distance_to_background(m);
    // Brute force, with a background frame around the image.
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        double best = 0;
        if (m[y][x].item<uint8_t>()) {
          best = std::min({double(x + 1), double(y + 1), double(w - x), double(h - y)});
          for (int64_t v = 0; v < h; ++v) {
            for (int64_t u = 0; u < w; ++u) {
              if (!m[v][u].item<uint8_t>()) best = std::min(best, std::hypot(x - u, y - v));
            }
          }
        }
        ASSERT_NEAR(d[y][x].item<float>(), best, 1e-5) << "seed " << seed << " at " << x << "," << y;
      }
    }
  }
}

TEST(Prompts, FarthestPointOnConstructedShapes) {
  at::Tensor rect = at::zeros({30, 40}, at::kByte);
  rect.slice(0, 5, 16).slice(1, 10, 31).fill_(1);  // 21 x 11: one centre
  EXPECT_EQ(farthest_interior_point(rect), (std::array<int64_t, 2>{20, 10}));
  at::Tensor square = at::zeros({10, 10}, at::kByte);
  square.slice(0, 2, 6).slice(1, 2, 6).fill_(1);  // four tied centres: the first row-major wins
  EXPECT_EQ(farthest_interior_point(square), (std::array<int64_t, 2>{3, 3}));
  // A thin bar attached to a big disc: the disc's centre, not the centroid (which is elsewhere).
  at::Tensor lollipop = discs(40, 60, {{{15, 20, 10}}});
  lollipop.slice(0, 19, 22).slice(1, 25, 60).fill_(1);
  EXPECT_EQ(farthest_interior_point(lollipop), (std::array<int64_t, 2>{15, 20}));
  // The image border counts as background.
  EXPECT_EQ(farthest_interior_point(at::ones({5, 7}, at::kByte)), (std::array<int64_t, 2>{3, 2}));
  // A ring: a point on the ring, never the hole.
  const at::Tensor ring = discs(41, 41, {{{20, 20, 15}}}) & ~discs(41, 41, {{{20, 20, 9}}});
  const auto p = farthest_interior_point(ring);
  ASSERT_TRUE(p);
  EXPECT_EQ(ring[(*p)[1]][(*p)[0]].item<uint8_t>(), 1);
}

TEST(Prompts, PointsFallInsideTheirMasksAndNegativesOutsideNearby) {
  PromptOptions o;
  o.positive_points = 4;
  o.negative_points = 5;
  o.negative_margin_min = 6;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const at::Tensor m = random_mask(48, 64, seed);
    std::mt19937_64 rng(seed);
    const auto p = simulate_prompt(m, PromptType::kPoint, o, rng);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->point_coords.sizes(), (std::vector<int64_t>{10, 2}));
    const auto box = *tight_box(m);
    const int64_t side = std::max(box[2] - box[0], box[3] - box[1]) + 1;
    const double margin = std::max<double>(6, std::ceil(0.1 * side));
    const auto first = *farthest_interior_point(m);
    EXPECT_EQ(p->point_coords[0][0].item<float>(), first[0]);
    EXPECT_EQ(p->point_coords[0][1].item<float>(), first[1]);
    std::set<std::pair<int, int>> seen;
    for (int64_t i = 0; i < 10; ++i) {
      const float x = p->point_coords[i][0].item<float>(), y = p->point_coords[i][1].item<float>();
      const int label = p->point_labels[i].item<int32_t>();
      EXPECT_EQ(label, i < 5 ? 1 : 0);
      EXPECT_EQ(at_pixel(m, x, y), label) << "point " << i << " seed " << seed;
      EXPECT_TRUE(seen.insert({int(x), int(y)}).second) << "points are distinct";
      if (label == 0) {
        EXPECT_GE(x, box[0] - margin);
        EXPECT_LE(x, box[2] + margin);
        EXPECT_GE(y, box[1] - margin);
        EXPECT_LE(y, box[3] + margin);
      }
    }
    std::mt19937_64 again(seed);
    EXPECT_TRUE(simulate_prompt(m, PromptType::kPoint, o, again)->point_coords.equal(p->point_coords))
        << "deterministic for a seed";
  }
}

TEST(Prompts, BoxesContainTheMaskAndStayInTheImage) {
  PromptOptions tight;
  PromptOptions jitter;
  jitter.box_jitter = 0.3;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const at::Tensor m = random_mask(40, 50, seed);
    std::mt19937_64 rng(seed);
    const auto b = simulate_prompt(m, PromptType::kBox, tight, rng)->box;
    const at::Tensor idx = m.nonzero();  // [K, 2] (y, x)
    EXPECT_EQ(b[0].item<float>(), idx.select(1, 1).min().item<int64_t>());
    EXPECT_EQ(b[1].item<float>(), idx.select(1, 0).min().item<int64_t>());
    EXPECT_EQ(b[2].item<float>(), idx.select(1, 1).max().item<int64_t>());
    EXPECT_EQ(b[3].item<float>(), idx.select(1, 0).max().item<int64_t>());
    bool moved = false;
    for (int k = 0; k < 5; ++k) {
      const auto j = simulate_prompt(m, PromptType::kBox, jitter, rng)->box;
      EXPECT_GE(j[0].item<float>(), 0);
      EXPECT_GE(j[1].item<float>(), 0);
      EXPECT_LE(j[2].item<float>(), 49);
      EXPECT_LE(j[3].item<float>(), 39);
      EXPECT_LE(j[0].item<float>(), j[2].item<float>());
      EXPECT_LE(j[1].item<float>(), j[3].item<float>());
      moved = moved || !j.equal(b);
    }
    EXPECT_TRUE(moved);
  }
}

TEST(Prompts, MaskPromptsArePerturbedButNeverEmpty) {
  const at::Tensor m = discs(64, 64, {{{30, 34, 12}}});
  PromptOptions o;
  o.mask_input_size = 32;
  std::mt19937_64 rng(1);
  const auto plain = simulate_prompt(m, PromptType::kMask, o, rng);
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->mask.equal(m));
  EXPECT_EQ(plain->mask_input.sizes(), (std::vector<int64_t>{1, 32, 32}));
  EXPECT_NEAR(plain->mask_input.mean().item<double>(), m.to(at::kFloat).mean().item<double>(),
              1e-3);
  EXPECT_GE(plain->mask_input.min().item<float>(), 0.0f);
  EXPECT_LE(plain->mask_input.max().item<float>(), 1.0f);
  o.mask_perturb_radius = 3;
  int grown = 0, shrunk = 0;
  for (int k = 0; k < 20; ++k) {
    const at::Tensor p = simulate_prompt(m, PromptType::kMask, o, rng)->mask;
    const int64_t area = p.sum().item<int64_t>(), base = m.sum().item<int64_t>();
    if (area > base) {
      ++grown;
      EXPECT_TRUE((p >= m).all().item<bool>()) << "a dilation keeps the mask";
    } else if (area < base) {
      ++shrunk;
      EXPECT_TRUE((p <= m).all().item<bool>()) << "an erosion stays inside";
    }
  }
  EXPECT_GT(grown, 0);
  EXPECT_GT(shrunk, 0);
  at::Tensor dot = at::zeros({9, 9}, at::kByte);
  dot[4][4] = 1;
  for (int k = 0; k < 10; ++k) {
    EXPECT_GT(simulate_prompt(dot, PromptType::kMask, o, rng)->mask.sum().item<int64_t>(), 0);
  }
}

TEST(Prompts, EmptyMaskGivesNoPrompt) {
  const at::Tensor empty = at::zeros({12, 9}, at::kByte);
  std::mt19937_64 rng(0);
  PromptOptions o;
  o.negative_points = 3;
  for (PromptType t : {PromptType::kPoint, PromptType::kBox, PromptType::kMask}) {
    EXPECT_FALSE(simulate_prompt(empty, t, o, rng)) << prompt_type_name(t);
  }
  EXPECT_FALSE(farthest_interior_point(empty));
  EXPECT_FALSE(tight_box(empty));
  // A mask covering the image has no negatives to give: positives only, no crash.
  const auto full = simulate_prompt(at::ones({4, 4}, at::kByte), PromptType::kPoint, o, rng);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->point_coords.size(0), 1);
  EXPECT_EQ(parse_prompt_type("box"), PromptType::kBox);
  EXPECT_THROW(parse_prompt_type("scribble"), InputError);
}

TEST(Prompts, StackPadsWithMinusOne) {
  std::mt19937_64 rng(3);
  PromptOptions a, b;
  b.positive_points = 2;
  const at::Tensor m = discs(20, 20, {{{10, 10, 5}}});
  const auto [coords, labels] = stack_point_prompts(
      {*simulate_prompt(m, PromptType::kPoint, a, rng), *simulate_prompt(m, PromptType::kPoint, b, rng)});
  EXPECT_EQ(coords.sizes(), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_TRUE(labels.equal(at::tensor({1, -1, -1, 1, 1, 1}, at::kInt).view({2, 3})));
}

// --- augmentation ---------------------------------------------------------------------------

ClipTensors blob_clip(int64_t t, int64_t h, int64_t w, uint64_t seed) {
  ClipTensors clip;
  clip.images = at::rand({t, 3, h, w});
  std::vector<at::Tensor> masks;
  for (int64_t i = 0; i < t; ++i) {
    masks.push_back(at::stack({random_mask(h, w, seed + i), random_mask(h, w, seed + 100 + i)}));
  }
  clip.masks = at::stack(masks);  // [T, 2, H, W]
  return clip;
}

// Prompts of frame 0's objects: farthest points [2, 1, 2] and tight boxes [2, 4].
void add_prompts(ClipTensors& clip) {
  std::vector<at::Tensor> points, boxes;
  for (int64_t o = 0; o < clip.masks.size(1); ++o) {
    const auto p = *farthest_interior_point(clip.masks[0][o]);
    const auto b = *tight_box(clip.masks[0][o]);
    points.push_back(at::tensor({float(p[0]), float(p[1])}).view({1, 2}));
    boxes.push_back(at::tensor({float(b[0]), float(b[1]), float(b[2]), float(b[3])}));
  }
  clip.point_coords = at::stack(points);
  clip.boxes = at::stack(boxes);
}

TEST(Augment, IdentityWhenEveryProbabilityIsZero) {
  ClipTensors clip = blob_clip(3, 24, 32, 1);
  add_prompts(clip);
  std::mt19937_64 rng(4);
  const ClipTensors out = augment_clip(clip, AugmentOptions{}, rng);
  EXPECT_TRUE(out.images.equal(clip.images));
  EXPECT_TRUE(out.masks.equal(clip.masks));
  EXPECT_TRUE(out.point_coords.equal(clip.point_coords));
  EXPECT_TRUE(out.boxes.equal(clip.boxes));
}

TEST(Augment, FlipsAndQuarterTurnsKeepMasksBoxesAndPointsAligned) {
  ClipTensors clip = blob_clip(2, 32, 32, 7);
  add_prompts(clip);
  for (int hflip = 0; hflip < 2; ++hflip) {
    for (int vflip = 0; vflip < 2; ++vflip) {
      for (int turns = 0; turns < 4; ++turns) {
        ClipTransform t;
        t.hflip = hflip, t.vflip = vflip, t.quarter_turns = turns;
        const ClipTensors out = apply_clip_transform(clip, t);
        // Exact permutations of pixels: the same counts, and images move with masks.
        EXPECT_EQ(out.masks.sum().item<int64_t>(), clip.masks.sum().item<int64_t>());
        EXPECT_NEAR(out.images.sum().item<double>(), clip.images.sum().item<double>(), 1e-2);
        for (int64_t o = 0; o < 2; ++o) {
          const auto box = *tight_box(out.masks[0][o]);
          for (int k = 0; k < 4; ++k) {
            EXPECT_FLOAT_EQ(out.boxes[o][k].item<float>(), float(box[k]))
                << "h" << hflip << " v" << vflip << " turns " << turns << " object " << o;
          }
          const auto p = *farthest_interior_point(out.masks[0][o]);
          const float x = out.point_coords[o][0][0].item<float>();
          const float y = out.point_coords[o][0][1].item<float>();
          EXPECT_EQ(at_pixel(out.masks[0][o], x, y), 1);
          // The farthest point is rotation-invariant up to ties.
          EXPECT_NEAR(distance_to_background(out.masks[0][o])[p[1]][p[0]].item<float>(),
                      distance_to_background(out.masks[0][o])[std::lround(y)][std::lround(x)]
                          .item<float>(),
                      1e-5);
        }
      }
    }
  }
}

TEST(Augment, SmallRotationsAndScaleKeepThePointInside) {
  AugmentOptions o;
  o.rotate_probability = 1.0;
  o.max_degrees = 20;
  o.scale_probability = 1.0;
  o.scale_min = 0.9;
  o.scale_max = 1.1;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    ClipTensors clip;
    clip.images = at::rand({2, 3, 64, 64});
    clip.masks = discs(64, 64, {{{28, 34, 14}}, {{40, 30, 8}}}).view({1, 1, 64, 64}).expand(
        {2, 1, 64, 64});
    add_prompts(clip);
    std::mt19937_64 rng(seed);
    const ClipTensors out = augment_clip(clip, o, rng);
    const at::Tensor m = out.masks[0][0];
    EXPECT_EQ(at_pixel(m, out.point_coords[0][0][0].item<float>(),
                       out.point_coords[0][0][1].item<float>()),
              1);
    EXPECT_TRUE(out.masks[0].equal(out.masks[1])) << "one transform for every frame";
    const auto box = *tight_box(m);
    EXPECT_LE(out.boxes[0][0].item<float>(), box[0] + 1.0f) << "the box still holds the mask";
    EXPECT_LE(out.boxes[0][1].item<float>(), box[1] + 1.0f);
    EXPECT_GE(out.boxes[0][2].item<float>(), box[2] - 1.0f);
    EXPECT_GE(out.boxes[0][3].item<float>(), box[3] - 1.0f);
  }
}

TEST(Augment, LetterboxKeepsMasksAndPromptsAligned) {
  ClipTensors clip = blob_clip(1, 40, 80, 3);
  add_prompts(clip);
  AugmentOptions o;
  o.out_height = 64;
  o.out_width = 64;
  std::mt19937_64 rng(0);
  const ClipTensors out = augment_clip(clip, o, rng);
  EXPECT_EQ(out.images.sizes(), (std::vector<int64_t>{1, 3, 64, 64}));
  EXPECT_EQ(out.masks.sizes(), (std::vector<int64_t>{1, 2, 64, 64}));
  EXPECT_EQ(out.masks.scalar_type(), at::kByte);
  // 80 x 40 -> 64 x 32, padded by 16 rows above and below.
  EXPECT_EQ(out.images.slice(2, 0, 16).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out.images.slice(2, 48, 64).abs().sum().item<float>(), 0.0f);
  for (int64_t k = 0; k < 2; ++k) {
    const at::Tensor m = out.masks[0][k];
    EXPECT_EQ(at_pixel(m, out.point_coords[k][0][0].item<float>(),
                       out.point_coords[k][0][1].item<float>()),
              1);
    const auto box = *tight_box(m);
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(out.boxes[k][c].item<float>(), box[c], 1.0);
  }
  o.letterbox = false;  // SAM2's square stretch
  const ClipTensors squashed = resize_clip(clip, o);
  EXPECT_GT(squashed.images.slice(2, 0, 16).abs().sum().item<float>(), 0.0f);
}

TEST(Augment, ColourJitterIsDeterministicPerSeedAndStaysInRange) {
  ClipTensors clip = blob_clip(2, 16, 16, 5);
  AugmentOptions o;
  o.color_probability = 1.0;
  o.hflip_probability = 0.5;
  std::mt19937_64 a(9), b(9), c(10);
  const ClipTensors x = augment_clip(clip, o, a), y = augment_clip(clip, o, b);
  EXPECT_TRUE(x.images.equal(y.images));
  EXPECT_FALSE(augment_clip(clip, o, c).images.equal(x.images));
  EXPECT_GE(x.images.min().item<float>(), 0.0f);
  EXPECT_LE(x.images.max().item<float>(), 1.0f);
}

TEST(Augment, IntensityNormalisation) {
  IntensityOptions ct;
  ct.mode = IntensityMode::kCtWindow;
  const at::Tensor hu = at::tensor({-1000.0, -160.0, 40.0, 240.0, 3000.0});
  EXPECT_TRUE(at::allclose(normalize_intensity(hu, ct), at::tensor({0.0f, 0.0f, 0.5f, 1.0f, 1.0f})));
  IntensityOptions mri;
  mri.mode = IntensityMode::kMriPercentile;
  mri.low_percentile = 0;
  mri.high_percentile = 100;
  const at::Tensor v = normalize_intensity(at::tensor({0.0, 10.0, 20.0, 30.0}), mri);
  EXPECT_TRUE(at::allclose(v, at::tensor({0.0f, 0.0f, 0.5f, 1.0f})));
  const at::Tensor frames = at::full({2, 4, 5, 3}, 255, at::kByte);
  EXPECT_EQ(frames_to_float(frames).sizes(), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(frames_to_float(frames).min().item<float>(), 1.0f);
}

// --- loader ---------------------------------------------------------------------------------

struct TestSample {
  int64_t index = 0;
  at::Tensor image;
  at::Tensor points;
};

// Depends only on (index, seed): an augmented blob and a point prompt from its mask.
TestSample make_sample(int64_t index, uint64_t seed) {
  std::mt19937_64 rng(seed);
  ClipTensors clip;
  clip.images = at::full({1, 3, 24, 24}, double(index % 7) / 7.0);
  clip.masks = random_mask(24, 24, seed).view({1, 1, 24, 24});
  AugmentOptions o;
  o.hflip_probability = o.rotate_probability = o.color_probability = 0.5;
  const ClipTensors out = augment_clip(clip, o, rng);
  PromptOptions po;
  po.positive_points = 2;
  po.negative_points = 2;
  const auto p = simulate_prompt(out.masks[0][0], PromptType::kPoint, po, rng);
  return {index, out.images, p ? p->point_coords : at::zeros({0, 2})};
}

std::vector<std::vector<TestSample>> all_batches(int64_t threads, int64_t epoch) {
  LoaderOptions o;
  o.size = 23;
  o.batch_size = 4;
  o.threads = threads;
  o.prefetch = 3;
  o.seed = 42;
  Loader<TestSample> loader(make_sample, o);
  loader.start_epoch(epoch);
  std::vector<std::vector<TestSample>> batches;
  for (auto b = loader.next_batch(); !b.empty(); b = loader.next_batch()) batches.push_back(b);
  return batches;
}

TEST(Loader, IdenticalBatchesForOneAndFourThreads) {
  const auto one = all_batches(1, 1);
  ASSERT_EQ(one.size(), 6u);
  EXPECT_EQ(one.back().size(), 3u);
  std::set<int64_t> indices;
  for (const auto& b : one) {
    for (const auto& s : b) indices.insert(s.index);
  }
  EXPECT_EQ(indices.size(), 23u) << "every index once per epoch";
  for (int64_t threads : {0, 4}) {
    const auto other = all_batches(threads, 1);
    ASSERT_EQ(other.size(), one.size());
    for (size_t b = 0; b < one.size(); ++b) {
      ASSERT_EQ(other[b].size(), one[b].size());
      for (size_t i = 0; i < one[b].size(); ++i) {
        EXPECT_EQ(other[b][i].index, one[b][i].index);
        EXPECT_TRUE(other[b][i].image.equal(one[b][i].image)) << threads << " threads";
        EXPECT_TRUE(other[b][i].points.equal(one[b][i].points)) << threads << " threads";
      }
    }
  }
  const auto next_epoch = all_batches(4, 2);
  bool reordered = false;
  for (size_t i = 0; i < one[0].size(); ++i) reordered |= next_epoch[0][i].index != one[0][i].index;
  EXPECT_TRUE(reordered) << "epochs shuffle differently";
}

TEST(Loader, WorkerExceptionSurfacesWithTheSampleIndex) {
  for (int64_t threads : {0, 1, 4}) {
    LoaderOptions o;
    o.size = 12;
    o.threads = threads;
    o.shuffle = false;
    Loader<int64_t> loader(
        [](int64_t index, uint64_t) -> int64_t {
          if (index == 7) throw InputError("frame_7.png: not a PNG");
          return index;
        },
        o);
    int64_t seen = 0;
    try {
      while (auto s = loader.next()) {
        EXPECT_EQ(*s, seen);
        ++seen;
      }
      ADD_FAILURE() << "no error surfaced";
    } catch (const LoaderError& e) {
      EXPECT_EQ(e.index(), 7);
      EXPECT_EQ(e.exit_code(), ExitCode::kBadInput);
      EXPECT_NE(std::string(e.what()).find("sample 7: frame_7.png: not a PNG"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(seen, 7) << threads << " threads";
  }
}

TEST(Loader, ShutsDownWithSamplesInFlight) {
  std::atomic<int64_t> produced{0};
  LoaderOptions o;
  o.size = 1000;
  o.threads = 4;
  o.prefetch = 5;
  {
    Loader<int64_t> loader(
        [&](int64_t index, uint64_t) {
          ++produced;
          return index;
        },
        o);
    ASSERT_TRUE(loader.next());
  }  // the destructor joins the workers
  EXPECT_LE(produced.load(), 1 + 5 + 4) << "the queue is bounded";
}

// --- clips ----------------------------------------------------------------------------------

TEST(Clips, SamplerOnASyntheticTree) {
  if (!IRIS_HAVE_OPENCV) GTEST_SKIP() << "OpenCV is off in this build";
  TempDir dir;
  SyntheticVideoOptions s;
  s.videos = 2;
  s.frames = 8;
  s.width = 96;
  s.height = 80;
  s.seed = 11;
  s.layout = VideoLayout::kEndoVis17;
  write_synthetic_videos(s, dir.path());
  const VideoDataset ds = read_video_dataset(dir.path());
  ASSERT_EQ(ds.videos.size(), 2u);

  ClipOptions o;
  o.length = 3;
  o.stride = 2;
  EXPECT_EQ(enumerate_clips(ds, o).size(), 6u);  // starts 0, 2, 4 per video
  o.keep_partial = true;
  const auto partial = enumerate_clips(ds, o);
  ASSERT_EQ(partial.size(), 8u);
  EXPECT_EQ(partial[3].frames, (std::vector<int64_t>{6, 7}));
  o.keep_partial = false;
  o.frame_step = 2;
  const auto stepped = enumerate_clips(ds, o);
  ASSERT_EQ(stepped.size(), 4u);  // spans of 5 frames from 0 and 2
  EXPECT_EQ(stepped[1].frames, (std::vector<int64_t>{2, 4, 6}));
  EXPECT_THROW(enumerate_clips(ds, ClipOptions{0}), InputError);

  ClipOptions whole;
  whole.length = 8;
  whole.stride = 8;
  int64_t late_total = 0;
  for (const ClipRef& ref : enumerate_clips(ds, whole)) {
    const ClipSample clip = load_clip(ds, ref, whole);
    const int64_t n = clip.objects.size();
    ASSERT_GT(n, 0);
    EXPECT_EQ(clip.frames.sizes(), (std::vector<int64_t>{8, 80, 96, 3}));
    EXPECT_EQ(clip.masks.sizes(), (std::vector<int64_t>{8, n, 80, 96}));
    EXPECT_EQ(clip.prompted_frames, (std::vector<int64_t>{0}));
    bool late_seen = false;
    for (int64_t i = 0; i < n; ++i) {
      const ClipObject& obj = clip.objects[i];
      const at::Tensor area = clip.masks.select(1, i).flatten(1).sum(1);
      const int64_t first = area.nonzero()[0].item<int64_t>();
      EXPECT_EQ(obj.first_frame, first) << obj.name;
      if (obj.prompt_frame == 0) {
        EXPECT_FALSE(late_seen) << "prompted objects come first";
      } else {
        late_seen = true;
        EXPECT_EQ(obj.prompt_frame, -1);
        EXPECT_GT(obj.first_frame, 0) << "a late object appears after the prompted frame";
      }
    }
    late_total += clip.late_objects().size();
    // Prompts on appearance give late objects their own prompt frame.
    ClipOptions appear = whole;
    appear.prompt_on_appearance = true;
    for (const ClipObject& obj : load_clip(ds, ref, appear).objects) {
      EXPECT_GE(obj.prompt_frame, 0);
      EXPECT_GT(clip.masks.size(0), obj.prompt_frame);
    }
  }
  EXPECT_GT(late_total, 0) << "seed 11 has an instrument entering during the video";

  // Extra prompted frames: objects present on frame 4 but not 0 are prompted there.
  ClipOptions two = whole;
  two.prompted_frames = {0, 4, 99};
  const ClipSample clip = load_clip(ds, enumerate_clips(ds, two)[0], two);
  EXPECT_EQ(clip.prompted_frames, (std::vector<int64_t>{0, 4}));
  for (int64_t i = 0; i < static_cast<int64_t>(clip.objects.size()); ++i) {
    const bool on0 = clip.masks[0][i].any().item<bool>(), on4 = clip.masks[4][i].any().item<bool>();
    if (!on0 && on4) EXPECT_EQ(clip.objects[i].prompt_frame, 4) << clip.objects[i].name;
  }
}

}  // namespace
}  // namespace iris
