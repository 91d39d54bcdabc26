#include "train/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

extern char** environ;

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/progress.h"
#include "train/recipes.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string join_key(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

// Forwards every field to `inner` except those `skip` names (dotted keys), so one struct can be
// read, written and listed without some of its fields.
class FilteredVisitor final : public ConfigVisitor {
 public:
  using Skip = std::function<bool(const std::string&)>;
  FilteredVisitor(ConfigVisitor& inner, Skip skip, std::string prefix = "")
      : inner_(inner), skip_(std::move(skip)), prefix_(std::move(prefix)) {}
  using ConfigVisitor::section;
  using ConfigVisitor::section_list;

  void field(const char* k, bool& v, const char* h) override { forward(k, v, h); }
  void field(const char* k, int& v, const char* h) override { forward(k, v, h); }
  void field(const char* k, std::int64_t& v, const char* h) override { forward(k, v, h); }
  void field(const char* k, double& v, const char* h) override { forward(k, v, h); }
  void field(const char* k, std::string& v, const char* h) override { forward(k, v, h); }
  void field(const char* k, std::vector<std::string>& v, const char* h) override {
    forward(k, v, h);
  }
  void field(const char* k, std::vector<std::int64_t>& v, const char* h) override {
    forward(k, v, h);
  }
  void field(const char* k, std::vector<double>& v, const char* h) override { forward(k, v, h); }
  void choice(const char* k, std::string& v, std::vector<std::string> c, const char* h) override {
    if (!skip_(join_key(prefix_, k))) inner_.choice(k, v, std::move(c), h);
  }
  void section(const char* k, const std::function<void(ConfigVisitor&)>& body) override {
    const std::string key = join_key(prefix_, k);
    if (skip_(key)) return;
    inner_.section(k, [&](ConfigVisitor& child) {
      FilteredVisitor filtered(child, skip_, key);
      body(filtered);
    });
  }
  void section_list(const char* k, std::size_t count, const std::function<void(std::size_t)>& resize,
                    const std::function<void(ConfigVisitor&, std::size_t)>& item,
                    const std::function<void(ConfigVisitor&)>& prototype,
                    const char* h) override {
    const std::string key = join_key(prefix_, k);
    if (skip_(key)) return;
    inner_.section_list(
        k, count, resize,
        [&](ConfigVisitor& child, std::size_t i) {
          FilteredVisitor filtered(child, skip_, key + "[]");
          item(filtered, i);
        },
        [&](ConfigVisitor& child) {
          FilteredVisitor filtered(child, skip_, key + "[]");
          prototype(filtered);
        },
        h);
  }

 private:
  template <typename T>
  void forward(const char* k, T& v, const char* h) {
    if (!skip_(join_key(prefix_, k))) inner_.field(k, v, h);
  }
  ConfigVisitor& inner_;
  Skip skip_;
  std::string prefix_;
};

// "key=value" lines of every field, in declaration order: the identity a run id hashes.
class FingerprintVisitor final : public ConfigVisitor {
 public:
  explicit FingerprintVisitor(std::string& out, std::string prefix = "")
      : out_(out), prefix_(std::move(prefix)) {}
  using ConfigVisitor::section;
  using ConfigVisitor::section_list;

  void field(const char* k, bool& v, const char*) override { add(k, v ? "true" : "false"); }
  void field(const char* k, int& v, const char*) override { add(k, std::to_string(v)); }
  void field(const char* k, std::int64_t& v, const char*) override { add(k, std::to_string(v)); }
  void field(const char* k, double& v, const char*) override { add(k, fmt::format("{}", v)); }
  void field(const char* k, std::string& v, const char*) override { add(k, text(v)); }
  void field(const char* k, std::vector<std::string>& v, const char*) override {
    std::string s;
    for (const auto& x : v) s += text(x) + ",";
    add(k, "[" + s + "]");
  }
  void field(const char* k, std::vector<std::int64_t>& v, const char*) override {
    add(k, fmt::format("[{}]", fmt::join(v, ",")));
  }
  void field(const char* k, std::vector<double>& v, const char*) override {
    add(k, fmt::format("[{}]", fmt::join(v, ",")));
  }
  void choice(const char* k, std::string& v, std::vector<std::string>, const char*) override {
    add(k, text(v));
  }
  void section(const char* k, const std::function<void(ConfigVisitor&)>& body) override {
    FingerprintVisitor child(out_, join_key(prefix_, k));
    body(child);
  }
  void section_list(const char* k, std::size_t count, const std::function<void(std::size_t)>&,
                    const std::function<void(ConfigVisitor&, std::size_t)>& item,
                    const std::function<void(ConfigVisitor&)>&, const char*) override {
    add(k, fmt::format("list of {}", count));
    for (std::size_t i = 0; i < count; ++i) {
      FingerprintVisitor child(out_, fmt::format("{}[{}]", join_key(prefix_, k), i));
      item(child, i);
    }
  }

 private:
  // Length-prefixed, so no value can imitate a line break or a separator.
  static std::string text(const std::string& s) { return fmt::format("{}:{}", s.size(), s); }
  void add(const char* k, const std::string& v) { out_ += join_key(prefix_, k) + "=" + v + "\n"; }
  std::string& out_;
  std::string prefix_;
};

// Keys of a run's Sam2TrainConfig that the sweep sets, with where their value comes from.
const std::map<std::string, std::string>& per_run_keys() {
  static const std::map<std::string, std::string> keys = {
      {"run.name", "the run's name"},
      {"run.root", "sweep.root and sweep.name"},
      {"run.seed", "sweep.seeds"},
      {"recipe", "sweep.recipes"},
      {"baseline", "sweep.baselines"},
      {"model.prompt_type", "sweep.prompt_types"},
      {"model.trainable_modules", "the recipe"},
      {"data.name", "the dataset's name under datasets:"},
      {"data.train", "datasets.<name>.train"},
      {"data.val", "datasets.<name>.val"},
      {"data.test", "datasets.<name>.test"},
      {"data.clip_length", "datasets.<name>.clip_length"},
      {"data.clip_stride", "datasets.<name>.clip_stride"},
  };
  return keys;
}

bool is_per_run_key(const std::string& key) {
  return per_run_keys().count(key) > 0;
}

// Fields that change how a run is computed but not what it computes.
bool is_not_identity(const std::string& key) {
  return key == "run.name" || key == "run.root" || key == "run.device" || key == "run.threads" ||
         key == "model.trainable_modules";
}

std::string where(const ConfigSource& source, const std::string& key, const YAML::Node& node) {
  for (auto it = source.overrides.rbegin(); it != source.overrides.rend(); ++it) {
    const std::string target = it->substr(0, it->find('='));
    if (target == key || key.rfind(target + ".", 0) == 0) return fmt::format("--set {}", *it);
  }
  std::string w = source.file.empty() ? std::string("config") : source.file;
  if (!source.file.empty() && node.Mark().line >= 0) w += fmt::format(":{}", node.Mark().line + 1);
  return w;
}

void reject_per_run_keys(const YAML::Node& base, const ConfigSource& source) {
  for (const auto& item : base) {
    const std::string key = item.first.Scalar();
    std::vector<std::string> found;
    if (item.second.IsMap()) {
      for (const auto& sub : item.second) {
        if (is_per_run_key(key + "." + sub.first.Scalar())) {
          const std::string full = key + "." + sub.first.Scalar();
          throw ConfigError(fmt::format(
              "{}: key 'base.{}' is set per run by the sweep (from {}); remove it from base:",
              where(source, "base." + full, sub.first), full, per_run_keys().at(full)));
        }
      }
    } else if (is_per_run_key(key)) {
      throw ConfigError(fmt::format(
          "{}: key 'base.{}' is set per run by the sweep (from {}); remove it from base:",
          where(source, "base." + key, item.first), key, per_run_keys().at(key)));
    }
  }
}

bool safe_name(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

std::string hex_hash(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a, 64 bit: stable across platforms
  for (const unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:08x}", static_cast<std::uint32_t>(h ^ (h >> 32)));
}

template <typename T>
void reject_repeats(const std::vector<T>& values, const char* key) {
  std::set<T> seen;
  for (const auto& v : values) {
    if (!seen.insert(v).second) throw ConfigError(fmt::format("{}: '{}' is given twice", key, v));
  }
}

void say(const SweepOptions& options, const std::string& line) {
  if (options.progress) {
    options.progress(line);
  } else {
    spdlog::info("{}", line);
  }
}

// Renames the folder aside first, so a crash during the delete never leaves a half-removed run
// under the run's own name.
void remove_run_folder(const fs::path& dir) {
  const fs::path aside =
      dir.parent_path() / fmt::format(".{}.removing-{}", dir.filename().string(), ::getpid());
  fs::remove_all(aside);
  fs::rename(dir, aside);
  fs::remove_all(aside);
}

void record_failure(const fs::path& dir, const std::string& error, const fs::path& log) {
  fs::create_directories(dir);
  const nlohmann::json summary = {{"state", "failed"}, {"error", error}, {"log", log.string()}};
  write_file_atomic(dir / "summary.json", summary.dump(2) + "\n");
}

struct Outcome {
  bool ok = false;
  std::string message;  // why it failed, with the log's path
};

// An interrupted run that saved its state after an epoch (the baseline being epoch 0) continues
// from it; any other unfinished run starts again from scratch.
bool resumable(SweepRunState state, const fs::path& dir) {
  return state == SweepRunState::kInterrupted && fs::is_regular_file(dir / "config.yaml") &&
         fs::is_regular_file(dir / "checkpoints" / "resume.pt");
}

Outcome run_in_process(const SweepRun& run, const fs::path& dir, bool resume) {
  try {
    TrainSession session;
    if (resume) session.resume = dir.string();
    train_sam2(run.config, session, nullptr);
    stop_log_file();
    return {true, ""};
  } catch (const std::exception& e) {
    spdlog::error("run {} failed: {}", run.name, e.what());
    stop_log_file();
    const fs::path log = dir / "log.txt";
    record_failure(dir, e.what(), log);
    return {false, fmt::format("{} (log: {})", e.what(), log.string())};
  }
}

// A held flock on <sweep_dir>/.lock; the kernel drops it when the process dies, however it dies.
class SweepLock {
 public:
  explicit SweepLock(const fs::path& dir) {
    const fs::path path = dir / ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw RuntimeFailure(
          file_message(path.string(), std::string("cannot open: ") + std::strerror(errno)));
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw RuntimeFailure(fmt::format(
          "{}: another `iris sweep` is running on this sweep; wait for it or stop it first",
          dir.string()));
    }
  }
  ~SweepLock() { ::close(fd_); }
  SweepLock(const SweepLock&) = delete;
  SweepLock& operator=(const SweepLock&) = delete;

 private:
  int fd_ = -1;
};

// `exe args...` with stdout and stderr into `log`. Workers die with the sweep (Linux), so a
// killed sweep leaves no orphan writing into a run folder that the next sweep restarts.
pid_t spawn_worker(const std::string& exe, const std::vector<std::string>& args,
                   const std::vector<std::string>& extra_env, const fs::path& log) {
  std::vector<std::string> strings{exe};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  // The parent's environment with `extra_env` replacing variables of the same name; built
  // before fork, since the child may only make async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    const bool replaced = std::any_of(extra_env.begin(), extra_env.end(), [&](const auto& x) {
      return x.compare(0, name.size() + 1, name + "=") == 0;
    });
    if (!replaced) env_strings.push_back(entry);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw RuntimeFailure(
        file_message(log.string(), std::string("cannot write: ") + std::strerror(errno)));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
#ifdef __linux__
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fd);
  if (pid < 0)
    throw RuntimeFailure(std::string("cannot start a sweep worker: ") + std::strerror(errno));
  return pid;
}

std::string exit_text(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return "stopped";
}

}  // namespace

std::vector<int> parse_gpu_list(const std::string& text, int available) {
  const std::string usage = "give CUDA device indices such as 0,1 or all";
  auto no_device = [] {
    return UsageError("--gpus: no CUDA device is visible (this machine or build has none)");
  };
  if (text == "all") {
    if (available == 0) throw no_device();
    std::vector<int> all;
    for (int i = 0; i < available; ++i) all.push_back(i);
    return all;  // empty when unknown: Slurm decides
  }
  if (text.empty()) throw UsageError("--gpus: empty; " + usage);
  std::vector<int> gpus;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t end = std::min(text.find(',', begin), text.size());
    const std::string token = text.substr(begin, end - begin);
    const bool digits = !token.empty() && token.size() <= 4 &&
                        std::all_of(token.begin(), token.end(),
                                    [](unsigned char c) { return std::isdigit(c) != 0; });
    if (!digits) {
      throw UsageError(
          fmt::format("--gpus: '{}' is not a GPU index in '{}'; {}", token, text, usage));
    }
    const int gpu = std::stoi(token);
    if (std::find(gpus.begin(), gpus.end(), gpu) != gpus.end()) {
      throw UsageError(fmt::format("--gpus: GPU {} is listed twice in '{}'", gpu, text));
    }
    if (available == 0) throw no_device();
    if (available > 0 && gpu >= available) {
      throw UsageError(
          fmt::format("--gpus: GPU {} does not exist: this machine has {} CUDA "
                      "device{} (0..{})",
                      gpu, available, available > 1 ? "s" : "", available - 1));
    }
    gpus.push_back(gpu);
    begin = end + 1;
  }
  return gpus;
}

WorkerLaunch worker_launch(const std::string& config_path, int64_t index, int64_t slot,
                           const std::vector<int>& gpus,
                           const std::vector<std::string>& extra_args) {
  WorkerLaunch w;
  w.args = {"sweep", config_path, "--task", std::to_string(index)};
  w.args.insert(w.args.end(), extra_args.begin(), extra_args.end());
  if (!gpus.empty()) {
    // The child sees only its GPU, as cuda:0: run folders and configs stay free of indices.
    w.gpu = gpus[static_cast<std::size_t>(slot) % gpus.size()];
    w.env.push_back(fmt::format("CUDA_VISIBLE_DEVICES={}", w.gpu));
    w.args.insert(w.args.end(), {"--device", "cuda"});
  }
  return w;
}

std::vector<int> plan_gpus(int64_t runs, int64_t workers, const std::vector<int>& gpus) {
  std::vector<int> plan;
  if (gpus.empty())
    return std::vector<int>(static_cast<std::size_t>(std::max<int64_t>(runs, 0)), -1);
  const int64_t slots = std::max<int64_t>(workers, 1);
  for (int64_t i = 0; i < runs; ++i) {
    plan.push_back(gpus[static_cast<std::size_t>(i % slots) % gpus.size()]);
  }
  return plan;
}

void SweepConfig::Dataset::visit(ConfigVisitor& v) {
  v.field("train", train, "training videos (native layout or COCO-video JSON)");
  v.field("val", val, "validation videos: evaluated every epoch, choose the best epoch");
  v.field("test", test, "test videos, scored once with the chosen weights (empty: none)");
  v.field("clip_length", clip_length, "frames per training clip");
  v.field("clip_stride", clip_stride, "frames between the starts of consecutive clips");
}

void SweepConfig::visit(ConfigVisitor& v) {
  v.section("sweep", [&](ConfigVisitor& s) {
    s.field("name", sweep.name, "runs go to <root>/<name>/<run name>");
    s.field("root", sweep.root, "parent folder of sweeps");
    s.field("datasets", sweep.datasets, "names under datasets:, in run order");
    s.field("prompt_types", sweep.prompt_types, "point, box and/or mask");
    s.field("recipes", sweep.recipes, "SAM2 parts that train, joined by '+': ie, pe, md, mem");
    s.field("seeds", sweep.seeds, "one run per seed; baselines use the first");
    s.field("baselines", sweep.baselines, "one untrained evaluation per (dataset, prompt type)");
    s.field("workers", sweep.workers, "runs at a time on this machine");
  });
  v.section("datasets", [&](ConfigVisitor& d) {
    for (auto& [name, dataset] : datasets) d.section(name.c_str(), dataset);
  });
  v.section("base", [&](ConfigVisitor& b) {
    FilteredVisitor filtered(b, is_per_run_key);
    base.visit(filtered);
  });
}

SweepConfig load_sweep_config(const ConfigSource& source) {
  const YAML::Node tree = load_yaml_tree(source);
  SweepConfig config;
  if (const YAML::Node base = tree["base"]; base && base.IsMap()) reject_per_run_keys(base, source);
  if (const YAML::Node datasets = tree["datasets"]; datasets && datasets.IsMap()) {
    for (const auto& item : datasets) config.datasets[item.first.Scalar()];
  }
  bind_config(tree, source, [&](ConfigVisitor& v) { config.visit(v); });
  return config;
}

std::string sweep_dir(const SweepConfig& config) {
  return (fs::path(config.sweep.root) / config.sweep.name).string();
}

std::string sweep_run_id(const Sam2TrainConfig& config) {
  Sam2TrainConfig copy = config;
  std::string text;
  FingerprintVisitor fingerprint(text);
  FilteredVisitor filtered(fingerprint, is_not_identity);
  copy.visit(filtered);
  return hex_hash(text);
}

std::vector<SweepRun> expand_sweep(const SweepConfig& config) {
  const auto& s = config.sweep;
  if (!safe_name(s.name)) {
    throw ConfigError(fmt::format(
        "sweep.name '{}': expected a folder name of letters, digits, '_', '-' and '.'", s.name));
  }
  if (s.datasets.empty()) throw ConfigError("sweep.datasets: name at least one dataset");
  if (s.prompt_types.empty()) throw ConfigError("sweep.prompt_types: give point, box and/or mask");
  if (s.seeds.empty()) throw ConfigError("sweep.seeds: give at least one seed");
  if (s.recipes.empty() && !s.baselines) {
    throw ConfigError("sweep.recipes is empty and sweep.baselines false: nothing to run");
  }
  if (s.workers < 1) throw ConfigError("sweep.workers must be >= 1");
  reject_repeats(s.datasets, "sweep.datasets");
  reject_repeats(s.prompt_types, "sweep.prompt_types");
  reject_repeats(s.seeds, "sweep.seeds");
  for (const auto& p : s.prompt_types) {
    if (p != "point" && p != "box" && p != "mask") {
      throw ConfigError(fmt::format("sweep.prompt_types: '{}' is not one of point, box, mask", p));
    }
  }
  std::vector<std::string> recipes;
  for (const auto& text : s.recipes) {
    Recipe recipe;
    try {
      recipe = parse_recipe(text, sam2_parameter_groups());
    } catch (const UsageError& e) {
      throw ConfigError(std::string("sweep.recipes: ") + e.what());
    }
    if (recipe.groups.empty()) {
      throw ConfigError(fmt::format(
          "sweep.recipes: '{}' trains nothing; baselines come from sweep.baselines", text));
    }
    recipes.push_back(recipe.name());
  }
  reject_repeats(recipes, "sweep.recipes");
  std::vector<std::string> defined;
  for (const auto& [name, d] : config.datasets) defined.push_back(name);
  for (const auto& name : s.datasets) {
    const auto it = config.datasets.find(name);
    if (it == config.datasets.end()) {
      std::string message =
          fmt::format("sweep.datasets names '{}', which is not under datasets:", name);
      if (const auto best = closest_match(name, defined)) {
        message += fmt::format(" (did you mean '{}'?)", *best);
      } else {
        message +=
            fmt::format(" (defined: {})",
                        defined.empty() ? "none" : fmt::format("{}", fmt::join(defined, ", ")));
      }
      throw ConfigError(message);
    }
    if (!safe_name(name)) {
      throw ConfigError(fmt::format(
          "datasets.{}: dataset names go into folder names; use letters, digits, '_', '-', '.'",
          name));
    }
    const auto& d = it->second;
    if (d.val.empty())
      throw ConfigError(fmt::format("datasets.{}.val: a validation split is required", name));
    if (!recipes.empty() && d.train.empty()) {
      throw ConfigError(fmt::format("datasets.{}.train: a training split is required", name));
    }
    if (d.clip_length < 1 || d.clip_stride < 1) {
      throw ConfigError(fmt::format("datasets.{}: clip_length and clip_stride must be >= 1", name));
    }
  }
  if (!recipes.empty() && config.base.train.max_epochs < 1) {
    throw ConfigError(
        "base.train.max_epochs must be >= 1 (untrained runs come from sweep.baselines)");
  }

  const std::string root = sweep_dir(config);
  auto make = [&](const std::string& dataset, const std::string& prompt, const std::string& recipe,
                  std::int64_t seed, bool baseline) {
    SweepRun run;
    run.dataset = dataset;
    run.prompt_type = prompt;
    run.recipe = baseline ? "none" : recipe;
    run.seed = seed;
    run.baseline = baseline;
    Sam2TrainConfig& c = run.config;
    c = config.base;
    if (baseline) {
      // Training settings cannot change an untrained evaluation, so they stay out of its id:
      // tuning the learning rate does not re-run the baselines.
      c.train = Sam2TrainConfig::Train{};
      c.train.max_epochs = 0;
      c.loss = Sam2TrainConfig::Loss{};
    }
    const auto& d = config.datasets.at(dataset);
    c.run.root = root;
    c.run.seed = seed;
    c.recipe = run.recipe;
    c.baseline = baseline;
    c.model.prompt_type = prompt;
    c.model.trainable_modules.clear();
    c.data.name = dataset;
    c.data.train = d.train;
    c.data.val = d.val;
    c.data.test = d.test;
    c.data.clip_length = d.clip_length;
    c.data.clip_stride = d.clip_stride;
    run.id = sweep_run_id(c);
    run.name = fmt::format("{}_{}_{}__{}", dataset, prompt, run.recipe, run.id);
    if (!baseline && s.seeds.size() > 1) run.name += fmt::format("_s{}", seed);
    c.run.name = run.name;
    return run;
  };
  std::vector<SweepRun> runs;
  if (s.baselines) {
    for (const auto& d : s.datasets) {
      for (const auto& p : s.prompt_types)
        runs.push_back(make(d, p, "none", s.seeds.front(), true));
    }
  }
  for (const auto& d : s.datasets) {
    for (const auto& p : s.prompt_types) {
      for (const auto& r : recipes) {
        for (const auto seed : s.seeds) runs.push_back(make(d, p, r, seed, false));
      }
    }
  }
  std::set<std::string> names;
  for (const auto& r : runs) {
    if (!names.insert(r.name).second)
      throw ConfigError("two runs of the sweep are named " + r.name);
  }
  return runs;
}

SweepRunState sweep_run_state(const std::string& run_dir) {
  const fs::path dir(run_dir);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return SweepRunState::kPending;
  const fs::path summary = dir / "summary.json";
  if (!fs::exists(summary, ec)) return SweepRunState::kInterrupted;
  const auto j = nlohmann::json::parse(read_file(summary), nullptr, false);
  if (!j.is_object() || !j.contains("state") || !j["state"].is_string()) {
    return SweepRunState::kInterrupted;
  }
  const auto state = j["state"].get<std::string>();
  if (state == "finished") return SweepRunState::kFinished;
  if (state == "failed") return SweepRunState::kFailed;
  return SweepRunState::kInterrupted;
}

const char* sweep_run_state_name(SweepRunState state) {
  switch (state) {
    case SweepRunState::kPending:
      return "pending";
    case SweepRunState::kInterrupted:
      return "interrupted";
    case SweepRunState::kFinished:
      return "finished";
    case SweepRunState::kFailed:
      return "failed";
  }
  return "unknown";
}

SweepResult run_sweep_task(const SweepConfig& config, std::int64_t index,
                           const std::function<void(const std::string&)>& progress) {
  const auto runs = expand_sweep(config);
  if (index < 0 || index >= static_cast<std::int64_t>(runs.size())) {
    throw UsageError(fmt::format("--task {}: the sweep has {} runs (tasks 0 to {})", index,
                                 runs.size(), static_cast<std::int64_t>(runs.size()) - 1));
  }
  SweepOptions options;
  options.progress = progress;
  const auto& run = runs[static_cast<std::size_t>(index)];
  SweepResult result;
  result.total = 1;
  result.sweep_dir = sweep_dir(config);
  const fs::path dir = fs::path(result.sweep_dir) / run.name;
  const auto state = sweep_run_state(dir.string());
  if (state == SweepRunState::kFinished) {
    result.skipped = 1;
    say(options, fmt::format("task {}: run {} has already finished", index, run.name));
    return result;
  }
  const bool resume = resumable(state, dir);
  if (resume) {
    say(options, fmt::format("task {}: run {} was interrupted; resuming it after its last epoch",
                             index, run.name));
    result.resumed = 1;
  } else if (state != SweepRunState::kPending) {
    say(options, fmt::format("task {}: run {} was {}; starting it again", index, run.name,
                             sweep_run_state_name(state)));
    remove_run_folder(dir);
    result.restarted = 1;
  }
  const auto start = Clock::now();
  const Outcome outcome = run_in_process(run, dir, resume);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!outcome.ok)
    throw RuntimeFailure(fmt::format("run {} failed: {}", run.name, outcome.message));
  result.ran = 1;
  return result;
}

SweepResult run_sweep(const SweepConfig& config, const SweepOptions& options) {
  const auto start = Clock::now();
  const auto runs = expand_sweep(config);
  // One worker per GPU unless --workers says otherwise.
  const std::int64_t workers = options.workers > 0 ? options.workers
                               : !options.gpus.empty()
                                   ? static_cast<std::int64_t>(options.gpus.size())
                                   : config.sweep.workers;
  const bool in_process = options.executable.empty();
  if (in_process && !options.gpus.empty()) {
    throw UsageError("--gpus needs the iris executable to start worker processes");
  }
  if (!in_process && workers < 1) throw UsageError("--workers must be >= 1");
  if (in_process && workers > 1) {
    throw UsageError("several workers need the iris executable to start worker processes");
  }
  SweepResult result;
  result.total = static_cast<std::int64_t>(runs.size());
  result.sweep_dir = sweep_dir(config);
  const fs::path root(result.sweep_dir);

  std::vector<std::size_t> todo;
  std::vector<SweepRunState> states;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto state = sweep_run_state((root / runs[i].name).string());
    states.push_back(state);
    if (state == SweepRunState::kFinished) {
      ++result.skipped;
    } else {
      todo.push_back(i);
    }
  }
  std::int64_t baselines = 0;
  for (const auto& r : runs) baselines += r.baseline;
  say(options,
      fmt::format(
          "sweep {}: {} runs ({} baselines) in {}; {} finished before, {} to run{}",
          config.sweep.name, runs.size(), baselines, root.string(), result.skipped, todo.size(),
          todo.empty() ? "" : fmt::format(" with {} worker{}", workers, workers > 1 ? "s" : "")));
  if (options.dry_run) {
    const auto plan = plan_gpus(static_cast<std::int64_t>(todo.size()), workers, options.gpus);
    if (!options.gpus.empty()) {
      say(options, fmt::format("  GPUs {}: worker k runs on GPU k mod {} (CUDA_VISIBLE_DEVICES "
                               "set, --device cuda); a new run takes the GPU of the worker that "
                               "finished",
                               fmt::join(options.gpus, ","), options.gpus.size()));
    }
    std::size_t position = 0;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const bool skip = states[i] == SweepRunState::kFinished;
      std::string gpu;
      if (!skip && !options.gpus.empty()) gpu = fmt::format(", GPU {}", plan[position]);
      if (!skip) ++position;
      say(options,
          fmt::format("  [{}] {}  {}{}{}", i, runs[i].name, sweep_run_state_name(states[i]),
                      skip                                        ? ", skipped"
                      : states[i] == SweepRunState::kPending      ? ""
                      : resumable(states[i], root / runs[i].name) ? ", resumes"
                                                                  : ", starts again",
                      gpu));
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result;
  }

  fs::create_directories(root / "logs");
  const SweepLock lock(root);
  // Stale halves of an interrupted removal.
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string n = entry.path().filename().string();
    if (n.size() > 1 && n[0] == '.' && n.find(".removing-") != std::string::npos)
      fs::remove_all(entry.path());
  }
  const fs::path resolved = root / "sweep.yaml";
  write_file_atomic(resolved, dump_config(config));

  std::vector<double> durations;
  auto report_progress = [&] {
    const std::int64_t done = result.skipped + result.ran + result.failed;
    const std::int64_t left = result.total - done;
    std::string eta = "unknown";
    if (!durations.empty()) {
      double mean = 0;
      for (const double d : durations) mean += d;
      mean /= static_cast<double>(durations.size());
      const auto parallel = std::max<std::int64_t>(1, std::min(workers, left));
      eta = Progress::format_duration(mean * static_cast<double>(left) /
                                      static_cast<double>(parallel));
    }
    say(options,
        left == 0 ? fmt::format("{}/{} runs done", done, result.total)
                  : fmt::format("{}/{} runs done, {} left, ETA {}", done, result.total, left, eta));
  };
  // Whether run i resumes; a run that does not and was begun before is removed first.
  auto prepare = [&](std::size_t i) {
    const auto& run = runs[i];
    if (resumable(states[i], root / run.name)) {
      say(options,
          fmt::format("run {} was interrupted; resuming it after its last epoch", run.name));
      ++result.resumed;
      return true;
    }
    if (states[i] != SweepRunState::kPending) {
      say(options, fmt::format("run {} was {}; starting it again from scratch", run.name,
                               sweep_run_state_name(states[i])));
      remove_run_folder(root / run.name);
      ++result.restarted;
    }
    return false;
  };
  auto finished = [&](std::size_t i, double seconds, const Outcome& outcome) {
    durations.push_back(seconds);
    if (outcome.ok) {
      ++result.ran;
      say(options,
          fmt::format("run {} finished in {}", runs[i].name, Progress::format_duration(seconds)));
    } else {
      ++result.failed;
      result.failed_runs.push_back(runs[i].name + ": " + outcome.message);
      say(options, fmt::format("run {} failed: {}", runs[i].name, outcome.message));
    }
    report_progress();
  };

  if (in_process) {
    for (const std::size_t i : todo) {
      const bool resume = prepare(i);
      say(options, fmt::format("run {} started ({} of {})", runs[i].name, i + 1, runs.size()));
      const auto t0 = Clock::now();
      const Outcome outcome = run_in_process(runs[i], root / runs[i].name, resume);
      finished(i, std::chrono::duration<double>(Clock::now() - t0).count(), outcome);
    }
  } else {
    // Worker threads default to all cores each; share them instead.
    std::vector<std::string> thread_args;
    if (config.base.run.threads == 0 && workers > 1) {
      const auto cores =
          static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
      thread_args = {"--threads", std::to_string(std::max<std::int64_t>(1, cores / workers))};
    }
    struct Worker {
      std::size_t index;
      Clock::time_point start;
      fs::path log;
      std::int64_t slot;  // which worker: fixes its GPU
    };
    std::map<pid_t, Worker> running;
    std::vector<bool> slot_busy(static_cast<std::size_t>(workers), false);
    std::size_t next = 0;
    while (next < todo.size() || !running.empty()) {
      while (next < todo.size() && static_cast<std::int64_t>(running.size()) < workers) {
        const std::size_t i = todo[next++];
        prepare(i);
        const fs::path log = root / "logs" / (runs[i].name + ".log");
        const auto slot = static_cast<std::int64_t>(
            std::find(slot_busy.begin(), slot_busy.end(), false) - slot_busy.begin());
        const auto launch = worker_launch(resolved.string(), static_cast<std::int64_t>(i), slot,
                                          options.gpus, thread_args);
        const pid_t pid = spawn_worker(options.executable, launch.args, launch.env, log);
        slot_busy[static_cast<std::size_t>(slot)] = true;
        running[pid] = {i, Clock::now(), log, slot};
        say(options, fmt::format("run {} started ({} of {}, worker pid {}{})", runs[i].name, i + 1,
                                 runs.size(), pid,
                                 launch.gpu >= 0 ? fmt::format(", GPU {}", launch.gpu) : ""));
      }
      bool reaped = false;
      for (auto it = running.begin(); it != running.end();) {
        int status = 0;
        const pid_t r = ::waitpid(it->first, &status, WNOHANG);
        if (r == 0 || (r < 0 && errno == EINTR)) {
          ++it;
          continue;
        }
        const Worker w = it->second;
        it = running.erase(it);
        slot_busy[static_cast<std::size_t>(w.slot)] = false;
        reaped = true;
        const fs::path dir = root / runs[w.index].name;
        const auto state = sweep_run_state(dir.string());
        Outcome outcome;
        if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            state == SweepRunState::kFinished) {
          outcome.ok = true;
        } else {
          outcome.message =
              fmt::format("{} (log: {})", r > 0 ? exit_text(status) : "lost", w.log.string());
          if (state != SweepRunState::kFailed) record_failure(dir, outcome.message, w.log);
        }
        finished(w.index, std::chrono::duration<double>(Clock::now() - w.start).count(), outcome);
      }
      if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

std::string slurm_script(const SweepConfig& config, const std::string& config_path,
                         const std::string& executable, bool gpu_per_task) {
  const auto runs = expand_sweep(config);
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const std::string dir = sweep_dir(config);
  const std::string& device = config.base.run.device;
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name=iris-{}\n", config.sweep.name);
  s += fmt::format("#SBATCH --array=0-{}\n", runs.size() - 1);
  s += fmt::format("#SBATCH --output={}/logs/slurm-%A_%a.out\n", dir);
  if (gpu_per_task) {
    s += "#SBATCH --ntasks=1\n#SBATCH --gpus-per-task=1\n";
  } else if (device.rfind("cuda", 0) == 0) {
    s += "#SBATCH --gres=gpu:1\n";
  }
  if (config.base.run.threads > 0)
    s += fmt::format("#SBATCH --cpus-per-task={}\n", config.base.run.threads);
  s += fmt::format(
      "#\n# IRIS sweep '{}': {} runs, one per array task, into {}/. A task whose run finished\n"
      "# before does nothing; an interrupted one starts again. Submit with: sbatch THIS_FILE\n#\n",
      config.sweep.name, runs.size(), dir);
  for (std::size_t i = 0; i < runs.size(); ++i)
    s += fmt::format("# task {}: {}\n", i, runs[i].name);
  s += "set -euo pipefail\n";
  s += fmt::format("cd {}\n", quote(fs::current_path().string()));
  // Slurm sets CUDA_VISIBLE_DEVICES to the task's GPU, which the run sees as cuda:0.
  s += fmt::format("exec {} sweep {} --task \"${{SLURM_ARRAY_TASK_ID}}\"{}\n", quote(executable),
                   quote(config_path), gpu_per_task ? " --device cuda" : "");
  return s;
}

}  // namespace iris
