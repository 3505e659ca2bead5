// Token shard files: the pre-training data format (DESIGN.md, "Token shard file").
//
// A shard is a 256 x int32 header followed by the tokens:
//   header[0] = 20240520 (magic), header[1] = version, header[2] = token count,
//   header[3..255] = 0.
// Version 1 stores tokens as uint16 (vocabularies of at most 65,535 ids), version 2 as
// uint32. All values are little-endian (the byte order of every machine we run on).
// Shards are written to "<path>.tmp" and renamed, so a reader never sees half a file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace polaris {

constexpr int32_t kTokenShardMagic = 20240520;
constexpr int kTokenShardHeaderInts = 256;

// Version 2 (uint32 tokens) when vocab_size > 65535, else version 1 (uint16).
// Throws Error if a token is >= vocab_size.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, int vocab_size);

// Throws Error naming the path: missing file, wrong magic, unknown version,
// non-zero reserved header words, truncated or trailing bytes.
std::vector<uint32_t> read_token_shard(const std::string& path);

// The files matching a glob(3) pattern, sorted; Error naming the pattern if none.
std::vector<std::string> expand_shard_pattern(const std::string& pattern);

}  // namespace polaris
