// The frozen-encoder feature cache: memory tier hits, misses and LRU eviction by budget, the
// disk tier's bitwise round trip and budget, what changes a key, and a frozen-encoder training
// run that is bitwise the same with the cache as without it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/build_info.h"
#include "core/run_dir.h"
#include "data/synthetic_video.h"
#include "io/checkpoint.h"
#include "models/sam2/feature_cache.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_loader.h"
#include "test_util.h"
#include "train/recipes.h"
#include "train/sam2_trainer.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
namespace sam2 = models::sam2;


// Three levels like SAM2's (highest resolution first) and position encodings shared by all.
sam2::BackboneOut features(int64_t seed) {
  torch::manual_seed(static_cast<uint64_t>(seed));
  sam2::BackboneOut out;
  for (const int64_t s : {16, 8, 4}) {
    // Channels-last like the encoder's output: kernels may sum differently over other layouts.
    out.backbone_fpn.push_back(
        torch::randn({1, 8, s, s}).contiguous(at::MemoryFormat::ChannelsLast));
    out.vision_pos_enc.push_back(torch::linspace(0, 1, 8 * s * s).view({1, 8, s, s}));
  }
  return out;
}

int64_t fpn_bytes() {
  return 8 * (16 * 16 + 8 * 8 + 4 * 4) * 4;
}

sam2::FeatureKey key(int64_t frame) {
  return {"w", "image_encoder", "p", "/data", "v1", frame};
}

void expect_same(const sam2::BackboneOut& a, const sam2::BackboneOut& b) {
  ASSERT_EQ(a.backbone_fpn.size(), b.backbone_fpn.size());
  for (size_t i = 0; i < a.backbone_fpn.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.backbone_fpn[i], b.backbone_fpn[i])) << "level " << i;
    EXPECT_EQ(a.backbone_fpn[i].strides(), b.backbone_fpn[i].strides()) << "level " << i;
    EXPECT_TRUE(torch::equal(a.vision_pos_enc[i], b.vision_pos_enc[i])) << "level " << i;
  }
}

TEST(FeatureCache, MemoryTierHitsMissesAndEvictsLeastRecentlyUsedByBudget) {
  sam2::FeatureCacheOptions o;
  o.memory_budget_bytes = 2 * fpn_bytes() + fpn_bytes();  // two entries + the shared encodings
  sam2::FeatureCache cache(o);
  EXPECT_FALSE(cache.find(key(0), "in0"));
  cache.insert(key(0), "in0", features(0));
  cache.insert(key(1), "in1", features(1));
  EXPECT_EQ(cache.memory_bytes(), 3 * fpn_bytes());  // position encodings stored once
  const auto hit = cache.find(key(0), "in0");        // frame 0 becomes the most recent
  ASSERT_TRUE(hit);
  expect_same(*hit, features(0));
  cache.insert(key(2), "in2", features(2));  // over budget: frame 1 goes
  EXPECT_EQ(cache.memory_entries(), 2);
  EXPECT_FALSE(cache.find(key(1), "in1"));
  EXPECT_TRUE(cache.find(key(0), "in0"));
  EXPECT_TRUE(cache.find(key(2), "in2"));
  // The same key computed from a different input (a replaced frame file) is not served.
  EXPECT_FALSE(cache.find(key(2), "other"));
  const auto st = cache.stats();
  EXPECT_EQ(st.memory_hits, 3);
  EXPECT_EQ(st.misses, 3);
  EXPECT_EQ(st.stale, 1);
  EXPECT_EQ(st.memory_evictions, 1);
  EXPECT_EQ(st.stores, 3);

  sam2::FeatureCacheOptions small;
  small.memory_budget_bytes = fpn_bytes();  // the encodings alone fill it
  sam2::FeatureCache none(small);
  none.insert(key(0), "in0", features(0));
  EXPECT_EQ(none.stats().rejected, 1);
  EXPECT_FALSE(none.find(key(0), "in0"));
}

int64_t entry_files(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() == ".safetensors" && name.rfind("pos-", 0) != 0) ++n;
  }
  return n;
}

TEST(FeatureCache, DiskTierRoundTripsBitwiseAcrossInstancesWithinItsBudget) {
  test::TempDir dir;
  sam2::FeatureCacheOptions o;
  o.disk_dir = dir / "cache";
  {
    sam2::FeatureCache writer(o);
    writer.insert(key(0), "in0", features(0));
  }
  sam2::FeatureCache reader(o);  // a later run of a sweep: empty memory, same folder
  const auto hit = reader.find(key(0), "in0");
  ASSERT_TRUE(hit);
  expect_same(*hit, features(0));
  EXPECT_EQ(reader.stats().disk_hits, 1);
  EXPECT_TRUE(reader.find(key(0), "in0"));  // now from memory
  EXPECT_EQ(reader.stats().memory_hits, 1);
  EXPECT_FALSE(reader.find(key(0), "changed"));
  EXPECT_EQ(reader.stats().stale, 1);

  // Budget: room for the encodings and two entries; the least recently used entry goes.
  int64_t total = 0, entry = 0;
  for (const auto& e : fs::directory_iterator(o.disk_dir)) {
    total += static_cast<int64_t>(e.file_size());
    if (e.path().filename().string().rfind("pos-", 0) != 0)
      entry = static_cast<int64_t>(e.file_size());
  }
  o.disk_budget_bytes = total + entry + entry / 2;
  sam2::FeatureCache bounded(o);
  bounded.insert(key(1), "in1", features(1));
  EXPECT_EQ(entry_files(o.disk_dir), 2);
  bounded.insert(key(2), "in2", features(2));
  EXPECT_EQ(entry_files(o.disk_dir), 2);
  EXPECT_EQ(bounded.stats().disk_evictions, 1);
  EXPECT_FALSE(fs::exists(o.disk_dir / (key(0).digest() + ".safetensors")));
  EXPECT_TRUE(fs::exists(o.disk_dir / (key(2).digest() + ".safetensors")));
  EXPECT_LE(bounded.disk_bytes(), o.disk_budget_bytes);
}

TEST(FeatureCache, KeyChangesWithCheckpointImageSizeFrameAndStage) {
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  auto model = sam2::load_sam2(test::sam2_fixture() / "config.yaml", test::sam2_fixture() / "checkpoint.pt");
  const auto enc = sam2::frozen_weights_identity(*model, sam2::FeatureStage::kEncoder);
  const auto proj = sam2::frozen_weights_identity(*model, sam2::FeatureStage::kProjected);
  EXPECT_NE(enc, proj);
  EXPECT_EQ(enc, sam2::frozen_weights_identity(*model, sam2::FeatureStage::kEncoder));
  {
    torch::NoGradGuard g;
    // Parts behind the cached stage do not change its identity...
    model->sam_mask_decoder->conv_s0->weight.add_(1.0);
    EXPECT_EQ(enc, sam2::frozen_weights_identity(*model, sam2::FeatureStage::kEncoder));
    EXPECT_NE(proj, sam2::frozen_weights_identity(*model, sam2::FeatureStage::kProjected));
    // ...the encoder's weights do.
    model->image_encoder->parameters().front().add_(1e-3);
    EXPECT_NE(enc, sam2::frozen_weights_identity(*model, sam2::FeatureStage::kEncoder));
  }
  auto options = sam2::load_sam2_config(test::sam2_fixture() / "config.yaml");
  options.image_size = 128;
  torch::manual_seed(0);
  sam2::Sam2Model a(options);
  options.image_size = 256;
  torch::manual_seed(0);
  sam2::Sam2Model b(options);
  EXPECT_NE(sam2::frozen_weights_identity(*a, sam2::FeatureStage::kEncoder),
            sam2::frozen_weights_identity(*b, sam2::FeatureStage::kEncoder));
  EXPECT_NE(sam2::preprocess_identity(128), sam2::preprocess_identity(256));

  auto k = key(3);
  const auto base = k.digest();
  k.frame = 4;
  EXPECT_NE(k.digest(), base);
  k = key(3);
  k.video = "v2";
  EXPECT_NE(k.digest(), base);
  k = key(3);
  k.weights = "other";
  EXPECT_NE(k.digest(), base);
  EXPECT_EQ(key(3).digest(), base);
}

TEST(FeatureCache, DecisionFollowsTheRecipeAndCachedFeaturesEqualComputedOnes) {
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  auto model = sam2::load_sam2(test::sam2_fixture() / "config.yaml", test::sam2_fixture() / "checkpoint.pt");
  const auto& groups = sam2_parameter_groups();
  apply_recipe(*model, groups, parse_recipe("ie+md", groups));
  EXPECT_FALSE(sam2::decide_feature_cache(*model, false).valid);
  apply_recipe(*model, groups, parse_recipe("pe", groups));
  auto d = sam2::decide_feature_cache(*model, false);
  EXPECT_TRUE(d.valid);
  EXPECT_EQ(d.stage, sam2::FeatureStage::kProjected);
  EXPECT_FALSE(sam2::decide_feature_cache(*model, /*augmented_input=*/true).valid);
  apply_recipe(*model, groups, parse_recipe("md", groups));
  d = sam2::decide_feature_cache(*model, false);
  ASSERT_TRUE(d.valid);
  EXPECT_EQ(d.stage, sam2::FeatureStage::kEncoder);

  auto cache = std::make_shared<sam2::FeatureCache>(sam2::FeatureCacheOptions{});
  sam2::CachedImageEncoder encoder(model, d, cache);
  const int64_t s = model->image_size();
  torch::manual_seed(1);
  const auto img = torch::randn({1, 3, s, s});
  const auto first = encoder.forward_image(img, {"/data", "v", 0});
  const auto second = encoder.forward_image(img, {"/data", "v", 0});
  EXPECT_EQ(cache->stats().memory_hits, 1);
  sam2::BackboneOut direct;
  {
    torch::NoGradGuard g;
    direct = model->forward_image(img);
  }
  expect_same(first, direct);
  expect_same(second, direct);
  // conv_s0 trains with md: its output keeps a graph even though the encoder's is cached.
  EXPECT_TRUE(second.backbone_fpn[0].requires_grad());
  EXPECT_FALSE(second.backbone_fpn[2].requires_grad());
}

// --- training with and without the cache --------------------------------------------------------

struct TinyRun {
  Sam2TrainResult result;
  std::vector<nlohmann::json> rows;  // train losses and evaluations, without timings
  io::StateDict last;
  std::string log;
};

TinyRun run_tiny(const fs::path& dir, const std::string& name, const std::string& recipe,
                 const std::string& cache, int64_t epochs) {
  Sam2TrainConfig c;
  c.run.root = (dir / "runs").string();
  c.run.name = name;
  c.run.seed = 7;
  c.recipe = recipe;
  c.model.config = (test::sam2_fixture() / "config.yaml").string();
  c.model.checkpoint = (test::sam2_fixture() / "checkpoint.pt").string();
  c.model.prompt_type = "point";
  c.data.train = (dir / "train").string();
  c.data.val = (dir / "val").string();
  c.data.clip_length = 4;
  c.data.clip_stride = 4;
  c.train.max_epochs = epochs;
  c.train.lr = 1e-3;
  c.train.feature_cache = cache;
  TinyRun r;
  r.result = train_sam2(c);
  const RunDir run = RunDir::existing(r.result.run_dir);
  for (auto row : run.read_metrics()) {
    for (const char* k : {"time/data_ms", "time/sync_ms", "time/step_ms", "memory/rss_mb"})
      row.erase(k);
    r.rows.push_back(row);
  }
  r.last =
      io::read_safetensors(fs::path(r.result.run_dir) / "checkpoints" / "last.safetensors").tensors;
  std::ifstream log(run.log_path());
  std::stringstream ss;
  ss << log.rdbuf();
  r.log = ss.str();
  return r;
}

void write_videos(const fs::path& dir) {
  SyntheticVideoOptions s;
  s.videos = 1;
  s.frames = 4;
  s.width = 128;
  s.height = 128;
  s.seed = 5;
  write_synthetic_videos(s, dir / "train");
  s.seed = 6;
  s.frames = 2;
  write_synthetic_videos(s, dir / "val");
}

void expect_same_run(const TinyRun& a, const TinyRun& b) {
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (size_t i = 0; i < a.rows.size(); ++i) EXPECT_EQ(a.rows[i], b.rows[i]) << "metrics row " << i;
  ASSERT_EQ(a.last.size(), b.last.size());
  for (const auto& [name, t] : a.last) {
    const auto* other = b.last.find(name);
    ASSERT_NE(other, nullptr) << name;
    EXPECT_TRUE(torch::equal(t, *other)) << name << " differs";
  }
}

TEST(FeatureCache, FrozenEncoderRunWithTheCacheEqualsOneWithoutBitwise) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  write_videos(dir.path());
  const auto off = run_tiny(dir.path(), "md_off", "md", "off", 2);
  const auto memory = run_tiny(dir.path(), "md_memory", "md", "auto", 2);
  EXPECT_EQ(off.result.feature_cache, "off");
  EXPECT_EQ(memory.result.feature_cache, "memory");
  EXPECT_NE(memory.log.find("feature cache: memory"), std::string::npos);
  // 4 training + 2 validation frames computed once; epoch 2 and the epoch evaluations reuse them.
  EXPECT_EQ(memory.result.cache_misses, 6);
  EXPECT_GE(memory.result.cache_hits, 4 + 2 * 2);
  expect_same_run(off, memory);
  // The mask decoder's high-resolution projections sit behind the cached encoder output and
  // train with md.
  const auto start =
      io::select_state_dict(io::read_checkpoint(test::sam2_fixture() / "checkpoint.pt").root, "", "ckpt");
  for (const char* name : {"sam_mask_decoder.conv_s0.weight", "sam_mask_decoder.conv_s1.weight"}) {
    EXPECT_FALSE(torch::equal(*start.find(name), *memory.last.find(name))) << name;
  }

  // The disk tier: a first run fills the folder, a second run (a sweep's next) reads it.
  const auto disk1 = run_tiny(dir.path(), "md_disk1", "md", "disk", 2);
  const auto disk2 = run_tiny(dir.path(), "md_disk2", "md", "disk", 2);
  EXPECT_EQ(disk2.result.feature_cache, "disk");
  EXPECT_EQ(disk2.result.cache_misses, 0);
  expect_same_run(off, disk1);
  expect_same_run(off, disk2);
  EXPECT_TRUE(fs::is_directory(dir / "runs" / ".feature_cache"));
}

TEST(FeatureCache, TurnsOffWhenTheImageEncoderTrains) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  write_videos(dir.path());
  const auto r = run_tiny(dir.path(), "ie_md", "ie+md", "memory", 1);
  EXPECT_EQ(r.result.feature_cache, "off");
  EXPECT_NE(r.result.feature_cache_reason.find("image encoder trains"), std::string::npos);
  EXPECT_NE(r.log.find("feature cache: off although train.feature_cache is memory"),
            std::string::npos);
  EXPECT_EQ(r.result.cache_hits + r.result.cache_misses, 0);
  const auto summary = RunDir::existing(r.result.run_dir).read_summary();
  EXPECT_EQ(summary["feature_cache"]["tier"], "off");
}

}  // namespace
}  // namespace iris
