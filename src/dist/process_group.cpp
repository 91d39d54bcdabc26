#include "dist/process_group.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <utility>

#include "core/build_info.h"
#include "core/error.h"

#if IRIS_HAVE_DIST
// The c10d headers declare their Gloo/NCCL classes only under the switches of LibTorch's own build.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if IRIS_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace iris::dist {
namespace {

// A non-negative integer variable; nullopt when unset.
std::optional<int> int_variable(const std::function<const char*(const char*)>& lookup,
                                const char* name, int max_value) {
  const char* text = lookup(name);
  if (text == nullptr) return std::nullopt;
  const std::string value(text);
  errno = 0;
  char* end = nullptr;
  const long parsed = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || end != value.c_str() + value.size() || errno != 0 || parsed < 0 ||
      parsed > max_value) {
    throw InputError(fmt::format("environment variable {}='{}': expected an integer in [0, {}]",
                                 name, value, max_value));
  }
  return static_cast<int>(parsed);
}

}  // namespace

std::optional<DistEnv> parse_dist_env(const std::function<const char*(const char*)>& lookup) {
  constexpr int kMaxRanks = 1 << 20;
  const auto rank = int_variable(lookup, "RANK", kMaxRanks);
  const auto world_size = int_variable(lookup, "WORLD_SIZE", kMaxRanks);
  if (!rank && !world_size) return std::nullopt;
  if (!rank || !world_size) {
    throw InputError(fmt::format(
        "environment variable {} is not set while {} is: a launcher (torchrun, srun wrapper, "
        "iris train --nproc) sets both",
        rank ? "WORLD_SIZE" : "RANK", rank ? "RANK" : "WORLD_SIZE"));
  }
  DistEnv env;
  env.rank = *rank;
  env.world_size = *world_size;
  if (env.world_size < 1) throw InputError("environment variable WORLD_SIZE='0': expected >= 1");
  if (env.rank >= env.world_size) {
    throw InputError(fmt::format("environment variable RANK={} is not below WORLD_SIZE={}",
                                 env.rank, env.world_size));
  }
  env.local_rank = int_variable(lookup, "LOCAL_RANK", kMaxRanks).value_or(env.rank);
  if (const char* addr = lookup("MASTER_ADDR"); addr != nullptr) {
    env.master_addr = addr;
    if (env.master_addr.empty()) throw InputError("environment variable MASTER_ADDR is empty");
  }
  const auto port = int_variable(lookup, "MASTER_PORT", 65535);
  if (port) {
    if (*port == 0) throw InputError("environment variable MASTER_PORT='0': expected 1..65535");
    env.master_port = *port;
  } else if (env.world_size > 1) {
    throw InputError(
        "environment variable MASTER_PORT is not set: the ranks meet at MASTER_ADDR:MASTER_PORT");
  }
  return env;
}

std::optional<DistEnv> dist_env_from_environment() {
  return parse_dist_env([](const char* name) { return std::getenv(name); });
}

bool dist_available() {
  return IRIS_HAVE_DIST;
}
bool nccl_available() {
  return IRIS_HAVE_NCCL;
}

#if IRIS_HAVE_DIST

struct DistContext::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#if IRIS_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  c10::Device device = c10::Device(c10::kCPU);

  // Calls f with the backend in use (Gloo and NCCL share the collective signatures but, before
  // LibTorch 2.0, no base class that has them).
  template <class F>
  auto with_backend(F&& f) {
#if IRIS_HAVE_NCCL
    if (nccl) return f(*nccl);
#endif
    return f(*gloo);
  }
};

namespace {

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  // GLOO_SOCKET_IFNAME picks the interface as in PyTorch; local groups stay on loopback, where
  // the host name may not resolve inside containers.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (master_addr == "localhost" || master_addr.rfind("127.", 0) == 0) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::string describe(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

// Buckets of tensor indices: one dtype and device each, about `bucket_bytes` of data.
std::vector<std::vector<std::size_t>> make_buckets(const std::vector<at::Tensor>& tensors,
                                                   int64_t bucket_bytes) {
  std::map<std::pair<int, std::string>, std::vector<std::size_t>> open;
  std::map<std::pair<int, std::string>, int64_t> open_bytes;
  std::vector<std::vector<std::size_t>> buckets;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const std::pair<int, std::string> key{static_cast<int>(t.scalar_type()), t.device().str()};
    open[key].push_back(i);
    open_bytes[key] += t.numel() * static_cast<int64_t>(t.element_size());
    if (open_bytes[key] >= bucket_bytes) {
      buckets.push_back(std::move(open[key]));
      open.erase(key);
      open_bytes.erase(key);
    }
  }
  for (auto& [key, bucket] : open) buckets.push_back(std::move(bucket));
  return buckets;
}

at::Tensor flatten(const std::vector<at::Tensor>& tensors, const std::vector<std::size_t>& bucket) {
  if (bucket.size() == 1 && tensors[bucket[0]].is_contiguous()) {
    return tensors[bucket[0]].view({-1});
  }
  std::vector<at::Tensor> flat;
  flat.reserve(bucket.size());
  for (std::size_t i : bucket) flat.push_back(tensors[i].reshape({-1}));
  return at::cat(flat);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& tensors,
               const std::vector<std::size_t>& bucket) {
  if (bucket.size() == 1 && tensors[bucket[0]].is_contiguous()) return;  // reduced in place
  int64_t offset = 0;
  for (std::size_t i : bucket) {
    const auto& t = tensors[i];
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

std::unique_ptr<DistContext> DistContext::create(const DistEnv& env, const DistOptions& options) {
  std::string backend = options.backend;
  if (backend == "auto") backend = options.device.is_cuda() && IRIS_HAVE_NCCL ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl") {
    throw ConfigError(
        fmt::format("distributed backend '{}': expected auto, gloo or nccl", backend));
  }
  if (backend == "nccl" && !IRIS_HAVE_NCCL) {
    throw NotAvailableError(
        "the NCCL backend is not in this build (a CUDA build of LibTorch with ProcessGroupNCCL)");
  }
  if (backend == "gloo" && !options.device.is_cpu()) {
    throw ConfigError("the Gloo backend reduces CPU tensors; use --device cpu or the NCCL backend");
  }
  auto group = std::make_unique<Group>();
  group->device = options.device;
  const std::string where = fmt::format("rank {} of {} ({} at {}:{})", env.rank, env.world_size,
                                        backend, env.master_addr, env.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.master_port);
    store_options.isServer = env.rank == 0;
    store_options.numWorkers = env.world_size;
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    group->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    if (backend == "gloo") {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
      gloo_options->devices.push_back(gloo_device(env.master_addr));
      group->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, env.rank,
                                                                env.world_size, gloo_options);
    } else {
#if IRIS_HAVE_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(options.device.index()));
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.timeout;
      group->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, env.rank,
                                                                env.world_size, nccl_options);
#endif
    }
  } catch (const std::exception& e) {
    throw RuntimeFailure(fmt::format("{}: forming the process group failed within {} s: {}", where,
                                     options.timeout.count() / 1000.0, describe(e)));
  }
  spdlog::debug("joined the process group as {}", where);
  return std::unique_ptr<DistContext>(new DistContext(env, backend, options, std::move(group)));
}

DistContext::DistContext(DistEnv env, std::string backend, const DistOptions& options,
                         std::unique_ptr<Group> group)
    : env_(std::move(env)),
      backend_(std::move(backend)),
      timeout_(options.timeout),
      bucket_bytes_(options.bucket_bytes),
      overlap_backward_(options.overlap_backward),
      group_(std::move(group)) {}

DistContext::~DistContext() = default;

void DistContext::run(const char* operation, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    throw RuntimeFailure(fmt::format(
        "rank {} of {} ({}): {} failed (a rank stopped or the {} s "
        "timeout passed): {}",
        env_.rank, env_.world_size, backend_, operation, timeout_.count() / 1000.0, describe(e)));
  }
}

void DistContext::broadcast(const std::vector<at::Tensor>& tensors, int root,
                            int64_t bucket_bytes) {
  at::NoGradGuard no_grad;
  run("broadcast", [&] {
    for (const auto& bucket : make_buckets(tensors, bucket_bytes)) {
      std::vector<at::Tensor> flat{flatten(tensors, bucket)};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      group_->with_backend([&](auto& pg) { pg.broadcast(flat, options)->wait(); });
      unflatten(flat[0], tensors, bucket);
    }
  });
}

void DistContext::all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  at::NoGradGuard no_grad;
  run("all-reduce", [&] {
    const auto buckets = make_buckets(tensors, bucket_bytes);
    std::vector<std::vector<at::Tensor>> flats;
    flats.reserve(buckets.size());
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto& bucket : buckets) {
      flats.push_back({flatten(tensors, bucket)});
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      works.push_back(
          group_->with_backend([&](auto& pg) { return pg.allreduce(flats.back(), options); }));
    }
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      works[b]->wait();
      unflatten(flats[b][0], tensors, buckets[b]);
    }
  });
}

struct PendingCollective::Work {
  c10::intrusive_ptr<c10d::Work> work;
  std::vector<at::Tensor> tensors;  // kept alive until the collective is done
};

PendingCollective DistContext::start_all_reduce_sum(const at::Tensor& flat) {
  TORCH_CHECK(flat.is_contiguous(), "start_all_reduce_sum needs a contiguous tensor");
  auto work = std::make_unique<PendingCollective::Work>();
  work->tensors = {flat};
  run("all-reduce", [&] {
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    work->work =
        group_->with_backend([&](auto& pg) { return pg.allreduce(work->tensors, options); });
  });
  return PendingCollective(this, std::move(work));
}

void PendingCollective::wait() {
  if (!work_) return;
  const auto work = std::move(work_);
  owner_->run("all-reduce", [&] { work->work->wait(); });
}

std::vector<double> DistContext::all_reduce_sum(const std::vector<double>& values) {
  if (values.empty()) return values;
  at::Tensor t = at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(group_->device);
  all_reduce_sum(std::vector<at::Tensor>{t});
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void DistContext::barrier() {
  run("barrier", [&] { group_->with_backend([](auto& pg) { pg.barrier()->wait(); }); });
}

#else  // !IRIS_HAVE_DIST

struct DistContext::Group {};

std::unique_ptr<DistContext> DistContext::create(const DistEnv&, const DistOptions&) {
  throw NotAvailableError(
      "distributed training is not in this build: configure with IRIS_WITH_DIST=ON and a LibTorch "
      "whose c10d (ProcessGroupGloo, TCPStore) is usable, with Debian's libgloo-dev installed");
}

struct PendingCollective::Work {};
void PendingCollective::wait() {}
PendingCollective DistContext::start_all_reduce_sum(const at::Tensor&) {
  return PendingCollective();
}

DistContext::~DistContext() = default;
void DistContext::run(const char*, const std::function<void()>&) {}
void DistContext::broadcast(const std::vector<at::Tensor>&, int, int64_t) {}
void DistContext::all_reduce_sum(const std::vector<at::Tensor>&, int64_t) {}
std::vector<double> DistContext::all_reduce_sum(const std::vector<double>& values) {
  return values;
}
void DistContext::barrier() {}

#endif  // IRIS_HAVE_DIST

PendingCollective::PendingCollective() = default;
PendingCollective::PendingCollective(DistContext* owner, std::unique_ptr<Work> work)
    : owner_(owner), work_(std::move(work)) {}
PendingCollective::PendingCollective(PendingCollective&&) noexcept = default;
PendingCollective& PendingCollective::operator=(PendingCollective&&) noexcept = default;
PendingCollective::~PendingCollective() = default;

}  // namespace iris::dist
