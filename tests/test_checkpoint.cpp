// Checkpoints: bit-exact round trip, the latest pointer and pruning, crash
// leftovers, every bad-input case as one Error line naming the file, re-sharding.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "checkpoint/checkpoint.h"
#include "model/params.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;
namespace fs = std::filesystem;

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

OptimizerShard shard(size_t begin, size_t end, int step, uint32_t seed) {
  OptimizerShard s;
  s.begin = begin;
  s.end = end;
  s.step = step;
  s.m = random_floats(end - begin, seed);
  s.v = random_floats(end - begin, seed + 1);
  for (float& x : s.v) x = x * x;
  return s;
}

// A qwen3-tiny checkpoint with two ZeRO shards, a run state and a reference model.
Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.config = config_from_preset("qwen3-tiny");
  const size_t total = build_param_layout(c.config).total;
  c.params = random_floats(total, 1);
  c.optimizer = {shard(0, total / 2, 7, 2), shard(total / 2, total, 7, 4)};
  c.state = {{"step", 7},
             {"mode", "pretrain"},
             {"lr", 3e-4},
             {"rng", {{"state", 0xfedcba9876543210ULL}, {"inc", 12345}}},
             {"sampler", {{"epoch", 2}, {"position", 41}}},
             {"flags", {{"zero", 1}, {"seq_len", 64}}}};
  c.extra_tensors["reference_params"] = random_floats(total, 9);
  c.extra_tensors["empty"] = {};
  return c;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Re-writes the manifest of the step directory holding `file`, after a test
// edited the file by hand: the checks behind the manifest then see the edit.
void reseal(const std::string& file) {
  write_checkpoint_manifest(fs::path(file).parent_path().string());
}

// Restores `file` from `backup` and reseals its step directory.
void restore(const std::string& backup, const std::string& file) {
  fs::copy_file(backup, file, fs::copy_options::overwrite_existing);
  reseal(file);
}

// Overwrites the integer attribute `name` of object `object` ("." = the root) of
// an HDF5 file (and reseals the checkpoint's manifest).
void set_int_attribute(const std::string& file, const char* name, int64_t value,
                       const char* object = ".") {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  // The object is opened first: HDF5 1.10 cannot write through H5Aopen_by_name.
  hid_t o = H5Oopen(f, object, H5P_DEFAULT);
  ASSERT_GE(o, 0);
  hid_t a = H5Aopen(o, name, H5P_DEFAULT);
  ASSERT_GE(a, 0);
  EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &value), 0);
  H5Aclose(a);
  H5Oclose(o);
  H5Fclose(f);
  reseal(file);
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExact) {
  TempDir dir("polaris_ckpt");
  const Checkpoint c = sample_checkpoint();
  write_checkpoint(dir.path, 7, c, 3);
  const std::string path = latest_checkpoint(dir.path);
  EXPECT_EQ(path, dir.path + "/step_00000007");
  for (const char* f : {"model.h5", "optimizer.h5", "state.json", "extra.h5"})
    EXPECT_TRUE(fs::is_regular_file(path + "/" + f)) << f;

  const Checkpoint r = read_checkpoint(path);
  EXPECT_EQ(r.config.describe(), c.config.describe());
  EXPECT_EQ(r.config.family, c.config.family);
  EXPECT_EQ(r.config.vocab_size, c.config.vocab_size);
  EXPECT_EQ(r.config.head_dim, c.config.head_dim);
  EXPECT_EQ(r.config.max_positions, c.config.max_positions);
  EXPECT_EQ(r.config.intermediate_size, c.config.intermediate_size);
  EXPECT_EQ(r.config.tied_embeddings, c.config.tied_embeddings);
  EXPECT_EQ(r.config.rope_theta, c.config.rope_theta);
  EXPECT_EQ(r.config.norm_eps, c.config.norm_eps);
  EXPECT_FALSE(r.config.rope_scaling.is_yarn());
  EXPECT_TRUE(bits_equal(r.params, c.params));
  ASSERT_EQ(r.optimizer.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r.optimizer[i].begin, c.optimizer[i].begin);
    EXPECT_EQ(r.optimizer[i].end, c.optimizer[i].end);
    EXPECT_EQ(r.optimizer[i].step, 7);
    EXPECT_TRUE(bits_equal(r.optimizer[i].m, c.optimizer[i].m));
    EXPECT_TRUE(bits_equal(r.optimizer[i].v, c.optimizer[i].v));
  }
  EXPECT_EQ(r.state, c.state);
  EXPECT_EQ(r.state["rng"]["state"].get<uint64_t>(), 0xfedcba9876543210ULL);
  ASSERT_EQ(r.extra_tensors.size(), 2u);
  EXPECT_TRUE(bits_equal(r.extra_tensors.at("reference_params"), c.extra_tensors.at("reference_params")));
  EXPECT_TRUE(r.extra_tensors.at("empty").empty());
}

// A YaRN model's scaling survives a checkpoint (a run trained or RL-tuned
// with it resumes with it).
TEST(Checkpoint, YarnRoundTrip) {
  TempDir dir("polaris_ckpt");
  Checkpoint c = sample_checkpoint();
  c.config.rope_scaling.type = RopeType::Yarn;
  c.config.rope_scaling.factor = 2.5f;
  c.config.rope_scaling.original_max_positions = 100;
  c.config.rope_scaling.beta_fast = 16.f;
  c.config.rope_scaling.beta_slow = 0.5f;
  c.config.rope_scaling.attention_factor = 1.09f;
  c.config.rope_scaling.truncate = false;
  write_checkpoint(dir.path, 3, c, 3);
  const Checkpoint r = read_checkpoint(latest_checkpoint(dir.path));
  EXPECT_TRUE(r.config.rope_scaling == c.config.rope_scaling);
  EXPECT_TRUE(bits_equal(r.params, c.params));
}

TEST(Checkpoint, GptTwoAndNoOptimizerRoundTrip) {
  TempDir dir("polaris_ckpt");
  Checkpoint c;
  c.config = config_from_preset("gpt2-tiny");
  c.params = random_floats(build_param_layout(c.config).total, 3);
  c.state = {{"step", 0}};
  write_checkpoint(dir.path, 0, c, 0);
  const Checkpoint r = read_checkpoint(latest_checkpoint(dir.path));
  EXPECT_TRUE(r.config.is_gpt2());
  EXPECT_TRUE(bits_equal(r.params, c.params));
  EXPECT_TRUE(r.optimizer.empty());
  EXPECT_TRUE(r.extra_tensors.empty());
}

TEST(Checkpoint, LatestPointerAndPruning) {
  TempDir dir("polaris_ckpt");
  EXPECT_EQ(latest_checkpoint(dir.path), "");
  EXPECT_EQ(latest_checkpoint(dir.path + "/nothing_here"), "");
  Checkpoint c = sample_checkpoint();
  for (int step = 1; step <= 5; ++step) {
    c.state["step"] = step;
    write_checkpoint(dir.path, step * 10, c, 2);
    EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/" + checkpoint_name(step * 10));
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step_00000040", "step_00000050"}));
  std::ifstream latest(dir.path + "/latest");
  std::string line;
  std::getline(latest, line);
  EXPECT_EQ(line, "step_00000050");
  EXPECT_EQ(read_checkpoint(latest_checkpoint(dir.path)).state["step"], 5);

  // Rewriting an existing step replaces it.
  c.state["step"] = 99;
  write_checkpoint(dir.path, 50, c, 2);
  EXPECT_EQ(read_checkpoint(dir.path + "/step_00000050").state["step"], 99);

  // keep_last <= 0 keeps everything.
  write_checkpoint(dir.path, 60, c, 0);
  write_checkpoint(dir.path, 70, c, 0);
  EXPECT_TRUE(fs::is_directory(dir.path + "/step_00000040"));
}

TEST(Checkpoint, InterruptedWriteIsIgnored) {
  TempDir dir("polaris_ckpt");
  Checkpoint c = sample_checkpoint();
  write_checkpoint(dir.path, 10, c, 3);
  // A crash while writing step 20: a partial tmp directory with garbage in it.
  const std::string tmp = dir.path + "/step_00000020.tmp";
  fs::create_directory(tmp);
  std::ofstream(tmp + "/model.h5") << "half a file";
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000010");
  EXPECT_TRUE(bits_equal(read_checkpoint(latest_checkpoint(dir.path)).params, c.params));

  // A crash after the rename but before DIR/latest moved: the pointer still wins.
  fs::copy(dir.path + "/step_00000010", dir.path + "/step_00000030");
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000010");

  // The next write cleans the leftover up.
  write_checkpoint(dir.path, 20, c, 3);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000020");

  // With no pointer at all, the newest complete directory is used; incomplete ones are skipped.
  fs::remove(dir.path + "/latest");
  fs::create_directory(dir.path + "/step_00000040");
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000030");
}

TEST(Checkpoint, LatestPointingToMissingOrIncompleteIsAnError) {
  TempDir dir("polaris_ckpt");
  write_checkpoint(dir.path, 10, sample_checkpoint(), 3);
  fs::remove(dir.path + "/step_00000010/extra.h5");
  EXPECT_ERROR(latest_checkpoint(dir.path), dir.path + "/latest", "step_00000010", "extra.h5");
  fs::remove_all(dir.path + "/step_00000010");
  EXPECT_ERROR(latest_checkpoint(dir.path), dir.path + "/latest", "step_00000010", "missing");
  std::ofstream(dir.path + "/latest") << "garbage\n";
  EXPECT_ERROR(latest_checkpoint(dir.path), dir.path + "/latest", "garbage");
}

TEST(Checkpoint, CrashWhileRewritingAStepFallsBack) {
  TempDir dir("polaris_ckpt");
  Checkpoint c = sample_checkpoint();
  write_checkpoint(dir.path, 10, c, 3);
  write_checkpoint(dir.path, 20, c, 3);
  // A crash while rewriting step 20: the old copy was moved aside, the new one
  // not yet renamed in, so `latest` names a missing directory.
  fs::rename(dir.path + "/step_00000020", dir.path + "/step_00000020.old");
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000020.old");
  EXPECT_TRUE(bits_equal(read_checkpoint(latest_checkpoint(dir.path)).params, c.params));
  // Without the .old copy: the newest complete step directory.
  fs::remove_all(dir.path + "/step_00000020.old");
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000010");
  // The next write cleans up and moves the pointer on.
  write_checkpoint(dir.path, 20, c, 3);
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path + "/step_00000020");
}

TEST(Checkpoint, OutOfRangeIntegersAreOneLineErrors) {
  TempDir dir("polaris_ckpt");
  write_checkpoint(dir.path, 1, sample_checkpoint(), 3);
  const std::string path = latest_checkpoint(dir.path);
  const std::string model = path + "/model.h5", opt = path + "/optimizer.h5";
  fs::copy_file(model, dir.path + "/model.h5.bak");
  set_int_attribute(model, "hidden_size", int64_t(1) << 32);  // would wrap to 0 as an int
  EXPECT_ERROR(read_checkpoint(path), model, "hidden_size", "int32");
  set_int_attribute(model, "vocab_size", -(int64_t(1) << 40));
  EXPECT_ERROR(read_checkpoint(path), model, "int32");
  restore(dir.path + "/model.h5.bak", model);
  EXPECT_NO_THROW(read_checkpoint(path));
  set_int_attribute(opt, "step", -1, "shard_0");
  EXPECT_ERROR(read_checkpoint(path), opt, "shard_0", "step");
}

// The tokenizer record (data/tokenizer_id.h) travels in state.json; a
// checkpoint without it (an older build's) reads as unrecorded, and a
// malformed one is an Error naming state.json.
TEST(Checkpoint, TokenizerRecordRoundTripsAndMalformedOnesAreRefused) {
  TempDir dir("polaris_ckpt");
  Checkpoint c = sample_checkpoint();
  write_checkpoint(dir.path, 1, c, 0);
  EXPECT_FALSE(read_checkpoint(latest_checkpoint(dir.path)).tokenizer.recorded());
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += "0123456789abcdef"[i % 16], hex += "fedcba9876543210"[i % 16];
  c.tokenizer = TokenizerId::from_hex(258, hex, "test");
  write_checkpoint(dir.path, 2, c, 0);
  const std::string path = latest_checkpoint(dir.path), state = path + "/state.json";
  const Checkpoint r = read_checkpoint(path);
  EXPECT_TRUE(r.tokenizer.recorded());
  EXPECT_EQ(r.tokenizer, c.tokenizer);
  EXPECT_EQ(r.state["tokenizer"]["sha256"], hex);
  EXPECT_EQ(r.state["tokenizer"]["vocab_size"], 258);

  nlohmann::json edited = r.state;
  auto write_state = [&](const nlohmann::json& value) {
    edited["tokenizer"] = value;
    std::ofstream(state, std::ios::trunc) << edited.dump();
    reseal(state);
  };
  write_state({{"vocab_size", 0}, {"sha256", hex}});
  EXPECT_ERROR(read_checkpoint(path), state, "tokenizer.vocab_size");
  write_state({{"vocab_size", 258}, {"sha256", hex.substr(1)}});
  EXPECT_ERROR(read_checkpoint(path), state, "64 hex digits");
  write_state({{"vocab_size", 258}, {"sha256", std::string(64, 'g')}});
  EXPECT_ERROR(read_checkpoint(path), state, "64 hex digits");
  write_state(5);
  EXPECT_ERROR(read_checkpoint(path), state, "\"tokenizer\" must be");
  write_state({{"vocab_size", 258}, {"sha256", hex}});  // control: the record as written
  EXPECT_EQ(read_checkpoint(path).tokenizer, c.tokenizer);
}

TEST(Checkpoint, CorruptOrMissingFilesAreOneLineErrors) {
  TempDir dir("polaris_ckpt");
  write_checkpoint(dir.path, 1, sample_checkpoint(), 3);
  const std::string path = latest_checkpoint(dir.path);

  const std::string model = path + "/model.h5";
  const auto size = fs::file_size(model);
  fs::copy_file(model, dir.path + "/model.h5.bak");
  fs::resize_file(model, size / 2);
  EXPECT_ERROR(read_checkpoint(path), model, "truncated or corrupt");  // the manifest's size
  reseal(model);
  EXPECT_ERROR(read_checkpoint(path), model, "truncated or corrupt");  // HDF5's own check
  std::ofstream(model, std::ios::trunc) << "not hdf5 at all";
  EXPECT_ERROR(read_checkpoint(path), model, "truncated or corrupt");
  reseal(model);
  EXPECT_ERROR(read_checkpoint(path), model, "truncated or corrupt");
  restore(dir.path + "/model.h5.bak", model);
  EXPECT_NO_THROW(read_checkpoint(path));

  const std::string opt = path + "/optimizer.h5";
  fs::rename(opt, dir.path + "/optimizer.h5.bak");
  EXPECT_ERROR(read_checkpoint(path), opt, "missing");
  fs::rename(dir.path + "/optimizer.h5.bak", opt);

  const std::string state = path + "/state.json";
  std::ofstream(state, std::ios::trunc) << "{\"step\": ";
  reseal(state);
  EXPECT_ERROR(read_checkpoint(path), state, "not valid JSON");
  fs::remove(state);
  EXPECT_ERROR(read_checkpoint(path), state, "missing");
  EXPECT_ERROR(read_checkpoint(dir.path + "/step_00000999"), "step_00000999", "no such");
}

TEST(Checkpoint, ConfigMismatchIsAnError) {
  TempDir dir("polaris_ckpt");
  write_checkpoint(dir.path, 1, sample_checkpoint(), 3);
  const std::string path = latest_checkpoint(dir.path);
  const std::string model = path + "/model.h5";
  fs::copy_file(model, dir.path + "/model.h5.bak");

  set_int_attribute(model, "num_layers", 3);  // the tensor table has 2 layers' tensors
  EXPECT_ERROR(read_checkpoint(path), model, "tensor table");
  restore(dir.path + "/model.h5.bak", model);
  set_int_attribute(model, "vocab_size", 600);  // offsets and params size no longer fit
  EXPECT_ERROR(read_checkpoint(path), model, "offset");
  restore(dir.path + "/model.h5.bak", model);
  set_int_attribute(model, "num_heads", 0);  // an impossible config
  EXPECT_ERROR(read_checkpoint(path), model);

  // Writing refuses inconsistent checkpoints before touching the directory.
  Checkpoint c = sample_checkpoint();
  c.params.pop_back();
  EXPECT_ERROR(write_checkpoint(dir.path, 2, c, 3), dir.path, "params");
  c = sample_checkpoint();
  c.optimizer[1].v.pop_back();
  EXPECT_ERROR(write_checkpoint(dir.path, 2, c, 3), dir.path, "shard 1");
  c = sample_checkpoint();
  c.optimizer[1].end += 1;
  EXPECT_ERROR(write_checkpoint(dir.path, 2, c, 3), dir.path, "outside");
  EXPECT_FALSE(fs::exists(dir.path + "/step_00000002"));
  EXPECT_FALSE(fs::exists(dir.path + "/step_00000002.tmp"));
}

TEST(Checkpoint, ReshardTwoToThreeToOneIsTheOriginal) {
  const size_t total = 1001;
  const OptimizerShard whole = shard(0, total, 5, 11);
  auto slice = [&](size_t b, size_t e) {
    OptimizerShard s;
    s.begin = b;
    s.end = e;
    s.step = 5;
    s.m.assign(whole.m.begin() + b, whole.m.begin() + e);
    s.v.assign(whole.v.begin() + b, whole.v.begin() + e);
    return s;
  };
  // Given out of order on purpose.
  const std::vector<OptimizerShard> two = {slice(500, total), slice(0, 500)};
  const auto three = reshard(two, {{0, 334}, {334, 668}, {668, total}});
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[1].begin, 334u);
  EXPECT_EQ(three[1].end, 668u);
  EXPECT_TRUE(bits_equal(three[1].m, slice(334, 668).m));
  const auto one = reshard(three, {{0, total}});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].step, 5);
  EXPECT_TRUE(bits_equal(one[0].m, whole.m));
  EXPECT_TRUE(bits_equal(one[0].v, whole.v));

  std::vector<OptimizerShard> bad = two;
  bad[0].step = 6;
  EXPECT_ERROR(reshard(bad, {{0, total}}), "reshard", "step");
  EXPECT_ERROR(reshard({slice(0, 400), slice(500, total)}, {{0, total}}), "reshard", "gap");
  EXPECT_ERROR(reshard(two, {{0, total + 1}}), "reshard", "outside");
  EXPECT_ERROR(reshard({}, {{0, 1}}), "reshard");
}
