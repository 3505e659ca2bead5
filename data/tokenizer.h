// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json.
//
// Supports the tokenizers used by GPT-2, Qwen2/3, Llama-3 and DeepSeek-V3:
//   normalizer:    null, NFC, or a Sequence of those
//   pre_tokenizer: Split (Regex or String pattern, any behavior, invert),
//                  ByteLevel (add_prefix_space, use_regex), Sequence of those
//   model:         BPE over byte-level symbols, merges ranked by position
//   added_tokens:  matched in the raw text before anything else
//   decoder:       ByteLevel (or null)
// Everything model-specific comes from the JSON. Anything else is an Error
// naming the file and the unsupported part.
//
// Encoding a text: split out added tokens -> normalize -> pre-tokenize into
// words -> map each word's UTF-8 bytes to the GPT-2 byte alphabet -> BPE merge
// (lowest rank first) -> ids. Words are cached, so repeated words cost a hash
// lookup. Invalid UTF-8 in the input becomes U+FFFD first (like Python's
// bytes.decode(errors="replace")); decode turns byte sequences that are not
// valid UTF-8 into U+FFFD the same way.
//
// A Tokenizer is cheap to copy: copies share one immutable state, and is safe
// to use from many threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace polaris {

class Tokenizer {
 public:
  // Throws Error naming the file and the unsupported/malformed part.
  static Tokenizer load(const std::string& tokenizer_json_path);

  // Added/special tokens in the text (e.g. "<|im_start|>") are matched as such.
  std::vector<int32_t> encode(const std::string& text) const;
  // Encodes each text; threads = 0 uses every core.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                 int threads = 0) const;
  // Throws Error on an id outside [0, vocab_size()) or with no token.
  std::string decode(const std::vector<int32_t>& ids) const;
  // One token's raw bytes, before decode's UTF-8 repair (a token may hold half
  // a character); an added token's bytes are the text it matches. Same errors.
  std::string token_bytes(int32_t id) const;

  int vocab_size() const;                           // largest id + 1 (incl. added tokens)
  int token_to_id(const std::string& token) const;  // -1 when absent; works for added tokens
  std::string id_to_token(int id) const;            // "" when id has no token

  // The token that separates documents in shards: "<|endoftext|>" when present,
  // else the eos-like added token found in the file ("" when none).
  std::string end_of_text_token() const;
  bool is_added_token(int id) const;
  bool is_special_token(int id) const;  // added token with "special": true
  // Added token with "lstrip": true: a match swallows the whitespace before it.
  bool is_lstrip_token(int id) const;
  const std::string& path() const;
  // Empties the per-word cache (benchmarks use it to measure cold encoding).
  void clear_cache() const;

  // Pieces used by tests: the pre-tokenized words of a (normalized, added-token
  // free) text, and the BPE ids of one word (in the byte-level alphabet or raw bytes).
  std::vector<std::string> pre_tokenize(const std::string& text) const;
  std::vector<int32_t> bpe_word(const std::string& word_utf8_bytes) const;
  // The rank of merging tokens a and b (byte-level strings), -1 when no merge.
  int merge_rank(const std::string& left, const std::string& right) const;
  // Maps raw bytes to the GPT-2 byte-level alphabet (each byte -> one code point).
  static std::string bytes_to_byte_level(const std::string& bytes);
  // Replaces each invalid UTF-8 sequence with U+FFFD (maximal subparts, like Python).
  static std::string sanitize_utf8(const std::string& bytes);

  struct State;

 private:
  const State& state() const;
  std::shared_ptr<const State> state_;
};

}  // namespace polaris
