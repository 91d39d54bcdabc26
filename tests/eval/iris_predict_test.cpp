#include <fmt/format.h>
#include <sys/resource.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iostream>

#include "core/atomic_file.h"
#include "data/image_folder_dataset.h"
#include "data/preprocess.h"
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
  for (const char* s :
       {"one-shot", "ensemble", "retrieval", "tuning", "copied reference", "untrained one-shot"}) {
    ASSERT_TRUE(json["strategies"].contains(s)) << s;
    for (const auto& [name, c] : json["strategies"][s]["classes"].items()) {
      EXPECT_EQ(c["queries"], 3) << name;
      EXPECT_GE(c["dice"].get<double>(), 0.0);
      EXPECT_LE(c["dice"].get<double>(), 1.0);
      EXPECT_GE(c["nsd"].get<double>(), 0.0);
      EXPECT_LE(c["nsd"].get<double>(), 1.0);
      // HD95 in pixels for 2D images, where the prediction is not empty.
      if (c["hd95_queries"].get<int64_t>() > 0) EXPECT_GE(c["hd95_mm"].get<double>(), 0.0);
    }
  }
  EXPECT_EQ(json["dataset"], "pool");
  // The copied reference lies on the query's grid (all slices 40x36): its Dice is the overlap of
  // the two label maps, computed here by hand for class 1 over the 3 queries.
  double copy = 0;
  for (int64_t q = 0; q < 3; ++q) {
    const auto truth = read_mask_labels(dir / "pool" / "masks" / fmt::format("case{}.png", q)) == 1;
    const auto ref =
        read_mask_labels(dir / "pool" / "masks" / fmt::format("case{}.png", (q + 1) % 3)) == 1;
    copy += 2 * (truth & ref).sum().item<double>() /
            (truth.sum().item<double>() + ref.sum().item<double>());
  }
  EXPECT_NEAR(json["strategies"]["copied reference"]["classes"]["1"]["dice"].get<double>(),
              copy / 3, 1e-9);
  const std::string md = read_file(dir / "eval" / "eval.md");
  for (const char* section : {"## Dice", "## HD95 (mm)", "## NSD"}) {
    EXPECT_NE(md.find(section), std::string::npos) << md;
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

// A CT tree as users have it: 512x512x80 int16 volumes in HU (air, soft tissue, bone), 0.7 x 0.7
// x 2.5 mm, dataset.json saying CT. Windowed and z-scored as CT, evaluated and predicted through
// the binary; the peak memory of those processes is printed.
TEST(IrisPredict, CtTreeOf512By512By80InHounsfieldUnitsIsWindowedEvaluatedAndPredicted) {
  TempDir dir;
  const fs::path tree = dir / "ct";
  fs::create_directories(tree / "imagesTr");
  fs::create_directories(tree / "labelsTr");
  const int64_t nk = 80, nj = 512, ni = 512;
  const auto k = torch::arange(nk, torch::kFloat).view({nk, 1, 1}) * 2.5;
  const auto j = torch::arange(nj, torch::kFloat).view({1, nj, 1}) * 0.7;
  const auto i = torch::arange(ni, torch::kFloat).view({1, 1, ni}) * 0.7;
  Affine affine = Affine::diagonal(0.7, 0.7, 2.5);
  for (int64_t c = 0; c < 4; ++c) {
    torch::manual_seed(c);
    const double shift = 6.0 * c;
    const auto body = ((j - 180).pow(2) / (150.0 * 150.0) + (i - 180).pow(2) / (120.0 * 120.0)) < 1;
    const auto organ = ((k - 100).pow(2) + (j - 160 - shift).pow(2) + (i - 150).pow(2)) < 30 * 30;
    const auto bone = ((j - 250).pow(2) + (i - 180 - shift).pow(2)) < 12 * 12;
    auto hu = torch::full({nk, nj, ni}, -1000.0) + 10 * torch::randn({nk, nj, ni});
    hu = torch::where(body.expand({nk, nj, ni}), 40 + 10 * torch::randn({nk, nj, ni}), hu);
    hu = torch::where(organ, torch::full({}, 90.0), hu);
    hu = torch::where(bone.expand({nk, nj, ni}), torch::full({}, 1200.0), hu);
    auto labels = torch::zeros({nk, nj, ni}, torch::kByte);
    labels.masked_fill_(organ, 1);
    labels.masked_fill_(bone.expand({nk, nj, ni}), 2);
    write_volume(tree / "imagesTr" / fmt::format("ct_{:03d}_0000.nii.gz", c), hu.to(torch::kShort),
                 affine);
    write_volume(tree / "labelsTr" / fmt::format("ct_{:03d}.nii.gz", c), labels, affine);
  }
  write_file_atomic(tree / "dataset.json",
                    R"({"name": "ct", "modality": {"0": "CT"}, "labels": {"0": "background", )"
                    R"("1": "organ", "2": "bone"}})");
  // CT preparation: clipped to [-990, 500] HU, then z-scored.
  const Volume raw = read_nifti(tree / "imagesTr/ct_000_0000.nii.gz");
  ASSERT_EQ(raw.data.scalar_type(), torch::kShort);
  PreprocessOptions prep;
  prep.spacing = {3, 3, 3};
  const PreparedVolume p = prepare_volume(raw, nullptr, Modality::kCT, prep);
  const PreparedVolume as_mr = prepare_volume(raw, nullptr, Modality::kMR, prep);
  EXPECT_NEAR(p.image.mean().item<double>(), 0, 1e-4);
  EXPECT_NEAR(p.image.to(torch::kDouble).std().item<double>(), 1, 1e-3);
  // Bone (1200 HU) sits at the window's top, air at its bottom: 1490 HU apart in z units.
  const double span = p.image.max().item<double>() - p.image.min().item<double>();
  const double hu_per_unit = 1490.0 / span;
  EXPECT_GT(hu_per_unit, 100) << "a z unit spans hundreds of HU";
  // CT crops to the body (above -500 HU); as MR the air is foreground (non-zero) and stays.
  EXPECT_LT(p.image.numel(), as_mr.image.numel());

  models::IrisOptions o{3, 1, 4, 2, 3, 2, 1, false};
  write_checkpoint(dir / "model.pt", o);
  write_file_atomic(dir / "config.yaml",
                    "model:\n  spatial_dims: 3\n  base_channels: 4\n  stages: 2\n"
                    "  query_tokens: 3\n  heads: 2\n  decoder_layers: 1\n  prior_features: 0\n"
                    "data:\n  source: datasets\n  preprocess:\n    spacing: [3.0, 3.0, 3.0]\n"
                    "  datasets:\n    - path: ct\n      modality: CT\n");
  const auto e = run_command(fmt::format(
      "{} eval iris {} --checkpoint {} --config {} --strategies one-shot --references 1 "
      "--max-queries 2 --out {} --threads 2",
      iris_binary(), tree.string(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
      (dir / "eval").string()));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto json = nlohmann::json::parse(read_file(dir / "eval" / "eval.json"));
  EXPECT_EQ(json["dataset"], "ct");
  for (const char* name : {"organ", "bone"}) {
    const auto& c = json["strategies"]["one-shot"]["classes"][name];
    EXPECT_EQ(c["queries"], 2) << name;
    // Two cases share the grid: the copied reference is scored, and near perfect for the bone.
    EXPECT_GT(json["strategies"]["copied reference"]["classes"][name]["dice"].get<double>(), 0.5);
  }
  const auto r = run_command(fmt::format(
      "{} predict iris --checkpoint {} --config {} --reference {} --reference-mask {} --query {} "
      "--out {} --threads 2",
      iris_binary(), (dir / "model.pt").string(), (dir / "config.yaml").string(),
      (tree / "imagesTr/ct_000_0000.nii.gz").string(), (tree / "labelsTr/ct_000.nii.gz").string(),
      (tree / "imagesTr/ct_001_0000.nii.gz").string(), (dir / "pred").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Volume mask = read_nifti(dir / "pred/mask.nii.gz");
  EXPECT_EQ(mask.data.sizes(), (std::vector<int64_t>{nk, nj, ni}));
  for (int m = 0; m < 16; ++m) EXPECT_NEAR(mask.affine.m[m], affine.m[m], 1e-6);
  struct rusage usage {};
  getrusage(RUSAGE_CHILDREN, &usage);
  std::cout << "[measure] CT 512x512x80 eval + predict: peak RSS of the largest process "
            << usage.ru_maxrss / 1024 << " MB\n";
}

}  // namespace
}  // namespace iris
