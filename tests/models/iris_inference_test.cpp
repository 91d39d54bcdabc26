#include <gtest/gtest.h>

#include "core/error.h"
#include "models/iris/inference.h"

namespace iris::models {
namespace {

IrisOptions tiny(int64_t dims) {
  IrisOptions o;
  o.spatial_dims = dims;
  o.base_channels = 4;
  o.stages = 2;  // feature channels 16, stride 4
  o.query_tokens = 3;
  o.heads = 2;
  o.decoder_layers = 1;
  return o;
}

// A bright disc (class 0) and a bright square (class 1) on a noisy background, at an offset.
Reference make_reference(int64_t seed, const std::string& source, int64_t index = -1) {
  torch::manual_seed(seed);
  const int64_t s = 32;
  const auto yy = torch::arange(s).view({s, 1}).expand({s, s}).to(torch::kFloat);
  const auto xx = torch::arange(s).view({1, s}).expand({s, s}).to(torch::kFloat);
  const double cy = 10 + seed % 5, cx = 12 + seed % 7;
  const auto disc = ((yy - cy).pow(2) + (xx - cx).pow(2) < 25).to(torch::kFloat);
  const auto square =
      ((yy > 20) & (yy < 28) & (xx > 4 + seed % 3) & (xx < 12 + seed % 3)).to(torch::kFloat);
  const auto image = (0.1 * torch::rand({s, s}) + 0.6 * disc + 0.9 * square).unsqueeze(0);
  return {image, torch::stack({disc, square}), {source, index}};
}

std::vector<at::Tensor> snapshot(IrisModel& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(IrisInference, TuningLeavesEveryNetworkParameterUnchangedAndMovesTheEmbeddings) {
  torch::manual_seed(0);
  IrisModel model(tiny(2));
  model->train();
  auto parameters = model->parameters();
  parameters[0].requires_grad_(false);  // a caller's own freezing must survive too
  const auto before = snapshot(model);
  const std::vector<Reference> refs{make_reference(1, "a.png"), make_reference(2, "b.png")};
  TuningOptions o;
  o.steps = 5;
  o.lr = 1e-2;
  const TuningResult r = tune_task(model, refs, o);

  const auto after = model->parameters();
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(torch::equal(after[i], before[i])) << "parameter " << i << " changed";
    EXPECT_EQ(after[i].requires_grad(), i != 0) << "requires_grad of parameter " << i;
    EXPECT_FALSE(after[i].grad().defined() && after[i].grad().abs().sum().item<double>() > 0);
  }
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(r.losses.size(), 5u);
  EXPECT_FALSE(r.task.requires_grad());
  EXPECT_TRUE(torch::allclose(r.initial, ensemble_task(model, refs)));
  EXPECT_GT((r.task - r.initial).abs().max().item<double>(), 1e-4);
  EXPECT_LT(r.losses.back(), r.losses.front());

  // Deterministic: the same call gives the same embeddings, bit for bit.
  EXPECT_TRUE(torch::equal(tune_task(model, refs, o).task, r.task));
}

TEST(IrisInference, TuningNeverSeesTheQueryLabel) {
  torch::manual_seed(0);
  IrisModel model(tiny(2));
  const std::vector<Reference> refs{make_reference(1, "a.png"), make_reference(2, "b.png")};
  Reference query = make_reference(3, "q.png");
  query.masks =
      torch::flip(query.masks, {1, 2});  // a label that would pull the embeddings elsewhere
  TuningOptions o;
  o.steps = 4;
  o.lr = 1e-2;
  InferenceOptions options;
  options.strategy = Strategy::kTuning;
  options.tuning = o;
  const auto result = infer(model, query.image.unsqueeze(0), query.id, refs, options);
  EXPECT_TRUE(torch::equal(result.task, tune_task(model, refs, o).task));
  // Tuning on the query's label would have given other embeddings ...
  auto leaky = refs;
  leaky.push_back(query);
  EXPECT_GT((tune_task(model, leaky, o).task - result.task).abs().max().item<double>(), 1e-4);
  // ... and infer refuses the query among its references.
  EXPECT_THROW(infer(model, query.image.unsqueeze(0), query.id, leaky, options), InputError);
}

TEST(IrisInference, QueryAmongReferencesIsRefused) {
  const std::vector<Reference> refs{make_reference(1, "data/vol.nii.gz", 7),
                                    make_reference(2, "data/b.png")};
  EXPECT_THROW(check_query_not_among_references({"data/./vol.nii.gz", 7}, refs), InputError);
  EXPECT_THROW(check_query_not_among_references({"data/sub/../vol.nii.gz", -1}, refs), InputError);
  EXPECT_THROW(check_query_not_among_references({"data/b.png", 3}, refs), InputError);
  EXPECT_NO_THROW(check_query_not_among_references({"data/vol.nii.gz", 8}, refs));  // another slice
  EXPECT_NO_THROW(check_query_not_among_references({"data/c.png", -1}, refs));
  IrisModel model(tiny(2));
  for (auto s :
       {Strategy::kOneShot, Strategy::kEnsemble, Strategy::kRetrieval, Strategy::kTuning}) {
    InferenceOptions o;
    o.strategy = s;
    EXPECT_THROW(infer(model, refs[1].image.unsqueeze(0), {"data/b.png"}, refs, o), InputError)
        << strategy_name(s);
  }
}

TEST(IrisInference, EnsembleOfIdenticalReferencesEqualsOneShot) {
  torch::manual_seed(0);
  IrisModel model(tiny(2));
  const Reference ref = make_reference(4, "a.png");
  const std::vector<Reference> same{ref, ref, ref};
  EXPECT_TRUE(torch::allclose(ensemble_task(model, same), one_shot_task(model, ref), 1e-5, 1e-6));
  const auto query = make_reference(5, "q.png").image.unsqueeze(0);
  InferenceOptions one, ens;
  ens.strategy = Strategy::kEnsemble;
  const auto a = infer(model, query, {"q.png"}, same, one).logits;
  const auto b = infer(model, query, {"q.png"}, same, ens).logits;
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, 2, 32, 32}));
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5));
}

// Distinct class embeddings plus noise: the nearest entries of a noisy query are its own class.
TEST(IrisInference, RetrievalReturnsTheRightClassOnAConstructedIndexAndBank) {
  torch::manual_seed(0);
  const std::vector<std::string> names{"liver", "spleen", "kidney"};
  const auto bases = torch::randn({3, 4, 16});
  EmbeddingIndex index;
  MemoryBank bank(0.5);
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t r = 0; r < 4; ++r) {
      const auto e = bases[c] + 0.3 * torch::randn({4, 16});
      index.add(names[c], {"case" + std::to_string(r) + ".nii"}, e);
      bank.update("ds", names[c], e);
    }
  }
  ASSERT_EQ(index.size(), 12);
  for (int64_t c = 0; c < 3; ++c) {
    const auto query = bases[c] + 0.3 * torch::randn({4, 16});
    const auto matches = index.nearest(query, 4);
    ASSERT_EQ(matches.size(), 4u);
    for (const auto& m : matches) EXPECT_EQ(index.entries()[m.entry].class_name, names[c]);
    EXPECT_EQ(bank.nearest(query, 1, "ds")[0].class_name, names[c]);
    // The weighted top-k is far closer to its class than to any other.
    const auto retrieved = index.retrieve(query, 3, 0.1);
    for (int64_t other = 0; other < 3; ++other) {
      const double sim =
          torch::cosine_similarity(retrieved.flatten(), bases[other].flatten(), 0).item<double>();
      if (other == c)
        EXPECT_GT(sim, 0.9);
      else
        EXPECT_LT(sim, 0.5);
    }
    // Entries of the query's own source are never retrieved.
    for (const auto& m : index.nearest(query, 12, "", {"case0.nii"})) {
      EXPECT_NE(index.entries()[m.entry].id.source, "case0.nii");
    }
  }
  EXPECT_THROW(index.retrieve(bases[0], 3, 0.1, "heart"), InputError);
  EXPECT_EQ(index_task(index, {"spleen", "liver"}).sizes(), (std::vector<int64_t>{1, 2, 4, 16}));
}

TEST(IrisInference, RetrievalStrategyOverAnIndexOfAReferencePool) {
  torch::manual_seed(0);
  IrisModel model(tiny(2));
  std::vector<Reference> pool;
  for (int64_t i = 0; i < 4; ++i)
    pool.push_back(make_reference(10 + i, "pool" + std::to_string(i) + ".png"));
  pool[3].masks[1].zero_();  // class "square" absent from one reference: not indexed there
  const EmbeddingIndex index = build_embedding_index(model, pool, {"disc", "square"});
  EXPECT_EQ(index.size(), 7);
  const auto query = make_reference(20, "q.png");
  InferenceOptions o;
  o.strategy = Strategy::kRetrieval;
  o.class_names = {"disc", "square"};
  o.index = &index;
  o.retrieval.top_k = 2;
  // From class names alone (no reference) and from a reference.
  const auto by_name = infer(model, query.image.unsqueeze(0), query.id, {}, o);
  EXPECT_EQ(by_name.logits.sizes(), (std::vector<int64_t>{1, 2, 32, 32}));
  EXPECT_EQ(by_name.task.sizes(), (std::vector<int64_t>{1, 2, 4, 16}));
  const auto by_ref =
      infer(model, query.image.unsqueeze(0), query.id, {make_reference(30, "r.png")}, o);
  EXPECT_TRUE(torch::isfinite(by_ref.logits).all().item<bool>());
  // Without an index the references themselves are indexed.
  o.index = nullptr;
  const auto local = infer(model, query.image.unsqueeze(0), query.id, pool, o);
  EXPECT_EQ(local.task.sizes(), (std::vector<int64_t>{1, 2, 4, 16}));
  // From a memory bank by class name.
  MemoryBank bank;
  bank.update("atlas", "disc", index.class_mean("disc"));
  bank.update("atlas", "square", index.class_mean("square"));
  o.bank = &bank;
  o.bank_dataset = "atlas";
  const auto from_bank = infer(model, query.image.unsqueeze(0), query.id, {}, o);
  EXPECT_EQ(from_bank.task.sizes(), (std::vector<int64_t>{1, 2, 4, 16}));
}

TEST(IrisInference, SlidingWindowEqualsDirectInferenceWhenOneWindowCoversTheInput) {
  torch::manual_seed(0);
  for (int64_t dims : {2, 3}) {
    SCOPED_TRACE(dims);
    IrisModel model(tiny(dims));
    const std::vector<int64_t> s =
        dims == 2 ? std::vector<int64_t>{32, 24} : std::vector<int64_t>{8, 16, 12};
    std::vector<int64_t> shape{1, 1}, mask_shape{2};
    shape.insert(shape.end(), s.begin(), s.end());
    mask_shape.insert(mask_shape.end(), s.begin(), s.end());
    const Reference ref{torch::rand(std::vector<int64_t>(shape.begin() + 1, shape.end())),
                        (torch::rand(mask_shape) > 0.7).to(torch::kFloat),
                        {"r"}};
    const auto task = one_shot_task(model, ref);
    const auto query = torch::rand(shape);
    SlidingWindowOptions o;
    o.window = s;
    const auto direct = model->segment(query, task).logits;
    EXPECT_TRUE(torch::equal(segment_logits(model, query, task, o), direct));
    EXPECT_TRUE(torch::equal(segment_logits(model, query, task), direct));
  }
}

TEST(IrisInference, SlidingWindowBlendsOverlappingWindows) {
  for (Blend blend : {Blend::kGaussian, Blend::kLinear}) {
    SlidingWindowOptions o;
    o.window = {16, 16};
    o.overlap = 0.5;
    o.blend = blend;
    const auto images = torch::rand({1, 1, 40, 52});
    int64_t calls = 0;
    // A constant-logit model: blending must give the constants back.
    const auto constant = sliding_window(
        [&](const at::Tensor& x) {
          ++calls;
          EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, 1, 16, 16}));
          return torch::stack({torch::full({16, 16}, 2.5), torch::full({16, 16}, -1.0)})
              .unsqueeze(0);
        },
        images, o);
    EXPECT_EQ(constant.sizes(), (std::vector<int64_t>{1, 2, 40, 52}));
    EXPECT_EQ(calls,
              4 * 6);  // ceil((40 - 16) / 8) + 1 = 4 rows, ceil((52 - 16) / 8) + 1 = 6 columns
    EXPECT_TRUE(torch::allclose(constant[0][0], torch::full({40, 52}, 2.5), 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(constant[0][1], torch::full({40, 52}, -1.0), 1e-5, 1e-5));
    // A pointwise model: every window agrees, so the blend equals the direct result.
    auto pointwise = [](const at::Tensor& x) { return torch::cat({2 * x - 1, x * x}, 1); };
    EXPECT_TRUE(
        torch::allclose(sliding_window(pointwise, images, o), pointwise(images), 1e-5, 1e-6));
  }
  // Smaller than the window: zero-padded, one window, cropped back.
  SlidingWindowOptions o;
  o.window = {8, 16, 16};
  const auto small = torch::rand({1, 1, 6, 16, 10});
  const auto out = sliding_window([](const at::Tensor& x) { return x + 1; }, small, o);
  EXPECT_TRUE(torch::equal(out, small + 1));
  const auto w = blend_weights({9, 9}, Blend::kGaussian);
  EXPECT_FLOAT_EQ(w[4][4].item<float>(), 1.0f);
  EXPECT_GT(w.min().item<float>(), 0.0f);
}

TEST(IrisInference, SlidingWindowIsCloseToDirectInferenceOfTheModel) {
  torch::manual_seed(0);
  IrisModel model(tiny(2));
  const auto ref = make_reference(1, "a.png");
  const auto task = one_shot_task(model, ref);
  const auto query = make_reference(2, "q.png").image.unsqueeze(0);
  SlidingWindowOptions o;
  o.window = {24, 24};
  o.overlap = 0.5;
  const auto tiled = segment_logits(model, query, task, o);
  const auto direct = segment_logits(model, query, task);
  EXPECT_EQ(tiled.sizes(), direct.sizes());
  EXPECT_TRUE(torch::isfinite(tiled).all().item<bool>());
  EXPECT_THROW(segment_logits(model, query, task, {{30, 30}}), InputError);  // not divisible by 4
}

TEST(IrisInference, StrategyNames) {
  for (auto s :
       {Strategy::kOneShot, Strategy::kEnsemble, Strategy::kRetrieval, Strategy::kTuning}) {
    EXPECT_EQ(parse_strategy(strategy_name(s)), s);
  }
  EXPECT_THROW(parse_strategy("bagging"), InputError);
}

}  // namespace
}  // namespace iris::models
