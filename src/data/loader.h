// A prefetching sample loader: worker threads produce samples ahead of the consumer into a
// bounded window and the consumer receives them in order. A sample depends only on (seed, epoch,
// index): its position in the epoch comes from a permutation seeded by (seed, epoch) and the
// producer gets a seed mixed from (seed, epoch, index), so every thread count yields the same
// batches. A producer's exception reaches the consumer as a LoaderError naming the sample index.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace iris {

struct LoaderOptions {
  int64_t size = 0;        // samples per epoch
  int64_t batch_size = 1;  // next_batch() size; the last batch may be shorter
  int64_t threads = 1;     // 0: produce on the consumer's thread
  int64_t prefetch = 8;    // samples produced ahead of the consumer, at most
  bool shuffle = true;
  uint64_t seed = 0;
};

// A sample that failed in a worker: its index, the producer's message, and the producer's exit
// code when it threw an iris::Error.
class LoaderError : public Error {
 public:
  LoaderError(int64_t index, const std::string& what, ExitCode code, std::exception_ptr cause);
  int64_t index() const { return index_; }
  ExitCode exit_code() const override { return code_; }
  std::exception_ptr cause() const { return cause_; }

 private:
  int64_t index_;
  ExitCode code_;
  std::exception_ptr cause_;
};

// The seed a producer receives for (seed, epoch, index): splitmix64 over the three.
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);
// Sample indices in epoch order: the identity, or a permutation drawn from (seed, epoch).
std::vector<int64_t> epoch_order(int64_t size, uint64_t seed, int64_t epoch, bool shuffle);
// Wraps the exception in flight (inside a catch) as a LoaderError for `index`.
LoaderError wrap_sample_error(int64_t index, std::exception_ptr error);

template <typename Sample>
class Loader {
 public:
  using Producer = std::function<Sample(int64_t index, uint64_t seed)>;

  Loader(Producer producer, LoaderOptions options)
      : producer_(std::move(producer)), options_(options) {
    if (options_.size < 0 || options_.batch_size < 1 || options_.threads < 0 ||
        options_.prefetch < 1) {
      throw InputError("loader: size >= 0, batch_size >= 1, threads >= 0 and prefetch >= 1 needed");
    }
    start_epoch(0);
  }
  ~Loader() { stop(); }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Restarts at the first sample of `epoch` (stops the workers of the previous one).
  void start_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    order_ = epoch_order(options_.size, options_.seed, epoch, options_.shuffle);
    next_position_ = 0;
    claimed_ = 0;
    ready_.clear();
    stopping_ = false;
    for (int64_t i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { work(); });
  }

  int64_t epoch() const { return epoch_; }
  int64_t size() const { return options_.size; }
  int64_t batches_per_epoch() const {
    return (options_.size + options_.batch_size - 1) / options_.batch_size;
  }

  // The next sample of the epoch, nullopt at its end. Throws LoaderError for a failed sample.
  std::optional<Sample> next() {
    if (options_.threads == 0) {
      if (next_position_ >= options_.size) return std::nullopt;
      return produce(order_[next_position_++]);
    }
    std::unique_lock lock(mutex_);
    if (next_position_ >= options_.size) return std::nullopt;
    const int64_t position = next_position_++;
    const int64_t index = order_[position];
    consumed_cv_.notify_all();  // the window moved
    ready_cv_.wait(lock, [&] { return ready_.count(position) > 0; });
    Result result = std::move(ready_.at(position));
    ready_.erase(position);
    consumed_cv_.notify_all();
    lock.unlock();
    if (result.error) throw wrap_sample_error(index, result.error);
    return std::move(result.sample);
  }

  // Up to batch_size samples; empty at the end of the epoch.
  std::vector<Sample> next_batch() {
    std::vector<Sample> batch;
    while (static_cast<int64_t>(batch.size()) < options_.batch_size) {
      std::optional<Sample> s = next();
      if (!s) break;
      batch.push_back(std::move(*s));
    }
    return batch;
  }

 private:
  struct Result {
    std::optional<Sample> sample;
    std::exception_ptr error;
  };

  Sample produce(int64_t index) {
    try {
      return producer_(index, sample_seed(options_.seed, epoch_, index));
    } catch (...) {
      throw wrap_sample_error(index, std::current_exception());
    }
  }

  void work() {
    while (true) {
      int64_t position = 0;
      {
        std::unique_lock lock(mutex_);
        // Claim the next position once it is inside the window ahead of the consumer.
        consumed_cv_.wait(lock, [&] {
          return stopping_ || claimed_ >= options_.size ||
                 claimed_ < next_position_ + options_.prefetch;
        });
        if (stopping_ || claimed_ >= options_.size) return;
        position = claimed_++;
      }
      Result result;
      const int64_t index = order_[position];
      try {
        result.sample.emplace(producer_(index, sample_seed(options_.seed, epoch_, index)));
      } catch (...) {
        result.error = std::current_exception();
      }
      std::lock_guard lock(mutex_);
      ready_.emplace(position, std::move(result));
      ready_cv_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    consumed_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  Producer producer_;
  LoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t next_position_ = 0;  // consumer's next position (read by workers under mutex_)
  int64_t claimed_ = 0;        // next position a worker takes
  std::map<int64_t, Result> ready_;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable ready_cv_, consumed_cv_;
  std::vector<std::thread> workers_;
};

}  // namespace iris
