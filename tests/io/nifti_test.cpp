#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/nifti.h"
#include "io/volume.h"
#include "test_util.h"

namespace iris {
namespace {

const fs::path kAtlasDir = "/usr/share/mricron/templates";

Affine oblique_affine() {
  Affine a;
  // 1.5 x 0.8 x 2.0 mm voxels, i pointing left (LPS-like), a small rotation, an offset.
  const double c = std::cos(0.1), s = std::sin(0.1);
  a(0, 0) = -1.5 * c, a(0, 1) = -0.8 * s, a(0, 3) = 40.0;
  a(1, 0) = 1.5 * s, a(1, 1) = -0.8 * c, a(1, 3) = 12.5;
  a(2, 2) = 2.0, a(2, 3) = -30.0;
  return a;
}

void expect_affine_near(const Affine& a, const Affine& b, double tol = 1e-5) {
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(a.m[i], b.m[i], tol) << "element " << i;
}

TEST(Nifti, RoundTripKeepsDataAffineAndType) {
  test::TempDir dir;
  torch::manual_seed(0);
  for (const auto& ext : {".nii", ".nii.gz"}) {
    Volume v;
    v.data = torch::randn({5, 6, 7});
    v.affine = oblique_affine();
    write_nifti(dir / (std::string("f") + ext), v);
    const Volume r = read_nifti(dir / (std::string("f") + ext));
    EXPECT_EQ(r.data.sizes(), v.data.sizes());
    EXPECT_TRUE(torch::equal(r.data, v.data)) << ext << " max difference "
                                              << (r.data - v.data).abs().max().item<double>()
                                              << " nan " << r.data.isnan().sum().item<int64_t>();
    expect_affine_near(r.affine, v.affine);
  }
  Volume labels;
  labels.data = torch::randint(0, 300, {3, 4, 5}, torch::kShort);
  labels.affine = Affine::diagonal(1, 1, 1);
  write_nifti(dir / "labels.nii.gz", labels);
  const Volume r = read_nifti(dir / "labels.nii.gz");
  EXPECT_EQ(r.data.scalar_type(), torch::kShort);
  EXPECT_TRUE(torch::equal(r.data, labels.data));

  Volume series;
  series.data = torch::rand({2, 3, 4, 5}).to(torch::kDouble);
  write_nifti(dir / "series.nii", series);
  const Volume series_read = read_nifti(dir / "series.nii");
  EXPECT_EQ(series_read.data.sizes(), series.data.sizes());
  EXPECT_TRUE(torch::equal(series_read.data, series.data))
      << (series_read.data - series.data).abs().max().item<double>();
}

TEST(Nifti, RecognisesFileNames) {
  EXPECT_EQ(nifti_extension("/a/b/brain.nii.gz"), ".nii.gz");
  EXPECT_EQ(nifti_extension("brain.nii"), ".nii");
  EXPECT_EQ(nifti_extension("brain.nii.txt"), "");
  EXPECT_EQ(nifti_extension(".nii"), "");
}

TEST(Nifti, WritingLeavesNoTemporaryFiles) {
  test::TempDir dir;
  Volume v;
  v.data = torch::zeros({2, 2, 2}, torch::kByte);
  write_nifti(dir / "mask.nii.gz", v);
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
  EXPECT_THROW(write_nifti(dir / "mask.png", v), InputError);
}

TEST(Nifti, BadFilesGiveOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  Volume v;
  v.data = torch::rand({16, 16, 16});
  write_nifti(dir / "whole.nii.gz", v);
  const std::string bytes = read_file(dir / "whole.nii.gz");
  write_file_atomic(dir / "cut.nii.gz", bytes.substr(0, bytes.size() / 2));
  write_file_atomic(dir / "text.nii", std::string(400, 'x'));
  const std::pair<std::string, std::string> cases[] = {
      {"cut.nii.gz", "truncated"}, {"text.nii", "not a NIfTI"}, {"missing.nii", "no such file"}};
  for (const auto& [file, expected] : cases) {
    try {
      read_nifti(dir / file);
      ADD_FAILURE() << file << " was accepted";
    } catch (const InputError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find((dir / file).string()), std::string::npos) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
}

TEST(Volume, OrientationCodesAndReorientationKeepWorldPositions) {
  Volume v;
  v.data = torch::arange(4 * 5 * 6, torch::kFloat).view({4, 5, 6});  // [nk, nj, ni]
  Affine a;  // i -> -y (P), j -> +z (S), k -> -x (L)
  a.m = {0, 0, -2, 10, -1, 0, 0, 5, 0, 3, 0, -7, 0, 0, 0, 1};
  v.affine = a;
  EXPECT_EQ(orientation_codes(a), "PSL");
  const Volume ras = reorient_to_ras(v);
  EXPECT_EQ(orientation_codes(ras.affine), "RAS");
  EXPECT_EQ(ras.data.sizes(), (std::vector<int64_t>{5, 6, 4}));
  // Every voxel keeps its value at the same world position.
  for (int64_t k = 0; k < 4; ++k) {
    for (int64_t j = 0; j < 5; ++j) {
      for (int64_t i = 0; i < 6; ++i) {
        const auto w = v.affine.apply(i, j, k);
        const auto n = ras.affine.inverse().apply(w[0], w[1], w[2]);
        const auto ni = std::llround(n[0]), nj = std::llround(n[1]), nk = std::llround(n[2]);
        ASSERT_EQ(v.data[k][j][i].item<float>(), ras.data[nk][nj][ni].item<float>());
      }
    }
  }
}

TEST(Volume, ResamplingOntoItsOwnGridIsIdentity) {
  torch::manual_seed(1);
  Volume v;
  v.data = torch::randint(0, 50, {6, 7, 8}, torch::kLong);
  v.affine = oblique_affine();
  EXPECT_TRUE(torch::equal(resample_to(v, v, Interpolation::kNearest).data, v.data));
  Volume f = v;
  f.data = torch::rand({6, 7, 8});
  EXPECT_TRUE(torch::allclose(resample_to(f, f, Interpolation::kLinear).data, f.data, 1e-5, 1e-5));
}

TEST(Volume, ResamplingFollowsTheAffines) {
  // A volume shifted by whole voxels in world space lands shifted on the target grid.
  Volume moving;
  moving.data = torch::zeros({8, 8, 8}, torch::kByte);
  moving.data.index_put_({3, 4, 5}, 7);
  moving.affine = Affine::diagonal(2, 2, 2);
  // Half-voxel offsets keep 1 mm voxel centres off the 2 mm voxel boundaries.
  moving.affine(0, 3) = 10.5, moving.affine(1, 3) = 0.5, moving.affine(2, 3) = 0.5;
  Volume target;
  target.data = torch::zeros({16, 16, 16}, torch::kByte);
  target.affine = Affine::diagonal(1, 1, 1);  // world = voxel index
  const Volume out = resample_to(moving, target, Interpolation::kNearest);
  // Moving voxel (i=5, j=4, k=3) covers world [19.5,21.5] x [7.5,9.5] x [5.5,7.5]: beyond this
  // 16-voxel-wide target in x.
  EXPECT_EQ(out.data.sum().item<int>(), 0);
  Volume wide = target;
  wide.data = torch::zeros({16, 16, 32}, torch::kByte);
  const Volume out2 = resample_to(moving, wide, Interpolation::kNearest);
  EXPECT_EQ(out2.data[6][8][20].item<int>(), 7);
  EXPECT_EQ(out2.data[7][9][21].item<int>(), 7);
  EXPECT_EQ(out2.data.sum().item<int>(), 7 * 8) << "a 2 mm voxel covers 2x2x2 voxels of 1 mm";
  EXPECT_EQ(out2.data.scalar_type(), torch::kByte);
}

class Atlases : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kAtlasDir / "ch2bet.nii.gz")) {
      GTEST_SKIP() << "mricron-data atlases not installed (apt-get install mricron-data)";
    }
  }
};

// Fraction of `labels > 0` voxels that fall on the brain mask dilated by `radius` voxels.
double fraction_on_brain(const at::Tensor& labels, const at::Tensor& brain, int64_t radius) {
  at::Tensor mask = (brain > 0).to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  if (radius > 0) mask = torch::max_pool3d(mask, 2 * radius + 1, 1, radius);
  const auto on = labels > 0;
  return (on & (mask.squeeze(0).squeeze(0) > 0)).sum().item<double>() / on.sum().item<double>();
}

TEST_F(Atlases, LabelAtlasesResampledOntoCh2betLandOnTheBrain) {
  const Volume brain = read_nifti(kAtlasDir / "ch2bet.nii.gz");
  const Volume ho = read_nifti(kAtlasDir / "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz");
  EXPECT_EQ(orientation_codes(ho.affine), "LAS");
  EXPECT_EQ(orientation_codes(brain.affine), "RAS");
  const Volume ho_on = resample_to(ho, brain, Interpolation::kNearest);
  EXPECT_EQ(ho_on.data.sizes(), brain.data.sizes());
  EXPECT_EQ(std::get<0>(at::_unique(ho_on.data)).numel(), std::get<0>(at::_unique(ho.data)).numel())
      << "every cortical label survives nearest-neighbour resampling";
  // HarvardOxford at threshold 0 keeps every voxel of non-zero probability, so it reaches into
  // CSF that the skull-stripped Colin27 brain leaves at 0: 79.0% of its voxels fall on
  // ch2bet > 0 itself, 96.8% within 3 mm of it (the same figures as mapping with nibabel).
  const double strict = fraction_on_brain(ho_on.data, brain.data, 0);
  const double within_3mm = fraction_on_brain(ho_on.data, brain.data, 3);
  RecordProperty("harvard_oxford_on_brain", std::to_string(strict));
  RecordProperty("harvard_oxford_within_3mm", std::to_string(within_3mm));
  EXPECT_GT(strict, 0.75);
  EXPECT_GT(within_3mm, 0.95);
  // JHU white matter lies inside the brain.
  const Volume jhu = read_nifti(kAtlasDir / "JHU-WhiteMatter-labels-1mm.nii.gz");
  EXPECT_GT(fraction_on_brain(resample_to(jhu, brain, Interpolation::kNearest).data, brain.data, 0), 0.95);
}

TEST_F(Atlases, GeometryAgreesWithNibabel) {
  const std::string python = test::venv_python().string();
  if (python.empty()) GTEST_SKIP() << ".venv/bin/python not found (run scripts/install-deps.sh)";
  test::TempDir dir;
  const auto script = dir / "geometry.py";
  write_file_atomic(script, R"PY(
import json, sys
import nibabel as nib, numpy as np
out = {}
for name in sys.argv[2:]:
    img = nib.load(sys.argv[1] + "/" + name + ".nii.gz")
    data = np.asanyarray(img.dataobj)
    out[name] = {"shape": list(img.shape), "affine": img.affine.flatten().tolist(),
                 "codes": "".join(nib.aff2axcodes(img.affine)), "sum": float(data.astype(np.float64).sum()),
                 "zooms": [float(z) for z in img.header.get_zooms()], "voxel": float(data[37, 101, 60])}
# Nearest-neighbour pull of HarvardOxford onto the ch2bet grid through the two affines.
target = nib.load(sys.argv[1] + "/ch2bet.nii.gz")
moving = nib.load(sys.argv[1] + "/HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")
ijk = np.indices(target.shape).reshape(3, -1).T
src = np.rint(nib.affines.apply_affine(np.linalg.inv(moving.affine) @ target.affine, ijk)).astype(int)
inside = ((src >= 0) & (src < np.array(moving.shape))).all(1)
labels = np.zeros(len(ijk), dtype=np.int64)
labels[inside] = np.asanyarray(moving.dataobj)[tuple(src[inside].T)]
out["resampled"] = {"labelled": int((labels > 0).sum()), "sum": int(labels.sum()),
                    "weighted": int((labels * (np.arange(len(ijk)) % 97)).sum())}
print(json.dumps(out))
)PY");
  const std::vector<std::string> names = {"ch2bet", "aal", "brodmann",
                                          "HarvardOxford-cort-maxprob-thr0-1mm",
                                          "JHU-WhiteMatter-labels-1mm"};
  std::string command = python + " " + script.string() + " " + kAtlasDir.string();
  for (const auto& n : names) command += " " + n;
  const auto result = test::run_command(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto expected = nlohmann::json::parse(result.output);
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    const Volume v = read_nifti(kAtlasDir / (n + ".nii.gz"));
    const auto& e = expected[n];
    EXPECT_EQ(v.ni(), e["shape"][0].get<int64_t>());
    EXPECT_EQ(v.nj(), e["shape"][1].get<int64_t>());
    EXPECT_EQ(v.nk(), e["shape"][2].get<int64_t>());
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(v.affine.m[i], e["affine"][i].get<double>(), 1e-6);
    EXPECT_EQ(orientation_codes(v.affine), e["codes"].get<std::string>());
    const auto spacing = v.affine.spacing();
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(spacing[c], e["zooms"][c].get<double>(), 1e-6);
    EXPECT_DOUBLE_EQ(v.data.to(torch::kDouble).sum().item<double>(), e["sum"].get<double>());
    EXPECT_DOUBLE_EQ(v.data[60][101][37].item<double>(), e["voxel"].get<double>());  // nibabel [i, j, k]
  }
  // Our resampling agrees voxel for voxel with the affine mapping computed by nibabel (nibabel's
  // order is i slowest, ours i fastest: index the flattened volume the same way).
  const Volume brain = read_nifti(kAtlasDir / "ch2bet.nii.gz");
  const Volume ho = read_nifti(kAtlasDir / "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz");
  const auto labels = resample_to(ho, brain, Interpolation::kNearest).data.to(torch::kLong)
                          .permute({2, 1, 0}).reshape({-1});
  const auto weights = torch::arange(labels.numel(), torch::kLong).remainder(97);
  const auto& r = expected["resampled"];
  EXPECT_EQ((labels > 0).sum().item<int64_t>(), r["labelled"].get<int64_t>());
  EXPECT_EQ(labels.sum().item<int64_t>(), r["sum"].get<int64_t>());
  EXPECT_EQ((labels * weights).sum().item<int64_t>(), r["weighted"].get<int64_t>());
}

}  // namespace
}  // namespace iris
