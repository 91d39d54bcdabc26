#include "data/loader.h"

#include <fmt/format.h>

#include <numeric>
#include <random>

namespace iris {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

LoaderError::LoaderError(int64_t index, const std::string& what, ExitCode code,
                         std::exception_ptr cause)
    : Error(fmt::format("sample {}: {}", index, what)),
      index_(index),
      code_(code),
      cause_(std::move(cause)) {}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^
                    static_cast<uint64_t>(index));
}

std::vector<int64_t> epoch_order(int64_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  if (!shuffle) return order;
  // Fisher-Yates with explicit draws: std::shuffle's algorithm is left to the library.
  std::mt19937_64 rng(sample_seed(seed, epoch, -1));
  for (int64_t i = size - 1; i > 0; --i) {
    std::swap(order[i], order[std::uniform_int_distribution<int64_t>(0, i)(rng)]);
  }
  return order;
}

LoaderError wrap_sample_error(int64_t index, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const LoaderError& e) {
    return e;
  } catch (const Error& e) {
    return LoaderError(index, e.what(), e.exit_code(), error);
  } catch (const std::exception& e) {
    return LoaderError(index, e.what(), ExitCode::kRuntime, error);
  } catch (...) {
    return LoaderError(index, "unknown error", ExitCode::kFailure, error);
  }
}

}  // namespace iris
