// .safetensors: u64 little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the raw
// little-endian tensor bytes. Offsets are relative to the end of the header and must tile the
// data area exactly, as the reference implementation requires.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/checkpoint.h"

namespace iris::io {
namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

struct DtypeName {
  const char* name;
  c10::ScalarType dtype;
};

constexpr DtypeName kDtypes[] = {
    {"F32", c10::ScalarType::Float},     {"F16", c10::ScalarType::Half},
    {"BF16", c10::ScalarType::BFloat16}, {"F64", c10::ScalarType::Double},
    {"I64", c10::ScalarType::Long},      {"I32", c10::ScalarType::Int},
    {"I16", c10::ScalarType::Short},     {"I8", c10::ScalarType::Char},
    {"U8", c10::ScalarType::Byte},       {"BOOL", c10::ScalarType::Bool},
};

std::optional<c10::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

const char* dtype_name(c10::ScalarType dtype, const std::string& tensor, const fs::path& path) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  throw InputError(file_message(path.string(), fmt::format("tensor '{}' has dtype {}, which "
                                                           "safetensors output does not support",
                                                           tensor, io::dtype_name(dtype))));
}

struct Entry {
  std::string name;
  c10::ScalarType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

}  // namespace

SafetensorsFile read_safetensors(const fs::path& path) {
  const std::string source = path.string();
  const auto fail = [&](const std::string& msg) { return InputError(file_message(source, msg)); };
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw fail("no such file");
  const std::uint64_t file_size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) throw fail("cannot open");
  if (file_size < 8) {
    throw fail(
        fmt::format("truncated: {} bytes, but a safetensors file starts with an 8-byte "
                    "header length",
                    file_size));
  }
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8) {
    throw fail(
        fmt::format("truncated or not safetensors: header length {} exceeds the {} bytes "
                    "that follow it",
                    header_len, file_size - 8));
  }
  if (header_len > kMaxHeaderBytes)
    throw fail(fmt::format("header of {} bytes is too large", header_len));
  std::string header_text(header_len, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw fail("cannot read the header");

  const auto header =
      nlohmann::ordered_json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) throw fail("header is not a JSON object");
  const std::uint64_t data_size = file_size - 8 - header_len;

  SafetensorsFile result;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) throw fail("__metadata__ is not an object of strings");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) throw fail(fmt::format("__metadata__ entry '{}' is not a string", k));
        result.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const auto bad = [&](const std::string& what) {
      return fail(fmt::format("tensor '{}': {}", name, what));
    };
    if (!info.is_object()) throw bad("entry is not an object");
    Entry e;
    e.name = name;
    const auto dtype_it = info.find("dtype");
    if (dtype_it == info.end() || !dtype_it->is_string()) throw bad("missing dtype");
    const auto dtype = dtype_from_name(dtype_it->get<std::string>());
    if (!dtype) {
      throw bad(
          fmt::format("unsupported dtype '{}' (expected one of F32, F16, BF16, F64, I64, I32, "
                      "I16, I8, U8, BOOL)",
                      dtype_it->get<std::string>()));
    }
    e.dtype = *dtype;
    const auto shape_it = info.find("shape");
    if (shape_it == info.end() || !shape_it->is_array()) throw bad("missing shape");
    std::int64_t numel = 1;
    for (const auto& d : *shape_it) {
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > (1ULL << 62)) {
        throw bad("shape holds a value that is not a size");
      }
      e.shape.push_back(d.get<std::int64_t>());
      if (__builtin_mul_overflow(numel, e.shape.back(), &numel)) throw bad("shape overflows");
    }
    const auto offsets_it = info.find("data_offsets");
    if (offsets_it == info.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      throw bad("data_offsets is not [begin, end]");
    }
    e.begin = (*offsets_it)[0].get<std::uint64_t>();
    e.end = (*offsets_it)[1].get<std::uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      throw bad(fmt::format("data_offsets [{}, {}] lie outside the {} data bytes", e.begin, e.end,
                            data_size));
    }
    std::int64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::int64_t>(c10::elementSize(e.dtype)),
                               &nbytes) ||
        static_cast<std::uint64_t>(nbytes) != e.end - e.begin) {
      throw bad(fmt::format("data_offsets [{}, {}] hold {} bytes, but shape [{}] of {} needs {}",
                            e.begin, e.end, e.end - e.begin, fmt::join(e.shape, ", "),
                            dtype_it->get<std::string>(), nbytes));
    }
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data area: no gaps, no overlaps, nothing left over.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  std::uint64_t cursor = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != cursor) {
      throw fail(
          fmt::format("tensor '{}' starts at byte {} of the data, expected {} (gap or overlap)",
                      e->name, e->begin, cursor));
    }
    cursor = e->end;
  }
  if (cursor != data_size) {
    throw fail(fmt::format("tensors cover {} of the {} data bytes", cursor, data_size));
  }

  const std::uint64_t data_start = 8 + header_len;
  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    const auto nbytes = static_cast<std::streamsize>(e.end - e.begin);
    in.seekg(static_cast<std::streamoff>(data_start + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), nbytes);
    if (!in || in.gcount() != nbytes) throw fail(fmt::format("cannot read tensor '{}'", e.name));
    result.tensors.insert(e.name, std::move(t));
  }
  return result;
}

void write_safetensors(const fs::path& path, const StateDict& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") {
      throw InputError(file_message(path.string(), "a tensor cannot be named __metadata__"));
    }
    const char* dtype = dtype_name(tensor.scalar_type(), name, path);
    at::Tensor t = tensor.to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    const auto nbytes = static_cast<std::uint64_t>(t.numel()) * t.element_size();
    header[name] = {
        {"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned, like the reference
  char len[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);

  AtomicFile file(path);
  file.write(std::string_view(len, 8));
  file.write(text);
  for (const auto& t : data) {
    file.write(
        std::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
  }
  file.commit();
}

}  // namespace iris::io
