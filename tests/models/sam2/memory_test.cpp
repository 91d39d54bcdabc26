#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/sam2/memory_attention.h"
#include "models/sam2/memory_encoder.h"
#include "test_util.h"

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;

fs::path sam2_fixtures() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2";
}

// The settings of sam2.1_hiera_*.yaml (the same for every size).
MemoryEncoderOptions sam21_encoder_options() {
  MemoryEncoderOptions o;
  o.out_dim = 64;
  o.mask_downsampler = {
      .embed_dim = 256, .kernel_size = 3, .stride = 2, .padding = 1, .total_stride = 16};
  o.fuser.layer = {.dim = 256, .kernel_size = 7, .padding = 3, .layer_scale_init_value = 1e-6};
  o.fuser.num_layers = 2;
  o.position_encoding = {.num_pos_feats = 64};
  o.in_dim = 256;
  return o;
}

MemoryAttentionOptions sam21_attention_options() {
  MemoryAttentionOptions o;
  o.d_model = 256;
  o.num_layers = 4;
  auto& l = o.layer;
  l.d_model = 256;
  l.dim_feedforward = 2048;
  l.dropout = 0.1;
  l.self_attention.attention = {.embedding_dim = 256, .num_heads = 1, .dropout = 0.1};
  l.cross_attention.attention = {
      .embedding_dim = 256, .num_heads = 1, .dropout = 0.1, .kv_in_dim = 64};
  l.cross_attention.rope_k_repeat = true;
  return o;
}

// name -> "AxBxC" for the lines of a keys.tsv under `prefix`, the prefix removed.
std::map<std::string, std::string> checkpoint_shapes(const fs::path& tsv,
                                                     const std::string& prefix) {
  std::map<std::string, std::string> shapes;
  std::ifstream in(tsv);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line);
    std::string name, shape;
    std::getline(fields, name, '\t');
    std::getline(fields, shape, '\t');
    shapes[name.substr(prefix.size())] = shape;
  }
  return shapes;
}

std::map<std::string, std::string> module_shapes(const torch::nn::Module& module) {
  std::map<std::string, std::string> shapes;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    std::string shape;
    for (const auto d : t.sizes()) shape += (shape.empty() ? "" : "x") + std::to_string(d);
    shapes[name] = shape;
  };
  for (const auto& p : module.named_parameters()) add(p.key(), p.value());
  for (const auto& b : module.named_buffers()) add(b.key(), b.value());
  return shapes;
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  EXPECT_EQ(got.sizes(), want.sizes());
  if (got.sizes() != want.sizes()) return 1.0;
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

// Runs make_memory_ref.py `what` into `dir`; an empty string on success, else why not.
std::string make_reference(const std::string& what, const fs::path& dir) {
  const auto python = test::venv_python();
  if (python.empty()) return "no venv Python";
  const auto script = fs::path(IRIS_SOURCE_DIR) / "tests/models/sam2/make_memory_ref.py";
  const auto r = test::run_command("OMP_NUM_THREADS=1 '" + python.string() + "' '" +
                                   script.string() + "' " + what + " '" + dir.string() + "'");
  return r.exit_code == 0 ? "" : "make_memory_ref.py failed:\n" + r.output;
}

TEST(Sam2Memory, EncoderKeysMatchSam21Checkpoint) {
  const auto tsv = sam2_fixtures() / "sam2.1_hiera_t.keys.tsv";
  if (!fs::exists(tsv)) GTEST_SKIP() << "no " << tsv;
  MemoryEncoder encoder(sam21_encoder_options());
  const auto want = checkpoint_shapes(tsv, "memory_encoder.");
  ASSERT_EQ(want.size(), 40u);  // mask downsampler 18, pix_feat_proj 2, fuser 18, out_proj 2
  EXPECT_EQ(module_shapes(*encoder), want);
}

TEST(Sam2Memory, AttentionKeysMatchSam21Checkpoint) {
  const auto tsv = sam2_fixtures() / "sam2.1_hiera_t.keys.tsv";
  if (!fs::exists(tsv)) GTEST_SKIP() << "no " << tsv;
  MemoryAttention attention(sam21_attention_options());
  const auto want = checkpoint_shapes(tsv, "memory_attention.");
  ASSERT_EQ(want.size(), 106u);  // 4 layers x 26 + the final norm
  EXPECT_EQ(module_shapes(*attention), want);
}

MemoryEncoder small_encoder(int64_t out_dim, bool input_projection) {
  auto o = sam21_encoder_options();
  o.in_dim = 32;
  o.out_dim = out_dim;
  o.mask_downsampler.embed_dim = 32;
  o.fuser.layer.dim = 32;
  o.fuser.dim = 32;
  o.fuser.input_projection = input_projection;
  o.position_encoding.num_pos_feats = out_dim;
  return MemoryEncoder(o);
}

TEST(Sam2Memory, EncoderMatchesOfficial) {
  test::TempDir dir;
  const auto error = make_reference("encoder", dir.path());
  if (test::venv_python().empty()) GTEST_SKIP() << error;
  ASSERT_EQ(error, "");
  const auto io = io::read_safetensors(dir / "encoder_io.safetensors").tensors;
  // "a": out_proj to 16 channels (the SAM2.1 layout); "b": fuser.proj and no out_proj.
  for (const auto& [tag, out_dim, proj] : {std::tuple{"a", 16, false}, std::tuple{"b", 32, true}}) {
    SCOPED_TRACE(tag);
    auto encoder = small_encoder(out_dim, proj);
    const auto weights =
        io::read_safetensors(dir / ("encoder_" + std::string(tag) + ".safetensors"));
    io::load_state_dict(*encoder, weights.tensors);
    EXPECT_EQ(static_cast<bool>(encoder->out_proj), !proj);
    EXPECT_EQ(static_cast<bool>(encoder->fuser->proj), proj);
    encoder->eval();
    torch::NoGradGuard no_grad;
    for (const bool skip : {false, true}) {
      SCOPED_TRACE(skip ? "skip_mask_sigmoid" : "sigmoid");
      const auto out = encoder->forward(*io.find("pix_feat"), *io.find("masks"), skip);
      const std::string key = std::string(tag) + "_skip" + (skip ? "1" : "0");
      ASSERT_EQ(out.vision_features.sizes(), (std::vector<int64_t>{2, out_dim, 8, 8}));
      EXPECT_LE(relative_error(out.vision_features, *io.find(key + "_features")), 1e-5);
      EXPECT_LE(relative_error(out.vision_pos_enc, *io.find(key + "_pos")), 1e-5);
    }
  }
}

TEST(Sam2Memory, AttentionMatchesOfficial) {
  test::TempDir dir;
  const auto error = make_reference("attention", dir.path());
  if (test::venv_python().empty()) GTEST_SKIP() << error;
  ASSERT_EQ(error, "");
  MemoryAttentionOptions o;
  o.d_model = 32;
  o.num_layers = 2;
  o.layer.d_model = 32;
  o.layer.dim_feedforward = 64;
  // feat_sizes 4x4 while the first grids are 8x8: the RoPE table must be recomputed.
  o.layer.self_attention = {.attention = {.embedding_dim = 32, .num_heads = 1, .dropout = 0.1},
                            .feat_sizes = {4, 4}};
  o.layer.cross_attention = {
      .attention = {.embedding_dim = 32, .num_heads = 2, .dropout = 0.1, .kv_in_dim = 16},
      .rope_k_repeat = true,
      .feat_sizes = {4, 4}};
  MemoryAttention attention(o);
  io::load_state_dict(*attention, io::read_safetensors(dir / "attention.safetensors").tensors);
  attention->eval();
  torch::NoGradGuard no_grad;

  const auto io = io::read_safetensors(dir / "attention_io.safetensors").tensors;
  // Same order as the script: the official module keeps a recomputed table, so does ours.
  for (const std::string tag : {"ptr", "noptr", "small"}) {
    SCOPED_TRACE(tag);
    const auto& curr = *io.find(tag + "_curr");
    const int64_t num_ptr_tokens = io.find(tag + "_num_ptr_tokens")->item<int64_t>();
    EXPECT_EQ(num_ptr_tokens, tag == "noptr" ? 0 : 4);  // 2 pointers x (32 / 16) tokens
    const auto out =
        attention->forward(curr, *io.find(tag + "_memory"), *io.find(tag + "_curr_pos"),
                           *io.find(tag + "_memory_pos"), num_ptr_tokens);
    ASSERT_EQ(out.sizes(), curr.sizes());
    EXPECT_LE(relative_error(out, *io.find(tag + "_out")), 1e-5);
  }
}

TEST(Sam2Memory, RopeRotatesAdjacentPairsByGridAngles) {
  RoPEAttentionOptions o;
  o.attention = {.embedding_dim = 8, .num_heads = 1};
  o.feat_sizes = {3, 2};  // w = 3, h = 2: not square, used as is while Nq = 6
  RoPEAttention rope(o);
  // head_dim 8: pairs 0, 1 rotate by x * f, pairs 2, 3 by y * f, f = (1, 1e4^-0.5).
  const auto x = torch::randn({1, 1, 6, 8});
  const auto y = rope->apply_rope(x, 6);
  const double freqs[] = {1.0, 1.0 / std::sqrt(1e4)};
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      const double angle = (j < 2 ? i % 3 : i / 3) * freqs[j % 2];
      const double re = x[0][0][i][2 * j].item<double>();
      const double im = x[0][0][i][2 * j + 1].item<double>();
      EXPECT_NEAR(y[0][0][i][2 * j].item<double>(), re * std::cos(angle) - im * std::sin(angle),
                  1e-5);
      EXPECT_NEAR(y[0][0][i][2 * j + 1].item<double>(), re * std::sin(angle) + im * std::cos(angle),
                  1e-5);
    }
  }
  // Keys repeated per memory frame reuse the query table.
  const auto k = rope->apply_rope(torch::cat({x, x}, 2), 6);
  EXPECT_TRUE(torch::allclose(k.slice(2, 6), y));
  // 5 queries are neither feat_sizes nor a square grid.
  EXPECT_THROW(
      rope->forward(torch::randn({1, 5, 8}), torch::randn({1, 5, 8}), torch::randn({1, 5, 8})),
      c10::Error);
}

TEST(Sam2Memory, BoundaryChecks) {
  auto encoder = small_encoder(16, false);
  // 64x64 masks downsample to 4x4, not to the 8x8 feature grid.
  EXPECT_THROW(encoder->forward(torch::randn({1, 32, 8, 8}), torch::randn({1, 1, 64, 64})),
               c10::Error);
  MemoryAttentionLayerOptions layer;
  layer.activation = "swish";
  EXPECT_THROW(MemoryAttentionLayer{layer}, ConfigError);
  // Without rope_k_repeat the rotated keys must equal the queries in number.
  RoPEAttentionOptions o;
  o.attention = {.embedding_dim = 8, .num_heads = 1};
  o.feat_sizes = {2, 2};
  RoPEAttention rope(o);
  EXPECT_THROW(
      rope->forward(torch::randn({1, 4, 8}), torch::randn({1, 8, 8}), torch::randn({1, 8, 8})),
      c10::Error);
  EXPECT_THROW(rope->forward(torch::randn({1, 4, 8}), torch::randn({1, 6, 8}),
                             torch::randn({1, 6, 8}), /*num_k_exclude_rope=*/2),
               c10::Error);
  EXPECT_THROW(rope->forward(torch::randn({1, 4, 8}), torch::randn({1, 4, 8}),
                             torch::randn({1, 4, 8}), /*num_k_exclude_rope=*/1),
               c10::Error);
  o.rope_k_repeat = true;
  RoPEAttention repeat(o);
  const auto k = torch::randn({1, 6, 8});
  EXPECT_EQ(repeat->forward(torch::randn({1, 4, 8}), k, k, /*num_k_exclude_rope=*/2).sizes(),
            (std::vector<int64_t>{1, 4, 8}));
  // 6 rotated keys do not cover whole 2x2 grids.
  EXPECT_THROW(repeat->forward(torch::randn({1, 4, 8}), k, k), c10::Error);
}

}  // namespace
}  // namespace iris::models::sam2
