// Reading what torch.save and safetensors write, writing what they read, and loading into modules.
#include <nlohmann/json.hpp>

#include <chrono>

#include "io/checkpoint.h"
#include "io/model_state.h"
#include "io_test_util.h"

namespace iris::io {
namespace {

using test::expect_input_error;
using test::TempDir;

at::ScalarType dtype_named(const std::string& name) {
  static const std::map<std::string, at::ScalarType> dtypes = {
      {"float32", at::kFloat},  {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"float64", at::kDouble}, {"int64", at::kLong},   {"int32", at::kInt},
      {"int16", at::kShort},    {"int8", at::kChar},    {"uint8", at::kByte},
      {"bool", at::kBool}};
  return dtypes.at(name);
}

// The tensor make_fixtures.py described in its manifest, rebuilt from its raw bytes.
at::Tensor reference_tensor(const fs::path& dir, const nlohmann::ordered_json& entry) {
  const std::string bytes = test::slurp(dir / entry["raw"].get<std::string>());
  const auto shape = entry["shape"].get<std::vector<std::int64_t>>();
  at::Tensor flat = at::empty({static_cast<std::int64_t>(bytes.size())}, at::kByte);
  std::memcpy(flat.data_ptr(), bytes.data(), bytes.size());
  return flat.view(dtype_named(entry["dtype"])).reshape(shape);
}

nlohmann::ordered_json manifest(const fs::path& dir) {
  return nlohmann::ordered_json::parse(test::slurp(dir / "manifest.json"));
}

// Compares a state dict with a manifest entry: names in order, dtype, shape, values; for .pt
// files also strides, storage offsets and which tensors share a storage.
void expect_matches(const StateDict& sd, const fs::path& dir, const nlohmann::ordered_json& file,
                    bool layout) {
  const auto& tensors = file["tensors"];
  ASSERT_EQ(sd.size(), tensors.size()) << file["file"];
  std::map<std::int64_t, const void*> group_storage;
  std::size_t i = 0;
  for (const auto& [name, entry] : tensors.items()) {
    SCOPED_TRACE(file["file"].get<std::string>() + " " + name);
    if (!layout) {  // safetensors files are written in their own order
      ASSERT_TRUE(sd.contains(name));
    } else {
      EXPECT_EQ(sd.entries()[i].first, name);
    }
    ++i;
    const at::Tensor& t = *sd.find(name);
    const at::Tensor ref = reference_tensor(dir, entry);
    EXPECT_EQ(t.scalar_type(), ref.scalar_type());
    EXPECT_EQ(t.sizes(), ref.sizes());
    EXPECT_TRUE(at::equal(t, ref));
    if (!layout) continue;
    EXPECT_EQ(t.strides().vec(), entry["stride"].get<std::vector<std::int64_t>>());
    EXPECT_EQ(t.storage_offset(), entry["offset"].get<std::int64_t>());
    const void* storage = t.storage().unsafeGetStorageImpl();
    const auto [it, first] = group_storage.emplace(entry["group"].get<std::int64_t>(), storage);
    EXPECT_EQ(it->second, storage) << "tensors that share a storage in Python must share it here";
  }
  // Tensors from different Python storages must not share one here either.
  std::set<const void*> distinct;
  for (const auto& [g, s] : group_storage) distinct.insert(s);
  EXPECT_EQ(distinct.size(), group_storage.size());
}

TEST(TorchCheckpoint, EveryPythonFileMatchesItsReferenceValues) {
  IRIS_PYTHON_FIXTURES(dir);
  for (const auto& file : manifest(dir)) {
    const fs::path path = dir / file["file"].get<std::string>();
    const auto ckpt = read_checkpoint(path);
    const auto sd = select_state_dict(ckpt.root, file["key"].get<std::string>(), path.string());
    expect_matches(sd, dir, file, !is_safetensors_path(path));
  }
}

TEST(TorchCheckpoint, KeepsTheTopLevelStructureAndStateDictMetadata) {
  IRIS_PYTHON_FIXTURES(dir);
  const PickleValue root = read_torch_checkpoint(dir / "module.pt");
  ASSERT_TRUE(root.is_dict());
  const auto& top = root.as_dict();
  std::vector<std::string> keys;
  for (const auto& [k, v] : top.items) keys.push_back(k.as_string());
  EXPECT_EQ(keys, (std::vector<std::string>{"model", "epoch", "loss", "name", "steps", "none"}));
  EXPECT_EQ(top.find("epoch")->as_int(), 3);
  EXPECT_EQ(top.find("loss")->as_double(), 0.25);
  EXPECT_EQ(top.find("name")->as_string(), "tiny");
  ASSERT_TRUE(top.find("steps")->is_list());
  EXPECT_EQ(top.find("steps")->as_list().items.size(), 2u);
  EXPECT_TRUE(top.find("none")->is_none());

  const PickleValue& model = *top.find("model");
  ASSERT_TRUE(model.is_dict());
  EXPECT_TRUE(model.as_dict().ordered);
  ASSERT_EQ(model.as_dict().attributes.size(), 1u);
  EXPECT_EQ(model.as_dict().attributes[0].first, "_metadata");
  const PickleValue& metadata = model.as_dict().attributes[0].second;
  ASSERT_TRUE(metadata.is_dict());
  // _metadata: {"": {"version": 1}, "conv": ..., "bn": {"version": 2}, "fc": ...}
  ASSERT_NE(metadata.as_dict().find("bn"), nullptr);
  EXPECT_EQ(metadata.as_dict().find("bn")->as_dict().find("version")->as_int(), 2);

  // Automatic choice: the top level of a plain state dict, else its "model" entry.
  EXPECT_EQ(select_state_dict(root, "", "module.pt").size(), 9u);
  expect_input_error([&] { select_state_dict(root, "epoch", "module.pt"); },
                     "module.pt: entry 'epoch' is int 3, not a dict of tensors");
  expect_input_error(
      [&] { select_state_dict(root, "optimizer", "module.pt"); },
      "module.pt: no top-level entry 'optimizer' (entries: model, epoch, loss, name, "
      "steps, none)");
}

TEST(TorchCheckpoint, RefusesAPickleThatCallsOsSystem) {
  IRIS_PYTHON_FIXTURES(dir);
  const fs::path path = dir / "evil.pt";
  const std::string message = expect_input_error([&] { read_torch_checkpoint(path); },
                                                 "refuses to load global 'posix.system'");
  EXPECT_EQ(message, path.string() +
                         ": refuses to load global 'posix.system' (only tensors, "
                         "dicts, lists, numbers and strings are allowed)");
}

TEST(TorchCheckpoint, PythonReadsWhatWeWrite) {
  IRIS_PYTHON_FIXTURES(dir);
  TempDir out;
  // Whole files re-saved: structure, metadata, views and shared storages must survive.
  write_torch_checkpoint(out / "plain.pt", read_torch_checkpoint(dir / "plain.pt"));
  write_torch_checkpoint(out / "module.pt", read_torch_checkpoint(dir / "module.pt"));
  const auto plain = select_state_dict(read_torch_checkpoint(dir / "plain.pt"), "", "plain.pt");
  write_safetensors(out / "plain.safetensors", plain, {{"format", "pt"}});
  // .pt -> .safetensors -> .pt through the CLI.
  const std::string iris = test::iris_binary() + " checkpoint convert ";
  auto r = test::run_command(iris + "'" + (dir / "module.pt").string() + "' '" +
                             (out / "module.safetensors").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command(iris + "'" + (out / "module.safetensors").string() + "' '" +
                        (out / "roundtrip.pt").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  r = test::run_python("check_outputs.py", "'" + dir.string() + "' '" + out.path().string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("all checks passed"), std::string::npos) << r.output;
}

// --- round trips without Python -------------------------------------------------------------

StateDict every_dtype() {
  torch::manual_seed(1);
  StateDict sd;
  sd.insert("f32", torch::randn({3, 4}));
  sd.insert("f16", torch::randn({5}).to(at::kHalf));
  sd.insert("bf16", torch::randn({2, 3}).to(at::kBFloat16));
  sd.insert("f64", torch::randn({2, 2}, at::kDouble));
  sd.insert("i64", torch::tensor(std::vector<std::int64_t>{-(std::int64_t{1} << 40), 0,
                                                           (std::int64_t{1} << 40) + 3}));
  sd.insert("i32", torch::tensor({1, -2, 3}, at::kInt));
  sd.insert("i16", torch::tensor({-300, 300}, at::kShort));
  sd.insert("i8", torch::tensor({-128, 0, 127}, at::kChar));
  sd.insert("u8", torch::tensor({0, 200, 255}, at::kByte));
  sd.insert("bool", torch::tensor({true, false, true}));
  sd.insert("scalar", torch::tensor(2.5));
  sd.insert("empty", torch::zeros({0, 3}));
  sd.insert("transposed", torch::randn({3, 5}).t());
  return sd;
}

void expect_equal(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.contains(name)) << name;
    const at::Tensor& u = *b.find(name);
    EXPECT_EQ(t.scalar_type(), u.scalar_type()) << name;
    EXPECT_EQ(t.sizes(), u.sizes()) << name;
    EXPECT_TRUE(at::equal(t, u)) << name;
  }
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  const auto sd = every_dtype();
  write_safetensors(dir / "a.safetensors", sd, {{"format", "pt"}, {"note", "x"}});
  const std::string bytes = test::slurp(dir / "a.safetensors");
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "data must start 8-byte aligned";
  const auto back = read_safetensors(dir / "a.safetensors");
  expect_equal(sd, back.tensors);
  EXPECT_EQ(back.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  EXPECT_FALSE(fs::exists(dir / "a.safetensors.tmp")) << "written through a temporary file";
}

TEST(TorchCheckpoint, RoundTripsNestedValuesAndSharedStorage) {
  TempDir dir;
  const auto sd = every_dtype();
  at::Tensor base = torch::arange(24, at::kFloat);
  auto root = make_dict(false);
  root->set("model", state_dict_value(sd));
  root->set("view", base.slice(0, 5, 11));
  root->set("base", base.view({4, 6}));
  root->set("epoch", 3);
  root->set("lr", 1e-4);
  root->set("big", std::int64_t{1} << 40);
  root->set("negative", -70000);
  root->set("flag", true);
  auto list = std::make_shared<PickleList>();
  list->items = {PickleValue(1), PickleValue("two"), PickleValue()};
  root->set("list", list);
  write_torch_checkpoint(dir / "a.pt", root);

  const PickleValue back = read_torch_checkpoint(dir / "a.pt");
  const auto& top = back.as_dict();
  expect_equal(sd, select_state_dict(back, "model", "a.pt"));
  EXPECT_TRUE(top.find("model")->as_dict().ordered);
  EXPECT_EQ(top.find("epoch")->as_int(), 3);
  EXPECT_EQ(top.find("lr")->as_double(), 1e-4);
  EXPECT_EQ(top.find("big")->as_int(), std::int64_t{1} << 40);
  EXPECT_EQ(top.find("negative")->as_int(), -70000);
  EXPECT_TRUE(top.find("flag")->as_bool());
  const auto& items = top.find("list")->as_list().items;
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].as_string(), "two");
  EXPECT_TRUE(items[2].is_none());
  const at::Tensor view = top.find("view")->as_tensor();
  const at::Tensor whole = top.find("base")->as_tensor();
  EXPECT_EQ(view.storage_offset(), 5);
  EXPECT_TRUE(at::equal(view, base.slice(0, 5, 11)));
  EXPECT_TRUE(view.storage().is_alias_of(whole.storage())) << "one storage, as written";
}

// --- loading into modules -------------------------------------------------------------------

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(1, 4, 3));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(8, 3));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(TinyNet);

TEST(LoadStateDict, CopiesParametersAndBuffersFromAPythonStateDict) {
  IRIS_PYTHON_FIXTURES(dir);
  const auto sd = select_state_dict(read_torch_checkpoint(dir / "module.pt"), "model", "module.pt");
  TinyNet net;
  const auto report = load_state_dict(*net, sd);
  EXPECT_TRUE(report.clean()) << report.summary();
  EXPECT_EQ(report.loaded, 9u);
  EXPECT_TRUE(at::equal(net->conv->weight, *sd.find("conv.weight")));
  EXPECT_TRUE(at::equal(net->bn->running_var, *sd.find("bn.running_var")));
  EXPECT_EQ(net->bn->num_batches_tracked.item<std::int64_t>(), 7);
}

TEST(LoadStateDict, StrictListsEveryMissingUnexpectedAndMisshapedKey) {
  TinyNet source;
  StateDict sd;
  for (const auto& p : source->named_parameters()) sd.insert(p.key(), p.value().detach().clone());
  for (const auto& b : source->named_buffers()) sd.insert(b.key(), b.value().clone());
  StateDict broken;
  for (const auto& [name, t] : sd) {
    if (name == "fc.bias" || name == "bn.running_mean") continue;
    broken.insert(name, name == "conv.weight" ? torch::zeros({4, 1, 5, 5}) : t);
  }
  broken.insert("extra.weight", torch::zeros({2}));

  TinyNet target;
  const at::Tensor before = target->fc->weight.detach().clone();
  const std::string message = expect_input_error([&] { load_state_dict(*target, broken); },
                                                 "checkpoint does not match the model: ");
  for (const char* part :
       {"2 missing: fc.bias, bn.running_mean", "1 unexpected: extra.weight",
        "1 mis-shaped: conv.weight (checkpoint [4, 1, 5, 5], model [4, 1, 3, 3])"}) {
    EXPECT_NE(message.find(part), std::string::npos) << part << "\n" << message;
  }
  EXPECT_TRUE(at::equal(target->fc->weight, before)) << "a failed strict load changes nothing";

  // Non-strict: loads what fits, reports the rest.
  const auto report = load_state_dict(*target, broken, /*strict=*/false);
  EXPECT_EQ(report.missing.size(), 2u);
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"extra.weight"});
  ASSERT_EQ(report.mismatched.size(), 1u);
  EXPECT_EQ(report.loaded, 6u);
  EXPECT_TRUE(at::equal(target->fc->weight, source->fc->weight));

  // Long lists are cut, with the count of the rest.
  for (int i = 0; i < 25; ++i) broken.insert("junk." + std::to_string(i), torch::zeros({1}));
  const auto long_report = load_state_dict(*target, broken, false);
  EXPECT_NE(long_report.summary().find("26 unexpected: extra.weight, junk.0, "), std::string::npos)
      << long_report.summary();
  EXPECT_NE(long_report.summary().find(", ... and 16 more"), std::string::npos)
      << long_report.summary();
}

TEST(LoadStateDict, ConvertsDtype) {
  TinyNet net;
  StateDict sd;
  for (const auto& p : net->named_parameters())
    sd.insert(p.key(), torch::ones_like(p.value()).to(at::kHalf));
  for (const auto& b : net->named_buffers()) sd.insert(b.key(), b.value().clone());
  EXPECT_TRUE(load_state_dict(*net, sd).clean());
  EXPECT_EQ(net->fc->weight.scalar_type(), at::kFloat);
  EXPECT_EQ(net->fc->weight.sum().item<float>(), 24.0f);
}

// --- model matching -------------------------------------------------------------------------

// A state dict of meta tensors (shapes only) from a keys.tsv fixture: name<TAB>AxBxC<TAB>dtype.
StateDict from_keys_tsv(const fs::path& path) {
  StateDict sd;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, shape_text;
    std::getline(fields, name, '\t');
    std::getline(fields, shape_text, '\t');
    std::vector<std::int64_t> shape;
    std::istringstream dims(shape_text);
    for (std::string d; std::getline(dims, d, 'x');) {
      if (!d.empty()) shape.push_back(std::stoll(d));
    }
    sd.insert(name, at::empty(shape, at::TensorOptions().device(at::kMeta)));
  }
  return sd;
}

TEST(MatchModel, TellsTheFourSam21SizesApart) {
  const fs::path dir = test::shared_dir() / "fixtures" / "sam2";
  if (!fs::exists(dir / "sam2.1_hiera_t.keys.tsv")) {
    GTEST_SKIP() << "shared fixtures absent: " << dir
                 << " (keys.tsv files of the official checkpoints)";
  }
  const std::pair<const char*, const char*> cases[] = {
      {"t", "tiny"}, {"s", "small"}, {"b+", "base_plus"}, {"l", "large"}};
  for (const auto& [file, size] : cases) {
    const auto sd = from_keys_tsv(dir / (std::string("sam2.1_hiera_") + file + ".keys.tsv"));
    const auto m = match_model(sd);
    EXPECT_EQ(m.family, "sam2.1") << file;
    EXPECT_EQ(m.size, size) << file << ": " << m.description();
  }
  const auto tiny = match_model(from_keys_tsv(dir / "sam2.1_hiera_t.keys.tsv"));
  EXPECT_EQ(tiny.description(), "SAM2.1 Hiera tiny (12 blocks, embed dim 96)");

  // Without the 2.1 additions it is a SAM2 (2.0) checkpoint.
  StateDict v20;
  for (const auto& [name, t] : from_keys_tsv(dir / "sam2.1_hiera_l.keys.tsv")) {
    if (name != "no_obj_embed_spatial" && !name.starts_with("obj_ptr_tpos_proj."))
      v20.insert(name, t);
  }
  EXPECT_EQ(match_model(v20).description(), "SAM2 Hiera large (48 blocks, embed dim 144)");
}

TEST(MatchModel, UnknownForOtherModels) {
  StateDict sd;
  sd.insert("conv.weight", torch::zeros({2}));
  EXPECT_EQ(match_model(sd).description(), "unknown model");
}

TEST(MicroFixture, ReadsTheOfficialFormatCheckpoint) {
  const fs::path path = test::shared_dir() / "fixtures/sam2/micro_seed0/checkpoint.pt";
  if (!fs::exists(path)) GTEST_SKIP() << "shared fixture absent: " << path;
  const auto start = std::chrono::steady_clock::now();
  const PickleValue root = read_torch_checkpoint(path);
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto sd = select_state_dict(root, "", path.string());
  std::cout << "[ micro   ] read " << path.filename() << " (" << fs::file_size(path) << " bytes, "
            << sd.size() << " tensors, " << sd.numel() << " elements) in " << ms << " ms\n";
  ASSERT_TRUE(root.as_dict().find("model"));
  EXPECT_GT(sd.size(), 100u);
  const auto m = match_model(sd);
  EXPECT_EQ(m.family, "sam2.1") << m.description();
  for (const auto& [name, t] : sd) {
    EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(t.isfinite().all().item<bool>()) << name;
  }
}

}  // namespace
}  // namespace iris::io
