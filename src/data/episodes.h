// Episodic sampling for in-context training and evaluation (2D slice mode): a reference slice with
// the masks of K classes and a different query slice with the masks of the same classes. The query
// is never its own reference, and a class may be absent from the query (the model must learn
// "absent").
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "io/volume.h"

namespace iris {

struct SliceEpisodeOptions {
  int64_t classes_per_episode = 3;
  int64_t min_area = 20;                 // pixels (at slice size) for a class to count as present
  double absent_query_probability = 0.1;  // chance that a class's query slice lacks it
  int64_t min_slice_gap = 2;             // reference and query slices at least this far apart
  // One random shift (up to ± joint_shift pixels per axis, zero fill) and left-right flip shared by
  // reference and query: the pair stays consistent, but absolute positions stop identifying a
  // class, so the model must read the reference rather than memorise the atlas.
  int64_t joint_shift = 0;
  bool joint_flip = false;
  // Chance that an episode class is replaced by a composite made from it: its union with one of
  // the three classes nearest to it on the reference slice, or its part on one side of a random line through its
  // centre (the same line on both slices). One atlas has only so many classes; composites make
  // the task the model sees new in most episodes, so it cannot recognise a class and recall where
  // it lies, and must read the reference instead. Composite classes carry the value -1.
  double composite_probability = 0;
  // Chance that an episode class is a random ellipsoid of the volume, cut to the bright or the
  // dark tissue of the reference slice or to the whole brain: a class no atlas names, so the only
  // way to find it in the query is the reference. Value -1, as composites.
  double random_class_probability = 0;
};

struct Episode {
  at::Tensor ref_image;    // [1, S, S] float in [0, 1]
  at::Tensor ref_masks;    // [K, S, S] float 0/1
  at::Tensor query_image;  // [1, S, S]
  at::Tensor query_masks;  // [K, S, S]
  std::vector<int64_t> class_values;  // label values; -1 for a random or composite class
  int64_t ref_slice = -1, query_slice = -1;
};

// MRI intensity normalisation: clip to the [low, high] percentiles of the non-zero voxels and
// scale to [0, 1].
at::Tensor normalize_mri(const at::Tensor& volume, double low_percentile = 0.5, double high_percentile = 99.5);

// Axial slices (index k of [nk, nj, ni]) holding at least `min_voxels` non-zero image voxels:
// the slices that show the brain, shared by training and evaluation.
std::vector<int64_t> nonempty_slices(const at::Tensor& image, int64_t min_voxels = 500);

// Axial slices of an image and a label map on the same grid, padded to square and resized to
// size x size (linear for the image, nearest for labels), kept in memory.
class SliceDataset {
 public:
  SliceDataset(const Volume& image, const Volume& labels, std::vector<int64_t> slice_indices, int64_t size,
               int64_t min_area);

  int64_t size() const { return size_; }
  const std::vector<int64_t>& slice_indices() const { return slices_; }
  // Classes present (area >= min_area) in at least two slices, so that a reference and a
  // different query exist.
  std::vector<int64_t> episode_classes() const;
  // Slices (positions in slice_indices) where `value` has at least min_area pixels.
  const std::vector<int64_t>& slices_with(int64_t value) const;

  at::Tensor image(int64_t position) const { return images_[position].unsqueeze(0); }  // [1, S, S]
  at::Tensor mask(int64_t position, int64_t value) const;                             // [S, S]

  // Samples an episode over `classes` (from episode_classes()); throws InputError if none fit.
  Episode sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                 const SliceEpisodeOptions& options) const;

 private:
  int64_t size_;
  std::vector<int64_t> slices_;
  at::Tensor images_;  // [Z, S, S] float
  at::Tensor labels_;  // [Z, S, S] int64
  std::map<int64_t, std::vector<int64_t>> present_;  // class value -> slice positions
};

// 3D patch mode: a reference patch from one volume and a query patch from a different volume
// (never the same case), both with the masks of the same K classes. The anchor class is present
// in both; the other classes come from the reference patch and may be absent from the query,
// where their all-zero masks are negatives.
struct PatchEpisodeOptions {
  std::array<int64_t, 3> patch_size{32, 32, 32};  // [D, H, W] voxels (k, j, i)
  int64_t classes_per_episode = 3;
  int64_t min_voxels = 20;  // voxels of a class for it to count as present (whole case or patch)
};

struct PatchEpisode {
  at::Tensor ref_image;    // [1, D, H, W] float in [0, 1]
  at::Tensor ref_masks;    // [K, D, H, W] float 0/1
  at::Tensor query_image;  // [1, D, H, W]
  at::Tensor query_masks;  // [K, D, H, W]
  std::vector<int64_t> class_values;
  int64_t ref_case = -1, query_case = -1;
  std::array<int64_t, 3> ref_origin{}, query_origin{};  // patch corner (k, j, i) in its volume
};

// Whole volumes (image and label map on one grid per case), normalised with normalize_mri and
// kept in memory; volumes smaller than the patch are zero-padded.
class VolumeEpisodeSampler {
 public:
  VolumeEpisodeSampler(const std::vector<Volume>& images, const std::vector<Volume>& labels,
                       int64_t min_voxels);

  int64_t cases() const { return static_cast<int64_t>(images_.size()); }
  // Classes present in at least two cases, so that a reference and a different query exist.
  std::vector<int64_t> episode_classes() const;
  const std::vector<int64_t>& cases_with(int64_t value) const;

  // Samples an episode over `classes` (from episode_classes()); throws InputError if none fit.
  PatchEpisode sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                      const PatchEpisodeOptions& options) const;

 private:
  std::vector<at::Tensor> images_;                   // [nk, nj, ni] float
  std::vector<at::Tensor> labels_;                   // [nk, nj, ni] int64
  std::map<int64_t, std::vector<int64_t>> present_;  // class value -> cases
};

}  // namespace iris
