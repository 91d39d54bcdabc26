#include "report/training_report.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "report/insights_writer.h"
#include "report/plot.h"

namespace iris::report {

namespace {

// Last validation Dice at or above this is called good performance (the threshold the Python
// pipeline's report used, stated here instead of implied).
constexpr double kGoodDice = 0.7;
// Exponential moving average weight of the past for the smoothed curves.
constexpr double kSmoothing = 0.9;
// Per-class validation curves are drawn only up to this many classes (all are in the table).
constexpr std::size_t kMaxPlottedClasses = 5;

std::optional<double> optional_number(const nlohmann::json& row, const char* key) {
  const auto it = row.find(key);
  if (it == row.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

double points(double dice) {
  return 100.0 * dice;
}

std::string signed_points(double p) {
  std::string text = fmt::format("{:+.2f}", p);
  if (text == "-0.00") text = "+0.00";
  return text;
}

std::string lr_text(double lr) {
  return fmt::format("{:.3e}", lr);
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

std::vector<double> smoothed(const std::vector<double>& values) {
  std::vector<double> out;
  double s = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    s = i == 0 ? values[i] : kSmoothing * s + (1 - kSmoothing) * values[i];
    out.push_back(s);
  }
  return out;
}

std::string duration_text(double seconds) {
  if (seconds < 120) return fmt::format("{:.1f} s", seconds);
  return fmt::format("{:.1f} min", seconds / 60);
}

// Mean training loss over the steps (from, to]; falls back to the nearest earlier row.
double train_loss_between(const TrainingLog& log, int64_t from, int64_t to, int64_t& first,
                          int64_t& last) {
  std::vector<double> values;
  first = last = 0;
  for (const auto& r : log.train) {
    if (r.step > from && r.step <= to) {
      if (values.empty()) first = r.step;
      last = r.step;
      values.push_back(r.loss);
    }
  }
  if (!values.empty()) return mean_of(values);
  const TrainStepRow* nearest = &log.train.front();
  for (const auto& r : log.train) {
    if (r.step <= to) nearest = &r;
  }
  first = last = nearest->step;
  return nearest->loss;
}

}  // namespace

TrainingLog read_training_log(const fs::path& run_dir) {
  TrainingLog log;
  log.metrics_path = run_dir / "metrics.jsonl";
  const std::string path = log.metrics_path.string();
  if (!fs::is_regular_file(log.metrics_path)) {
    throw InputError(file_message(path,
                                  "no such file: the training report needs the run's "
                                  "metrics.jsonl (is this a run folder of `iris train`?)"));
  }
  std::size_t line_number = 0;
  for (const auto& line : read_complete_lines(log.metrics_path)) {
    ++line_number;
    if (line.empty()) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(fmt::format("{}:{}: not a JSON object: {}", path, line_number, e.what()));
    }
    auto bad = [&](const std::string& what) {
      return InputError(fmt::format("{}:{}: {}", path, line_number, what));
    };
    if (!row.is_object()) throw bad("expected a JSON object per line");
    if (!row.contains("step") || !row["step"].is_number_integer()) {
      throw bad("expected an integer \"step\"");
    }
    const int64_t step = row["step"].get<int64_t>();
    auto number = [&](const char* key) {
      const auto v = optional_number(row, key);
      if (!v) throw bad(fmt::format("expected a number \"{}\"", key));
      return *v;
    };
    if (row.contains("train/loss")) {
      TrainStepRow r;
      r.step = step;
      r.loss = number("train/loss");
      r.dice = number("train/dice");
      r.lr = number("lr");
      r.data_ms = optional_number(row, "time/data_ms");
      r.compute_ms = optional_number(row, "time/compute_ms");
      r.samples_per_s = optional_number(row, "samples_per_s");
      r.peak_rss_mb = optional_number(row, "memory/peak_rss_mb");
      log.train.push_back(r);
    } else if (row.contains("val/loss")) {
      ValidationRow v;
      v.step = step;
      v.loss = number("val/loss");
      v.dice = number("val/dice");
      if (const auto it = row.find("val/dice_per_class"); it != row.end()) {
        if (!it->is_object()) throw bad("expected an object \"val/dice_per_class\"");
        for (const auto& [name, value] : it->items()) {
          if (!value.is_number()) throw bad("per-class Dice of '" + name + "' is not a number");
          v.per_class.emplace_back(name, value.get<double>());
        }
      }
      log.validation.push_back(std::move(v));
    }
  }
  if (log.train.empty()) {
    throw InputError(file_message(path,
                                  "holds no training rows (\"train/loss\"), so there is "
                                  "nothing to report"));
  }
  auto by_step = [](const auto& a, const auto& b) { return a.step < b.step; };
  std::stable_sort(log.train.begin(), log.train.end(), by_step);
  std::stable_sort(log.validation.begin(), log.validation.end(), by_step);
  return log;
}

FitAssessment assess_fit(const TrainingLog& log, const FitThresholds& t) {
  FitAssessment fit;
  const std::size_t n = log.train.size();
  const std::size_t window = std::max<std::size_t>(1, n / 10);
  {
    std::vector<double> tail;
    for (std::size_t i = n - window; i < n; ++i) tail.push_back(log.train[i].dice);
    fit.final_train_dice = mean_of(tail);
  }
  const std::string train_dice_text = fmt::format(
      "the training Dice over the last {} logged steps averages {:.4f} (underfitting "
      "threshold {:.2f})",
      window, fit.final_train_dice, t.low_train_dice);
  if (log.validation.empty()) {
    fit.verdict = fit.final_train_dice < t.low_train_dice ? FitVerdict::kUnderfitting
                                                          : FitVerdict::kNoOverfitting;
    fit.sentence =
        fit.verdict == FitVerdict::kUnderfitting
            ? "Underfitting: " + train_dice_text +
                  "; no validation was logged, so overfitting cannot be assessed."
            : "Over- or underfitting cannot be assessed from validation: no validation was "
              "logged; " +
                  train_dice_text + ".";
    return fit;
  }
  const ValidationRow& last = log.validation.back();
  const ValidationRow* best = &log.validation.front();
  for (const auto& v : log.validation) {
    if (v.dice > best->dice) best = &v;
  }
  fit.step = last.step;
  fit.val_loss = last.loss;
  const int64_t previous =
      log.validation.size() > 1 ? log.validation[log.validation.size() - 2].step : 0;
  fit.train_loss = train_loss_between(log, previous, last.step, fit.train_from, fit.train_to);
  fit.relative_gap = fit.train_loss > 0 ? (fit.val_loss - fit.train_loss) / fit.train_loss : 0.0;
  fit.best_minus_last_points = points(best->dice - last.dice);

  const int64_t last_step = std::max(log.train.back().step, last.step);
  const int64_t cutoff = last_step * 2 / 3;
  std::vector<const ValidationRow*> third;
  for (const auto& v : log.validation) {
    if (v.step > cutoff) third.push_back(&v);
  }
  if (third.size() >= 2 && third.front()->loss > 0) {
    fit.val_trend = (third.back()->loss - third.front()->loss) / third.front()->loss;
    fit.trend_from = third.front()->step;
    fit.trend_to = third.back()->step;
  }

  const bool gap = fit.relative_gap > t.relative_gap;
  const bool rising = fit.val_trend && *fit.val_trend > t.trend;
  const bool dice_dropped = fit.best_minus_last_points > t.dice_drop_points;
  const bool falling = fit.val_trend && *fit.val_trend < -t.trend;

  const std::string gap_text = fmt::format(
      "at step {} the validation loss ({:.4f}) is {:.1f}% {} the training loss over the same steps "
      "({:.4f}, mean of steps {}–{}; relative gap = (validation − training) / training = {:+.1f}%, "
      "threshold +{:.0f}%)",
      fit.step, fit.val_loss, std::abs(100 * fit.relative_gap),
      fit.relative_gap >= 0 ? "above" : "below", fit.train_loss, fit.train_from, fit.train_to,
      100 * fit.relative_gap, 100 * t.relative_gap);
  const std::string trend_text =
      fit.val_trend
          ? fmt::format(
                "over the last third of training the validation loss went from {:.4f} "
                "(step {}) to {:.4f} (step {}), a change of {:+.1f}% (threshold ±{:.0f}%)",
                third.front()->loss, fit.trend_from, third.back()->loss, fit.trend_to,
                100 * *fit.val_trend, 100 * t.trend)
          : fmt::format(
                "the last third of training (steps after {}) holds fewer than two "
                "validations, so no validation trend is measured",
                cutoff);
  const std::string drop_text =
      best == &last || best->dice == last.dice
          ? fmt::format("the last validation Dice ({:.4f}, step {}) is the best", last.dice,
                        last.step)
          : fmt::format(
                "the last validation Dice ({:.4f}) is {:.2f} points below the best "
                "({:.4f} at step {}; threshold {:.1f} points)",
                last.dice, fit.best_minus_last_points, best->dice, best->step, t.dice_drop_points);

  std::string head;
  if (gap && (rising || dice_dropped)) {
    fit.verdict = FitVerdict::kOverfitting;
    head = std::string(
               "Overfitting: the validation loss exceeds the training loss beyond the "
               "threshold and validation got worse (") +
           (rising ? "rising validation loss" : "validation Dice below its best") + ")";
  } else if (fit.final_train_dice < t.low_train_dice) {
    fit.verdict = FitVerdict::kUnderfitting;
    head = "Underfitting: the training Dice stays below the threshold";
  } else if (falling) {
    fit.verdict = FitVerdict::kStillImproving;
    head =
        "No overfitting; still improving: the validation loss is still falling over the last third";
  } else {
    fit.verdict = FitVerdict::kNoOverfitting;
    head = gap ? "No sign of overfitting: the validation loss exceeds the training loss beyond the "
                 "threshold, but validation did not get worse"
               : "No sign of overfitting: the validation loss is within the threshold of the "
                 "training loss";
  }
  fit.sentence =
      fmt::format("{} — {}; {}; {}; {}.", head, gap_text, trend_text, drop_text, train_dice_text);
  return fit;
}

TrainingReport build_training_report(const fs::path& run_dir, const FitThresholds& thresholds) {
  TrainingReport rep;
  rep.run_name = fs::absolute(run_dir).lexically_normal().filename().string();
  if (rep.run_name.empty()) rep.run_name = fs::absolute(run_dir).parent_path().filename().string();
  rep.log = read_training_log(run_dir);
  rep.thresholds = thresholds;
  rep.fit = assess_fit(rep.log, thresholds);
  if (fs::is_regular_file(run_dir / "config.yaml"))
    rep.config_yaml = read_file(run_dir / "config.yaml");

  const auto& log = rep.log;
  auto& n = rep.numbers;
  n.logged_steps = static_cast<int64_t>(log.train.size());
  n.first_step = log.train.front().step;
  n.last_step = log.train.back().step;
  if (fs::is_regular_file(run_dir / "summary.json")) {
    try {
      const auto summary = nlohmann::json::parse(read_file(run_dir / "summary.json"));
      n.finished = true;
      if (const auto it = summary.find("steps"); it != summary.end() && it->is_number_integer())
        n.configured_steps = it->get<int64_t>();
      n.wall_seconds = optional_number(summary, "time/seconds");
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(file_message((run_dir / "summary.json").string(),
                                    std::string("not valid JSON: ") + e.what()));
    }
  }
  const std::size_t count = log.train.size();
  const std::size_t window = std::max<std::size_t>(1, count / 10);
  n.window = static_cast<int64_t>(window);
  std::vector<double> head_loss, tail_loss, head_dice, tail_dice, throughput;
  for (std::size_t i = 0; i < window; ++i) {
    head_loss.push_back(log.train[i].loss);
    head_dice.push_back(log.train[i].dice);
    tail_loss.push_back(log.train[count - window + i].loss);
    tail_dice.push_back(log.train[count - window + i].dice);
  }
  n.initial_train_loss = mean_of(head_loss);
  n.final_train_loss = mean_of(tail_loss);
  n.initial_train_dice = mean_of(head_dice);
  n.final_train_dice = mean_of(tail_dice);
  n.last_step_train_loss = log.train.back().loss;
  n.loss_reduction = n.initial_train_loss != 0
                         ? (n.initial_train_loss - n.final_train_loss) / n.initial_train_loss
                         : 0;
  n.first_lr = log.train.front().lr;
  n.last_lr = log.train.back().lr;
  n.peak_lr = n.first_lr;
  for (const auto& r : log.train) {
    n.peak_lr = std::max(n.peak_lr, r.lr);
    if (r.data_ms) n.data_ms += *r.data_ms;
    if (r.compute_ms) n.compute_ms += *r.compute_ms;
    if (r.samples_per_s) throughput.push_back(*r.samples_per_s);
    if (r.peak_rss_mb) n.peak_rss_mb = std::max(n.peak_rss_mb.value_or(0.0), *r.peak_rss_mb);
  }
  if (!throughput.empty()) n.mean_samples_per_s = mean_of(throughput);
  if (!log.validation.empty()) {
    n.first_validation = log.validation.front();
    n.last_validation = log.validation.back();
    const ValidationRow* best = &log.validation.front();
    for (const auto& v : log.validation) {
      if (v.dice > best->dice) best = &v;
    }
    n.best_validation = *best;
  }

  // Executive summary.
  std::string runs_text = fmt::format("Run {}: {} logged training steps (steps {}–{})",
                                      rep.run_name, n.logged_steps, n.first_step, n.last_step);
  runs_text += n.finished
                   ? ", finished (summary.json present)"
                   : ", not finished: summary.json is missing (still running, stopped or crashed)";
  if (n.wall_seconds)
    runs_text += fmt::format(", training time {}", duration_text(*n.wall_seconds));
  rep.summary.push_back(runs_text + ".");
  const double improvement =
      n.last_validation ? points(n.last_validation->dice - n.first_validation->dice) : 0;
  if (n.last_validation) {
    rep.summary.push_back(fmt::format(
        "Validation Dice (mean over classes and episodes): last {:.4f} at step {}, best {:.4f} at "
        "step {}; improvement = {} points ({:.4f} at step {} → {:.4f} at step {}).",
        n.last_validation->dice, n.last_validation->step, n.best_validation->dice,
        n.best_validation->step, signed_points(improvement), n.first_validation->dice,
        n.first_validation->step, n.last_validation->dice, n.last_validation->step));
  } else {
    rep.summary.push_back("No validation rows were logged, so there are no validation numbers.");
  }
  rep.summary.push_back(fmt::format(
      "Training loss (mean over the first and the last {} logged steps) {} from {:.4f} to {:.4f}: "
      "reduction = (initial − final) / initial = {:.1f}%.",
      n.window, n.final_train_loss <= n.initial_train_loss ? "fell" : "rose", n.initial_train_loss,
      n.final_train_loss, 100 * n.loss_reduction));
  rep.summary.push_back(rep.fit.sentence);

  // Key metrics.
  rep.key_metrics = {"key_metrics",
                     "Key metrics",
                     "Every value from metrics.jsonl unless the definition says otherwise.",
                     {{"Metric"}, {"Value"}, {"Definition"}}};
  auto key = [&](const std::string& metric, const std::string& value,
                 const std::string& definition) {
    rep.key_metrics.rows.push_back({metric, value, definition});
  };
  key("Logged training steps", std::to_string(n.logged_steps),
      fmt::format("rows with train/loss (steps {}–{})", n.first_step, n.last_step));
  key("Finished", n.finished ? "yes" : "no", "summary.json present");
  if (n.wall_seconds)
    key("Training time", duration_text(*n.wall_seconds), "summary.json time/seconds");
  key("Initial training loss", fmt::format("{:.4f}", n.initial_train_loss),
      fmt::format("mean train/loss over the first {} logged steps (10%, at least 1)", n.window));
  key("Final training loss", fmt::format("{:.4f}", n.final_train_loss),
      fmt::format("mean train/loss over the last {} logged steps", n.window));
  key("Last-step training loss", fmt::format("{:.4f}", n.last_step_train_loss),
      fmt::format("train/loss at step {}", n.last_step));
  key("Training loss reduction", fmt::format("{:.1f}%", 100 * n.loss_reduction),
      "(initial − final) / initial, of the two means above");
  key("Final training Dice", fmt::format("{:.4f}", n.final_train_dice),
      fmt::format("mean train/dice over the last {} logged steps", n.window));
  if (n.last_validation) {
    key("Final validation loss", fmt::format("{:.4f}", n.last_validation->loss),
        fmt::format("val/loss at step {} (last validation)", n.last_validation->step));
    key("Final validation Dice", fmt::format("{:.4f}", n.last_validation->dice),
        fmt::format("val/dice at step {} (last validation)", n.last_validation->step));
    key("Best validation Dice", fmt::format("{:.4f}", n.best_validation->dice),
        fmt::format("max val/dice, at step {}", n.best_validation->step));
    key("Validation Dice improvement", signed_points(improvement) + " points",
        fmt::format("100 · (last − first) = 100 · ({:.4f} − {:.4f}); first validation at step {}",
                    n.last_validation->dice, n.first_validation->dice, n.first_validation->step));
    key("Best − last validation Dice", fmt::format("{:.2f} points", rep.fit.best_minus_last_points),
        "100 · (best − last)");
    key("Validations", std::to_string(log.validation.size()), "rows with val/loss");
  }
  key("Learning rate",
      fmt::format("{} → peak {} → {}", lr_text(n.first_lr), lr_text(n.peak_lr), lr_text(n.last_lr)),
      fmt::format("lr at step {}, max over steps, lr at step {}", n.first_step, n.last_step));

  // Per-class validation table.
  rep.per_class = {"per_class",
                   "Validation Dice per class",
                   "Hard Dice per class averaged over the validation episodes that contain it; "
                   "change = 100 · (last − first).",
                   {{"Class"},
                    {"Validations", CellFormat::kCount},
                    {"First", CellFormat::kMetric},
                    {"Best", CellFormat::kMetric},
                    {"Best step", CellFormat::kCount},
                    {"Last", CellFormat::kMetric},
                    {"Change (points)"}}};
  {
    struct ClassStats {
      int64_t count = 0;
      double first = 0, best = -1, last = 0;
      int64_t best_step = 0, last_step = 0;
    };
    std::map<std::string, ClassStats> stats;
    for (const auto& v : log.validation) {
      for (const auto& [name, dice] : v.per_class) {
        auto& s = stats[name];
        if (s.count++ == 0) s.first = dice;
        if (dice > s.best) {
          s.best = dice;
          s.best_step = v.step;
        }
        s.last = dice;
        s.last_step = v.step;
      }
    }
    std::vector<std::pair<std::string, ClassStats>> sorted(stats.begin(), stats.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second.last > b.second.last; });
    const int64_t final_step = n.last_validation ? n.last_validation->step : 0;
    for (const auto& [name, s] : sorted) {
      const std::string label = s.last_step == final_step
                                    ? name
                                    : fmt::format("{} (last seen at step {})", name, s.last_step);
      rep.per_class.rows.push_back({label, s.count, s.first, s.best, s.best_step, s.last,
                                    signed_points(points(s.last - s.first))});
    }
  }

  // Timing and resources.
  rep.timing = {"timing",
                "Timing and resources",
                "Sums over the logged training steps (validation time excluded).",
                {{"Quantity"}, {"Value"}, {"Definition"}}};
  const double step_ms = n.data_ms + n.compute_ms;
  auto timing = [&](const std::string& q, const std::string& v, const std::string& d) {
    rep.timing.rows.push_back({q, v, d});
  };
  timing("Data time", duration_text(n.data_ms / 1000),
         "sum of time/data_ms (episode sampling, transfer)");
  timing("Compute time", duration_text(n.compute_ms / 1000),
         "sum of time/compute_ms (forward, backward, optimiser step)");
  if (step_ms > 0) {
    timing("Data share", fmt::format("{:.1f}%", 100 * n.data_ms / step_ms),
           "data / (data + compute)");
    timing("Mean step time", fmt::format("{:.1f} ms", step_ms / static_cast<double>(count)),
           "(data + compute) / logged steps");
  }
  if (n.mean_samples_per_s) {
    timing("Throughput", fmt::format("{:.2f} episodes/s", *n.mean_samples_per_s),
           "mean of samples_per_s");
  }
  if (n.peak_rss_mb)
    timing("Peak memory (CPU RSS)", fmt::format("{:.1f} MB", *n.peak_rss_mb),
           "max of memory/peak_rss_mb");

  // Detailed log: first and last step, every validation, and about ten steps in between.
  rep.detailed_log = {"detailed_log",
                      "Detailed training log",
                      "Training values at the listed steps; validation values at validation steps.",
                      {{"Step", CellFormat::kCount},
                       {"Train loss", CellFormat::kMetric},
                       {"Train Dice", CellFormat::kMetric},
                       {"LR"},
                       {"Val loss", CellFormat::kMetric},
                       {"Val Dice", CellFormat::kMetric}}};
  {
    std::set<int64_t> steps{n.first_step, n.last_step};
    const std::size_t stride = std::max<std::size_t>(1, count / 10);
    for (std::size_t i = 0; i < count; i += stride) steps.insert(log.train[i].step);
    for (const auto& v : log.validation) steps.insert(v.step);
    std::map<int64_t, const TrainStepRow*> train_at;
    for (const auto& r : log.train) train_at[r.step] = &r;
    std::map<int64_t, const ValidationRow*> val_at;
    for (const auto& v : log.validation) val_at[v.step] = &v;
    for (int64_t s : steps) {
      std::vector<Cell> row{s};
      if (const auto it = train_at.find(s); it != train_at.end()) {
        row.insert(row.end(), {it->second->loss, it->second->dice, lr_text(it->second->lr)});
      } else {
        row.insert(row.end(), {std::monostate{}, std::monostate{}, std::monostate{}});
      }
      if (const auto it = val_at.find(s); it != val_at.end()) {
        row.insert(row.end(), {it->second->loss, it->second->dice});
      } else {
        row.insert(row.end(), {std::monostate{}, std::monostate{}});
      }
      rep.detailed_log.rows.push_back(std::move(row));
    }
  }

  // Conclusions, each from the numbers above.
  if (n.last_validation) {
    rep.conclusions.push_back(fmt::format(
        "The last validation Dice, {:.4f} (step {}), is {} {:.2f}, the threshold this report uses "
        "for good performance.",
        n.last_validation->dice, n.last_validation->step,
        n.last_validation->dice >= kGoodDice ? "at or above" : "below", kGoodDice));
  }
  rep.conclusions.push_back(rep.fit.sentence);
  if (n.last_validation && n.best_validation->step != n.last_validation->step &&
      n.best_validation->dice > n.last_validation->dice) {
    rep.conclusions.push_back(fmt::format(
        "checkpoints/best.pt holds the weights of step {}, whose validation Dice is {:.2f} points "
        "above the last validation's ({:.4f} vs {:.4f}).",
        n.best_validation->step, rep.fit.best_minus_last_points, n.best_validation->dice,
        n.last_validation->dice));
  } else if (n.last_validation) {
    rep.conclusions.push_back(fmt::format(
        "The best validation is the last one (step {}), so checkpoints/best.pt holds that step's "
        "weights.",
        n.last_validation->step));
  }
  rep.conclusions.push_back(fmt::format(
      "The learning rate started at {} (step {}), peaked at {} and ended at {} (step {}).",
      lr_text(n.first_lr), n.first_step, lr_text(n.peak_lr), lr_text(n.last_lr), n.last_step));
  if (step_ms > 0) {
    rep.conclusions.push_back(fmt::format(
        "Data preparation took {:.1f}% of the logged step time (data / (data + compute)).",
        100 * n.data_ms / step_ms));
  }

  // Next steps follow the verdict.
  if (!n.finished) {
    rep.next_steps.push_back(
        fmt::format("The run is not finished: continue it with `iris train CONFIG --resume {}`.",
                    run_dir.string()));
  }
  switch (rep.fit.verdict) {
    case FitVerdict::kOverfitting:
      rep.next_steps.push_back(fmt::format(
          "Use checkpoints/best.pt (step {}) rather than the last weights, and add regularisation "
          "(augmentation, weight decay) or training data before training longer.",
          n.best_validation ? n.best_validation->step : 0));
      break;
    case FitVerdict::kUnderfitting:
      rep.next_steps.push_back(fmt::format(
          "Give the model more capacity or more steps: the final training Dice ({:.4f}) is below "
          "{:.2f}.",
          rep.fit.final_train_dice, rep.thresholds.low_train_dice));
      break;
    case FitVerdict::kStillImproving:
      rep.next_steps.push_back(fmt::format(
          "Train longer: the validation loss still changed by {:+.1f}% over the last third.",
          100 * rep.fit.val_trend.value_or(0)));
      break;
    case FitVerdict::kNoOverfitting:
      if (rep.fit.val_trend) {
        rep.next_steps.push_back(fmt::format(
            "The validation loss is flat over the last third ({:+.1f}%, within ±{:.0f}%): compare "
            "other settings (learning rate, model size, classes per episode) with `iris runs "
            "compare` rather than extending this run.",
            100 * *rep.fit.val_trend, 100 * rep.thresholds.trend));
      } else {
        rep.next_steps.push_back(
            "Validate more often (validation.every) so that the trend over the last third can be "
            "measured.");
      }
      break;
  }
  rep.next_steps.push_back(
      "Look at predictions on unseen structures, not only at these numbers (`iris demo` evaluates "
      "the atlas run one-shot and with a context ensemble).");
  return rep;
}

namespace {

struct Plot {
  std::string file;
  std::string caption;
  std::string png;
};

std::vector<Plot> render_plots(const TrainingReport& rep, std::string& note) {
  std::vector<Plot> plots;
  if (!plots_available()) {
    note =
        "This build has no PLplot (or PLplot lacks its pngcairo driver), so the report has no "
        "plots.";
    return plots;
  }
  const auto& log = rep.log;
  std::vector<double> steps, loss, dice, lr, throughput_steps, throughput;
  for (const auto& r : log.train) {
    steps.push_back(static_cast<double>(r.step));
    loss.push_back(r.loss);
    dice.push_back(r.dice);
    lr.push_back(r.lr);
    if (r.samples_per_s) {
      throughput_steps.push_back(static_cast<double>(r.step));
      throughput.push_back(*r.samples_per_s);
    }
  }
  std::vector<double> val_steps, val_loss, val_dice;
  std::map<std::string, LineSeries> per_class;
  for (const auto& v : log.validation) {
    val_steps.push_back(static_cast<double>(v.step));
    val_loss.push_back(v.loss);
    val_dice.push_back(v.dice);
    for (const auto& [name, d] : v.per_class) {
      auto& s = per_class[name];
      s.name = "val " + name;
      s.markers = true;
      s.x.push_back(static_cast<double>(v.step));
      s.y.push_back(d);
    }
  }
  try {
    LineChart losses{"Loss", "step", "loss (Dice + BCE)"};
    losses.series.push_back({"train (raw)", steps, loss, false, true});
    losses.series.push_back({"train (smoothed)", steps, smoothed(loss)});
    if (!val_steps.empty()) losses.series.push_back({"validation", val_steps, val_loss, true});
    plots.push_back({"loss_curves.png",
                     fmt::format("Loss per step: training raw and smoothed (exponential moving "
                                 "average, weight {} on the past), validation at validation steps.",
                                 kSmoothing),
                     render_lines_png(losses)});
    LineChart dices{"Dice", "step", "Dice"};
    dices.series.push_back({"train (raw)", steps, dice, false, true});
    dices.series.push_back({"train (smoothed)", steps, smoothed(dice)});
    if (!val_steps.empty())
      dices.series.push_back({"validation (mean)", val_steps, val_dice, true});
    std::string class_note;
    if (!per_class.empty() && per_class.size() <= kMaxPlottedClasses) {
      for (auto& [name, s] : per_class) dices.series.push_back(s);
      class_note = " and per class";
    } else if (!per_class.empty()) {
      class_note = fmt::format(" (the {} classes are in the per-class table, too many to draw)",
                               per_class.size());
    }
    plots.push_back({"dice_curves.png",
                     "Dice per step: training raw and smoothed, validation mean" + class_note + ".",
                     render_lines_png(dices)});
    LineChart rates{"Learning rate", "step", "learning rate"};
    rates.series.push_back({"lr", steps, lr});
    plots.push_back(
        {"learning_rate.png", "Learning rate per step (linear axis).", render_lines_png(rates)});
    if (!throughput.empty()) {
      LineChart speed{"Throughput", "step", "episodes / s"};
      speed.series.push_back({"raw", throughput_steps, throughput, false, true});
      speed.series.push_back({"smoothed", throughput_steps, smoothed(throughput)});
      plots.push_back({"throughput.png",
                       "Training throughput per step: episodes per second of data + compute time.",
                       render_lines_png(speed)});
    }
  } catch (const Error& e) {
    spdlog::warn("training report: plots skipped: {}", e.what());
    note = fmt::format("Plots could not be drawn: {}", e.what());
    plots.clear();
  }
  return plots;
}

const Plot* find_plot(const std::vector<Plot>& plots, const std::string& file) {
  for (const auto& p : plots) {
    if (p.file == file) return &p;
  }
  return nullptr;
}

// The report as an ordered list of blocks, rendered once to Markdown and once to HTML.
struct Block {
  enum class Kind { kHeading, kParagraph, kBullets, kTable, kPlot, kCode };
  Kind kind;
  std::string text;
  std::vector<std::string> items = {};
  const Table* table = nullptr;
  const Plot* plot = nullptr;
  int level = 2;
};

std::vector<Block> layout(const TrainingReport& rep, const std::vector<Plot>& plots,
                          const std::string& note) {
  using K = Block::Kind;
  std::vector<Block> b;
  auto heading = [&](const std::string& t, int level = 2) {
    b.push_back({K::kHeading, t, {}, nullptr, nullptr, level});
  };
  auto para = [&](const std::string& t) { b.push_back({K::kParagraph, t}); };
  auto plot = [&](const std::string& file) {
    if (const Plot* p = find_plot(plots, file)) b.push_back({K::kPlot, "", {}, nullptr, p});
  };
  auto table = [&](const Table& t) {
    if (t.rows.empty()) {
      para(t.title + ": (none)");
    } else {
      b.push_back({K::kTable, "", {}, &t});
    }
  };
  heading("IRIS Training Report", 1);
  para(fmt::format("Run `{}` · source `{}` · IRIS {}", rep.run_name,
                   rep.log.metrics_path.filename().string(), build::kVersion));
  heading("Executive summary");
  b.push_back({K::kBullets, "", rep.summary});
  heading("Key metrics");
  table(rep.key_metrics);
  heading("Training progress");
  if (plots.empty()) para(note);
  heading("Loss curves", 3);
  plot("loss_curves.png");
  const auto& n = rep.numbers;
  std::vector<std::string> loss_items{
      fmt::format("Initial training loss: {:.4f} (mean of the first {} logged steps)",
                  n.initial_train_loss, n.window),
      fmt::format("Final training loss: {:.4f} (mean of the last {} logged steps)",
                  n.final_train_loss, n.window),
      fmt::format("Loss reduction = (initial − final) / initial = {:.1f}%",
                  100 * n.loss_reduction)};
  if (n.last_validation) {
    loss_items.push_back(fmt::format("Validation loss: {:.4f} (step {}) → {:.4f} (step {})",
                                     n.first_validation->loss, n.first_validation->step,
                                     n.last_validation->loss, n.last_validation->step));
  }
  b.push_back({K::kBullets, "", loss_items});
  heading("Dice", 3);
  plot("dice_curves.png");
  if (n.last_validation) {
    b.push_back(
        {K::kBullets,
         "",
         {fmt::format("Best validation Dice: {:.4f} (step {})", n.best_validation->dice,
                      n.best_validation->step),
          fmt::format("Final validation Dice: {:.4f} (step {})", n.last_validation->dice,
                      n.last_validation->step),
          fmt::format("Improvement = 100 · (last − first) = {} points ({:.4f} → {:.4f})",
                      signed_points(points(n.last_validation->dice - n.first_validation->dice)),
                      n.first_validation->dice, n.last_validation->dice)}});
  }
  heading("Validation Dice per class", 3);
  para(rep.per_class.description);
  table(rep.per_class);
  heading("Training configuration");
  heading("Learning rate schedule", 3);
  plot("learning_rate.png");
  para(fmt::format("Learning rate: {} at step {}, peak {}, {} at step {}.", lr_text(n.first_lr),
                   n.first_step, lr_text(n.peak_lr), lr_text(n.last_lr), n.last_step));
  heading("Configuration", 3);
  if (rep.config_yaml.empty()) {
    para("config.yaml is missing from the run folder.");
  } else {
    para("The run's fully resolved config.yaml:");
    b.push_back({K::kCode, rep.config_yaml});
  }
  heading("Resource usage");
  para(rep.timing.description);
  table(rep.timing);
  plot("throughput.png");
  heading("Detailed training log");
  para(rep.detailed_log.description);
  table(rep.detailed_log);
  heading("Conclusions");
  b.push_back({K::kBullets, "", rep.conclusions});
  para(fmt::format(
      "Verdict rules: overfitting when the relative gap (validation − training loss) / training "
      "loss at the last validation exceeds {:.0f}% and validation got worse (validation loss up by "
      "more than {:.0f}% over the last third, or last validation Dice more than {:.1f} points "
      "below "
      "the best); otherwise underfitting when the training Dice over the last 10% of steps is "
      "below "
      "{:.2f}; otherwise still improving when the validation loss fell by more than {:.0f}% over "
      "the "
      "last third; otherwise no sign of overfitting.",
      100 * rep.thresholds.relative_gap, 100 * rep.thresholds.trend,
      rep.thresholds.dice_drop_points, rep.thresholds.low_train_dice, 100 * rep.thresholds.trend));
  heading("Next steps", 3);
  b.push_back({K::kBullets, "", rep.next_steps});
  return b;
}

std::string markdown(const std::vector<Block>& blocks) {
  std::string md;
  for (const auto& b : blocks) {
    switch (b.kind) {
      case Block::Kind::kHeading:
        md += std::string(static_cast<std::size_t>(b.level), '#') + " " + b.text + "\n\n";
        break;
      case Block::Kind::kParagraph:
        md += b.text + "\n\n";
        break;
      case Block::Kind::kBullets:
        for (const auto& item : b.items) md += "- " + item + "\n";
        md += "\n";
        break;
      case Block::Kind::kTable:
        md += table_markdown(*b.table) + "\n";
        break;
      case Block::Kind::kPlot:
        md += fmt::format("![{}]({})\n\n*{}*\n\n", b.plot->caption, b.plot->file, b.plot->caption);
        break;
      case Block::Kind::kCode:
        md += "```yaml\n" + b.text + (b.text.ends_with('\n') ? "" : "\n") + "```\n\n";
        break;
    }
  }
  return md;
}

// `code` spans of the Markdown text become <code> in HTML.
std::string html_text(const std::string& text) {
  std::string out;
  bool open = false;
  for (char c : text) {
    if (c == '`') {
      out += open ? "</code>" : "<code>";
      open = !open;
    } else {
      out += html_escape(std::string(1, c));
    }
  }
  if (open) out += "</code>";
  return out;
}

std::string html(const std::vector<Block>& blocks) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>IRIS Training Report</title>\n<style>\n";
  h += report_stylesheet();
  h += "pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}\n</style>\n</head>\n<body>\n";
  for (const auto& b : blocks) {
    switch (b.kind) {
      case Block::Kind::kHeading:
        h += fmt::format("<h{0}>{1}</h{0}>\n", b.level, html_escape(b.text));
        break;
      case Block::Kind::kParagraph:
        h += "<p>" + html_text(b.text) + "</p>\n";
        break;
      case Block::Kind::kBullets:
        h += "<ul>\n";
        for (const auto& item : b.items) h += "<li>" + html_text(item) + "</li>\n";
        h += "</ul>\n";
        break;
      case Block::Kind::kTable:
        h += table_html(*b.table);
        break;
      case Block::Kind::kPlot:
        h += fmt::format(
            "<figure><img alt=\"{0}\" "
            "src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>\n",
            html_escape(b.plot->caption), base64_encode(b.plot->png));
        break;
      case Block::Kind::kCode:
        h += "<pre><code>" + html_escape(b.text) + "</code></pre>\n";
        break;
    }
  }
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace

TrainingReportFiles write_training_report(const fs::path& run_dir,
                                          const TrainingReportOptions& options) {
  const TrainingReport rep = build_training_report(run_dir);
  TrainingReportFiles files;
  const fs::path out = options.out_dir.empty() ? run_dir / "report" : options.out_dir;
  std::vector<Plot> plots;
  if (options.plots) {
    plots = render_plots(rep, files.plot_note);
  } else {
    files.plot_note = "Plots were turned off.";
  }
  fs::create_directories(out);
  for (const auto& p : plots) {
    files.plots.push_back(out / p.file);
    write_file_atomic(files.plots.back(), p.png);
  }
  const auto blocks = layout(rep, plots, files.plot_note);
  files.markdown = out / "training_report.md";
  files.html = out / "training_report.html";
  write_file_atomic(files.markdown, markdown(blocks));
  write_file_atomic(files.html, html(blocks));
  return files;
}

}  // namespace iris::report
