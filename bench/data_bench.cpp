// Loader throughput on synthetic surgical clips: decode PNG frames and masks, letterbox to 384,
// flip / rotate / scale / colour-jitter, simulate point prompts, through 1 or 2 worker threads.
// And on IRIS 3D patch episodes: 32^3 reference and query patches cut from synthetic organ-like
// volumes, flipped and intensity-jittered.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <random>

#include "core/build_info.h"
#include "data/augment.h"
#include "data/clips.h"
#include "data/loader.h"
#include "data/prompts.h"
#include "data/synthetic_video.h"
#include "data/volume_augment.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_volume.h"
#endif

namespace iris {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kClipLength = 8;

// The synthetic tree, written once per process and removed at exit.
struct BenchTree {
  fs::path root;
  VideoDataset dataset;
  std::vector<ClipRef> clips;
  ClipOptions clip_options;

  BenchTree() {
    root = fs::temp_directory_path() / ("iris-data-bench-" + std::to_string(::getpid()));
    SyntheticVideoOptions o;
    o.videos = 2;
    o.frames = 32;
    o.width = 480;
    o.height = 270;
    o.seed = 1;
    o.layout = VideoLayout::kEndoVis18;
    write_synthetic_videos(o, root);
    dataset = read_video_dataset(root);
    clip_options.length = kClipLength;
    clip_options.stride = kClipLength;
    clips = enumerate_clips(dataset, clip_options);
  }
  ~BenchTree() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

const BenchTree& tree() {
  static const BenchTree t;
  return t;
}

struct TrainSample {
  ClipTensors clip;
  std::vector<Prompt> prompts;
};

// Augmentation and point prompts of a loaded clip.
TrainSample transform_sample(const ClipSample& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  AugmentOptions a;
  a.out_height = a.out_width = 384;
  a.hflip_probability = 0.5;
  a.rotate_probability = 0.5;
  a.scale_probability = 0.5;
  a.color_probability = 0.8;
  ClipTensors clip;
  clip.images = frames_to_float(c.frames);
  clip.masks = c.masks;
  TrainSample s{augment_clip(clip, a, rng), {}};
  PromptOptions p;
  p.positive_points = 1;
  p.negative_points = 1;
  for (int64_t o = 0; o < s.clip.masks.size(1); ++o) {
    if (auto prompt = simulate_prompt(s.clip.masks[0][o], PromptType::kPoint, p, rng)) {
      s.prompts.push_back(std::move(*prompt));
    }
  }
  return s;
}

TrainSample make_sample(int64_t index, uint64_t seed) {
  const BenchTree& t = tree();
  return transform_sample(load_clip(t.dataset, t.clips[index], t.clip_options), seed);
}

// The stages of one sample, for where the time goes.
void BM_LoadClip(benchmark::State& state) {
  const BenchTree& t = tree();
  for (auto _ : state) {
    benchmark::DoNotOptimize(load_clip(t.dataset, t.clips[0], t.clip_options).masks.data_ptr());
  }
  state.counters["frames/s"] =
      benchmark::Counter(double(kClipLength), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_LoadClip)->Unit(benchmark::kMillisecond);

void BM_AugmentClip(benchmark::State& state) {
  const BenchTree& t = tree();
  const ClipSample c = load_clip(t.dataset, t.clips[0], t.clip_options);
  uint64_t seed = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(transform_sample(c, seed++).clip.images.data_ptr());
  }
  state.counters["frames/s"] =
      benchmark::Counter(double(kClipLength), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AugmentClip)->Unit(benchmark::kMillisecond);

void BM_SurgicalClipLoader(benchmark::State& state) {
  const int64_t clips = tree().clips.size();
  LoaderOptions o;
  o.size = clips;
  o.threads = state.range(0);
  o.prefetch = 4;
  o.seed = 7;
  Loader<TrainSample> loader(make_sample, o);
  int64_t epoch = 0, frames = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (auto s = loader.next()) {
      frames += s->clip.images.size(0);
      benchmark::DoNotOptimize(s->clip.images.data_ptr());
    }
  }
  state.counters["frames/s"] = benchmark::Counter(double(frames), benchmark::Counter::kIsRate);
  state.counters["clips/epoch"] = double(clips);
}
BENCHMARK(BM_SurgicalClipLoader)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

#if IRIS_HAVE_NIFTI
// Four 64^3 volumes with three organ classes, kept in memory as the trainer keeps them.
struct BenchVolumes {
  std::unique_ptr<VolumeEpisodeSampler> sampler;
  std::vector<int64_t> classes;
  PatchEpisodeOptions options;

  BenchVolumes() {
    SyntheticVolumeOptions o;
    o.cases = 4;
    o.size = 64;
    o.classes = 3;
    o.seed = 1;
    std::vector<Volume> images, labels;
    for (int64_t i = 0; i < o.cases; ++i) {
      SyntheticVolumeCase c = make_synthetic_volume(o, i);
      images.push_back(std::move(c.image));
      labels.push_back(std::move(c.labels));
    }
    sampler = std::make_unique<VolumeEpisodeSampler>(images, labels, 20);
    classes = sampler->episode_classes();
    options.patch_size = {32, 32, 32};
    options.classes_per_episode = 3;
  }
};

const BenchVolumes& volumes() {
  static const BenchVolumes v;
  return v;
}

PatchEpisode make_episode(int64_t, uint64_t seed) {
  const BenchVolumes& v = volumes();
  std::mt19937_64 rng(seed);
  return augment_patch_episode(v.sampler->sample(rng, v.classes, v.options), PatchAugmentOptions{},
                               rng);
}

void BM_VolumeEpisodeLoader(benchmark::State& state) {
  constexpr int64_t kEpisodes = 16;
  volumes();  // built before timing
  LoaderOptions o;
  o.size = kEpisodes;
  o.threads = state.range(0);
  o.prefetch = 4;
  o.seed = 7;
  Loader<PatchEpisode> loader(make_episode, o);
  int64_t epoch = 0, patches = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (auto e = loader.next()) {
      patches += 2;  // reference and query
      benchmark::DoNotOptimize(e->query_image.data_ptr());
    }
  }
  state.counters["volumes/s"] = benchmark::Counter(double(patches), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_VolumeEpisodeLoader)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace iris
