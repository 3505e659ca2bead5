// model.bin, .safetensors and Hugging Face import/export: round trips, the exact
// dtype conversions, every bad-input case, and the presets' parameter counts.
// Run from the repository root (fixtures are read from tests/fixtures/).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <nlohmann/json.hpp>

#include "model/hf_import.h"
#include "model/model_file.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;
namespace fs = std::filesystem;

namespace {

const std::string kQwenHf = "tests/fixtures/qwen3_tiny/hf_model";
const std::string kGpt2Hf = "tests/fixtures/gpt2_tiny/hf_model";

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A .safetensors file from a header string and data bytes; header_len overrides
// the stored length.
void write_raw_safetensors(const std::string& path, const std::string& header,
                           size_t data_bytes, int64_t header_len = -1) {
  std::vector<uint8_t> bytes(8);
  uint64_t n = header_len < 0 ? header.size() : uint64_t(header_len);
  for (int i = 0; i < 8; ++i) bytes[i] = uint8_t(n >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.resize(bytes.size() + data_bytes, 0);
  write_bytes(path, bytes);
}

ModelConfig tiny(const std::string& preset) { return config_from_preset(preset); }

std::vector<float> random_params(const ModelConfig& c, uint64_t seed) {
  ParamLayout layout = build_param_layout(c);
  std::vector<float> p(layout.total);
  init_params(c, layout, seed, p.data());
  // Make norms and biases non-trivial too.
  for (size_t i = 0; i < p.size(); i += 7) p[i] += 0.001f * float(i % 13);
  return p;
}

// Copies every tensor of an HF dir into `dst` as `dtype`, optionally over two
// shards, plus its config.json.
void copy_hf_dir(const std::string& src, const std::string& dst, FileDType dtype, bool sharded) {
  fs::create_directories(dst);
  fs::copy_file(src + "/config.json", dst + "/config.json");
  SafetensorsFile f(src + "/model.safetensors");
  std::vector<std::string> names = f.names();
  std::vector<std::vector<float>> data;
  for (auto& n : names) data.push_back(f.read_f32(n));
  if (!sharded) {
    std::vector<SafetensorsTensor> t;
    for (size_t i = 0; i < names.size(); ++i)
      t.push_back({names[i], f.entry(names[i]).shape, data[i].data(), dtype});
    write_safetensors(dst + "/model.safetensors", t);
    return;
  }
  nlohmann::json index;
  index["metadata"] = {{"total_size", 0}};
  std::vector<SafetensorsTensor> shard[2];
  for (size_t i = 0; i < names.size(); ++i) {
    const int s = i < names.size() / 2 ? 0 : 1;
    shard[s].push_back({names[i], f.entry(names[i]).shape, data[i].data(), dtype});
    index["weight_map"][names[i]] = s == 0 ? "model-00001-of-00002.safetensors"
                                           : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dst + "/model-00001-of-00002.safetensors", shard[0]);
  write_safetensors(dst + "/model-00002-of-00002.safetensors", shard[1]);
  write_text(dst + "/model.safetensors.index.json", index.dump(2));
}

// Rewrites dir/config.json through `edit`.
void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_text(dir + "/config.json"));
  edit(j);
  write_text(dir + "/config.json", j.dump(2));
}

// Rewrites dir/model.safetensors through `edit` on a name -> (shape, data) map.
using TensorMap = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;
void edit_tensors(const std::string& dir, const std::function<void(TensorMap&)>& edit) {
  TensorMap m;
  {
    SafetensorsFile f(dir + "/model.safetensors");
    for (auto& n : f.names()) m[n] = {f.entry(n).shape, f.read_f32(n)};
  }
  edit(m);
  std::vector<SafetensorsTensor> t;
  for (auto& kv : m) t.push_back({kv.first, kv.second.first, kv.second.second.data(), FileDType::F32});
  write_safetensors(dir + "/model.safetensors", t);
}

const TensorInfo& tensor(const ParamLayout& L, const std::string& name) {
  int i = L.find(name);
  if (i < 0) throw Error("no tensor " + name);
  return L.tensors[size_t(i)];
}

}  // namespace

// ---------------------------------------------------------------------------
// dtype conversions

TEST(Dtypes, Bf16WideningIsExactAndRoundTrips) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_float(uint16_t(b));
    ASSERT_EQ(float_bits(f), b << 16);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_to_float(float_to_bf16(f))));
    } else {
      ASSERT_EQ(float_to_bf16(f), b) << b;
    }
  }
}

TEST(Dtypes, Fp32ToBf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808000)), 0x3f80);  // tie, keep even
  EXPECT_EQ(float_to_bf16(bits_float(0x3f818000)), 0x3f82);  // tie, round up to even
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(bits_float(0x3f807fff)), 0x3f80);  // below the tie
  EXPECT_EQ(float_to_bf16(bits_float(0xbf818000)), 0xbf82);  // negative
  EXPECT_EQ(float_to_bf16(bits_float(0x7f7fffff)), 0x7f80);  // max float -> inf
  EXPECT_EQ(float_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(float_to_bf16(-INFINITY), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(bits_float(0x7f800001)))));  // sNaN stays NaN
  EXPECT_EQ(float_to_bf16(bits_float(0x00000001)), 0x0000);  // tiny subnormal -> 0
}

TEST(Dtypes, Fp16WideningIsExactIncludingSubnormalsInfNan) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    const int e = int(h >> 10) & 31, m = int(h & 1023);
    const float sign = (h & 0x8000) ? -1.f : 1.f;
    if (e == 31) {
      ASSERT_TRUE(m ? std::isnan(f) : std::isinf(f)) << h;
      if (!m) {
        ASSERT_EQ(std::signbit(f), bool(h & 0x8000));
      }
      continue;
    }
    const float want = sign * (e == 0 ? std::ldexp(float(m), -24) : std::ldexp(float(1024 + m), e - 25));
    ASSERT_EQ(float_bits(f), float_bits(want)) << h;
    ASSERT_EQ(float_to_fp16(f), h) << h;  // every fp16 value round-trips
  }
  EXPECT_EQ(fp16_to_float(0x3c00), 1.f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.f, -24));
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.f);
}

TEST(Dtypes, Fp32ToFp16RoundsToNearestEven) {
  EXPECT_EQ(float_to_fp16(65519.f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65520.f), 0x7c00);  // tie at the top rounds to inf
  EXPECT_EQ(float_to_fp16(1e9f), 0x7c00);
  EXPECT_EQ(float_to_fp16(1.f + std::ldexp(1.f, -11)), 0x3c00);      // tie, keep even
  EXPECT_EQ(float_to_fp16(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);  // tie, round up to even
  EXPECT_EQ(float_to_fp16(std::ldexp(1.f, -25)), 0x0000);            // subnormal tie -> 0
  EXPECT_EQ(float_to_fp16(std::ldexp(3.f, -26)), 0x0001);            // 0.75 ulp -> 1
  EXPECT_EQ(float_to_fp16(std::ldexp(3.f, -25)), 0x0002);            // 1.5 ulp tie -> 2
  EXPECT_EQ(float_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);        // rounds up to min normal
  EXPECT_EQ(float_to_fp16(-0.f), 0x8000);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(NAN))));
}

// ---------------------------------------------------------------------------
// safetensors

TEST(Safetensors, ReadsFixtureForwardIdsAndLogits) {
  SafetensorsFile f("tests/fixtures/qwen3_tiny/forward.safetensors");
  EXPECT_EQ(f.entry("input_ids").dtype, FileDType::I32);
  EXPECT_EQ(f.entry("input_ids").shape, (std::vector<int64_t>{2, 16}));
  std::vector<int64_t> ids = f.read_i64("input_ids");
  ASSERT_EQ(ids.size(), 32u);
  for (int64_t id : ids) EXPECT_TRUE(id >= 0 && id < 512);
  EXPECT_EQ(f.entry("logits").shape, (std::vector<int64_t>{2, 16, 512}));
  std::vector<float> logits = f.read_f32("logits");
  ASSERT_EQ(logits.size(), 2u * 16 * 512);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  EXPECT_ERROR(f.read_i64("logits"), "forward.safetensors", "logits", "F32");
  EXPECT_ERROR(f.read_f32("input_ids"), "forward.safetensors", "input_ids", "I32");
  EXPECT_ERROR(f.entry("nope"), "forward.safetensors: tensor nope is missing");
}

TEST(Safetensors, WriteReadRoundTripInEveryDtype) {
  TempDir tmp("polaris_formats");
  std::vector<float> a(300), b(7), c(0);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(float(i)) * std::pow(10.f, float(i % 9) - 4);
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i) - 3.3f;
  write_safetensors(tmp / "x.safetensors",
                    {{"a", {20, 15}, a.data(), FileDType::F32},
                     {"b16", {7}, b.data(), FileDType::BF16},
                     {"h16", {20, 15}, a.data(), FileDType::F16},
                     {"empty", {0, 4}, c.data(), FileDType::F32}},
                    {{"format", "pt"}, {"note", "hi"}});
  EXPECT_FALSE(fs::exists(tmp / "x.safetensors.tmp"));
  std::vector<uint8_t> raw = file_bytes(tmp / "x.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | raw[size_t(i)];
  EXPECT_EQ(n % 8, 0u);
  SafetensorsFile f(tmp / "x.safetensors");
  EXPECT_EQ(f.metadata().at("note"), "hi");
  EXPECT_EQ(f.read_f32("a"), a);
  std::vector<float> rb = f.read_f32("b16"), rh = f.read_f32("h16");
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(rb[i], round_to_dtype(b[i], FileDType::BF16));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(rh[i], round_to_dtype(a[i], FileDType::F16));
  EXPECT_EQ(f.entry("empty").numel, 0u);
  EXPECT_TRUE(f.read_f32("empty").empty());
}

TEST(Safetensors, MissingFile) {
  EXPECT_ERROR(SafetensorsFile("/nonexistent/model.safetensors"),
               "/nonexistent/model.safetensors: cannot open: No such file");
}

TEST(Safetensors, TooShortForHeaderLength) {
  TempDir tmp("polaris_formats");
  write_bytes(tmp / "s.safetensors", {1, 2, 3});
  EXPECT_ERROR(SafetensorsFile(tmp / "s.safetensors"), "s.safetensors: truncated");
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  TempDir tmp("polaris_formats");
  write_raw_safetensors(tmp / "h.safetensors", "{}", 0, 1000);
  EXPECT_ERROR(SafetensorsFile(tmp / "h.safetensors"), "h.safetensors: header length 1000",
               "beyond the end of the file");
}

TEST(Safetensors, MalformedJson) {
  TempDir tmp("polaris_formats");
  write_raw_safetensors(tmp / "j.safetensors", "{\"a\": {\"dtype\": \"F32\",\n", 0);
  EXPECT_ERROR(SafetensorsFile(tmp / "j.safetensors"), "j.safetensors: malformed header JSON");
  write_raw_safetensors(tmp / "k.safetensors", "[1, 2]", 0);
  EXPECT_ERROR(SafetensorsFile(tmp / "k.safetensors"), "k.safetensors: malformed header");
}

TEST(Safetensors, OffsetsOutOfRange) {
  TempDir tmp("polaris_formats");
  write_raw_safetensors(tmp / "o.safetensors",
                        R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);
  EXPECT_ERROR(SafetensorsFile(tmp / "o.safetensors"), "o.safetensors: tensor w",
               "out of range");
  write_raw_safetensors(tmp / "r.safetensors",
                        R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8);
  EXPECT_ERROR(SafetensorsFile(tmp / "r.safetensors"), "r.safetensors: tensor w",
               "out of range");
}

TEST(Safetensors, OffsetsInconsistentWithShape) {
  TempDir tmp("polaris_formats");
  write_raw_safetensors(tmp / "s.safetensors",
                        R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", 16);
  EXPECT_ERROR(SafetensorsFile(tmp / "s.safetensors"), "s.safetensors: tensor w",
               "needs 12");
}

TEST(Safetensors, UnknownDtypeAndBadEntries) {
  TempDir tmp("polaris_formats");
  write_raw_safetensors(tmp / "d.safetensors",
                        R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", 2);
  EXPECT_ERROR(SafetensorsFile(tmp / "d.safetensors"), "d.safetensors: tensor w",
               "unsupported dtype 'F8_E4M3'");
  write_raw_safetensors(tmp / "e.safetensors", R"({"w": {"dtype": "F32", "shape": [1]}})", 4);
  EXPECT_ERROR(SafetensorsFile(tmp / "e.safetensors"), "e.safetensors: tensor w",
               "data_offsets");
  write_raw_safetensors(tmp / "f.safetensors",
                        R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4);
  EXPECT_ERROR(SafetensorsFile(tmp / "f.safetensors"), "f.safetensors: tensor w", "shape");
}

TEST(Safetensors, AtomicWriteLeavesNothingOnError) {
  TempDir tmp("polaris_formats");
  float x = 1.f;
  EXPECT_ERROR(write_safetensors(tmp / "dup.safetensors",
                                 {{"a", {1}, &x, FileDType::F32}, {"a", {1}, &x, FileDType::F32}}),
               "dup.safetensors", "used twice");
  EXPECT_FALSE(fs::exists(tmp / "dup.safetensors"));
  EXPECT_FALSE(fs::exists(tmp / "dup.safetensors.tmp"));
  EXPECT_ERROR(write_safetensors(tmp / "no/such/dir.safetensors", {{"a", {1}, &x, FileDType::F32}}),
               "no/such/dir.safetensors: cannot create");
}

// ---------------------------------------------------------------------------
// model.bin

TEST(ModelBin, Fp32RoundTripIsExact) {
  TempDir tmp("polaris_formats");
  for (const std::string preset : {"qwen3-tiny", "gpt2-tiny"}) {
    ModelConfig c = tiny(preset);
    c.rope_theta = 123456.7f;
    std::vector<float> p = random_params(c, 7);
    write_model_bin(tmp / "m.bin", c, p, false);
    EXPECT_FALSE(fs::exists(tmp / "m.bin.tmp"));
    EXPECT_EQ(fs::file_size(tmp / "m.bin"), 1024 + 4 * p.size());
    LoadedModel m = read_model_bin(tmp / "m.bin");
    EXPECT_EQ(m.config.family, c.family);
    EXPECT_EQ(m.config.describe(), c.describe());
    EXPECT_EQ(m.config.max_positions, c.max_positions);
    EXPECT_EQ(m.config.rope_theta, c.rope_theta);
    EXPECT_EQ(m.config.norm_eps, c.norm_eps);
    EXPECT_EQ(m.params, p);
  }
}

TEST(ModelBin, HeaderWordsAreAsDocumented) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  std::vector<float> p = random_params(c, 1);
  write_model_bin(tmp / "m.bin", c, p, true);
  std::vector<uint8_t> raw = file_bytes(tmp / "m.bin");
  std::vector<int32_t> w(256);
  std::memcpy(w.data(), raw.data(), 1024);
  EXPECT_EQ(w[0], 20240601);
  EXPECT_EQ(w[1], 2);
  EXPECT_EQ(w[2], 2);
  EXPECT_EQ(w[3], 1);
  EXPECT_EQ(w[4], 512);
  EXPECT_EQ(w[5], 128);
  EXPECT_EQ(w[6], 2);
  EXPECT_EQ(w[7], 4);
  EXPECT_EQ(w[8], 2);
  EXPECT_EQ(w[9], 32);
  EXPECT_EQ(w[10], 256);
  EXPECT_EQ(w[11], 256);
  EXPECT_EQ(w[12], 1);
  EXPECT_EQ(uint32_t(w[13]), float_bits(1e6f));
  EXPECT_EQ(uint32_t(w[14]), float_bits(1e-6f));
  EXPECT_EQ(uint64_t(uint32_t(w[15])) | (uint64_t(uint32_t(w[16])) << 32), p.size());
  for (int i = 17; i < 256; ++i) EXPECT_EQ(w[size_t(i)], 0);
}

// YaRN in model.bin: words 17-23 as documented, read back exactly; a bf16
// file keeps it too.
TEST(ModelBin, YarnRoundTrip) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  c.rope_scaling.type = RopeType::Yarn;
  c.rope_scaling.factor = 4.f;
  c.rope_scaling.original_max_positions = 64;
  c.rope_scaling.beta_fast = 30.f;
  c.rope_scaling.beta_slow = 1.5f;
  c.rope_scaling.attention_factor = 1.1386294f;
  c.rope_scaling.truncate = false;
  const std::vector<float> p = random_params(c, 5);
  for (bool bf16 : {false, true}) {
    write_model_bin(tmp / "m.bin", c, p, bf16);
    LoadedModel m = read_model_bin(tmp / "m.bin");
    EXPECT_TRUE(m.config.rope_scaling == c.rope_scaling) << "bf16 " << bf16;
    EXPECT_EQ(m.config.context_limit(), 256);
    EXPECT_TRUE(read_model_bin_config(tmp / "m.bin").rope_scaling == c.rope_scaling);
  }
  std::vector<uint8_t> raw = file_bytes(tmp / "m.bin");
  std::vector<int32_t> w(256);
  std::memcpy(w.data(), raw.data(), 1024);
  EXPECT_EQ(w[17], 1);
  EXPECT_EQ(uint32_t(w[18]), float_bits(4.f));
  EXPECT_EQ(w[19], 64);
  EXPECT_EQ(uint32_t(w[20]), float_bits(30.f));
  EXPECT_EQ(uint32_t(w[21]), float_bits(1.5f));
  EXPECT_EQ(uint32_t(w[22]), float_bits(1.1386294f));
  EXPECT_EQ(w[23], 0);
  for (int i = 24; i < 256; ++i) EXPECT_EQ(w[size_t(i)], 0);

  // Corrupt YaRN words are errors naming the file and what is wrong.
  auto with_word = [&](int i, int32_t v) {
    std::vector<uint8_t> b = raw;
    std::memcpy(b.data() + 4 * i, &v, 4);
    write_bytes(tmp / "bad.bin", b);
  };
  with_word(17, 2);
  EXPECT_ERROR(read_model_bin(tmp / "bad.bin"), "bad.bin: unknown RoPE scaling type 2");
  with_word(18, int32_t(float_bits(-1.f)));
  EXPECT_ERROR(read_model_bin(tmp / "bad.bin"), "bad.bin: rope_scaling.factor must be a positive");
  with_word(23, 7);
  EXPECT_ERROR(read_model_bin(tmp / "bad.bin"), "bad.bin: YaRN truncate flag must be 0 or 1");
  with_word(17, 0);  // no scaling, yet its words are set
  EXPECT_ERROR(read_model_bin(tmp / "bad.bin"), "bad.bin: header word 18", "without RoPE scaling");
  // GPT-2 has no RoPE to scale.
  ModelConfig g = tiny("gpt2-tiny");
  g.rope_scaling = c.rope_scaling;
  EXPECT_ERROR(write_model_bin(tmp / "g.bin", g, random_params(g, 1), false),
               "g.bin: rope_scaling: GPT-2 has no RoPE to scale");
  EXPECT_FALSE(fs::exists(tmp / "g.bin"));
}

// A model.bin written before YaRN existed (header built here word by word in
// that layout: words 17..255 zero) loads as plain RoPE, parameters intact.
TEST(ModelBin, PreYarnFileStillLoads) {
  TempDir tmp("polaris_formats");
  const ModelConfig c = tiny("qwen3-tiny");
  const std::vector<float> p = random_params(c, 9);
  std::vector<int32_t> w(256, 0);
  const int32_t words[] = {20240601, 2, 2, 0, c.vocab_size, c.hidden_size, c.num_layers,
                           c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size,
                           c.max_positions, c.tied_embeddings ? 1 : 0};
  std::copy(std::begin(words), std::end(words), w.begin());
  w[13] = int32_t(float_bits(c.rope_theta));
  w[14] = int32_t(float_bits(c.norm_eps));
  w[15] = int32_t(uint32_t(p.size()));
  std::vector<uint8_t> bytes(1024 + 4 * p.size());
  std::memcpy(bytes.data(), w.data(), 1024);
  std::memcpy(bytes.data() + 1024, p.data(), 4 * p.size());
  write_bytes(tmp / "old.bin", bytes);
  LoadedModel m = read_model_bin(tmp / "old.bin");
  EXPECT_FALSE(m.config.rope_scaling.is_yarn());
  EXPECT_EQ(m.config.context_limit(), c.max_positions);
  EXPECT_EQ(m.config.describe(), c.describe());
  EXPECT_EQ(m.params, p);
}

TEST(ModelBin, Bf16RoundTripWithinRounding) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  std::vector<float> p = random_params(c, 3);
  write_model_bin(tmp / "m.bin", c, p, true);
  EXPECT_EQ(fs::file_size(tmp / "m.bin"), 1024 + 2 * p.size());
  bool bf16 = false;
  read_model_bin_config(tmp / "m.bin", &bf16);
  EXPECT_TRUE(bf16);
  LoadedModel m = read_model_bin(tmp / "m.bin");
  ASSERT_EQ(m.params.size(), p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    ASSERT_EQ(m.params[i], round_to_dtype(p[i], FileDType::BF16));
    ASSERT_LE(std::fabs(m.params[i] - p[i]), std::ldexp(std::fabs(p[i]), -8)) << i;
  }
}

namespace {

// model.bin version 1: the same file except header word 1 = 1 and, for GPT-2,
// each layer's attention parameters in the old order q.w q.b k.w k.b v.w v.b
// (in the region where q.weight k.weight v.weight q.bias k.bias v.bias lie
// now; model/params.cpp reorder_from_v1_layout). Built here from a version-2
// file's bytes (`elem` bytes per parameter), tensor by tensor by name.
std::vector<uint8_t> as_version1(const std::vector<uint8_t>& v2, const ModelConfig& c, size_t elem) {
  std::vector<uint8_t> v1 = v2;
  const int32_t one = 1;
  std::memcpy(&v1[4], &one, 4);
  if (!c.is_gpt2()) return v1;  // Qwen3's layout did not change
  const ParamLayout L = build_param_layout(c);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".attn.";
    size_t to = tensor(L, p + "q.weight").offset;
    const size_t start = to;
    for (const char* name : {"q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias"}) {
      const TensorInfo& t = tensor(L, p + name);
      std::memcpy(&v1[1024 + to * elem], &v2[1024 + t.offset * elem], t.numel * elem);
      to += t.numel;
    }
    // the six tensors fill the same region in both versions
    EXPECT_EQ(to, tensor(L, p + "v.bias").offset + tensor(L, p + "v.bias").numel);
    EXPECT_EQ(to - start, size_t(c.q_dim() + 2 * c.kv_dim()) * size_t(c.hidden_size + 1));
  }
  return v1;
}

// Parameters with every element distinct (biases included), so a tensor read
// from the wrong place cannot pass.
std::vector<float> distinct_params(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.5f);
  std::vector<float> p(build_param_layout(c).total);
  for (float& x : p) x = normal(rng);
  return p;
}

}  // namespace

TEST(ModelBin, ReadsVersion1Gpt2WithOldAttentionOrder) {
  TempDir tmp("polaris_formats");
  const ModelConfig c = tiny("gpt2-tiny");
  const std::vector<float> p = distinct_params(c, 11);
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16" : "fp32");
    write_model_bin(tmp / "v2.bin", c, p, bf16);
    const std::vector<uint8_t> v2 = file_bytes(tmp / "v2.bin");
    const std::vector<uint8_t> v1 = as_version1(v2, c, bf16 ? 2 : 4);
    ASSERT_EQ(v1.size(), v2.size());
    write_bytes(tmp / "v1.bin", v1);
    const LoadedModel want = read_model_bin(tmp / "v2.bin");
    const LoadedModel got = read_model_bin(tmp / "v1.bin");
    EXPECT_EQ(got.config.describe(), c.describe());
    EXPECT_EQ(got.params, want.params);  // bitwise: the same values, reordered back
    if (!bf16) {
      EXPECT_EQ(got.params, p);
    }
    // The old order is really different: read as version 2, the same bytes
    // give other parameters.
    std::vector<uint8_t> misread = v1;
    const int32_t two = 2;
    std::memcpy(&misread[4], &two, 4);
    write_bytes(tmp / "misread.bin", misread);
    EXPECT_NE(read_model_bin(tmp / "misread.bin").params, want.params);
  }
}

TEST(ModelBin, ReadsVersion1Qwen3Unchanged) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  const std::vector<float> p = distinct_params(c, 12);
  write_model_bin(tmp / "v2.bin", c, p, false);
  const std::vector<uint8_t> v2 = file_bytes(tmp / "v2.bin");
  const std::vector<uint8_t> v1 = as_version1(v2, c, 4);
  // only the version word differs
  ASSERT_EQ(v1.size(), v2.size());
  EXPECT_TRUE(std::equal(v1.begin() + 8, v1.end(), v2.begin() + 8));
  write_bytes(tmp / "v1.bin", v1);
  const LoadedModel got = read_model_bin(tmp / "v1.bin");
  EXPECT_EQ(got.config.describe(), c.describe());
  EXPECT_EQ(got.params, p);
}

TEST(ModelBin, MissingFile) {
  EXPECT_ERROR(read_model_bin("no_such_model.bin"),
               "no_such_model.bin: cannot open: No such file or directory");
}

class ModelBinCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    c = tiny("gpt2-tiny");
    p = random_params(c, 5);
    write_model_bin(tmp / "good.bin", c, p, false);
    raw = file_bytes(tmp / "good.bin");
  }
  // Writes raw (after `edit`) to bad.bin and returns its path.
  std::string bad(const std::function<void(std::vector<uint8_t>&)>& edit) {
    std::vector<uint8_t> b = raw;
    edit(b);
    write_bytes(tmp / "bad.bin", b);
    return tmp / "bad.bin";
  }
  void set_word(std::vector<uint8_t>& b, int i, int32_t v) { std::memcpy(&b[size_t(4 * i)], &v, 4); }
  TempDir tmp{"polaris_formats"};
  ModelConfig c;
  std::vector<float> p;
  std::vector<uint8_t> raw;
};

TEST_F(ModelBinCorrupt, WrongMagic) {
  auto path = bad([&](auto& b) { set_word(b, 0, 20240520); });
  EXPECT_ERROR(read_model_bin(path), "bad.bin: not a model.bin file (magic 20240520");
}

TEST_F(ModelBinCorrupt, UnknownVersion) {
  auto path = bad([&](auto& b) { set_word(b, 1, 7); });
  EXPECT_ERROR(read_model_bin(path), "bad.bin: unsupported model.bin version 7");
}

TEST_F(ModelBinCorrupt, UnknownDtypeAndFamily) {
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 3, 5); })), "bad.bin", "dtype 5");
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 2, 9); })), "bad.bin", "family");
}

TEST_F(ModelBinCorrupt, TruncatedHeader) {
  auto path = bad([&](auto& b) { b.resize(100); });
  EXPECT_ERROR(read_model_bin(path), "bad.bin: truncated: expected a 1024-byte header, found 100");
}

TEST_F(ModelBinCorrupt, TruncatedParameters) {
  auto path = bad([&](auto& b) { b.resize(b.size() - 40); });
  const size_t n = 4 * p.size();
  EXPECT_ERROR(read_model_bin(path), "bad.bin: truncated: expected " + std::to_string(n) +
                                         " bytes of parameters, found " + std::to_string(n - 40));
  EXPECT_ERROR(read_model_bin_config(path), "truncated");
}

TEST_F(ModelBinCorrupt, TrailingBytes) {
  auto path = bad([&](auto& b) { b.resize(b.size() + 12, 0); });
  EXPECT_ERROR(read_model_bin(path), "bad.bin: 12 trailing bytes");
}

TEST_F(ModelBinCorrupt, ImpossibleConfig) {
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 7, 0); })), "bad.bin",
               "num_heads must be positive");
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 12, 3); })), "bad.bin",
               "tied_embeddings");
  // Shapes whose products overflow the ops' 32-bit indexing, and a norm
  // epsilon no model uses, are corrupt headers, not models.
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 9, 1 << 30); })), "bad.bin",
               "num_heads x head_dim", "too large");
  const float huge_eps = 1e30f;
  int32_t eps_bits;
  std::memcpy(&eps_bits, &huge_eps, 4);
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 14, eps_bits); })), "bad.bin",
               "norm_eps must be in (0, 1)");
}

TEST(ModelConfig, RejectsNonFiniteRopeThetaAndNormEps) {
  ModelConfig c = config_from_preset("qwen3-tiny");
  c.rope_theta = std::numeric_limits<float>::infinity();
  EXPECT_ERROR(c.validate("x"), "x: rope_theta must be a positive finite number");
  c = config_from_preset("qwen3-tiny");
  c.norm_eps = std::numeric_limits<float>::quiet_NaN();
  EXPECT_ERROR(c.validate("x"), "x: norm_eps must be in (0, 1)");
  // RoPE has no position table: a long context is no size problem for Qwen3,
  // while GPT-2's learned table of that size would be.
  c = config_from_preset("qwen3-tiny");
  c.max_positions = 20000000;
  EXPECT_NO_THROW(c.validate("x"));
  c = config_from_preset("gpt2-tiny");
  c.max_positions = 40000000;  // x 64 hidden > 2^31
  EXPECT_ERROR(c.validate("x"), "the position table");
}

TEST_F(ModelBinCorrupt, ConfigMismatchingWeights) {
  // More layers in the header than weights in the file: the count disagrees.
  EXPECT_ERROR(read_model_bin(bad([&](auto& b) { set_word(b, 6, 3); })), "bad.bin: header says " +
                                                                              std::to_string(p.size()) +
                                                                              " parameters");
  // Header count and layout agree with a wider model, but the data is too short.
  ModelConfig wide = c;
  wide.num_layers = 3;
  const size_t n3 = build_param_layout(wide).total;
  auto path = bad([&](auto& b) {
    set_word(b, 6, 3);
    set_word(b, 15, int32_t(n3));
  });
  EXPECT_ERROR(read_model_bin(path), "bad.bin: truncated: expected " + std::to_string(4 * n3));
}

TEST(ModelBin, WriteRejectsWrongCountAndLeavesNothing) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  std::vector<float> p(10);
  EXPECT_ERROR(write_model_bin(tmp / "m.bin", c, p, false), "m.bin", "10 parameters");
  EXPECT_FALSE(fs::exists(tmp / "m.bin"));
  EXPECT_FALSE(fs::exists(tmp / "m.bin.tmp"));
  c.num_kv_heads = 3;
  EXPECT_ERROR(write_model_bin(tmp / "m.bin", c, random_params(tiny("qwen3-tiny"), 1), false),
               "m.bin", "num_kv_heads");
}

// ---------------------------------------------------------------------------
// Hugging Face import

TEST(HfImport, QwenFixtureMapsEveryTensor) {
  LoadedModel m = read_hf_dir(kQwenHf);
  EXPECT_EQ(m.config.describe(), tiny("qwen3-tiny").describe());
  EXPECT_EQ(m.config.rope_theta, 1e6f);
  EXPECT_EQ(m.config.norm_eps, 1e-6f);
  EXPECT_EQ(m.config.max_positions, 256);
  ParamLayout L = build_param_layout(m.config);
  ASSERT_EQ(m.params.size(), L.total);
  SafetensorsFile f(kQwenHf + "/model.safetensors");
  const std::map<std::string, std::string> names = {
      {"embed_tokens", "model.embed_tokens.weight"},
      {"layers.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"},
      {"layers.1.attn.q.weight", "model.layers.1.self_attn.q_proj.weight"},
      {"layers.1.attn.k.weight", "model.layers.1.self_attn.k_proj.weight"},
      {"layers.0.attn.v.weight", "model.layers.0.self_attn.v_proj.weight"},
      {"layers.0.attn.q_norm.weight", "model.layers.0.self_attn.q_norm.weight"},
      {"layers.0.attn.k_norm.weight", "model.layers.0.self_attn.k_norm.weight"},
      {"layers.0.attn.o.weight", "model.layers.0.self_attn.o_proj.weight"},
      {"layers.1.mlp_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
      {"layers.1.mlp.gate.weight", "model.layers.1.mlp.gate_proj.weight"},
      {"layers.1.mlp.up.weight", "model.layers.1.mlp.up_proj.weight"},
      {"layers.1.mlp.down.weight", "model.layers.1.mlp.down_proj.weight"},
      {"final_norm.weight", "model.norm.weight"}};
  for (auto& kv : names) {
    const TensorInfo& t = tensor(L, kv.first);
    std::vector<float> hf = f.read_f32(kv.second);
    ASSERT_EQ(hf.size(), t.numel) << kv.first;
    EXPECT_TRUE(std::equal(hf.begin(), hf.end(), m.params.begin() + long(t.offset))) << kv.first;
  }
}

TEST(HfImport, Gpt2FixtureSplitsAndTransposesConv1D) {
  LoadedModel m = read_hf_dir(kGpt2Hf);
  EXPECT_EQ(m.config.describe(), tiny("gpt2-tiny").describe());
  EXPECT_EQ(m.config.max_positions, 128);
  EXPECT_EQ(m.config.norm_eps, 1e-5f);
  ParamLayout L = build_param_layout(m.config);
  SafetensorsFile f(kGpt2Hf + "/model.safetensors");
  const int C = 64, F = 256;
  std::vector<float> c_attn = f.read_f32("transformer.h.1.attn.c_attn.weight");  // [C, 3C]
  std::vector<float> c_attn_b = f.read_f32("transformer.h.1.attn.c_attn.bias");
  const char* part[3] = {"q", "k", "v"};
  for (int p = 0; p < 3; ++p) {
    const float* w = &m.params[tensor(L, std::string("layers.1.attn.") + part[p] + ".weight").offset];
    const float* b = &m.params[tensor(L, std::string("layers.1.attn.") + part[p] + ".bias").offset];
    for (int o = 0; o < C; ++o) {
      ASSERT_EQ(b[o], c_attn_b[size_t(p * C + o)]);
      for (int i = 0; i < C; ++i) ASSERT_EQ(w[o * C + i], c_attn[size_t(i * 3 * C + p * C + o)]);
    }
  }
  std::vector<float> fc = f.read_f32("transformer.h.0.mlp.c_fc.weight");  // [C, F]
  const float* up = &m.params[tensor(L, "layers.0.mlp.up.weight").offset];  // [F, C]
  for (int o = 0; o < F; ++o)
    for (int i = 0; i < C; ++i) ASSERT_EQ(up[o * C + i], fc[size_t(i * F + o)]);
  std::vector<float> proj = f.read_f32("transformer.h.0.mlp.c_proj.weight");  // [F, C]
  const float* down = &m.params[tensor(L, "layers.0.mlp.down.weight").offset];  // [C, F]
  for (int o = 0; o < C; ++o)
    for (int i = 0; i < F; ++i) ASSERT_EQ(down[o * F + i], proj[size_t(i * C + o)]);
  std::vector<float> wpe = f.read_f32("transformer.wpe.weight");
  EXPECT_TRUE(std::equal(wpe.begin(), wpe.end(), m.params.begin() + long(L.embed_positions)));
  std::vector<float> lnf_b = f.read_f32("transformer.ln_f.bias");
  EXPECT_TRUE(std::equal(lnf_b.begin(), lnf_b.end(), m.params.begin() + long(L.final_norm_bias)));
}

// HF -> model.bin -> HF: every tensor byte-identical (header order may differ).
TEST(HfImport, HfBinHfIsBitIdentical) {
  for (const std::string& src : {kQwenHf, kGpt2Hf}) {
    TempDir tmp("polaris_formats");
    LoadedModel a = read_hf_dir(src);
    write_model_bin(tmp / "m.bin", a.config, a.params, false);
    LoadedModel b = read_model_bin(tmp / "m.bin");
    write_hf_dir(tmp / "hf", b.config, b.params, FileDType::F32);
    SafetensorsFile orig(src + "/model.safetensors"), back(tmp / "hf/model.safetensors");
    EXPECT_EQ(orig.names(), back.names()) << src;
    for (const std::string& n : orig.names()) {
      EXPECT_EQ(orig.entry(n).shape, back.entry(n).shape) << n;
      EXPECT_EQ(back.entry(n).dtype, FileDType::F32) << n;
      EXPECT_TRUE(orig.read_raw(n) == back.read_raw(n)) << src << ": " << n;
    }
    // Not only the same tensors: the same file, byte for byte, as
    // transformers' save_pretrained wrote it.
    EXPECT_TRUE(file_bytes(src + "/model.safetensors") == file_bytes(tmp / "hf/model.safetensors"))
        << src;
    ModelConfig c2 = read_hf_config(tmp / "hf/config.json");
    EXPECT_EQ(c2.describe(), a.config.describe());
    EXPECT_EQ(c2.rope_theta, a.config.rope_theta);
    EXPECT_EQ(c2.norm_eps, a.config.norm_eps);
    EXPECT_EQ(c2.max_positions, a.config.max_positions);
    EXPECT_EQ(read_hf_dir(tmp / "hf").params, a.params);
  }
}

TEST(HfImport, ShardedCheckpoint) {
  for (const std::string& src : {kQwenHf, kGpt2Hf}) {
    TempDir tmp("polaris_formats");
    copy_hf_dir(src, tmp / "sharded", FileDType::F32, true);
    EXPECT_FALSE(fs::exists(tmp / "sharded/model.safetensors"));
    EXPECT_EQ(read_hf_dir(tmp / "sharded").params, read_hf_dir(src).params) << src;
  }
  // The index places a tensor in the other shard / does not list it / names
  // a shard that does not exist.
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "s", FileDType::F32, true);
  nlohmann::json index = nlohmann::json::parse(read_text(tmp / "s/model.safetensors.index.json"));
  std::string file = index["weight_map"]["model.norm.weight"];
  index["weight_map"]["model.norm.weight"] =
      file == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                 : "model-00001-of-00002.safetensors";
  write_text(tmp / "s/model.safetensors.index.json", index.dump());
  EXPECT_ERROR(read_hf_dir(tmp / "s"), file + ": holds tensor model.norm.weight, which",
               "model.safetensors.index.json places in");
  index["weight_map"].erase("model.norm.weight");
  write_text(tmp / "s/model.safetensors.index.json", index.dump());
  EXPECT_ERROR(read_hf_dir(tmp / "s"), file + ": holds tensor model.norm.weight, which is not in",
               "model.safetensors.index.json");
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_text(tmp / "s/model.safetensors.index.json", index.dump());
  EXPECT_ERROR(read_hf_dir(tmp / "s"), "model-00003-of-00002.safetensors: cannot open");
  // An index listing a tensor the model does not have is named.
  copy_hf_dir(kQwenHf, tmp / "t", FileDType::F32, true);
  index = nlohmann::json::parse(read_text(tmp / "t/model.safetensors.index.json"));
  index["weight_map"]["model.layers.0.extra.weight"] = "model-00001-of-00002.safetensors";
  write_text(tmp / "t/model.safetensors.index.json", index.dump());
  EXPECT_ERROR(read_hf_dir(tmp / "t"), "unexpected tensor model.layers.0.extra.weight");
  // Exporting into a directory that holds a sharded checkpoint is refused.
  EXPECT_ERROR(write_hf_dir(tmp / "t", read_hf_dir(kQwenHf).config, read_hf_dir(kQwenHf).params,
                            FileDType::F32),
               "holds a sharded checkpoint");
}

TEST(HfImport, Bf16AndFp16Checkpoints) {
  for (const std::string& src : {kQwenHf, kGpt2Hf}) {
    const std::vector<float> exact = read_hf_dir(src).params;
    for (FileDType dt : {FileDType::BF16, FileDType::F16}) {
      TempDir tmp("polaris_formats");
      copy_hf_dir(src, tmp / "h", dt, dt == FileDType::F16);
      std::vector<float> got = read_hf_dir(tmp / "h").params;
      ASSERT_EQ(got.size(), exact.size());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], round_to_dtype(exact[i], dt)) << src << " " << dtype_name(dt) << " " << i;
    }
  }
  // And export in bf16: config says so, tensors are BF16.
  TempDir tmp("polaris_formats");
  LoadedModel m = read_hf_dir(kQwenHf);
  write_hf_dir(tmp / "bf", m.config, m.params, FileDType::BF16);
  EXPECT_EQ(SafetensorsFile(tmp / "bf/model.safetensors").entry("model.norm.weight").dtype,
            FileDType::BF16);
  EXPECT_EQ(nlohmann::json::parse(read_text(tmp / "bf/config.json"))["torch_dtype"], "bfloat16");
}

TEST(HfImport, RopeThetaTopLevelOrRopeParameters) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  EXPECT_EQ(read_hf_config(tmp / "h/config.json").rope_theta, 1e6f);  // rope_parameters
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j.erase("rope_parameters");
    j["rope_theta"] = 5e5;
  });
  EXPECT_EQ(read_hf_config(tmp / "h/config.json").rope_theta, 5e5f);  // hub style
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j.erase("rope_theta");
    j["rope_scaling"] = nullptr;
  });
  EXPECT_EQ(read_hf_config(tmp / "h/config.json").rope_theta, 10000.f);  // Qwen3Config default
}

// YaRN in config.json, both spellings: transformers 4.x's top-level
// rope_scaling ("type" or "rope_type") and 5.x's rope_parameters. Defaults as
// transformers: original context = max_position_embeddings, beta 32 / 1,
// truncate, attention factor 0.1 ln(factor) + 1, or mscale / mscale_all_dim.
TEST(HfImport, YarnImportedWithTransformersDefaults) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  const std::string cfg = tmp / "h/config.json";
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}};
  });
  ModelConfig c = read_hf_config(cfg);
  EXPECT_TRUE(c.rope_scaling.is_yarn());
  EXPECT_EQ(c.rope_theta, 1e6f);  // still from rope_parameters
  EXPECT_EQ(c.rope_scaling.factor, 4.f);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 64);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.f);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.f);
  EXPECT_TRUE(c.rope_scaling.truncate);
  EXPECT_FLOAT_EQ(c.rope_scaling.attention_factor, float(0.1 * std::log(4.0) + 1.0));
  EXPECT_EQ(c.context_limit(), 256);  // max(256, 64 * 4)
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j.erase("rope_scaling");
    j["rope_parameters"] = {{"rope_theta", 5e5}, {"rope_type", "yarn"}, {"factor", 8.0},
                            {"beta_fast", 16}, {"beta_slow", 2}, {"truncate", false},
                            {"mscale", 0.707}, {"mscale_all_dim", 1.0}};
  });
  c = read_hf_config(cfg);
  EXPECT_EQ(c.rope_theta, 5e5f);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 256);  // max_position_embeddings
  EXPECT_EQ(c.rope_scaling.beta_fast, 16.f);
  EXPECT_EQ(c.rope_scaling.beta_slow, 2.f);
  EXPECT_FALSE(c.rope_scaling.truncate);
  EXPECT_FLOAT_EQ(c.rope_scaling.attention_factor,
                  float((0.1 * 0.707 * std::log(8.0) + 1) / (0.1 * std::log(8.0) + 1)));
  EXPECT_EQ(c.context_limit(), 2048);  // 256 * 8: generation may run this far
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j["rope_parameters"]["attention_factor"] = 1.25;
  });
  EXPECT_EQ(read_hf_config(cfg).rope_scaling.attention_factor, 1.25f);  // given: used as is
}

// Export writes YaRN back in both spellings with the resolved attention
// factor; importing that gives the same config; the tensors are untouched.
TEST(HfImport, YarnExportImportRoundTrip) {
  TempDir tmp("polaris_formats");
  LoadedModel m = read_hf_dir(kQwenHf);
  m.config.rope_scaling.type = RopeType::Yarn;
  m.config.rope_scaling.factor = 4.f;
  m.config.rope_scaling.original_max_positions = 128;
  m.config.rope_scaling.beta_fast = 24.f;
  m.config.rope_scaling.attention_factor = 1.1f;
  m.config.rope_scaling.truncate = false;
  write_hf_dir(tmp / "out", m.config, m.params, FileDType::F32);
  const nlohmann::json j = nlohmann::json::parse(read_text(tmp / "out/config.json"));
  EXPECT_EQ(j["rope_parameters"]["rope_type"], "yarn");
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "yarn");
  EXPECT_EQ(j["rope_scaling"]["factor"], 4.0);
  EXPECT_EQ(j["rope_scaling"]["original_max_position_embeddings"], 128);
  EXPECT_EQ(j["rope_parameters"]["attention_factor"], 1.1);
  EXPECT_EQ(j["rope_parameters"]["truncate"], false);
  LoadedModel back = read_hf_dir(tmp / "out");
  EXPECT_TRUE(back.config.rope_scaling == m.config.rope_scaling);
  EXPECT_EQ(back.config.rope_theta, m.config.rope_theta);
  EXPECT_EQ(back.params, m.params);
  // Plain RoPE exports no rope_scaling at all (as before YaRN).
  write_hf_dir(tmp / "plain", read_hf_dir(kQwenHf).config, m.params, FileDType::F32);
  const nlohmann::json p = nlohmann::json::parse(read_text(tmp / "plain/config.json"));
  EXPECT_FALSE(p.contains("rope_scaling"));
  EXPECT_EQ(p["rope_parameters"]["rope_type"], "default");
}

// A bad rope_scaling is one error naming config.json and the field.
TEST(HfImport, BadRopeScalingNamesTheField) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  const std::string cfg = tmp / "h/config.json";
  struct Bad {
    nlohmann::json rope;
    std::string want;
  };
  const Bad bad[] = {
      {{{"rope_type", "linear"}, {"factor", 2.0}},
       "config.json: field \"rope_scaling.rope_type\" 'linear' is not supported (default, yarn)"},
      {{{"rope_type", "yarn"}}, "config.json: missing field \"rope_scaling.factor\""},
      {{{"rope_type", "yarn"}, {"factor", 0.0}},
       "config.json: rope_scaling.factor must be a positive number"},
      {{{"rope_type", "yarn"}, {"factor", -2.0}},
       "config.json: rope_scaling.factor must be a positive number"},
      {{{"rope_type", "yarn"}, {"factor", "4"}},
       "config.json: field \"rope_scaling.factor\" must be a number"},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 0}},
       "config.json: rope_scaling.original_max_position_embeddings must be positive"},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1.5}},
       "config.json: field \"rope_scaling.original_max_position_embeddings\" must be an integer"},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 1}, {"beta_slow", 2}},
       "config.json: rope_scaling.beta_fast (1.000000) must be greater than beta_slow"},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", -1}},
       "config.json: rope_scaling.attention_factor must be a positive number"},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"truncate", 1}},
       "config.json: field \"rope_scaling.truncate\" must be true or false"},
      {nlohmann::json::array({1, 2}), "config.json: field \"rope_scaling\" must be an object"},
  };
  for (const Bad& b : bad) {
    edit_config(tmp / "h", [&](nlohmann::json& j) { j["rope_scaling"] = b.rope; });
    EXPECT_ERROR(read_hf_config(cfg), b.want);
  }
  // The same under rope_parameters names that key.
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j.erase("rope_scaling");
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 0.0}};
  });
  EXPECT_ERROR(read_hf_config(cfg), "config.json: rope_parameters.factor must be a positive number");
  // Negative control: a good one reads.
  edit_config(tmp / "h", [](nlohmann::json& j) { j["rope_parameters"]["factor"] = 2.0; });
  EXPECT_TRUE(read_hf_config(cfg).rope_scaling.is_yarn());
}

TEST(HfImport, ConfigDefaultsAndErrors) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  const std::string cfg = tmp / "h/config.json";
  edit_config(tmp / "h", [](nlohmann::json& j) {
    j.erase("head_dim");
    j.erase("tie_word_embeddings");
    j.erase("num_key_value_heads");
  });
  ModelConfig c = read_hf_config(cfg);
  EXPECT_EQ(c.head_dim, 128);  // transformers' Qwen3Config default
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.num_kv_heads, c.num_heads);
  edit_config(tmp / "h", [](nlohmann::json& j) { j.erase("hidden_size"); });
  EXPECT_ERROR(read_hf_config(cfg), "config.json: missing field \"hidden_size\"");
  edit_config(tmp / "h", [](nlohmann::json& j) { j["hidden_size"] = "big"; });
  EXPECT_ERROR(read_hf_config(cfg), "config.json: field \"hidden_size\" must be an integer");
  edit_config(tmp / "h", [](nlohmann::json& j) { j["model_type"] = "llama"; });
  EXPECT_ERROR(read_hf_config(cfg), "config.json: model_type 'llama' is not supported");
  write_text(cfg, "{\"model_type\": ");
  EXPECT_ERROR(read_hf_config(cfg), "config.json: malformed JSON");
  fs::remove(cfg);
  EXPECT_ERROR(read_hf_dir(tmp / "h"), "config.json: cannot open: No such file");
  EXPECT_ERROR(read_hf_dir(tmp / "nope"), "nope: no such directory");
  EXPECT_ERROR(read_hf_dir(kQwenHf + "/config.json"), "not a directory");

  TempDir g("polaris_formats");
  copy_hf_dir(kGpt2Hf, g / "h", FileDType::F32, false);
  edit_config(g / "h", [](nlohmann::json& j) { j["n_inner"] = 100; });
  EXPECT_EQ(read_hf_config(g / "h/config.json").intermediate_size, 100);
  edit_config(g / "h", [](nlohmann::json& j) { j["activation_function"] = "relu"; });
  EXPECT_ERROR(read_hf_config(g / "h/config.json"), "config.json", "relu");
  edit_config(g / "h", [](nlohmann::json& j) {
    j["activation_function"] = "gelu_new";
    j["n_head"] = 5;
  });
  EXPECT_ERROR(read_hf_config(g / "h/config.json"), "config.json", "head_dim * num_heads");
}

TEST(HfImport, MissingTensor) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  edit_tensors(tmp / "h", [](TensorMap& m) { m.erase("model.layers.1.mlp.up_proj.weight"); });
  EXPECT_ERROR(read_hf_dir(tmp / "h"),
               "model.safetensors: tensor model.layers.1.mlp.up_proj.weight is missing");
  // Untied config but no lm_head.weight.
  TempDir u("polaris_formats");
  copy_hf_dir(kQwenHf, u / "h", FileDType::F32, false);
  edit_config(u / "h", [](nlohmann::json& j) { j["tie_word_embeddings"] = false; });
  EXPECT_ERROR(read_hf_dir(u / "h"), "model.safetensors: tensor lm_head.weight is missing");
}

TEST(HfImport, WrongShape) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kGpt2Hf, tmp / "h", FileDType::F32, false);
  edit_tensors(tmp / "h", [](TensorMap& m) {
    auto& t = m["transformer.h.1.attn.c_attn.weight"];
    t.first = {192, 64};  // stored [out, in] instead of Conv1D's [in, out]
  });
  EXPECT_ERROR(read_hf_dir(tmp / "h"), "model.safetensors: tensor transformer.h.1.attn.c_attn.weight",
               "[192, 64]", "[64, 192]");
  // A config with a wider MLP than the checkpoint.
  TempDir q("polaris_formats");
  copy_hf_dir(kQwenHf, q / "h", FileDType::F32, false);
  edit_config(q / "h", [](nlohmann::json& j) { j["intermediate_size"] = 512; });
  EXPECT_ERROR(read_hf_dir(q / "h"), "model.safetensors: tensor model.layers.0.mlp.gate_proj.weight",
               "has shape [256, 128]", "[512, 128]");
}

TEST(HfImport, UnexpectedTensorsAndIgnoredBuffers) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  edit_config(tmp / "h", [](nlohmann::json& j) { j["num_hidden_layers"] = 1; });
  EXPECT_ERROR(read_hf_dir(tmp / "h"), "model.safetensors: unexpected tensor model.layers.1.");
  // GPT-2 without the "transformer." prefix and with the causal-mask buffers.
  TempDir g("polaris_formats");
  copy_hf_dir(kGpt2Hf, g / "h", FileDType::F32, false);
  edit_tensors(g / "h", [](TensorMap& m) {
    TensorMap renamed;
    for (auto& kv : m) renamed[kv.first.substr(std::string("transformer.").size())] = kv.second;
    renamed["h.0.attn.bias"] = {{1, 1, 4, 4}, std::vector<float>(16, 1.f)};
    renamed["h.0.attn.masked_bias"] = {{}, std::vector<float>(1, -1e4f)};
    m = renamed;
  });
  EXPECT_EQ(read_hf_dir(g / "h").params, read_hf_dir(kGpt2Hf).params);
}

TEST(HfImport, TiedHeadPresentMustEqualEmbedding) {
  TempDir tmp("polaris_formats");
  copy_hf_dir(kQwenHf, tmp / "h", FileDType::F32, false);
  edit_tensors(tmp / "h", [](TensorMap& m) { m["lm_head.weight"] = m["model.embed_tokens.weight"]; });
  EXPECT_EQ(read_hf_dir(tmp / "h").params, read_hf_dir(kQwenHf).params);
  edit_tensors(tmp / "h", [](TensorMap& m) { m["lm_head.weight"].second[5] += 1.f; });
  EXPECT_ERROR(read_hf_dir(tmp / "h"), "model.safetensors: tensor lm_head.weight differs");
}

TEST(HfImport, UntiedQwenRoundTrip) {
  TempDir tmp("polaris_formats");
  ModelConfig c = tiny("qwen3-tiny");
  c.tied_embeddings = false;
  std::vector<float> p = random_params(c, 11);
  write_hf_dir(tmp / "u", c, p, FileDType::F32);
  SafetensorsFile f(tmp / "u/model.safetensors");
  ASSERT_TRUE(f.has("lm_head.weight"));
  ParamLayout L = build_param_layout(c);
  std::vector<float> head = f.read_f32("lm_head.weight");
  EXPECT_TRUE(std::equal(head.begin(), head.end(), p.begin() + long(L.lm_head)));
  LoadedModel m = read_hf_dir(tmp / "u");
  EXPECT_FALSE(m.config.tied_embeddings);
  EXPECT_EQ(m.params, p);
}

TEST(NonFiniteWeights, RefusedOnReadAndOnNarrowExport) {
  TempDir tmp("polaris_formats");
  const ModelConfig c = tiny("qwen3-tiny");
  std::vector<float> p = random_params(c, 3);
  const ParamLayout layout = build_param_layout(c);
  const TensorInfo& norm = layout.tensors[size_t(layout.find("final_norm.weight"))];
  p[norm.offset + 2] = std::numeric_limits<float>::quiet_NaN();
  write_model_bin(tmp / "nan.bin", c, p, false);
  EXPECT_ERROR(read_model_bin(tmp / "nan.bin"), "nan.bin: tensor final_norm.weight holds NaN at element 2");
  write_hf_dir(tmp / "nan_hf", c, p, FileDType::F32);
  EXPECT_ERROR(read_hf_dir(tmp / "nan_hf"), "nan_hf: tensor final_norm.weight holds NaN");

  // 1e6 fits bf16 but not fp16 (largest 65504): the fp16 export is refused
  // before anything is written.
  p[norm.offset + 2] = 1e6f;
  write_hf_dir(tmp / "bf16_hf", c, p, FileDType::BF16);
  EXPECT_NEAR(read_hf_dir(tmp / "bf16_hf").params[norm.offset + 2], 1e6f, 1e4f);
  EXPECT_ERROR(write_hf_dir(tmp / "fp16_hf", c, p, FileDType::F16), "model.norm.weight holds 1000000",
               "beyond the range of F16");
  EXPECT_FALSE(std::ifstream(tmp / "fp16_hf/model.safetensors").good());
}

TEST(HfImport, GradientsMapLikeWeights) {
  // qwen3: plain copies; the tied embedding's gradient is HF's embed_tokens gradient.
  {
    ModelConfig c = read_hf_config(kQwenHf + "/config.json");
    SafetensorsFile g("tests/fixtures/qwen3_tiny/grads.safetensors");
    std::vector<float> flat = hf_named_tensors_to_flat(c, g);
    ParamLayout L = build_param_layout(c);
    ASSERT_EQ(flat.size(), L.total);
    std::vector<float> e = g.read_f32("model.embed_tokens.weight");
    EXPECT_TRUE(std::equal(e.begin(), e.end(), flat.begin() + long(L.embed_tokens)));
    std::vector<float> k = g.read_f32("model.layers.1.self_attn.k_norm.weight");
    EXPECT_TRUE(std::equal(k.begin(), k.end(),
                           flat.begin() + long(tensor(L, "layers.1.attn.k_norm.weight").offset)));
  }
  // gpt2: Conv1D gradients transpose like the weights.
  {
    ModelConfig c = read_hf_config(kGpt2Hf + "/config.json");
    SafetensorsFile g("tests/fixtures/gpt2_tiny/grads.safetensors");
    std::vector<float> flat = hf_named_tensors_to_flat(c, g);
    ParamLayout L = build_param_layout(c);
    std::vector<float> hf = g.read_f32("transformer.h.0.attn.c_proj.weight");  // [in, out]
    const float* o = &flat[tensor(L, "layers.0.attn.o.weight").offset];
    for (int r = 0; r < 64; ++r)
      for (int i = 0; i < 64; ++i) ASSERT_EQ(o[r * 64 + i], hf[size_t(i * 64 + r)]);
    // Mapping back gives the HF tensors again.
    for (const HfTensor& t : flat_to_hf_named_tensors(c, flat)) {
      std::vector<float> want = g.read_f32(t.name);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), t.data())) << t.name;
    }
  }
}

// ---------------------------------------------------------------------------
// Presets against published parameter counts

TEST(Presets, ParameterCountsMatchPublishedModels) {
  EXPECT_EQ(build_param_layout(config_from_preset("gpt2-124M")).total, 124439808u);
  EXPECT_EQ(build_param_layout(config_from_preset("qwen3-0.6B")).total, 596049920u);
  EXPECT_EQ(build_param_layout(config_from_preset("qwen3-4B")).total, 4022468096u);
  EXPECT_EQ(build_param_layout(config_from_preset("qwen3-8B")).total, 8190735360u);
  // GPT-2 124M has no separate LM head; the position table is 1024 x 768.
  ParamLayout L = build_param_layout(config_from_preset("gpt2-124M"));
  EXPECT_EQ(L.lm_head, L.embed_tokens);
  EXPECT_EQ(tensor(L, "embed_positions").shape, (std::vector<int64_t>{1024, 768}));
  EXPECT_EQ(build_param_layout(config_from_preset("qwen3-8B")).tensors.back().name, "lm_head");
}

TEST(Presets, FixtureConfigsMatchTinyPresets) {
  EXPECT_EQ(read_hf_config(kQwenHf + "/config.json").describe(), tiny("qwen3-tiny").describe());
  EXPECT_EQ(read_hf_config(kGpt2Hf + "/config.json").describe(), tiny("gpt2-tiny").describe());
}
