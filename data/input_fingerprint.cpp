// input_fingerprint (see input_fingerprint.h).
#include "data/input_fingerprint.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "checkpoint/sha256.h"
#include "src/common/error.h"

namespace polaris {

namespace {

constexpr uint64_t kWholeFileBytes = uint64_t(64) << 20;
constexpr uint64_t kSampleBytes = uint64_t(64) << 10;
constexpr uint64_t kSamples = 256;

struct FileCloser {
  FILE* file;
  ~FileCloser() {
    if (file) std::fclose(file);
  }
};

void hash_file(Sha256& hash, const std::string& path, uint64_t size) {
  hash.update(&size, sizeof size);
  FileCloser in{std::fopen(path.c_str(), "rb")};
  require(in.file != nullptr, path + ": cannot open: " + errno_text());
  std::vector<char> buffer(size_t(1) << 20);
  auto hash_range = [&](uint64_t offset, uint64_t bytes) {
    require(std::fseek(in.file, long(offset), SEEK_SET) == 0, path + ": cannot seek: " + errno_text());
    while (bytes > 0) {
      const size_t want = size_t(std::min<uint64_t>(bytes, buffer.size()));
      require(std::fread(buffer.data(), 1, want, in.file) == want,
              path + ": read failed (the file changed while it was read?)");
      hash.update(buffer.data(), want);
      bytes -= want;
    }
  };
  if (size <= kWholeFileBytes) return hash_range(0, size);
  // Block i starts at i/(n-1) of the way to the last block: first and last included.
  for (uint64_t i = 0; i < kSamples; ++i)
    hash_range((size - kSampleBytes) * i / (kSamples - 1), kSampleBytes);
}

}  // namespace

uint64_t input_fingerprint(const std::string& pattern) {
  std::vector<std::string> files;
  glob_t matches;
  if (::glob(pattern.c_str(), 0, nullptr, &matches) == 0) {
    for (size_t i = 0; i < matches.gl_pathc; ++i) {
      struct stat info;
      if (::stat(matches.gl_pathv[i], &info) == 0 && S_ISREG(info.st_mode))
        files.push_back(matches.gl_pathv[i]);
    }
    globfree(&matches);
  }
  std::sort(files.begin(), files.end());
  Sha256 hash;
  if (files.empty()) hash.update(pattern.data(), pattern.size());
  for (const std::string& file : files) {
    struct stat info;
    require(::stat(file.c_str(), &info) == 0, file + ": cannot stat: " + errno_text());
    hash_file(hash, file, uint64_t(info.st_size));
  }
  const std::array<uint8_t, 32> digest = hash.digest();
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = value << 8 | digest[size_t(i)];
  return value;
}

}  // namespace polaris
