// input_fingerprint (data/input_fingerprint.h): ranks compare it at start, so
// it must follow the files' contents (every byte of a small file, the sampled
// blocks and the size of a large one), not their paths.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "data/input_fingerprint.h"
#include "test_util.h"

namespace polaris {
namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

std::string pattern_bytes(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(i * 2654435761u >> 13);
  return s;
}

TEST(InputFingerprint, FollowsContentsNotPaths) {
  TempDir dir;
  const std::string text = pattern_bytes(5000);
  write_bytes(dir.path + "/a.bin", text);
  write_bytes(dir.path + "/copy.bin", text);
  EXPECT_EQ(input_fingerprint(dir.path + "/a.bin"), input_fingerprint(dir.path + "/copy.bin"));
  std::string flipped = text;
  flipped[4321] ^= 1;
  write_bytes(dir.path + "/flipped.bin", flipped);
  EXPECT_NE(input_fingerprint(dir.path + "/a.bin"), input_fingerprint(dir.path + "/flipped.bin"));
}

TEST(InputFingerprint, PatternsCoverEveryMatchingFile) {
  TempDir dir;
  write_bytes(dir.path + "/x_1.bin", "one");
  write_bytes(dir.path + "/x_2.bin", "two");
  const uint64_t both = input_fingerprint(dir.path + "/x_*.bin");
  EXPECT_NE(both, input_fingerprint(dir.path + "/x_1.bin"));
  // Moving a byte from one file to the next changes the sizes: a different input.
  write_bytes(dir.path + "/x_1.bin", "onet");
  write_bytes(dir.path + "/x_2.bin", "wo");
  EXPECT_NE(both, input_fingerprint(dir.path + "/x_*.bin"));
}

TEST(InputFingerprint, NoMatchIsTheValueItself) {
  EXPECT_EQ(input_fingerprint("qwen3-tiny"), input_fingerprint("qwen3-tiny"));
  EXPECT_NE(input_fingerprint("qwen3-tiny"), input_fingerprint("gpt2-tiny"));
}

TEST(InputFingerprint, LargeFilesAreSampledAtBothEnds) {
  TempDir dir;
  const size_t n = (size_t(64) << 20) + 4096;  // just past the whole-file limit
  std::string big = pattern_bytes(n);
  write_bytes(dir.path + "/big.bin", big);
  const uint64_t original = input_fingerprint(dir.path + "/big.bin");
  big[n - 1] ^= 1;  // inside the last sampled block
  write_bytes(dir.path + "/big.bin", big);
  EXPECT_NE(original, input_fingerprint(dir.path + "/big.bin"));
  big[n - 1] ^= 1;
  big[0] ^= 1;  // inside the first
  write_bytes(dir.path + "/big.bin", big);
  EXPECT_NE(original, input_fingerprint(dir.path + "/big.bin"));
  big[0] ^= 1;
  write_bytes(dir.path + "/big.bin", big);
  EXPECT_EQ(original, input_fingerprint(dir.path + "/big.bin"));
}

}  // namespace
}  // namespace polaris
