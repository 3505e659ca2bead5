// Checkpoint manifests: SHA-256 (FIPS 180-4 vectors), manifest.json written
// with every checkpoint, every kind of damage caught naming the file before
// HDF5 opens anything, --resume's fallback to the previous verified step.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "checkpoint/checkpoint.h"
#include "checkpoint/sha256.h"
#include "data/json_input.h"
#include "model/params.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;
namespace fs = std::filesystem;

namespace {

Checkpoint small_checkpoint(int step) {
  Checkpoint c;
  c.config = config_from_preset("qwen3-tiny");
  const size_t total = build_param_layout(c.config).total;
  std::mt19937 rng(step + 1);
  std::normal_distribution<float> dist(0.f, 1.f);
  c.params.resize(total);
  for (float& x : c.params) x = dist(rng);
  OptimizerShard s;
  s.begin = 0;
  s.end = total;
  s.step = step;
  s.m.assign(total, 0.5f);
  s.v.assign(total, 0.25f);
  c.optimizer.push_back(std::move(s));
  c.state = {{"step", step}};
  c.extra_tensors["reference_params"] = c.params;
  return c;
}

void flip_byte(const std::string& file, uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << file;
  f.seekg(std::streamoff(offset));
  char b = 0;
  f.read(&b, 1);
  b = char(b ^ 0x5a);
  f.seekp(std::streamoff(offset));
  f.write(&b, 1);
}

std::string slurp(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A checkpoint directory with one step written, and a pristine copy to restore.
struct OneStep {
  TempDir dir{"polaris_manifest"};
  std::string path, backup;
  OneStep() {
    write_checkpoint(dir.path, 5, small_checkpoint(5), 0);
    path = dir.path + "/step_00000005";
    backup = dir.path + "/pristine";
    fs::copy(path, backup);
  }
  void restore() {
    fs::remove_all(path);
    fs::copy(backup, path);
  }
};

}  // namespace

TEST(Sha256, Fips180Vectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingInAnyChunksAndFilesAgree) {
  std::string data;
  for (int i = 0; i < 3 * 65536 + 77; ++i) data += char(i * 131 + (i >> 7));
  const std::string whole = sha256_hex(data);
  for (size_t chunk : {1, 3, 63, 64, 65, 1000, 65536}) {
    Sha256 h;
    for (size_t at = 0; at < data.size(); at += chunk)
      h.update(data.data() + at, std::min(chunk, data.size() - at));
    EXPECT_EQ(h.hex_digest(), whole) << chunk;
  }
  TempDir dir("polaris_sha");
  const std::string file = dir.path + "/f.bin";
  std::ofstream(file, std::ios::binary) << data;
  // Larger than sha256_file's 1 MiB chunk, not a multiple of it.
  std::string big(3u << 20, 'x');
  big += "tail";
  std::ofstream(dir.path + "/big.bin", std::ios::binary) << big;
  uint64_t bytes = 0;
  EXPECT_EQ(sha256_file(file, &bytes), whole);
  EXPECT_EQ(bytes, data.size());
  EXPECT_EQ(sha256_file(dir.path + "/big.bin"), sha256_hex(big));
  EXPECT_ERROR(sha256_file(dir.path + "/absent"), dir.path + "/absent", "cannot open");
}

TEST(CheckpointManifest, WrittenWithEveryCheckpointAndVerifies) {
  OneStep s;
  const nlohmann::json m = nlohmann::json::parse(slurp(s.path + "/manifest.json"));
  ASSERT_TRUE(m["files"].is_array());
  std::vector<std::string> names;
  for (const auto& e : m["files"]) {
    names.push_back(e["name"]);
    const std::string file = s.path + "/" + e["name"].get<std::string>();
    EXPECT_EQ(e["size"].get<uint64_t>(), fs::file_size(file));
    EXPECT_EQ(e["sha256"].get<std::string>(), sha256_file(file));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"extra.h5", "model.h5", "optimizer.h5", "state.json"}));
  EXPECT_TRUE(verify_checkpoint(s.path));
  EXPECT_NO_THROW(read_checkpoint(s.path));
  // No leftovers of the manifest's own atomic write.
  EXPECT_FALSE(fs::exists(s.path + "/manifest.json.tmp"));
}

// Each kind of damage is one Error naming the file, from the manifest check
// (its wording, not HDF5's), so HDF5 never opens the damaged file.
TEST(CheckpointManifest, DamageIsCaughtBeforeHdf5NamingTheFile) {
  OneStep s;
  const std::string model = s.path + "/model.h5";
  const uint64_t size = fs::file_size(model);
  ASSERT_GT(size, 8192u);

  flip_byte(model, size / 2);  // in the params data: HDF5 would load it silently
  EXPECT_ERROR(verify_checkpoint(s.path), model, "SHA-256", "manifest.json");
  EXPECT_ERROR(read_checkpoint(s.path), model, "SHA-256");
  s.restore();
  EXPECT_NO_THROW(read_checkpoint(s.path));

  for (uint64_t at : {0u, 9u, 100u, 777u, 1500u, 2047u}) {  // HDF5's superblock / object headers
    flip_byte(model, at);
    EXPECT_ERROR(read_checkpoint(s.path), model, "SHA-256");
    s.restore();
  }

  fs::resize_file(model, size - 1);  // truncated
  EXPECT_ERROR(read_checkpoint(s.path), model, std::to_string(size - 1) + " bytes",
               std::to_string(size), "truncated");
  s.restore();

  std::ofstream(s.path + "/notes.txt") << "hello";  // a file the manifest does not list
  EXPECT_ERROR(read_checkpoint(s.path), s.path + "/notes.txt", "not listed in manifest.json");
  s.restore();

  fs::remove(s.path + "/optimizer.h5");  // listed but missing
  EXPECT_ERROR(read_checkpoint(s.path), s.path + "/optimizer.h5", "missing", "manifest.json");
  s.restore();

  const std::string state = s.path + "/state.json";  // JSON files are covered too
  std::ofstream(state, std::ios::app) << " ";
  EXPECT_ERROR(read_checkpoint(s.path), state, "manifest.json");
  s.restore();
  EXPECT_NO_THROW(read_checkpoint(s.path));
}

TEST(CheckpointManifest, CorruptManifestIsAnErrorNamingIt) {
  OneStep s;
  const std::string file = s.path + "/manifest.json";
  const std::string good = slurp(file);
  auto put = [&](const std::string& text) { std::ofstream(file, std::ios::trunc) << text; };

  put(good.substr(0, good.size() / 2));  // truncated: not JSON
  EXPECT_ERROR(read_checkpoint(s.path), file, "not valid JSON");
  put("[1, 2]");
  EXPECT_ERROR(read_checkpoint(s.path), file, "files");
  put(std::string(2u << 20, ' '));  // over the bounded reader's limit
  EXPECT_ERROR(read_checkpoint(s.path), file, "limit");
  put(std::string(100, '[') + std::string(100, ']'));
  EXPECT_ERROR(read_checkpoint(s.path), file, "nested");

  nlohmann::json m = nlohmann::json::parse(good);
  auto put_json = [&](const nlohmann::json& j) { put(j.dump(2)); };
  nlohmann::json bad = m;
  bad["version"] = 2;
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), file, "version");
  bad = m;
  bad["files"][1]["sha256"] = "zz";
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), file, "sha256");
  bad = m;
  bad["files"][1]["size"] = -1;
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), file, "size");
  bad = m;
  bad["files"][1]["name"] = "../model.h5";
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), file, "../model.h5");
  bad = m;
  bad["files"].push_back(m["files"][0]);
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), file, "twice");
  // A flipped hex digit still parses: the mismatch names the file and the manifest.
  bad = m;
  std::string hex = bad["files"][1]["sha256"];
  hex[10] = hex[10] == '0' ? '1' : '0';
  bad["files"][1]["sha256"] = hex;
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), s.path + "/" + bad["files"][1]["name"].get<std::string>(),
               "manifest.json");
  bad = m;
  bad["files"][2]["size"] = bad["files"][2]["size"].get<uint64_t>() + 1;
  put_json(bad);
  EXPECT_ERROR(read_checkpoint(s.path), bad["files"][2]["name"].get<std::string>(),
               "manifest.json says");
  put(good);
  EXPECT_NO_THROW(read_checkpoint(s.path));
}

TEST(CheckpointManifest, OlderCheckpointWithoutManifestIsReadWithAWarning) {
  OneStep s;
  fs::remove(s.path + "/manifest.json");
  EXPECT_FALSE(verify_checkpoint(s.path));
  testing::internal::CaptureStdout();
  EXPECT_NO_THROW(read_checkpoint(s.path));
  const std::string err = testing::internal::GetCapturedStdout();
  EXPECT_NE(err.find("no manifest.json"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(latest_verified_checkpoint(s.dir.path, nullptr), s.path);
}

TEST(CheckpointManifest, NonFiniteWeightsNameTheFileAndTensor) {
  TempDir dir("polaris_manifest");
  Checkpoint c = small_checkpoint(3);
  const ParamLayout layout = build_param_layout(c.config);
  const TensorInfo& t = layout.tensors[1];
  c.params[t.offset + 2] = std::nanf("");
  write_checkpoint(dir.path, 3, c, 0);  // the manifest verifies: the NaN was saved as such
  const std::string path = dir.path + "/step_00000003";
  EXPECT_TRUE(verify_checkpoint(path));
  EXPECT_ERROR(read_checkpoint(path), path + "/model.h5", t.name, "NaN");
}

TEST(CheckpointManifest, ResumeFallsBackToThePreviousVerifiedStep) {
  TempDir dir("polaris_manifest");
  for (int step : {10, 20, 30}) write_checkpoint(dir.path, step, small_checkpoint(step), 0);
  std::vector<std::string> skipped;
  EXPECT_EQ(latest_verified_checkpoint(dir.path, &skipped), dir.path + "/step_00000030");
  EXPECT_TRUE(skipped.empty());

  const std::string m30 = dir.path + "/step_00000030/model.h5";
  flip_byte(m30, 600);
  EXPECT_EQ(latest_verified_checkpoint(dir.path, &skipped), dir.path + "/step_00000020");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step_00000030"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find(m30), std::string::npos) << skipped[0];
  EXPECT_EQ(skipped[0].find('\n'), std::string::npos);
  EXPECT_EQ(read_checkpoint(dir.path + "/step_00000020").state["step"], 20);

  // Two bad in a row: both are named, the oldest good one is used.
  fs::remove(dir.path + "/step_00000020/extra.h5");
  skipped.clear();
  EXPECT_EQ(latest_verified_checkpoint(dir.path, &skipped), dir.path + "/step_00000010");
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[1].find("step_00000020"), std::string::npos) << skipped[1];

  // None verifies: an Error naming the newest and why.
  std::ofstream(dir.path + "/step_00000010/state.json", std::ios::app) << "\n";
  EXPECT_ERROR(latest_verified_checkpoint(dir.path, nullptr), m30, "SHA-256", "no older checkpoint");

  // DIR/latest naming a step directory that lost a file: passed over too.
  TempDir lost("polaris_manifest");
  for (int step : {10, 20}) write_checkpoint(lost.path, step, small_checkpoint(step), 0);
  fs::remove(lost.path + "/step_00000020/optimizer.h5");
  skipped.clear();
  EXPECT_EQ(latest_verified_checkpoint(lost.path, &skipped), lost.path + "/step_00000010");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step_00000020"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find("optimizer.h5"), std::string::npos) << skipped[0];
  fs::remove_all(lost.path + "/step_00000010");
  EXPECT_ERROR(latest_verified_checkpoint(lost.path, nullptr), "step_00000020", "optimizer.h5",
               "no older checkpoint");

  // A missing step (latest names a removed directory) still falls back as before.
  TempDir other("polaris_manifest");
  for (int step : {10, 20}) write_checkpoint(other.path, step, small_checkpoint(step), 0);
  fs::remove_all(other.path + "/step_00000020");
  EXPECT_EQ(latest_verified_checkpoint(other.path, nullptr), other.path + "/step_00000010");
  EXPECT_EQ(latest_verified_checkpoint(other.path + "/none", nullptr), "");
}
