// Data-parallel training (label `dist`): the torchrun environment, the sampler, collectives between
// two ranks, and `iris train --nproc 2` against one process with the same global batch.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "dist/gradient_sync.h"
#include "dist/launcher.h"
#include "dist/process_group.h"
#include "dist/sampler.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "train/iris_trainer.h"
#endif
#include "test_util.h"

extern char** environ;

namespace iris {
namespace {

using Clock = std::chrono::steady_clock;
using dist::DistEnv;

std::optional<DistEnv> parse(const std::map<std::string, std::string>& vars) {
  return dist::parse_dist_env([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// The InputError message of parsing `vars`, or "" when it parsed.
std::string parse_error(const std::map<std::string, std::string>& vars) {
  try {
    parse(vars);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(DistEnv, ReadsTheTorchrunVariables) {
  EXPECT_FALSE(parse({}).has_value()) << "not launched as a rank";
  const auto env = parse({{"RANK", "3"},
                          {"WORLD_SIZE", "8"},
                          {"LOCAL_RANK", "1"},
                          {"MASTER_ADDR", "node17"},
                          {"MASTER_PORT", "29511"}});
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "node17");
  EXPECT_EQ(env->master_port, 29511);
  const auto single = parse({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  ASSERT_TRUE(single.has_value());
  EXPECT_EQ(single->local_rank, 0) << "LOCAL_RANK defaults to RANK";
  EXPECT_EQ(single->master_addr, "127.0.0.1");
}

TEST(DistEnv, MissingOrInvalidVariablesAreNamed) {
  const std::map<std::string, std::string> ok{
      {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& key, const std::string& value) {
    auto v = ok;
    v[key] = value;
    return v;
  };
  auto without = [&](const std::string& key) {
    auto v = ok;
    v.erase(key);
    return v;
  };
  EXPECT_EQ(parse_error(ok), "");
  EXPECT_NE(parse_error(without("WORLD_SIZE")).find("WORLD_SIZE is not set"), std::string::npos);
  EXPECT_NE(parse_error(without("RANK")).find("RANK is not set"), std::string::npos);
  EXPECT_NE(parse_error(without("MASTER_PORT")).find("MASTER_PORT is not set"), std::string::npos);
  EXPECT_NE(parse_error(with("RANK", "one")).find("RANK='one'"), std::string::npos);
  EXPECT_NE(parse_error(with("RANK", "2")).find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(parse_error(with("RANK", "-1")).find("RANK='-1'"), std::string::npos);
  EXPECT_NE(parse_error(with("WORLD_SIZE", "0")).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(parse_error(with("MASTER_PORT", "70000")).find("MASTER_PORT='70000'"),
            std::string::npos);
  EXPECT_NE(parse_error(with("LOCAL_RANK", "x")).find("LOCAL_RANK='x'"), std::string::npos);
  EXPECT_NE(parse_error(with("MASTER_ADDR", "")).find("MASTER_ADDR is empty"), std::string::npos);
}

TEST(DistEnv, TheCommandLineReportsABrokenEnvironmentAsBadInput) {
  const std::string config = std::string(IRIS_SOURCE_DIR) + "/configs/iris/atlas_2d_tiny.yaml";
  const auto r = test::run_command("env RANK=0 MASTER_PORT=1234 " + test::iris_binary() +
                                   " train '" + config + "' --print-config");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("WORLD_SIZE is not set"), std::string::npos) << r.output;
}

TEST(Sampler, ShardsCoverTheGlobalBatchOnceInRankOrder) {
  for (int world : {1, 2, 3, 4}) {
    for (int64_t batch : {4, 5, 7, 8}) {
      if (batch < world) continue;
      int64_t next = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto s = dist::shard_batch(batch, rank, world);
        EXPECT_EQ(s.begin, next);
        EXPECT_GE(s.size(), batch / world);
        EXPECT_LE(s.size(), batch / world + 1);
        next = s.end;
      }
      EXPECT_EQ(next, batch);
    }
  }
  EXPECT_THROW(dist::shard_batch(1, 0, 2), ConfigError) << "fewer episodes than ranks";
  EXPECT_THROW(dist::shard_batch(4, 2, 2), InputError);
}

TEST(Sampler, EachIndexOnceAnEpochAndNRanksEqualOneRank) {
  const int64_t size = 23, batch = 6;
  const dist::DistributedSampler one(size, batch, 0, 1, 7);
  for (int world : {2, 3}) {
    for (int64_t epoch : {0, 1}) {
      std::multiset<int64_t> seen;
      for (int64_t step = 0; step < one.steps_per_epoch(); ++step) {
        std::vector<int64_t> joined;
        for (int rank = 0; rank < world; ++rank) {
          const dist::DistributedSampler r(size, batch, rank, world, 7);
          EXPECT_EQ(r.steps_per_epoch(), 4);
          for (int64_t i : r.indices(epoch, step)) joined.push_back(i);
        }
        EXPECT_EQ(joined, one.indices(epoch, step)) << "world " << world << " step " << step;
        seen.insert(joined.begin(), joined.end());
      }
      EXPECT_EQ(seen.size(), static_cast<std::size_t>(size));
      EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), static_cast<std::size_t>(size));
    }
  }
  EXPECT_NE(one.epoch_order(0), one.epoch_order(1)) << "epochs are shuffled differently";
  EXPECT_EQ(one.epoch_order(3), dist::DistributedSampler(size, batch, 0, 1, 7).epoch_order(3));
  EXPECT_NE(one.epoch_order(0), dist::DistributedSampler(size, batch, 0, 1, 8).epoch_order(0));
  EXPECT_NE(dist::sample_seed(0, 1, 2), dist::sample_seed(0, 2, 1));
}

TEST(DistContext, NotAvailableWithoutC10d) {
  if (dist::dist_available()) GTEST_SKIP() << "this build has c10d";
  EXPECT_THROW(dist::DistContext::create(DistEnv{}), NotAvailableError);
}

// Runs `body(rank)` for two ranks of one group, each in its own thread.
void with_two_ranks(const std::function<void(dist::DistContext&)>& body,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const int port = dist::free_tcp_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        DistEnv env{rank, 2, rank, "127.0.0.1", port};
        dist::DistOptions options;
        options.timeout = timeout;
        auto group = dist::DistContext::create(env, options);
        body(*group);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(rank)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(DistContext, CollectivesOverGloo) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  std::vector<std::vector<at::Tensor>> results(2);
  with_two_ranks([&](dist::DistContext& g) {
    const double r = g.rank();
    // Mixed dtypes and a small bucket size: several buckets, some of one tensor.
    std::vector<at::Tensor> tensors{at::full({3, 4}, r + 1, at::kFloat),
                                    at::arange(10, at::kDouble) * (r + 1),
                                    at::full({5}, r, at::kFloat).t(), at::full({2, 2}, 7 * r)};
    g.all_reduce_sum(tensors, /*bucket_bytes=*/40);
    const auto sums = g.all_reduce_sum(std::vector<double>{r, 1.5});
    EXPECT_EQ(sums, (std::vector<double>{1.0, 3.0}));
    std::vector<at::Tensor> weights{at::full({4, 3}, r + 10).t(), at::full({6}, r - 1)};
    g.broadcast(weights, /*root=*/1, /*bucket_bytes=*/16);
    g.barrier();
    tensors.insert(tensors.end(), weights.begin(), weights.end());
    results[static_cast<std::size_t>(g.rank())] = tensors;
  });
  for (const auto& t : results) {
    ASSERT_EQ(t.size(), 6u);
    EXPECT_TRUE(at::equal(t[0], at::full({3, 4}, 3.0f)));
    EXPECT_TRUE(at::equal(t[1], at::arange(10, at::kDouble) * 3));
    EXPECT_TRUE(at::equal(t[2], at::full({5}, 1.0f)));
    EXPECT_TRUE(at::equal(t[3], at::full({2, 2}, 7.0f)));
    EXPECT_TRUE(at::equal(t[4], at::full({3, 4}, 11.0f)));
    EXPECT_TRUE(at::equal(t[5], at::full({6}, 0.0f)));
  }
}

TEST(DistContext, GradientSyncEqualsOneProcessToTheBit) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  // Four micro-batches of a small regression: one process takes all, two ranks two each.
  torch::manual_seed(3);
  const auto w0 = torch::randn({64, 16});
  const auto unused0 = torch::randn({3});
  std::vector<at::Tensor> xs, ys;
  for (int i = 0; i < 4; ++i) {
    xs.push_back(torch::randn({8, 64}) * std::pow(10.0, i - 2));
    ys.push_back(torch::randn({8, 16}));
  }
  auto run = [&](dist::DistContext* g, int begin, int end) {
    auto w = w0.clone().requires_grad_(true);
    auto unused = unused0.clone().requires_grad_(true);
    dist::GradientSync sync({w, unused}, g, /*bucket_bytes=*/1024);
    sync.zero();
    for (int i = begin; i < end; ++i) {
      (xs[i].matmul(w) - ys[i]).pow(2).mean().div(4).backward();
      sync.accumulate();
    }
    sync.finish();
    EXPECT_FALSE(unused.grad().defined()) << "no loss reached it";
    return w.grad().clone();
  };
  const at::Tensor single = run(nullptr, 0, 4);
  std::vector<at::Tensor> grads(2);
  with_two_ranks([&](dist::DistContext& g) {
    grads[static_cast<std::size_t>(g.rank())] = run(&g, 2 * g.rank(), 2 * g.rank() + 2);
  });
  ASSERT_TRUE(grads[0].defined() && grads[1].defined());
  EXPECT_TRUE(at::equal(grads[0], single));
  EXPECT_TRUE(at::equal(grads[1], single));
}

TEST(DistContext, GradientSyncOverlapsTheLastBackwardWithTheAllReduce) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  // A chain of four layers and one parameter that only micro-batch 3 uses: the two ranks' last
  // backward passes reach different parameters, and their buckets must still pair up.
  torch::manual_seed(4);
  std::vector<at::Tensor> w0;
  for (int k = 0; k < 4; ++k) w0.push_back(torch::randn({32, 32}) / 4);
  const auto extra0 = torch::randn({32});
  std::vector<at::Tensor> xs;
  for (int i = 0; i < 4; ++i) xs.push_back(torch::randn({8, 32}) * std::pow(2.0, i - 2));
  struct Result {
    std::vector<at::Tensor> grads;
    int64_t buckets = 0, overlapped = 0;
    bool plain_backward_after_the_step = false;
  };
  auto run = [&](dist::DistContext* g, int begin, int end, bool overlap) {
    std::vector<at::Tensor> params;
    for (const auto& w : w0) params.push_back(w.clone().requires_grad_(true));
    params.push_back(extra0.clone().requires_grad_(true));
    // A bucket closes once it holds a byte: one parameter per bucket.
    dist::GradientSync sync(params, g, /*bucket_bytes=*/1, overlap);
    Result r;
    for (int step = 0; step < 2; ++step) {  // the second step reuses the hooks
      sync.zero();
      for (int i = begin; i < end; ++i) {
        auto h = xs[i] * (step + 1);
        for (int k = 0; k < 4; ++k) h = torch::tanh(h.matmul(params[k]));
        if (i == 3) h = h + params[4];
        sync.backward(h.pow(2).mean().div(4), i + 1 == end);
      }
      sync.finish();
    }
    for (const auto& p : params)
      r.grads.push_back(p.grad().defined() ? p.grad().clone() : p.grad());
    r.buckets = sync.buckets();
    r.overlapped = sync.overlapped_buckets();
    // Outside a step's last backward the hooks leave autograd alone.
    params[0].mutable_grad() = at::Tensor();
    xs[0].matmul(params[0]).sum().backward();
    r.plain_backward_after_the_step = params[0].grad().defined();
    return r;
  };
  const Result single = run(nullptr, 0, 4, true);
  ASSERT_EQ(single.buckets, 5);
  EXPECT_EQ(single.overlapped, 0) << "one process has nothing to reduce";
  for (const bool overlap : {true, false}) {
    std::vector<Result> results(2);
    with_two_ranks([&](dist::DistContext& g) {
      results[static_cast<std::size_t>(g.rank())] =
          run(&g, 2 * g.rank(), 2 * g.rank() + 2, overlap);
    });
    for (int rank = 0; rank < 2; ++rank) {
      const auto& r = results[static_cast<std::size_t>(rank)];
      ASSERT_EQ(r.grads.size(), 5u);
      for (std::size_t k = 0; k < 5; ++k) {
        ASSERT_TRUE(r.grads[k].defined()) << "parameter " << k;
        EXPECT_TRUE(at::equal(r.grads[k], single.grads[k]))
            << "rank " << rank << " parameter " << k << " overlap " << overlap;
      }
      EXPECT_TRUE(r.plain_backward_after_the_step);
      if (overlap) {
        // Rank 0 never reaches the extra parameter, so its bucket starts before backward; the
        // four layers' buckets start inside it (rank 1: all five).
        EXPECT_EQ(r.overlapped, rank == 0 ? 4 : 5) << "rank " << rank;
      } else {
        EXPECT_EQ(r.overlapped, 0);
      }
    }
  }
}

TEST(DistContext, AGroupThatDoesNotFormFailsWithinTheTimeout) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  DistEnv env{0, 2, 0, "127.0.0.1", dist::free_tcp_port()};
  dist::DistOptions options;
  options.timeout = std::chrono::seconds(2);
  const auto start = Clock::now();
  try {
    dist::DistContext::create(env, options);
    FAIL() << "rank 1 never came";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 of 2"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 30.0);
}

#if IRIS_HAVE_NIFTI

std::string tiny_train_command(const fs::path& root, const std::string& name,
                               const std::string& extra_sets) {
  return std::string("'") + IRIS_SOURCE_DIR + "/configs/iris/atlas_2d_tiny.yaml' --threads 1 " +
         "--no-report --set run.root=" + root.string() + " --set run.name=" + name +
         " --set model.base_channels=4 --set model.stages=3 --set model.query_tokens=2"
         " --set model.heads=2 --set data.slice_size=48 --set optim.warmup=2"
         " --set validation.episodes=2 " +
         extra_sets;
}

double max_relative_difference(const models::IrisModel& a, const models::IrisModel& b,
                               int64_t* parameters) {
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  double worst = 0;
  *parameters = 0;
  for (const auto& item : pa) {
    const at::Tensor& x = item.value();
    const at::Tensor& y = pb[item.key()];
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (x - y).abs().max().item<double>() / scale);
    *parameters += x.numel();
  }
  return worst;
}

TEST(DistTrain, TwoProcessesEndWithTheWeightsOfOneProcessWithTheSameGlobalBatch) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!is_mricron_atlas_dir(kMricronTemplates)) {
    GTEST_SKIP() << "mricron-data atlases not installed";
  }
  test::TempDir dir;
  const std::string sets = "--set optim.iterations=4 --set optim.batch=4 --set validation.every=2";
  auto t0 = Clock::now();
  const auto one = test::run_command(test::iris_binary() + " train " +
                                     tiny_train_command(dir.path(), "one", sets));
  const double one_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(one.exit_code, 0) << one.output;
  t0 = Clock::now();
  const auto two = test::run_command(test::iris_binary() + " train " +
                                     tiny_train_command(dir.path(), "two", sets) + " --nproc 2");
  const double two_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(two.exit_code, 0) << two.output;
  std::cout << "[measure] wall time of `iris train` (4 steps, global batch 4): 1 process " << one_s
            << " s, 2 processes " << two_s << " s\n";

  const auto config = load_config<IrisTrainConfig>({(dir / "two/config.yaml").string(), {}});
  const auto a =
      load_iris_checkpoint((dir / "one/checkpoints/last.pt").string(), config.model.options);
  const auto b =
      load_iris_checkpoint((dir / "two/checkpoints/last.pt").string(), config.model.options);
  int64_t parameters = 0;
  const double diff = max_relative_difference(a, b, &parameters);
  std::cout << "[measure] max relative weight difference over " << parameters
            << " parameters after 4 steps: " << diff << "\n";
  EXPECT_LE(diff, 1e-6);

  // Logged values are the global ones: the same rows, up to float summation order.
  const auto rows_one = RunDir::existing(dir / "one").read_metrics();
  const auto rows_two = RunDir::existing(dir / "two").read_metrics();
  ASSERT_EQ(rows_one.size(), rows_two.size());
  for (std::size_t i = 0; i < rows_one.size(); ++i) {
    for (const char* key : {"train/loss", "train/dice", "val/loss", "val/dice"}) {
      if (!rows_one[i].contains(key)) continue;
      ASSERT_TRUE(rows_two[i].contains(key)) << key;
      EXPECT_NEAR(rows_one[i][key].get<double>(), rows_two[i][key].get<double>(), 1e-6)
          << key << " row " << i;
    }
  }
  // Rank 0 alone wrote: one run folder holding one set of files.
  std::set<std::string> folders;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    folders.insert(e.path().filename().string());
  }
  EXPECT_EQ(folders, (std::set<std::string>{"one", "two"}));
  EXPECT_EQ(RunDir::existing(dir / "two").read_summary()["steps"], 4);
}

// A child process running `args` with extra environment variables; output to `log`.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env,
            const fs::path& log) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

std::vector<std::string> train_args(const fs::path& root, const std::string& name) {
  return {IRIS_BINARY,
          "train",
          std::string(IRIS_SOURCE_DIR) + "/configs/iris/atlas_2d_tiny.yaml",
          "--threads",
          "1",
          "--no-report",
          "--dist-timeout",
          "10",
          "--set",
          "run.root=" + root.string(),
          "--set",
          "run.name=" + name,
          "--set",
          "model.base_channels=4",
          "--set",
          "model.stages=3",
          "--set",
          "data.slice_size=48",
          "--set",
          "optim.iterations=100000",
          "--set",
          "optim.batch=2",
          "--set",
          "validation.every=0",
          "--set",
          "checkpoint_every=0"};
}

// Waits until rank 0 logged a step (the group formed and trains) or `pid` ended.
bool wait_for_first_step(const fs::path& metrics, pid_t pid, double limit_s) {
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() < limit_s) {
    if (fs::exists(metrics) && fs::file_size(metrics) > 0) return true;
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Waits for `pid` to end; returns its status and the seconds it took (-1 status: still running
// after `limit_s`, then killed).
std::pair<int, double> wait_exit(pid_t pid, double limit_s) {
  const auto start = Clock::now();
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return {status, std::chrono::duration<double>(Clock::now() - start).count()};
    }
    if (std::chrono::duration<double>(Clock::now() - start).count() > limit_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return {-1, limit_s};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The children of `parent` and their RANK variables.
std::map<int, pid_t> ranks_of(pid_t parent) {
  std::map<int, pid_t> ranks;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    std::ifstream environ_file(e.path() / "environ", std::ios::binary);
    for (std::string var; std::getline(environ_file, var, '\0');) {
      if (var.rfind("RANK=", 0) == 0) ranks[std::stoi(var.substr(5))] = std::stoi(name);
    }
  }
  return ranks;
}

// The generous bound for a rank to notice a dead peer: the 10 s timeout plus start-up and
// scheduling slack on a loaded two-core machine.
constexpr double kStopBoundSeconds = 40;

TEST(DistTrain, AKilledRankMakesItsPeerExitNonZeroWithinTheTimeout) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!is_mricron_atlas_dir(kMricronTemplates)) {
    GTEST_SKIP() << "mricron-data atlases not installed";
  }
  // Rank 1 killed: rank 0 loses a Gloo peer. Rank 0 killed: rank 1 also loses the TCPStore host.
  for (int victim : {1, 0}) {
    SCOPED_TRACE("rank " + std::to_string(victim) + " killed");
    const int survivor = 1 - victim;
    test::TempDir dir;
    const int port = dist::free_tcp_port();
    std::vector<pid_t> pids;
    for (int rank = 0; rank < 2; ++rank) {
      pids.push_back(
          spawn(train_args(dir.path(), "peer"),
                {"RANK=" + std::to_string(rank), "LOCAL_RANK=" + std::to_string(rank),
                 "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)},
                dir / ("rank" + std::to_string(rank) + ".log")));
    }
    if (!wait_for_first_step(dir / "peer/metrics.jsonl", pids[0], 60)) {
      for (pid_t p : pids) wait_exit(p, 0);
      FAIL() << read_text(dir / "rank0.log") << read_text(dir / "rank1.log");
    }
    ::kill(pids[victim], SIGKILL);
    ::waitpid(pids[victim], nullptr, 0);
    const auto [status, seconds] = wait_exit(pids[survivor], 120);
    std::cout << "[measure] rank " << survivor << " stopped " << seconds << " s after rank "
              << victim << " was killed\n";
    const std::string log = read_text(dir / ("rank" + std::to_string(survivor) + ".log"));
    ASSERT_NE(status, -1) << "the surviving rank hung: " << log;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 4) << log;
    EXPECT_LT(seconds, kStopBoundSeconds);
    EXPECT_NE(log.find("rank " + std::to_string(survivor) + " of 2"), std::string::npos) << log;
    EXPECT_FALSE(fs::exists(dir / "peer/summary.json"));
  }
}

TEST(DistTrain, AFrozenRankMakesItsPeerFailAfterTheTimeout) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!is_mricron_atlas_dir(kMricronTemplates)) {
    GTEST_SKIP() << "mricron-data atlases not installed";
  }
  // A stopped process keeps its connections open: only the 10 s timeout can end the wait.
  test::TempDir dir;
  const int port = dist::free_tcp_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(spawn(train_args(dir.path(), "frozen"),
                         {"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                          "MASTER_PORT=" + std::to_string(port)},
                         dir / ("rank" + std::to_string(rank) + ".log")));
  }
  if (!wait_for_first_step(dir / "frozen/metrics.jsonl", pids[0], 60)) {
    for (pid_t p : pids) wait_exit(p, 0);
    FAIL() << read_text(dir / "rank0.log") << read_text(dir / "rank1.log");
  }
  ::kill(pids[1], SIGSTOP);
  const auto [status, seconds] = wait_exit(pids[0], 120);
  ::kill(pids[1], SIGKILL);
  ::waitpid(pids[1], nullptr, 0);
  std::cout << "[measure] rank 0 stopped " << seconds << " s after rank 1 froze (timeout 10 s)\n";
  const std::string log = read_text(dir / "rank0.log");
  ASSERT_NE(status, -1) << "rank 0 hung: " << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 4) << log;
  EXPECT_GE(seconds, 5.0) << "a frozen peer is noticed by the timeout, not at once";
  EXPECT_LT(seconds, kStopBoundSeconds);
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  std::cout << "[message] " << log.substr(log.rfind("rank 0 of 2")) << "\n";
}

TEST(DistTrain, TheLauncherStopsTheOtherRanksWhenOneIsKilled) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!is_mricron_atlas_dir(kMricronTemplates)) {
    GTEST_SKIP() << "mricron-data atlases not installed";
  }
  test::TempDir dir;
  auto args = train_args(dir.path(), "launched");
  args.insert(args.end(), {"--nproc", "2"});
  const pid_t launcher = spawn(args, {}, dir / "launcher.log");
  if (!wait_for_first_step(dir / "launched/metrics.jsonl", launcher, 60)) {
    wait_exit(launcher, 0);
    FAIL() << read_text(dir / "launcher.log");
  }
  const auto ranks = ranks_of(launcher);
  ASSERT_EQ(ranks.size(), 2u) << read_text(dir / "launcher.log");
  ::kill(ranks.at(1), SIGKILL);
  const auto [status, seconds] = wait_exit(launcher, 120);
  std::cout << "[measure] the launcher exited " << seconds << " s after rank 1 was killed\n";
  const std::string log = read_text(dir / "launcher.log");
  ASSERT_NE(status, -1) << "the launcher hung: " << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 4) << log;
  EXPECT_LT(seconds, kStopBoundSeconds);
  EXPECT_NE(log.find("rank 1 (pid " + std::to_string(ranks.at(1)) + ") was killed by signal 9"),
            std::string::npos)
      << log;
  EXPECT_TRUE(ranks_of(launcher).empty()) << "no rank outlives the launcher";
  EXPECT_NE(::kill(ranks.at(0), 0), 0) << "rank 0 is gone";
}

#endif  // IRIS_HAVE_NIFTI

}  // namespace
}  // namespace iris
