// Cross-subject slice episodes (2D): the reference is an axial slice of one generated subject
// (data/synthetic_subjects.h), the query a slice at about the same level of another subject, so
// shape, pose and contrast differ between them and copying the reference mask is no longer as good
// as segmenting. Random classes are ellipsoids placed in the atlas's space and carried through each
// subject's deformation, so the same class shows in both subjects.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "data/episodes.h"
#include "data/synthetic_subjects.h"

namespace iris {

// A subject's axial slices that show the brain, as IRIS sees them.
struct SubjectSlices {
  at::Tensor images;     // [Z, S, S] float in [0, 1]
  at::Tensor labels;     // [Z, S, S] int64, one label map
  at::Tensor source_mm;  // [3, Z, S, S] atlas world position of each pixel
  at::Tensor tissue;     // [Z, S, S] the atlas T1 there, in [0, 1] (the same in every subject)
  std::vector<int64_t> levels;                      // axial index k of each row
  std::map<int64_t, std::vector<int64_t>> present;  // class value -> rows with >= min_area pixels

  int64_t rows() const { return images.size(0); }
  at::Tensor mask(int64_t row, int64_t value) const {
    return (labels[row] == value).to(at::kFloat);
  }
};

// Slices of `subject` with `label_map`, padded square and resized to `size` (nearest for labels
// and positions); rows are the axial slices with at least 500 brain voxels.
SubjectSlices slice_subject(const Subject& subject, const std::string& label_map, int64_t size,
                            int64_t min_area);

struct CrossSubjectOptions {
  int64_t classes_per_episode = 3;
  int64_t min_area = 20;
  int64_t level_gap = 3;  // query slice within this many slices of the reference's level
  double random_class_probability = 0;
  double absent_query_probability = 0.1;
};

// Episodes over subjects (at least two): reference and query from different subjects.
class CrossSubjectSampler {
 public:
  explicit CrossSubjectSampler(std::vector<SubjectSlices> subjects);

  // Classes present in at least two subjects.
  std::vector<int64_t> episode_classes() const;
  const SubjectSlices& subject(int64_t s) const { return subjects_[s]; }
  int64_t subjects() const { return static_cast<int64_t>(subjects_.size()); }

  // Episode over `classes`; ref_slice/query_slice hold the subjects' indices * 1000 + level.
  Episode sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                 const CrossSubjectOptions& options) const;

 private:
  std::vector<SubjectSlices> subjects_;
};

}  // namespace iris
