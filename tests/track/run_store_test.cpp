#include "track/run_store.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "test_util.h"
#include "track/wandb_csv.h"
#include "track_test_util.h"

namespace iris::track {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Every field of a record, so rows can be compared whole.
std::string row_text(const RunRecord& r) {
  nlohmann::json j = {{"name", r.name},
                      {"folder", r.folder},
                      {"dataset", r.dataset},
                      {"prompt", r.prompt_type},
                      {"recipe", r.recipe},
                      {"modules", r.trainable_modules},
                      {"epochs", r.max_epochs},
                      {"has_epochs", r.has_max_epochs},
                      {"steps", r.max_steps ? *r.max_steps : -1},
                      {"baseline", r.is_baseline},
                      {"state", r.state},
                      {"created", r.created},
                      // A running run's runtime grows between scans.
                      {"runtime", r.state == "running" ? -2.0
                                  : r.runtime          ? *r.runtime
                                                       : -1.0},
                      {"imported", r.imported},
                      {"metrics", r.metrics},
                      {"config", r.config},
                      {"summary", r.summary}};
  return j.dump();
}

std::vector<std::string> rows_text(const std::vector<RunRecord>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(row_text(r));
  return out;
}

// Four runs: trained and baseline of one study cell, an IRIS atlas run, one still running and
// one that stopped writing an hour ago without a summary.
void make_runs(const fs::path& root) {
  test::make_study_run(root, "kvasir_point_md+pe__1", "kvasir", "point",
                       "[mask_decoder, prompt_encoder]", 30, 0.1 + 0.2, 1.0 / 3, 2.5);
  test::make_study_run(root, "kvasir_point_md+pe__0", "kvasir", "point",
                       "[mask_decoder, prompt_encoder]", 0, 0.25, 0.2, 3.0);
  test::make_study_run(root, "endovis_box_mem+md__2", "endovis", "box",
                       "[memory_encoder, memory_attention, mask_decoder]", 30, 0.75, 0.6, 1.5);
  const RunDir iris = RunDir::open(root, "iris-atlas");
  iris.write_config(
      "run:\n  name: iris-atlas\ndata:\n  label_map: aal\noptim:\n  iterations: 300\n");
  iris.write_summary({{"model", "iris"}, {"best/val_dice", 0.5}, {"time/seconds", 12.5}});
  const RunDir running = RunDir::open(root, "still-running");
  running.write_config("optim:\n  iterations: 10\n");
  running.append_metrics({{"step", 1}, {"train/loss", 1.5}});
  const RunDir crashed = RunDir::open(root, "crashed-run");
  crashed.write_config("optim:\n  iterations: 10\n");
  crashed.append_metrics({{"step", 1}, {"train/loss", 1.5}});
  test::age_run(crashed.path(), 3600s);
}

const RunRecord& by_folder(const std::vector<RunRecord>& runs, const std::string& folder) {
  for (const auto& r : runs) {
    if (r.folder == folder) return r;
  }
  throw std::runtime_error("no run " + folder);
}

TEST(RunStore, ReadsRunFoldersIntoRecords) {
  test::TempDir dir;
  make_runs(dir.path());
  const RunScan scan = RunStore(dir.path()).scan();
  EXPECT_TRUE(scan.problems.empty());
  ASSERT_EQ(scan.runs.size(), 6u);
  const RunRecord& trained = by_folder(scan.runs, "kvasir_point_md+pe__1");
  EXPECT_EQ(trained.name, "kvasir_point_md+pe__1");
  EXPECT_EQ(trained.state, "finished");
  EXPECT_EQ(trained.dataset, "kvasir");
  EXPECT_EQ(trained.prompt_type, "point");
  EXPECT_EQ(trained.recipe, "md+pe");
  EXPECT_EQ(trained.trainable_modules,
            (std::vector<std::string>{"mask_decoder", "prompt_encoder"}));
  EXPECT_EQ(trained.max_epochs, 30);
  EXPECT_FALSE(trained.is_baseline);
  EXPECT_EQ(*trained.metric(kDice), 0.1 + 0.2);  // exact
  EXPECT_EQ(*trained.metric(kMiou), 1.0 / 3);
  EXPECT_EQ(*trained.metric(kMae), 2.5);
  EXPECT_EQ(*trained.runtime, 3725.5);
  EXPECT_EQ(trained.config.at("trainer.precision"), "bf16");
  EXPECT_EQ(trained.config.at("module.model.trainable_modules"),
            "[\"mask_decoder\",\"prompt_encoder\"]");
  EXPECT_EQ(trained.summary.at("steps"), 2);
  EXPECT_FALSE(trained.summary.count("eval/Dice"));
  EXPECT_EQ(trained.created.size(), 20u);  // 2024-01-02T03:04:05Z
  EXPECT_TRUE(by_folder(scan.runs, "kvasir_point_md+pe__0").is_baseline);

  const RunRecord& iris = by_folder(scan.runs, "iris-atlas");
  EXPECT_EQ(iris.dataset, "aal");
  EXPECT_FALSE(iris.has_max_epochs);
  EXPECT_EQ(*iris.max_steps, 300);
  EXPECT_FALSE(iris.is_baseline);
  EXPECT_EQ(*iris.runtime, 12.5);
  EXPECT_EQ(iris.summary.at("best/val_dice"), 0.5);
  EXPECT_EQ(by_folder(scan.runs, "still-running").state, "running");
  EXPECT_EQ(by_folder(scan.runs, "crashed-run").state, "crashed");
}

TEST(RunStore, IndexIsRebuiltFromTheFoldersWithTheSameRows) {
  test::TempDir dir;
  make_runs(dir.path());
  const RunStore store(dir.path());
  const RunScan first = store.scan();
  EXPECT_EQ(first.indexed, build::kHaveSqlite);
  EXPECT_EQ(first.reread, 6u);
  EXPECT_EQ(fs::exists(store.db_path()), build::kHaveSqlite);
  EXPECT_FALSE(fs::exists(dir / "runs.db.tmp"));

  const RunScan second = store.scan();
  if (build::kHaveSqlite) {
    EXPECT_EQ(second.reread, 0u);  // every row from runs.db
    EXPECT_FALSE(second.db_written);
  }
  EXPECT_EQ(rows_text(second.runs), rows_text(first.runs));

  fs::remove(store.db_path());
  const RunScan rebuilt = store.scan();
  EXPECT_EQ(rows_text(rebuilt.runs), rows_text(first.runs));
  EXPECT_EQ(rows_text(store.scan(/*rebuild=*/true).runs), rows_text(first.runs));

  // A folder newer than its row is read again; a removed folder leaves the index.
  RunDir::existing(dir / "iris-atlas")
      .write_summary({{"best/val_dice", 0.75}, {"time/seconds", 20.0}});
  fs::remove_all(dir / "crashed-run");
  const RunScan changed = store.scan();
  if (build::kHaveSqlite) {
    EXPECT_EQ(changed.reread, 1u);
  }
  EXPECT_EQ(changed.runs.size(), 5u);
  EXPECT_EQ(by_folder(changed.runs, "iris-atlas").summary.at("best/val_dice"), 0.75);
  EXPECT_EQ(rows_text(store.scan().runs), rows_text(changed.runs));
}

TEST(RunStore, UnreadableFolderIsReportedNotFatal) {
  test::TempDir dir;
  make_runs(dir.path());
  write_file_atomic(dir / "broken" / "summary.json", "{not json");
  const RunScan scan = RunStore(dir.path()).scan();
  EXPECT_EQ(scan.runs.size(), 6u);
  ASSERT_EQ(scan.problems.size(), 1u);
  EXPECT_EQ(scan.problems[0].folder, "broken");
  EXPECT_NE(scan.problems[0].message.find("summary.json"), std::string::npos);
  EXPECT_TRUE(RunStore(dir / "missing").scan().runs.empty());
}

RunFilter filter(std::string dataset, std::string prompt = "", std::string recipe = "",
                 std::string state = "") {
  RunFilter f;
  f.dataset = std::move(dataset);
  f.prompt_type = std::move(prompt);
  f.recipe = std::move(recipe);
  f.state = std::move(state);
  return f;
}

TEST(RunStore, Filters) {
  test::TempDir dir;
  make_runs(dir.path());
  const RunStore store(dir.path());
  auto folders = [&](const RunFilter& f) {
    std::vector<std::string> out;
    for (const auto& r : store.list(f)) out.push_back(r.folder);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(folders(filter("kvasir")),
            (std::vector<std::string>{"kvasir_point_md+pe__0", "kvasir_point_md+pe__1"}));
  EXPECT_EQ(folders(filter("", "box")), (std::vector<std::string>{"endovis_box_mem+md__2"}));
  EXPECT_EQ(folders(filter("", "", "md+pe")).size(), 2u);
  EXPECT_EQ(folders(filter("kvasir", "box")).size(), 0u);
  EXPECT_EQ(folders(filter("", "", "", "running")), (std::vector<std::string>{"still-running"}));
  EXPECT_EQ(folders(filter("", "", "", "crashed")), (std::vector<std::string>{"crashed-run"}));
  EXPECT_EQ(folders(filter("", "", "", "finished")).size(), 4u);
}

std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(RunStore, UnknownNameListsTheClosestNames) {
  test::TempDir dir;
  make_runs(dir.path());
  const RunStore store(dir.path());
  EXPECT_EQ(store.find("iris-atlas").max_steps, 300);
  const std::string msg = input_error([&] { store.find("iris-atlsa"); });
  EXPECT_NE(msg.find("no run 'iris-atlsa'; closest: iris-atlas"), std::string::npos) << msg;
  EXPECT_NE(input_error([&] { store.find("kvasir_point_md+pe__2"); }).find("kvasir_point_md+pe__"),
            std::string::npos);
}

TEST(RunStore, YamlFlattensAndNests) {
  const std::map<std::string, std::string> flat = {{"a.b.c", "1"},
                                                   {"a.b.d", "[\"x\",\"y\"]"},
                                                   {"a.e", "text with: colon"},
                                                   {"top", "[16,128,128]"},
                                                   {"top.sub", "clash"}};
  const std::string yaml = nest_yaml(flat);
  EXPECT_EQ(flatten_yaml(yaml, "x.yaml"), flat) << yaml;
  EXPECT_THROW(flatten_yaml("a: [1", "bad.yaml"), InputError);
}

// W&B export of a root, then import into another: names, metrics to the last bit, config,
// state, created time and runtime come back.
TEST(RunStore, ExportImportRoundTrip) {
  test::TempDir dir;
  make_runs(dir / "a");
  const RunStore a(dir / "a");
  const std::vector<RunRecord> original = a.scan().runs;
  const std::string csv = format_wandb_csv(to_run_table(original, "a"));
  EXPECT_EQ(csv.rfind("\"Name\",\"State\",\"Created\",\"Runtime\",\"eval/Dice\",", 0), 0u) << csv;
  EXPECT_NE(csv.find("\"[\"\"mask_decoder\"\",\"\"prompt_encoder\"\"]\""), std::string::npos);

  const RunTable parsed = parse_wandb_csv(csv, "export.csv", {}, RoleCheck::kNameOnly);
  const RunStore b(dir / "b");
  const ImportResult imported = b.import_runs(parsed, "export.csv");
  EXPECT_EQ(imported.created.size(), original.size());
  const std::vector<RunRecord> back = b.scan().runs;
  ASSERT_EQ(back.size(), original.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    const RunRecord &x = original[i], &y = back[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_TRUE(y.imported);
    EXPECT_EQ(x.state, y.state);
    EXPECT_EQ(x.created, y.created);
    EXPECT_EQ(x.runtime, y.runtime) << x.name;
    EXPECT_EQ(x.dataset, y.dataset);
    EXPECT_EQ(x.prompt_type, y.prompt_type);
    EXPECT_EQ(x.recipe, y.recipe);
    EXPECT_EQ(x.trainable_modules, y.trainable_modules);
    EXPECT_EQ(x.has_max_epochs, y.has_max_epochs);
    EXPECT_EQ(x.max_epochs, y.max_epochs);
    EXPECT_EQ(x.max_steps, y.max_steps);
    EXPECT_EQ(x.is_baseline, y.is_baseline);
    EXPECT_EQ(x.metrics, y.metrics);  // bit-exact
    for (const auto& [key, value] : x.config) {
      EXPECT_EQ(y.config.count(key) ? y.config.at(key) : "(missing)", value) << key;
    }
    for (const auto& [key, value] : x.summary) {
      if (key.find('/') == std::string::npos) continue;  // exports carry the key/metric values
      EXPECT_EQ(y.summary.count(key) ? y.summary.at(key) : -1.0, value) << key;
    }
  }
  // The same export again: nothing new.
  const ImportResult again = b.import_runs(parsed, "export.csv");
  EXPECT_TRUE(again.created.empty());
  EXPECT_EQ(again.skipped.size(), original.size());
  EXPECT_EQ(format_wandb_csv(to_run_table(b.scan().runs, "b")), csv);
}

TEST(RunStore, ImportKeepsRunsThatShareAName) {
  // The study's export: a baseline and a trained run may carry the same name.
  const std::string csv =
      "\"Name\",\"eval/Dice\",\"eval/MAE\",\"eval/mIoU\",\"module.model.prompt_type\","
      "\"module.model.trainable_modules\",\"data_module.data.name\",\"trainer.max_epochs\"\n"
      "\"ds_box_md__1\",\"0.5\",\"2\",\"0.4\",\"box\",\"[\"\"mask_decoder\"\"]\",\"ds\",\"0\"\n"
      "\"ds_box_md__1\",\"0.6\",\"1\",\"0.5\",\"box\",\"[\"\"mask_decoder\"\"]\",\"ds\",\"30\"\n";
  test::TempDir dir;
  const RunStore store(dir.path());
  const auto result =
      store.import_runs(parse_wandb_csv(csv, "study.csv", {}, RoleCheck::kNameOnly), "study.csv");
  EXPECT_EQ(result.created, (std::vector<std::string>{"ds_box_md__1", "ds_box_md__1-2"}));
  const auto runs = store.scan().runs;
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_TRUE(runs[0].is_baseline);  // file order
  EXPECT_EQ(runs[1].max_epochs, 30);
  EXPECT_EQ(runs[1].state, "finished");
  const std::string msg = input_error([&] { store.find("ds_box_md__1-3"); });
  EXPECT_NE(msg.find("closest: ds_box_md__1-2"), std::string::npos) << msg;
  EXPECT_NE(input_error([&] { store.find("ds_box_md__"); }).find("closest"), std::string::npos);
}

TEST(RunStore, ImportNeedsOnlyTheNameColumn) {
  const std::string ok = "\"Name\",\"eval/Dice\",\"optim.lr\"\n\"r1\",\"0.5\",\"0.001\"\n";
  const RunTable t = parse_wandb_csv(ok, "x.csv", {}, RoleCheck::kNameOnly);
  ASSERT_EQ(t.runs.size(), 1u);
  EXPECT_FALSE(t.runs[0].has_max_epochs);
  EXPECT_FALSE(t.runs[0].is_baseline);
  EXPECT_EQ(t.runs[0].config.at("optim.lr"), "0.001");
  const std::string msg = input_error([] {
    parse_wandb_csv("\"Title\",\"eval/Dice\"\n\"r1\",\"0.5\"\n", "x.csv", {}, RoleCheck::kNameOnly);
  });
  EXPECT_NE(msg.find("x.csv: missing required column 'Name'"), std::string::npos) << msg;
  // The study's check still wants every column the report needs.
  EXPECT_NE(input_error([&] { parse_wandb_csv(ok, "x.csv"); }).find("missing required column"),
            std::string::npos);
}

}  // namespace
}  // namespace iris::track
