// SAM2 image encoder: parity with the official PyTorch modules (a shared fixture of the whole
// model and random-weight references generated at test time), and checkpoint keys and shapes of
// the four official sizes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/sam2/image_encoder.h"
#include "test_util.h"

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;

constexpr double kMaxRelError = 1e-5;

fs::path sam2_fixtures() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared/fixtures/sam2";
}

double rel_error(const at::Tensor& ours, const at::Tensor& theirs) {
  const auto a = ours.to(at::kDouble), b = theirs.to(at::kDouble);
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

#define EXPECT_CLOSE(ours, theirs)                                            \
  do {                                                                        \
    const at::Tensor& o_ = (ours);                                            \
    const at::Tensor& t_ = (theirs);                                          \
    ASSERT_EQ(o_.sizes(), t_.sizes());                                        \
    EXPECT_LE(rel_error(o_, t_), kMaxRelError) << #ours << " vs " << #theirs; \
  } while (0)

// Entries of `sd` whose name starts with `prefix`, with the prefix removed.
io::StateDict with_prefix(const io::StateDict& sd, const std::string& prefix) {
  io::StateDict out;
  for (const auto& [name, tensor] : sd) {
    if (name.rfind(prefix, 0) == 0) out.insert(name.substr(prefix.size()), tensor);
  }
  return out;
}

const at::Tensor& get(const io::StateDict& sd, const std::string& name) {
  const at::Tensor* t = sd.find(name);
  if (t == nullptr) throw std::runtime_error("missing tensor " + name);
  return *t;
}

// --- 1. the shared fixture of a whole (micro) SAM2.1 model -------------------------------------

// image_encoder of micro_seed0/config.yaml.
ImageEncoderOptions micro_options() {
  ImageEncoderOptions o;
  o.trunk.embed_dim = 16;
  o.trunk.num_heads = 1;
  o.trunk.stages = {1, 1, 2, 1};
  o.trunk.global_att_blocks = {3};
  o.trunk.window_pos_embed_bkg_spatial_size = {4, 4};
  o.trunk.window_spec = {8, 4, 4, 2};
  o.neck.position_encoding = PositionEmbeddingSineOptions{32, 10000.0, true, 0.0};
  o.neck.d_model = 32;
  o.neck.backbone_channel_list = {128, 64, 32, 16};
  o.neck.fpn_top_down_levels = {2, 3};
  o.neck.fpn_interp_model = "nearest";
  o.scalp = 1;
  return o;
}

TEST(Sam2ImageEncoder, MicroFixtureParity) {
  const fs::path dir = sam2_fixtures() / "micro_seed0";
  if (!fs::exists(dir / "checkpoint.pt")) GTEST_SKIP() << "no shared fixture at " << dir;
  torch::NoGradGuard no_grad;
  const auto ckpt = io::read_checkpoint(dir / "checkpoint.pt");
  const auto sd = io::select_state_dict(ckpt.root, "", "checkpoint.pt");
  const auto expected =
      io::select_state_dict(io::read_checkpoint(dir / "expected.pt").root, "", "expected.pt");

  ImageEncoder encoder(micro_options());
  encoder->eval();
  io::load_state_dict(*encoder, with_prefix(sd, "image_encoder."));
  const auto frame = get(expected, "frames_normalized").slice(0, 0, 1);
  const auto out = encoder->forward(frame);

  ASSERT_EQ(out.backbone_fpn.size(), 3u);
  ASSERT_EQ(out.vision_pos_enc.size(), 3u);
  EXPECT_TRUE(out.vision_features.is_same(out.backbone_fpn[2]));
  // SAM2Base.forward_image projects the two high-resolution levels for the mask decoder.
  const auto s0 = at::conv2d(out.backbone_fpn[0], get(sd, "sam_mask_decoder.conv_s0.weight"),
                             get(sd, "sam_mask_decoder.conv_s0.bias"));
  const auto s1 = at::conv2d(out.backbone_fpn[1], get(sd, "sam_mask_decoder.conv_s1.weight"),
                             get(sd, "sam_mask_decoder.conv_s1.bias"));
  EXPECT_CLOSE(s0, get(expected, "image/backbone_fpn_0"));
  EXPECT_CLOSE(s1, get(expected, "image/backbone_fpn_1"));
  EXPECT_CLOSE(out.backbone_fpn[2], get(expected, "image/backbone_fpn_2"));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_CLOSE(out.vision_pos_enc[i], get(expected, "image/vision_pos_enc_" + std::to_string(i)));
  }
}

// --- 2. checkpoint keys and shapes of the official sizes ---------------------------------------

using KeyShapes = std::vector<std::pair<std::string, std::string>>;

std::string shape_string(at::IntArrayRef sizes) {
  std::ostringstream s;
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? "x" : "") << sizes[i];
  return s.str();
}

TEST(Sam2ImageEncoder, OfficialKeysAndShapes) {
  const std::vector<std::pair<std::string, std::string>> sizes{
      {"tiny", "t"}, {"small", "s"}, {"base_plus", "b+"}, {"large", "l"}};
  for (const auto& [size, tag] : sizes) {
    SCOPED_TRACE(size);
    const fs::path tsv = sam2_fixtures() / ("sam2.1_hiera_" + tag + ".keys.tsv");
    if (!fs::exists(tsv)) GTEST_SKIP() << "no key list at " << tsv;
    KeyShapes want;
    std::ifstream in(tsv);
    const std::string prefix = "image_encoder.";
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(prefix, 0) != 0) continue;
      std::istringstream fields(line);
      std::string name, shape;
      fields >> name >> shape;
      want.emplace_back(name.substr(prefix.size()), shape);
    }
    ASSERT_FALSE(want.empty());

    torch::NoGradGuard no_grad;
    ImageEncoder encoder(official_image_encoder_options(size));
    KeyShapes got;
    for (const auto& p : encoder->named_parameters()) {
      got.emplace_back(p.key(), shape_string(p.value().sizes()));
    }
    for (const auto& b : encoder->named_buffers()) {
      got.emplace_back(b.key(), shape_string(b.value().sizes()));
    }
    EXPECT_EQ(got, want);  // same names, shapes and order as the official state dict
  }
}

TEST(Sam2ImageEncoder, OfficialOptionsRejectUnknownSize) {
  EXPECT_THROW(official_image_encoder_options("huge"), ConfigError);
}

TEST(Sam2ImageEncoder, WindowLagAndQueryPoolingOfTiny) {
  // notes §1.3: stage entries 1, 3, 10 pool; each keeps the previous stage's window.
  const auto o = official_image_encoder_options("tiny");
  Hiera trunk(o.trunk);
  const std::vector<int64_t> window{8, 8, 4, 4, 14, 0, 14, 0, 14, 0, 14, 7};
  const std::vector<int64_t> dim_out{96, 192, 192, 384, 384, 384, 384, 384, 384, 384, 768, 768};
  for (size_t i = 0; i < trunk->blocks->size(); ++i) {
    const auto& b = trunk->blocks->at<MultiScaleBlockImpl>(i).options;
    EXPECT_EQ(b.window_size, window[i]) << "block " << i;
    EXPECT_EQ(b.dim_out, dim_out[i]) << "block " << i;
    EXPECT_EQ(b.q_stride[0] > 0, i == 1 || i == 3 || i == 10) << "block " << i;
  }
  EXPECT_EQ(trunk->channel_list(), (std::vector<int64_t>{768, 384, 192, 96}));
}

TEST(Sam2ImageEncoder, RejectsInconsistentOptions) {
  auto o = micro_options();
  o.neck.backbone_channel_list = {64, 32, 16, 8};
  EXPECT_THROW(ImageEncoder{o}, ConfigError);
  o = micro_options();
  o.trunk.window_spec = {8, 4, 4};
  EXPECT_THROW(ImageEncoder{o}, ConfigError);
  o = micro_options();
  o.neck.fuse_type = "max";
  EXPECT_THROW(ImageEncoder{o}, ConfigError);
  o = micro_options();
  o.scalp = 4;
  EXPECT_THROW(ImageEncoder{o}, ConfigError);
}

TEST(Sam2ImageEncoder, OutputShapesAt384AndSideCheck) {
  torch::NoGradGuard no_grad;
  ImageEncoder encoder(micro_options());
  const auto out = encoder->forward(torch::randn({2, 3, 384, 320}));
  ASSERT_EQ(out.backbone_fpn.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const int64_t stride = int64_t{4} << i;
    EXPECT_EQ(out.backbone_fpn[i].sizes(),
              (std::vector<int64_t>{2, 32, 384 / stride, 320 / stride}));
    EXPECT_EQ(out.vision_pos_enc[i].sizes(), out.backbone_fpn[i].sizes());
  }
  EXPECT_THROW(encoder->forward(torch::randn({1, 3, 240, 256})), c10::Error);
}

TEST(Sam2ImageEncoder, PositionEmbeddingCacheFollowsParameters) {
  torch::NoGradGuard no_grad;
  Hiera trunk(micro_options().trunk);
  const auto before = trunk->pos_embed_for(16, 16).clone();
  EXPECT_TRUE(torch::equal(before, trunk->pos_embed_for(16, 16)));
  trunk->pos_embed.add_(1.0);  // as load_state_dict's copy_ would
  const auto after = trunk->pos_embed_for(16, 16);
  EXPECT_TRUE(torch::allclose(after, before + 1.0, 1e-5, 1e-5));
}

TEST(Sam2ImageEncoder, RunsInInferenceMode) {
  // Parameters created in InferenceMode carry no version counter: the position embedding must
  // not be cached for them, and the result must equal the no-grad one.
  torch::manual_seed(1);
  Hiera plain(micro_options().trunk);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 64, 64});
  const auto want = plain->forward(x).back();
  c10::InferenceMode inference;
  torch::manual_seed(1);
  Hiera created_inside(micro_options().trunk);
  EXPECT_TRUE(torch::equal(created_inside->forward(x).back(), want));
  EXPECT_TRUE(torch::equal(plain->forward(x).back(), want));
}

// --- 3. random weights against the official modules --------------------------------------------

// The configurations of make_image_encoder_ref.py.
ImageEncoderOptions padded_options() {
  ImageEncoderOptions o;
  o.trunk.embed_dim = 16;
  o.trunk.num_heads = 1;
  o.trunk.stages = {1, 2, 3, 2};
  o.trunk.window_spec = {8, 4, 6, 3};
  o.trunk.global_att_blocks = {5};
  o.trunk.window_pos_embed_bkg_spatial_size = {5, 3};
  o.neck.position_encoding = PositionEmbeddingSineOptions{24, 10000.0, true, 0.0};
  o.neck.d_model = 24;
  o.neck.backbone_channel_list = {128, 64, 32, 16};
  o.neck.fpn_top_down_levels = {2, 3};
  o.neck.fpn_interp_model = "nearest";
  o.scalp = 1;
  return o;
}

ImageEncoderOptions nonsquare_options() {
  ImageEncoderOptions o;
  o.trunk.embed_dim = 8;
  o.trunk.num_heads = 2;
  o.trunk.stages = {1, 1, 2, 1};
  o.trunk.window_spec = {4, 2, 4, 2};
  o.trunk.global_att_blocks = {};
  o.trunk.window_pos_embed_bkg_spatial_size = {3, 5};
  o.neck.position_encoding = PositionEmbeddingSineOptions{16, 10000.0, true, 0.0};
  o.neck.d_model = 16;
  o.neck.backbone_channel_list = {64, 32, 16, 8};
  o.neck.fpn_top_down_levels = {};  // all levels
  o.neck.fpn_interp_model = "bilinear";
  o.neck.fuse_type = "avg";
  o.scalp = 0;
  return o;
}

HieraOptions qpool1_options() {
  HieraOptions o;
  o.embed_dim = 8;
  o.num_heads = 1;
  o.q_pool = 1;
  o.stages = {1, 1, 1, 1};
  o.window_spec = {8, 8, 8, 8};
  o.global_att_blocks = {2};
  o.window_pos_embed_bkg_spatial_size = {4, 4};
  o.drop_path_rate = 0.2;
  o.return_interm_layers = false;
  return o;
}

void check_encoder_case(const fs::path& file, const ImageEncoderOptions& options, size_t levels) {
  SCOPED_TRACE(file.filename().string());
  const auto ref = io::read_safetensors(file).tensors;
  ImageEncoder encoder(options);
  encoder->eval();
  io::load_state_dict(*encoder, with_prefix(ref, "param."));
  const auto out = encoder->forward(get(ref, "input"));
  ASSERT_EQ(out.backbone_fpn.size(), levels);
  for (size_t i = 0; i < levels; ++i) {
    EXPECT_CLOSE(out.backbone_fpn[i], get(ref, "out.backbone_fpn." + std::to_string(i)));
    EXPECT_CLOSE(out.vision_pos_enc[i], get(ref, "out.vision_pos_enc." + std::to_string(i)));
  }
}

TEST(Sam2ImageEncoder, RandomWeightParityWithOfficial) {
  const fs::path python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "no venv Python for the reference";
  test::TempDir tmp;
  const fs::path script = fs::path(IRIS_SOURCE_DIR) / "tests/models/sam2/make_image_encoder_ref.py";
  const auto r = test::run_command("OMP_NUM_THREADS=1 '" + python.string() + "' '" +
                                   script.string() + "' '" + tmp.path().string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  torch::NoGradGuard no_grad;

  check_encoder_case(tmp / "encoder_padded.safetensors", padded_options(), 3);
  check_encoder_case(tmp / "encoder_nonsquare.safetensors", nonsquare_options(), 4);

  const auto ref = io::read_safetensors(tmp / "trunk_qpool1.safetensors").tensors;
  Hiera trunk(qpool1_options());
  trunk->eval();
  io::load_state_dict(*trunk, with_prefix(ref, "param."));
  const auto out = trunk->forward(get(ref, "input"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(trunk->channel_list(), (std::vector<int64_t>{64}));
  EXPECT_CLOSE(out[0], get(ref, "out.trunk.0"));
}

}  // namespace
}  // namespace iris::models::sam2
