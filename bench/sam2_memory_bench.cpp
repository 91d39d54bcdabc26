// SAM2.1 memory modules at a 512 input (32x32 embedding grid), steady-state tracking: 7 memory
// frames and 16 object pointers (64 tokens). CPU always, CUDA when present.
#include <benchmark/benchmark.h>

#include "models/sam2/memory_attention.h"
#include "models/sam2/memory_encoder.h"

namespace {

using namespace iris::models::sam2;

constexpr int64_t kGrid = 32;
constexpr int64_t kMemFrames = 7;
constexpr int64_t kPtrTokens = 16 * 4;

MemoryAttention sam21_memory_attention() {
  MemoryAttentionOptions o;
  o.layer.self_attention.attention = {.embedding_dim = 256, .num_heads = 1, .dropout = 0.1};
  o.layer.cross_attention.attention = {
      .embedding_dim = 256, .num_heads = 1, .dropout = 0.1, .kv_in_dim = 64};
  o.layer.cross_attention.rope_k_repeat = true;
  return MemoryAttention(o);
}

MemoryEncoder sam21_memory_encoder() {
  MemoryEncoderOptions o;
  o.mask_downsampler = {.embed_dim = 256, .kernel_size = 3, .stride = 2, .padding = 1};
  o.fuser.layer.dim = 256;
  return MemoryEncoder(o);
}

void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

void BM_MemoryAttention(benchmark::State& state, c10::Device device) {
  torch::NoGradGuard no_grad;
  auto attention = sam21_memory_attention();
  attention->to(device);
  attention->eval();
  const auto f32 = torch::TensorOptions().device(device);
  const int64_t nq = kGrid * kGrid;
  const int64_t nk = kMemFrames * nq + kPtrTokens;
  const auto curr = torch::randn({nq, 1, 256}, f32);
  const auto curr_pos = torch::randn({nq, 1, 256}, f32);
  const auto memory = torch::randn({nk, 1, 64}, f32);
  const auto memory_pos = torch::randn({nk, 1, 64}, f32);
  for (auto _ : state) {
    benchmark::DoNotOptimize(attention->forward(curr, memory, curr_pos, memory_pos, kPtrTokens));
    sync(device);
  }
  state.counters["keys"] = static_cast<double>(nk);
}

void BM_MemoryEncoder(benchmark::State& state, c10::Device device) {
  torch::NoGradGuard no_grad;
  auto encoder = sam21_memory_encoder();
  encoder->to(device);
  encoder->eval();
  const auto f32 = torch::TensorOptions().device(device);
  const auto pix_feat = torch::randn({1, 256, kGrid, kGrid}, f32);
  const auto masks = torch::randn({1, 1, 16 * kGrid, 16 * kGrid}, f32);
  for (auto _ : state) {
    benchmark::DoNotOptimize(encoder->forward(pix_feat, masks));
    sync(device);
  }
}

const bool kRegistered = [] {
  std::vector<c10::Device> devices{c10::Device(c10::kCPU)};
  if (torch::cuda::is_available()) devices.emplace_back(c10::kCUDA, 0);
  for (const auto& device : devices) {
    const std::string suffix = device.is_cuda() ? "/cuda" : "/cpu";
    benchmark::RegisterBenchmark(("BM_MemoryAttention" + suffix).c_str(), BM_MemoryAttention,
                                 device)
        ->Unit(benchmark::kMillisecond)
        ->MinWarmUpTime(0.2)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_MemoryEncoder" + suffix).c_str(), BM_MemoryEncoder, device)
        ->Unit(benchmark::kMillisecond)
        ->MinWarmUpTime(0.2)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace
