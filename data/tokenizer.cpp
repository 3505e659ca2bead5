// Byte-level BPE tokenizer from a Hugging Face tokenizer.json (see tokenizer.h).
//
// The file is laid out in the order a text flows through it:
//   1. UTF-8 helpers (sanitizing invalid input the way Python's errors="replace" does)
//   2. the GPT-2 byte <-> code point alphabet
//   3. regexes (PCRE2 with UTF + Unicode properties + JIT)
//   4. the pieces read from the JSON: normalizers, pre-tokenizers, added tokens
//   5. BPE merging of one word (a min-heap over a linked list of symbols)
//   6. the word cache, then encode / decode / load
//
// Semantics follow the Hugging Face `tokenizers` library: added tokens are split
// out first (those with "normalized": false on the raw text, the others after
// normalization), each remaining piece is normalized and pre-tokenized, and each
// pre-token ("word") is BPE-merged independently. That independence is what makes
// the per-word cache valid.
#include "data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "data/json_input.h"
#include "src/common/error.h"

namespace polaris {

using json = nlohmann::json;

// ---------------------------------------------------------------------------
// 1. UTF-8 helpers
// ---------------------------------------------------------------------------

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid.
// When invalid, *bad_len is the length of the "maximal subpart" to replace with a
// single U+FFFD (Unicode's recommended practice, which Python and Rust follow):
// the longest prefix that could still have started a valid sequence, at least 1.
static size_t utf8_sequence_length(const unsigned char* s, size_t n, size_t i,
                                   size_t* bad_len) {
  unsigned char b0 = s[i];
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *bad_len = 1;  // 0x80..0xC1 or 0xF5..0xFF can never start a sequence
    return 0;
  }
  size_t k = 1;
  for (; k < need; ++k) {
    if (i + k >= n) break;
    unsigned char b = s[i + k];
    unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
    if (b < l || b > h) break;
  }
  if (k == need) return need;
  *bad_len = k;
  return 0;
}

std::string Tokenizer::sanitize_utf8(const std::string& bytes) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  // Fast path: most text is valid; scan first, copy only when needed.
  size_t i = 0, bad = 0;
  while (i < n) {
    if (s[i] < 0x80) { ++i; continue; }
    size_t len = utf8_sequence_length(s, n, i, &bad);
    if (len == 0) break;
    i += len;
  }
  if (i == n) return bytes;
  std::string out(bytes, 0, i);
  out.reserve(n + 16);
  while (i < n) {
    size_t len = utf8_sequence_length(s, n, i, &bad);
    if (len) {
      out.append(bytes, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += bad;
    }
  }
  return out;
}

// Decodes one code point of valid UTF-8 at s[i]; advances i.
static int32_t next_code_point(const std::string& s, size_t& i) {
  utf8proc_int32_t cp = 0;
  utf8proc_ssize_t len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + i,
                                          static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (len <= 0) { ++i; return 0xFFFD; }
  i += static_cast<size_t>(len);
  return cp;
}

static void append_utf8(std::string& out, int32_t cp) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t len = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
}

static bool is_space(int32_t cp) {  // Unicode White_Space, for added tokens' lstrip/rstrip
  if (cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85) return true;
  utf8proc_category_t c = utf8proc_category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

// ---------------------------------------------------------------------------
// 2. The GPT-2 byte-level alphabet: every byte maps to one printable code point,
//    so a token's bytes can be written as a string of visible characters. Bytes
//    that are printable Latin-1 map to themselves; the rest map to 256, 257, ...
//    (so ' ' becomes 'Ġ' (U+0120) and '\n' becomes 'Ċ').
// ---------------------------------------------------------------------------

struct ByteAlphabet {
  int32_t byte_to_cp[256];
  std::string byte_to_utf8[256];
  std::unordered_map<int32_t, uint8_t> cp_to_byte;
  ByteAlphabet() {
    int next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? b : next_extra++;
      append_utf8(byte_to_utf8[b], byte_to_cp[b]);
      cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};

static const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

std::string Tokenizer::bytes_to_byte_level(const std::string& bytes) {
  const ByteAlphabet& a = byte_alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += a.byte_to_utf8[b];
  return out;
}

// A token string back to bytes: each character through the alphabet when every
// character belongs to it, else the string's own UTF-8 (as HF's ByteLevel decoder
// does for added tokens such as "<｜end▁of▁sentence｜>").
static std::string byte_level_to_bytes(const std::string& token) {
  const ByteAlphabet& a = byte_alphabet();
  std::string out;
  size_t i = 0;
  while (i < token.size()) {
    int32_t cp = next_code_point(token, i);
    auto it = a.cp_to_byte.find(cp);
    if (it == a.cp_to_byte.end()) return token;
    out += static_cast<char>(it->second);
  }
  return out;
}

// ---------------------------------------------------------------------------
// 3. Regexes: PCRE2 in UTF mode with Unicode properties (\p{L}, \s, ...) and JIT.
//    Match data, a match context and a JIT stack are kept per thread.
// ---------------------------------------------------------------------------

namespace {

struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);  // only the whole match is needed
    context = pcre2_match_context_create(nullptr);
    // Long runs (e.g. 100k spaces against \s+(?!\S)) can need more than the
    // default 32 KiB of JIT stack; allow it to grow to 8 MiB.
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

// Hugging Face runs these patterns with Oniguruma, whose \s is Unicode's
// White_Space property. PCRE2's \s in UCP mode also takes everything \h and \v
// list, which still includes U+180E MONGOLIAN VOWEL SEPARATOR (White_Space until
// Unicode 6.3, a format character since). Spelling \s and \S as the property
// itself makes both engines agree, inside character classes as well.
std::string with_unicode_white_space(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    char escaped = pattern[++i];  // an escape is two characters; "\\s" stays a backslash and an s
    if (escaped == 's') out += "\\p{White_Space}";
    else if (escaped == 'S') out += "\\P{White_Space}";
    else out.append({'\\', escaped});
  }
  return out;
}

class Regex {
 public:
  // `where` names the JSON part for error messages.
  Regex(const std::string& pattern, const std::string& where) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = compile(with_unicode_white_space(pattern), &error_code, &error_offset);
    if (!code_) {
      // The rewrite only swaps one valid escape for another, so the pattern as
      // written fails too; report that one, whose offsets the user can find.
      pcre2_code_free(compile(pattern, &error_code, &error_offset));
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      throw Error(where + ": regex does not compile at offset " + std::to_string(error_offset) +
                  ": " + reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match at or after `offset` in valid UTF-8 text; false when none.
  bool find(const std::string& text, size_t offset, size_t* start, size_t* end) const {
    MatchScratch& scratch = match_scratch();
    // PCRE2_NO_UTF_CHECK: the text is already valid UTF-8, and without it PCRE2
    // would re-validate the whole subject on every call (quadratic on long texts).
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset,
                         PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      throw Error(std::string("tokenizer regex match failed: ") + reinterpret_cast<const char*>(message));
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    *start = ovector[0];
    *end = ovector[1];
    return true;
  }

 private:
  static pcre2_code* compile(const std::string& pattern, int* error_code, PCRE2_SIZE* error_offset) {
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                         error_code, error_offset, nullptr);
  }
  pcre2_code* code_ = nullptr;
};

// A word character for added tokens' single_word: HF tests the neighbours with
// Rust regex's Unicode \w, which is Alphabetic (letters, letter numbers such as
// U+2160, and Other_Alphabetic such as U+24B6), marks, decimal digits, connector
// punctuation ('_') and Join_Control (U+200C, U+200D). utf8proc has no
// Alphabetic property; PCRE2 has (its own \w differs: it takes every number,
// e.g. '²', and no marks).
bool is_word_char(int32_t cp) {
  static const Regex word_char("^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]",
                               "added token single_word");
  std::string character;
  append_utf8(character, cp);
  size_t start = 0, end = 0;
  return word_char.find(character, 0, &start, &end);
}

// The regex GPT-2's ByteLevel pre-tokenizer uses when "use_regex" is true.
const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------
// 4. Parts read from tokenizer.json
// ---------------------------------------------------------------------------

enum class NormalizerKind { NFC, NFD, NFKC, NFKD };

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
  enum Kind { Split, ByteLevel } kind = Split;
  // Split: a regex, or a literal string when regex is null.
  std::shared_ptr<Regex> regex;
  std::string literal;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  // ByteLevel:
  bool add_prefix_space = false;
  bool use_regex = false;  // with `regex` holding the GPT-2 pattern
};

struct AddedToken {
  std::string content;  // as matched (normalized when `normalized`)
  int id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Leftmost-longest matcher over a set of added tokens: a byte trie plus a table of
// which bytes can start a token, so scanning text with no candidates is one
// table lookup per byte.
class AddedTokenMatcher {
 public:
  void add(const std::string& content, int token_index) {
    if (content.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    int node = 0;
    for (unsigned char b : content) {
      int child = find_child(node, b);
      if (child < 0) {
        child = static_cast<int>(nodes_.size());
        nodes_[node].children.push_back({b, child});
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].token_index = token_index;
    can_start_[static_cast<unsigned char>(content[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }

  // Longest token starting at text[pos]: its index, with *end set; -1 when none.
  int longest_at(const std::string& text, size_t pos, size_t* end) const {
    if (!can_start_[static_cast<unsigned char>(text[pos])]) return -1;
    int node = 0, best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
      node = find_child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token_index >= 0) {
        best = nodes_[node].token_index;
        *end = i + 1;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;
    int token_index = -1;
  };
  int find_child(int node, unsigned char b) const {
    for (const auto& c : nodes_[node].children)
      if (c.first == b) return c.second;
    return -1;
  }
  std::vector<Node> nodes_;
  bool can_start_[256] = {};
};

// Pre-token -> ids cache. Sharded by hash so threads rarely contend; each shard is
// cleared when it fills up, which bounds memory on endless streams of new words.
class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 64;  // longer words are rare; not worth caching

  bool append_if_cached(const std::string& word, std::vector<int32_t>& out) {
    Shard& shard = shard_for(word);
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.map.find(word);
    if (it == shard.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void put(const std::string& word, const int32_t* ids, size_t count) {
    Shard& shard = shard_for(word);
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.map.size() >= kMaxEntriesPerShard) shard.map.clear();
    shard.map.emplace(word, std::vector<int32_t>(ids, ids + count));
  }
  void clear() {
    for (Shard& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard.mutex);
      shard.map.clear();
    }
  }

 private:
  static constexpr size_t kShards = 64;
  static constexpr size_t kMaxEntriesPerShard = 8192;  // ~500k words in all
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  Shard& shard_for(const std::string& word) {
    return shards_[std::hash<std::string>()(word) % kShards];
  }
  Shard shards_[kShards];
};

struct MergeTarget {
  int32_t rank;
  int32_t new_id;
};

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// (left id, right id) -> merge, as an open-addressing table: the BPE loop looks
// pairs up constantly, and one probe into a flat array beats std::unordered_map's
// bucket + node indirection.
class MergeTable {
 public:
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < 2 * count) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {0, 0}});
    mask_ = capacity - 1;
  }
  // Keeps the first insertion of a key (the lowest rank, as in HF).
  void insert(uint64_t key, MergeTarget target) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return;
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, target};
        ++size_;
        return;
      }
    }
  }
  const MergeTarget* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].target;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;  // ids are < 2^31, so no real key is all ones
  struct Slot {
    uint64_t key;
    MergeTarget target;
  };
  size_t slot_of(uint64_t key) const {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;  // Fibonacci hashing: mixes the high bits down
    return static_cast<size_t>(h ^ (h >> 32)) & mask_;
  }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    reserve(old.empty() ? 8 : old.size());
    size_ = 0;
    for (const Slot& slot : old)
      if (slot.key != kEmpty) insert(slot.key, slot.target);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace

struct Tokenizer::State {
  std::string path;
  std::vector<NormalizerKind> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;

  // Vocabulary (model vocab plus added tokens).
  std::vector<std::string> id_to_token;  // "" for ids with no token
  std::vector<uint8_t> id_present;
  std::vector<std::string> id_to_bytes;  // what decode emits for each id
  std::unordered_map<std::string, int32_t> token_to_id;

  // BPE model.
  MergeTable merges;  // (left id, right id) -> rank, merged id
  int32_t byte_to_id[256];                            // id of each single-byte token, -1 if none
  bool ignore_merges = false;                         // whole word in vocab -> one token
  int32_t unk_id = -1;

  std::vector<AddedToken> added;
  std::vector<uint8_t> id_is_added, id_is_special, id_is_lstrip;
  AddedTokenMatcher raw_matcher;         // tokens with normalized=false, matched on raw text
  AddedTokenMatcher normalized_matcher;  // tokens with normalized=true, matched after normalizing
  std::string end_of_text;
  // Ids must be below this (set while loading): bounds the id tables a
  // hostile id would otherwise size (an id near 2^31 would ask for gigabytes).
  int64_t id_limit = 0;

  mutable WordCache cache;

  [[noreturn]] void fail(const std::string& what) const { throw Error(path + ": " + what); }

  std::string normalize(const std::string& text) const;
  void split_added(const std::string& text, const AddedTokenMatcher& matcher,
                   std::vector<std::pair<int32_t, std::string>>& out) const;
  std::vector<std::string> pre_tokenize(const std::string& text) const;
  void bpe(const std::string& word, std::vector<int32_t>& out) const;
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  void encode(const std::string& text, std::vector<int32_t>& out) const;
};

// --- normalizers -----------------------------------------------------------

// One Unicode normal form of valid UTF-8 text, as utf8proc_map gives it, in
// O(n log n). utf8proc_map puts combining marks in canonical order with an
// insertion sort, quadratic in a long run of marks out of order (80 KB of
// alternating U+0301 U+0323 took seconds). So decompose each character with
// utf8proc, order each run of non-starters by a stable sort on combining class
// (which is what canonical ordering is), and let utf8proc compose the result.
static std::string normal_form(const std::string& text, NormalizerKind kind, const std::string& path) {
  const bool compat = kind == NormalizerKind::NFKC || kind == NormalizerKind::NFKD;
  const bool compose = kind == NormalizerKind::NFC || kind == NormalizerKind::NFKC;
  const auto decompose_options =
      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0));
  std::vector<utf8proc_int32_t> code_points;
  code_points.reserve(text.size() + 16);
  int unused_boundclass = 0;
  for (size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {  // ASCII: its own decomposition
      code_points.push_back(text[i++]);
      continue;
    }
    const int32_t cp = next_code_point(text, i);
    utf8proc_int32_t decomposed[32];  // longer than any decomposition (U+FDFA: 18)
    const utf8proc_ssize_t count =
        utf8proc_decompose_char(cp, decomposed, std::size(decomposed), decompose_options, &unused_boundclass);
    if (count < 0 || count > static_cast<utf8proc_ssize_t>(std::size(decomposed)))
      throw Error(path + ": normalizer failed: " + (count < 0 ? utf8proc_errmsg(count) : "decomposition too long"));
    code_points.insert(code_points.end(), decomposed, decomposed + count);
  }
  auto combining_class = [](utf8proc_int32_t cp) { return utf8proc_get_property(cp)->combining_class; };
  for (auto run = code_points.begin(); run != code_points.end();) {
    if (combining_class(*run) == 0) { ++run; continue; }
    auto run_end =
        std::find_if(run, code_points.end(), [&](utf8proc_int32_t cp) { return combining_class(cp) == 0; });
    std::stable_sort(run, run_end,
                     [&](utf8proc_int32_t a, utf8proc_int32_t b) { return combining_class(a) < combining_class(b); });
    run = run_end;
  }
  utf8proc_ssize_t length = static_cast<utf8proc_ssize_t>(code_points.size());
  if (compose) {
    length = utf8proc_normalize_utf32(code_points.data(), length,
                                      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (length < 0) throw Error(path + ": normalizer failed: " + utf8proc_errmsg(length));
  }
  std::string out;
  out.reserve(text.size());
  for (utf8proc_ssize_t k = 0; k < length; ++k) append_utf8(out, code_points[k]);
  return out;
}

std::string Tokenizer::State::normalize(const std::string& text) const {
  std::string current = text;
  for (NormalizerKind kind : normalizers) {
    // Pure ASCII is unchanged by every Unicode normal form.
    bool ascii = std::all_of(current.begin(), current.end(),
                             [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (!ascii) current = normal_form(current, kind, path);
  }
  return current;
}

// --- added tokens ----------------------------------------------------------

// Splits text into pieces: (id, "") for an added token, (-1, text) for the text
// between them. Follows HF's AddedVocabulary: the matches are the
// non-overlapping leftmost-longest ones in the text as it stands; single_word
// tokens only count when not touching a word character; lstrip/rstrip tokens
// then swallow the whitespace on that side. Stripping does not move where the
// next match is looked for, so with " x" rstrip, " x x" is two tokens: the
// second match begins at the space the first one's rstrip swallowed.
void Tokenizer::State::split_added(const std::string& text, const AddedTokenMatcher& matcher,
                                   std::vector<std::pair<int32_t, std::string>>& out) const {
  if (matcher.empty()) {
    if (!text.empty()) out.push_back({-1, text});
    return;
  }
  size_t piece_start = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = 0;
    int index = matcher.longest_at(text, pos, &end);
    if (index < 0) { ++pos; continue; }
    const AddedToken& token = added[index];
    size_t start = pos;
    if (token.single_word) {
      bool word_before = false, word_after = false;
      if (start > 0) {  // last code point before the match
        size_t b = start - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        word_before = is_word_char(next_code_point(text, i));
      }
      if (end < text.size()) {
        size_t i = end;
        word_after = is_word_char(next_code_point(text, i));
      }
      if (word_before || word_after) { pos = end; continue; }  // HF skips the whole match
    }
    if (token.lstrip) {
      while (start > piece_start) {
        size_t b = start - 1;  // back up to the start of the previous code point
        while (b > piece_start && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        if (!is_space(next_code_point(text, i))) break;
        start = b;
      }
    }
    const size_t match_end = end;
    if (token.rstrip) {
      while (end < text.size()) {
        size_t i = end;
        if (!is_space(next_code_point(text, i))) break;
        end = i;
      }
    }
    if (start > piece_start) out.push_back({-1, text.substr(piece_start, start - piece_start)});
    out.push_back({token.id, std::string()});
    piece_start = end;
    pos = match_end;
  }
  if (piece_start < text.size()) out.push_back({-1, text.substr(piece_start)});
}

// --- pre-tokenizers --------------------------------------------------------

// One Split step on one piece: find the pattern's matches, mark each span as
// match / non-match (flipped by invert), then group spans by `behavior`
// exactly as HF's NormalizedString::split does. Empty results are dropped.
static void split_piece(const PreTokenizerStep& step, const std::string& piece,
                        std::vector<std::string>& out) {
  struct Span { size_t start, end; bool is_match; };
  std::vector<Span> spans;
  size_t prev = 0;
  if (step.regex) {
    // Iterate matches like the onig crate HF uses: an empty match right where
    // the previous match ended is skipped by stepping one code point ahead.
    size_t search_from = 0, start = 0, end = 0, last_match_end = 0;
    bool have_match = false;
    while (search_from <= piece.size() && step.regex->find(piece, search_from, &start, &end)) {
      if (start == end && have_match && last_match_end == end) {
        if (search_from >= piece.size()) break;
        next_code_point(piece, search_from);
        continue;
      }
      search_from = last_match_end = end;
      have_match = true;
      if (start > prev) spans.push_back({prev, start, false});
      spans.push_back({start, end, true});  // empty matches are dropped below
      prev = end;
    }
  } else if (!step.literal.empty()) {
    size_t start;
    while ((start = piece.find(step.literal, prev)) != std::string::npos) {
      if (start > prev) spans.push_back({prev, start, false});
      spans.push_back({start, start + step.literal.size(), true});
      prev = start + step.literal.size();
    }
  }
  if (prev < piece.size()) spans.push_back({prev, piece.size(), false});
  if (step.invert)
    for (Span& s : spans) s.is_match = !s.is_match;

  std::vector<Span> grouped;
  switch (step.behavior) {
    case SplitBehavior::Removed:
      for (const Span& s : spans)
        if (!s.is_match) grouped.push_back(s);
      break;
    case SplitBehavior::Isolated:
      grouped = spans;
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !grouped.empty()) grouped.back().end = s.end;
        else grouped.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !grouped.empty()) grouped.back().start = it->start;
        else grouped.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(grouped.begin(), grouped.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (size_t k = 0; k < spans.size(); ++k) {
        if (k > 0 && spans[k].is_match == previous_match) grouped.back().end = spans[k].end;
        else grouped.push_back(spans[k]);
        previous_match = spans[k].is_match;
      }
      break;
    }
  }
  for (const Span& s : grouped)
    if (s.end > s.start) out.push_back(piece.substr(s.start, s.end - s.start));
}

std::vector<std::string> Tokenizer::State::pre_tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : pre_tokenizers) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.kind == PreTokenizerStep::ByteLevel) {
        // The byte mapping itself happens in bpe(); here only the prefix space
        // and the optional GPT-2 split.
        if (step.add_prefix_space && piece[0] != ' ') piece.insert(piece.begin(), ' ');
        if (step.use_regex) split_piece(step, piece, next);
        else next.push_back(std::move(piece));
      } else {
        split_piece(step, piece, next);
      }
    }
    pieces.swap(next);
  }
  return pieces;
}

// ---------------------------------------------------------------------------
// 5. BPE of one word. Symbols form a linked list; a min-heap holds candidate
//    merges ordered by (rank, position). Popping the minimum and re-checking it
//    against the current symbols gives exactly "merge the lowest-rank pair, the
//    leftmost one first" without rescanning the word: O(n log n) per word.
// ---------------------------------------------------------------------------

namespace {
struct Symbol {
  int32_t id;
  int32_t prev, next;  // -1 at the ends
  bool alive;
};
struct Candidate {
  int32_t rank, pos, left_id, right_id;
  bool operator>(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};
}  // namespace

void Tokenizer::State::bpe(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    auto it = token_to_id.find(bytes_to_byte_level(word));
    if (it != token_to_id.end()) { out.push_back(it->second); return; }
  }
  // Per-thread scratch, reused across words (no allocation once warm).
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;  // a min-heap via std::push_heap/pop_heap
  symbols.clear();
  heap.clear();
  for (unsigned char b : word) {
    int32_t id = byte_to_id[b];
    if (id < 0) id = unk_id;
    if (id < 0) continue;  // HF drops symbols missing from vocab when there is no unk token
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  const std::greater<Candidate> later;  // makes the std heap functions keep the minimum on top
  auto push_pair = [&](int32_t left) {
    int32_t right = symbols[left].next;
    if (right < 0) return;
    const MergeTarget* merge = merges.find(pair_key(symbols[left].id, symbols[right].id));
    if (!merge) return;
    heap.push_back({merge->rank, left, symbols[left].id, symbols[right].id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    // Stale candidate: one of its two symbols was merged away or changed since.
    if (!left.alive || left.next < 0 || left.id != top.left_id ||
        symbols[left.next].id != top.right_id)
      continue;
    Symbol& right = symbols[left.next];
    left.id = merges.find(pair_key(top.left_id, top.right_id))->new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

void Tokenizer::State::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (word.size() > WordCache::kMaxWordBytes) { bpe(word, out); return; }
  if (cache.append_if_cached(word, out)) return;
  size_t before = out.size();
  bpe(word, out);
  cache.put(word, out.data() + before, out.size() - before);
}

void Tokenizer::State::encode(const std::string& raw_text, std::vector<int32_t>& out) const {
  std::string text = sanitize_utf8(raw_text);
  std::vector<std::pair<int32_t, std::string>> raw_pieces, pieces;
  split_added(text, raw_matcher, raw_pieces);
  for (auto& piece : raw_pieces) {
    if (piece.first >= 0) { pieces.push_back(std::move(piece)); continue; }
    split_added(normalize(piece.second), normalized_matcher, pieces);
  }
  for (const auto& piece : pieces) {
    if (piece.first >= 0) { out.push_back(piece.first); continue; }
    for (const std::string& word : pre_tokenize(piece.second)) encode_word(word, out);
  }
}

// ---------------------------------------------------------------------------
// 6. Loading tokenizer.json
// ---------------------------------------------------------------------------

namespace {

std::string json_type_name(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"].get<std::string>();
  return j.is_null() ? "null" : j.dump();
}

void parse_normalizer(Tokenizer::State& s, const json& j) {
  if (j.is_null()) return;
  std::string type = json_type_name(j);
  if (type == "Sequence") {
    for (const json& child : j.at("normalizers")) parse_normalizer(s, child);
  } else if (type == "NFC") {
    s.normalizers.push_back(NormalizerKind::NFC);
  } else if (type == "NFD") {
    s.normalizers.push_back(NormalizerKind::NFD);
  } else if (type == "NFKC") {
    s.normalizers.push_back(NormalizerKind::NFKC);
  } else if (type == "NFKD") {
    s.normalizers.push_back(NormalizerKind::NFKD);
  } else {
    s.fail("normalizer type '" + type + "' is not supported");
  }
}

void parse_pre_tokenizer(Tokenizer::State& s, const json& j) {
  if (j.is_null()) return;
  std::string type = json_type_name(j);
  if (type == "Sequence") {
    for (const json& child : j.at("pretokenizers")) parse_pre_tokenizer(s, child);
  } else if (type == "Split") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Split;
    const json& pattern = j.at("pattern");
    if (pattern.contains("Regex")) {
      step.regex = std::make_shared<Regex>(pattern["Regex"].get<std::string>(),
                                           s.path + ": pre_tokenizer Split");
    } else if (pattern.contains("String")) {
      step.literal = pattern["String"].get<std::string>();
    } else {
      s.fail("pre_tokenizer Split pattern " + pattern.dump() + " is not supported");
    }
    static const std::unordered_map<std::string, SplitBehavior> behaviors = {
        {"Removed", SplitBehavior::Removed},
        {"Isolated", SplitBehavior::Isolated},
        {"MergedWithPrevious", SplitBehavior::MergedWithPrevious},
        {"MergedWithNext", SplitBehavior::MergedWithNext},
        {"Contiguous", SplitBehavior::Contiguous}};
    std::string behavior = j.value("behavior", std::string("Isolated"));
    auto it = behaviors.find(behavior);
    if (it == behaviors.end()) s.fail("pre_tokenizer Split behavior '" + behavior + "' is not supported");
    step.behavior = it->second;
    step.invert = j.value("invert", false);
    s.pre_tokenizers.push_back(step);
  } else if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::ByteLevel;
    step.add_prefix_space = j.value("add_prefix_space", true);
    step.use_regex = j.value("use_regex", true);
    if (step.use_regex) {
      step.regex = std::make_shared<Regex>(kGpt2Pattern, s.path + ": pre_tokenizer ByteLevel");
      step.behavior = SplitBehavior::Isolated;
    }
    s.pre_tokenizers.push_back(step);
  } else {
    s.fail("pre_tokenizer type '" + type + "' is not supported");
  }
}

bool decoder_is_byte_level(const json& j) {
  std::string type = json_type_name(j);
  if (type == "ByteLevel") return true;
  if (type == "Sequence") {
    const json& children = j.at("decoders");
    return children.size() == 1 && decoder_is_byte_level(children[0]);
  }
  return false;
}

// "<|endoftext|>" when present, else the eos_token of a tokenizer_config.json
// beside the file, else none.
std::string find_end_of_text(const Tokenizer::State& s) {
  if (s.token_to_id.count("<|endoftext|>")) return "<|endoftext|>";
  std::string dir = s.path.substr(0, s.path.find_last_of('/') + 1);
  const std::string config_path = dir + "tokenizer_config.json";
  std::error_code ignored;
  if (!std::filesystem::is_regular_file(config_path, ignored)) return "";
  // Bounded (data/json_input.h); a malformed file is ignored as before, an
  // over-limit one is an error naming it.
  json config;
  std::string problem;
  if (!parse_json_bounded(read_text_file_bounded(config_path, kJsonConfigMaxBytes,
                                                 "a tokenizer_config.json"),
                          &config, &problem)) {
    if (problem == json_depth_problem()) throw Error(config_path + ": " + problem);
    return "";
  }
  if (!config.is_object() || !config.contains("eos_token")) return "";
  const json& eos = config["eos_token"];
  std::string name;
  if (eos.is_string()) name = eos.get<std::string>();
  else if (eos.is_object() && eos.contains("content") && eos["content"].is_string())
    name = eos["content"].get<std::string>();
  return s.token_to_id.count(name) ? name : "";
}

void set_token(Tokenizer::State& s, int64_t id, const std::string& token) {
  if (id < 0) s.fail("token '" + token + "' has negative id " + std::to_string(id));
  if (id >= s.id_limit)
    s.fail("token '" + token + "' has id " + std::to_string(id) + ", over the limit of " +
           std::to_string(s.id_limit) + " (ids must be below min(2^24, the number of tokens + 2^20))");
  if (static_cast<size_t>(id) >= s.id_to_token.size()) {
    s.id_to_token.resize(static_cast<size_t>(id) + 1);
    s.id_present.resize(static_cast<size_t>(id) + 1, 0);
  }
  s.id_to_token[id] = token;
  s.id_present[id] = 1;
  s.token_to_id[token] = id;
}

// The large parts of tokenizer.json (model.vocab: ~150k entries, model.merges:
// ~150k pairs) go straight into flat vectors instead of a JSON tree; the rest is
// built as a normal tree. This SAX reader halves the load time of an 11 MB file.
struct LargeParts {
  bool have_vocab = false, have_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string problem;  // a malformed entry, reported after parsing
};

class TokenizerJsonReader : public nlohmann::json_sax<json> {
 public:
  explicit TokenizerJsonReader(LargeParts* large) : large_(large) {}
  json root;
  std::string error;  // set when the JSON itself is malformed

  bool null() override { return value(json()); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool binary(binary_t&) override { return value(json()); }
  bool string(string_t& v) override {
    if (mode_ == Merges && depth_ == 1) {  // "a b"
      size_t space = v.find(' ');
      if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos)
        note("merge " + std::to_string(large_->merges.size()) + " '" + v + "' is not two tokens");
      else
        large_->merges.emplace_back(v.substr(0, space), v.substr(space + 1));
      return true;
    }
    if (mode_ == Merges && depth_ == 2) {  // ["a", "b"]
      pair_parts_.push_back(std::move(v));
      return true;
    }
    return value(json(std::move(v)));
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) override {
    if (!enter()) return false;
    if (mode_ == None && key_ == "vocab" && in_model()) {
      mode_ = Vocab;
      depth_ = 1;
      large_->have_vocab = true;
      return true;
    }
    if (mode_ != None) {
      ++depth_;
      note(mode_ == Vocab ? "model vocab holds a non-integer id" : "model merges hold an object");
      return true;
    }
    return open(json::object());
  }
  bool end_object() override {
    --nesting_;
    if (mode_ != None) {
      if (--depth_ == 0) mode_ = None;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (!enter()) return false;
    if (mode_ == None && key_ == "merges" && in_model()) {
      mode_ = Merges;
      depth_ = 1;
      large_->have_merges = true;
      return true;
    }
    if (mode_ != None) {
      if (mode_ == Merges && depth_ == 1) pair_parts_.clear();
      else note(mode_ == Vocab ? "model vocab holds a non-integer id" : "model merges nest too deep");
      ++depth_;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    --nesting_;
    if (mode_ != None) {
      if (mode_ == Merges && depth_ == 2) {
        if (pair_parts_.size() == 2)
          large_->merges.emplace_back(std::move(pair_parts_[0]), std::move(pair_parts_[1]));
        else
          note("merge " + std::to_string(large_->merges.size()) + " is neither \"a b\" nor [a, b]");
      }
      if (--depth_ == 0) mode_ = None;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }

 private:
  enum Mode { None, Vocab, Merges };

  // One more level of nesting; false (ending the parse) beyond kJsonMaxDepth.
  bool enter() {
    if (++nesting_ <= kJsonMaxDepth) return true;
    error = json_depth_problem();
    return false;
  }
  // Directly inside the top-level "model" object?
  bool in_model() const { return stack_.size() == 2 && model_ == stack_.back(); }
  void note(const std::string& problem) {
    if (large_->problem.empty()) large_->problem = problem;
  }
  bool value(json v) {
    if (mode_ == Vocab) {
      if (depth_ == 1 && v.is_number_integer()) large_->vocab.emplace_back(key_, v.get<int64_t>());
      else note("model vocab entry '" + key_ + "' has a non-integer id");
      return true;
    }
    if (mode_ == Merges) {
      note("merge " + std::to_string(large_->merges.size()) + " is neither \"a b\" nor [a, b]");
      return true;
    }
    insert(std::move(v));
    return true;
  }
  json* insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(v);
    return &slot;
  }
  bool open(json container) {
    bool is_model = stack_.size() == 1 && key_ == "model";
    // Children of the open container are added only after it is closed, so
    // pointers to open containers stay valid.
    json* node = insert(std::move(container));
    if (is_model) model_ = node;
    stack_.push_back(node);
    return true;
  }

  LargeParts* large_;
  std::vector<json*> stack_;
  json* model_ = nullptr;
  std::string key_;
  Mode mode_ = None;
  int depth_ = 0;
  int nesting_ = 0;  // open arrays and objects
  std::vector<std::string> pair_parts_;
};

void parse_model(Tokenizer::State& s, const json& model, LargeParts& large) {
  if (!model.contains("type")) s.fail("model has no type (expected \"type\": \"BPE\")");
  std::string type = json_type_name(model);
  if (type != "BPE") s.fail("model type '" + type + "' is not supported (only byte-level BPE)");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0)
    s.fail("model BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
      s.fail(std::string("model BPE ") + key + " is not supported");
  if (model.value("byte_fallback", false)) s.fail("model BPE byte_fallback is not supported");
  s.ignore_merges = model.value("ignore_merges", false);

  if (!large.have_vocab) s.fail(model.contains("vocab") ? "model vocab is not an object" : "model has no vocab");
  if (!large.have_merges) s.fail(model.contains("merges") ? "model merges is not an array" : "model has no merges");
  if (!large.problem.empty()) s.fail(large.problem);
  s.token_to_id.reserve(large.vocab.size() * 2);
  s.id_to_token.reserve(large.vocab.size() + 1024);
  for (const auto& entry : large.vocab) {
    if (entry.second < 0 || entry.second >= s.id_limit)
      s.fail("model vocab id " + std::to_string(entry.second) + " of '" + entry.first +
             "' is out of range (ids must be below " + std::to_string(s.id_limit) + ")");
    const size_t id = static_cast<size_t>(entry.second);
    if (id < s.id_present.size() && s.id_present[id])
      s.fail("model vocab id " + std::to_string(id) + " belongs to both '" + s.id_to_token[id] + "' and '" +
             entry.first + "'");
    set_token(s, entry.second, entry.first);
  }

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = s.token_to_id.find(model["unk_token"].get<std::string>());
    if (it != s.token_to_id.end()) s.unk_id = it->second;
  }

  const ByteAlphabet& alphabet = byte_alphabet();
  for (int b = 0; b < 256; ++b) {
    auto it = s.token_to_id.find(alphabet.byte_to_utf8[b]);
    s.byte_to_id[b] = it == s.token_to_id.end() ? -1 : it->second;
  }

  s.merges.reserve(large.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < large.merges.size(); ++rank) {
    const std::string& left = large.merges[rank].first;
    const std::string& right = large.merges[rank].second;
    joined.assign(left).append(right);
    auto l = s.token_to_id.find(left), r = s.token_to_id.find(right), merged = s.token_to_id.find(joined);
    if (l == s.token_to_id.end() || r == s.token_to_id.end() || merged == s.token_to_id.end())
      s.fail("merge " + std::to_string(rank) + " '" + left + " " + right + "' uses a token not in vocab");
    // If a pair appears twice, the first (lowest) rank wins, as in HF.
    s.merges.insert(pair_key(l->second, r->second), MergeTarget{static_cast<int32_t>(rank), merged->second});
  }
}

void parse_added_tokens(Tokenizer::State& s, const json& list) {
  if (list.is_null()) return;
  for (const json& j : list) {
    AddedToken token;
    const json& id = j.at("id");
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= s.id_limit)
      s.fail("added token id " + id.dump() + " is not an integer in [0, " +
             std::to_string(s.id_limit) + ")");
    token.id = static_cast<int32_t>(id.get<int64_t>());
    token.content = j.at("content").get<std::string>();
    if (token.content.empty()) s.fail("added token " + std::to_string(token.id) + " has empty content");
    token.special = j.value("special", false);
    token.lstrip = j.value("lstrip", false);
    token.rstrip = j.value("rstrip", false);
    token.single_word = j.value("single_word", false);
    token.normalized = j.value("normalized", !token.special);
    set_token(s, token.id, token.content);
    s.added.push_back(token);
  }
  for (size_t i = 0; i < s.added.size(); ++i) {
    AddedToken& token = s.added[i];
    if (token.normalized) {
      // Normalized tokens are matched against normalized text, so normalize them too.
      token.content = s.normalize(token.content);
      s.normalized_matcher.add(token.content, static_cast<int>(i));
    } else {
      s.raw_matcher.add(token.content, static_cast<int>(i));
    }
  }
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  auto state = std::make_shared<State>();
  State& s = *state;
  s.path = path;
  // Reading a directory "succeeds" with no bytes, which would be reported as malformed JSON.
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    throw Error(path + ": is a directory (expected a tokenizer.json file)");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw Error(path + ": cannot open tokenizer file");
  }
  const std::string text = read_text_file_bounded(path, kJsonTokenizerMaxBytes, "a tokenizer.json");
  LargeParts large;
  TokenizerJsonReader reader(&large);
  bool parsed = json::sax_parse(text, &reader);
  if (!parsed && reader.error == json_depth_problem()) s.fail(reader.error);
  if (!parsed) s.fail("malformed JSON: " + reader.error);
  const json& root = reader.root;
  // Ids are dense in practice (vocab, then added tokens): allow a gap of 2^20
  // over the number of tokens listed, and never beyond the model vocab bound.
  {
    size_t listed = large.vocab.size();
    if (root.is_object() && root.contains("added_tokens") && root["added_tokens"].is_array())
      listed += root["added_tokens"].size();
    s.id_limit = std::min<int64_t>(int64_t(1) << 24, int64_t(listed) + (int64_t(1) << 20));
  }
  try {
    if (!root.is_object()) s.fail("not a tokenizer.json (top level is not an object)");
    if (!root.contains("model")) s.fail("no 'model' section");
    // Both change what encode returns, so ignoring them would silently differ from HF.
    for (const char* part : {"truncation", "padding"})
      if (root.contains(part) && !root[part].is_null())
        s.fail(std::string(part) + " is not supported (set it to null)");
    parse_normalizer(s, root.value("normalizer", json()));
    parse_pre_tokenizer(s, root.value("pre_tokenizer", json()));
    parse_model(s, root["model"], large);
    bool byte_level = std::any_of(s.pre_tokenizers.begin(), s.pre_tokenizers.end(),
                                  [](const PreTokenizerStep& p) { return p.kind == PreTokenizerStep::ByteLevel; });
    if (!byte_level) s.fail("pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
    const json decoder = root.value("decoder", json());
    if (!decoder_is_byte_level(decoder))
      s.fail("decoder type '" + json_type_name(decoder) + "' is not supported (only ByteLevel)");
    parse_added_tokens(s, root.value("added_tokens", json()));
  } catch (const json::exception& e) {
    s.fail(std::string("unexpected structure: ") + e.what());
  }

  size_t n = s.id_to_token.size();
  s.id_to_bytes.resize(n);
  s.id_is_added.assign(n, 0);
  s.id_is_special.assign(n, 0);
  s.id_is_lstrip.assign(n, 0);
  for (size_t id = 0; id < n; ++id)
    if (s.id_present[id]) s.id_to_bytes[id] = byte_level_to_bytes(s.id_to_token[id]);
  for (const AddedToken& token : s.added) {
    s.id_is_added[token.id] = 1;
    s.id_is_special[token.id] = token.special;
    s.id_is_lstrip[token.id] = token.lstrip;
  }
  s.end_of_text = find_end_of_text(s);
  Tokenizer tokenizer;
  tokenizer.state_ = state;
  return tokenizer;
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

const Tokenizer::State& Tokenizer::state() const {
  // A default-constructed Tokenizer has no state; fail with a message, not a crash.
  if (!state_) throw Error("tokenizer used before Tokenizer::load");
  return *state_;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  state().encode(text, ids);
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          int threads) const {
  std::vector<std::vector<int32_t>> results(texts.size());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(texts.size()));
  if (threads <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) results[i] = encode(texts[i]);
    return results;
  }
  // Texts vary in length, so workers take the next unclaimed text (dynamic scheduling).
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&]() {
    try {
      for (size_t i; (i = next.fetch_add(1)) < texts.size();) results[i] = encode(texts[i]);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = texts.size();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (std::thread& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  return results;
}

// The decoder's bytes of one id; an id outside the vocabulary is an error.
static const std::string& decoded_bytes(const Tokenizer::State& s, int32_t id, int vocab_size) {
  if (id < 0 || static_cast<size_t>(id) >= s.id_to_bytes.size() || !s.id_present[id])
    throw Error("decode: token id " + std::to_string(id) + " is not in the vocabulary of " + s.path +
                " (size " + std::to_string(vocab_size) + ")");
  return s.id_to_bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += decoded_bytes(state(), id, vocab_size());
  return sanitize_utf8(bytes);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const std::string& bytes = decoded_bytes(state(), id, vocab_size());
  // An added token was matched in the text as its content, before BPE (the
  // decoder maps it through the byte alphabet like any token, which gives the
  // same bytes for ordinary ASCII contents).
  return state().id_is_added[id] ? state().id_to_token[id] : bytes;
}

int Tokenizer::vocab_size() const { return static_cast<int>(state().id_to_token.size()); }

int Tokenizer::token_to_id(const std::string& token) const {
  auto it = state().token_to_id.find(token);
  return it == state().token_to_id.end() ? -1 : it->second;
}

std::string Tokenizer::id_to_token(int id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return state().id_to_token[id];
}

std::string Tokenizer::end_of_text_token() const { return state().end_of_text; }

bool Tokenizer::is_added_token(int id) const {
  return id >= 0 && id < vocab_size() && state().id_is_added[id];
}

bool Tokenizer::is_special_token(int id) const {
  return id >= 0 && id < vocab_size() && state().id_is_special[id];
}

bool Tokenizer::is_lstrip_token(int id) const {
  return id >= 0 && id < vocab_size() && state().id_is_lstrip[id];
}

const std::string& Tokenizer::path() const { return state().path; }

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& text) const {
  return state().pre_tokenize(text);
}

std::vector<int32_t> Tokenizer::bpe_word(const std::string& word) const {
  std::vector<int32_t> ids;
  state().bpe(word, ids);
  return ids;
}

int Tokenizer::merge_rank(const std::string& left, const std::string& right) const {
  int l = token_to_id(left), r = token_to_id(right);
  if (l < 0 || r < 0) return -1;
  const MergeTarget* merge = state().merges.find(pair_key(l, r));
  return merge ? merge->rank : -1;
}

void Tokenizer::clear_cache() const { state().cache.clear(); }

}  // namespace polaris
