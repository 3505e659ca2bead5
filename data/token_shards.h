// Token shard files: the pre-training data format (DESIGN.md, "Token shard file").
//
// A shard is a 256 x int32 header followed by the tokens:
//   header[0] = 20240520 (magic), header[1] = version, header[2] = token count,
//   header[3..11] = the tokenizer that made the ids (data/tokenizer_id.h: its
//                   vocabulary size, then the SHA-256 of its tokenizer.json;
//                   all zero when not recorded, as in shards of older builds),
//   header[12..255] = 0.
// Version 1 stores tokens as uint16 (vocabularies of at most 65,535 ids), version 2 as
// uint32. All values are little-endian (the byte order of every machine we run on).
// Shards are written to "<path>.tmp" and renamed, so a reader never sees half a file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer_id.h"

namespace polaris {

constexpr int32_t kTokenShardMagic = 20240520;
constexpr int kTokenShardHeaderInts = 256;

// Version 2 (uint32 tokens) when vocab_size > 65535, else version 1 (uint16).
// Throws Error if a token is >= vocab_size. `tokenizer` (when recorded) is
// written to the header and must have vocab_size ids.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, int vocab_size,
                       const TokenizerId& tokenizer = TokenizerId());

// Throws Error naming the path: missing file, wrong magic, unknown version,
// a malformed tokenizer record, non-zero reserved header words, truncated or
// trailing bytes, a token at or above the recorded vocabulary size.
// *tokenizer (when given) receives the recorded tokenizer.
std::vector<uint32_t> read_token_shard(const std::string& path, TokenizerId* tokenizer = nullptr);

// The files matching a glob(3) pattern, sorted; Error naming the pattern if none.
std::vector<std::string> expand_shard_pattern(const std::string& pattern);

}  // namespace polaris
