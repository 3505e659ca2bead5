// Tests for data/token_shards: round trips in both versions, the exact header
// layout of DESIGN.md, atomic writes, and every bad-input error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "data/token_shards.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;

namespace {

// One fresh directory for the whole run, removed at exit.
std::string temp_dir() {
  static const TempDir dir("polaris_shard_test");
  return dir.path;
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(file), {});
}

void write_bytes(const std::string& path, const void* data, size_t size) {
  std::ofstream file(path, std::ios::binary);
  file.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// A header with the given fields, the rest zero.
std::vector<int32_t> header(int32_t magic, int32_t version, int32_t count) {
  std::vector<int32_t> h(kTokenShardHeaderInts, 0);
  h[0] = magic;
  h[1] = version;
  h[2] = count;
  return h;
}

}  // namespace

TEST(TokenShards, Version1RoundTripAndLayout) {
  std::string path = temp_dir() + "/v1.bin";
  std::vector<uint32_t> tokens = {0, 1, 50256, 65534, 7};
  write_token_shard(path, tokens, 65535);  // the largest vocabulary written as uint16
  EXPECT_EQ(read_token_shard(path), tokens);
  std::vector<char> bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 256 * 4 + tokens.size() * 2);
  const int32_t* h = reinterpret_cast<const int32_t*>(bytes.data());
  EXPECT_EQ(h[0], 20240520);
  EXPECT_EQ(h[1], 1);
  EXPECT_EQ(h[2], 5);
  for (int i = 3; i < 256; ++i) ASSERT_EQ(h[i], 0);
  const uint16_t* data = reinterpret_cast<const uint16_t*>(bytes.data() + 1024);
  EXPECT_EQ(data[2], 50256);
  EXPECT_FALSE(std::ifstream(path + ".tmp")) << "the temporary file is renamed away";
}

TEST(TokenShards, Version2ForLargeVocab) {
  std::string path = temp_dir() + "/v2.bin";
  std::vector<uint32_t> tokens = {151643, 0, 65536, 151668};
  write_token_shard(path, tokens, 151669);
  write_token_shard(path + ".65536", {65535}, 65536);  // vocab > 65535 -> version 2
  EXPECT_EQ(reinterpret_cast<const int32_t*>(read_bytes(path + ".65536").data())[1], 2);
  EXPECT_EQ(read_token_shard(path), tokens);
  std::vector<char> bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 1024 + tokens.size() * 4);
  EXPECT_EQ(reinterpret_cast<const int32_t*>(bytes.data())[1], 2);
}

TEST(TokenShards, EmptyShard) {
  std::string path = temp_dir() + "/empty.bin";
  write_token_shard(path, {}, 100);
  EXPECT_TRUE(read_token_shard(path).empty());
}

TEST(TokenShards, WriteRejectsTokensOutsideVocab) {
  std::string path = temp_dir() + "/bad_token.bin";
  std::string message = error_of([&] { write_token_shard(path, {1, 2, 100}, 100); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("100"), std::string::npos) << message;
  EXPECT_FALSE(std::ifstream(path)) << "nothing written";
}

TEST(TokenShards, WriteToMissingDirectoryNamesThePath) {
  std::string message = error_of([&] { write_token_shard("/nonexistent_dir/x.bin", {1}, 10); });
  EXPECT_NE(message.find("/nonexistent_dir/x.bin"), std::string::npos) << message;
}

TEST(TokenShards, ReadMissingFile) {
  std::string path = temp_dir() + "/does_not_exist.bin";
  std::string message = error_of([&] { read_token_shard(path); });
  EXPECT_EQ(message.rfind(path + ":", 0), 0u) << message;
}

TEST(TokenShards, ReadWrongMagic) {
  std::string path = temp_dir() + "/magic.bin";
  std::vector<int32_t> h = header(12345, 1, 0);
  write_bytes(path, h.data(), h.size() * 4);
  std::string message = error_of([&] { read_token_shard(path); });
  EXPECT_NE(message.find(path + ": bad magic 12345"), std::string::npos) << message;
}

TEST(TokenShards, ReadUnknownVersion) {
  std::string path = temp_dir() + "/version.bin";
  std::vector<int32_t> h = header(kTokenShardMagic, 3, 0);
  write_bytes(path, h.data(), h.size() * 4);
  std::string message = error_of([&] { read_token_shard(path); });
  EXPECT_NE(message.find(path + ": unknown token shard version 3"), std::string::npos) << message;
}

TEST(TokenShards, ReadTruncatedData) {
  std::string path = temp_dir() + "/truncated.bin";
  std::vector<int32_t> h = header(kTokenShardMagic, 2, 10);
  h.push_back(1);  // 3 of the 10 tokens
  h.push_back(2);
  h.push_back(3);
  write_bytes(path, h.data(), h.size() * 4);
  EXPECT_EQ(error_of([&] { read_token_shard(path); }),
            path + ": truncated: header says 10 tokens, file holds 3");
}

TEST(TokenShards, ReadTruncatedHeader) {
  std::string path = temp_dir() + "/short.bin";
  std::vector<int32_t> h = header(kTokenShardMagic, 1, 0);
  write_bytes(path, h.data(), 100);
  std::string message = error_of([&] { read_token_shard(path); });
  EXPECT_NE(message.find(path + ": truncated header"), std::string::npos) << message;
}

TEST(TokenShards, ReadTrailingBytes) {
  std::string path = temp_dir() + "/trailing.bin";
  std::vector<int32_t> h = header(kTokenShardMagic, 2, 1);
  h.push_back(5);
  h.push_back(6);  // one token more than the header says
  write_bytes(path, h.data(), h.size() * 4);
  std::string message = error_of([&] { read_token_shard(path); });
  EXPECT_NE(message.find(path + ": header says 1 tokens"), std::string::npos) << message;
}

TEST(TokenShards, ExpandPattern) {
  std::string dir = temp_dir() + "/glob";
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  for (const char* name : {"c_train_000001.bin", "c_train_000000.bin", "c_val_000000.bin"})
    write_token_shard(dir + "/" + name, {1}, 10);
  std::vector<std::string> train = expand_shard_pattern(dir + "/c_train_*.bin");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train[0], dir + "/c_train_000000.bin");  // sorted
  EXPECT_EQ(train[1], dir + "/c_train_000001.bin");
  EXPECT_EQ(expand_shard_pattern(dir + "/c_val_000000.bin").size(), 1u);  // a plain path works too
  std::string message = error_of([&] { expand_shard_pattern(dir + "/nothing_*.bin"); });
  EXPECT_NE(message.find(dir + "/nothing_*.bin"), std::string::npos) << message;
}

// The tokenizer record (data/tokenizer_id.h) in header words 3..11.
TokenizerId test_tokenizer(int vocab_size, uint8_t seed) {
  TokenizerId id;
  id.vocab_size = vocab_size;
  for (size_t i = 0; i < id.sha256.size(); ++i) id.sha256[i] = uint8_t(seed + 7 * i);
  return id;
}

TEST(TokenShards, TokenizerRecordRoundTripsInTheReservedWords) {
  const std::string path = temp_dir() + "/recorded.bin";
  const TokenizerId id = test_tokenizer(300, 11);
  write_token_shard(path, {1, 2, 299}, 300, id);
  TokenizerId read;
  EXPECT_EQ(read_token_shard(path, &read), (std::vector<uint32_t>{1, 2, 299}));
  EXPECT_TRUE(read == id);
  std::vector<char> bytes = read_bytes(path);
  int32_t words[kTokenShardHeaderInts];
  std::memcpy(words, bytes.data(), sizeof words);
  EXPECT_EQ(words[3], 300);
  EXPECT_EQ(std::memcmp(words + 4, id.sha256.data(), 32), 0);
  for (int i = 12; i < kTokenShardHeaderInts; ++i) EXPECT_EQ(words[i], 0) << i;
  // An old shard (zero words) reads as "not recorded".
  write_token_shard(path, {1, 2}, 300);
  read_token_shard(path, &read);
  EXPECT_FALSE(read.recorded());
}

TEST(TokenShards, MalformedTokenizerRecordsAreRefused) {
  const std::string path = temp_dir() + "/bad_record.bin";
  EXPECT_ERROR(write_token_shard(path, {1}, 300, test_tokenizer(299, 1)), "the tokenizer has 299 ids");
  std::vector<int32_t> h = header(kTokenShardMagic, 1, 0);
  h[3] = -4;
  write_bytes(path, h.data(), h.size() * 4);
  EXPECT_ERROR(read_token_shard(path), path, "vocabulary size is -4");
  h[3] = 0;
  h[7] = 99;  // a checksum without a size
  write_bytes(path, h.data(), h.size() * 4);
  EXPECT_ERROR(read_token_shard(path), path, "checksum is recorded without its vocabulary size");
  h[3] = 10;
  h[2] = 1;
  h.push_back(12);  // two uint16 tokens' worth: 12 and 0, but the count says one
  write_bytes(path, h.data(), h.size() * 4 - 2);
  EXPECT_ERROR(read_token_shard(path), path, "token 12", "recorded tokenizer's vocabulary (10 ids)");
}
