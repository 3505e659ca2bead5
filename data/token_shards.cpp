// Token shard files: write (atomically), read (with checks), expand glob patterns.
// Format in token_shards.h.
#include "data/token_shards.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "src/common/error.h"

namespace polaris {

namespace {

// Closes the FILE on every path out of a function.
struct FileCloser {
  FILE* file;
  ~FileCloser() {
    if (file) std::fclose(file);
  }
};

}  // namespace

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, int vocab_size,
                       const TokenizerId& tokenizer) {
  require(vocab_size > 0, path + ": vocab size " + std::to_string(vocab_size) + " is not positive");
  require(!tokenizer.recorded() || tokenizer.vocab_size == vocab_size,
          path + ": the tokenizer has " + std::to_string(tokenizer.vocab_size) +
              " ids, the shard's vocabulary " + std::to_string(vocab_size));
  require(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
          path + ": " + std::to_string(tokens.size()) + " tokens do not fit one shard (max 2^31-1)");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= static_cast<uint32_t>(vocab_size))
      throw Error(path + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary (size " + std::to_string(vocab_size) + ")");
  const int version = vocab_size > 65535 ? 2 : 1;

  int32_t header[kTokenShardHeaderInts] = {};
  header[0] = kTokenShardMagic;
  header[1] = version;
  header[2] = static_cast<int32_t>(tokens.size());
  tokenizer.to_words(header + 3);

  const std::string tmp_path = path + ".tmp";
  {
    FileCloser out{std::fopen(tmp_path.c_str(), "wb")};
    require(out.file != nullptr, tmp_path + ": cannot open for writing: " + std::strerror(errno));
    bool ok = std::fwrite(header, sizeof(header), 1, out.file) == 1;
    if (version == 2) {
      ok = ok && std::fwrite(tokens.data(), sizeof(uint32_t), tokens.size(), out.file) == tokens.size();
    } else {
      std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
      ok = ok && std::fwrite(narrow.data(), sizeof(uint16_t), narrow.size(), out.file) == narrow.size();
    }
    ok = std::fclose(out.file) == 0 && ok;
    out.file = nullptr;
    if (!ok) {
      std::remove(tmp_path.c_str());
      throw Error(tmp_path + ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    std::remove(tmp_path.c_str());
    throw Error(path + ": cannot rename " + tmp_path + " into place: " + std::strerror(errno));
  }
}

std::vector<uint32_t> read_token_shard(const std::string& path, TokenizerId* tokenizer) {
  struct stat info;
  require(!(::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)),
          path + ": is a directory, not a token shard (give a file or a pattern like DIR/*.bin)");
  FileCloser in{std::fopen(path.c_str(), "rb")};
  require(in.file != nullptr, path + ": cannot open token shard: " + std::strerror(errno));
  int32_t header[kTokenShardHeaderInts];
  size_t header_read = std::fread(header, sizeof(int32_t), kTokenShardHeaderInts, in.file);
  require(header_read == static_cast<size_t>(kTokenShardHeaderInts),
          path + ": truncated header (" + std::to_string(header_read * sizeof(int32_t)) + " of " +
              std::to_string(sizeof(header)) + " bytes); not a token shard");
  require(header[0] == kTokenShardMagic, path + ": bad magic " + std::to_string(header[0]) +
                                             " (expected " + std::to_string(kTokenShardMagic) +
                                             "); not a token shard");
  const int version = header[1];
  require(version == 1 || version == 2,
          path + ": unknown token shard version " + std::to_string(version) + " (expected 1 or 2)");
  require(header[2] >= 0, path + ": negative token count " + std::to_string(header[2]));
  const TokenizerId recorded = TokenizerId::from_words(header + 3, path);
  if (tokenizer) *tokenizer = recorded;
  // Every writer (write_token_shard, run/make_token_shard.py) zeroes the rest.
  for (int i = 3 + TokenizerId::kWords; i < kTokenShardHeaderInts; ++i)
    require(header[i] == 0, path + ": reserved header word " + std::to_string(i) + " is " +
                                std::to_string(header[i]) + ", expected 0 (corrupt or not a token shard)");
  const size_t count = static_cast<size_t>(header[2]);
  const size_t token_bytes = version == 1 ? 2 : 4;

  // Compare the header's count with what the file really holds, before reading.
  long data_start = std::ftell(in.file);
  std::fseek(in.file, 0, SEEK_END);
  long file_end = std::ftell(in.file);
  std::fseek(in.file, data_start, SEEK_SET);
  size_t data_bytes = static_cast<size_t>(file_end - data_start);
  size_t held = data_bytes / token_bytes;
  require(held >= count, path + ": truncated: header says " + std::to_string(count) +
                             " tokens, file holds " + std::to_string(held));
  // Extra bytes mean the header and the data disagree: a corrupt or foreign file.
  require(data_bytes == count * token_bytes,
          path + ": header says " + std::to_string(count) + " tokens, but the file holds " +
              std::to_string(data_bytes) + " bytes of tokens (" + std::to_string(held) + " tokens)");

  std::vector<uint32_t> tokens(count);
  if (version == 2) {
    require(std::fread(tokens.data(), 4, count, in.file) == count, path + ": read failed");
  } else {
    std::vector<uint16_t> narrow(count);
    require(std::fread(narrow.data(), 2, count, in.file) == count, path + ": read failed");
    std::copy(narrow.begin(), narrow.end(), tokens.begin());
  }
  if (recorded.recorded())
    for (size_t i = 0; i < count; ++i)
      require(tokens[i] < uint32_t(recorded.vocab_size),
              path + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " is outside its recorded tokenizer's vocabulary (" +
                  std::to_string(recorded.vocab_size) + " ids)");
  return tokens;
}

std::vector<std::string> expand_shard_pattern(const std::string& pattern) {
  glob_t matches;
  int rc = glob(pattern.c_str(), 0, nullptr, &matches);
  std::vector<std::string> paths;
  if (rc == 0)
    for (size_t i = 0; i < matches.gl_pathc; ++i) paths.push_back(matches.gl_pathv[i]);
  globfree(&matches);
  require(!paths.empty(), "data pattern '" + pattern + "' matches no files");
  std::sort(paths.begin(), paths.end());  // glob sorts already; be explicit, order matters
  return paths;
}

}  // namespace polaris
