#include "model/safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "data/json_input.h"
#include "src/common/error.h"

namespace polaris {

static_assert(sizeof(float) == 4, "fp32 expected");

// ---------------------------------------------------------------------------
// dtypes and conversions

const char* dtype_name(FileDType dtype) {
  switch (dtype) {
    case FileDType::F32: return "F32";
    case FileDType::F16: return "F16";
    case FileDType::BF16: return "BF16";
    case FileDType::I32: return "I32";
    case FileDType::I64: return "I64";
  }
  return "?";
}

size_t dtype_size(FileDType dtype) {
  switch (dtype) {
    case FileDType::F32: return 4;
    case FileDType::F16: return 2;
    case FileDType::BF16: return 2;
    case FileDType::I32: return 4;
    case FileDType::I64: return 8;
  }
  return 0;
}

bool is_float_dtype(FileDType dtype) {
  return dtype == FileDType::F32 || dtype == FileDType::F16 || dtype == FileDType::BF16;
}

namespace {

bool parse_dtype(const std::string& s, FileDType* out) {
  static const std::map<std::string, FileDType> names = {
      {"F32", FileDType::F32}, {"F16", FileDType::F16}, {"BF16", FileDType::BF16},
      {"I32", FileDType::I32}, {"I64", FileDType::I64}};
  auto it = names.find(s);
  if (it == names.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace

// bf16 is the top half of an fp32: widening is a shift.
float bf16_to_float(uint16_t bits) { return bits_float(uint32_t(bits) << 16); }

// Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, truncate.
// Values past the largest bf16 round to inf, as IEEE rounding does.
uint16_t float_to_bf16(float value) {
  uint32_t u = float_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every fp16 value is an
// fp32 value; subnormals are mantissa * 2^-24.
float fp16_to_float(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1fu;
  const uint32_t mant = bits & 0x3ffu;
  if (exp == 0) {
    float magnitude = std::ldexp(float(mant), -24);  // exact: mant < 2^10
    return sign ? -magnitude : magnitude;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  return bits_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

uint16_t float_to_fp16(float value) {
  uint32_t x = float_bits(value);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // inf or nan
    if (x == 0x7f800000u) return sign | 0x7c00u;
    return sign | 0x7e00u | uint16_t((x >> 13) & 0x3ffu);
  }
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (x < 0x38800000u) {
    // Below 2^-14: an fp16 subnormal, mantissa = round_even(|v| * 2^24) (the
    // scaling is exact in fp32; 1024 is the smallest normal, encoded the same way).
    float m = std::nearbyint(bits_float(x) * 16777216.f);
    return sign | uint16_t(m);
  }
  x += 0xfffu + ((x >> 13) & 1u);  // round to nearest even at bit 13
  return sign | uint16_t((x >> 13) - ((127u - 15u) << 10));
}

float round_to_dtype(float value, FileDType dtype) {
  switch (dtype) {
    case FileDType::BF16: return bf16_to_float(float_to_bf16(value));
    case FileDType::F16: return fp16_to_float(float_to_fp16(value));
    default: return value;
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---------------------------------------------------------------------------
// AtomicFile

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) throw Error(path_ + ": cannot create: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  require(file_ != nullptr, path_ + ": write after commit");
  if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
    throw Error(path_ + ": write failed: " + errno_text());
}

void AtomicFile::commit() {
  require(file_ != nullptr, path_ + ": committed twice");
  bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  std::string why = ok ? "" : errno_text();
  ok = (std::fclose(file_) == 0) && ok;
  if (why.empty() && !ok) why = errno_text();
  file_ = nullptr;
  if (!ok) {
    std::remove(tmp_.c_str());
    throw Error(path_ + ": write failed: " + why);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    why = errno_text();
    std::remove(tmp_.c_str());
    throw Error(path_ + ": cannot rename " + tmp_ + " into place: " + why);
  }
}

// ---------------------------------------------------------------------------
// Reading

namespace {

FilePtr open_for_reading(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) throw Error(path + ": cannot open: " + errno_text());
  struct stat st;
  if (::fstat(fileno(f.get()), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(path + ": is a directory, expected a .safetensors file");
  return f;
}

uint64_t file_size(std::FILE* f, const std::string& path) {
  struct stat st;
  if (::fstat(fileno(f), &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  return uint64_t(st.st_size);
}

constexpr size_t kMaxSafetensorsRank = 16;

int64_t json_uint(const nlohmann::json& v, bool* ok) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(INT64_MAX))
    return int64_t(v.get<uint64_t>());
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return v.get<int64_t>();
  *ok = false;
  return 0;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  FilePtr f = open_for_reading(path);
  const uint64_t size = file_size(f.get(), path);
  uint8_t len_bytes[8];
  if (size < 8 || std::fread(len_bytes, 1, 8, f.get()) != 8)
    throw Error(path + ": truncated: " + std::to_string(size) +
                " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) +
                " is beyond the end of the file (" + std::to_string(size) + " bytes)");
  if (header_len > kJsonSafetensorsHeaderMaxBytes)
    throw Error(path + ": header length " +
                json_size_problem(header_len, kJsonSafetensorsHeaderMaxBytes, "a safetensors header"));
  std::string header(header_len, '\0');
  if (header_len && std::fread(&header[0], 1, header_len, f.get()) != header_len)
    throw Error(path + ": cannot read the header: " + errno_text());
  data_start_ = 8 + header_len;
  const uint64_t data_size = size - data_start_;

  const nlohmann::json j = parse_json_or_throw(header, path, "malformed header JSON");
  require(j.is_object(), path + ": malformed header: expected a JSON object");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      require(v.is_object() || v.is_null(),
              path + ": malformed header: __metadata__ must be an object");
      if (v.is_object())
        for (auto m = v.begin(); m != v.end(); ++m)
          metadata_[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const std::string where = path + ": tensor " + name;
    require(v.is_object() && v.contains("dtype") && v.contains("shape") &&
                v.contains("data_offsets"),
            where + ": header entry needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    e.name = name;
    require(v["dtype"].is_string(), where + ": dtype must be a string");
    const std::string dt = v["dtype"].get<std::string>();
    if (!parse_dtype(dt, &e.dtype))
      throw Error(where + " has unsupported dtype '" + dt + "' (F32, F16, BF16, I32, I64)");
    const nlohmann::json& shape = v["shape"];
    require(shape.is_array(), where + ": shape must be an array");
    require(shape.size() <= kMaxSafetensorsRank,
            where + ": shape has " + std::to_string(shape.size()) + " dimensions (at most " +
                std::to_string(kMaxSafetensorsRank) + ")");
    bool ok = true;
    for (const auto& d : shape) {
      int64_t dim = json_uint(d, &ok);
      require(ok, where + ": shape " + shape.dump() + " must hold non-negative integers");
      e.shape.push_back(dim);
    }
    // The element count, overflow-checked: a zero dimension makes it 0 whatever
    // the others are; otherwise its size in bytes must fit 64 bits (the offsets
    // below then tie it to the data section).
    const uint64_t max_numel = std::numeric_limits<uint64_t>::max() / dtype_size(e.dtype);
    e.numel = 1;
    if (std::find(e.shape.begin(), e.shape.end(), int64_t(0)) != e.shape.end()) {
      e.numel = 0;
    } else {
      for (int64_t dim : e.shape) {
        require(uint64_t(e.numel) <= max_numel / uint64_t(dim),
                where + ": shape " + shape.dump() + " has an element count whose size in " +
                    "bytes overflows 64 bits");
        e.numel *= size_t(dim);
      }
    }
    const nlohmann::json& off = v["data_offsets"];
    require(off.is_array() && off.size() == 2, where + ": data_offsets must be [begin, end]");
    e.begin = uint64_t(json_uint(off[0], &ok));
    e.end = uint64_t(json_uint(off[1], &ok));
    require(ok, where + ": data_offsets " + off.dump() + " must be non-negative integers");
    require(e.begin <= e.end && e.end <= data_size,
            where + ": data_offsets " + off.dump() + " out of range (data section is " +
                std::to_string(data_size) + " bytes)");
    const uint64_t need = uint64_t(e.numel) * dtype_size(e.dtype);
    require(e.end - e.begin == need,
            where + ": data_offsets " + off.dump() + " hold " + std::to_string(e.end - e.begin) +
                " bytes but shape " + shape_string(e.shape) + " of " + dt + " needs " +
                std::to_string(need));
    entries_[name] = e;
  }
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error(path_ + ": tensor " + name + " is missing");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (auto& e : entries_) out.push_back(e.first);
  return out;
}

void SafetensorsFile::read_bytes(const SafetensorsEntry& e, void* out) const {
  const uint64_t bytes = e.end - e.begin;
  if (bytes == 0) return;
  FilePtr f = open_for_reading(path_);
  if (::fseeko(f.get(), off_t(data_start_ + e.begin), SEEK_SET) != 0 ||
      std::fread(out, 1, bytes, f.get()) != bytes)
    throw Error(path_ + ": tensor " + e.name + ": truncated (file changed while reading?)");
}

std::vector<uint8_t> SafetensorsFile::read_raw(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  std::vector<uint8_t> out(e.end - e.begin);
  read_bytes(e, out.data());
  return out;
}

void SafetensorsFile::read_f32(const std::string& name, float* out) const {
  const SafetensorsEntry& e = entry(name);
  if (!is_float_dtype(e.dtype))
    throw Error(path_ + ": tensor " + name + " has dtype " + dtype_name(e.dtype) +
                ", expected F32, F16 or BF16");
  if (e.dtype == FileDType::F32) {
    read_bytes(e, out);
    return;
  }
  // Half-width: read into a scratch buffer in chunks, widen.
  FilePtr f = open_for_reading(path_);
  if (::fseeko(f.get(), off_t(data_start_ + e.begin), SEEK_SET) != 0)
    throw Error(path_ + ": tensor " + name + ": cannot seek");
  std::vector<uint16_t> buf(std::min<size_t>(e.numel, size_t(1) << 22));
  for (size_t done = 0; done < e.numel;) {
    const size_t n = std::min(buf.size(), e.numel - done);
    if (std::fread(buf.data(), 2, n, f.get()) != n)
      throw Error(path_ + ": tensor " + name + ": truncated (file changed while reading?)");
    if (e.dtype == FileDType::BF16)
      for (size_t i = 0; i < n; ++i) out[done + i] = bf16_to_float(buf[i]);
    else
      for (size_t i = 0; i < n; ++i) out[done + i] = fp16_to_float(buf[i]);
    done += n;
  }
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  std::vector<float> out(entry(name).numel);
  read_f32(name, out.data());
  return out;
}

std::vector<int64_t> SafetensorsFile::read_i64(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  std::vector<int64_t> out(e.numel);
  if (e.dtype == FileDType::I64) {
    read_bytes(e, out.data());
  } else if (e.dtype == FileDType::I32) {
    std::vector<int32_t> tmp(e.numel);
    read_bytes(e, tmp.data());
    for (size_t i = 0; i < e.numel; ++i) out[i] = tmp[i];
  } else {
    throw Error(path_ + ": tensor " + name + " has dtype " + dtype_name(e.dtype) +
                ", expected I32 or I64");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& given,
                       const std::map<std::string, std::string>& metadata) {
  // The layout Hugging Face's serializer writes, so an exported file is
  // byte-identical to theirs: tensors by dtype (its enum order, descending:
  // F32, BF16, F16), then by name, data in that order; the header keeps
  // insertion order ("__metadata__" first; per tensor dtype, shape,
  // data_offsets) and is padded with spaces to a multiple of 8 bytes.
  auto dtype_rank = [](FileDType d) { return d == FileDType::F32 ? 2 : d == FileDType::BF16 ? 1 : 0; };
  std::vector<SafetensorsTensor> tensors = given;
  std::sort(tensors.begin(), tensors.end(),
            [&](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              if (dtype_rank(a.dtype) != dtype_rank(b.dtype))
                return dtype_rank(a.dtype) > dtype_rank(b.dtype);
              return a.name < b.name;
            });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const SafetensorsTensor& t : tensors) {
    require(t.dtype == FileDType::F32 || t.dtype == FileDType::F16 || t.dtype == FileDType::BF16,
            path + ": tensor " + t.name + ": can only write F32, F16 or BF16");
    require(t.name != "__metadata__" && seen.insert(t.name).second,
            path + ": tensor name " + t.name + " used twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      require(d >= 0, path + ": tensor " + t.name + ": negative dimension");
      numel *= uint64_t(d);
    }
    const uint64_t bytes = numel * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';

  AtomicFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(len, 8);
  out.write(text.data(), text.size());
  std::vector<uint16_t> buf;
  for (const SafetensorsTensor& t : tensors) {
    size_t numel = 1;
    for (int64_t d : t.shape) numel *= size_t(d);
    if (t.dtype == FileDType::F32) {
      out.write(t.data, numel * 4);
      continue;
    }
    buf.resize(std::min<size_t>(numel, size_t(1) << 22));
    for (size_t done = 0; done < numel;) {
      const size_t n = std::min(buf.size(), numel - done);
      for (size_t i = 0; i < n; ++i) {
        const float value = t.data[done + i];
        buf[i] = t.dtype == FileDType::BF16 ? float_to_bf16(value) : float_to_fp16(value);
        // A finite weight must stay finite in the narrower format (fp16 tops
        // out at 65504); the uncommitted file is removed on the throw.
        const float stored = t.dtype == FileDType::BF16 ? bf16_to_float(buf[i]) : fp16_to_float(buf[i]);
        require(!std::isfinite(value) || std::isfinite(stored),
                path + ": tensor " + t.name + " holds " + std::to_string(value) +
                    ", beyond the range of " + dtype_name(t.dtype) + " (export as bf16 or fp32)");
      }
      out.write(buf.data(), n * 2);
      done += n;
    }
  }
  out.commit();
}

}  // namespace polaris
