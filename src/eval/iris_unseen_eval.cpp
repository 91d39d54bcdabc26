#include "eval/iris_unseen_eval.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>

#include "core/progress.h"
#include "data/episodes.h"
#include "data/subject_episodes.h"
#include "eval/metrics.h"

namespace iris {
namespace {

struct Means {
  double one_shot = 0, ensemble = 0, copy_reference = 0, untrained = 0;
};

Means macro_means(const std::vector<StructureResult>& results) {
  Means m;
  if (results.empty()) return m;
  for (const auto& r : results) {
    m.one_shot += r.one_shot, m.ensemble += r.ensemble, m.copy_reference += r.copy_reference,
        m.untrained += r.untrained;
  }
  const double n = static_cast<double>(results.size());
  m.one_shot /= n, m.ensemble /= n, m.copy_reference /= n, m.untrained /= n;
  return m;
}

double dice_of(const at::Tensor& logits, const at::Tensor& target) {
  // Both empty counts as a correct "absent" (1), as in training's hard Dice.
  eval::MetricOptions o;
  o.ignore_empty = false;
  return eval::dice((logits > 0).unsqueeze(0).unsqueeze(0), (target > 0.5).unsqueeze(0).unsqueeze(0), o)
      .item<double>();
}

}  // namespace

std::vector<StructureResult> evaluate_unseen_structures(models::IrisModel& trained,
                                                        models::IrisModel& untrained,
                                                        const MricronAtlas& atlas,
                                                        const std::vector<std::string>& label_maps,
                                                        const UnseenEvalOptions& options) {
  torch::NoGradGuard no_grad;
  trained->eval();
  untrained->eval();
  const std::vector<int64_t> slices = nonempty_slices(atlas.image.data);
  std::vector<StructureResult> results;
  for (const auto& map_name : label_maps) {
    const AtlasLabelMap& map = atlas.label_map(map_name);
    const SliceDataset data(atlas.image, map.labels, slices, options.slice_size, options.min_area);
    // The largest structures (by number of slices they appear on) of this map.
    std::vector<int64_t> classes = data.episode_classes();
    std::stable_sort(classes.begin(), classes.end(), [&](int64_t a, int64_t b) {
      return data.slices_with(a).size() > data.slices_with(b).size();
    });
    if (static_cast<int64_t>(classes.size()) > options.max_structures_per_map) {
      classes.resize(static_cast<std::size_t>(options.max_structures_per_map));
    }
    Progress progress("evaluate " + map_name, static_cast<int64_t>(classes.size()), "structure");
    for (int64_t value : classes) {
      const auto& present = data.slices_with(value);
      // References: the k slices where the structure is largest, kept apart from each other.
      std::vector<std::pair<double, int64_t>> by_area;
      for (int64_t p : present) by_area.push_back({data.mask(p, value).sum().item<double>(), p});
      std::sort(by_area.rbegin(), by_area.rend());
      std::vector<int64_t> refs;
      for (const auto& [area, p] : by_area) {
        bool far = true;
        for (int64_t r : refs) far &= std::abs(data.slice_indices()[p] - data.slice_indices()[r]) >= options.min_slice_gap;
        if (far) refs.push_back(p);
        if (static_cast<int64_t>(refs.size()) == options.ensemble_references) break;
      }
      std::vector<int64_t> candidates;
      for (int64_t p : present) {
        bool far = true;
        for (int64_t r : refs) far &= std::abs(data.slice_indices()[p] - data.slice_indices()[r]) >= options.min_slice_gap;
        if (far) candidates.push_back(p);
      }
      if (candidates.empty()) {
        progress.advance();
        continue;
      }
      std::vector<int64_t> queries;
      const int64_t q = std::min<int64_t>(options.queries_per_structure, candidates.size());
      for (int64_t i = 0; i < q; ++i) queries.push_back(candidates[i * candidates.size() / q]);

      auto task_of = [&](models::IrisModel& model, int64_t ref) {
        return model->encode_task(data.image(ref).unsqueeze(0), data.mask(ref, value).unsqueeze(0).unsqueeze(0));
      };
      const at::Tensor one_shot_task = task_of(trained, refs[0]);
      at::Tensor ensemble_task = at::zeros_like(one_shot_task);
      for (int64_t r : refs) ensemble_task += task_of(trained, r);
      ensemble_task /= static_cast<double>(refs.size());
      const at::Tensor untrained_task = task_of(untrained, refs[0]);

      StructureResult result{map_name, map.class_name(value), value, static_cast<int64_t>(queries.size())};
      for (int64_t query : queries) {
        const at::Tensor image = data.image(query).unsqueeze(0);
        const at::Tensor truth = data.mask(query, value);
        result.one_shot += dice_of(trained->segment(image, one_shot_task).logits[0][0], truth);
        result.ensemble += dice_of(trained->segment(image, ensemble_task).logits[0][0], truth);
        result.untrained += dice_of(untrained->segment(image, untrained_task).logits[0][0], truth);
        result.copy_reference += dice_of(data.mask(refs[0], value) * 2 - 1, truth);
      }
      const double n = static_cast<double>(queries.size());
      result.one_shot /= n, result.ensemble /= n, result.untrained /= n, result.copy_reference /= n;
      results.push_back(result);
      progress.advance();
    }
  }
  return results;
}

std::vector<StructureResult> evaluate_unseen_cross_subject(
    models::IrisModel& trained, models::IrisModel& untrained, const MricronAtlas& atlas,
    const std::vector<Subject>& queries, const std::vector<Subject>& references,
    const std::vector<std::string>& label_maps, const UnseenEvalOptions& options) {
  TORCH_CHECK(!references.empty() && !queries.empty(),
              "cross-subject evaluation needs a query and a reference subject");
  torch::NoGradGuard no_grad;
  trained->eval();
  untrained->eval();
  std::vector<StructureResult> results;
  for (const auto& map_name : label_maps) {
    std::vector<SubjectSlices> posed, refs;
    for (const auto& q : queries) {
      posed.push_back(slice_subject(q, map_name, options.slice_size, options.min_area));
    }
    for (const auto& r : references) {
      refs.push_back(slice_subject(r, map_name, options.slice_size, options.min_area));
    }
    // The largest structures (by slices of the first query showing them) of this map.
    std::vector<int64_t> classes;
    for (const auto& [value, rows] : posed[0].present) {
      if (rows.size() >= 2) classes.push_back(value);
    }
    std::stable_sort(classes.begin(), classes.end(), [&](int64_t a, int64_t b) {
      return posed[0].present.at(a).size() > posed[0].present.at(b).size();
    });
    if (static_cast<int64_t>(classes.size()) > options.max_structures_per_map) {
      classes.resize(static_cast<std::size_t>(options.max_structures_per_map));
    }
    Progress progress("evaluate " + map_name, static_cast<int64_t>(classes.size()), "structure");
    for (int64_t value : classes) {
      // The reference subject's row holding the structure at the level nearest the query's.
      auto nearest = [&](const SubjectSlices& r, int64_t level) -> int64_t {
        const auto it = r.present.find(value);
        if (it == r.present.end()) return -1;
        int64_t best = -1;
        for (int64_t row : it->second) {
          if (best < 0 || std::abs(r.levels[row] - level) < std::abs(r.levels[best] - level)) {
            best = row;
          }
        }
        return best;
      };
      auto task_of = [&](models::IrisModel& model, const SubjectSlices& r, int64_t row) {
        return model->encode_task(r.images[row].unsqueeze(0).unsqueeze(0),
                                  r.mask(row, value).unsqueeze(0).unsqueeze(0));
      };
      StructureResult result{map_name, atlas.label_map(map_name).class_name(value), value, 0};
      int64_t single = 0;  // (query slice, reference) pairs behind one-shot, copy and untrained
      for (const auto& q : posed) {
        const auto found = q.present.find(value);
        if (found == q.present.end()) continue;
        const auto& present = found->second;
        const int64_t n = std::min<int64_t>(options.queries_per_structure, present.size());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t row = present[i * present.size() / n];
          const at::Tensor image = q.images[row].unsqueeze(0).unsqueeze(0);
          const at::Tensor truth = q.mask(row, value);
          at::Tensor ensemble_task;
          int64_t used = 0;
          for (const auto& r : refs) {
            const int64_t rr = nearest(r, q.levels[row]);
            if (rr < 0) continue;
            const at::Tensor task = task_of(trained, r, rr);
            ensemble_task = ensemble_task.defined() ? ensemble_task + task : task;
            ++used;
            result.one_shot += dice_of(trained->segment(image, task).logits[0][0], truth);
            result.untrained +=
                dice_of(untrained->segment(image, task_of(untrained, r, rr)).logits[0][0], truth);
            result.copy_reference += dice_of(r.mask(rr, value) * 2 - 1, truth);
            ++single;
          }
          if (used == 0) continue;
          result.ensemble +=
              dice_of(trained->segment(image, ensemble_task / static_cast<double>(used))
                          .logits[0][0],
                      truth);
          ++result.queries;
        }
      }
      if (result.queries > 0) {
        const double m = static_cast<double>(single);
        result.one_shot /= m, result.untrained /= m, result.copy_reference /= m;
        result.ensemble /= static_cast<double>(result.queries);
        results.push_back(result);
      }
      progress.advance();
    }
  }
  return results;
}

std::string PairedComparison::verdict() const {
  if (low > 0) return "beats";
  if (high < 0) return "is below";
  return "shows no clear difference from";
}

PairedComparison compare_paired(const std::vector<double>& ours, const std::vector<double>& theirs) {
  TORCH_CHECK(ours.size() == theirs.size(), "paired comparison of ", ours.size(), " and ",
              theirs.size(), " values");
  PairedComparison c;
  const std::size_t n = ours.size();
  if (n == 0) return c;
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) {
    d[i] = ours[i] - theirs[i];
    c.mean_difference += d[i] / static_cast<double>(n);
    c.wins += d[i] > 0;
    c.losses += d[i] < 0;
  }
  std::mt19937_64 rng(0);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  std::vector<double> means(10000);
  for (auto& m : means) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += d[pick(rng)];
    m = sum / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  c.low = means[249];     // 2.5th percentile of 10,000
  c.high = means[9749];   // 97.5th
  return c;
}

namespace {

struct Comparison {
  const char* who;
  std::vector<double> ours;
  const char* whom;
  std::vector<double> theirs;
};

// The comparisons every output states: one-shot against both baselines, the ensemble against
// one-shot.
std::vector<Comparison> comparisons(const std::vector<StructureResult>& results) {
  std::vector<double> one_shot, ensemble, copy, untrained;
  for (const auto& r : results) {
    one_shot.push_back(r.one_shot);
    ensemble.push_back(r.ensemble);
    copy.push_back(r.copy_reference);
    untrained.push_back(r.untrained);
  }
  return {{"One-shot IRIS", one_shot, "the copied reference", copy},
          {"One-shot IRIS", one_shot, "the untrained network", untrained},
          {"The context ensemble", ensemble, "one-shot", one_shot}};
}

}  // namespace

nlohmann::json unseen_results_json(const std::vector<StructureResult>& results, const UnseenEvalOptions& o) {
  nlohmann::json structures = nlohmann::json::array();
  for (const auto& r : results) {
    structures.push_back({{"label_map", r.label_map}, {"structure", r.name}, {"value", r.value},
                          {"queries", r.queries}, {"one_shot", r.one_shot}, {"context_ensemble", r.ensemble},
                          {"copy_reference", r.copy_reference}, {"untrained", r.untrained}});
  }
  const Means m = macro_means(results);
  nlohmann::json protocol{{"slice_size", o.slice_size},
                          {"ensemble_references", o.ensemble_references},
                          {"queries_per_structure", o.queries_per_structure},
                          {"min_area", o.min_area}};
  if (o.cross_subject) {
    protocol["kind"] = "cross-subject";
    protocol["query"] = o.query_description;
    protocol["references"] = o.reference_description;
    protocol["reference_slice"] =
        "the reference subject's slice holding the structure at the level nearest the query's";
  } else {
    protocol["kind"] = "same brain, other slices";
    protocol["min_slice_gap"] = o.min_slice_gap;
  }
  return {{"metric", "Dice of sigmoid(logit) > 0.5 per query slice, mean over query slices, then over structures"},
          {"protocol", protocol},
          {"mean", {{"one_shot", m.one_shot}, {"context_ensemble", m.ensemble},
                    {"copy_reference", m.copy_reference}, {"untrained", m.untrained}}},
          {"paired", [&] {
             nlohmann::json paired = nlohmann::json::array();
             for (const auto& [who, ours, whom, theirs] : comparisons(results)) {
               const PairedComparison c = compare_paired(ours, theirs);
               paired.push_back({{"method", who}, {"against", whom},
                                 {"mean_difference", c.mean_difference}, {"ci95", {c.low, c.high}},
                                 {"wins", c.wins}, {"losses", c.losses}, {"verdict", c.verdict()},
                                 {"bootstrap", "10000 resamples of the structures, seed 0"}});
             }
             return paired;
           }()},
          {"structures", structures}};
}

std::string unseen_results_markdown(const std::vector<StructureResult>& results, const UnseenEvalOptions& o) {
  std::string md = "# IRIS on structures it never trained on\n\n";
  if (o.cross_subject) {
    md += fmt::format(
        "Queries: {}. References: {}. Each query slice holding a structure (up to {} per "
        "structure and query, spread over its extent) is segmented with the slice of a reference "
        "subject that holds the structure at the nearest level, each reference in turn (one-shot, "
        "copied reference, untrained network; averaged), or with those of all {} reference "
        "subjects at once (context ensemble). "
        "Axial slices at {}x{}; Dice of the thresholded prediction per query slice, averaged "
        "over query slices, then over structures. Baselines: the reference slice's mask copied "
        "onto the query slice, and the same network with its initial weights.\n\n",
        o.query_description, o.reference_description, o.queries_per_structure,
        o.ensemble_references, o.slice_size, o.slice_size);
  } else {
  md += fmt::format(
      "Reference slice -> query slices of the same structure (axial slices of the Colin27 atlas, "
      "{0}x{0}). Dice of the thresholded prediction per query slice, averaged over up to {1} query "
      "slices at least {2} slices from every reference, then over structures. The context ensemble "
      "averages task embeddings over {3} references. Baselines: the reference mask copied onto the "
      "query slice, and the same network with its initial weights.\n\n",
      o.slice_size, o.queries_per_structure, o.min_slice_gap, o.ensemble_references);
  }
  md += "| label map | structure | queries | one-shot | context ensemble | copy reference | untrained |\n";
  md += "|:--|:--|--:|--:|--:|--:|--:|\n";
  for (const auto& r : results) {
    md += fmt::format("| {} | {} | {} | {:.4f} | {:.4f} | {:.4f} | {:.4f} |\n", r.label_map, r.name, r.queries,
                      r.one_shot, r.ensemble, r.copy_reference, r.untrained);
  }
  const Means m = macro_means(results);
  md += fmt::format("| **mean** | {} structures | | **{:.4f}** | **{:.4f}** | **{:.4f}** | **{:.4f}** |\n\n",
                    results.size(), m.one_shot, m.ensemble, m.copy_reference, m.untrained);
  md += "Paired over structures (bootstrap 95% interval of the mean difference, 10,000 resamples, "
        "seed 0):\n\n";
  for (const auto& [who, ours, whom, theirs] : comparisons(results)) {
    const PairedComparison c = compare_paired(ours, theirs);
    md += fmt::format("- {} {} {}: {:+.4f} [{:+.4f}, {:+.4f}], {} wins / {} losses.\n", who,
                      c.verdict(), whom, c.mean_difference, c.low, c.high, c.wins, c.losses);
  }
  return md;
}

}  // namespace iris
