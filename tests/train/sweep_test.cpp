// Sweeps: expansion (names, ids, baselines, seeds, errors), the config file, a real tiny sweep on
// synthetic clips with the parity fixture's small SAM2, a killed sweep that resumes without
// re-running what finished, worker processes, and the Slurm script.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/device.h"
#include "core/error.h"
#include "data/synthetic_video.h"
#include "test_util.h"
#include "track/run_store.h"
#include "train/sweep.h"

extern char** environ;

namespace iris {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


SweepConfig two_by_two() {
  SweepConfig c;
  c.sweep.name = "study";
  c.sweep.root = "runs";
  c.sweep.datasets = {"endo17", "endo18"};
  c.sweep.prompt_types = {"point", "box"};
  c.sweep.recipes = {"md", "pe+md"};
  for (const char* d : {"endo17", "endo18"}) {
    c.datasets[d].train = std::string(d) + "/train";
    c.datasets[d].val = std::string(d) + "/val";
  }
  c.base.model.config = "m.yaml";
  c.base.model.checkpoint = "m.pt";
  c.base.train.max_epochs = 2;
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

TEST(SweepExpand, NamesCountsAndOneBaselinePerDatasetAndPrompt) {
  const auto runs = expand_sweep(two_by_two());
  ASSERT_EQ(runs.size(), 4u + 8u);  // 2 x 2 baselines, 2 x 2 x 2 trained
  const std::regex trained(R"((endo17|endo18)_(point|box)_(md|pe\+md)__[0-9a-f]{8})");
  const std::regex baseline(R"((endo17|endo18)_(point|box)_none__[0-9a-f]{8})");
  std::set<std::pair<std::string, std::string>> cells;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    EXPECT_EQ(r.baseline, i < 4) << r.name;  // baselines first
    EXPECT_EQ(r.config.baseline, r.baseline);
    EXPECT_EQ(r.config.run.name, r.name);
    EXPECT_EQ(r.config.run.root, (fs::path("runs") / "study").string());
    EXPECT_EQ(r.config.data.name, r.dataset);
    EXPECT_EQ(r.config.data.val, r.dataset + "/val");
    EXPECT_EQ(r.config.model.prompt_type, r.prompt_type);
    EXPECT_EQ(r.name, r.dataset + "_" + r.prompt_type + "_" + r.recipe + "__" + r.id);
    if (r.baseline) {
      EXPECT_TRUE(std::regex_match(r.name, baseline)) << r.name;
      EXPECT_EQ(r.config.recipe, "none");
      EXPECT_EQ(r.config.train.max_epochs, 0);
      EXPECT_TRUE(cells.insert({r.dataset, r.prompt_type}).second) << "second baseline " << r.name;
    } else {
      EXPECT_TRUE(std::regex_match(r.name, trained)) << r.name;
      EXPECT_EQ(r.config.recipe, r.recipe);
      EXPECT_EQ(r.config.train.max_epochs, 2);
    }
  }
  EXPECT_EQ(cells.size(), 4u);
  EXPECT_EQ(runs[4].name.substr(0, 16), "endo17_point_md_");  // dataset, prompt, recipe order
  EXPECT_EQ(runs[5].recipe, "pe+md");

  auto no_baselines = two_by_two();
  no_baselines.sweep.baselines = false;
  EXPECT_EQ(expand_sweep(no_baselines).size(), 8u);
}

TEST(SweepExpand, SeveralSeedsGiveSuffixedRunsAndStillOneBaseline) {
  auto c = two_by_two();
  c.sweep.seeds = {7, 8, 9};
  const auto runs = expand_sweep(c);
  ASSERT_EQ(runs.size(), 4u + 24u);
  for (const auto& r : runs) {
    EXPECT_EQ(r.config.run.seed, r.seed);
    if (r.baseline) {
      EXPECT_EQ(r.seed, 7) << r.name;  // the first seed
      EXPECT_EQ(r.name.find("_s"), std::string::npos) << r.name;
    } else {
      EXPECT_TRUE(r.name.size() > 3 &&
                  r.name.substr(r.name.size() - 3) == "_s" + std::to_string(r.seed))
          << r.name;
    }
  }
  EXPECT_NE(runs[4].id, runs[5].id);  // the seed is part of the identity
}

TEST(SweepExpand, IdsAreStableAndFollowTheConfig) {
  const auto a = expand_sweep(two_by_two());
  const auto b = expand_sweep(two_by_two());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].name, b[i].name);

  // How a run is computed is not what it computes.
  auto moved = two_by_two();
  moved.sweep.root = "elsewhere";
  moved.base.run.device = "cuda";
  moved.base.run.threads = 3;
  const auto m = expand_sweep(moved);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].id, m[i].id) << a[i].name;

  // A training setting renames every trained run, and no baseline.
  auto lr = two_by_two();
  lr.base.train.lr = 1e-4;
  const auto l = expand_sweep(lr);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].baseline, a[i].id == l[i].id) << a[i].name;
  }
  // A dataset's split renames that dataset's runs only, baselines included.
  auto val = two_by_two();
  val.datasets["endo18"].val = "endo18/val2";
  const auto v = expand_sweep(val);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].dataset == "endo18", a[i].id != v[i].id) << a[i].name;
  }
  // Stated, so that a change to the id function shows up as a failing test, not as a sweep that
  // silently runs everything again.
  EXPECT_EQ(sweep_run_id(a[0].config), a[0].id);
  EXPECT_EQ(a[0].id.size(), 8u);
}

TEST(SweepExpand, ErrorsNameWhatIsWrong) {
  auto c = two_by_two();
  c.sweep.datasets.push_back("endo19");
  auto msg = error_of([&] { expand_sweep(c); });
  EXPECT_NE(msg.find("sweep.datasets names 'endo19', which is not under datasets:"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("did you mean 'endo17'?"), std::string::npos) << msg;

  c = two_by_two();
  c.sweep.recipes = {"md", "md+xx"};
  msg = error_of([&] { expand_sweep(c); });
  EXPECT_NE(msg.find("sweep.recipes: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("xx"), std::string::npos) << msg;

  c = two_by_two();
  c.sweep.recipes = {"md+pe", "pe+md"};
  EXPECT_EQ(expand_sweep(c).size(), 4u + 8u);  // different orders are different names
  c.sweep.recipes = {"md", "md"};
  EXPECT_NE(error_of([&] { expand_sweep(c); }).find("'md' is given twice"), std::string::npos);
  c.sweep.recipes = {"none"};
  EXPECT_NE(error_of([&] { expand_sweep(c); }).find("sweep.baselines"), std::string::npos);

  c = two_by_two();
  c.sweep.prompt_types = {"point", "scribble"};
  EXPECT_NE(error_of([&] { expand_sweep(c); }).find("'scribble' is not one of point, box, mask"),
            std::string::npos);
  c = two_by_two();
  c.datasets["endo17"].val.clear();
  EXPECT_NE(error_of([&] { expand_sweep(c); }).find("datasets.endo17.val"), std::string::npos);
  c = two_by_two();
  c.base.train.max_epochs = 0;
  EXPECT_NE(error_of([&] { expand_sweep(c); }).find("base.train.max_epochs"), std::string::npos);
}

constexpr const char* kConfigText = R"(sweep:
  name: study
  root: runs
  datasets: [endo18, cholec]
  prompt_types: [box]
  recipes: [md, mem+md]
datasets:
  cholec:
    train: c/train
    val: c/val
    test: c/test
    clip_length: 8
  endo18:
    train: e/train
    val: e/val
base:
  model:
    config: m.yaml
    checkpoint: m.pt
  train:
    max_epochs: 3
    lr: 1.0e-4
)";

TEST(SweepConfigFile, ReadsWritesAndReadsBackTheSame) {
  test::TempDir dir;
  write_file_atomic(dir / "s.yaml", kConfigText);
  const auto c = load_sweep_config({(dir / "s.yaml").string(), {}});
  EXPECT_EQ(c.sweep.datasets, (std::vector<std::string>{"endo18", "cholec"}));
  ASSERT_EQ(c.datasets.size(), 2u);
  EXPECT_EQ(c.datasets.at("cholec").test, "c/test");
  EXPECT_EQ(c.datasets.at("cholec").clip_length, 8);
  EXPECT_EQ(c.datasets.at("endo18").clip_length, 4);  // default
  EXPECT_DOUBLE_EQ(c.base.train.lr, 1e-4);

  const std::string dumped = dump_config(c);
  const std::string base = dumped.substr(dumped.find("\nbase:"));
  for (const char* key : {"\n  recipe:", "\n  baseline:", "\n    name:", "\n    seed:",
                          "\n    prompt_type:", "\n    train:", "\n    clip_length:"}) {
    EXPECT_EQ(base.find(key), std::string::npos) << key << " in\n" << base;
  }
  EXPECT_NE(base.find("\n    checkpoint:"), std::string::npos) << base;
  write_file_atomic(dir / "again.yaml", dumped);
  const auto again = load_sweep_config({(dir / "again.yaml").string(), {}});
  EXPECT_EQ(dump_config(again), dumped);
  const auto a = expand_sweep(c), b = expand_sweep(again);
  ASSERT_EQ(a.size(), 2u + 4u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].name, b[i].name);
  EXPECT_EQ(a[0].dataset, "endo18");  // sweep.datasets order, not the map's

  // Overrides reach datasets and base alike.
  const auto o = load_sweep_config(
      {(dir / "s.yaml").string(), {"datasets.endo18.clip_stride=2", "base.train.lr=0.5"}});
  EXPECT_EQ(o.datasets.at("endo18").clip_stride, 2);
  EXPECT_DOUBLE_EQ(o.base.train.lr, 0.5);
}

TEST(SweepConfigFile, MistakesAreNamedWithFileAndLine) {
  test::TempDir dir;
  auto load_text = [&](const std::string& text) {
    write_file_atomic(dir / "bad.yaml", text);
    return error_of([&] { load_sweep_config({(dir / "bad.yaml").string(), {}}); });
  };
  std::string text = kConfigText;
  auto msg =
      load_text(std::regex_replace(text, std::regex("    train: e/train"), "    trian: e/train"));
  EXPECT_NE(msg.find("unknown key 'datasets.endo18.trian'; did you mean 'datasets.endo18.train'?"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("bad.yaml:14"), std::string::npos) << msg;
  msg = load_text(text + "  data:\n    train: x/train\n");
  EXPECT_NE(
      msg.find("key 'base.data.train' is set per run by the sweep (from datasets.<name>.train)"),
      std::string::npos)
      << msg;
  msg = load_text(text + "  recipe: md\n");
  EXPECT_NE(msg.find("'base.recipe' is set per run"), std::string::npos) << msg;
  const std::string recipes = "  recipes: [md, mem+md]\n";
  msg = load_text(text.replace(text.find(recipes), recipes.size(), recipes + "  workers: two\n"));
  EXPECT_NE(msg.find("key 'sweep.workers': expected an integer, got 'two'"), std::string::npos)
      << msg;
}

TEST(SweepRunState, FromTheFolder) {
  test::TempDir dir;
  EXPECT_EQ(sweep_run_state((dir / "none").string()), SweepRunState::kPending);
  fs::create_directories(dir / "run");
  write_file_atomic(dir / "run" / "config.yaml", "recipe: md\n");
  EXPECT_EQ(sweep_run_state((dir / "run").string()), SweepRunState::kInterrupted);
  write_file_atomic(dir / "run" / "summary.json", "{\"state\": \"fail");  // torn
  EXPECT_EQ(sweep_run_state((dir / "run").string()), SweepRunState::kInterrupted);
  write_file_atomic(dir / "run" / "summary.json", R"({"state": "failed"})");
  EXPECT_EQ(sweep_run_state((dir / "run").string()), SweepRunState::kFailed);
  write_file_atomic(dir / "run" / "summary.json", R"({"state": "finished", "eval/Dice": 0.5})");
  EXPECT_EQ(sweep_run_state((dir / "run").string()), SweepRunState::kFinished);
}

// Trackers take a run's `baseline:` field at its word; the zero epoch budget only decides for
// runs without one (W&B imports, older folders).
TEST(SweepBaselineFlag, RunStoreReadsTheFieldNotTheName) {
  test::TempDir dir;
  auto folder = [&](const std::string& name, const std::string& config) {
    fs::create_directories(dir / name);
    write_file_atomic(dir / name / "config.yaml", config);
    write_file_atomic(dir / name / "summary.json", R"({"state": "finished", "eval/Dice": 0.5})");
    return track::read_run_folder((dir / name).string());
  };
  const std::string base = "data:\n  name: d\nmodel:\n  prompt_type: box\n";
  EXPECT_TRUE(
      folder("d_box_md__1", base + "baseline: true\ntrain:\n  max_epochs: 0\n").is_baseline);
  EXPECT_FALSE(
      folder("d_box_none__2", base + "baseline: false\ntrain:\n  max_epochs: 0\n").is_baseline);
  EXPECT_TRUE(folder("d_box_x__3", base + "train:\n  max_epochs: 0\n").is_baseline);
  EXPECT_FALSE(folder("d_box_x__4", base + "train:\n  max_epochs: 2\n").is_baseline);
}

// Tiny synthetic data (train, val, test) and a sweep over it with the micro model.
struct TinyStudy {
  test::TempDir dir;
  SweepConfig config;

  TinyStudy() {
    SyntheticVideoOptions s;
    s.videos = 1;
    s.frames = 4;
    s.width = 128;
    s.height = 128;
    s.instruments = 1;
    s.seed = 11;
    write_synthetic_videos(s, dir / "train");
    s.seed = 12;
    s.frames = 2;
    write_synthetic_videos(s, dir / "val");
    s.seed = 13;
    write_synthetic_videos(s, dir / "test");
    config.sweep.name = "tiny";
    config.sweep.root = (dir / "runs").string();
    config.sweep.datasets = {"synth"};
    config.sweep.prompt_types = {"box"};
    config.sweep.recipes = {"md", "pe+md"};
    config.datasets["synth"] = {(dir / "train").string(), (dir / "val").string(),
                                (dir / "test").string(), 4, 4};
    config.base.model.config = (test::sam2_fixture() / "config.yaml").string();
    config.base.model.checkpoint = (test::sam2_fixture() / "checkpoint.pt").string();
    config.base.train.max_epochs = 1;
    config.base.train.lr = 1e-3;
    config.base.run.threads = 1;
  }
  fs::path sweep_dir() const { return iris::sweep_dir(config); }
};

bool have_inputs() {
  return build::kHaveOpenCV && fs::exists(test::sam2_fixture());
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SweepRun, TinySweepRunsBaselineAndRecipesThenSkipsThem) {
  if (!have_inputs()) GTEST_SKIP() << "needs OpenCV and ../shared/fixtures/sam2/micro_seed0";
  TinyStudy study;
  std::vector<std::string> lines;
  SweepOptions options;
  options.progress = [&](const std::string& l) { lines.push_back(l); };
  const auto t0 = Clock::now();
  const auto r = run_sweep(study.config, options);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  RecordProperty("tiny_sweep_seconds", std::to_string(seconds));
  std::cout << "tiny sweep: " << r.total << " runs in " << seconds << " s\n";
  EXPECT_EQ(r.total, 3);
  EXPECT_EQ(r.ran, 3);
  EXPECT_EQ(r.failed, 0) << (r.failed_runs.empty() ? "" : r.failed_runs[0]);
  EXPECT_EQ(r.skipped, 0);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find("1/3 runs done, 2 left, ETA "), std::string::npos) << all;
  EXPECT_NE(all.find("3/3 runs done"), std::string::npos) << all;

  const auto runs = expand_sweep(study.config);
  for (const auto& run : runs) {
    const fs::path dir = study.sweep_dir() / run.name;
    EXPECT_EQ(sweep_run_state(dir.string()), SweepRunState::kFinished) << run.name;
    const auto summary = nlohmann::json::parse(read_text(dir / "summary.json"));
    // Validation chose the weights, the test split scored them once.
    EXPECT_TRUE(summary.contains("eval/Dice")) << run.name;
    EXPECT_TRUE(summary.contains("test/Dice")) << run.name;
    EXPECT_TRUE(fs::exists(dir / "test" / "eval.json")) << run.name;
    EXPECT_TRUE(fs::exists(dir / "test" / "eval.md")) << run.name;
    const auto record = track::read_run_folder(dir.string());
    EXPECT_EQ(record.is_baseline, run.baseline) << run.name;
    EXPECT_EQ(record.recipe, run.recipe) << run.name;
    EXPECT_EQ(record.dataset, "synth");
    ASSERT_TRUE(record.metric(track::kDice).has_value());
    if (!summary["test/Dice"].is_null()) {
      EXPECT_DOUBLE_EQ(*record.metric(track::kDice), summary["test/Dice"].get<double>());
    }
  }
  EXPECT_TRUE(fs::exists(study.sweep_dir() / "sweep.yaml"));
  // The resolved config expands to the same runs.
  const auto reread = load_sweep_config({(study.sweep_dir() / "sweep.yaml").string(), {}});
  const auto again = expand_sweep(reread);
  ASSERT_EQ(again.size(), runs.size());
  for (std::size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(again[i].name, runs[i].name);

  const auto second = run_sweep(study.config, options);
  EXPECT_EQ(second.skipped, 3);
  EXPECT_EQ(second.ran, 0);

  // The insights report pairs the trained runs with the run marked as baseline.
  const fs::path out = study.dir / "insights";
  const auto rep = test::run_command(test::iris_binary() + " report insights --no-plots --runs '" +
                                     study.sweep_dir().string() + "' --out '" + out.string() + "'");
  ASSERT_EQ(rep.exit_code, 0) << rep.output;
  const auto json = nlohmann::json::parse(read_text(out / "insights.json"));
  EXPECT_EQ(json.at("counts").at("baselines"), 1) << json.at("counts");
  EXPECT_EQ(json.at("counts").at("trained_runs"), 2) << json.at("counts");
}

TEST(SweepRun, AFailingRunIsRecordedAndTheOthersContinue) {
  if (!have_inputs()) GTEST_SKIP() << "needs OpenCV and ../shared/fixtures/sam2/micro_seed0";
  TinyStudy study;
  study.config.sweep.recipes = {};
  study.config.sweep.datasets = {"synth", "broken"};
  study.config.datasets["broken"] = study.config.datasets["synth"];
  study.config.datasets["broken"].val = (study.dir / "missing").string();
  study.config.datasets["synth"].test.clear();
  SweepOptions options;
  options.progress = [](const std::string&) {};
  const auto r = run_sweep(study.config, options);
  EXPECT_EQ(r.total, 2);
  EXPECT_EQ(r.ran, 1);
  ASSERT_EQ(r.failed, 1);
  ASSERT_EQ(r.failed_runs.size(), 1u);
  EXPECT_EQ(r.failed_runs[0].rfind("broken_box_none__", 0), 0u) << r.failed_runs[0];
  EXPECT_NE(r.failed_runs[0].find("log: "), std::string::npos) << r.failed_runs[0];
  const auto runs = expand_sweep(study.config);
  EXPECT_EQ(sweep_run_state((study.sweep_dir() / runs[1].name).string()), SweepRunState::kFailed);
  EXPECT_EQ(track::read_run_folder((study.sweep_dir() / runs[1].name).string()).state, "failed");
  // Reports leave the failed run out instead of failing on its missing numbers.
  const auto rep = test::run_command(test::iris_binary() + " report insights --no-plots --runs '" +
                                     study.sweep_dir().string() + "' --out '" +
                                     (study.dir / "insights").string() + "'");
  EXPECT_EQ(rep.exit_code, 0) << rep.output;
  EXPECT_NE(rep.output.find(runs[1].name + ": skipped: the run is failed"), std::string::npos)
      << rep.output;
}

void write_sweep_yaml(const SweepConfig& c, const fs::path& path) {
  write_file_atomic(path, dump_config(c));
}

int64_t mtime_ns(const fs::path& p) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             fs::last_write_time(p).time_since_epoch())
      .count();
}

// `iris sweep` killed (SIGKILL) while its second run trains: the next `iris sweep` leaves the
// finished run alone, resumes the interrupted one after its last saved epoch and finishes the
// rest, with two worker processes.
TEST(SweepRun, KilledSweepResumesWithoutRerunningFinishedRuns) {
  if (!have_inputs()) GTEST_SKIP() << "needs OpenCV and ../shared/fixtures/sam2/micro_seed0";
  TinyStudy study;
  study.config.datasets["synth"].test.clear();
  // Three epochs: the second run is killed after one of its saved states, epoch 0 to 2.
  study.config.base.train.max_epochs = 3;
  const fs::path yaml = study.dir / "sweep.yaml";
  write_sweep_yaml(study.config, yaml);
  const auto runs = expand_sweep(study.config);
  ASSERT_EQ(runs.size(), 3u);
  const fs::path first = study.sweep_dir() / runs[0].name,
                 second = study.sweep_dir() / runs[1].name;

  const std::string exe = IRIS_BINARY, log = (study.dir / "killed.log").string();
  std::vector<std::string> args{exe, "sweep", yaml.string(), "--threads", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);

  // Kill once the first run has finished and the second has saved its baseline state (epoch 0).
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  bool ready = false;
  while (Clock::now() < deadline) {
    if (sweep_run_state(first.string()) == SweepRunState::kFinished &&
        fs::exists(second / "checkpoints" / "resume.pt")) {
      ready = true;
      break;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) break;  // ended on its own: too fast or failed
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(ready) << read_text(log);
  ASSERT_EQ(sweep_run_state(second.string()), SweepRunState::kInterrupted) << read_text(log);
  const std::string summary = read_text(first / "summary.json");
  const int64_t summary_time = mtime_ns(first / "summary.json");
  const int64_t config_time = mtime_ns(first / "config.yaml");

  const auto r = test::run_command(test::iris_binary() + " sweep '" + yaml.string() +
                                   "' --workers 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 finished before, 2 to run with 2 workers"), std::string::npos)
      << r.output;
  EXPECT_NE(
      r.output.find("run " + runs[1].name + " was interrupted; resuming it after its last epoch"),
      std::string::npos)
      << r.output;
  EXPECT_NE(
      r.output.find("3 runs, 1 finished before, 2 ran (0 started again, 1 resumed), 0 failed"),
      std::string::npos)
      << r.output;
  EXPECT_EQ(read_text(first / "summary.json"), summary);
  EXPECT_EQ(mtime_ns(first / "summary.json"), summary_time);
  EXPECT_EQ(mtime_ns(first / "config.yaml"), config_time);
  for (const auto& run : runs) {
    EXPECT_EQ(sweep_run_state((study.sweep_dir() / run.name).string()), SweepRunState::kFinished)
        << run.name;
  }
  // The resumed run kept the evaluations before its saved state and added the rest: the
  // baseline and three epochs, none twice.
  std::set<int64_t> eval_epochs;
  int64_t evals = 0;
  for (const auto& row : RunDir::existing(second).read_metrics()) {
    if (!row.contains("eval/Dice")) continue;
    ++evals;
    eval_epochs.insert(row.value("epoch", int64_t{-1}));
  }
  EXPECT_EQ(evals, 4);
  EXPECT_EQ(eval_epochs, (std::set<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(fs::exists(study.sweep_dir() / "logs" / (runs[1].name + ".log")));
  for (const auto& entry : fs::directory_iterator(study.sweep_dir())) {
    EXPECT_EQ(entry.path().filename().string().find(".removing-"), std::string::npos);
  }
}

TEST(SweepSlurm, OneArrayTaskPerRunAndAGpuOnlyOnCuda) {
  auto c = two_by_two();
  const auto runs = expand_sweep(c);
  std::string s = slurm_script(c, "runs/study/sweep.yaml", "/opt/iris/bin/iris");
  EXPECT_EQ(s.rfind("#!/bin/bash\n", 0), 0u);
  EXPECT_NE(s.find("#SBATCH --array=0-11\n"), std::string::npos) << s;
  EXPECT_NE(s.find("#SBATCH --job-name=iris-study\n"), std::string::npos) << s;
  EXPECT_NE(s.find("#SBATCH --output=runs/study/logs/slurm-%A_%a.out\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("--gres"), std::string::npos) << s;
  EXPECT_NE(s.find("exec '/opt/iris/bin/iris' sweep 'runs/study/sweep.yaml' --task "
                   "\"${SLURM_ARRAY_TASK_ID}\"\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("# task 0: " + runs[0].name + "\n"), std::string::npos) << s;
  EXPECT_NE(s.find("# task 11: " + runs[11].name + "\n"), std::string::npos) << s;
  EXPECT_NE(s.find("cd '" + fs::current_path().string() + "'\n"), std::string::npos) << s;
  c.base.run.device = "cuda";
  c.base.run.threads = 4;
  s = slurm_script(c, "runs/study/sweep.yaml", "/opt/iris/bin/iris");
  EXPECT_NE(s.find("#SBATCH --gres=gpu:1\n"), std::string::npos) << s;
  EXPECT_NE(s.find("#SBATCH --cpus-per-task=4\n"), std::string::npos) << s;

  // Through the command: the script, the resolved config it reads, and how to submit.
  test::TempDir dir;
  c = two_by_two();
  c.sweep.root = (dir / "runs").string();
  write_sweep_yaml(c, dir / "s.yaml");
  const auto r = test::run_command("cd '" + dir.path().string() + "' && " + test::iris_binary() +
                                   " sweep s.yaml --slurm job.sbatch --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("a job array of 12 tasks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("submit it with: sbatch job.sbatch"), std::string::npos) << r.output;
  const std::string script = read_text(dir / "job.sbatch");
  EXPECT_NE(script.find("#SBATCH --array=0-11\n"), std::string::npos) << script;
  EXPECT_NE(script.find((dir / "runs" / "study" / "sweep.yaml").string()), std::string::npos)
      << script;
  EXPECT_TRUE(fs::is_directory(dir / "runs" / "study" / "logs"));
  EXPECT_NE(fs::status(dir / "job.sbatch").permissions() & fs::perms::owner_exec, fs::perms::none);
  // A task number outside the sweep is a usage error naming the range.
  const auto bad = test::run_command(test::iris_binary() + " sweep '" + (dir / "s.yaml").string() +
                                     "' --task 12");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--task 12: the sweep has 12 runs (tasks 0 to 11)"), std::string::npos)
      << bad.output;
}

std::string usage_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no UsageError)";
}

TEST(SweepGpus, ListsAreParsedAndMistakesNameTheFlag) {
  EXPECT_EQ(parse_gpu_list("0,1,3", 4), (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(parse_gpu_list("2", -1), (std::vector<int>{2}));
  EXPECT_EQ(parse_gpu_list("all", 3), (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(parse_gpu_list("all", -1).empty()) << "unknown count: Slurm decides";
  for (const std::string bad : {"0,x", "0,,1", "-1", "1.5", "0,", " 1", "cuda:0"}) {
    const auto e = usage_error_of([&] { parse_gpu_list(bad, 8); });
    EXPECT_NE(e.find("--gpus: '"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("is not a GPU index"), std::string::npos) << bad << ": " << e;
  }
  EXPECT_NE(usage_error_of([] { parse_gpu_list("", 2); }).find("--gpus: empty"), std::string::npos);
  EXPECT_NE(
      usage_error_of([] { parse_gpu_list("1,0,1", 2); }).find("--gpus: GPU 1 is listed twice"),
      std::string::npos);
  EXPECT_NE(usage_error_of([] {
              parse_gpu_list("0,2", 2);
            }).find("--gpus: GPU 2 does not exist: this machine has 2 CUDA devices (0..1)"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { parse_gpu_list("all", 0); }).find("--gpus: no CUDA device"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { parse_gpu_list("0", 0); }).find("--gpus: no CUDA device"),
            std::string::npos);
}

TEST(SweepGpus, WorkersGetTheirDeviceRoundRobin) {
  const std::vector<int> gpus{2, 5, 7};
  EXPECT_EQ(plan_gpus(7, 3, gpus), (std::vector<int>{2, 5, 7, 2, 5, 7, 2}));
  EXPECT_EQ(plan_gpus(5, 2, gpus), (std::vector<int>{2, 5, 2, 5, 2})) << "fewer workers than GPUs";
  EXPECT_EQ(plan_gpus(4, 4, {0, 1}), (std::vector<int>{0, 1, 0, 1})) << "two workers per GPU";
  EXPECT_EQ(plan_gpus(2, 2, {}), (std::vector<int>{-1, -1}));

  const std::vector<std::string> threads{"--threads", "4"};
  const auto w = worker_launch("runs/study/sweep.yaml", 11, 1, gpus, threads);
  EXPECT_EQ(w.gpu, 5);
  EXPECT_EQ(w.args, (std::vector<std::string>{"sweep", "runs/study/sweep.yaml", "--task", "11",
                                              "--threads", "4", "--device", "cuda"}));
  EXPECT_EQ(w.env, (std::vector<std::string>{"CUDA_VISIBLE_DEVICES=5"}));
  EXPECT_EQ(worker_launch("s.yaml", 0, 4, gpus).gpu, 5) << "slot 4 of 3 GPUs";
  const auto cpu = worker_launch("s.yaml", 3, 0, {});
  EXPECT_EQ(cpu.gpu, -1);
  EXPECT_TRUE(cpu.env.empty());
  EXPECT_EQ(cpu.args, (std::vector<std::string>{"sweep", "s.yaml", "--task", "3"}));
}

TEST(SweepGpus, DryRunShowsEachRunsGpuAndBadListsAreUsageErrors) {
  test::TempDir dir;
  auto c = two_by_two();
  c.sweep.root = (dir / "runs").string();
  write_sweep_yaml(c, dir / "s.yaml");
  const std::string sweep = test::iris_binary() + " sweep '" + (dir / "s.yaml").string() + "'";
  const auto r = test::run_command(sweep + " --dry-run --gpus 0,1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("12 to run with 2 workers"), std::string::npos) << r.output;
  const auto runs = expand_sweep(c);
  EXPECT_NE(r.output.find("[0] " + runs[0].name + "  pending, GPU 0\n"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[1] " + runs[1].name + "  pending, GPU 1\n"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[2] " + runs[2].name + "  pending, GPU 0\n"), std::string::npos)
      << r.output;
  const auto fewer = test::run_command(sweep + " --dry-run --gpus 3,1,2 --workers 2");
  ASSERT_EQ(fewer.exit_code, 0) << fewer.output;
  EXPECT_NE(fewer.output.find("with 2 workers"), std::string::npos) << fewer.output;
  EXPECT_NE(fewer.output.find("[2] " + runs[2].name + "  pending, GPU 3\n"), std::string::npos)
      << fewer.output;
  const auto bad = test::run_command(sweep + " --dry-run --gpus 0,one");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--gpus: 'one' is not a GPU index"), std::string::npos) << bad.output;
  if (cuda_device_count() == 0) {
    const auto none = test::run_command(sweep + " --gpus all");
    EXPECT_EQ(none.exit_code, 2) << none.output;
    EXPECT_NE(none.output.find("--gpus: no CUDA device"), std::string::npos) << none.output;
  }
}

TEST(SweepGpus, SlurmScriptAsksForOneGpuPerArrayTask) {
  auto c = two_by_two();
  std::string s = slurm_script(c, "runs/study/sweep.yaml", "/opt/iris/bin/iris", true);
  EXPECT_NE(s.find("#SBATCH --ntasks=1\n#SBATCH --gpus-per-task=1\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("--gres"), std::string::npos) << "one request, not two: " << s;
  EXPECT_NE(s.find("exec '/opt/iris/bin/iris' sweep 'runs/study/sweep.yaml' --task "
                   "\"${SLURM_ARRAY_TASK_ID}\" --device cuda\n"),
            std::string::npos)
      << s;
  s = slurm_script(c, "runs/study/sweep.yaml", "/opt/iris/bin/iris");
  EXPECT_EQ(s.find("--gpus-per-task"), std::string::npos) << s;

  test::TempDir dir;
  c.sweep.root = (dir / "runs").string();
  write_sweep_yaml(c, dir / "s.yaml");
  const auto r = test::run_command("cd '" + dir.path().string() + "' && " + test::iris_binary() +
                                   " sweep s.yaml --slurm job.sbatch --gpus all");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string script = read_text(dir / "job.sbatch");
  EXPECT_NE(script.find("#SBATCH --gpus-per-task=1\n"), std::string::npos) << script;
  EXPECT_NE(script.find("--device cuda\n"), std::string::npos) << script;
  const auto bad = test::run_command("cd '" + dir.path().string() + "' && " + test::iris_binary() +
                                     " sweep s.yaml --slurm job2.sbatch --gpus 0,,1");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--gpus: '' is not a GPU index"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace iris
