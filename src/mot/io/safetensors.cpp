#include "mot/io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/mapped_file.hpp"

// The format is little-endian; we copy raw bytes with memcpy, so the host must match.
static_assert(std::endian::native == std::endian::little, "mot assumes a little-endian host");

namespace mot::io {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a corrupt length must not
// make us allocate or parse gigabytes.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

// Element size in bits of every dtype the safetensors spec names (sub-byte float types
// included), so the byte length of non-float tensors can be checked too. A name not in
// this table is still accepted (size unchecked) so newer files stay readable.
int dtype_bits(const std::string& name) {
  static const std::pair<const char*, int> table[] = {
      {"BOOL", 8},      {"U8", 8},       {"I8", 8},        {"F8_E5M2", 8}, {"F8_E4M3", 8},
      {"F8_E8M0", 8},   {"I16", 16},     {"U16", 16},      {"F16", 16},    {"BF16", 16},
      {"I32", 32},      {"U32", 32},     {"F32", 32},      {"I64", 64},    {"U64", 64},
      {"F64", 64},      {"C64", 64},     {"F4", 4},        {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  for (const auto& [n, bits] : table)
    if (name == n) return bits;
  return 0;
}

DType dtype_from_name(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  return DType::Other;
}

// Error messages are one line: tensor names come from the file, so replace anything
// that is not printable ASCII and cut absurdly long names.
std::string printable(std::string_view s, size_t max_len = 80) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > max_len) out += "...";
  return out;
}

// Product of dims with overflow detection; nullopt if it does not fit in int64.
std::optional<int64_t> checked_numel(const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d < 0) return std::nullopt;
  // A zero dim makes the tensor empty even if the other dims would overflow.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

// Byte size of numel elements of `bits` each; nullopt on overflow or a partial byte.
std::optional<size_t> checked_nbytes(int64_t numel, int bits) {
  uint64_t total_bits;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(bits), &total_bits))
    return std::nullopt;
  if (total_bits % 8 != 0) return std::nullopt;
  return total_bits / 8;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN with its payload kept
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);  // normal: rebias the exponent
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half (mant * 2^-24) is a normal float: shift the leading 1 into the
    // implicit-bit position, lowering the exponent once per shift.
    uint32_t e = 127 - 15 + 1;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}


}  // namespace

int64_t TensorInfo::numel() const {
  auto n = checked_numel(shape);
  if (!n) fail("tensor ", printable(name), ": shape has a negative dim or too many elements");
  return *n;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  size_t size = 0;
  std::shared_ptr<void> mapping = map_file(path, &size);
  SafetensorsFile f = parse({static_cast<const uint8_t*>(mapping.get()), size}, path);
  f.mapping_ = std::move(mapping);
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& origin) {
  auto bad = [&](const auto&... why) { fail(origin, ": ", why...); };
  SafetensorsFile f;
  f.origin_ = origin;
  f.bytes_ = bytes;

  if (bytes.size() < 8) bad("file too short for a safetensors header (", bytes.size(), " bytes)");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  // A text file (a config, JSONL data) given as a model: its first 8 characters read as
  // an absurd length. Say what the file is rather than quote that number.
  const bool text = std::all_of(bytes.begin(), bytes.begin() + 8, [](uint8_t c) {
    return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t';
  });
  if (text && header_len > bytes.size() - 8)
    bad("not a safetensors file (it begins with the text \"",
        printable(std::string_view(reinterpret_cast<const char*>(bytes.data()), 8)),
        "\"); a model is a .safetensors file written by mot init or mot train");
  if (header_len > kMaxHeaderBytes) bad("header length ", header_len, " exceeds the 100 MiB limit");
  if (header_len > bytes.size() - 8)
    bad("header length ", header_len, " exceeds the file size ", bytes.size(), " (truncated?)");
  const uint8_t* hbegin = bytes.data() + 8;
  f.data_ = bytes.subspan(8 + header_len);

  // nlohmann keeps the last of duplicate keys silently; a header naming a tensor twice
  // is ambiguous (which entry is the tensor?), so every object's keys are tracked while
  // parsing. One set per open object; the error is raised after the parser returns.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  size_t duplicate_depth = 0;
  const json::parser_callback_t no_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (duplicate.empty() && !open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get_ref<const std::string&>()).second) {
          duplicate = parsed.get_ref<const std::string&>();
          duplicate_depth = open_objects.size();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(hbegin, hbegin + header_len, no_duplicates);
  } catch (const json::exception& e) {
    bad("header is not valid JSON (", printable(e.what(), 300), ")");
  }
  if (!duplicate.empty()) {
    if (duplicate_depth == 1 && duplicate != "__metadata__")
      bad("header names tensor '", printable(duplicate), "' twice (a tensor name must be unique)");
    bad("header repeats the key '", printable(duplicate), "' in one object (keys must be unique)");
  }
  if (!header.is_object()) bad("header is not a JSON object");

  // Reads a non-negative JSON integer; nlohmann stores those as number_unsigned.
  auto as_u64 = [&](const json& v, const std::string& tname, const char* what) -> uint64_t {
    if (!v.is_number_unsigned()) bad("tensor '", printable(tname), "': ", what, " must be non-negative integers");
    return v.get<uint64_t>();
  };

  for (const auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) bad("__metadata__ is not an object");
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) bad("__metadata__ value of '", printable(mk), "' is not a string");
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string tname = printable(key);
    if (!val.is_object()) bad("tensor '", tname, "': entry is not an object");
    auto dt = val.find("dtype"), sh = val.find("shape"), of = val.find("data_offsets");
    if (dt == val.end() || !dt->is_string()) bad("tensor '", tname, "': missing or non-string dtype");
    if (sh == val.end() || !sh->is_array()) bad("tensor '", tname, "': missing or non-array shape");
    if (of == val.end() || !of->is_array() || of->size() != 2)
      bad("tensor '", tname, "': data_offsets must be [begin, end]");

    TensorInfo t;
    t.name = key;
    t.dtype_name = dt->get<std::string>();
    if (t.dtype_name.empty()) bad("tensor '", tname, "': empty dtype");
    t.dtype = dtype_from_name(t.dtype_name);
    for (const json& d : *sh) {
      uint64_t dim = as_u64(d, key, "shape dims");
      if (dim > uint64_t(std::numeric_limits<int64_t>::max())) bad("tensor '", tname, "': shape dim too large");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    auto numel = checked_numel(t.shape);
    if (!numel) bad("tensor '", tname, "': shape has too many elements");
    uint64_t begin = as_u64((*of)[0], key, "data_offsets");
    uint64_t end = as_u64((*of)[1], key, "data_offsets");
    if (begin > end) bad("tensor '", tname, "': data_offsets begin > end");
    if (end > f.data_.size())
      bad("tensor '", tname, "': data_offsets [", begin, ", ", end, "] outside the data section of ",
          f.data_.size(), " bytes (truncated?)");
    t.offset = begin;
    t.nbytes = end - begin;
    if (int bits = dtype_bits(t.dtype_name)) {
      auto want = checked_nbytes(*numel, bits);
      if (!want || *want != t.nbytes)
        bad("tensor '", tname, "': ", t.nbytes, " data bytes do not match dtype ", printable(t.dtype_name),
            " and shape");
    }
    f.tensors_.push_back(std::move(t));
  }

  // File order is lost by the JSON object; data order is the natural order anyway.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.name < b.name;
  });
  // Sorted by begin, byte ranges overlap iff one starts before the previous one ends.
  // Empty tensors own no bytes and cannot overlap anything.
  size_t prev_end = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : f.tensors_) {
    if (t.nbytes == 0) continue;
    if (prev && t.offset < prev_end)
      bad("tensors '", printable(prev->name), "' and '", printable(t.name), "' overlap");
    prev_end = t.offset + t.nbytes;
    prev = &t;
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  return f;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsFile::raw(const TensorInfo& t) const {
  // Guard against a TensorInfo that does not come from this file.
  if (t.offset > data_.size() || t.nbytes > data_.size() - t.offset)
    fail(origin_, ": tensor '", printable(t.name), "' lies outside the data section");
  return data_.subspan(t.offset, t.nbytes);
}

void SafetensorsFile::read_f32(const TensorInfo& t, float* dst) const {
  if (t.dtype == DType::Other)
    fail(origin_, ": tensor '", printable(t.name), "' has dtype ", printable(t.dtype_name),
         "; only F32, F16 and BF16 can be read as floats");
  std::span<const uint8_t> src = raw(t);
  const size_t n = static_cast<size_t>(t.numel());
  const size_t esize = t.dtype == DType::F32 ? 4 : 2;
  if (src.size() != n * esize) fail(origin_, ": tensor '", printable(t.name), "' size does not match its shape");
  const uint8_t* p = src.data();  // may be unaligned: copy element-wise via memcpy
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(dst, p, n * 4);
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = std::bit_cast<float>(uint32_t(h) << 16);  // bf16 is the top half of an fp32
      }
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
    case DType::Other:
      break;  // rejected above
  }
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Build the header by hand (nlohmann only escapes strings) so tensors keep the given
  // order and "__metadata__" comes first, in linear time.
  std::string header = "{";
  std::vector<size_t> sizes;
  std::set<std::string> seen;
  size_t offset = 0;
  try {
    if (!metadata.empty()) header += "\"__metadata__\":" + json(metadata).dump();
    for (const TensorToWrite& t : tensors) {
      if (t.name == "__metadata__") fail(path, ": '__metadata__' is not a valid tensor name");
      if (!seen.insert(t.name).second) fail(path, ": duplicate tensor name '", printable(t.name), "'");
      const char* dtype = t.dtype == DType::F32 ? "F32" : t.dtype == DType::F16 ? "F16"
                        : t.dtype == DType::BF16 ? "BF16" : nullptr;
      if (!dtype) fail(path, ": tensor '", printable(t.name), "': only F32, F16 and BF16 can be written");
      auto numel = checked_numel(t.shape);
      if (!numel) fail(path, ": tensor '", printable(t.name), "': invalid shape");
      auto nbytes = checked_nbytes(*numel, t.dtype == DType::F32 ? 32 : 16);
      if (!nbytes || __builtin_add_overflow(offset, *nbytes, &offset))
        fail(path, ": tensor '", printable(t.name), "' is too large");
      if (*nbytes > 0 && !t.data) fail(path, ": tensor '", printable(t.name), "' has no data");
      if (header.size() > 1) header += ',';
      header += json(t.name).dump();
      header += cat(":{\"dtype\":\"", dtype, "\",\"shape\":", json(t.shape).dump(),
                    ",\"data_offsets\":[", offset - *nbytes, ",", offset, "]}");
      sizes.push_back(*nbytes);
    }
  } catch (const json::exception& e) {  // e.g. a name that is not valid UTF-8
    fail(path, ": cannot encode header (", printable(e.what(), 300), ")");
  }
  header += '}';
  // Pad with spaces so the data section starts 8-byte aligned (8 + header length).
  header.append((8 - header.size() % 8) % 8, ' ');

  AtomicWriter w(path);
  uint64_t len = header.size();
  w.write(&len, 8);
  w.write(header.data(), header.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (sizes[i]) w.write(tensors[i].data, sizes[i]);
  w.commit();
}

}  // namespace mot::io
