// TokenizerId: which tokenizer made a file's token ids, recorded in the
// header of token shards (data/token_shards.h, words 3..11) and of model.bin
// (model/model_file.h, words 24..32), and in a checkpoint's state.json
// ("tokenizer": {"vocab_size", "sha256" in hex}; checkpoint/checkpoint.h), so
// that a run can refuse to train a model on ids from another tokenizer even
// when the ids happen to fit.
//
//   word 0     the tokenizer's vocabulary size (largest id + 1); 0: not
//              recorded (files written before the record existed, or
//              without a tokenizer at hand)
//   words 1-8  SHA-256 of its tokenizer.json, the 32 bytes in digest order
//
// The checksum is of the file's bytes: the same vocabulary saved with other
// formatting counts as another tokenizer (a false alarm is safe; a silent
// mismatch is not).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace polaris {

struct TokenizerId {
  static constexpr int kWords = 9;
  int32_t vocab_size = 0;
  std::array<uint8_t, 32> sha256{};

  bool recorded() const { return vocab_size > 0; }
  bool operator==(const TokenizerId& other) const {
    return vocab_size == other.vocab_size && sha256 == other.sha256;
  }
  bool operator!=(const TokenizerId& other) const { return !(*this == other); }
  // "a tokenizer of 512 ids, SHA-256 1a2b3c4d5e6f7a8b…" (or "no recorded tokenizer").
  std::string describe() const;
  void to_words(int32_t* words) const;
  // Error naming `file` when the words cannot be a record (a negative size,
  // or a checksum without a size).
  static TokenizerId from_words(const int32_t* words, const std::string& file);
  // The checksum as 64 lowercase hex digits, and back: Error naming `file`
  // unless `hex` is 64 hex digits and vocab_size > 0.
  std::string sha256_hex() const;
  static TokenizerId from_hex(int32_t vocab_size, const std::string& hex, const std::string& file);
};

// The id of the tokenizer.json at `path` whose vocabulary has vocab_size ids
// (the loaded Tokenizer's vocab_size()). Error naming the file if unreadable.
TokenizerId tokenizer_id(const std::string& path, int vocab_size);

}  // namespace polaris
