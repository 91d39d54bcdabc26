// The operations the models' speed rests on, each registered beside its baseline so one run gives
// both medians (read the ratio by dividing them):
// - attention: LibTorch's fused kernel (dot_product_attention on 2.x) vs the explicit
//   softmax(q·kᵀ/√d)·v, at the shapes of SAM2.1's memory attention (1 head of 256 channels: the
//   cross attention projects the 64-channel memories to 256 before attending);
// - foreground pooling: the adjoint form vs the direct formula, at IRIS paper size;
// - COCO RLE encode/decode of a 1080x1920 instrument-like mask, an empty and a full one;
// - resampling a 128^3 volume onto a rotated 1.5 mm grid, linear and nearest.
// Inputs come from fixed seeds; torch runs on 1 thread so runs compare whatever the core count.
#include <benchmark/benchmark.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <numbers>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/torch_compat.h"
#include "io/rle.h"
#include "io/volume.h"
#include "models/iris/task_encoder.h"

namespace iris {
namespace {

constexpr uint64_t kSeed = 0;
constexpr int kRepetitions = 5;
// Fewer repetitions where no ratio is read (throughput only) and for calls of a second or more
// (one iteration per repetition: any minimum time below one call) keep the whole executable near
// a minute on one thread.
constexpr int kThroughputRepetitions = 3;
constexpr int kHeavyRepetitions = 3;
constexpr double kHeavyMinSeconds = 0.01;
constexpr double kWarmUpSeconds = 0.1;

// At static initialisation, before benchmark_main runs anything.
const bool kSingleThread = [] {
  at::set_num_threads(1);
  return true;
}();

at::Tensor seeded_randn(at::IntArrayRef sizes, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return at::randn(sizes, generator, at::TensorOptions().dtype(at::kFloat));
}

void common_counters(benchmark::State& state) {
  state.counters["torch_threads"] = at::get_num_threads();
}

// --- attention -----------------------------------------------------------------------------

struct AttentionShape {
  const char* name;
  int64_t queries;
  int64_t keys;
  int64_t dim;
  bool heavy;  // a second or more per call
};

// SAM2.1 memory attention: self attention over the image tokens (64x64 grid at 1024 px, 32x32
// at 512 px) and cross attention to 7 memory frames plus 16 object pointers of 4 tokens.
constexpr int64_t kMemFrames = 7;
constexpr int64_t kPtrTokens = 16 * 4;
constexpr AttentionShape kSelf512{"self_512px", 32 * 32, 32 * 32, 256, false};
constexpr AttentionShape kSelf1024{"self_1024px", 64 * 64, 64 * 64, 256, false};
constexpr AttentionShape kCross1024{"cross_1024px_7mem", 64 * 64, kMemFrames * 64 * 64 + kPtrTokens,
                                    256, true};

using AttentionFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const std::optional<at::Tensor>&);

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::optional<at::Tensor>& mask) {
  return dot_product_attention(q, k, v, mask);
}

at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const std::optional<at::Tensor>& mask) {
  return dot_product_attention_explicit(q, k, v, mask);
}

void BM_Attention(benchmark::State& state, AttentionShape shape, AttentionFn attention) {
  at::NoGradGuard no_grad;
  // [batch, heads, tokens, dim]
  const auto q = seeded_randn({1, 1, shape.queries, shape.dim}, kSeed);
  const auto k = seeded_randn({1, 1, shape.keys, shape.dim}, kSeed + 1);
  const auto v = seeded_randn({1, 1, shape.keys, shape.dim}, kSeed + 2);
  for (auto _ : state) benchmark::DoNotOptimize(attention(q, k, v, std::nullopt).data_ptr());
  common_counters(state);
  state.counters["queries"] = static_cast<double>(shape.queries);
  state.counters["keys"] = static_cast<double>(shape.keys);
}

// --- foreground pooling --------------------------------------------------------------------

// configs/iris/patch_3d_paper.yaml: 16x128x128 patches, base width 16 doubled over 4 stride-2
// stages, so the task encoder pools 256-channel features on a 1x8x8 grid against full-resolution
// masks; 3 classes per episode (the direct formula materialises [K, 256, 16, 128, 128] floats,
// 0.8 GB at K = 3).
constexpr int64_t kPoolClasses = 3;
constexpr int64_t kPoolStride = 1 << 4;
constexpr int64_t kPoolChannels = 16 * kPoolStride;
const std::vector<int64_t> kPatch{16, 128, 128};

// Ellipsoid "organs", one per class, at fixed places.
at::Tensor organ_masks() {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const auto z = at::arange(kPatch[0], f32).view({-1, 1, 1});
  const auto y = at::arange(kPatch[1], f32).view({1, -1, 1});
  const auto x = at::arange(kPatch[2], f32).view({1, 1, -1});
  struct Blob {
    double cz, cy, cx, rz, ry, rx;
  };
  const Blob blobs[] = {{8, 40, 50, 6, 30, 22}, {7, 85, 80, 5, 18, 35}, {10, 64, 100, 4, 12, 12}};
  std::vector<at::Tensor> masks;
  for (int64_t c = 0; c < kPoolClasses; ++c) {
    const Blob& b = blobs[c];
    const auto r =
        ((z - b.cz) / b.rz).square() + ((y - b.cy) / b.ry).square() + ((x - b.cx) / b.rx).square();
    masks.push_back((r <= 1.0).to(at::kFloat));
  }
  return at::stack(masks).unsqueeze(0);  // [1, K, D, H, W]
}

using PoolFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&);

void BM_ForegroundPool(benchmark::State& state, PoolFn pool) {
  at::NoGradGuard no_grad;
  const auto features = seeded_randn(
      {1, kPoolChannels, kPatch[0] / kPoolStride, kPatch[1] / kPoolStride, kPatch[2] / kPoolStride},
      kSeed);
  const auto masks = organ_masks();
  for (auto _ : state) benchmark::DoNotOptimize(pool(features, masks).data_ptr());
  common_counters(state);
  state.counters["classes"] = static_cast<double>(kPoolClasses);
}

// --- RLE -----------------------------------------------------------------------------------

constexpr int64_t kFrameHeight = 1080;
constexpr int64_t kFrameWidth = 1920;

enum class MaskKind { kInstruments, kEmpty, kFull };

// Two long rotated shafts entering from the border and their two jaws, as in the instrument
// masks of surgical video.
at::Tensor frame_mask(MaskKind kind) {
  const auto u8 = at::TensorOptions().dtype(at::kByte);
  if (kind == MaskKind::kEmpty) return at::zeros({kFrameHeight, kFrameWidth}, u8);
  if (kind == MaskKind::kFull) return at::ones({kFrameHeight, kFrameWidth}, u8);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const auto y = at::arange(kFrameHeight, f32).view({-1, 1});
  const auto x = at::arange(kFrameWidth, f32).view({1, -1});
  struct Ellipse {
    double cx, cy, a, b, degrees;
  };
  const Ellipse ellipses[] = {{1500, 300, 650, 45, 25},
                              {450, 850, 600, 40, -35},
                              {980, 560, 90, 35, 25},
                              {880, 470, 70, 30, -35}};
  at::Tensor mask = at::zeros({kFrameHeight, kFrameWidth}, at::kBool);
  for (const Ellipse& e : ellipses) {
    const double t = e.degrees * std::numbers::pi / 180.0;
    const auto dx = x - e.cx, dy = y - e.cy;
    const auto u = (dx * std::cos(t) + dy * std::sin(t)) / e.a;
    const auto v = (dy * std::cos(t) - dx * std::sin(t)) / e.b;
    mask = mask.logical_or(u.square() + v.square() <= 1.0);
  }
  return mask.to(at::kByte);
}

void rle_counters(benchmark::State& state, const Rle& rle) {
  common_counters(state);
  state.SetBytesProcessed(state.iterations() * kFrameHeight * kFrameWidth);  // 1 byte a pixel
  state.counters["runs"] = static_cast<double>(rle.counts.size());
  state.counters["area"] = static_cast<double>(rle.area());
}

void BM_RleEncode(benchmark::State& state, MaskKind kind) {
  const auto mask = frame_mask(kind);
  for (auto _ : state) benchmark::DoNotOptimize(rle_encode(mask).counts.data());
  rle_counters(state, rle_encode(mask));
}

void BM_RleDecode(benchmark::State& state, MaskKind kind) {
  const Rle rle = rle_encode(frame_mask(kind));
  for (auto _ : state) benchmark::DoNotOptimize(rle_decode(rle).data_ptr());
  rle_counters(state, rle);
}

// --- resampling ----------------------------------------------------------------------------

constexpr int64_t kMovingSize = 128;  // 1 mm isotropic
constexpr double kTargetSpacing = 1.5;
constexpr int64_t kTargetSize = 86;  // the same 128 mm field at 1.5 mm
constexpr double kTargetDegrees = 10;

// Voxel-to-world with the grid's centre at the world origin: rotation about z times spacing.
Affine centred_affine(int64_t size, double spacing, double degrees) {
  const double t = degrees * std::numbers::pi / 180.0;
  const double r[3][3] = {{std::cos(t), -std::sin(t), 0}, {std::sin(t), std::cos(t), 0}, {0, 0, 1}};
  const double centre = (static_cast<double>(size) - 1.0) / 2.0;
  Affine a;
  for (int row = 0; row < 3; ++row) {
    double offset = 0;
    for (int col = 0; col < 3; ++col) {
      a(row, col) = r[row][col] * spacing;
      offset += a(row, col) * centre;
    }
    a(row, 3) = -offset;
  }
  return a;
}

void BM_ResampleTo(benchmark::State& state, Interpolation interpolation) {
  at::NoGradGuard no_grad;
  Volume moving;
  moving.data = seeded_randn({kMovingSize, kMovingSize, kMovingSize}, kSeed);
  moving.affine = centred_affine(kMovingSize, 1.0, 0.0);
  Volume target;
  target.data = at::zeros({kTargetSize, kTargetSize, kTargetSize}, at::kFloat);
  target.affine = centred_affine(kTargetSize, kTargetSpacing, kTargetDegrees);
  for (auto _ : state) {
    benchmark::DoNotOptimize(resample_to(moving, target, interpolation).data.data_ptr());
  }
  common_counters(state);
  state.SetItemsProcessed(state.iterations() * kTargetSize * kTargetSize * kTargetSize);
}

// --- registration --------------------------------------------------------------------------

// Baseline and ours next to each other, so the ratio is read off adjacent medians.
const bool kRegistered = [] {
  for (const AttentionShape& shape : {kSelf512, kSelf1024, kCross1024}) {
    for (const auto& [variant, fn] :
         {std::pair{"explicit", &explicit_attention}, std::pair{"fused", &fused_attention}}) {
      auto* b = benchmark::RegisterBenchmark(
                    (std::string("BM_Attention/") + shape.name + "/" + variant).c_str(),
                    BM_Attention, shape, fn)
                    ->Unit(benchmark::kMillisecond)
                    ->MinWarmUpTime(kWarmUpSeconds)
                    ->ReportAggregatesOnly(true);
      if (shape.heavy) {
        b->MinTime(kHeavyMinSeconds)->Repetitions(kHeavyRepetitions);
      } else {
        b->Repetitions(kRepetitions);
      }
    }
  }
  benchmark::RegisterBenchmark("BM_ForegroundPool/paper_3d/naive", BM_ForegroundPool,
                               &models::foreground_pool_naive)
      ->Unit(benchmark::kMillisecond)
      ->MinWarmUpTime(kWarmUpSeconds)
      ->MinTime(kHeavyMinSeconds)
      ->Repetitions(kHeavyRepetitions)
      ->ReportAggregatesOnly(true);
  benchmark::RegisterBenchmark("BM_ForegroundPool/paper_3d/adjoint", BM_ForegroundPool,
                               &models::foreground_pool)
      ->Unit(benchmark::kMillisecond)
      ->MinWarmUpTime(kWarmUpSeconds)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true);
  for (const auto& [name, kind] :
       {std::pair{"instruments", MaskKind::kInstruments}, std::pair{"empty", MaskKind::kEmpty},
        std::pair{"full", MaskKind::kFull}}) {
    benchmark::RegisterBenchmark((std::string("BM_RleEncode/") + name).c_str(), BM_RleEncode, kind)
        ->Unit(benchmark::kMicrosecond)
        ->MinWarmUpTime(kWarmUpSeconds)
        ->Repetitions(kThroughputRepetitions)
        ->ReportAggregatesOnly(true);
    benchmark::RegisterBenchmark((std::string("BM_RleDecode/") + name).c_str(), BM_RleDecode, kind)
        ->Unit(benchmark::kMicrosecond)
        ->MinWarmUpTime(kWarmUpSeconds)
        ->Repetitions(kThroughputRepetitions)
        ->ReportAggregatesOnly(true);
  }
  for (const auto& [name, interpolation] : {std::pair{"linear", Interpolation::kLinear},
                                            std::pair{"nearest", Interpolation::kNearest}}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_ResampleTo/128cube_to_1.5mm_rot10/") + name).c_str(), BM_ResampleTo,
        interpolation)
        ->Unit(benchmark::kMillisecond)
        ->MinWarmUpTime(kWarmUpSeconds)
        ->Repetitions(kRepetitions)
        ->ReportAggregatesOnly(true);
  }
  return true;
}();

}  // namespace
}  // namespace iris
