// SAM2 image encoder latency (random weights, inference mode, eval mode).
#include <benchmark/benchmark.h>

#include <string>

#include "models/sam2/image_encoder.h"

namespace {

using iris::models::sam2::ImageEncoder;
using iris::models::sam2::official_image_encoder_options;

// Args: input side. One encoder per size, built once per benchmark run.
void image_encoder_bench(benchmark::State& state, const std::string& size) {
  torch::manual_seed(0);
  ImageEncoder encoder(official_image_encoder_options(size));
  encoder->eval();
  c10::InferenceMode inference;
  const int64_t side = state.range(0);
  const auto image = torch::randn({1, 3, side, side});
  for (auto _ : state) {
    auto out = encoder->forward(image);
    benchmark::DoNotOptimize(out.vision_features.data_ptr());
  }
  state.SetItemsProcessed(state.iterations());  // frames
  state.counters["threads"] = static_cast<double>(torch::get_num_threads());
}

void BM_ImageEncoder(benchmark::State& state) {
  image_encoder_bench(state, "tiny");
}
BENCHMARK(BM_ImageEncoder)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
