// The tokenizer record (data/tokenizer_id.h) through model.bin and the token
// loader: what polaris_train's shard check relies on.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "checkpoint/sha256.h"
#include "data/token_loader.h"
#include "data/token_shards.h"
#include "data/tokenizer_id.h"
#include "model/model_file.h"
#include "model/params.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

TokenizerId made_up(int vocab_size, uint8_t seed) {
  TokenizerId id;
  id.vocab_size = vocab_size;
  for (size_t i = 0; i < id.sha256.size(); ++i) id.sha256[i] = uint8_t(seed * 31 + i);
  return id;
}

TEST(TokenizerId, IsTheFilesSha256AndTheVocabularySize) {
  TempDir dir;
  const std::string path = dir.path + "/tokenizer.json";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("{\"any\": \"bytes\"}", f);
  std::fclose(f);
  const TokenizerId id = tokenizer_id(path, 42);
  EXPECT_EQ(id.vocab_size, 42);
  const std::array<uint8_t, 32> expected = [&] {
    Sha256 h;
    h.update("{\"any\": \"bytes\"}", 16);
    return h.digest();
  }();
  EXPECT_TRUE(id.sha256 == expected);
  EXPECT_NE(id.describe().find("a tokenizer of 42 ids, SHA-256 " + sha256_hex("{\"any\": \"bytes\"}").substr(0, 16)),
            std::string::npos)
      << id.describe();
}

TEST(TokenizerId, ModelBinRecordsItAndOldFilesReadAsUnrecorded) {
  TempDir dir;
  const ModelConfig config = qwen3_config(64, 16, 1, 2, 1, 8, 32, true);
  std::vector<float> params(build_param_layout(config).total, 0.25f);
  const TokenizerId id = made_up(60, 3);
  write_model_bin(dir.path + "/with.bin", config, params, false, id);
  EXPECT_TRUE(read_model_bin(dir.path + "/with.bin").tokenizer == id);
  TokenizerId header_only;
  read_model_bin_config(dir.path + "/with.bin", nullptr, &header_only);
  EXPECT_TRUE(header_only == id);
  write_model_bin(dir.path + "/without.bin", config, params, true);
  EXPECT_FALSE(read_model_bin(dir.path + "/without.bin").tokenizer.recorded());
}

TEST(TokenizerId, LoaderRefusesMixedAndForeignTokenizers) {
  TempDir dir;
  std::vector<uint32_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint32_t(i % 50);
  const TokenizerId a = made_up(50, 1), b = made_up(50, 2);
  write_token_shard(dir.path + "/a_0.bin", tokens, 50, a);
  write_token_shard(dir.path + "/a_1.bin", tokens, 50);  // no record: fits any
  TokenRowLoader loader("--data", dir.path + "/a_*.bin", 8, 64, 1);
  loader.require_tokenizer(a, "--tokenizer a.json");
  loader.require_tokenizer(TokenizerId(), "nothing");
  EXPECT_ERROR(loader.require_tokenizer(b, "--tokenizer b.json"), "--data: ", "a_0.bin was made with",
               "but --tokenizer b.json is a tokenizer of 50 ids");
  write_token_shard(dir.path + "/a_2.bin", tokens, 50, b);
  EXPECT_ERROR(TokenRowLoader("--data", dir.path + "/a_*.bin", 8, 64, 1), "--data: ",
               "a_2.bin was made with", "but ", "a_0.bin with");
  // A tokenizer of more ids than the model's vocabulary, whatever the ids.
  write_token_shard(dir.path + "/wide.bin", tokens, 80, made_up(80, 4));
  EXPECT_ERROR(TokenRowLoader("--val-data", dir.path + "/wide.bin", 8, 64, 1), "--val-data: ",
               "a tokenizer of 80 ids", "more than the model's vocabulary of 64");
}

}  // namespace
}  // namespace polaris
