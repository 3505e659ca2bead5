// TokenizerId (see tokenizer_id.h).
#include "data/tokenizer_id.h"

#include <cstring>

#include "checkpoint/sha256.h"
#include "src/common/error.h"

namespace polaris {

std::string TokenizerId::describe() const {
  if (!recorded()) return "no recorded tokenizer";
  return "a tokenizer of " + std::to_string(vocab_size) + " ids, SHA-256 " +
         sha256_hex().substr(0, 16) + "...";
}

std::string TokenizerId::sha256_hex() const {
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (uint8_t byte : sha256) {
    hex += kHex[byte >> 4];
    hex += kHex[byte & 15];
  }
  return hex;
}

TokenizerId TokenizerId::from_hex(int32_t vocab_size, const std::string& hex,
                                  const std::string& file) {
  require(vocab_size > 0, file + ": the recorded tokenizer's vocabulary size is " +
                              std::to_string(vocab_size) + ", not a positive count");
  require(hex.size() == 64 && hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos,
          file + ": the recorded tokenizer's SHA-256 is not 64 hex digits");
  TokenizerId id;
  id.vocab_size = vocab_size;
  for (size_t i = 0; i < id.sha256.size(); ++i)
    id.sha256[i] = uint8_t(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return id;
}

void TokenizerId::to_words(int32_t* words) const {
  words[0] = vocab_size;
  std::memcpy(words + 1, sha256.data(), sha256.size());
}

TokenizerId TokenizerId::from_words(const int32_t* words, const std::string& file) {
  TokenizerId id;
  id.vocab_size = words[0];
  std::memcpy(id.sha256.data(), words + 1, id.sha256.size());
  require(id.vocab_size >= 0, file + ": the recorded tokenizer's vocabulary size is " +
                                  std::to_string(id.vocab_size) + " (corrupt header)");
  require(id.recorded() || id.sha256 == std::array<uint8_t, 32>{},
          file + ": a tokenizer checksum is recorded without its vocabulary size (corrupt header)");
  return id;
}

TokenizerId tokenizer_id(const std::string& path, int vocab_size) {
  return TokenizerId::from_hex(vocab_size, sha256_file(path), path);
}

}  // namespace polaris
