// `iris checkpoint inspect|convert` through the real binary: output, exit codes, files.
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io_test_util.h"

namespace iris::io {
namespace {

using test::iris_binary;
using test::run_command;
using test::TempDir;

std::string quoted(const fs::path& p) {
  return "'" + p.string() + "'";
}

// {"model": OrderedDict(a: [2, 3] f32, b: [4] f16, c: [5] i64), "epoch": 3}
fs::path write_small_checkpoint(const TempDir& dir) {
  StateDict sd;
  sd.insert("a", torch::randn({2, 3}));
  sd.insert("b", torch::randn({4}).to(at::kHalf));
  sd.insert("c", torch::arange(5));
  auto root = make_dict(false);
  root->set("model", state_dict_value(sd));
  root->set("epoch", 3);
  const fs::path path = dir / "small.pt";
  write_torch_checkpoint(path, root);
  return path;
}

TEST(CheckpointCli, InspectListsTensorsTotalsAndTopLevel) {
  TempDir dir;
  const fs::path path = write_small_checkpoint(dir);
  auto r = run_command(iris_binary() + " checkpoint inspect " + quoted(path));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line :
       {"top-level entries: 2", "  model: OrderedDict (3 entries)", "  epoch: int 3",
        "model: unknown model", "tensors: 3, elements: 15 (0.00 M), bytes: 72 (72 B)",
        "dtypes: float16 1, float32 1, int64 1", "  b     [4]                 float16"}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
  r = run_command(iris_binary() + " checkpoint inspect --limit 1 " + quoted(path));
  EXPECT_NE(r.output.find("... 2 more (--limit 0 lists all)"), std::string::npos) << r.output;

  r = run_command(iris_binary() + " checkpoint inspect --json " + quoted(path) + " 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["format"], "torch");
  EXPECT_EQ(j["tensor_count"], 3);
  EXPECT_EQ(j["elements"], 15);
  EXPECT_EQ(j["bytes"], 6 * 4 + 4 * 2 + 5 * 8);
  EXPECT_EQ(j["top_level"][1]["key"], "epoch");
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][1]["name"], "b");
  EXPECT_EQ(j["tensors"][1]["shape"], nlohmann::json::array({4}));
  EXPECT_EQ(j["model"]["family"], "unknown");
}

TEST(CheckpointCli, InspectsTheMicroSam21Fixture) {
  const fs::path path = test::shared_dir() / "fixtures/sam2/micro_seed0/checkpoint.pt";
  if (!fs::exists(path)) GTEST_SKIP() << "shared fixture absent: " << path;
  const auto r =
      run_command(iris_binary() + " checkpoint inspect --json " + quoted(path) + " 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["model"]["family"], "sam2.1") << j["model"];
  ASSERT_EQ(j["top_level"].size(), 1u);
  EXPECT_EQ(j["top_level"][0]["key"], "model");
  EXPECT_EQ(j["tensors"].size(), j["tensor_count"]);
  EXPECT_EQ(j["dtypes"].size(), 1u) << j["dtypes"];
  std::cout << "[ micro   ] " << j["model"]["description"].get<std::string>() << ", "
            << j["tensor_count"] << " tensors, " << j["elements"] << " elements\n";
}

TEST(CheckpointCli, ConvertRoundTripsAndRefusesToOverwrite) {
  TempDir dir;
  const fs::path pt = write_small_checkpoint(dir);
  const std::string convert = iris_binary() + " checkpoint convert ";
  auto r = run_command(convert + quoted(pt) + " " + quoted(dir / "small.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 tensors, 15 elements"), std::string::npos) << r.output;
  r = run_command(convert + quoted(dir / "small.safetensors") + " " + quoted(dir / "back.pt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const auto original = select_state_dict(read_torch_checkpoint(pt), "", "small.pt");
  const auto st = read_safetensors(dir / "small.safetensors");
  EXPECT_EQ(st.metadata.at("format"), "pt");
  const PickleValue back = read_torch_checkpoint(dir / "back.pt");
  ASSERT_NE(back.as_dict().find("model"), nullptr)
      << "a .pt output nests the tensors under 'model'";
  const auto round = select_state_dict(back, "model", "back.pt");
  ASSERT_EQ(round.size(), original.size());
  for (const auto& [name, t] : original) {
    EXPECT_TRUE(at::equal(t, *st.tensors.find(name))) << name;
    EXPECT_TRUE(at::equal(t, *round.find(name))) << name;
  }

  // Existing output: refused without --force, replaced with it.
  const std::string before = test::slurp(dir / "back.pt");
  r = run_command(convert + quoted(dir / "small.safetensors") + " " + quoted(dir / "back.pt") +
                  " --flat");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("back.pt: exists; pass --force to overwrite it"), std::string::npos)
      << r.output;
  EXPECT_EQ(test::slurp(dir / "back.pt"), before);
  r = run_command(convert + quoted(dir / "small.safetensors") + " " + quoted(dir / "back.pt") +
                  " --flat --force");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(read_torch_checkpoint(dir / "back.pt").as_dict().find("a"))
      << "--flat: tensors at the top level";
}

TEST(CheckpointCli, BadInputsGiveOneLineAndTheRightExitCode) {
  TempDir dir;
  test::spit(dir / "text.pt", "hello");
  auto r = run_command(iris_binary() + " checkpoint inspect " + quoted(dir / "text.pt"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_EQ(r.output, "iris: error: " + (dir / "text.pt").string() +
                          ": not a PyTorch checkpoint (not a zip archive)\n");
  r = run_command(iris_binary() + " checkpoint convert " + quoted(dir / "text.pt") + " " +
                  quoted(dir / "out.safetensors"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));

  const fs::path pt = write_small_checkpoint(dir);
  r = run_command(iris_binary() + " checkpoint convert " + quoted(pt) + " " +
                  quoted(dir / "out.txt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(iris_binary() + " checkpoint convert --key epoch " + quoted(pt) + " " +
                  quoted(dir / "out.safetensors"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("entry 'epoch' is int 3, not a dict of tensors"), std::string::npos)
      << r.output;
  r = run_command(iris_binary() + " checkpoint");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace iris::io
