#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_model.h"
#include "models/sam2/sam2_verify.h"
#include "test_util.h"

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;

fs::path shared_sam2() { return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2"; }

#define SKIP_WITHOUT_SHARED()                                           \
  if (!fs::exists(shared_sam2())) GTEST_SKIP() << "needs ../shared/fixtures/sam2"

// name -> "AxBxC" from a keys.tsv listing.
std::map<std::string, std::string> read_keys(const fs::path& tsv) {
  std::map<std::string, std::string> keys;
  std::ifstream in(tsv);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, shape;
    fields >> name >> shape;
    keys[name] = shape;
  }
  return keys;
}

std::string shape_text(const at::Tensor& t) {
  std::string s;
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "x" : "") + std::to_string(t.size(i));
  return s;
}

TEST(Sam2Config, OfficialSizesBuildWithExactlyTheOfficialKeys) {
  SKIP_WITHOUT_SHARED();
  for (const std::string size : {"t", "s", "b+", "l"}) {
    SCOPED_TRACE(size);
    const auto options = load_sam2_config(shared_sam2() / ("sam2.1_hiera_" + size + ".yaml"));
    EXPECT_EQ(options.image_size, 1024);
    torch::NoGradGuard no_grad;
    Sam2Model model(options);
    std::map<std::string, std::string> ours;
    for (const auto& p : model->named_parameters()) ours[p.key()] = shape_text(p.value());
    for (const auto& b : model->named_buffers()) ours[b.key()] = shape_text(b.value());
    const auto official = read_keys(shared_sam2() / ("sam2.1_hiera_" + size + ".keys.tsv"));
    std::vector<std::string> missing, unexpected, mismatched;
    for (const auto& [k, s] : official) {
      auto it = ours.find(k);
      if (it == ours.end()) missing.push_back(k);
      else if (it->second != s) mismatched.push_back(k + " " + it->second + " vs " + s);
    }
    for (const auto& [k, s] : ours) {
      if (!official.count(k)) unexpected.push_back(k);
    }
    EXPECT_TRUE(missing.empty()) << missing.size() << " missing, first " << missing.front();
    EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unexpected, first "
                                    << unexpected.front();
    EXPECT_TRUE(mismatched.empty()) << mismatched.front();
    EXPECT_EQ(ours.size(), official.size());

    // The built-in option sets give the same model as the YAML.
    Sam2Model builtin(official_sam2_options(size));
    std::map<std::string, std::string> builtin_keys;
    for (const auto& p : builtin->named_parameters()) builtin_keys[p.key()] = shape_text(p.value());
    for (const auto& b : builtin->named_buffers()) builtin_keys[b.key()] = shape_text(b.value());
    EXPECT_EQ(builtin_keys, ours);
  }
  EXPECT_THROW(official_sam2_options("huge"), ConfigError);
}

TEST(Sam2Config, ReadsEveryFieldOfTheMicroConfig) {
  SKIP_WITHOUT_SHARED();
  const auto o = load_sam2_config(shared_sam2() / "micro_seed0" / "config.yaml");
  EXPECT_EQ(o.image_size, 256);
  EXPECT_EQ(o.image_encoder.trunk.embed_dim, 16);
  EXPECT_EQ(o.image_encoder.trunk.stages, (std::vector<int64_t>{1, 1, 2, 1}));
  EXPECT_EQ(o.image_encoder.trunk.window_spec, (std::vector<int64_t>{8, 4, 4, 2}));
  EXPECT_EQ(o.image_encoder.neck.fpn_interp_model, "nearest");
  EXPECT_EQ(o.memory_attention.layer.cross_attention.attention.kv_in_dim, 16);
  EXPECT_TRUE(o.memory_attention.layer.cross_attention.rope_k_repeat);
  EXPECT_FALSE(o.memory_attention.layer.self_attention.rope_k_repeat);
  EXPECT_EQ(o.memory_encoder.mask_downsampler.embed_dim, 32);
  EXPECT_DOUBLE_EQ(o.memory_encoder.fuser.layer.layer_scale_init_value, 1e-6);
  EXPECT_EQ(memory_dim(o), 16);
  EXPECT_TRUE(o.no_obj_embed_spatial);
  EXPECT_EQ(o.multimask_min_pt_num, 0);
  EXPECT_EQ(o.fill_hole_area, 0);  // only the official builder adds post-processing
  auto post = o;
  apply_official_postprocessing(post, true);
  EXPECT_EQ(post.fill_hole_area, 8);
  EXPECT_TRUE(post.binarize_mask_from_pts_for_mem_enc);
  EXPECT_TRUE(post.dynamic_multimask_via_stability);
}

TEST(Sam2Config, UnknownFieldsAndWrongTypesAreNamed) {
  const auto parse = [](const std::string& text) {
    return parse_sam2_config(YAML::Load(text), "my.yaml");
  };
  try {
    parse("model:\n  image_encoder:\n    trunk:\n      embed_dimm: 96\n");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("my.yaml"), std::string::npos) << m;
    EXPECT_NE(m.find("model.image_encoder.trunk.embed_dimm"), std::string::npos) << m;
    EXPECT_NE(m.find("embed_dim'"), std::string::npos) << m;
  }
  try {
    parse("model:\n  num_maskmem: seven\n");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.num_maskmem: expected an integer"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(parse("model:\n  image_size: 1000\n"), ConfigError);
  EXPECT_THROW(parse("model: 3\n"), ConfigError);
}

TEST(Sam2Model, OneDimSinePeAndHoleFilling) {
  const auto pe = get_1d_sine_pe(torch::tensor({0.0f, 0.5f}), 8);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{2, 8}));
  // [sin | cos] halves, dim_t = 1e4^(2*(i//2)/4)
  EXPECT_NEAR(pe[1][0].item<double>(), std::sin(0.5), 1e-6);
  EXPECT_NEAR(pe[1][2].item<double>(), std::sin(0.5 / 100.0), 1e-6);
  EXPECT_NEAR(pe[1][4].item<double>(), std::cos(0.5), 1e-6);
  EXPECT_NEAR(pe[0][5].item<double>(), 1.0, 1e-6);

  // A 2-pixel hole inside an object is filled; the background around it (large) is not.
  auto mask = torch::full({1, 1, 8, 8}, -5.0f);
  mask.slice(2, 2, 6).slice(3, 2, 6).fill_(3.0f);
  mask[0][0][3][3] = -1.0f;
  mask[0][0][4][4] = -1.0f;  // diagonal neighbour: one 8-connected hole of 2 pixels
  const auto filled = fill_holes_in_mask_scores(mask, 2);
  EXPECT_FLOAT_EQ(filled[0][0][3][3].item<float>(), 0.1f);
  EXPECT_FLOAT_EQ(filled[0][0][4][4].item<float>(), 0.1f);
  EXPECT_FLOAT_EQ(filled[0][0][0][0].item<float>(), -5.0f);
  EXPECT_FLOAT_EQ(fill_holes_in_mask_scores(mask, 1)[0][0][3][3].item<float>(), -1.0f);
}

void expect_passes(const VerifyReport& report) {
  for (const auto& t : report.tensors) {
    EXPECT_TRUE(t.passed) << t.name << " relative error " << t.relative_error;
  }
  EXPECT_TRUE(report.passed());
  EXPECT_TRUE(report.unchecked.empty());
}

TEST(Sam2Verify, OfficialMicroFixtureMatches) {
  SKIP_WITHOUT_SHARED();
  const auto report = verify_sam2_fixture(shared_sam2() / "micro_seed0", 1e-4);
  EXPECT_EQ(report.tensors.size(), 10u);  // 6 image features, 3 prompts, propagation
  expect_passes(report);
}

// Fixtures of the same form with other seeds, prompt mixes and the SAM 2.0 flags, written by
// the official package at test time.
TEST(Sam2Verify, GeneratedFixturesMatch) {
  SKIP_WITHOUT_SHARED();
  if (test::venv_python().empty()) GTEST_SKIP() << "needs .venv/bin/python";
  const fs::path script = fs::path(IRIS_SOURCE_DIR) / "tests/models/sam2/make_sam2_fixture.py";
  const std::string config = (shared_sam2() / "micro_seed0" / "config.yaml").string();
  const std::vector<std::string> variants = {
      "--seed 3 --frames 4 --prompts point,box,mask",
      "--seed 5 --frames 3 --prompts box,points --set model.no_obj_embed_spatial=false "
      "--set model.proj_tpos_enc_in_obj_ptrs=false --set model.use_signed_tpos_enc_to_obj_ptrs=false",
  };
  for (const auto& args : variants) {
    SCOPED_TRACE(args);
    test::TempDir dir;
    const auto r = test::run_command("'" + test::venv_python().string() + "' '" + script.string() +
                                     "' '" + config + "' '" + dir.path().string() + "' " + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_passes(verify_sam2_fixture(dir.path(), 1e-4));
  }
}

TEST(Sam2Verify, CommandReportsEveryTensorAndFailsAboveTolerance) {
  SKIP_WITHOUT_SHARED();
  const std::string fixture = (shared_sam2() / "micro_seed0").string();
  auto ok = test::run_command(test::iris_binary() + " sam2 verify '" + fixture + "'");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("video/propagated_logits"), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("10 of 10 tensors"), std::string::npos) << ok.output;
  auto strict = test::run_command(test::iris_binary() + " sam2 verify '" + fixture +
                                  "' --tolerance 1e-15");
  EXPECT_NE(strict.exit_code, 0) << strict.output;
  EXPECT_NE(strict.output.find("FAIL"), std::string::npos) << strict.output;
  auto missing = test::run_command(test::iris_binary() + " sam2 verify /nonexistent-fixture");
  EXPECT_NE(missing.exit_code, 0);
}

}  // namespace
}  // namespace iris::models::sam2
