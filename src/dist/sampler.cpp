#include "dist/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"

namespace iris::dist {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void check_ranks(int rank, int world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw InputError(
        fmt::format("rank {} of world size {}: expected 0 <= rank < world size", rank, world_size));
  }
}

}  // namespace

BatchShard shard_batch(int64_t global_batch, int rank, int world_size) {
  check_ranks(rank, world_size);
  if (global_batch < world_size) {
    throw ConfigError(fmt::format("a global batch of {} cannot give each of {} ranks an item",
                                  global_batch, world_size));
  }
  const int64_t base = global_batch / world_size, extra = global_batch % world_size;
  BatchShard shard;
  shard.begin = rank * base + std::min<int64_t>(rank, extra);
  shard.end = shard.begin + base + (rank < extra ? 1 : 0);
  return shard;
}

uint64_t sample_seed(uint64_t seed, int64_t step, int64_t index) {
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(index));
}

DistributedSampler::DistributedSampler(int64_t size, int64_t global_batch, int rank, int world_size,
                                       uint64_t seed, bool shuffle)
    : size_(size),
      global_batch_(global_batch),
      rank_(rank),
      world_size_(world_size),
      seed_(seed),
      shuffle_(shuffle) {
  check_ranks(rank, world_size);
  if (size < 0 || global_batch < 1) {
    throw ConfigError(fmt::format("sampler: {} items in batches of {}", size, global_batch));
  }
}

int64_t DistributedSampler::steps_per_epoch() const {
  return (size_ + global_batch_ - 1) / global_batch_;
}

std::vector<int64_t> DistributedSampler::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<std::size_t>(size_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle_) {
    std::mt19937_64 rng(sample_seed(seed_, epoch, -1));
    // Fisher-Yates with our own draws: std::shuffle's use of the engine differs between
    // standard libraries.
    for (int64_t i = size_ - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
    }
  }
  return order;
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch, int64_t step) const {
  if (step < 0 || step >= steps_per_epoch()) return {};
  const auto order = epoch_order(epoch);
  const int64_t begin = step * global_batch_;
  const int64_t batch = std::min(global_batch_, size_ - begin);
  // A short last step may leave some ranks without items.
  const int64_t base = batch / world_size_, extra = batch % world_size_;
  const int64_t first = begin + rank_ * base + std::min<int64_t>(rank_, extra);
  const int64_t count = base + (rank_ < extra ? 1 : 0);
  return {order.begin() + first, order.begin() + first + count};
}

}  // namespace iris::dist
