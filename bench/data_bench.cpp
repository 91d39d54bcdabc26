// Loader throughput on synthetic surgical clips: decode PNG frames and masks, letterbox to 384,
// flip / rotate / scale / colour-jitter, simulate point prompts, through 1 or 2 worker threads.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "data/augment.h"
#include "data/clips.h"
#include "data/loader.h"
#include "data/prompts.h"
#include "data/synthetic_video.h"

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

TrainSample make_sample(int64_t index, uint64_t seed) {
  const BenchTree& t = tree();
  const ClipSample c = load_clip(t.dataset, t.clips[index], t.clip_options);
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

}  // namespace
}  // namespace iris
