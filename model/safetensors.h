// .safetensors: read and write.
//
// File layout (https://github.com/huggingface/safetensors):
//   u64 little-endian N | N bytes of JSON header | data
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets into the data section, end exclusive) plus an optional "__metadata__"
// object of string -> string. Data is little-endian, row-major, no padding between
// elements.
//
// Supported dtypes: F32, F16, BF16 (read as fp32, exactly: every bf16 and fp16 value,
// subnormals, inf and nan included, is representable in fp32) and I32, I64 (read as
// int64, for token ids). Writing takes fp32 data and stores F32, F16 or BF16
// (rounding to nearest, ties to even).
//
// SafetensorsFile parses and validates the header when opened and reads tensor data
// on demand, so a 16 GB checkpoint is never held in memory twice. Every problem is
// an Error naming the file (and the tensor): header length beyond the file, bad
// JSON, unknown dtype, data_offsets out of range or not matching shape * dtype size.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace polaris {

// A tensor's element type in a file (safetensors names; Ops buffers use
// DType, model/ops.h).
enum class FileDType { F32, F16, BF16, I32, I64 };

// "F32", "F16", "BF16", "I32", "I64".
const char* dtype_name(FileDType dtype);
size_t dtype_size(FileDType dtype);
bool is_float_dtype(FileDType dtype);

// The IEEE-754 bit pattern of an fp32 value, and the value of a bit pattern.
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Exact widening conversions and round-to-nearest-even narrowing ones. NaN stays NaN
// (quiet), overflow goes to inf (fp16), fp16 subnormals are produced and read.
float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
float fp16_to_float(uint16_t bits);
uint16_t float_to_fp16(float value);
// value rounded to the dtype (F32: unchanged) and back to fp32.
float round_to_dtype(float value, FileDType dtype);

struct SafetensorsEntry {
  std::string name;
  FileDType dtype = FileDType::F32;
  std::vector<int64_t> shape;
  size_t numel = 0;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Opens and validates `path`; Error on any problem.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  // Error "<path>: tensor <name> is missing" when absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A float tensor (F32/F16/BF16) as fp32. `out` must hold entry(name).numel floats.
  void read_f32(const std::string& name, float* out) const;
  std::vector<float> read_f32(const std::string& name) const;
  // An integer tensor (I32/I64) as int64.
  std::vector<int64_t> read_i64(const std::string& name) const;
  // The tensor's bytes exactly as stored.
  std::vector<uint8_t> read_raw(const std::string& name) const;

 private:
  void read_bytes(const SafetensorsEntry& e, void* out) const;
  std::string path_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: fp32 data (numel = product of shape), stored as `dtype`
// (F32, F16 or BF16).
struct SafetensorsTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  FileDType dtype = FileDType::F32;
};

// Writes `path` atomically (path.tmp, then rename); data in the order given, header
// padded with spaces to a multiple of 8 bytes. metadata goes to "__metadata__".
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A FILE* closed when it goes out of scope (reads; writes use AtomicFile).
struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// A file written to "<path>.tmp" and renamed to `path` by commit(); destroyed
// without commit() (an error on the way), the .tmp file is removed, so a failed
// write never leaves a half-written `path`. Every write is checked.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();  // flush, fsync, close, rename
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

// "[2, 3]".
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace polaris
