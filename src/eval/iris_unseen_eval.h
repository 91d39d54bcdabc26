// One-shot and context-ensemble evaluation of IRIS on structures it never trained on, with the two
// baselines a reviewer asks for: the reference mask copied onto the query slice, and the same
// network untrained. Slices are axial slices of the atlas, prepared as in training.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "data/atlas.h"
#include "data/synthetic_subjects.h"
#include "models/iris/iris_model.h"

namespace iris {

struct UnseenEvalOptions {
  int64_t slice_size = 96;
  int64_t min_area = 20;              // pixels for a structure to count as present on a slice
  int64_t ensemble_references = 3;    // k references averaged by the context ensemble
  int64_t queries_per_structure = 6;  // query slices per structure, spread over its extent
  int64_t min_slice_gap = 3;          // queries at least this far from every reference
  int64_t max_structures_per_map = 10;  // the largest structures of each label map
  // Cross-subject protocol (evaluate_unseen_cross_subject), described in the outputs.
  bool cross_subject = false;
  std::string query_description;      // e.g. the query's pose
  std::string reference_description;  // e.g. the reference subjects' seeds
};

struct StructureResult {
  std::string label_map;
  std::string name;
  int64_t value = 0;
  int64_t queries = 0;        // query slices (cross-subject: over all query poses)
  double one_shot = 0;       // mean Dice over query slices (cross-subject: and references)
  double ensemble = 0;
  double copy_reference = 0;  // baseline: the reference mask used as the prediction
  double untrained = 0;       // baseline: same network, initial weights, one-shot
};

std::vector<StructureResult> evaluate_unseen_structures(models::IrisModel& trained,
                                                        models::IrisModel& untrained,
                                                        const MricronAtlas& atlas,
                                                        const std::vector<std::string>& label_maps,
                                                        const UnseenEvalOptions& options);

// Cross-subject: the queries are the real atlas in poses no training subject had; each of their
// slices holding a structure is segmented with the slice of each reference subject in turn at
// the nearest level holding it (one-shot, the copied reference and the untrained network,
// averaged over the references), or with those of every reference subject at once (context
// ensemble). `references` are generated subjects the model never trained on. Structures: the
// largest of each map in the first query.
std::vector<StructureResult> evaluate_unseen_cross_subject(
    models::IrisModel& trained, models::IrisModel& untrained, const MricronAtlas& atlas,
    const std::vector<Subject>& queries, const std::vector<Subject>& references,
    const std::vector<std::string>& label_maps, const UnseenEvalOptions& options);

// One method against another, paired over structures: mean difference, wins and losses, and a
// bootstrap 95% interval of the mean difference (10,000 resamples of the structures, seed 0).
struct PairedComparison {
  double mean_difference = 0, low = 0, high = 0;
  int64_t wins = 0, losses = 0;
  // "beats" only when the interval lies above 0, "is below" when it lies below, else "no clear
  // difference".
  std::string verdict() const;
};
PairedComparison compare_paired(const std::vector<double>& ours, const std::vector<double>& theirs);

// Means over structures (macro average) per method, and the table as JSON / markdown.
nlohmann::json unseen_results_json(const std::vector<StructureResult>& results, const UnseenEvalOptions& options);
std::string unseen_results_markdown(const std::vector<StructureResult>& results, const UnseenEvalOptions& options);

}  // namespace iris
