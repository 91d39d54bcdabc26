// Data-parallel training over torch's c10d: a process group of N ranks (Gloo on CPU, NCCL on CUDA
// where LibTorch has it) formed from the torchrun environment, with the few collectives training
// needs. See docs/distributed.md.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace iris::dist {

// The launcher's description of this process (torchrun, srun wrappers, `iris train --nproc`).
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT through `lookup` (nullptr for an
// unset variable). Returns nullopt when neither RANK nor WORLD_SIZE is set (not launched as a
// rank); throws InputError naming the variable when one is missing, not a number or out of range.
// LOCAL_RANK defaults to RANK, MASTER_ADDR to 127.0.0.1; MASTER_PORT is required when
// WORLD_SIZE > 1.
std::optional<DistEnv> parse_dist_env(const std::function<const char*(const char*)>& lookup);
std::optional<DistEnv> dist_env_from_environment();

// Whether this build has c10d process groups (IRIS_WITH_DIST).
bool dist_available();
// Whether ProcessGroupNCCL is in this build.
bool nccl_available();

// Gradients are all-reduced in flat buckets of about this many bytes.
inline constexpr int64_t kDefaultBucketBytes = int64_t{25} << 20;

struct DistOptions {
  // Limit for forming the group and for every collective: a rank that lost a peer fails with a
  // RuntimeFailure after at most this long instead of waiting forever.
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  // "auto" (NCCL for CUDA devices when available, else Gloo), "gloo" or "nccl".
  std::string backend = "auto";
  // Where the collectives' tensors live (parameters and gradients); CPU for Gloo.
  c10::Device device = c10::Device(c10::kCPU);
  // Gradient all-reduce (dist::GradientSync): bucket size, and whether buckets start inside the
  // step's last backward pass.
  int64_t bucket_bytes = kDefaultBucketBytes;
  bool overlap_backward = true;
};

class DistContext;

// A collective that was started and not waited for yet.
class PendingCollective {
 public:
  PendingCollective();
  PendingCollective(PendingCollective&&) noexcept;
  PendingCollective& operator=(PendingCollective&&) noexcept;
  ~PendingCollective();
  // Blocks until the collective is done; a failure is a RuntimeFailure as for the blocking ones.
  void wait();

 private:
  friend class DistContext;
  struct Work;
  PendingCollective(DistContext* owner, std::unique_ptr<Work> work);
  DistContext* owner_ = nullptr;
  std::unique_ptr<Work> work_;
};

// One rank of a process group. Collectives are blocking unless named start_*; a failure (a peer
// gone, a timeout) becomes a RuntimeFailure naming this rank and the operation.
class DistContext {
 public:
  // Joins the group: rank 0 hosts the TCPStore at MASTER_ADDR:MASTER_PORT, the others connect
  // to it. Throws NotAvailableError in builds without c10d, RuntimeFailure when the group does
  // not form within the timeout.
  static std::unique_ptr<DistContext> create(const DistEnv& env, const DistOptions& options = {});
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const std::string& backend() const { return backend_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  int64_t bucket_bytes() const { return bucket_bytes_; }
  bool overlap_backward() const { return overlap_backward_; }

  // Copies rank `root`'s values into every rank's tensors (in place, buckets of `bucket_bytes`).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0,
                 int64_t bucket_bytes = kBucketBytes);
  // Sums each tensor over the ranks, in place. Tensors of one dtype share flat buckets of about
  // `bucket_bytes`, whose reductions are all started before the first is waited for.
  void all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = kBucketBytes);
  // Starts summing `flat` (contiguous) over the ranks, in place, and returns at once. Every rank
  // must start its collectives in the same order; `flat` must not be touched before wait().
  PendingCollective start_all_reduce_sum(const at::Tensor& flat);
  // Sums logged numbers over the ranks (float64, one message).
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  void barrier();

  static constexpr int64_t kBucketBytes = kDefaultBucketBytes;

 private:
  struct Group;
  DistContext(DistEnv env, std::string backend, const DistOptions& options,
              std::unique_ptr<Group> group);
  friend class PendingCollective;
  // Runs a collective, turning c10d's exceptions into a RuntimeFailure naming rank and operation.
  void run(const char* operation, const std::function<void()>& body);

  DistEnv env_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  int64_t bucket_bytes_;
  bool overlap_backward_;
  std::unique_ptr<Group> group_;
};

}  // namespace iris::dist
