// Hostile inputs: every file the programs read, made absurd on purpose, must end
// in one Error line naming the file, fast, and without a crash or a huge
// allocation. Each input is generated here (never a large stored file):
//   - deep nesting in every JSON input (data/json_input.h);
//   - sizes taken from a file (model.bin, config.json, safetensors shapes,
//     tokenizer ids) checked against bounds and the file before allocating;
//   - structural oddities: token shard reserved words, state.json of the wrong
//     type or range, NaN weights in a checkpoint.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "checkpoint/checkpoint.h"
#include "data/json_input.h"
#include "data/jsonl_reader.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/hf_import.h"
#include "model/model_file.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// n '[' then n ']': valid JSON nested n levels deep.
std::string deep_array(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

// A safetensors file whose header is `header` and whose data section is `data_bytes` zero bytes.
void write_safetensors_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = char((len >> (8 * i)) & 0xff);
  bytes += header;
  bytes += std::string(data_bytes, '\0');
  write_text(path, bytes);
}

// Seconds `body` takes.
template <typename F>
double seconds_of(F body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A tiny valid byte-level BPE tokenizer.json; `added` is the added_tokens array.
std::string tokenizer_json(const std::string& vocab, const std::string& added) {
  return "{\"model\":{\"type\":\"BPE\",\"vocab\":" + vocab +
         ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
         "\"decoder\":{\"type\":\"ByteLevel\"},\"added_tokens\":" +
         added + "}";
}

Checkpoint tiny_checkpoint() {
  Checkpoint c;
  c.config = config_from_preset("qwen3-tiny");
  const ParamLayout layout = build_param_layout(c.config);
  c.params.resize(layout.total);
  init_params(c.config, layout, 1, c.params.data());
  OptimizerShard s;
  s.begin = 0;
  s.end = layout.total;
  s.step = 3;
  s.m.assign(layout.total, 0.f);
  s.v.assign(layout.total, 0.f);
  c.optimizer = {s};
  c.state = {{"step", 3}, {"world_size", 1}, {"zero", 0}, {"flags", nlohmann::json::object()},
             {"loop", {{"data_epoch", 0}, {"data_cursor", 5}}}};
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------
// The bounded JSON reader

TEST(BoundedJson, DepthLimitIsEnforcedAndNamed) {
  nlohmann::json v;
  std::string problem;
  EXPECT_TRUE(parse_json_bounded(deep_array(kJsonMaxDepth), &v, &problem)) << problem;
  EXPECT_FALSE(parse_json_bounded(deep_array(kJsonMaxDepth + 1), &v, &problem));
  EXPECT_NE(problem.find("nested deeper than 64 levels"), std::string::npos) << problem;
  EXPECT_FALSE(parse_json_bounded(deep_array(100000), &v, &problem));
  EXPECT_FALSE(parse_json_bounded(std::string(100000, '['), &v, &problem));  // unterminated too
  EXPECT_NE(problem.find("nested deeper"), std::string::npos) << problem;
  EXPECT_ERROR(parse_json_or_throw("{\"a\": " + deep_array(1000) + "}", "x.json"), "x.json: ",
               "nested deeper than 64 levels");
  EXPECT_ERROR(parse_json_or_throw("{\"a\": ", "x.json"), "x.json: malformed JSON");
}

TEST(BoundedJson, SizeLimitIsCheckedBeforeReading) {
  TempDir tmp("hostile");
  const std::string path = tmp / "big.json";
  write_text(path, "[" + std::string(2000, ' ') + "]");
  EXPECT_ERROR(read_json_file(path, 1000, "a test file"), path, "2002 bytes, over the",
               "limit for a test file");
  EXPECT_EQ(read_json_file(path, 4000, "a test file"), nlohmann::json::array());
  EXPECT_ERROR(read_json_file(tmp.path, 4000, "a test file"), "is a directory");
  EXPECT_ERROR(read_json_file(tmp / "none.json", 4000, "a test file"), "none.json: cannot open");
}

// ---------------------------------------------------------------------------
// Deep nesting in every JSON input

TEST(HostileJson, DeepConfigJson) {
  TempDir tmp("hostile");
  write_text(tmp / "config.json", deep_array(100000));
  EXPECT_ERROR(read_hf_config(tmp / "config.json"), "config.json: nested deeper than 64 levels");
  write_text(tmp / "config.json", "{\"model_type\": \"qwen3\", \"x\": " + deep_array(100000) + "}");
  EXPECT_ERROR(read_hf_config(tmp / "config.json"), "config.json: nested deeper");
}

TEST(HostileJson, DeepSafetensorsHeaderAndIndex) {
  TempDir tmp("hostile");
  write_safetensors_raw(tmp / "d.safetensors", deep_array(100000), 0);
  EXPECT_ERROR(SafetensorsFile(tmp / "d.safetensors"), "d.safetensors: nested deeper than 64");
  fs::create_directories(tmp / "m");
  write_text(tmp / "m/model.safetensors.index.json", "{\"weight_map\": " + deep_array(100000) + "}");
  EXPECT_ERROR(HfTensors::from_dir(tmp / "m"), "model.safetensors.index.json: nested deeper");
}

TEST(HostileJson, DeepTokenizerJson) {
  TempDir tmp("hostile");
  write_text(tmp / "tokenizer.json", deep_array(100000));
  EXPECT_ERROR(Tokenizer::load(tmp / "tokenizer.json"), "tokenizer.json: nested deeper than 64");
  // Deep inside model.vocab and inside a normalizer Sequence.
  write_text(tmp / "tokenizer.json",
             tokenizer_json("{\"a\": " + deep_array(100000) + "}", "[]"));
  EXPECT_ERROR(Tokenizer::load(tmp / "tokenizer.json"), "tokenizer.json: nested deeper");
  std::string seq = "null";
  for (int i = 0; i < 5000; ++i) seq = "{\"type\":\"Sequence\",\"normalizers\":[" + seq + "]}";
  write_text(tmp / "tokenizer.json", "{\"normalizer\": " + seq + "}");
  EXPECT_ERROR(Tokenizer::load(tmp / "tokenizer.json"), "tokenizer.json: nested deeper");
  // A deep tokenizer_config.json beside a valid tokenizer.json.
  write_text(tmp / "tokenizer.json", tokenizer_json("{\"a\": 0}", "[]"));
  write_text(tmp / "tokenizer_config.json", "{\"eos_token\": " + deep_array(100000) + "}");
  EXPECT_ERROR(Tokenizer::load(tmp / "tokenizer.json"), "tokenizer_config.json: nested deeper");
}

TEST(HostileJson, DeepJsonlLine) {
  TempDir tmp("hostile");
  write_text(tmp / "d.jsonl", "{\"a\": 1}\n{\"a\": " + deep_array(100000) + "}\n");
  size_t records = 0;
  auto count = [&](const nlohmann::json&, size_t) { ++records; };
  EXPECT_ERROR(read_jsonl(tmp / "d.jsonl", false, count), "d.jsonl:2: nested deeper than 64");
  records = 0;
  EXPECT_EQ(read_jsonl(tmp / "d.jsonl", true, count), 1u);  // skipped with --skip-bad
  EXPECT_EQ(records, 1u);
}

TEST(HostileJson, DeepStateJson) {
  TempDir tmp("hostile");
  write_checkpoint(tmp.path, 3, tiny_checkpoint(), 0);
  const std::string step = tmp / "step_00000003";
  write_text(step + "/state.json", deep_array(100000));
  write_checkpoint_manifest(step);  // past the checksum, to the JSON reader
  EXPECT_ERROR(read_checkpoint(step), "state.json: nested deeper than 64");
}

// ---------------------------------------------------------------------------
// Sizes taken from files

TEST(HostileSizes, AbsurdModelBinHeaderFailsFast) {
  TempDir tmp("hostile");
  const ModelConfig c = config_from_preset("qwen3-tiny");
  const ParamLayout layout = build_param_layout(c);
  std::vector<float> params(layout.total);
  init_params(c, layout, 1, params.data());
  write_model_bin(tmp / "m.bin", c, params, false);
  const std::string good = read_bytes(tmp / "m.bin");
  auto patched = [&](int word, int32_t value) {
    std::string b = good;
    std::memcpy(&b[4 * word], &value, 4);
    write_text(tmp / "bad.bin", b);
    return tmp / "bad.bin";
  };
  const double took = seconds_of([&] {
    // Each refused by a bound or the 32-bit-index check, whichever comes first.
    for (auto [word, value] : std::vector<std::pair<int, int32_t>>{
             {6, INT32_MAX}, {5, 1 << 30}, {5, 1 << 17}, {4, INT32_MAX}, {4, (1 << 24) + 1},
             {10, INT32_MAX}, {9, 1 << 20}, {9, 1 << 30}, {7, INT32_MAX}, {8, 3}, {11, INT32_MAX}}) {
      const std::string msg = error_of([&] { read_model_bin(patched(word, value)); });
      EXPECT_NE(msg.find("bad.bin: "), std::string::npos) << word << " = " << value << ": " << msg;
    }
    EXPECT_ERROR(read_model_bin(patched(6, INT32_MAX)), "bad.bin", "num_layers", "over the limit");
    EXPECT_ERROR(read_model_bin(patched(5, 1 << 17)), "bad.bin", "hidden_size", "over the limit");
    EXPECT_ERROR(read_model_bin(patched(9, 1 << 20)), "bad.bin", "head_dim", "over the limit");
    // In bounds but not what the file holds: the count and size checks refuse it.
    EXPECT_ERROR(read_model_bin(patched(6, 1024)), "bad.bin", "parameters");
    EXPECT_ERROR(read_model_bin_config(patched(6, 1024)), "bad.bin", "parameters");
    // Parameter count (words 15, 16) that would overflow count * 4.
    EXPECT_ERROR(read_model_bin(patched(16, INT32_MAX)), "bad.bin", "parameters");
  });
  EXPECT_LT(took, 5.0) << "absurd headers must fail before any big allocation or loop";
}

TEST(HostileSizes, ModelBinReservedWordsMustBeZero) {
  TempDir tmp("hostile");
  const ModelConfig c = config_from_preset("qwen3-demo");
  const ParamLayout layout = build_param_layout(c);
  std::vector<float> params(layout.total);
  init_params(c, layout, 1, params.data());
  write_model_bin(tmp / "m.bin", c, params, true);
  std::string b = read_bytes(tmp / "m.bin");
  const int32_t junk = 77;
  std::memcpy(&b[4 * 200], &junk, 4);
  write_text(tmp / "m.bin", b);
  EXPECT_ERROR(read_model_bin(tmp / "m.bin"), "m.bin: reserved header word 200 is 77");
}

TEST(HostileSizes, AbsurdConfigJsonFailsFast) {
  TempDir tmp("hostile");
  const double took = seconds_of([&] {
    for (const char* field : {"num_hidden_layers", "hidden_size", "vocab_size", "intermediate_size",
                              "num_attention_heads", "head_dim", "max_position_embeddings"}) {
      nlohmann::json j = {{"model_type", "qwen3"}, {"hidden_size", 128},
                          {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                          {"num_key_value_heads", 2}, {"head_dim", 32},
                          {"intermediate_size", 256}, {"vocab_size", 512}};
      j[field] = 2147483647;
      write_text(tmp / "config.json", j.dump());
      EXPECT_ERROR(read_hf_config(tmp / "config.json"), "config.json: ");
    }
    nlohmann::json j = {{"model_type", "qwen3"}, {"hidden_size", 128},
                        {"num_hidden_layers", 100000}, {"num_attention_heads", 4},
                        {"num_key_value_heads", 2}, {"head_dim", 32},
                        {"intermediate_size", 256}, {"vocab_size", 512}};
    write_text(tmp / "config.json", j.dump());
    EXPECT_ERROR(read_hf_config(tmp / "config.json"), "config.json: ", "num_layers = 100000",
                 "over the limit of 1024");
    // Within every bound yet huge (~1e13 parameters): the missing or wrong-shaped
    // tensors are reported before the flat buffer is allocated.
    fs::create_directories(tmp / "m");
    j = {{"model_type", "qwen3"}, {"hidden_size", 65536},
                        {"num_hidden_layers", 1024}, {"num_attention_heads", 255},
                        {"num_key_value_heads", 255}, {"head_dim", 128},
                        {"intermediate_size", 32767}, {"vocab_size", 32767}};
    write_text(tmp / "m/config.json", j.dump());
    const float one = 1.f;
    write_safetensors(tmp / "m/model.safetensors",
                      {SafetensorsTensor{"model.embed_tokens.weight", {1}, &one}});
    EXPECT_ERROR(read_hf_dir(tmp / "m"), "model.safetensors", "embed_tokens", "needs");
  });
  EXPECT_LT(took, 5.0);
}

TEST(HostileSizes, SafetensorsShapeOverflow) {
  TempDir tmp("hostile");
  // 2^62 I64 elements: 2^65 bytes, which wraps to 0 in 64 bits.
  write_safetensors_raw(tmp / "o.safetensors",
                        "{\"t\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],"
                        "\"data_offsets\":[0,0]}}",
                        0);
  EXPECT_ERROR(SafetensorsFile(tmp / "o.safetensors"), "o.safetensors: tensor t",
               "overflows 64 bits");
  // Large but not overflowing: the offsets must then match it, and cannot.
  write_safetensors_raw(tmp / "l.safetensors",
                        "{\"t\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],"
                        "\"data_offsets\":[0,0]}}",
                        0);
  EXPECT_ERROR(SafetensorsFile(tmp / "l.safetensors"), "l.safetensors: tensor t", "needs 4398046511104");
  // A product that wraps: 2^32 x 2^32 x 1 F32.
  write_safetensors_raw(tmp / "p.safetensors",
                        "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                        "\"data_offsets\":[0,0]}}",
                        0);
  EXPECT_ERROR(SafetensorsFile(tmp / "p.safetensors"), "p.safetensors: tensor t",
               "overflows 64 bits");
  // A dimension over 2^63.
  write_safetensors_raw(tmp / "q.safetensors",
                        "{\"t\":{\"dtype\":\"F32\",\"shape\":[18446744073709551615],"
                        "\"data_offsets\":[0,0]}}",
                        0);
  EXPECT_ERROR(SafetensorsFile(tmp / "q.safetensors"), "q.safetensors: tensor t",
               "non-negative integers");
  // A zero dimension still makes an empty tensor, whatever the others are.
  write_safetensors_raw(tmp / "z.safetensors",
                        "{\"t\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],"
                        "\"data_offsets\":[0,0]}}",
                        0);
  EXPECT_EQ(SafetensorsFile(tmp / "z.safetensors").entry("t").numel, 0u);
  // A header length over the limit (and beyond the file) is refused before reading it.
  write_safetensors_raw(tmp / "h.safetensors", "{}", 0);
  std::string b = read_bytes(tmp / "h.safetensors");
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(&b[0], &huge, 8);
  write_text(tmp / "h.safetensors", b);
  EXPECT_ERROR(SafetensorsFile(tmp / "h.safetensors"), "h.safetensors: header length");
}

TEST(HostileSizes, TokenizerIdsNear2To31) {
  TempDir tmp("hostile");
  const std::string path = tmp / "tokenizer.json";
  const double took = seconds_of([&] {
    write_text(path, tokenizer_json("{\"a\": 0}",
                                    "[{\"id\": 2147483647, \"content\": \"<x>\", \"special\": true}]"));
    EXPECT_ERROR(Tokenizer::load(path), "tokenizer.json", "2147483647");
    write_text(path, tokenizer_json("{\"a\": 0}",
                                    "[{\"id\": 4294967296, \"content\": \"<x>\", \"special\": true}]"));
    EXPECT_ERROR(Tokenizer::load(path), "tokenizer.json", "4294967296");
    write_text(path, tokenizer_json("{\"a\": 0, \"b\": 2147483647}", "[]"));
    EXPECT_ERROR(Tokenizer::load(path), "tokenizer.json", "2147483647", "out of range");
    // In 2^24 but far beyond the number of tokens listed.
    write_text(path, tokenizer_json("{\"a\": 0, \"b\": 16000000}", "[]"));
    EXPECT_ERROR(Tokenizer::load(path), "tokenizer.json", "16000000", "out of range");
  });
  EXPECT_LT(took, 5.0);
  // Dense ids still load.
  write_text(path, tokenizer_json("{\"a\": 0, \"b\": 1}",
                                  "[{\"id\": 2, \"content\": \"<x>\", \"special\": true}]"));
  EXPECT_EQ(Tokenizer::load(path).vocab_size(), 3);
}

// ---------------------------------------------------------------------------
// Structural oddities

TEST(HostileStructure, TokenShardReservedWordsMustBeZero) {
  TempDir tmp("hostile");
  write_token_shard(tmp / "s.bin", {1, 2, 3}, 512);
  EXPECT_EQ(read_token_shard(tmp / "s.bin").size(), 3u);
  std::string b = read_bytes(tmp / "s.bin");
  const int32_t junk = -5;
  std::memcpy(&b[4 * 255], &junk, 4);
  write_text(tmp / "s.bin", b);
  EXPECT_ERROR(read_token_shard(tmp / "s.bin"), "s.bin: reserved header word 255 is -5");
}

TEST(HostileStructure, StateJsonTypeAndRanges) {
  TempDir tmp("hostile");
  write_checkpoint(tmp.path, 3, tiny_checkpoint(), 0);
  const std::string step = tmp / "step_00000003";
  const std::string state = step + "/state.json";
  EXPECT_EQ(read_checkpoint(step).state["step"], 3);
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"[1, 2]", "expected a JSON object, got array"},
      {"42", "expected a JSON object, got number"},
      {"null", "expected a JSON object, got null"},
      {"\"step\"", "expected a JSON object, got string"},
      {"{\"step\": -1}", "\"step\" must be an integer in [0, 2147483647], got -1"},
      {"{\"step\": 4294967296}", "\"step\" must be an integer"},
      {"{\"step\": 1.5}", "\"step\" must be an integer"},
      {"{\"step\": \"3\"}", "\"step\" must be an integer"},
      {"{\"world_size\": 0}", "\"world_size\" must be an integer in [1, "},
      {"{\"zero\": 7}", "\"zero\" must be an integer in [0, 2], got 7"},
      {"{\"zero\": -1}", "\"zero\" must be an integer in [0, 2]"},
      {"{\"flags\": []}", "\"flags\" must be an object"},
      {"{\"loop\": 3}", "\"loop\" must be an object"},
      {"{\"loop\": {\"data_epoch\": -1}}", "\"loop.data_epoch\" must be an integer"},
      {"{\"loop\": {\"data_cursor\": -7}}", "\"loop.data_cursor\" must be an integer"},
      {"{\"loop\": {\"rows_taken\": 1e300}}", "\"loop.rows_taken\" must be an integer"},
      {"{\"loop\": {\"prompts_taken\": -3}}", "\"loop.prompts_taken\" must be an integer"},
      {"{\"loop\": {\"ranks\": [0, -1, 2]}}", "\"loop.ranks\" holds -1"},
      {"{\"loop\": {\"ranks\": {}}}", "\"loop.ranks\" must be an array"},
  };
  for (const Case& c : cases) {
    write_text(state, c.text);
    write_checkpoint_manifest(step);  // past the checksum, to the structure checks
    EXPECT_ERROR(read_checkpoint(step), state + ": " + c.expect);
  }
  // GRPO writes its per-rank counters as doubles: still accepted.
  write_text(state, "{\"step\": 2, \"loop\": {\"ranks\": [1.0, 4.0, 9.0], \"eval_before\": 0.5}}");
  write_checkpoint_manifest(step);
  EXPECT_EQ(read_checkpoint(step).state["step"], 2);
}

TEST(HostileStructure, NaNWeightsInACheckpointAreRefused) {
  TempDir tmp("hostile");
  Checkpoint c = tiny_checkpoint();
  const ParamLayout layout = build_param_layout(c.config);
  const TensorInfo& t = layout.tensors[3];
  c.params[t.offset + 5] = std::numeric_limits<float>::quiet_NaN();
  write_checkpoint(tmp.path, 3, c, 0);
  EXPECT_ERROR(read_checkpoint(tmp / "step_00000003"), "model.h5: tensor " + t.name,
               "NaN at element 5");
  c = tiny_checkpoint();
  c.optimizer[0].v[11] = std::numeric_limits<float>::infinity();
  write_checkpoint(tmp.path, 4, c, 0);
  EXPECT_ERROR(read_checkpoint(tmp / "step_00000004"), "optimizer.h5: shard_0",
               "non-finite moment", "element 11");
}
