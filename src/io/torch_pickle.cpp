#include "io/torch_pickle.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <stdexcept>
#include <unordered_set>

#include "core/error.h"

namespace iris::io {
namespace {

// Opcodes of pickle protocols 2-4 that torch.save can produce (plus a few harmless stack ones).
enum Op : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinUnicode = 'X',
  kEmptyList = ']',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kList = 'l',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kSetItems = 'u',
  kEmptyDict = '}',
  kEmptyTuple = ')',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

constexpr int kMaxDepth = 512;

struct StorageClass {
  const char* name;
  c10::ScalarType dtype;
};

constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", c10::ScalarType::Float},       {"HalfStorage", c10::ScalarType::Half},
    {"BFloat16Storage", c10::ScalarType::BFloat16}, {"DoubleStorage", c10::ScalarType::Double},
    {"LongStorage", c10::ScalarType::Long},         {"IntStorage", c10::ScalarType::Int},
    {"ShortStorage", c10::ScalarType::Short},       {"CharStorage", c10::ScalarType::Char},
    {"ByteStorage", c10::ScalarType::Byte},         {"BoolStorage", c10::ScalarType::Bool},
};

// The callables REDUCE may apply; storage classes are allowed as GLOBAL values only.
constexpr const char* kAllowedCallables[] = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.device",
};

bool is_allowed_global(const std::string& module, const std::string& name) {
  if (module == "torch" && storage_class_dtype(name)) return true;
  const std::string qualified = module + "." + name;
  for (const char* allowed : kAllowedCallables) {
    if (qualified == allowed) return true;
  }
  return false;
}

// Dict-key identity with Python semantics for the hashable scalars we accept (1 == 1.0 == True).
std::optional<std::string> key_identity(const PickleValue& key) {
  switch (key.kind()) {
    case PickleValue::Kind::kString:
      return fmt::format("s{}", key.as_string());
    case PickleValue::Kind::kInt:
      return fmt::format("i{}", key.as_int());
    case PickleValue::Kind::kBool:
      return key.as_bool() ? "i1" : "i0";
    case PickleValue::Kind::kNone:
      return "n";
    case PickleValue::Kind::kDouble: {
      const double d = key.as_double();
      const auto i = static_cast<std::int64_t>(d);
      if (static_cast<double>(i) == d) return fmt::format("i{}", i);
      return fmt::format("d{:a}", d);
    }
    default:
      return std::nullopt;
  }
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const std::string& source, const PersistentLoad& load)
      : data_(data), source_(source), load_(load) {}

  // Breaks reference cycles among containers that did not end up in the result (and among all
  // of them after an error), so nothing leaks.
  ~Unpickler() {
    for (auto& c : containers_) {
      if (keep_.count(container_id(c))) continue;
      if (c.is_list()) c.as_list().items.clear();
      if (c.is_tuple()) c.as_tuple().items.clear();
      if (c.is_dict()) {
        c.as_dict().items.clear();
        c.as_dict().attributes.clear();
      }
    }
  }

  PickleValue run() {
    while (true) {
      op_pos_ = pos_;
      const std::uint8_t op = read_u8();
      if (op == kStop) break;
      step(op);
    }
    if (stack_.size() != 1 || !marks_.empty()) fail("STOP with a malformed stack");
    PickleValue result = stack_.back();
    check_acyclic(result, 0);
    return result;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw InputError(file_message(source_, fmt::format("pickle: {} at byte {}", message, op_pos_)));
  }

  // --- reading ----------------------------------------------------------------------------
  const char* read(std::size_t n) {
    if (n > data_.size() - pos_) {
      fail(fmt::format("truncated (needs {} more bytes, {} left)", n, data_.size() - pos_));
    }
    const char* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint8_t read_u8() { return static_cast<std::uint8_t>(*read(1)); }
  template <typename T>
  T read_le() {
    T v;
    std::memcpy(&v, read(sizeof(T)), sizeof(T));
    if constexpr (std::endian::native == std::endian::big) v = byteswap(v);
    return v;
  }
  template <typename T>
  static T byteswap(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    std::reverse(b, b + sizeof(T));
    std::memcpy(&v, b, sizeof(T));
    return v;
  }
  std::string read_line() {
    const auto end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated (GLOBAL without a newline)");
    std::string line(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return line;
  }

  // --- stack ------------------------------------------------------------------------------
  PickleValue pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    PickleValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleValue& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<PickleValue> pop_mark() {
    if (marks_.empty()) fail("MARK missing");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleValue> items(std::make_move_iterator(stack_.begin() + mark),
                                   std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  template <typename T>
  PickleValue track(std::shared_ptr<T> container) {
    PickleValue v(std::move(container));
    containers_.push_back(v);
    return v;
  }
  PickleValue make_tuple(std::vector<PickleValue> items) {
    auto t = std::make_shared<PickleTuple>();
    t->items = std::move(items);
    return track(std::move(t));
  }
  void set_item(PickleDict& dict, PickleValue key, PickleValue value) {
    try {
      dict.set(std::move(key), std::move(value));
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
  }
  PickleList& list_on_top() {
    PickleValue& l = top();
    if (!l.is_list()) fail(fmt::format("APPEND to a {}", l.type_name()));
    return l.as_list();
  }
  PickleDict& dict_on_top() {
    PickleValue& d = top();
    if (!d.is_dict()) fail(fmt::format("SETITEM on a {}", d.type_name()));
    return d.as_dict();
  }
  void memo_put(std::uint64_t index) { memo_[index] = top(); }
  void memo_get(std::uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail(fmt::format("memo entry {} missing", index));
    stack_.push_back(it->second);
  }

  void push_global(std::string module, std::string name) {
    if (!is_allowed_global(module, name)) {
      throw InputError(file_message(
          source_, fmt::format("refuses to load global '{}.{}' (only tensors, dicts, lists, "
                               "numbers and strings are allowed)",
                               module, name)));
    }
    stack_.push_back(PickleGlobal{std::move(module), std::move(name)});
  }

  // --- one opcode -------------------------------------------------------------------------
  void step(std::uint8_t op) {
    switch (op) {
      case kProto: {
        const int proto = read_u8();
        if (proto > 5) fail(fmt::format("unsupported pickle protocol {}", proto));
        break;
      }
      case kFrame:
        read(8);  // frame length: a read-ahead hint only
        break;
      case kMark:
        marks_.push_back(stack_.size());
        break;
      case kPop:
        pop();
        break;
      case kPopMark:
        pop_mark();
        break;
      case kDup:
        stack_.push_back(top());
        break;
      case kNone:
        stack_.emplace_back();
        break;
      case kNewTrue:
        stack_.emplace_back(true);
        break;
      case kNewFalse:
        stack_.emplace_back(false);
        break;
      case kBinInt:
        stack_.emplace_back(std::int64_t{read_le<std::int32_t>()});
        break;
      case kBinInt1:
        stack_.emplace_back(std::int64_t{read_u8()});
        break;
      case kBinInt2:
        stack_.emplace_back(std::int64_t{read_le<std::uint16_t>()});
        break;
      case kLong1: {
        const std::size_t n = read_u8();
        if (n > 8) fail(fmt::format("integer of {} bytes does not fit 64 bits", n));
        const auto* b = reinterpret_cast<const std::uint8_t*>(read(n));
        std::uint64_t u = 0;
        for (std::size_t i = 0; i < n; ++i) u |= std::uint64_t{b[i]} << (8 * i);
        if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~std::uint64_t{0} << (8 * n);  // sign-extend
        stack_.emplace_back(static_cast<std::int64_t>(u));
        break;
      }
      case kBinFloat: {
        std::uint64_t bits = 0;
        const auto* b = reinterpret_cast<const std::uint8_t*>(read(8));
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];  // big-endian
        stack_.emplace_back(std::bit_cast<double>(bits));
        break;
      }
      case kShortBinUnicode: {
        const std::size_t n = read_u8();
        stack_.emplace_back(std::string(read(n), n));
        break;
      }
      case kBinUnicode: {
        const std::size_t n = read_le<std::uint32_t>();
        stack_.emplace_back(std::string(read(n), n));
        break;
      }
      case kBinUnicode8: {
        const std::uint64_t n = read_le<std::uint64_t>();
        if (n > data_.size()) fail("string longer than the pickle");
        stack_.emplace_back(std::string(read(n), n));
        break;
      }
      case kEmptyList:
        stack_.push_back(track(std::make_shared<PickleList>()));
        break;
      case kList: {
        auto l = std::make_shared<PickleList>();
        l->items = pop_mark();
        stack_.push_back(track(std::move(l)));
        break;
      }
      case kAppend: {
        PickleValue v = pop();
        list_on_top().items.push_back(std::move(v));
        break;
      }
      case kAppends: {
        auto items = pop_mark();
        auto& list = list_on_top().items;
        list.insert(list.end(), std::make_move_iterator(items.begin()),
                    std::make_move_iterator(items.end()));
        break;
      }
      case kEmptyTuple:
        stack_.push_back(make_tuple({}));
        break;
      case kTuple:
        stack_.push_back(make_tuple(pop_mark()));
        break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const int n = op - kTuple1 + 1;
        std::vector<PickleValue> items(n);
        for (int i = n - 1; i >= 0; --i) items[i] = pop();
        stack_.push_back(make_tuple(std::move(items)));
        break;
      }
      case kEmptyDict:
        stack_.push_back(track(make_dict(false)));
        break;
      case kDict: {
        auto items = pop_mark();
        if (items.size() % 2) fail("DICT with an odd number of items");
        auto d = make_dict(false);
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(*d, items[i], items[i + 1]);
        stack_.push_back(track(std::move(d)));
        break;
      }
      case kSetItem: {
        PickleValue value = pop();
        PickleValue key = pop();
        set_item(dict_on_top(), std::move(key), std::move(value));
        break;
      }
      case kSetItems: {
        auto items = pop_mark();
        if (items.size() % 2) fail("SETITEMS with an odd number of items");
        PickleDict& d = dict_on_top();
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        break;
      }
      case kBinPut:
        memo_put(read_u8());
        break;
      case kLongBinPut:
        memo_put(read_le<std::uint32_t>());
        break;
      case kMemoize:
        memo_put(memo_.size());
        break;
      case kBinGet:
        memo_get(read_u8());
        break;
      case kLongBinGet:
        memo_get(read_le<std::uint32_t>());
        break;
      case kGlobal: {
        std::string module = read_line();
        std::string name = read_line();
        push_global(std::move(module), std::move(name));
        break;
      }
      case kStackGlobal: {
        PickleValue name = pop();
        PickleValue module = pop();
        if (!name.is_string() || !module.is_string()) fail("STACK_GLOBAL needs two strings");
        push_global(module.as_string(), name.as_string());
        break;
      }
      case kBinPersId: {
        PickleValue pid = pop();
        if (!pid.is_tuple())
          fail(fmt::format("persistent id is a {}, not a tuple", pid.type_name()));
        stack_.push_back(load_(pid.as_tuple()));
        break;
      }
      case kReduce: {
        PickleValue args = pop();
        PickleValue callable = pop();
        if (!callable.is_global()) fail(fmt::format("REDUCE calls a {}", callable.type_name()));
        if (!args.is_tuple()) fail("REDUCE arguments are not a tuple");
        stack_.push_back(reduce(callable.as_global(), args.as_tuple().items));
        break;
      }
      case kBuild: {
        PickleValue state = pop();
        build(top(), state);
        break;
      }
      default:
        fail(fmt::format("unsupported opcode 0x{:02x}", op));
    }
  }

  PickleValue reduce(const PickleGlobal& g, const std::vector<PickleValue>& args) {
    const std::string q = g.qualified();
    if (q == "collections.OrderedDict") {
      if (!args.empty()) fail("OrderedDict() with arguments is not supported");
      return track(make_dict(true));
    }
    if (q == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
    if (q == "torch._utils._rebuild_parameter" ||
        q == "torch._utils._rebuild_parameter_with_state") {
      if (args.size() < 3 || !args[0].is_tensor())
        fail(q + " expects (tensor, requires_grad, hooks)");
      return args[0];
    }
    if (q == "torch.device") {
      if (args.empty() || !args[0].is_string()) fail("torch.device expects a string");
      std::string device = args[0].as_string();
      if (args.size() > 1 && args[1].is_int()) device += ":" + std::to_string(args[1].as_int());
      return device;
    }
    fail(fmt::format("'{}' cannot be called", q));
  }

  std::vector<std::int64_t> int_tuple(const PickleValue& v, const char* what) {
    if (!v.is_tuple()) fail(fmt::format("tensor {} is a {}, not a tuple", what, v.type_name()));
    std::vector<std::int64_t> out;
    for (const auto& item : v.as_tuple().items) {
      if (!item.is_int() || item.as_int() < 0)
        fail(fmt::format("tensor {} holds a non-index", what));
      out.push_back(item.as_int());
    }
    return out;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
  // metadata])
  PickleValue rebuild_tensor(const std::vector<PickleValue>& args) {
    if (args.size() < 6 || args.size() > 7) fail("_rebuild_tensor_v2 expects 6 or 7 arguments");
    if (!args[0].is_storage()) fail(fmt::format("tensor storage is a {}", args[0].type_name()));
    if (!args[1].is_int() || args[1].as_int() < 0) fail("tensor storage offset is not an index");
    if (args[5].is_dict() && !args[5].as_dict().items.empty()) fail("tensor has backward hooks");
    const auto& storage = args[0].as_storage();
    const std::int64_t offset = args[1].as_int();
    const auto sizes = int_tuple(args[2], "size");
    const auto strides = int_tuple(args[3], "stride");
    if (sizes.size() != strides.size()) fail("tensor size and stride differ in length");

    // Elements the view reaches: offset + sum((size-1)*stride) + 1, with overflow checks.
    bool empty = false;
    std::int64_t extent = 1;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] == 0) empty = true;
      std::int64_t span = 0;
      if (sizes[i] > 0 && (__builtin_mul_overflow(sizes[i] - 1, strides[i], &span) ||
                           __builtin_add_overflow(extent, span, &extent))) {
        fail("tensor size overflows");
      }
    }
    const auto itemsize = static_cast<std::int64_t>(c10::elementSize(storage.dtype));
    std::int64_t needed = 0;
    if (!empty && (__builtin_add_overflow(extent, offset, &needed) ||
                   __builtin_mul_overflow(needed, itemsize, &needed))) {
      fail("tensor size overflows");
    }
    if (needed > static_cast<std::int64_t>(storage.storage.nbytes())) {
      fail(
          fmt::format("tensor view (offset {}, size [{}], stride [{}]) reaches {} bytes, beyond "
                      "its storage of {} bytes",
                      offset, fmt::join(sizes, ", "), fmt::join(strides, ", "), needed,
                      storage.storage.nbytes()));
    }
    if (empty) return at::empty(sizes, at::TensorOptions().dtype(storage.dtype));
    at::Tensor t = at::empty({0}, at::TensorOptions().dtype(storage.dtype));
    t.set_(storage.storage, offset, sizes, strides);
    return t;
  }

  void build(PickleValue& target, const PickleValue& state) {
    if (!target.is_dict() || !target.as_dict().ordered) {
      fail(fmt::format("BUILD on a {} is not supported", target.type_name()));
    }
    // state is a dict of attributes, or (dict or None, slot dict or None)
    std::vector<const PickleValue*> parts;
    if (state.is_tuple() && state.as_tuple().items.size() == 2) {
      for (const auto& p : state.as_tuple().items) parts.push_back(&p);
    } else {
      parts.push_back(&state);
    }
    for (const PickleValue* p : parts) {
      if (p->is_none()) continue;
      if (!p->is_dict()) fail(fmt::format("BUILD state is a {}", p->type_name()));
      for (const auto& [k, v] : p->as_dict().items) {
        if (!k.is_string()) fail("BUILD attribute name is not a string");
        target.as_dict().attributes.emplace_back(k.as_string(), v);
      }
    }
  }

  // --- result checks ----------------------------------------------------------------------
  static const void* container_id(const PickleValue& v) {
    if (v.is_list()) return &v.as_list();
    if (v.is_tuple()) return &v.as_tuple();
    if (v.is_dict()) return &v.as_dict();
    return nullptr;
  }

  // Depth-first over containers; a container met again while still open is a cycle.
  void check_acyclic(const PickleValue& v, int depth) {
    const void* id = container_id(v);
    if (!id) return;
    if (depth > kMaxDepth) fail(fmt::format("nested deeper than {} levels", kMaxDepth));
    if (open_.count(id)) fail("recursive structure (a container holds itself)");
    if (keep_.count(id)) return;
    open_.insert(id);
    if (v.is_list()) {
      for (const auto& item : v.as_list().items) check_acyclic(item, depth + 1);
    } else if (v.is_tuple()) {
      for (const auto& item : v.as_tuple().items) check_acyclic(item, depth + 1);
    } else {
      for (const auto& [k, item] : v.as_dict().items) check_acyclic(item, depth + 1);
      for (const auto& [k, item] : v.as_dict().attributes) check_acyclic(item, depth + 1);
    }
    open_.erase(id);
    keep_.insert(id);
  }

  std::string_view data_;
  const std::string& source_;
  const PersistentLoad& load_;
  std::size_t pos_ = 0;
  std::size_t op_pos_ = 0;
  std::vector<PickleValue> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleValue> memo_;
  std::vector<PickleValue> containers_;
  std::unordered_set<const void*> open_;
  std::unordered_set<const void*> keep_;
};

// --- writing ----------------------------------------------------------------------------

class Pickler {
 public:
  TorchPickle run(const PickleValue& root) {
    out_.push_back(static_cast<char>(kProto));
    out_.push_back(2);
    put(root, 0);
    op(kStop);
    return {std::move(out_), std::move(storages_)};
  }

 private:
  void op(std::uint8_t o) { out_.push_back(static_cast<char>(o)); }
  template <typename T>
  void le(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
    out_.append(b, sizeof(T));
  }
  void global(std::string_view module, std::string_view name) {
    op(kGlobal);
    out_.append(module).append("\n").append(name).append("\n");
  }
  void put_int(std::int64_t v) {
    if (v >= 0 && v < 256) {
      op(kBinInt1);
      out_.push_back(static_cast<char>(v));
    } else if (v >= 0 && v < 65536) {
      op(kBinInt2);
      le(static_cast<std::uint16_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op(kBinInt);
      le(static_cast<std::int32_t>(v));
    } else {
      op(kLong1);
      out_.push_back(8);
      le(v);
    }
  }
  void put_string(std::string_view s) {
    op(kBinUnicode);
    le(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  void put_int_tuple(c10::IntArrayRef values) {
    op(kMark);
    for (auto v : values) put_int(v);
    op(kTuple);
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    op(kEmptyTuple);
    op(kReduce);
  }

  void put(const PickleValue& v, int depth) {
    if (depth > kMaxDepth)
      throw InputError(fmt::format("cannot save: nested deeper than {} levels", kMaxDepth));
    switch (v.kind()) {
      case PickleValue::Kind::kNone:
        op(kNone);
        break;
      case PickleValue::Kind::kBool:
        op(v.as_bool() ? kNewTrue : kNewFalse);
        break;
      case PickleValue::Kind::kInt:
        put_int(v.as_int());
        break;
      case PickleValue::Kind::kDouble: {
        op(kBinFloat);
        auto bits = std::bit_cast<std::uint64_t>(v.as_double());
        for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
        break;
      }
      case PickleValue::Kind::kString:
        put_string(v.as_string());
        break;
      case PickleValue::Kind::kList:
        op(kEmptyList);
        if (!v.as_list().items.empty()) {
          op(kMark);
          for (const auto& item : v.as_list().items) put(item, depth + 1);
          op(kAppends);
        }
        break;
      case PickleValue::Kind::kTuple:
        op(kMark);
        for (const auto& item : v.as_tuple().items) put(item, depth + 1);
        op(kTuple);
        break;
      case PickleValue::Kind::kDict: {
        const auto& d = v.as_dict();
        if (d.ordered) {
          empty_ordered_dict();
        } else {
          op(kEmptyDict);
        }
        if (!d.items.empty()) {
          op(kMark);
          for (const auto& [key, item] : d.items) {
            put(key, depth + 1);
            put(item, depth + 1);
          }
          op(kSetItems);
        }
        // weights_only accepts BUILD on an OrderedDict only (state_dict()'s _metadata).
        if (d.ordered && !d.attributes.empty()) {
          op(kEmptyDict);
          op(kMark);
          for (const auto& [name, item] : d.attributes) {
            put_string(name);
            put(item, depth + 1);
          }
          op(kSetItems);
          op(kBuild);
        }
        break;
      }
      case PickleValue::Kind::kTensor:
        put_tensor(v.as_tensor());
        break;
      default:
        throw InputError(fmt::format("cannot save a {} value", v.type_name()));
    }
  }

  void put_tensor(at::Tensor t) {
    if (!t.defined()) throw InputError("cannot save an undefined tensor");
    const std::string storage_class = storage_class_name(t.scalar_type());
    if (!t.device().is_cpu() || t.layout() != at::kStrided || t.is_conj() || t.is_neg()) {
      t = t.to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    }
    const auto itemsize = t.element_size();
    if (t.storage().nbytes() % itemsize != 0) t = t.clone(at::MemoryFormat::Contiguous);
    const c10::Storage& storage = t.storage();
    const auto id = std::make_pair(static_cast<const void*>(storage.unsafeGetStorageImpl()),
                                   static_cast<int>(t.scalar_type()));
    auto it = keys_.find(id);
    if (it == keys_.end()) {
      it = keys_.emplace(id, std::to_string(storages_.size())).first;
      storages_.emplace_back(it->second, storage);
    }
    global("torch._utils", "_rebuild_tensor_v2");
    op(kMark);
    op(kMark);  // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
    put_string("storage");
    global("torch", storage_class);
    put_string(it->second);
    put_string("cpu");
    put_int(static_cast<std::int64_t>(storage.nbytes()) / itemsize);
    op(kTuple);
    op(kBinPersId);
    put_int(t.storage_offset());
    put_int_tuple(t.sizes());
    put_int_tuple(t.strides());
    op(kNewFalse);
    empty_ordered_dict();
    op(kTuple);
    op(kReduce);
  }

  std::string out_;
  std::vector<std::pair<std::string, c10::Storage>> storages_;
  std::map<std::pair<const void*, int>, std::string> keys_;
};

}  // namespace

const PickleValue* PickleDict::find(std::string_view key) const {
  const auto it = index_.find(fmt::format("s{}", key));
  return it == index_.end() ? nullptr : &items[it->second].second;
}

void PickleDict::set(PickleValue key, PickleValue value) {
  const auto id = key_identity(key);
  if (!id)
    throw std::invalid_argument(
        fmt::format("dict key of type {} is not supported", key.type_name()));
  const auto [it, inserted] = index_.emplace(*id, items.size());
  if (inserted) {
    items.emplace_back(std::move(key), std::move(value));
  } else {
    items[it->second].second = std::move(value);
  }
}

std::shared_ptr<PickleDict> make_dict(bool ordered) {
  auto d = std::make_shared<PickleDict>();
  d->ordered = ordered;
  return d;
}

const char* PickleValue::type_name() const {
  switch (kind()) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kDouble:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return as_dict().ordered ? "OrderedDict" : "dict";
    case Kind::kTensor:
      return "Tensor";
    case Kind::kGlobal:
      return "global";
    case Kind::kStorage:
      return "storage";
  }
  return "?";
}

std::string PickleValue::describe() const {
  switch (kind()) {
    case Kind::kBool:
      return as_bool() ? "bool True" : "bool False";
    case Kind::kInt:
      return fmt::format("int {}", as_int());
    case Kind::kDouble:
      return fmt::format("float {}", as_double());
    case Kind::kString: {
      const auto& s = as_string();
      return s.size() <= 40 ? fmt::format("str '{}'", s) : fmt::format("str ({} chars)", s.size());
    }
    case Kind::kList:
      return fmt::format("list ({} items)", as_list().items.size());
    case Kind::kTuple:
      return fmt::format("tuple ({} items)", as_tuple().items.size());
    case Kind::kDict:
      return fmt::format("{} ({} entries)", type_name(), as_dict().items.size());
    case Kind::kTensor:
      return fmt::format("tensor [{}] {}", fmt::join(as_tensor().sizes(), ", "),
                         dtype_name(as_tensor().scalar_type()));
    case Kind::kGlobal:
      return "global " + as_global().qualified();
    default:
      return type_name();
  }
}

PickleValue unpickle(std::string_view data, const std::string& source, const PersistentLoad& load) {
  Unpickler unpickler(data, source, load);
  return unpickler.run();
}

std::optional<c10::ScalarType> storage_class_dtype(std::string_view name) {
  for (const auto& c : kStorageClasses) {
    if (name == c.name) return c.dtype;
  }
  return std::nullopt;
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float:
      return "float32";
    case c10::ScalarType::Half:
      return "float16";
    case c10::ScalarType::BFloat16:
      return "bfloat16";
    case c10::ScalarType::Double:
      return "float64";
    case c10::ScalarType::Long:
      return "int64";
    case c10::ScalarType::Int:
      return "int32";
    case c10::ScalarType::Short:
      return "int16";
    case c10::ScalarType::Char:
      return "int8";
    case c10::ScalarType::Byte:
      return "uint8";
    case c10::ScalarType::Bool:
      return "bool";
    default:
      return c10::toString(dtype);
  }
}

std::string storage_class_name(c10::ScalarType dtype) {
  for (const auto& c : kStorageClasses) {
    if (c.dtype == dtype) return c.name;
  }
  throw InputError(fmt::format("cannot save tensors of dtype {}", dtype_name(dtype)));
}

TorchPickle pickle_for_torch(const PickleValue& root) {
  return Pickler().run(root);
}

}  // namespace iris::io
