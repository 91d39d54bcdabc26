// Which samples each rank computes. A step's global batch is split into contiguous shards in rank
// order, so N ranks with shards of b see exactly the samples, in the same order, that one rank
// with a batch of N * b sees; and a sample's randomness comes from (seed, step, index) alone, never
// from a stream that depends on what ran before.
#pragma once

#include <cstdint>
#include <vector>

namespace iris::dist {

// [begin, end) of the global batch that `rank` computes; shard sizes differ by at most one,
// the first ranks take the extra items.
struct BatchShard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
BatchShard shard_batch(int64_t global_batch, int rank, int world_size);

// A seed for the `index`-th sample of `step` (SplitMix64 finaliser over the three values): two
// different (step, index) pairs give unrelated streams.
uint64_t sample_seed(uint64_t seed, int64_t step, int64_t index);

// Epochs over a dataset of `size` items: every epoch is a permutation fixed by (seed, epoch), cut
// into steps of `global_batch` (the last one shorter), each step sharded over the ranks. Every
// index appears on exactly one rank once per epoch.
class DistributedSampler {
 public:
  DistributedSampler(int64_t size, int64_t global_batch, int rank, int world_size, uint64_t seed,
                     bool shuffle = true);

  int64_t steps_per_epoch() const;
  // The dataset order of one epoch (identical on every rank).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // This rank's indices in `step` of `epoch`.
  std::vector<int64_t> indices(int64_t epoch, int64_t step) const;

 private:
  int64_t size_, global_batch_;
  int rank_, world_size_;
  uint64_t seed_;
  bool shuffle_;
};

}  // namespace iris::dist
