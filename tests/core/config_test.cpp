#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "test_util.h"

namespace iris {
namespace {

struct OptimSection {
  double lr = 1e-3;
  std::string name = "adamw";
  std::vector<double> betas{0.9, 0.999};
  void visit(ConfigVisitor& v) {
    v.field("lr", lr, "peak learning rate");
    v.choice("name", name, {"adamw", "lamb"}, "optimiser");
    v.field("betas", betas, "Adam betas");
  }
};

struct TrainConfig {
  RunOptions run;
  OptimSection optim;
  int iterations = 100;
  std::int64_t batch = 2;
  bool amp = false;
  std::string note;
  std::vector<std::string> classes{"liver"};
  std::vector<std::int64_t> patch{64, 64};
  void visit(ConfigVisitor& v) {
    v.section("run", run);
    v.section("optim", optim);
    v.field("iterations", iterations, "training iterations");
    v.field("batch", batch, "batch size");
    v.field("amp", amp, "mixed precision");
    v.field("note", note, "free text");
    v.field("classes", classes, "class names");
    v.field("patch", patch, "patch size");
  }
};

class ConfigTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    const auto path = dir_ / "config.yaml";
    write_file_atomic(path, text);
    return path.string();
  }
  std::string error_of(const ConfigSource& source) {
    try {
      load_config<TrainConfig>(source);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  }
  test::TempDir dir_;
};

TEST_F(ConfigTest, DefaultsWhenFileIsEmpty) {
  const auto c = load_config<TrainConfig>({write(""), {}});
  EXPECT_EQ(c.iterations, 100);
  EXPECT_DOUBLE_EQ(c.optim.lr, 1e-3);
  EXPECT_EQ(c.run.root, "runs");
}

TEST_F(ConfigTest, ReadsNestedValuesOfEveryType) {
  const auto c = load_config<TrainConfig>({write(R"(
run: {name: exp1, seed: 7, device: cpu, threads: 2}
optim: {lr: 2.5e-4, name: lamb, betas: [0.8, 0.99]}
iterations: 500
batch: 8
amp: yes
note: "hello: world"
classes: [aal, brodmann]
patch: [16, 128, 128]
)"),
                                           {}});
  EXPECT_EQ(c.run.name, "exp1");
  EXPECT_EQ(c.run.seed, 7);
  EXPECT_EQ(c.run.threads, 2);
  EXPECT_DOUBLE_EQ(c.optim.lr, 2.5e-4);
  EXPECT_EQ(c.optim.name, "lamb");
  EXPECT_EQ(c.optim.betas, (std::vector<double>{0.8, 0.99}));
  EXPECT_EQ(c.iterations, 500);
  EXPECT_EQ(c.batch, 8);
  EXPECT_TRUE(c.amp);
  EXPECT_EQ(c.note, "hello: world");
  EXPECT_EQ(c.classes, (std::vector<std::string>{"aal", "brodmann"}));
  EXPECT_EQ(c.patch, (std::vector<std::int64_t>{16, 128, 128}));
}

TEST_F(ConfigTest, OverridesWinOverTheFileAndCreateSections) {
  const auto file = write("optim: {lr: 0.1}\niterations: 5\n");
  const auto c = load_config<TrainConfig>(
      {file, {"optim.lr=0.02", "iterations=7", "run.name=x", "patch=[1,2,3]", "optim.lr=0.03"}});
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.03);  // the last override wins
  EXPECT_EQ(c.iterations, 7);
  EXPECT_EQ(c.run.name, "x");
  EXPECT_EQ(c.patch, (std::vector<std::int64_t>{1, 2, 3}));
  // Overrides alone, without a file.
  EXPECT_EQ(load_config<TrainConfig>({"", {"batch=3"}}).batch, 3);
}

TEST_F(ConfigTest, UnknownKeyNamesFileKeyAndClosestValidKey) {
  const auto file = write("optim:\n  lr: 0.1\n  nmae: lamb\n");
  const std::string message = error_of({file, {}});
  EXPECT_NE(message.find(file + ":3"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key 'optim.nmae'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'optim.name'?"), std::string::npos) << message;
}

TEST_F(ConfigTest, UnknownKeyFarFromAnyListsValidKeys) {
  const std::string message = error_of({write("zzzzzzzz: 1\n"), {}});
  EXPECT_NE(message.find("unknown key 'zzzzzzzz'"), std::string::npos) << message;
  EXPECT_NE(message.find("valid keys at the top level: run, optim, iterations"), std::string::npos)
      << message;
}

TEST_F(ConfigTest, UnknownKeyFromOverrideNamesTheOverride) {
  const std::string message = error_of({write(""), {"optim.lrr=0.1"}});
  EXPECT_NE(message.find("--set optim.lrr=0.1"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'optim.lr'?"), std::string::npos) << message;
}

TEST_F(ConfigTest, WrongTypesNameTheExpectedType) {
  const auto file = write("iterations: many\n");
  std::string message = error_of({file, {}});
  EXPECT_NE(message.find(file + ":1: key 'iterations': expected an integer, got 'many'"),
            std::string::npos)
      << message;
  EXPECT_NE(error_of({write("iterations: 1.5\n"), {}}).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of({write("amp: maybe\n"), {}}).find("expected a boolean"), std::string::npos);
  EXPECT_NE(error_of({write("patch: 3\n"), {}}).find("expected a list of integers, got '3'"),
            std::string::npos);
  EXPECT_NE(error_of({write("patch: [1, x]\n"), {}}).find("expected a list of integers"),
            std::string::npos);
  EXPECT_NE(error_of({write("optim: 3\n"), {}}).find("key 'optim': expected a mapping"),
            std::string::npos);
  EXPECT_NE(error_of({write("note: [a]\n"), {}}).find("expected a string, got a list"),
            std::string::npos);
  message = error_of({write(""), {"optim.lr=fast"}});
  EXPECT_NE(message.find("--set optim.lr=fast: key 'optim.lr': expected a number, got 'fast'"),
            std::string::npos)
      << message;
  message = error_of({write(""), {"optim.name=sgd"}});
  EXPECT_NE(message.find("expected one of adamw, lamb, got 'sgd'"), std::string::npos) << message;
  // int range
  EXPECT_NE(error_of({write("iterations: 99999999999\n"), {}}).find("expected an integer"),
            std::string::npos);
}

TEST_F(ConfigTest, MalformedOverridesAndFiles) {
  EXPECT_NE(error_of({"", {"novalue"}}).find("expected KEY=VALUE"), std::string::npos);
  EXPECT_NE(error_of({"", {"a..b=1"}}).find("empty key segment"), std::string::npos);
  EXPECT_NE(error_of({"", {"iterations=1", "iterations.x=2"}}).find("'iterations' is a value"),
            std::string::npos);
  const auto file = write("optim: [unclosed\n");
  EXPECT_NE(error_of({file, {}}).find("not valid YAML"), std::string::npos);
  EXPECT_NE(error_of({(dir_ / "missing.yaml").string(), {}}).find("cannot open the config file"),
            std::string::npos);
  EXPECT_NE(error_of({write("- a\n- b\n"), {}}).find("expected a mapping of keys at the top level"),
            std::string::npos);
}

TEST_F(ConfigTest, DumpedConfigReloadsToTheSameValues) {
  auto original = load_config<TrainConfig>(
      {write(""), {"optim.lr=0.1", "note=", "classes=[\"a b\", \"true\", \"3\"]", "amp=true",
                   "run.name=r1", "optim.betas=[0.5]"}});
  const std::string text = dump_config(original);
  EXPECT_NE(text.find("# peak learning rate"), std::string::npos) << text;
  auto reloaded = load_config<TrainConfig>({write(text), {}});
  EXPECT_EQ(dump_config(reloaded), text);
  EXPECT_DOUBLE_EQ(reloaded.optim.lr, 0.1);
  EXPECT_EQ(reloaded.note, "");
  EXPECT_EQ(reloaded.classes, (std::vector<std::string>{"a b", "true", "3"}));
  EXPECT_TRUE(reloaded.amp);
  EXPECT_EQ(reloaded.optim.betas, std::vector<double>{0.5});
}

TEST_F(ConfigTest, ListsEveryKeyWithItsType) {
  TrainConfig c;
  const auto keys = list_config_keys([&](ConfigVisitor& v) { c.visit(v); });
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys.front().rfind("run.name  <string>", 0), 0u) << keys.front();
  bool found_choice = false;
  for (const auto& k : keys) found_choice |= k.rfind("optim.name  <adamw|lamb>", 0) == 0;
  EXPECT_TRUE(found_choice);
}

TEST(ClosestMatch, SuggestsOnlyPlausibleTypos) {
  EXPECT_EQ(closest_match("lrr", {"lr", "name"}).value_or(""), "lr");
  EXPECT_EQ(closest_match("Iterations", {"iterations", "batch"}).value_or(""), "iterations");
  EXPECT_FALSE(closest_match("completely_else", {"lr", "name"}).has_value());
}

}  // namespace
}  // namespace iris
