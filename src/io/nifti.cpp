#include "io/nifti.h"

#include <fmt/format.h>
#include <nifti2_io.h>
#include <unistd.h>

#include <memory>
#include <random>

#include "core/error.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

struct NiftiDeleter {
  void operator()(nifti_image* image) const { nifti_image_free(image); }
};
using NiftiPtr = std::unique_ptr<nifti_image, NiftiDeleter>;

Affine to_affine(const nifti_dmat44& m) {
  Affine a;
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) a(r, c) = m.m[r][c];
  }
  return a;
}

nifti_dmat44 to_dmat44(const Affine& a) {
  nifti_dmat44 m;
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) m.m[r][c] = a(r, c);
  }
  return m;
}

// The torch dtype that holds a NIfTI datatype exactly.
at::ScalarType storage_type(int datatype, const std::string& path) {
  switch (datatype) {
    case NIFTI_TYPE_UINT8: return at::kByte;
    case NIFTI_TYPE_INT8: return at::kChar;
    case NIFTI_TYPE_INT16: return at::kShort;
    case NIFTI_TYPE_INT32: return at::kInt;
    case NIFTI_TYPE_INT64: return at::kLong;
    case NIFTI_TYPE_FLOAT32: return at::kFloat;
    case NIFTI_TYPE_FLOAT64: return at::kDouble;
    case NIFTI_TYPE_UINT16: return at::kInt;
    case NIFTI_TYPE_UINT32: return at::kLong;
    default:
      throw InputError(file_message(path, fmt::format("unsupported voxel type {} ({}); expected an "
                                                      "integer or real scalar type",
                                                      nifti_datatype_to_string(datatype), datatype)));
  }
}

at::Tensor copy_voxels(const nifti_image& image, const std::vector<int64_t>& shape,
                       const std::string& path) {
  const at::ScalarType type = storage_type(image.datatype, path);
  void* data = image.data;
  switch (image.datatype) {
    case NIFTI_TYPE_UINT16: {
      const auto* src = static_cast<const uint16_t*>(data);
      at::Tensor out = at::empty(shape, at::kInt);
      auto* dst = out.data_ptr<int32_t>();
      for (int64_t n = 0; n < image.nvox; ++n) dst[n] = src[n];
      return out;
    }
    case NIFTI_TYPE_UINT32: {
      const auto* src = static_cast<const uint32_t*>(data);
      at::Tensor out = at::empty(shape, at::kLong);
      auto* dst = out.data_ptr<int64_t>();
      for (int64_t n = 0; n < image.nvox; ++n) dst[n] = src[n];
      return out;
    }
    default: return at::from_blob(data, shape, type).clone();
  }
}

int nifti_type_of(at::ScalarType type, const std::string& path) {
  switch (type) {
    case at::kByte:
    case at::kBool: return NIFTI_TYPE_UINT8;
    case at::kChar: return NIFTI_TYPE_INT8;
    case at::kShort: return NIFTI_TYPE_INT16;
    case at::kInt: return NIFTI_TYPE_INT32;
    case at::kLong: return NIFTI_TYPE_INT64;
    case at::kFloat: return NIFTI_TYPE_FLOAT32;
    case at::kDouble: return NIFTI_TYPE_FLOAT64;
    default:
      throw InputError(file_message(path, fmt::format("cannot write voxels of type {} to NIfTI",
                                                      c10::toString(type))));
  }
}

// niftilib looks a file up by its stem and may open a sibling (x.nii for x.nii.gz). When a
// sibling exists, read through a symlink with a unique stem in a private folder.
class UnambiguousName {
 public:
  explicit UnambiguousName(const fs::path& path) : name_(path.string()) {
    const std::string ext = nifti_extension(path.string());
    const std::string stem = name_.substr(0, name_.size() - ext.size());
    bool sibling = false;
    for (const char* other : {".nii", ".nii.gz", ".hdr", ".hdr.gz", ".img", ".img.gz"}) {
      sibling |= other != ext && fs::exists(stem + other);
    }
    if (!sibling || ext.empty()) return;
    std::random_device rd;
    folder_ = fs::temp_directory_path() / fmt::format("iris-nifti-{}-{}", ::getpid(), rd());
    fs::create_directories(folder_);
    const fs::path link = folder_ / ("volume" + ext);
    fs::create_symlink(fs::absolute(path), link);
    name_ = link.string();
  }
  ~UnambiguousName() {
    std::error_code ec;
    if (!folder_.empty()) fs::remove_all(folder_, ec);
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  fs::path folder_;
};

}  // namespace

Volume read_nifti(const fs::path& path) {
  const std::string name = path.string();
  if (!fs::exists(path)) throw InputError(file_message(name, "no such file"));
  nifti_set_debug_level(0);
  const UnambiguousName lookup(path);
  NiftiPtr image(nifti_image_read(lookup.name().c_str(), /*read_data=*/0));
  if (!image) throw InputError(file_message(name, "not a NIfTI-1/NIfTI-2 file (unreadable header)"));
  if (image->ndim < 2 || image->ndim > 4 || image->nu > 1 || image->nv > 1 || image->nw > 1) {
    throw InputError(file_message(name, fmt::format("expected a 2D, 3D or 4D volume, got {} dimensions",
                                                    image->ndim)));
  }
  storage_type(image->datatype, name);  // reject unsupported types before reading data
  if (nifti_image_load(image.get()) != 0 || image->data == nullptr) {
    throw InputError(file_message(
        name, fmt::format("voxel data is truncated or unreadable (expected {} voxels of {} bytes)",
                          image->nvox, image->nbyper)));
  }
  std::vector<int64_t> shape;
  if (image->nt > 1) shape.push_back(image->nt);
  shape.insert(shape.end(), {std::max<int64_t>(image->nz, 1), std::max<int64_t>(image->ny, 1),
                             std::max<int64_t>(image->nx, 1)});
  Volume volume;
  volume.source = name;
  volume.data = copy_voxels(*image, shape, name);
  const double slope = image->scl_slope, inter = image->scl_inter;
  if (std::isfinite(slope) && slope != 0.0 && (slope != 1.0 || (std::isfinite(inter) && inter != 0.0))) {
    volume.data = volume.data.to(at::kFloat) * slope + (std::isfinite(inter) ? inter : 0.0);
  }
  volume.sform_code = image->sform_code;
  volume.qform_code = image->qform_code;
  if (image->sform_code > 0) {
    volume.affine = to_affine(image->sto_xyz);
  } else if (image->qform_code > 0) {
    volume.affine = to_affine(image->qto_xyz);
  } else {
    volume.affine = Affine::diagonal(image->dx > 0 ? image->dx : 1.0, image->dy > 0 ? image->dy : 1.0,
                                     image->dz > 0 ? image->dz : 1.0);
  }
  return volume;
}

void write_nifti(const fs::path& path, const Volume& volume) {
  const std::string name = path.string();
  const std::string ext = nifti_extension(path.string());
  if (ext.empty()) throw InputError(file_message(name, "expected a .nii or .nii.gz file name"));
  TORCH_CHECK(volume.data.dim() >= 2 && volume.data.dim() <= 4,
              "write_nifti expects [nj, ni], [nk, nj, ni] or [nt, nk, nj, ni], got ", volume.data.sizes());
  at::Tensor data = volume.data.to(at::kCPU).contiguous();
  if (data.scalar_type() == at::kBool) data = data.to(at::kByte);
  const int datatype = nifti_type_of(data.scalar_type(), name);

  int64_t dims[8] = {0, 1, 1, 1, 1, 1, 1, 1};
  dims[0] = data.dim();
  for (int64_t d = 0; d < data.dim(); ++d) dims[1 + d] = data.size(data.dim() - 1 - d);
  if (data.dim() == 4) {  // [nt, nk, nj, ni]: time is NIfTI's 4th dimension
    dims[1] = data.size(3), dims[2] = data.size(2), dims[3] = data.size(1), dims[4] = data.size(0);
  }
  NiftiPtr image(nifti_make_new_nim(dims, datatype, /*data_fill=*/0));
  if (!image) throw RuntimeFailure(file_message(name, "niftilib could not create the image"));

  const auto spacing = volume.affine.spacing();
  image->dx = image->pixdim[1] = spacing[0];
  image->dy = image->pixdim[2] = spacing[1];
  image->dz = image->pixdim[3] = spacing[2];
  image->xyz_units = NIFTI_UNITS_MM;
  image->sform_code = volume.sform_code > 0 ? volume.sform_code : NIFTI_XFORM_SCANNER_ANAT;
  image->qform_code = volume.qform_code > 0 ? volume.qform_code : image->sform_code;
  image->sto_xyz = to_dmat44(volume.affine);
  image->sto_ijk = nifti_dmat44_inverse(image->sto_xyz);
  nifti_dmat44_to_quatern(image->sto_xyz, &image->quatern_b, &image->quatern_c, &image->quatern_d,
                          &image->qoffset_x, &image->qoffset_y, &image->qoffset_z, nullptr,
                          nullptr, nullptr, &image->qfac);
  image->qto_xyz = nifti_quatern_to_dmat44(image->quatern_b, image->quatern_c, image->quatern_d,
                                           image->qoffset_x, image->qoffset_y, image->qoffset_z,
                                           image->dx, image->dy, image->dz, image->qfac);
  image->qto_ijk = nifti_dmat44_inverse(image->qto_xyz);
  image->nifti_type = NIFTI_FTYPE_NIFTI1_1;
  image->scl_slope = 0.0;  // no scaling: values are stored as they are

  // niftilib picks compression from the extension, so the temporary name keeps it.
  std::error_code ec;
  fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path(), ec);
  std::random_device rd;
  const fs::path temp = path.parent_path() /
                        fmt::format(".{}.tmp{}-{}{}", path.filename().string(), ::getpid(), rd(), ext);
  const std::string temp_name = temp.string();
  if (nifti_set_filenames(image.get(), temp_name.c_str(), /*check=*/0, /*set_byte_order=*/1) != 0) {
    throw RuntimeFailure(file_message(name, "niftilib rejected the file name"));
  }
  image->data = data.data_ptr();
  nifti_image_write(image.get());
  image->data = nullptr;  // owned by the tensor
  // nifti_image_write reports failures only on stderr: read the header back to be sure.
  NiftiPtr check(fs::exists(temp) ? nifti_image_read(temp_name.c_str(), 0) : nullptr);
  if (!check || check->nvox != image->nvox) {
    fs::remove(temp, ec);
    throw RuntimeFailure(file_message(name, "writing the NIfTI file failed"));
  }
  fs::rename(temp, path, ec);
  if (ec) {
    fs::remove(temp, ec);
    throw RuntimeFailure(file_message(name, "cannot move the written file into place: " + ec.message()));
  }
}

}  // namespace iris
