// Checkpoints in HDF5 (C API). Every HDF5 call is checked: a negative
// hid_t/herr_t becomes one Error line naming the file and the call. HDF5's own
// error-stack printing is switched off so nothing else reaches stderr.
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>

#include "checkpoint/sha256.h"
#include "data/json_input.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "src/common/error.h"

namespace polaris {
namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;
const char* const kFiles[] = {"model.h5", "optimizer.h5", "state.json", "extra.h5"};
const char* const kManifest = "manifest.json";
constexpr int kManifestVersion = 1;
constexpr uint64_t kManifestMaxBytes = uint64_t(1) << 20;

void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// Throws Error("<file>: <call> failed") when an HDF5 call returned < 0.
template <typename T>
T check(T result, const std::string& file, const std::string& call) {
  if (result < 0) throw Error(file + ": HDF5 " + call + " failed");
  return result;
}

// An owned HDF5 identifier, closed by its destructor (errors ignored there) or
// by close() (checked). The write path closes every file, group, dataset and
// attribute with close(), since a failed close can mean data never reached
// the file; the destructor only cleans up after an error or on reads.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  void close(const std::string& file, const std::string& call) {
    hid_t id = id_;
    id_ = -1;
    check(closer_(id), file, call);
  }

 private:
  hid_t id_;
  Closer closer_;
};

// ---- writing -------------------------------------------------------------

void write_attr(hid_t obj, const std::string& name, hid_t type, const void* data, size_t n,
                const std::string& file) {
  hsize_t dims = n;
  Handle space(check(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nullptr), file,
                     "H5Screate (" + name + ")"),
               H5Sclose);
  Handle attr(check(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    file, "H5Acreate2 (" + name + ")"),
              H5Aclose);
  check(H5Awrite(attr.get(), type, data), file, "H5Awrite (" + name + ")");
  attr.close(file, "H5Aclose (" + name + ")");
}
void write_int(hid_t obj, const std::string& name, int64_t value, const std::string& file) {
  write_attr(obj, name, H5T_NATIVE_INT64, &value, 1, file);
}
void write_float(hid_t obj, const std::string& name, float value, const std::string& file) {
  write_attr(obj, name, H5T_NATIVE_FLOAT, &value, 1, file);
}

void write_floats(hid_t loc, const std::string& name, const std::vector<float>& data,
                  const std::string& file) {
  hsize_t dims = data.size();
  Handle space(check(H5Screate_simple(1, &dims, nullptr), file, "H5Screate_simple (" + name + ")"),
               H5Sclose);
  Handle set(check(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT),
                   file, "H5Dcreate2 (" + name + ")"),
             H5Dclose);
  if (!data.empty())
    check(H5Dwrite(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), file,
          "H5Dwrite (" + name + ")");
  set.close(file, "H5Dclose (" + name + ")");
}

Handle create_file(const std::string& file) {
  return Handle(check(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), file,
                      "H5Fcreate"),
                H5Fclose);
}
Handle create_group(hid_t loc, const std::string& name, const std::string& file) {
  return Handle(check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file,
                      "H5Gcreate2 (" + name + ")"),
                H5Gclose);
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path + ": cannot open to fsync: " + errno_text());
  bool ok = ::fsync(fd) == 0;
  std::string why = errno_text();
  ::close(fd);
  if (!ok) throw Error(path + ": fsync failed: " + why);
}

void write_model(const std::string& file, const Checkpoint& c, const ParamLayout& layout) {
  Handle f = create_file(file);
  {
    hid_t root = f.get();
    const ModelConfig& k = c.config;
    write_int(root, "format_version", kFormatVersion, file);
    write_int(root, "family", int64_t(k.family), file);
    write_int(root, "vocab_size", k.vocab_size, file);
    write_int(root, "hidden_size", k.hidden_size, file);
    write_int(root, "num_layers", k.num_layers, file);
    write_int(root, "num_heads", k.num_heads, file);
    write_int(root, "num_kv_heads", k.num_kv_heads, file);
    write_int(root, "head_dim", k.head_dim, file);
    write_int(root, "intermediate_size", k.intermediate_size, file);
    write_int(root, "max_positions", k.max_positions, file);
    write_float(root, "rope_theta", k.rope_theta, file);
    write_float(root, "norm_eps", k.norm_eps, file);
    write_int(root, "tied_embeddings", k.tied_embeddings ? 1 : 0, file);
    if (k.rope_scaling.is_yarn()) {  // absent: plain RoPE (and every older checkpoint)
      const RopeScaling& s = k.rope_scaling;
      write_int(root, "rope_scaling_type", int64_t(s.type), file);
      write_float(root, "rope_scaling_factor", s.factor, file);
      write_int(root, "rope_scaling_original_max_positions", s.original_max_positions, file);
      write_float(root, "rope_scaling_beta_fast", s.beta_fast, file);
      write_float(root, "rope_scaling_beta_slow", s.beta_slow, file);
      write_float(root, "rope_scaling_attention_factor", s.attention_factor, file);
      write_int(root, "rope_scaling_truncate", s.truncate ? 1 : 0, file);
    }
    write_floats(root, "params", c.params, file);
    Handle tensors = create_group(root, "tensors", file);
    for (const TensorInfo& t : layout.tensors) {
      Handle g = create_group(tensors.get(), t.name, file);
      write_int(g.get(), "offset", int64_t(t.offset), file);
      write_attr(g.get(), "shape", H5T_NATIVE_INT64, t.shape.data(), t.shape.size(), file);
      g.close(file, "H5Gclose (" + t.name + ")");
    }
    tensors.close(file, "H5Gclose (tensors)");
  }
  f.close(file, "H5Fclose");
}

void write_optimizer(const std::string& file, const std::vector<OptimizerShard>& shards) {
  Handle f = create_file(file);
  write_int(f.get(), "num_shards", int64_t(shards.size()), file);
  for (size_t i = 0; i < shards.size(); ++i) {
    const OptimizerShard& s = shards[i];
    Handle g = create_group(f.get(), "shard_" + std::to_string(i), file);
    write_int(g.get(), "begin", int64_t(s.begin), file);
    write_int(g.get(), "end", int64_t(s.end), file);
    write_int(g.get(), "step", s.step, file);
    write_floats(g.get(), "m", s.m, file);
    write_floats(g.get(), "v", s.v, file);
    g.close(file, "H5Gclose (shard_" + std::to_string(i) + ")");
  }
  f.close(file, "H5Fclose");
}

void write_extra(const std::string& file, const std::map<std::string, std::vector<float>>& extra) {
  Handle f = create_file(file);
  for (const auto& [name, values] : extra) write_floats(f.get(), name, values, file);
  f.close(file, "H5Fclose");
}

void validate(const std::string& dir, const Checkpoint& c, const ParamLayout& layout) {
  const std::string what = dir + ": cannot write checkpoint: ";
  require(c.params.size() == layout.total,
          what + "params has " + std::to_string(c.params.size()) + " values, the config's layout " +
              std::to_string(layout.total));
  for (size_t i = 0; i < c.optimizer.size(); ++i) {
    const OptimizerShard& s = c.optimizer[i];
    std::string shard = "optimizer shard " + std::to_string(i) + " ";
    require(s.begin <= s.end && s.end <= layout.total,
            what + shard + "range [" + std::to_string(s.begin) + ", " + std::to_string(s.end) +
                ") is outside the " + std::to_string(layout.total) + " parameters");
    require(s.m.size() == s.end - s.begin && s.v.size() == s.end - s.begin,
            what + shard + "moments do not match its range");
  }
  for (const auto& [name, values] : c.extra_tensors)
    require(!name.empty() && name.find('/') == std::string::npos && name != ".",
            what + "extra tensor name '" + name + "' is empty or contains '/'");
}

// ---- the manifest ----------------------------------------------------------

// One listed file: its name in the step directory, size and SHA-256 (hex).
struct ManifestEntry {
  std::string name, sha256;
  uint64_t size = 0;
};

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char ch : s)
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  return true;
}

// Parses and checks the shape of PATH/manifest.json (bounded read, no file
// outside it is touched). Each problem is one Error naming manifest.json.
std::vector<ManifestEntry> read_manifest(const std::string& path) {
  const std::string file = path + "/" + kManifest;
  const nlohmann::json m = parse_json_or_throw(
      read_text_file_bounded(file, kManifestMaxBytes, "a manifest.json"), file, "not valid JSON");
  require(m.is_object() && m.contains("files") && m["files"].is_array(),
          file + ": expected an object with a \"files\" array (corrupt)");
  require(m.contains("version") && m["version"].is_number_integer() &&
              m["version"].get<int64_t>() == kManifestVersion,
          file + ": \"version\" must be " + std::to_string(kManifestVersion) + " (corrupt, or "
                 "written by a newer build)");
  std::vector<ManifestEntry> entries;
  std::map<std::string, int> seen;
  for (const nlohmann::json& e : m["files"]) {
    const std::string at = file + ": files[" + std::to_string(entries.size()) + "] ";
    require(e.is_object() && e.contains("name") && e["name"].is_string() && e.contains("size") &&
                e["size"].is_number_unsigned() && e.contains("sha256") && e["sha256"].is_string(),
            at + "needs a string \"name\", a non-negative integer \"size\" and a string "
                 "\"sha256\" (corrupt)");
    ManifestEntry entry;
    entry.name = e["name"].get<std::string>();
    entry.size = e["size"].get<uint64_t>();
    entry.sha256 = e["sha256"].get<std::string>();
    require(!entry.name.empty() && entry.name != "." && entry.name != ".." &&
                entry.name.find('/') == std::string::npos && entry.name.find('\0') == std::string::npos &&
                entry.name != kManifest,
            at + "names '" + entry.name + "', not a file of the step directory (corrupt)");
    require(seen[entry.name]++ == 0, at + "lists '" + entry.name + "' twice (corrupt)");
    require(is_hex64(entry.sha256),
            at + "sha256 of '" + entry.name + "' is not 64 lowercase hex digits (corrupt)");
    entries.push_back(std::move(entry));
  }
  return entries;
}

// A file's SHA-256 (hex) and the number of bytes hashed.
struct Digest {
  std::string hex;
  uint64_t bytes = 0;
};

// The digest of each named file of PATH, one thread per file (a checkpoint
// has a few files, the big ones of similar size: hashing is ~250 MB/s a core).
std::vector<Digest> sha256_files(const std::string& path, const std::vector<std::string>& names) {
  std::vector<std::future<Digest>> jobs;
  for (const std::string& name : names)
    jobs.push_back(std::async(std::launch::async, [file = path + "/" + name] {
      Digest d;
      d.hex = sha256_file(file, &d.bytes);
      return d;
    }));
  std::vector<Digest> out;
  for (auto& job : jobs) out.push_back(job.get());  // rethrows a job's Error
  return out;
}

// Verifies PATH against its manifest.json: every file in the directory is
// listed, every listed file exists with its size and SHA-256. Returns false
// (checking nothing) when there is no manifest.json (a checkpoint written by
// an older build). Uses only file-system calls and reads: no HDF5.
bool verify_manifest(const std::string& path) {
  require(fs::is_directory(path), path + ": no such checkpoint directory");
  const std::string file = path + "/" + kManifest;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(file, ec))) return false;
  const std::vector<ManifestEntry> entries = read_manifest(path);
  std::map<std::string, const ManifestEntry*> listed;
  for (const ManifestEntry& e : entries) listed[e.name] = &e;

  std::vector<std::string> present;
  for (const auto& entry : fs::directory_iterator(path, ec)) present.push_back(entry.path().filename());
  require(!ec, path + ": cannot list: " + ec.message());
  std::sort(present.begin(), present.end());
  for (const std::string& name : present)
    require(name == kManifest || listed.count(name),
            path + "/" + name + ": not listed in manifest.json (a stray file, or a corrupt manifest)");
  // Sizes first (cheap: catches truncation before any hashing), then contents.
  for (const ManifestEntry& e : entries) {
    const std::string p = path + "/" + e.name;
    require(fs::is_regular_file(fs::symlink_status(p, ec)),
            p + ": missing (listed in manifest.json) or not a regular file");
    const uint64_t size = fs::file_size(p, ec);
    require(!ec, p + ": cannot stat: " + ec.message());
    require(size == e.size, p + ": " + std::to_string(size) + " bytes, manifest.json says " +
                                std::to_string(e.size) + " (truncated or corrupt)");
  }
  std::vector<std::string> names;
  for (const ManifestEntry& e : entries) names.push_back(e.name);
  const std::vector<Digest> digests = sha256_files(path, names);
  for (size_t i = 0; i < entries.size(); ++i) {
    const ManifestEntry& e = entries[i];
    const std::string p = path + "/" + e.name;
    const uint64_t bytes = digests[i].bytes;
    const std::string& hex = digests[i].hex;
    require(bytes == e.size, p + ": read " + std::to_string(bytes) + " bytes, manifest.json says " +
                                 std::to_string(e.size) + " (changed while being verified?)");
    require(hex == e.sha256, p + ": SHA-256 " + hex.substr(0, 16) + "... does not match manifest.json's " +
                                 e.sha256.substr(0, 16) + "... (the file, or manifest.json, is corrupt)");
  }
  return true;
}

// verify_manifest, warning about a checkpoint without one: one line on stdout,
// with the programs' other progress lines (stderr is kept to the one error line).
void verify_or_warn(const std::string& path) {
  if (!verify_manifest(path)) {
    std::printf("warning: %s: no manifest.json (written by an older build): its files are not "
                "checksummed\n",
                path.c_str());
    std::fflush(stdout);
  }
}

// ---- reading -------------------------------------------------------------

Handle open_file(const std::string& file) {
  require(fs::is_regular_file(file), file + ": missing");
  hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  require(id >= 0, file + ": not a readable HDF5 file (truncated or corrupt)");
  return Handle(id, H5Fclose);
}

bool has_link(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

Handle open_group(hid_t loc, const std::string& name, const std::string& file) {
  require(has_link(loc, name), file + ": missing group '" + name + "'");
  return Handle(check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), file, "H5Gopen2 (" + name + ")"),
                H5Gclose);
}

// Reads the n-value attribute `name` into data (converted to mem_type).
void read_attr(hid_t obj, const std::string& name, hid_t mem_type, void* data, size_t n,
               const std::string& file) {
  require(H5Aexists(obj, name.c_str()) > 0, file + ": missing attribute '" + name + "'");
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), file, "H5Aopen (" + name + ")"),
              H5Aclose);
  Handle space(check(H5Aget_space(attr.get()), file, "H5Aget_space (" + name + ")"), H5Sclose);
  hssize_t count = check(H5Sget_simple_extent_npoints(space.get()), file, "H5Sget_simple_extent_npoints");
  require(size_t(count) == n, file + ": attribute '" + name + "' has " + std::to_string(count) +
                                  " values, expected " + std::to_string(n));
  check(H5Aread(attr.get(), mem_type, data), file, "H5Aread (" + name + ")");
}
int64_t read_int(hid_t obj, const std::string& name, const std::string& file) {
  int64_t value = 0;
  read_attr(obj, name, H5T_NATIVE_INT64, &value, 1, file);
  return value;
}
float read_float(hid_t obj, const std::string& name, const std::string& file) {
  float value = 0;
  read_attr(obj, name, H5T_NATIVE_FLOAT, &value, 1, file);
  return value;
}
std::vector<int64_t> read_ints(hid_t obj, const std::string& name, const std::string& file) {
  require(H5Aexists(obj, name.c_str()) > 0, file + ": missing attribute '" + name + "'");
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), file, "H5Aopen (" + name + ")"),
              H5Aclose);
  Handle space(check(H5Aget_space(attr.get()), file, "H5Aget_space (" + name + ")"), H5Sclose);
  hssize_t count = check(H5Sget_simple_extent_npoints(space.get()), file, "H5Sget_simple_extent_npoints");
  require(count <= 64, file + ": attribute '" + name + "' has " + std::to_string(count) +
                           " values (at most 64)");
  std::vector<int64_t> values(static_cast<size_t>(count));
  if (count > 0) check(H5Aread(attr.get(), H5T_NATIVE_INT64, values.data()), file, "H5Aread (" + name + ")");
  return values;
}

// Reads the 1-D fp32 dataset `name`; `expected` (when not kAbsent) is its required length.
std::vector<float> read_floats(hid_t loc, const std::string& name, const std::string& file,
                               size_t expected = kAbsent, const std::string& why = "") {
  require(has_link(loc, name), file + ": missing dataset '" + name + "'");
  Handle set(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), file, "H5Dopen2 (" + name + ")"),
             H5Dclose);
  Handle type(check(H5Dget_type(set.get()), file, "H5Dget_type (" + name + ")"), H5Tclose);
  require(H5Tget_class(type.get()) == H5T_FLOAT && H5Tget_size(type.get()) == 4,
          file + ": dataset '" + name + "' is not fp32");
  Handle space(check(H5Dget_space(set.get()), file, "H5Dget_space (" + name + ")"), H5Sclose);
  int rank = check(H5Sget_simple_extent_ndims(space.get()), file, "H5Sget_simple_extent_ndims");
  require(rank == 1, file + ": dataset '" + name + "' has rank " + std::to_string(rank) + ", expected 1");
  hsize_t n = 0;
  check(H5Sget_simple_extent_dims(space.get(), &n, nullptr), file, "H5Sget_simple_extent_dims");
  require(expected == kAbsent || n == expected,
          file + ": dataset '" + name + "' has " + std::to_string(n) + " values, expected " +
              std::to_string(expected) + why);
  // The extent is only a number in the file: its data must really be stored
  // (uncompressed fp32) before a buffer of that size is allocated.
  const hsize_t stored = H5Dget_storage_size(set.get());
  require(n <= (hsize_t(1) << 60) && stored >= n * 4,
          file + ": dataset '" + name + "' claims " + std::to_string(n) + " values but stores " +
              std::to_string(stored) + " bytes (truncated or corrupt)");
  std::vector<float> data(n);
  if (n) check(H5Dread(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()),
               file, "H5Dread (" + name + ") (truncated or corrupt?)");
  return data;
}

// Names of the links directly under `loc`, in name order.
std::vector<std::string> link_names(hid_t loc, const std::string& file) {
  H5G_info_t info;
  check(H5Gget_info(loc, &info), file, "H5Gget_info");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = check(H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0,
                                           H5P_DEFAULT),
                        file, "H5Lget_name_by_idx");
    std::string name(size_t(len) + 1, '\0');
    check(H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                             H5P_DEFAULT),
          file, "H5Lget_name_by_idx");
    name.resize(size_t(len));
    names.push_back(name);
  }
  return names;
}

// state.json's shape: an object whose run fields, where present, have their
// types and ranges (the training loop reads them as ints and counters; a
// negative or 64-bit value would wrap there). Presence is the loop's check.
void check_state(const nlohmann::json& state, const std::string& file) {
  require(state.is_object(), file + ": expected a JSON object, got " +
                                 std::string(state.type_name()));
  auto integer_in = [&](const nlohmann::json& obj, const char* key, const std::string& name,
                        int64_t lo, int64_t hi) {
    if (!obj.contains(key)) return;
    const nlohmann::json& v = obj[key];
    const bool ok = (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(hi) &&
                     int64_t(v.get<uint64_t>()) >= lo) ||
                    (v.is_number_integer() && !v.is_number_unsigned() &&
                     v.get<int64_t>() >= lo && v.get<int64_t>() <= hi);
    require(ok, file + ": \"" + name + "\" must be an integer in [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "], got " + v.dump());
  };
  integer_in(state, "step", "step", 0, INT32_MAX);
  integer_in(state, "world_size", "world_size", 1, 1 << 20);
  integer_in(state, "zero", "zero", 0, 2);
  for (const char* key : {"flags", "loop"})
    if (state.contains(key))
      require(state[key].is_object(), file + ": \"" + std::string(key) + "\" must be an object, got " +
                                          std::string(state[key].type_name()));
  checkpoint_state_tokenizer(state, file);
  if (!state.contains("loop")) return;
  const nlohmann::json& loop = state["loop"];
  // Counters the loops restore (pretrain, SFT, GRPO): non-negative integers
  // that a double holds exactly.
  const int64_t kMaxCounter = int64_t(1) << 53;
  for (const char* key : {"data_epoch", "data_cursor", "rows_taken", "epoch", "prompts_taken"})
    integer_in(loop, key, std::string("loop.") + key, 0, kMaxCounter);
  if (loop.contains("eval_before"))
    require(loop["eval_before"].is_number(),
            file + ": \"loop.eval_before\" must be a number, got " + loop["eval_before"].dump());
  if (loop.contains("ranks")) {
    const nlohmann::json& ranks = loop["ranks"];
    require(ranks.is_array(), file + ": \"loop.ranks\" must be an array");
    for (const nlohmann::json& v : ranks) {
      const bool ok = (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(kMaxCounter)) ||
                      (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMaxCounter) ||
                      (v.is_number_float() && v.get<double>() >= 0 && v.get<double>() <= double(kMaxCounter) &&
                       v.get<double>() == std::floor(v.get<double>()));
      require(ok, file + ": \"loop.ranks\" holds " + v.dump() + ", not a non-negative counter");
    }
  }
}

void read_model(const std::string& file, Checkpoint& c) {
  Handle f = open_file(file);
  hid_t root = f.get();
  int64_t version = read_int(root, "format_version", file);
  require(version == kFormatVersion, file + ": format_version " + std::to_string(version) +
                                         ", this build reads " + std::to_string(kFormatVersion));
  ModelConfig& k = c.config;
  int64_t family = read_int(root, "family", file);
  require(family == int64_t(Family::GPT2) || family == int64_t(Family::Qwen3),
          file + ": unknown family " + std::to_string(family));
  k.family = Family(family);
  auto i32 = [&](const char* name) {
    const int64_t value = read_int(root, name, file);
    require(value >= INT32_MIN && value <= INT32_MAX,
            file + ": attribute '" + name + "' = " + std::to_string(value) +
                " is outside the int32 range");
    return int(value);
  };
  k.vocab_size = i32("vocab_size");
  k.hidden_size = i32("hidden_size");
  k.num_layers = i32("num_layers");
  k.num_heads = i32("num_heads");
  k.num_kv_heads = i32("num_kv_heads");
  k.head_dim = i32("head_dim");
  k.intermediate_size = i32("intermediate_size");
  k.max_positions = i32("max_positions");
  k.rope_theta = read_float(root, "rope_theta", file);
  k.norm_eps = read_float(root, "norm_eps", file);
  k.tied_embeddings = i32("tied_embeddings") != 0;
  if (H5Aexists(root, "rope_scaling_type") > 0) {
    const int type = i32("rope_scaling_type");
    require(type == int(RopeType::Yarn),
            file + ": unknown rope_scaling_type " + std::to_string(type) + " (1 yarn)");
    RopeScaling& s = k.rope_scaling;
    s.type = RopeType::Yarn;
    s.factor = read_float(root, "rope_scaling_factor", file);
    s.original_max_positions = i32("rope_scaling_original_max_positions");
    s.beta_fast = read_float(root, "rope_scaling_beta_fast", file);
    s.beta_slow = read_float(root, "rope_scaling_beta_slow", file);
    s.attention_factor = read_float(root, "rope_scaling_attention_factor", file);
    s.truncate = i32("rope_scaling_truncate") != 0;
  }
  k.validate(file);
  const ParamLayout layout = build_param_layout(k);

  // The tensor table must be exactly the config's layout.
  Handle tensors = open_group(root, "tensors", file);
  std::vector<std::string> names = link_names(tensors.get(), file);
  require(names.size() == layout.tensors.size(),
          file + ": tensor table has " + std::to_string(names.size()) +
              " entries, the config's layout " + std::to_string(layout.tensors.size()));
  for (const TensorInfo& t : layout.tensors) {
    require(has_link(tensors.get(), t.name), file + ": tensor table lacks '" + t.name + "'");
    Handle g = open_group(tensors.get(), t.name, file);
    int64_t offset = read_int(g.get(), "offset", file);
    std::vector<int64_t> shape = read_ints(g.get(), "shape", file);
    require(offset == int64_t(t.offset) && shape == t.shape,
            file + ": tensor '" + t.name + "' is stored at offset " + std::to_string(offset) +
                " with shape " + shape_string(shape) + ", the config's layout says offset " +
                std::to_string(t.offset) + " shape " + shape_string(t.shape));
  }
  c.params = read_floats(root, "params", file, layout.total, " (the config's layout)");
  require_finite_params(layout, c.params, file);
}

void read_optimizer(const std::string& file, size_t total, Checkpoint& c) {
  Handle f = open_file(file);
  int64_t n = read_int(f.get(), "num_shards", file);
  require(n >= 0, file + ": negative num_shards");
  for (int64_t i = 0; i < n; ++i) {
    const std::string name = "shard_" + std::to_string(i);
    Handle g = open_group(f.get(), name, file);
    OptimizerShard s;
    int64_t begin = read_int(g.get(), "begin", file), end = read_int(g.get(), "end", file);
    require(0 <= begin && begin <= end && size_t(end) <= total,
            file + ": " + name + " range [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") is outside the " + std::to_string(total) + " parameters");
    s.begin = size_t(begin);
    s.end = size_t(end);
    const int64_t step = read_int(g.get(), "step", file);
    require(step >= 0 && step <= INT32_MAX,
            file + ": " + name + " step " + std::to_string(step) + " is negative or too large");
    s.step = int(step);
    s.m = read_floats(g.get(), "m", file, s.end - s.begin, " (" + name + "'s range)");
    s.v = read_floats(g.get(), "v", file, s.end - s.begin, " (" + name + "'s range)");
    for (size_t k = 0; k < s.m.size(); ++k)
      require(std::isfinite(s.m[k]) && std::isfinite(s.v[k]) && s.v[k] >= 0.f,
              file + ": " + name + " holds a non-finite moment (or a negative second moment) at element " +
                  std::to_string(s.begin + k));
    c.optimizer.push_back(std::move(s));
  }
}

void read_extra(const std::string& file, Checkpoint& c) {
  Handle f = open_file(file);
  for (const std::string& name : link_names(f.get(), file))
    c.extra_tensors[name] = read_floats(f.get(), name, file);
}

// "" when `path` is a directory holding every checkpoint file, else what is wrong.
std::string incomplete(const std::string& path) {
  if (!fs::is_directory(path)) return "missing";
  for (const char* name : kFiles)
    if (!fs::is_regular_file(path + "/" + name)) return std::string("incomplete (no ") + name + ")";
  return "";
}

// The step of a directory named step_<digits>, or -1.
long long step_of(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0) return -1;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return name.size() > 15 ? -1 : std::stoll(name.substr(5));
}

// Complete-looking step directories under dir, oldest first.
std::vector<std::pair<long long, std::string>> step_dirs(const std::string& dir) {
  std::vector<std::pair<long long, std::string>> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    long long step = step_of(name);
    if (step >= 0 && entry.is_directory()) steps.push_back({step, name});
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// The path of the newest complete step directory under dir, or "".
std::string newest_complete(const std::string& dir) {
  std::vector<std::pair<long long, std::string>> steps = step_dirs(dir);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (incomplete(dir + "/" + it->second).empty()) return dir + "/" + it->second;
  return "";
}

}  // namespace

// ---- public --------------------------------------------------------------

std::string checkpoint_name(int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d", step);
  return name;
}

void write_checkpoint(const std::string& dir, int step, const Checkpoint& c, int keep_last) {
  quiet_hdf5();
  require(step >= 0, dir + ": cannot write checkpoint for negative step " + std::to_string(step));
  c.config.validate(dir);
  const ParamLayout layout = build_param_layout(c.config);
  validate(dir, c, layout);

  const std::string name = checkpoint_name(step);
  const std::string final_path = dir + "/" + name, tmp = final_path + ".tmp";
  std::error_code ec;
  fs::create_directories(dir, ec);
  require(!ec, dir + ": cannot create directory: " + ec.message());
  fs::remove_all(tmp, ec);  // a leftover from an interrupted write of this step
  require(fs::create_directory(tmp, ec) && !ec, tmp + ": cannot create directory: " + ec.message());

  try {
    write_model(tmp + "/model.h5", c, layout);
    write_optimizer(tmp + "/optimizer.h5", c.optimizer);
    write_extra(tmp + "/extra.h5", c.extra_tensors);
    AtomicFile state(tmp + "/state.json");
    nlohmann::json state_json = c.state;
    if (c.tokenizer.recorded())
      state_json["tokenizer"] = {{"vocab_size", c.tokenizer.vocab_size},
                                 {"sha256", c.tokenizer.sha256_hex()}};
    else
      state_json.erase("tokenizer");
    const std::string text = state_json.dump(2) + "\n";
    state.write(text.data(), text.size());
    state.commit();
    for (const char* file : {"model.h5", "optimizer.h5", "extra.h5"}) fsync_path(tmp + "/" + file);
    // The manifest last, over the files as they are on disk; the rename below
    // makes the step directory visible only with it in place.
    write_checkpoint_manifest(tmp);
    fsync_path(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);  // nothing half-written stays behind
    throw;
  }

  // Rewriting an existing step (a run resumed from an older checkpoint): move
  // the old one aside, so the rename below cannot fail on a non-empty target.
  const std::string old = final_path + ".old";
  fs::remove_all(old, ec);
  if (fs::exists(final_path)) {
    fs::rename(final_path, old, ec);
    require(!ec, final_path + ": cannot move the existing checkpoint aside: " + ec.message());
  }
  fs::rename(tmp, final_path, ec);
  require(!ec, final_path + ": cannot rename " + tmp + " into place: " + ec.message());
  fsync_path(dir);
  fs::remove_all(old, ec);

  {
    AtomicFile latest(dir + "/latest");
    const std::string text = name + "\n";
    latest.write(text.data(), text.size());
    latest.commit();
  }
  fsync_path(dir);

  // Prune: the keep_last newest step directories (and always this one) stay;
  // leftovers of interrupted writes go.
  std::vector<std::pair<long long, std::string>> steps = step_dirs(dir);
  for (size_t i = 0; keep_last > 0 && i + size_t(keep_last) < steps.size(); ++i)
    if (steps[i].second != name) fs::remove_all(dir + "/" + steps[i].second, ec);
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string n = entry.path().filename().string();
    for (const char* suffix : {".tmp", ".old"}) {
      size_t len = std::strlen(suffix);
      if (n.size() > len && n.compare(n.size() - len, len, suffix) == 0 &&
          step_of(n.substr(0, n.size() - len)) >= 0)
        fs::remove_all(entry.path(), ec);
    }
  }
}

std::string latest_checkpoint(const std::string& dir) {
  const std::string pointer = dir + "/latest";
  if (fs::exists(pointer)) {
    std::ifstream in(pointer);
    std::string name;
    require(bool(in >> name), pointer + ": cannot read");
    require(step_of(name) >= 0, pointer + ": '" + name + "' is not a step directory name");
    const std::string path = dir + "/" + name;
    const std::string why = incomplete(path);
    if (why.empty()) return path;
    // write_checkpoint rewriting an existing step moves it to <name>.old before
    // the new one is renamed in; a crash between the two renames leaves
    // `latest` pointing to a missing directory. Fall back to the moved-aside
    // copy, else to the newest complete step directory.
    if (!fs::exists(path)) {
      if (incomplete(path + ".old").empty()) return path + ".old";
      const std::string newest = newest_complete(dir);
      if (!newest.empty()) return newest;
    }
    throw Error(pointer + ": points to " + path + ", which is " + why);
  }
  return newest_complete(dir);
}

void write_checkpoint_manifest(const std::string& path) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename();
    if (name == kManifest) continue;
    require(entry.is_regular_file() && !entry.is_symlink(),
            path + "/" + name + ": not a regular file, cannot be listed in manifest.json");
    names.push_back(name);
  }
  require(!ec, path + ": cannot list: " + ec.message());
  std::sort(names.begin(), names.end());
  const std::vector<Digest> digests = sha256_files(path, names);
  nlohmann::json files = nlohmann::json::array();
  for (size_t i = 0; i < names.size(); ++i)
    files.push_back({{"name", names[i]}, {"size", digests[i].bytes}, {"sha256", digests[i].hex}});
  const nlohmann::json manifest = {{"version", kManifestVersion}, {"files", files}};
  AtomicFile out(path + "/" + kManifest);
  const std::string text = manifest.dump(2) + "\n";
  out.write(text.data(), text.size());
  out.commit();
}

bool verify_checkpoint(const std::string& path) { return verify_manifest(path); }

std::string latest_verified_checkpoint(const std::string& dir, std::vector<std::string>* skipped) {
  std::string newest, why;
  try {
    newest = latest_checkpoint(dir);
  } catch (const Error& e) {
    // DIR/latest names a step directory that exists but lacks a file (deleted
    // or lost since): passed over like one that fails verification.
    std::ifstream in(dir + "/latest");
    std::string name;
    if (!(in >> name) || step_of(name) < 0 || !fs::is_directory(dir + "/" + name)) throw;
    newest = dir + "/" + name;
    why = e.what();
  }
  if (newest.empty()) return "";
  if (why.empty()) {
    try {
      verify_or_warn(newest);
      return newest;
    } catch (const Error& e) {
      why = e.what();
    }
  }
  std::string name = fs::path(newest).filename();
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".old") == 0)
    name.resize(name.size() - 4);
  const long long newest_step = step_of(name);
  if (skipped) skipped->push_back(name + ": " + why);
  const std::vector<std::pair<long long, std::string>> steps = step_dirs(dir);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->first >= newest_step) continue;
    const std::string path = dir + "/" + it->second;
    const std::string missing = incomplete(path);
    if (!missing.empty()) {
      if (skipped) skipped->push_back(it->second + ": " + path + " is " + missing);
      continue;
    }
    try {
      verify_or_warn(path);
      return path;
    } catch (const Error& e) {
      if (skipped) skipped->push_back(it->second + ": " + e.what());
    }
  }
  throw Error(why + "; no older checkpoint in " + dir + " verifies either");
}

Checkpoint read_checkpoint(const std::string& path, bool verify) {
  quiet_hdf5();
  require(fs::is_directory(path), path + ": no such checkpoint directory");
  // Sizes and checksums before HDF5 opens anything: a flipped byte in HDF5's
  // metadata can crash the library itself.
  if (verify) verify_or_warn(path);
  Checkpoint c;
  read_model(path + "/model.h5", c);
  read_optimizer(path + "/optimizer.h5", c.params.size(), c);
  read_extra(path + "/extra.h5", c);

  c.state = read_checkpoint_state(path + "/state.json");
  c.tokenizer = checkpoint_state_tokenizer(c.state, path + "/state.json");
  return c;
}

nlohmann::json read_checkpoint_state(const std::string& file) {
  require(fs::exists(file), file + ": missing");
  nlohmann::json state = read_json_file(file, kJsonStateMaxBytes, "a state.json", "not valid JSON");
  check_state(state, file);
  return state;
}

TokenizerId checkpoint_state_tokenizer(const nlohmann::json& state, const std::string& file) {
  if (!state.is_object() || !state.contains("tokenizer")) return TokenizerId();
  const nlohmann::json& t = state["tokenizer"];
  require(t.is_object() && t.contains("vocab_size") && t["vocab_size"].is_number_integer() &&
              t.contains("sha256") && t["sha256"].is_string(),
          file + ": \"tokenizer\" must be {\"vocab_size\": N, \"sha256\": \"<64 hex digits>\"}");
  const int64_t vocab = t["vocab_size"].get<int64_t>();
  require(vocab > 0 && vocab <= INT32_MAX,
          file + ": \"tokenizer.vocab_size\" must be in [1, " + std::to_string(INT32_MAX) +
              "], got " + t["vocab_size"].dump());
  return TokenizerId::from_hex(int32_t(vocab), t["sha256"].get<std::string>(), file);
}

std::vector<OptimizerShard> reshard(const std::vector<OptimizerShard>& from,
                                    const std::vector<std::pair<size_t, size_t>>& to_ranges) {
  require(!from.empty(), "reshard: no optimizer shards to re-shard");
  std::vector<const OptimizerShard*> sorted;
  for (const OptimizerShard& s : from) {
    require(s.begin <= s.end && s.m.size() == s.end - s.begin && s.v.size() == s.end - s.begin,
            "reshard: shard [" + std::to_string(s.begin) + ", " + std::to_string(s.end) +
                ") has moments of the wrong size");
    require(s.step == from[0].step, "reshard: shards disagree on the step (" +
                                        std::to_string(from[0].step) + " vs " +
                                        std::to_string(s.step) + ")");
    sorted.push_back(&s);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const OptimizerShard* a, const OptimizerShard* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    require(sorted[i]->begin == sorted[i - 1]->end,
            "reshard: shards leave a gap or overlap at " + std::to_string(sorted[i - 1]->end));
  const size_t lo = sorted.front()->begin, hi = sorted.back()->end;

  std::vector<OptimizerShard> to;
  for (const auto& [begin, end] : to_ranges) {
    require(lo <= begin && begin <= end && end <= hi,
            "reshard: range [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") is outside the saved [" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
    OptimizerShard s;
    s.begin = begin;
    s.end = end;
    s.step = from[0].step;
    s.m.resize(end - begin);
    s.v.resize(end - begin);
    for (const OptimizerShard* src : sorted) {
      size_t a = std::max(begin, src->begin), b = std::min(end, src->end);
      if (a >= b) continue;
      std::copy(src->m.begin() + (a - src->begin), src->m.begin() + (b - src->begin),
                s.m.begin() + (a - begin));
      std::copy(src->v.begin() + (a - src->begin), src->v.begin() + (b - src->begin),
                s.v.begin() + (a - begin));
    }
    to.push_back(std::move(s));
  }
  return to;
}

}  // namespace polaris
