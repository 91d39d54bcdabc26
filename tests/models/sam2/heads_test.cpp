// SAM2's prompt encoder and mask decoder: checkpoint key names and shapes, and parity with the
// official modules on random weights (reference files written by make_heads_ref.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/sam2/mask_decoder.h"
#include "models/sam2/prompt_encoder.h"
#include "test_util.h"

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;

// --- key names and shapes against the SAM2.1 tiny checkpoint listing ---------------------------

fs::path keys_listing() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2" /
         "sam2.1_hiera_t.keys.tsv";
}

// name (without `prefix`) -> "AxB" for the listing's lines under `prefix`.
std::map<std::string, std::string> listed_keys(const std::string& prefix) {
  std::map<std::string, std::string> keys;
  std::ifstream in(keys_listing());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line);
    std::string name, shape;
    std::getline(fields, name, '\t');
    std::getline(fields, shape, '\t');
    keys[name.substr(prefix.size())] = shape;
  }
  return keys;
}

std::map<std::string, std::string> module_keys(const torch::nn::Module& module) {
  std::map<std::string, std::string> keys;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    std::string shape;
    for (const auto s : t.sizes()) {
      if (!shape.empty()) shape += 'x';
      shape += std::to_string(s);
    }
    keys[name] = shape;
  };
  for (const auto& p : module.named_parameters()) add(p.key(), p.value());
  for (const auto& b : module.named_buffers()) add(b.key(), b.value());
  return keys;
}

MaskDecoderOptions sam21_decoder_options() {
  MaskDecoderOptions o;
  o.transformer_dim = 256;
  o.transformer = {/*depth=*/2, /*embedding_dim=*/256, /*num_heads=*/8, /*mlp_dim=*/2048,
                   /*attention_downsample_rate=*/2};
  o.use_high_res_features = true;
  o.iou_prediction_use_sigmoid = true;
  o.dynamic_multimask_via_stability = true;
  o.pred_obj_scores = true;
  o.pred_obj_scores_mlp = true;
  o.use_multimask_token_for_obj_ptr = true;
  return o;
}

TEST(Sam2Heads, PromptEncoderKeysMatchSam21Checkpoint) {
  if (!fs::exists(keys_listing())) GTEST_SKIP() << "no " << keys_listing();
  PromptEncoder encoder(PromptEncoderOptions{});
  const auto want = listed_keys("sam_prompt_encoder.");
  ASSERT_EQ(want.size(), 17u);
  EXPECT_EQ(module_keys(*encoder), want);
}

TEST(Sam2Heads, MaskDecoderKeysMatchSam21Checkpoint) {
  if (!fs::exists(keys_listing())) GTEST_SKIP() << "no " << keys_listing();
  MaskDecoder decoder(sam21_decoder_options());
  const auto want = listed_keys("sam_mask_decoder.");
  ASSERT_EQ(want.size(), 131u);
  EXPECT_EQ(module_keys(*decoder), want);
}

TEST(Sam2Heads, OutputShapesAtSam21Size) {
  torch::NoGradGuard no_grad;
  PromptEncoder encoder(PromptEncoderOptions{});
  MaskDecoder decoder(sam21_decoder_options());
  encoder->eval();
  decoder->eval();
  const auto coords = torch::rand({2, 1, 2}) * 1024;
  const auto labels = torch::ones({2, 1}, torch::kInt32);
  const auto prompts = encoder->forward(coords, labels, std::nullopt, std::nullopt);
  EXPECT_EQ(prompts.sparse.sizes(), (std::vector<int64_t>{2, 2, 256}));  // click + padding
  EXPECT_EQ(prompts.dense.sizes(), (std::vector<int64_t>{2, 256, 64, 64}));
  EXPECT_EQ(encoder->get_dense_pe().sizes(), (std::vector<int64_t>{1, 256, 64, 64}));

  const auto image = torch::randn({1, 256, 64, 64});
  // Already projected by conv_s0 / conv_s1; batch 1 broadcasts over the prompts.
  const std::vector<at::Tensor> high_res{torch::randn({1, 32, 256, 256}),
                                         torch::randn({1, 64, 128, 128})};
  for (const bool multimask : {true, false}) {
    const auto out = decoder->forward(image, encoder->get_dense_pe(), prompts.sparse, prompts.dense,
                                      multimask, /*repeat_image=*/true, high_res);
    const int64_t m = multimask ? 3 : 1;
    EXPECT_EQ(out.masks.sizes(), (std::vector<int64_t>{2, m, 256, 256}));
    EXPECT_EQ(out.iou_pred.sizes(), (std::vector<int64_t>{2, m}));
    EXPECT_EQ(out.sam_tokens_out.sizes(), (std::vector<int64_t>{2, m, 256}));
    EXPECT_EQ(out.object_score_logits.sizes(), (std::vector<int64_t>{2, 1}));
  }
  // One image per prompt without repeat_image, one image to repeat with it, both high-res maps.
  EXPECT_THROW(decoder->forward(image, encoder->get_dense_pe(), prompts.sparse, prompts.dense, true,
                                /*repeat_image=*/false, high_res),
               c10::Error);
  EXPECT_THROW(decoder->forward(image.repeat({2, 1, 1, 1}), encoder->get_dense_pe(), prompts.sparse,
                                prompts.dense, true, /*repeat_image=*/true, high_res),
               c10::Error);
  EXPECT_THROW(decoder->forward(image, encoder->get_dense_pe(), prompts.sparse, prompts.dense, true,
                                /*repeat_image=*/true, {high_res[0]}),
               c10::Error);
}

// --- parity with the official modules ----------------------------------------------------------

struct Reference {
  io::StateDict tensors;
  std::map<std::string, std::string> metadata;
  std::string error;

  const at::Tensor& at(const std::string& name) const {
    const auto* t = tensors.find(name);
    if (t == nullptr) throw std::runtime_error("reference file lacks " + name);
    return *t;
  }
  std::optional<at::Tensor> maybe(const std::string& name) const {
    const auto* t = tensors.find(name);
    return t ? std::optional<at::Tensor>(*t) : std::nullopt;
  }
  // The tensors under `prefix`, prefix removed.
  io::StateDict with_prefix(const std::string& prefix) const {
    io::StateDict sd;
    for (const auto& [name, t] : tensors) {
      if (name.rfind(prefix, 0) == 0) sd.insert(name.substr(prefix.size()), t);
    }
    return sd;
  }
};

// make_heads_ref.py's output, written once per version of the script into the build tree and
// shared by the test processes (ctest runs every test in its own process).
const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    const fs::path script = fs::path(IRIS_SOURCE_DIR) / "tests/models/sam2/make_heads_ref.py";
    std::ifstream in(script, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const fs::path dir = fs::path(IRIS_SAM2_HEADS_REF_DIR) /
                         std::to_string(std::hash<std::string>{}(text.str()) & 0xffffffffffULL);
    const fs::path file = dir / "heads_ref.safetensors";
    if (!fs::exists(file)) {
      const fs::path temp = dir.string() + ".tmp" + std::to_string(::getpid());
      fs::remove_all(temp);
      fs::create_directories(temp);
      const auto result = test::run_command("'" + test::venv_python().string() + "' '" +
                                            script.string() + "' '" + temp.string() + "'");
      if (result.exit_code != 0) {
        r.error = "make_heads_ref.py failed:\n" + result.output;
        return r;
      }
      std::error_code ec;
      fs::rename(temp, dir, ec);  // another process may have won the race: use its copy
      if (ec) fs::remove_all(temp);
    }
    auto st = io::read_safetensors(file);
    r.tensors = std::move(st.tensors);
    r.metadata = std::move(st.metadata);
    return r;
  }();
  return ref;
}

#define IRIS_HEADS_REFERENCE(var)                                                           \
  if (test::venv_python().empty())                                                          \
    GTEST_SKIP() << "needs .venv/bin/python (torch, sam2, safetensors) for reference data"; \
  const Reference& var = reference();                                                       \
  ASSERT_TRUE(var.error.empty()) << var.error

// max |got - want| / max |want|, per entry of the leading dim (entries can differ in scale).
void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what,
                  double rtol = 1e-5) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  if (want.numel() == 0) return;
  for (int64_t b = 0; b < want.size(0); ++b) {
    const auto w = want[b].to(torch::kFloat64);
    const auto g = got[b].to(torch::kFloat64);
    const double scale = std::max(w.abs().max().item<double>(), 1e-6);
    const double err = (g - w).abs().max().item<double>() / scale;
    EXPECT_LE(err, rtol) << what << " entry " << b << " (max |want| " << scale << ")";
  }
}

PromptEncoderOptions small_encoder_options() {
  PromptEncoderOptions o;
  o.embed_dim = 32;
  o.image_embedding_size = {8, 8};
  o.input_image_size = {128, 128};
  o.mask_in_chans = 16;
  return o;
}

MaskDecoderOptions small_decoder_options(char config) {
  MaskDecoderOptions o;
  o.transformer_dim = 32;
  o.transformer = {/*depth=*/2, /*embedding_dim=*/32, /*num_heads=*/2, /*mlp_dim=*/64,
                   /*attention_downsample_rate=*/2};
  o.iou_head_hidden_dim = 32;
  if (config == 'a') {  // SAM2.1's settings
    o.use_high_res_features = true;
    o.iou_prediction_use_sigmoid = true;
    o.dynamic_multimask_via_stability = true;
    o.pred_obj_scores = true;
    o.pred_obj_scores_mlp = true;
    o.use_multimask_token_for_obj_ptr = true;
  } else if (config == 'c') {  // linear object-score head, dynamic fallback, no high-res
    o.dynamic_multimask_via_stability = true;
    o.pred_obj_scores = true;
  }
  return o;
}

TEST(Sam2Heads, PromptEncoderMatchesOfficial) {
  IRIS_HEADS_REFERENCE(ref);
  torch::NoGradGuard no_grad;
  PromptEncoder encoder(small_encoder_options());
  encoder->eval();
  // Before loading, so the cached dense PE must notice the new Gaussian.
  const auto stale = encoder->get_dense_pe().clone();
  io::load_state_dict(*encoder, ref.with_prefix("pe."));
  expect_close(encoder->get_dense_pe(), ref.at("pe_out.dense_pe"), "dense_pe");
  EXPECT_FALSE(torch::allclose(stale, encoder->get_dense_pe()));

  for (const std::string name : {"points", "box", "points_box", "mask", "nothing"}) {
    SCOPED_TRACE(name);
    const std::string p = "pe_case." + name + ".";
    const auto out = encoder->forward(ref.maybe(p + "point_coords"), ref.maybe(p + "point_labels"),
                                      ref.maybe(p + "boxes"), ref.maybe(p + "masks"));
    expect_close(out.sparse, ref.at(p + "sparse"), name + " sparse");
    expect_close(out.dense, ref.at(p + "dense"), name + " dense");
  }
  // Points without boxes get one padding point; with boxes, two corner tokens and no padding.
  EXPECT_EQ(ref.at("pe_case.points.sparse").size(1), 4);
  EXPECT_EQ(ref.at("pe_case.points_box.sparse").size(1), 4);
}

TEST(Sam2Heads, MaskDecoderMatchesOfficial) {
  IRIS_HEADS_REFERENCE(ref);
  torch::NoGradGuard no_grad;
  std::map<char, MaskDecoder> decoders;
  for (const char config : {'a', 'b', 'c'}) {
    MaskDecoder decoder(small_decoder_options(config));
    io::load_state_dict(*decoder, ref.with_prefix(std::string("md_") + config + "."));
    decoders.emplace(config, decoder);
  }

  // "name:config:multimask:repeat_image:training,..."
  std::stringstream cases(ref.metadata.at("md_cases"));
  std::string item;
  int count = 0;
  while (std::getline(cases, item, ',')) {
    SCOPED_TRACE(item);
    std::vector<std::string> f;
    std::stringstream parts(item);
    for (std::string s; std::getline(parts, s, ':');) f.push_back(s);
    ASSERT_EQ(f.size(), 5u);
    auto& decoder = decoders.at(f[1][0]);
    decoder->train(f[4] == "1");
    const std::string p = "md_case." + f[0] + ".";
    std::vector<at::Tensor> high_res;
    if (decoder->options.use_high_res_features) {
      high_res = {ref.at(p + "feat_s0"), ref.at(p + "feat_s1")};
    }
    const auto out = decoder->forward(ref.at(p + "image_embeddings"), ref.at(p + "image_pe"),
                                      ref.at(p + "sparse"), ref.at(p + "dense"), f[2] == "1",
                                      f[3] == "1", high_res);
    expect_close(out.masks, ref.at(p + "masks"), "masks");
    expect_close(out.iou_pred, ref.at(p + "iou_pred"), "iou_pred");
    expect_close(out.sam_tokens_out, ref.at(p + "sam_tokens_out"), "sam_tokens_out");
    expect_close(out.object_score_logits, ref.at(p + "object_score_logits"), "object_score_logits");
    ++count;
  }
  EXPECT_EQ(count, 8);
}

TEST(Sam2Heads, StabilityFallbackCaseSelectsBothWays) {
  IRIS_HEADS_REFERENCE(ref);
  // Entries whose token-0 mask is unstable must come from the multimask tokens, the others from
  // token 0; the case is only a test of the fallback if it has both.
  const auto stable = ref.at("md_case.a_stability.is_stable");
  EXPECT_TRUE(stable.any().item<bool>());
  EXPECT_FALSE(stable.all().item<bool>());

  torch::NoGradGuard no_grad;
  MaskDecoder decoder(small_decoder_options('a'));
  io::load_state_dict(*decoder, ref.with_prefix("md_a."));
  decoder->eval();
  const std::string p = "md_case.a_stability.";
  const std::vector<at::Tensor> high_res{ref.at(p + "feat_s0"), ref.at(p + "feat_s1")};
  auto run = [&](bool multimask) {
    return decoder->forward(ref.at(p + "image_embeddings"), ref.at(p + "image_pe"),
                            ref.at(p + "sparse"), ref.at(p + "dense"), multimask, false, high_res);
  };
  const auto single = run(false);
  const auto multi = run(true);
  decoder->train();
  const auto token0 = run(false);  // training never falls back
  for (int64_t b = 0; b < stable.size(0); ++b) {
    if (stable[b].item<bool>()) {
      EXPECT_TRUE(torch::equal(single.masks[b], token0.masks[b])) << b;
    } else {
      const auto best = multi.iou_pred[b].argmax().item<int64_t>();
      EXPECT_TRUE(torch::equal(single.masks[b][0], multi.masks[b][best])) << b;
      EXPECT_FALSE(torch::equal(single.masks[b], token0.masks[b])) << b;
    }
  }
  // Single-mask output points from token 0 whatever mask was selected.
  EXPECT_TRUE(torch::equal(single.sam_tokens_out, token0.sam_tokens_out));
  EXPECT_EQ(multi.sam_tokens_out.size(1), 3);
}

TEST(Sam2Heads, DecoderTrainsEndToEnd) {
  // Gradients reach every parameter the SAM2.1 configuration uses (prompt encoder included).
  PromptEncoder encoder(small_encoder_options());
  MaskDecoder decoder(small_decoder_options('a'));
  encoder->train();
  decoder->train();
  const auto prompts =
      encoder->forward(torch::rand({2, 2, 2}) * 128, torch::tensor({{1, 0}, {1, 1}}, torch::kInt32),
                       torch::tensor({{10.f, 20.f, 90.f, 100.f}, {0.f, 0.f, 60.f, 50.f}}),
                       torch::randn({2, 1, 32, 32}));
  const auto image = torch::randn({2, 32, 8, 8});
  const std::vector<at::Tensor> high_res{decoder->conv_s0(torch::randn({2, 32, 32, 32})),
                                         decoder->conv_s1(torch::randn({2, 32, 16, 16}))};
  const auto multi = decoder->forward(image, encoder->get_dense_pe(), prompts.sparse, prompts.dense,
                                      true, false, high_res);
  const auto single = decoder->forward(image, encoder->get_dense_pe(), prompts.sparse,
                                       prompts.dense, false, false, high_res);
  const auto loss = multi.masks.square().mean() + multi.iou_pred.sum() +
                    multi.sam_tokens_out.sum() + single.masks.mean() + single.sam_tokens_out.sum() +
                    multi.object_score_logits.sum();
  loss.backward();
  for (const auto& p : decoder->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
  for (const auto& p : encoder->named_parameters()) {
    // not_a_point_embed is unused: the boxes replace the padding point.
    if (p.key() == "not_a_point_embed.weight" || p.key() == "no_mask_embed.weight") continue;
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
}

}  // namespace
}  // namespace iris::models::sam2
