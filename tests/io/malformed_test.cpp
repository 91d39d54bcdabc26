// Hostile and broken files: each must fail with one InputError line naming the file and the
// problem, never crash or run anything. Built here byte by byte, so no Python is needed.
#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>

#include "io/checkpoint.h"
#include "io_test_util.h"

namespace iris::io {
namespace {

using test::expect_input_error;
using test::TempDir;

// Builds pickle bytes opcode by opcode.
struct Pickle {
  std::string bytes = "\x80\x02";
  Pickle& op(char c) {
    bytes.push_back(c);
    return *this;
  }
  Pickle& raw(const std::string& s) {
    bytes += s;
    return *this;
  }
  Pickle& str(const std::string& s) {
    op('X');
    const auto n = static_cast<std::uint32_t>(s.size());
    bytes.append(reinterpret_cast<const char*>(&n), 4);
    return raw(s);
  }
  Pickle& int1(int v) { return op('K').op(static_cast<char>(v)); }
  Pickle& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, (size,), (1,), False,
  // OrderedDict())
  Pickle& tensor(const std::string& key, int numel, int offset, int size) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", "FloatStorage").str(key).str("cpu").int1(numel).op('t');
    op('Q').int1(offset).int1(size).op('\x85').int1(1).op('\x85').op('\x89');
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  std::string done() { return bytes + "."; }
};

// A zip archive the way torch.save lays it out, holding `pickle` and the given records.
void write_archive(const fs::path& path, const std::string& pickle,
                   const std::map<std::string, std::string>& records = {}) {
  caffe2::serialize::PyTorchStreamWriter writer(path.string());
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
  writer.writeEndOfFile();
}

const std::string kFourFloats(16, '\0');

class Malformed : public ::testing::Test {
 protected:
  // Writes an archive and expects reading it to fail with `needle`; returns the message.
  std::string expect_pickle_error(const std::string& pickle, const std::string& needle,
                                  const std::map<std::string, std::string>& records = {}) {
    const fs::path path = dir_ / "bad.pt";
    write_archive(path, pickle, records);
    const std::string message = expect_input_error([&] { read_torch_checkpoint(path); }, needle);
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << "names the file: " << message;
    return message;
  }
  TempDir dir_;
};

TEST_F(Malformed, RefusesGlobalsOutsideTheAllowList) {
  const std::string message =
      expect_pickle_error(Pickle().global("posix", "system").str("ls").op('\x85').op('R').done(),
                          "refuses to load global 'posix.system'");
  EXPECT_EQ(message, (dir_ / "bad.pt").string() +
                         ": refuses to load global 'posix.system' (only tensors, dicts, lists, "
                         "numbers and strings are allowed)");
  // Protocol 4 spelling (STACK_GLOBAL), and a torch global that is not a storage class.
  expect_pickle_error(Pickle().str("builtins").str("eval").op('\x93').done(),
                      "refuses to load global 'builtins.eval'");
  expect_pickle_error(Pickle().global("torch", "load").done(),
                      "refuses to load global 'torch.load'");
}

TEST_F(Malformed, RejectsBadOpcodesAndStackMisuse) {
  expect_pickle_error(Pickle().op('\xff').done(), "pickle: unsupported opcode 0xff at byte 2");
  expect_pickle_error(Pickle().op('i').done(),
                      "unsupported opcode 0x69");  // INST: protocol 0 objects
  expect_pickle_error(Pickle().op('s').done(), "stack underflow");
  expect_pickle_error(Pickle().op('h').raw("\x05").done(), "memo entry 5 missing");
  expect_pickle_error(Pickle().op('}').op('(').int1(1).op('u').done(), "odd number of items");
  expect_pickle_error(Pickle().int1(1).int1(2).done(), "STOP with a malformed stack");
  expect_pickle_error(Pickle().op('}').int1(1).op('a').done(), "APPEND to a dict");
  expect_pickle_error(Pickle().op('}').op(']').op(')').op('s').done(),
                      "dict key of type list is not supported");
  expect_pickle_error(Pickle().int1(3).op(')').op('R').done(), "REDUCE calls a int");
}

TEST_F(Malformed, RejectsTruncatedPickles) {
  const std::string whole = Pickle().op('}').str("weight").tensor("0", 4, 0, 4).op('s').done();
  for (std::size_t cut : {std::size_t{1}, std::size_t{9}, whole.size() / 2, whole.size() - 1}) {
    expect_pickle_error(whole.substr(0, cut), "truncated", {{"data/0", kFourFloats}});
  }
  // A length prefix far beyond the data must not allocate or read past the end.
  expect_pickle_error(Pickle().op('X').raw("\xff\xff\xff\x7f").done(),
                      "truncated (needs 2147483647 more bytes");
  expect_pickle_error(Pickle().op('c').raw("torch").done(), "GLOBAL without a newline");
}

TEST_F(Malformed, RejectsTensorsOutsideTheirStorage) {
  const auto one = [](const std::string& key, int numel, int offset, int size) {
    return Pickle().op('}').str("w").tensor(key, numel, offset, size).op('s').done();
  };
  // Sanity: the same builder gives a readable file.
  write_archive(dir_ / "ok.pt", one("0", 4, 1, 3), {{"data/0", kFourFloats}});
  EXPECT_EQ(read_torch_checkpoint(dir_ / "ok.pt").as_dict().find("w")->as_tensor().numel(), 3);

  expect_pickle_error(one("0", 4, 2, 3),
                      "tensor view (offset 2, size [3], stride [1]) reaches 20 bytes, "
                      "beyond its storage of 16 bytes",
                      {{"data/0", kFourFloats}});
  expect_pickle_error(one("0", 8, 0, 8),
                      "storage '0' holds 16 bytes, fewer than the 8 elements x 4 bytes",
                      {{"data/0", kFourFloats}});
  expect_pickle_error(one("7", 4, 0, 4), "unknown storage '7' (the archive has no record data/7)",
                      {{"data/0", kFourFloats}});
  expect_pickle_error(Pickle().op('(').str("storage").op('t').op('Q').done(),
                      "persistent id is not ('storage', type, key, location, numel)");
}

TEST_F(Malformed, RejectsRecursiveAndOverlyDeepStructures) {
  // l = []; l.append(l)
  expect_pickle_error(Pickle()
                          .op(']')
                          .op('q')
                          .raw(std::string(1, '\0'))
                          .op('h')
                          .raw(std::string(1, '\0'))
                          .op('a')
                          .done(),
                      "recursive structure");
  Pickle deep;
  for (int i = 0; i < 600; ++i) deep.op(']');
  for (int i = 0; i < 599; ++i) deep.op('a');
  expect_pickle_error(deep.done(), "nested deeper than 512 levels");
}

TEST_F(Malformed, RejectsFilesThatAreNotTorchArchives) {
  const fs::path text = dir_ / "notes.pt";
  test::spit(text, "just some text, not a zip file\n");
  expect_input_error([&] { read_torch_checkpoint(text); },
                     text.string() + ": not a PyTorch checkpoint (not a zip archive)");
  const fs::path legacy = dir_ / "legacy.pt";
  test::spit(legacy,
             "\x80\x02\x8a\x0a"
             "legacy magic number and more");
  expect_input_error([&] { read_torch_checkpoint(legacy); }, "legacy (pre-1.6) torch.save format");
  expect_input_error([&] { read_torch_checkpoint(dir_ / "missing.pt"); },
                     "missing.pt: no such file");

  // A zip with the magic but no data.pkl.
  {
    caffe2::serialize::PyTorchStreamWriter writer((dir_ / "other.pt").string());
    writer.writeRecord("constants.pkl", "x", 1);
    writer.writeEndOfFile();
  }
  expect_input_error([&] { read_torch_checkpoint(dir_ / "other.pt"); }, "archive has no data.pkl");
}

TEST_F(Malformed, RejectsTruncatedArchives) {
  const fs::path good = dir_ / "good.pt";
  auto root = make_dict(false);
  root->set("w", torch::arange(1000, at::kFloat));
  write_torch_checkpoint(good, root);
  const std::string bytes = test::slurp(good);
  for (std::size_t keep : {bytes.size() - 10, bytes.size() / 2, std::size_t{30}, std::size_t{3}}) {
    const fs::path cut = dir_ / fmt::format("cut{}.pt", keep);
    test::spit(cut, bytes.substr(0, keep));
    const std::string message =
        expect_input_error([&] { read_torch_checkpoint(cut); }, cut.string() + ": ");
    EXPECT_TRUE(message.find("unreadable PyTorch archive") != std::string::npos ||
                message.find("not a PyTorch checkpoint") != std::string::npos)
        << message;
  }
}

// --- safetensors --------------------------------------------------------------------------

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST_F(Malformed, RejectsBrokenSafetensors) {
  const fs::path path = dir_ / "bad.safetensors";
  const auto expect = [&](const std::string& bytes, const std::string& needle) {
    test::spit(path, bytes);
    const std::string message = expect_input_error([&] { read_safetensors(path); }, needle);
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
  };
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  test::spit(path, safetensors_bytes(ok_header, std::string(8, '\0')));
  EXPECT_EQ(read_safetensors(path).tensors.size(), 1u);

  expect("abc", "truncated: 3 bytes");
  expect(safetensors_bytes(ok_header, std::string(8, '\0')).substr(0, 20),
         "header length 54 exceeds the 12 bytes that follow it");
  expect(safetensors_bytes(ok_header, std::string(4, '\0')),
         "tensor 'a': data_offsets [0, 8] lie outside the 4 data bytes");
  expect(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,1000000000000]}})",
                           ""),
         "lie outside the 0 data bytes");
  expect(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                           std::string(8, '\0')),
         "tensor 'a': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12");
  expect(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           std::string(8, '\0')),
         "tensor 'a' starts at byte 4 of the data, expected 0");
  expect(safetensors_bytes(ok_header, std::string(12, '\0')),
         "tensors cover 8 of the 12 data bytes");
  expect(safetensors_bytes(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})",
                           std::string(8, '\0')),
         "unsupported dtype 'C64'");
  expect(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                           std::string(4, '\0')),
         "shape holds a value that is not a size");
  expect(safetensors_bytes("{not json", ""), "header is not a JSON object");
  expect(safetensors_bytes(R"({"__metadata__":{"k":1}})", ""),
         "__metadata__ entry 'k' is not a string");
}

}  // namespace
}  // namespace iris::io
