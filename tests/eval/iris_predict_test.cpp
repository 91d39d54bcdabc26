#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iostream>

#include "core/atomic_file.h"
#include "eval/iris_predict.h"
#include "io/image_io.h"
#include "io/nifti.h"
#include "test_util.h"

namespace iris {
namespace {

using test::iris_binary;
using test::run_command;
using test::TempDir;

// A bright ball (label 1) and a bright slab (label 2) at an offset that varies with `seed`.
std::pair<at::Tensor, at::Tensor> synthetic_volume(int64_t seed, std::vector<int64_t> shape) {
  torch::manual_seed(seed);
  const int64_t nk = shape[0], nj = shape[1], ni = shape[2];
  const auto k = torch::arange(nk).view({nk, 1, 1}).to(torch::kFloat);
  const auto j = torch::arange(nj).view({1, nj, 1}).to(torch::kFloat);
  const auto i = torch::arange(ni).view({1, 1, ni}).to(torch::kFloat);
  const double ck = nk / 2.0, cj = nj / 3.0 + seed % 3, ci = ni / 3.0 + seed % 4;
  const auto ball = ((k - ck).pow(2) + (j - cj).pow(2) + (i - ci).pow(2)) < 16;
  const auto slab = (j > 2 * nj / 3) & (j < 2 * nj / 3 + 4) & (i > ni / 2) & (k > 1);
  auto labels = torch::zeros({nk, nj, ni}, torch::kShort);
  labels.masked_fill_(ball, 1);
  labels.masked_fill_(slab, 2);
  const auto image = 100 + 20 * torch::rand({nk, nj, ni}) + 300 * ball.to(torch::kFloat) +
                     500 * slab.to(torch::kFloat);
  return {image, labels};
}

Affine oblique() {
  Affine a;
  const double c = std::cos(0.3), s = std::sin(0.3);
  a.m = {1.5 * c, -1.2 * s, 0, -30.5, 1.5 * s, 1.2 * c, 0, 12.25, 0, 0, 2.0, 7.0, 0, 0, 0, 1};
  return a;
}

void write_volume(const fs::path& path, const at::Tensor& data, const Affine& affine,
                  int sform_code = 1) {
  Volume v;
  v.data = data;
  v.affine = affine;
  v.sform_code = sform_code;
  write_nifti(path, v);
}

// Random weights saved as `iris train` saves them, with a memory bank of two classes.
void write_checkpoint(const fs::path& path, const models::IrisOptions& o) {
  torch::manual_seed(0);
  models::IrisModel model(o);
  torch::serialize::OutputArchive archive;
  model->save(archive);
  torch::serialize::OutputArchive bank;
  bank.write("t0", torch::randn({o.tokens_per_class(), o.feature_channels()}));
  bank.write("t1", torch::randn({o.tokens_per_class(), o.feature_channels()}));
  bank.write("names", c10::IValue(std::string("aal/ball\naal/slab\n")));
  bank.write("momentum", c10::IValue(0.999));
  archive.write("memory_bank", bank);
  archive.save_to(path.string());
}

void write_config(const fs::path& path, int64_t dims) {
  write_file_atomic(path,
                    fmt::format("model:\n  spatial_dims: {}\n  base_channels: 4\n  stages: 2\n"
                                "  query_tokens: 3\n  heads: 2\n  decoder_layers: 1\n  prior_features: 0\n"
                                "data:\n  label_map: aal\n  slice_size: 32\n",
                                dims));
}

TEST(IrisPredict, NiftiVolumesGiveMasksOnTheQueryGridForEveryStrategy) {
  TempDir dir;
  for (int64_t r = 0; r < 2; ++r) {
    const auto [image, labels] = synthetic_volume(r, {12, 24, 20});
    write_volume(dir / fmt::format("ref{}.nii.gz", r), image, Affine::diagonal(1, 1, 1));
    write_volume(dir / fmt::format("ref{}_mask.nii.gz", r), labels, Affine::diagonal(1, 1, 1));
  }
  const auto [query, query_labels] =
      synthetic_volume(5, {10, 28, 22});  // not divisible by the stride
  write_volume(dir / "query.nii.gz", query, oblique(), 2);
  write_volume(dir / "query_mask.nii.gz", query_labels, oblique(), 2);
  models::IrisOptions o{3, 1, 4, 2, 3, 2, 1, false};
  write_checkpoint(dir / "model.pt", o);
  write_config(dir / "config.yaml", 3);
  const std::string base = fmt::format(
      "{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} --reference "
      "{} "
      "--reference-mask {} --query {} --window 8,16,16 --tuning-steps 2 --threads 1",
      iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
      (dir / "ref0.nii.gz").string(), (dir / "ref0_mask.nii.gz").string(),
      (dir / "ref1.nii.gz").string(), (dir / "ref1_mask.nii.gz").string(),
      (dir / "query.nii.gz").string());
  // One strategy through the command line; the others through the same code in-process (each
  // process start costs more than the prediction).
  torch::manual_seed(0);
  models::IrisModel model(o);
  for (const std::string strategy : {"tuning", "one-shot", "ensemble", "retrieval"}) {
    SCOPED_TRACE(strategy);
    const fs::path out = dir / strategy;
    if (strategy == "tuning") {
      const auto r = run_command(base + " --strategy " + strategy + " --out " + out.string());
      ASSERT_EQ(r.exit_code, 0) << r.output;
    } else {
      IrisPredictOptions options;
      options.strategy = models::parse_strategy(strategy);
      options.window.window = {8, 16, 16};
      predict_iris(model,
                   {{dir / "ref0.nii.gz", dir / "ref0_mask.nii.gz"},
                    {dir / "ref1.nii.gz", dir / "ref1_mask.nii.gz"}},
                   dir / "query.nii.gz", options, out);
    }
    const Volume mask = read_nifti(out / "mask.nii.gz");
    EXPECT_EQ(mask.data.sizes(), query.sizes());
    EXPECT_EQ(mask.sform_code, 2);
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(mask.affine.m[i], oblique().m[i], 1e-5) << i;
    const auto values = std::get<0>(at::_unique(mask.data.to(torch::kLong)));
    for (int64_t i = 0; i < values.numel(); ++i) {
      EXPECT_TRUE(values[i].item<int64_t>() >= 0 && values[i].item<int64_t>() <= 2);
    }
    const auto json = nlohmann::json::parse(read_file(out / "prediction.json"));
    EXPECT_EQ(json["strategy"], strategy);
    EXPECT_EQ(json["mode"], "3d-volume");
    EXPECT_EQ(json["classes"].size(), 2u);
    EXPECT_GE(json["timings_ms"]["total"].get<double>(),
              json["timings_ms"]["segment"].get<double>());
    // Timings of a tiny model, for --gtest_output=xml.
    RecordProperty(strategy + "_task_ms", std::to_string(json["timings_ms"]["task"].get<double>()));
    RecordProperty(strategy + "_total_ms",
                   std::to_string(json["timings_ms"]["total"].get<double>()));
  }
  // Retrieval from the checkpoint's memory bank by class name, without references.
  const auto bank = run_command(
      fmt::format("{} predict iris --checkpoint {} --config {} --query {} --strategy retrieval "
                  "--bank --classes 1,2 "
                  "--class-names ball,slab --out {} --threads 1",
                  iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
                  (dir / "query.nii.gz").string(), (dir / "bank").string()));
  ASSERT_EQ(bank.exit_code, 0) << bank.output;
  EXPECT_TRUE(fs::exists(dir / "bank" / "mask.nii.gz"));
  // The query among its own references is refused (exit code 3, bad input).
  const auto leak = run_command(
      fmt::format("{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} "
                  "--query {} --out {}",
                  iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
                  (dir / "query.nii.gz").string(), (dir / "query_mask.nii.gz").string(),
                  (dir / "query.nii.gz").string(), (dir / "leak").string()));
  EXPECT_EQ(leak.exit_code, 3) << leak.output;
  EXPECT_NE(leak.output.find("never its own reference"), std::string::npos) << leak.output;
}

TEST(IrisPredict, A2DModelSegmentsNiftiVolumesSliceBySlice) {
  TempDir dir;
  const auto [image, labels] = synthetic_volume(1, {6, 24, 20});
  write_volume(dir / "ref.nii", image, Affine::diagonal(1, 1, 1));
  write_volume(dir / "ref_mask.nii", labels, Affine::diagonal(1, 1, 1));
  const auto [query, query_labels] = synthetic_volume(2, {5, 20, 26});
  write_volume(dir / "query.nii.gz", query, oblique());
  write_checkpoint(dir / "model.pt", {2, 1, 4, 2, 3, 2, 1, false});
  write_config(dir / "config.yaml", 2);
  for (const std::string strategy : {"ensemble", "retrieval"}) {
    const auto r = run_command(fmt::format(
        "{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} --query {} "
        "--strategy {} --out {} --threads 1",
        iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
        (dir / "ref.nii").string(), (dir / "ref_mask.nii").string(),
        (dir / "query.nii.gz").string(), strategy, (dir / strategy).string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Volume mask = read_nifti(dir / strategy / "mask.nii.gz");
    EXPECT_EQ(mask.data.sizes(), query.sizes());
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(mask.affine.m[i], oblique().m[i], 1e-5) << i;
    const auto json = nlohmann::json::parse(read_file(dir / strategy / "prediction.json"));
    EXPECT_EQ(json["mode"], "2d-slices");
    // The reference slice is the one holding most of the classes' voxels.
    const int64_t best = (labels > 0).sum({1, 2}).argmax().item<int64_t>();
    EXPECT_EQ(json["references"][0]["slice"], best);
  }
}

TEST(IrisPredict, PngSlicesAndTheStrategyTable) {
  TempDir dir;
  fs::create_directories(dir / "pool" / "masks");
  for (int64_t c = 0; c < 3; ++c) {
    auto [image, labels] = synthetic_volume(c, {8, 40, 36});
    const auto slice = (image[4] / 4).clamp(0, 255).to(torch::kByte);
    write_image(dir / "pool" / fmt::format("case{}.png", c), slice);
    write_image(dir / "pool" / "masks" / fmt::format("case{}.png", c), labels[4].to(torch::kByte));
  }
  models::IrisOptions o{2, 1, 4, 2, 3, 2, 1, false};
  write_checkpoint(dir / "model.pt", o);
  write_config(dir / "config.yaml", 2);
  const auto r = run_command(fmt::format(
      "{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} --query {} "
      "--out {} "
      "--threads 1",
      iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
      (dir / "pool" / "case0.png").string(), (dir / "pool" / "masks" / "case0.png").string(),
      (dir / "pool" / "case1.png").string(), (dir / "out").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto mask = read_image_raw(dir / "out" / "mask.png");
  EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{40, 36}));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "out" / "prediction.json"))["mode"], "2d-image");

  const auto e =
      run_command(fmt::format("{} eval iris {} --checkpoint {} --config {} --references 2 "
                              "--tuning-steps 2 --out {} --threads 1",
                              iris_binary(), (dir / "pool").string(), (dir / "model.pt").string(),
                              (dir / "config.yaml").string(), (dir / "eval").string()));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto json = nlohmann::json::parse(read_file(dir / "eval" / "eval.json"));
  EXPECT_EQ(json["queries"].size(), 3u);
  for (const char* s : {"one-shot", "ensemble", "retrieval", "tuning"}) {
    ASSERT_TRUE(json["strategies"].contains(s)) << s;
    for (const auto& [name, c] : json["strategies"][s]["classes"].items()) {
      EXPECT_EQ(c["queries"], 3) << name;
      EXPECT_GE(c["dice"].get<double>(), 0.0);
      EXPECT_LE(c["dice"].get<double>(), 1.0);
    }
  }
  EXPECT_TRUE(fs::exists(dir / "eval" / "eval.md"));
}


// A volume stored LAS, oblique and anisotropic (0.8 x 0.8 x 2.5 mm).
Affine las_oblique() {
  Affine a;
  const double c = std::cos(0.25), s = std::sin(0.25);
  a.m = {-0.8, 0, 0, 52.0, 0, 0.8 * c, -2.5 * s, -31.0, 0, 0.8 * s, 2.5 * c, 12.5, 0, 0, 0, 1};
  return a;
}

// A model trained on data.datasets: the query goes through the preprocessing path (RAS, 1.5 mm,
// foreground crop, z-score) and its mask comes back onto the query's own grid.
TEST(IrisPredict, PreparedQueryMaskEqualsNibabelsResamplingOfThePrediction) {
  const fs::path python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "no .venv with nibabel";
  TempDir dir;
  for (int64_t r = 0; r < 2; ++r) {
    const auto [image, labels] = synthetic_volume(r, {10, 40, 36});
    write_volume(dir / fmt::format("ref{}.nii.gz", r), image, las_oblique());
    write_volume(dir / fmt::format("ref{}_mask.nii.gz", r), labels, las_oblique());
  }
  const auto [query, query_labels] = synthetic_volume(7, {12, 44, 38});
  write_volume(dir / "query.nii.gz", query, las_oblique(), 2);
  models::IrisOptions o{3, 1, 4, 2, 3, 2, 1, false};
  write_checkpoint(dir / "model.pt", o);
  write_file_atomic(dir / "config.yaml",
                    "model:\n  spatial_dims: 3\n  base_channels: 4\n  stages: 2\n"
                    "  query_tokens: 3\n  heads: 2\n  decoder_layers: 1\n  prior_features: 0\n"
                    "data:\n  source: datasets\n  preprocess:\n    spacing: [1.5, 1.5, 1.5]\n"
                    "  datasets:\n    - path: somewhere\n      modality: MR\n");
  const auto r = run_command(fmt::format(
      "{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} --reference "
      "{} --reference-mask {} --query {} --strategy ensemble --write-prepared --out {} --threads 1",
      iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
      (dir / "ref0.nii.gz").string(), (dir / "ref0_mask.nii.gz").string(),
      (dir / "ref1.nii.gz").string(), (dir / "ref1_mask.nii.gz").string(),
      (dir / "query.nii.gz").string(), (dir / "out").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Volume mask = read_nifti(dir / "out/mask.nii.gz");
  EXPECT_EQ(mask.data.sizes(), query.sizes());
  EXPECT_EQ(mask.sform_code, 2);
  EXPECT_EQ(orientation_codes(mask.affine), "LAS");
  const Volume prepared = read_nifti(dir / "out/mask_prepared.nii.gz");
  EXPECT_EQ(orientation_codes(prepared.affine), "RAS");
  for (double s : prepared.affine.spacing()) EXPECT_NEAR(s, 1.5, 1e-5);
  const auto check = run_command(fmt::format(
      "'{}' '{}/tests/eval/resample_reference.py' {} {} {}", python.string(), IRIS_SOURCE_DIR,
      (dir / "out/mask_prepared.nii.gz").string(), (dir / "query.nii.gz").string(),
      (dir / "out/mask.nii.gz").string()));
  ASSERT_EQ(check.exit_code, 0) << check.output;
  const auto json = nlohmann::json::parse(check.output);
  std::cout << "[measure] nibabel resampling vs iris predict: " << json.dump() << "\n";
  EXPECT_TRUE(json["shape_equal"].get<bool>());
  EXPECT_EQ(json["mismatches"].get<int64_t>(), 0);
  EXPECT_LT(json["affine_max_difference"].get<double>(), 1e-5);
  EXPECT_GE(json["values"].size(), 2u) << "a prediction with background and foreground";
}

}  // namespace
}  // namespace iris
