// Tests for data/tokenizer: the reference cases produced by Hugging Face
// `tokenizers` for Qwen3 and DeepSeek-V3, invariants on generated text (round
// trip, ids in vocab, encoding = concatenation of pre-token encodings, fast BPE
// = naive lowest-rank BPE), invalid UTF-8, long runs, every pre-tokenizer
// option on small synthetic tokenizer.json files, and bad input.
#include <gtest/gtest.h>
#include <unistd.h>
#include <utf8proc.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "data/tokenizer.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using polaris::Tokenizer;
using polaris::error_of;
using json = nlohmann::json;

namespace {

const char* kQwen3Dir = "tests/fixtures/qwen3_tokenizer/";
const char* kDeepSeekDir = "tests/fixtures/deepseek_v3_tokenizer/";

// Both real tokenizers are loaded once for the whole file (about a second).
const Tokenizer& qwen3() {
  static const Tokenizer t = Tokenizer::load(std::string(kQwen3Dir) + "tokenizer.json");
  return t;
}
const Tokenizer& deepseek() {
  static const Tokenizer t = Tokenizer::load(std::string(kDeepSeekDir) + "tokenizer.json");
  return t;
}

// A normal form straight from utf8proc_map (quadratic on long runs of combining
// marks, so only for short texts). `options`: UTF8PROC_COMPOSE or _DECOMPOSE, maybe | _COMPAT.
std::string utf8proc_normal_form(const std::string& s, int options) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | options));
  EXPECT_GE(n, 0);
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

std::string nfc(const std::string& s) { return utf8proc_normal_form(s, UTF8PROC_COMPOSE); }

std::string utf8(int32_t cp) {
  utf8proc_uint8_t buf[4];
  return std::string(reinterpret_cast<char*>(buf), utf8proc_encode_char(cp, buf));
}

// Random text from a mix of scripts, whitespace, combining marks and emoji.
std::string random_unicode(std::mt19937& rng, int length) {
  static const std::pair<int32_t, int32_t> ranges[] = {
      {0x20, 0x7E},     {0x20, 0x7E},     {0x20, 0x7E},   {'\n', '\n'},     {'\t', '\t'},
      {'\r', '\r'},     {0xA0, 0xFF},     {0x100, 0x24F}, {0x300, 0x36F},   {0x370, 0x4FF},
      {0x600, 0x6FF},   {0x900, 0x97F},   {0x1100, 0x11FF}, {0x2000, 0x200B}, {0x3000, 0x30FF},
      {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xE000, 0xE0FF}, {0x1F300, 0x1F6FF}, {0x20000, 0x2A6DF}};
  std::string s;
  for (int i = 0; i < length; ++i) {
    const auto& r = ranges[rng() % (sizeof(ranges) / sizeof(*ranges))];
    s += utf8(r.first + static_cast<int32_t>(rng() % (r.second - r.first + 1)));
  }
  return s;
}

// Naive BPE, straight from the definition: repeatedly merge the adjacent pair
// with the lowest merge rank (the leftmost on ties) until no pair merges.
std::vector<int32_t> naive_bpe(const Tokenizer& t, const std::string& word_bytes) {
  std::vector<std::string> symbols;
  for (unsigned char b : word_bytes) symbols.push_back(Tokenizer::bytes_to_byte_level(std::string(1, b)));
  while (true) {
    int best_rank = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      int rank = t.merge_rank(symbols[i], symbols[i + 1]);
      if (rank >= 0 && (best_rank < 0 || rank < best_rank)) { best_rank = rank; best = i; }
    }
    if (best_rank < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> ids;
  for (const std::string& s : symbols) ids.push_back(t.token_to_id(s));
  return ids;
}

void check_reference_cases(const Tokenizer& t, const std::string& dir) {
  std::ifstream file(dir + "cases.json");
  ASSERT_TRUE(file) << dir;
  json cases = json::parse(file);
  ASSERT_GT(cases.size(), 10u);
  for (const json& c : cases) {
    std::string text = c["text"];
    std::vector<int32_t> want = c["ids"];
    EXPECT_EQ(t.encode(text), want) << "text: " << text;
    if (c.value("roundtrip", true)) {
      EXPECT_EQ(t.decode(want), text);
    }
  }
}

// generated_cases.json: texts from a seeded generator (random Unicode, long
// runs, whitespace mixes, code, contractions, numbers, special tokens inside
// text) encoded and decoded by the Hugging Face tokenizers library itself
// (tests/tools/make_tokenizer_cases.js). Every id and every decoded string
// must match; a failure names the case's kind and index.
void check_generated_cases(const Tokenizer& t, const std::string& dir) {
  std::ifstream file(dir + "generated_cases.json");
  ASSERT_TRUE(file) << dir;
  json cases = json::parse(file);
  ASSERT_GT(cases.size(), 400u);
  std::map<std::string, int> per_kind;
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    const std::string kind = c["kind"], text = c["text"];
    const std::vector<int32_t> want = c["ids"];
    ++per_kind[kind];
    ASSERT_EQ(t.encode(text), want) << "case " << i << " (" << kind << "): " << text;
    ASSERT_EQ(t.decode(want), c["decoded"].get<std::string>()) << "case " << i << " (" << kind << ")";
  }
  for (const char* kind : {"random_unicode", "long_run", "whitespace_mix", "code", "contractions",
                           "numbers", "special_tokens"})
    EXPECT_GE(per_kind[kind], 20) << kind;
}

// Writes a tokenizer.json into a fresh temp file; returns its path.
std::string write_temp(const std::string& content, const std::string& name = "tokenizer.json") {
  static int counter = 0;
  std::string dir = "/tmp/polaris_tok_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  std::string cmd = "mkdir -p " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::string path = dir + "/" + name;
  std::ofstream(path) << content;
  return path;
}

// A tiny byte-level BPE tokenizer: the 256 byte tokens (ids 0..255, in byte
// order), merges given as "a b" strings, then the pre_tokenizer/normalizer/
// added tokens under test.
json tiny_tokenizer(const json& pre_tokenizer, const std::vector<std::pair<std::string, std::string>>& merges,
                    const json& added = json::array(), const json& normalizer = nullptr) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[Tokenizer::bytes_to_byte_level(std::string(1, static_cast<char>(b)))] = b;
  json merge_list = json::array();
  int next_id = 256;
  for (const auto& m : merges) {
    std::string l = Tokenizer::bytes_to_byte_level(m.first), r = Tokenizer::bytes_to_byte_level(m.second);
    if (!vocab.contains(l + r)) vocab[l + r] = next_id++;
    merge_list.push_back(l + " " + r);
  }
  return json{{"version", "1.0"},
              {"normalizer", normalizer},
              {"pre_tokenizer", pre_tokenizer},
              {"added_tokens", added},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

json byte_level(bool add_prefix_space, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"use_regex", use_regex}};
}

json split(const json& pattern, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

json sequence(const json& a, const json& b) { return {{"type", "Sequence"}, {"pretokenizers", {a, b}}}; }

Tokenizer load_json(const json& j) { return Tokenizer::load(write_temp(j.dump())); }

std::vector<std::string> strings(std::initializer_list<const char*> list) {
  return std::vector<std::string>(list.begin(), list.end());
}

}  // namespace

// --- reference cases (Hugging Face tokenizers output) ----------------------

TEST(TokenizerReference, Qwen3Cases) { check_reference_cases(qwen3(), kQwen3Dir); }
TEST(TokenizerReference, DeepSeekV3Cases) { check_reference_cases(deepseek(), kDeepSeekDir); }

TEST(TokenizerReference, Qwen3GeneratedTexts) { check_generated_cases(qwen3(), kQwen3Dir); }
TEST(TokenizerReference, DeepSeekV3GeneratedTexts) { check_generated_cases(deepseek(), kDeepSeekDir); }

TEST(TokenizerReference, VocabAndAddedTokens) {
  const Tokenizer& q = qwen3();
  EXPECT_EQ(q.vocab_size(), 151669);
  EXPECT_EQ(q.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(q.token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(q.token_to_id("no such token"), -1);
  EXPECT_EQ(q.id_to_token(151645), "<|im_end|>");
  EXPECT_EQ(q.id_to_token(9707), "Hello");
  EXPECT_EQ(q.id_to_token(-1), "");
  EXPECT_TRUE(q.is_special_token(151644));
  EXPECT_TRUE(q.is_added_token(151667));    // <think>: added, not special
  EXPECT_FALSE(q.is_special_token(151667));
  EXPECT_EQ(q.end_of_text_token(), "<|endoftext|>");
  EXPECT_EQ(q.encode("<|im_start|><|im_end|>"), (std::vector<int32_t>{151644, 151645}));
  // An unfinished added token is plain text.
  EXPECT_EQ(q.decode(q.encode("<|im_start")), "<|im_start");

  const Tokenizer& d = deepseek();
  EXPECT_EQ(d.vocab_size(), 128815);
  // No <|endoftext|>: the eos of tokenizer_config.json beside it.
  EXPECT_EQ(d.end_of_text_token(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(d.encode("<｜User｜>hi<｜Assistant｜>").front(), d.token_to_id("<｜User｜>"));
}

// \s in the patterns is Unicode White_Space, as in HF's Oniguruma: U+180E was
// whitespace only before Unicode 6.3, yet PCRE2's own \s still takes it. The ids
// are Hugging Face tokenizers' output for "a X b" with each character X whose
// whitespace status differs between Unicode versions or regex engines.
TEST(TokenizerReference, WhiteSpaceMatchesHuggingFace) {
  const std::vector<std::pair<int32_t, std::vector<int32_t>>> deepseek_cases = {
      {0x180E, {67, 223, 115522, 239, 291}}, {0x200B, {67, 223, 35020, 291}},
      {0xFEFF, {67, 223, 15251, 291}},       {0x85, {67, 1203, 230, 291}},
      {0x2028, {67, 663, 104, 291}},         {0x2029, {67, 663, 105, 291}},
      {0x1680, {67, 8751, 251, 225, 291}},   {0x1F, {67, 223, 222, 291}}};
  for (const auto& c : deepseek_cases)
    EXPECT_EQ(deepseek().encode("a " + utf8(c.first) + " b"), c.second) << std::hex << "U+" << c.first;
  const std::vector<std::pair<int32_t, std::vector<int32_t>>> qwen3_cases = {
      {0x180E, {64, 86089, 254, 236, 293}}, {0x200B, {64, 29748, 293}}, {0xFEFF, {64, 75780, 293}},
      {0x85, {64, 2139, 227, 293}},         {0x2028, {64, 636, 101, 293}},
      {0x1680, {64, 86089, 248, 222, 293}}, {0x1F, {64, 220, 219, 293}}};
  for (const auto& c : qwen3_cases)
    EXPECT_EQ(qwen3().encode("a " + utf8(c.first) + " b"), c.second) << std::hex << "U+" << c.first;
}

TEST(TokenizerReference, EncodeBatchMatchesEncode) {
  std::mt19937 rng(7);
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) texts.push_back(random_unicode(rng, 1 + static_cast<int>(rng() % 200)));
  texts.push_back("");
  for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
    auto batch = t->encode_batch(texts, 0);
    auto two = t->encode_batch(texts, 2);
    ASSERT_EQ(batch.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(batch[i], t->encode(texts[i]));
      EXPECT_EQ(two[i], batch[i]);
    }
  }
}

// --- invalid UTF-8 ---------------------------------------------------------

TEST(TokenizerUtf8, SanitizeMatchesPythonReplace) {
  const std::string R = "\xEF\xBF\xBD";  // U+FFFD
  // Expected values: Python's bytes.decode("utf-8", errors="replace").
  EXPECT_EQ(Tokenizer::sanitize_utf8("abc"), "abc");
  EXPECT_EQ(Tokenizer::sanitize_utf8("a\xFF" "b"), "a" + R + "b");
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xE2\x82"), R);                     // truncated: one
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xED\xA0\x80"), R + R + R);         // surrogate
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xC0\xAF"), R + R);                 // overlong
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xE0\x80\xAF"), R + R + R);         // overlong
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xF4\x90\x80\x80"), R + R + R + R); // > U+10FFFF
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xF0\x9F\x98" "a"), R + "a");
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xF0\x9F\x98\x80\x80"), "\xF0\x9F\x98\x80" + R);
  EXPECT_EQ(Tokenizer::sanitize_utf8("\xC3"), R);
}

TEST(TokenizerUtf8, InvalidInputEncodesAsReplacementCharacter) {
  const std::string R = "\xEF\xBF\xBD";
  for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
    EXPECT_EQ(t->encode("caf\xE9 ok"), t->encode("caf" + R + " ok"));
    EXPECT_EQ(t->encode("x\xED\xA0\x80y"), t->encode("x" + R + R + R + "y"));
    EXPECT_EQ(t->decode(t->encode("\xFF\xFE")), R + R);
  }
}

TEST(TokenizerUtf8, DecodeOfPartialCharacterGivesReplacement) {
  const std::string R = "\xEF\xBF\xBD";
  const Tokenizer& q = qwen3();
  // "€" is E2 82 AC: its first two byte tokens alone are one invalid sequence.
  int32_t e2 = q.token_to_id(Tokenizer::bytes_to_byte_level("\xE2"));
  int32_t x82 = q.token_to_id(Tokenizer::bytes_to_byte_level("\x82"));
  int32_t xac = q.token_to_id(Tokenizer::bytes_to_byte_level("\xAC"));
  ASSERT_GE(e2, 0);
  EXPECT_EQ(q.decode({e2, x82}), R);
  EXPECT_EQ(q.decode({e2, x82, xac}), "\xE2\x82\xAC");
  EXPECT_EQ(q.decode({x82, q.token_to_id("a")}), R + "a");
}

TEST(TokenizerUtf8, DecodeRejectsIdsOutsideVocab) {
  const Tokenizer& q = qwen3();
  EXPECT_NE(error_of([&] { q.decode({1, q.vocab_size()}); }).find("151669"), std::string::npos);
  EXPECT_NE(error_of([&] { q.decode({-5}); }).find("-5"), std::string::npos);
}

// --- invariants on generated text ------------------------------------------

TEST(TokenizerProperties, RandomUnicodeRoundTripsAndIdsAreInVocab) {
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    std::string text = random_unicode(rng, 1 + static_cast<int>(rng() % 80));
    // Qwen3 NFC-normalizes; DeepSeek-V3 has no normalizer.
    for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
      std::vector<int32_t> ids = t->encode(text);
      for (int32_t id : ids) {
        ASSERT_GE(id, 0);
        ASSERT_LT(id, t->vocab_size());
        ASSERT_FALSE(t->id_to_token(id).empty());
      }
      std::string expected = t == &qwen3() ? nfc(text) : text;
      ASSERT_EQ(t->decode(ids), expected) << "seed case " << i;
    }
  }
}

TEST(TokenizerProperties, EncodingIsConcatenationOfPreTokenEncodings) {
  std::mt19937 rng(3);
  std::vector<std::string> texts = {
      "def f(x):\n\treturn   x  \n\n\n  # done\r\n",
      "  \t \n \u00A0 \u3000 mixed   whitespace\t\t\nend  ",
      "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // 2x2",
      "Numbers 1234567 and 3.14159, emoji 👩‍💻 and 한국어 텍스트."};
  for (int i = 0; i < 100; ++i) texts.push_back(nfc(random_unicode(rng, 1 + static_cast<int>(rng() % 60))));
  for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
    for (const std::string& text : texts) {
      std::vector<int32_t> concatenated;
      for (const std::string& word : t->pre_tokenize(text)) {
        std::vector<int32_t> ids = t->bpe_word(word);
        concatenated.insert(concatenated.end(), ids.begin(), ids.end());
      }
      ASSERT_EQ(t->encode(text), concatenated) << text;
      ASSERT_EQ(t->decode(concatenated), text);
    }
  }
}

TEST(TokenizerProperties, FastBpeEqualsNaiveLowestRankBpe) {
  std::mt19937 rng(11);
  const std::string letters = "etaoinshrdlu";
  for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
    for (int i = 0; i < 400; ++i) {
      std::string word;
      int length = 1 + static_cast<int>(rng() % 24);
      int kind = static_cast<int>(rng() % 4);
      if (kind == 0 && (rng() & 1)) word = " ";
      for (int k = 0; k < length; ++k) {
        if (kind == 0) word += letters[rng() % letters.size()];           // English-like
        else if (kind == 1) word += static_cast<char>(rng() % 256);       // raw bytes
        else if (kind == 2) word += random_unicode(rng, 1);               // Unicode
        else word += std::string(1 + rng() % 3, "ab \n0"[rng() % 5]);    // runs
      }
      ASSERT_EQ(t->bpe_word(word), naive_bpe(*t, word)) << "word " << i;
    }
  }
}

TEST(TokenizerProperties, LongRunsAreLinear) {
  // 100k-character runs: a quadratic merge loop or regex scan would take minutes;
  // the bound below is a generous guard against that, not a performance claim.
  std::vector<std::string> runs = {std::string(100000, 'a'), std::string(100000, ' '),
                                   std::string(100000, '\n'), std::string(100000, '7'),
                                   std::string(50000, '.') + std::string(50000, ' ') + "x"};
  std::string korean;
  for (int i = 0; i < 30000; ++i) korean += "한";
  runs.push_back(korean);
  auto start = std::chrono::steady_clock::now();
  for (const Tokenizer* t : {&qwen3(), &deepseek()}) {
    for (const std::string& run : runs) {
      std::vector<int32_t> ids = t->encode(run);
      EXPECT_LE(ids.size(), run.size());
      ASSERT_EQ(t->decode(ids), run);
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0);
}

// --- every option, on small synthetic tokenizer.json files ------------------

TEST(TokenizerSynthetic, SplitBehaviors) {
  auto pieces = [](const std::string& behavior, bool invert = false) {
    Tokenizer t = load_json(tiny_tokenizer(
        sequence(split({{"String", "-"}}, behavior, invert), byte_level(false, false)), {}));
    return t.pre_tokenize("the-final--countdown");
  };
  // The examples of the Hugging Face documentation for SplitDelimiterBehavior.
  EXPECT_EQ(pieces("Removed"), strings({"the", "final", "countdown"}));
  EXPECT_EQ(pieces("Isolated"), strings({"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithPrevious"), strings({"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithNext"), strings({"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces("Contiguous"), strings({"the", "-", "final", "--", "countdown"}));
  // invert: the words are the matches, so Removed drops the words.
  EXPECT_EQ(pieces("Removed", true), strings({"-", "-", "-"}));

  Tokenizer regex = load_json(tiny_tokenizer(
      sequence(split({{"Regex", "\\p{N}{1,3}"}}, "Isolated"), byte_level(false, false)), {}));
  EXPECT_EQ(regex.pre_tokenize("a1234567b"), strings({"a", "123", "456", "7", "b"}));
  // A pattern that can match the empty string does not loop forever; the pieces
  // are those HF (onig) gives.
  Tokenizer empty = load_json(tiny_tokenizer(
      sequence(split({{"Regex", "x*"}}, "Isolated"), byte_level(false, false)), {}));
  EXPECT_EQ(empty.pre_tokenize("abxxc"), strings({"a", "b", "xx", "c"}));
}

TEST(TokenizerSynthetic, ByteLevelGpt2RegexAndPrefixSpace) {
  Tokenizer gpt2 = load_json(tiny_tokenizer(byte_level(true, true), {{" ", "w"}, {" w", "o"}}));
  EXPECT_EQ(gpt2.pre_tokenize("Hello world's  42!!\n"),
            strings({" Hello", " world", "'s", " ", " 42", "!!", "\n"}));
  Tokenizer plain = load_json(tiny_tokenizer(byte_level(false, true), {}));
  EXPECT_EQ(plain.pre_tokenize("Hello world"), strings({"Hello", " world"}));
  // The merges apply by rank: " w" then " wo".
  std::vector<int32_t> ids = gpt2.encode("wo");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(gpt2.id_to_token(ids[0]), "Ġwo");
  EXPECT_EQ(gpt2.decode(ids), " wo");  // the decoder keeps the added prefix space, as HF does
}

TEST(TokenizerSynthetic, MergesAsPairsAndIgnoreMerges) {
  json j = tiny_tokenizer(byte_level(false, false), {{"a", "b"}, {"ab", "c"}});
  json pairs = json::array();
  for (const json& m : j["model"]["merges"]) {
    std::string s = m;
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  Tokenizer t = load_json(j);
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{t.token_to_id("abc")}));
  EXPECT_EQ(t.merge_rank("ab", "c"), 1);

  // ignore_merges: a word that is itself in the vocab is one token even when the
  // merges could not build it.
  json k = tiny_tokenizer(byte_level(false, false), {});
  k["model"]["vocab"]["xyz"] = 256;
  k["model"]["ignore_merges"] = true;
  Tokenizer ignore = load_json(k);
  EXPECT_EQ(ignore.encode("xyz"), (std::vector<int32_t>{256}));
  EXPECT_EQ(ignore.encode("xy").size(), 2u);
}

TEST(TokenizerSynthetic, AddedTokenOptions) {
  json added = json::array({
      {{"id", 300}, {"content", "<mask>"}, {"special", true}, {"lstrip", true}, {"rstrip", false},
       {"single_word", false}, {"normalized", false}},
      {{"id", 301}, {"content", "<sep>"}, {"special", true}, {"lstrip", false}, {"rstrip", true},
       {"single_word", false}, {"normalized", false}},
      {{"id", 302}, {"content", "ab"}, {"special", false}, {"lstrip", false}, {"rstrip", false},
       {"single_word", true}, {"normalized", true}},
      {{"id", 303}, {"content", "<mask>long"}, {"special", true}, {"lstrip", false}, {"rstrip", false},
       {"single_word", false}, {"normalized", false}},
  });
  Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, added));
  auto cat = [](std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  EXPECT_EQ(t.vocab_size(), 304);
  // lstrip swallows the spaces before, not after.
  EXPECT_EQ(t.encode("hi  <mask> x"), cat(cat(t.encode("hi"), {300}), t.encode(" x")));
  // rstrip swallows the spaces after.
  EXPECT_EQ(t.encode("hi <sep>  x"), cat(cat(t.encode("hi "), {301}), t.encode("x")));
  // Longest match wins.
  EXPECT_EQ(t.encode("<mask>long"), (std::vector<int32_t>{303}));
  // single_word: only when not touching a word character.
  EXPECT_EQ(t.encode("ab cd"), cat({302}, t.encode(" cd")));
  EXPECT_EQ(t.encode("xab").size(), 3u);
  EXPECT_EQ(t.encode("ab2").size(), 3u);
  EXPECT_EQ(t.decode({300, 302}), "<mask>ab");
  EXPECT_TRUE(t.is_special_token(300));
  EXPECT_FALSE(t.is_special_token(302));
  EXPECT_TRUE(t.is_added_token(302));
}

TEST(TokenizerSynthetic, NormalizerSequence) {
  json nfc_sequence = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, json::array(), nfc_sequence));
  EXPECT_EQ(t.encode("e\xCC\x81"), t.encode("\xC3\xA9"));  // e + combining acute == é
  Tokenizer none = load_json(tiny_tokenizer(byte_level(false, false), {}));
  EXPECT_NE(none.encode("e\xCC\x81"), none.encode("\xC3\xA9"));
}

TEST(TokenizerSynthetic, SingleWordUsesRustRegexWordCharacters) {
  // HF tests single_word's neighbours with Rust regex's \w: Alphabetic (with
  // Other_Alphabetic such as the circled letters), marks, decimal digits,
  // connector punctuation and Join_Control. The classes below are what HF
  // `tokenizers` gave for "<c>XqqY" and "XqqY<c>".
  json added = json::array({{{"id", 300}, {"content", "XqqY"}, {"special", false}, {"lstrip", false},
                             {"rstrip", false}, {"single_word", true}, {"normalized", false}}});
  Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, added));
  auto matches_beside = [&](int32_t cp) {
    auto has_token = [](const std::vector<int32_t>& ids) { return std::count(ids.begin(), ids.end(), 300) == 1; };
    bool before = has_token(t.encode(utf8(cp) + "XqqY")), after = has_token(t.encode("XqqY" + utf8(cp)));
    EXPECT_EQ(before, after) << std::hex << "U+" << cp;
    return before;
  };
  const int32_t word_characters[] = {'a', '1', '_', 0x203F, 0x200C, 0x200D, 0x24B6, 0x24E9, 0x1F130, 0x0301,
                                     0x0903, 0x20DD, 0x0345, 0x0660, 0x216B, 0x3007, 0x02B0, 0x0F73, 0xE9};
  const int32_t other_characters[] = {' ', '-', '.', 0xA0, 0xB2, 0xB7, 0xBD, 0x2070, 0x2460};
  for (int32_t cp : word_characters) EXPECT_FALSE(matches_beside(cp)) << std::hex << "U+" << cp << " is \\w";
  for (int32_t cp : other_characters) EXPECT_TRUE(matches_beside(cp)) << std::hex << "U+" << cp << " is not \\w";
}

TEST(TokenizerSynthetic, RstripDoesNotHideTheNextMatch) {
  // HF finds the added tokens in the text first and strips afterwards, so the
  // second " qq" counts although its space went to the first one's rstrip.
  json added = json::array({{{"id", 300}, {"content", " qq"}, {"special", false}, {"lstrip", false},
                             {"rstrip", true}, {"single_word", false}, {"normalized", false}}});
  Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, added));
  EXPECT_EQ(t.encode(" qq qq"), (std::vector<int32_t>{300, 300}));
  EXPECT_EQ(t.encode(" qq  qq x"), (std::vector<int32_t>{300, 300, 'x'}));
  EXPECT_EQ(t.encode(" qq qqq"), (std::vector<int32_t>{300, 300, 'q'}));
}

TEST(TokenizerSynthetic, AddedTokenStripFlags) {
  json added = json::array({{{"id", 300}, {"content", "<l>"}, {"special", true}, {"lstrip", true}, {"rstrip", false},
                             {"single_word", false}, {"normalized", false}},
                            {{"id", 301}, {"content", "<r>"}, {"special", true}, {"lstrip", false}, {"rstrip", true},
                             {"single_word", false}, {"normalized", false}}});
  Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, added));
  EXPECT_TRUE(t.is_lstrip_token(300));
  EXPECT_FALSE(t.is_lstrip_token(301));
  EXPECT_FALSE(t.is_lstrip_token('a'));
  EXPECT_FALSE(t.is_lstrip_token(-1));
  EXPECT_FALSE(deepseek().is_lstrip_token(deepseek().token_to_id("<｜end▁of▁sentence｜>")));
}

TEST(TokenizerSynthetic, NormalFormsMatchUtf8proc) {
  // Canonical reordering is done here, not by utf8proc; on runs of marks in every
  // order, and characters that decompose into several (U+01D6, U+0344, U+0F73,
  // Hangul, compatibility forms), each form must equal utf8proc_map's.
  const int32_t pieces[] = {'e', 'a', 'u', ' ', '\n', 0x0301, 0x0323, 0x0308, 0x0304, 0x0327, 0x031B, 0x0345,
                            0x05B0, 0x05B4, 0x0F71, 0x0F72, 0x0F73, 0x0F75, 0x0F80, 0x1DCE, 0x20DD, 0x0334,
                            0x035C, 0x093C, 0x094D, 0x3099, 0x01D6, 0x1E69, 0x0344, 0x1100, 0x1161, 0x11A8,
                            0xAC00, 0xFDFA, 0xFB01, 0x2460, 0x212B, 0x0958};
  const std::pair<const char*, int> forms[] = {{"NFC", UTF8PROC_COMPOSE},
                                               {"NFD", UTF8PROC_DECOMPOSE},
                                               {"NFKC", UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
                                               {"NFKD", UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT}};
  std::mt19937 rng(5);
  for (const auto& [name, options] : forms) {
    // No merges: the ids are the normalized text's bytes.
    Tokenizer t = load_json(tiny_tokenizer(byte_level(false, false), {}, json::array(), {{"type", name}}));
    for (int i = 0; i < 400; ++i) {
      std::string text;
      for (int k = 1 + static_cast<int>(rng() % 40); k > 0; --k) text += utf8(pieces[rng() % std::size(pieces)]);
      ASSERT_EQ(t.decode(t.encode(text)), utf8proc_normal_form(text, options)) << name << ": " << text;
    }
  }
}

TEST(TokenizerProperties, LongRunsOfCombiningMarksAreNotQuadratic) {
  // utf8proc's own canonical reordering took 4.5 s on this (HF: 0.05 s); the
  // bound is a generous guard, not a performance claim.
  std::string text = "e", expected = "\u1EB9";  // e + U+0323 composes to U+1EB9
  for (int i = 0; i < 20000; ++i) text += "\u0301\u0323";
  for (int i = 0; i < 19999; ++i) expected += "\u0323";
  for (int i = 0; i < 20000; ++i) expected += "\u0301";  // class 230 after class 220
  auto start = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = qwen3().encode(text);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(qwen3().decode(ids), expected);
  EXPECT_LT(seconds, 1.0);
}

// --- bad input --------------------------------------------------------------

TEST(TokenizerErrors, MissingFile) {
  std::string message = error_of([] { Tokenizer::load("/nonexistent/tokenizer.json"); });
  EXPECT_NE(message.find("/nonexistent/tokenizer.json"), std::string::npos) << message;
}

TEST(TokenizerErrors, MalformedJson) {
  std::string path = write_temp("{\"model\": {\"type\": \"BPE\", ");
  std::string message = error_of([&] { Tokenizer::load(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line";
}

TEST(TokenizerErrors, DirectoryIsNotATokenizerFile) {
  std::string dir = write_temp("{}");
  dir = dir.substr(0, dir.rfind('/'));
  std::string message = error_of([&] { Tokenizer::load(dir); });
  EXPECT_EQ(message, dir + ": is a directory (expected a tokenizer.json file)");
}

TEST(TokenizerErrors, UnsupportedParts) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expected;
  };
  std::vector<Case> cases = {
      {[](json& j) { j["model"]["type"] = "WordPiece"; }, "model type 'WordPiece' is not supported"},
      {[](json& j) { j["model"]["type"] = "Unigram"; }, "model type 'Unigram' is not supported"},
      {[](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; },
       "pre_tokenizer type 'Metaspace' is not supported"},
      {[](json& j) { j["pre_tokenizer"] = sequence(byte_level(false, false), {{"type", "Whitespace"}}); },
       "pre_tokenizer type 'Whitespace' is not supported"},
      {[](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "normalizer type 'Lowercase' is not supported"},
      {[](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder type 'WordPiece' is not supported"},
      {[](json& j) { j["pre_tokenizer"] = split({{"Regex", "a"}}, "Isolated"); }, "no ByteLevel"},
      {[](json& j) { j["pre_tokenizer"] = split({{"Regex", "(unclosed"}}, "Isolated"); }, "regex does not compile"},
      {[](json& j) { j["pre_tokenizer"] = split({{"String", "-"}}, "Sideways"); }, "behavior 'Sideways'"},
      {[](json& j) { j["model"]["merges"] = {"a zz"}; }, "not in vocab"},
      {[](json& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback"},
      {[](json& j) { j["model"]["vocab"] = json::array(); }, "vocab"},
      {[](json& j) { j["model"].erase("type"); }, "model has no type"},
      {[](json& j) { j["model"]["vocab"]["zz"] = 5; }, "model vocab id 5 belongs to both"},
      {[](json& j) { j["truncation"] = {{"max_length", 512}}; }, "truncation is not supported (set it to null)"},
      {[](json& j) { j["padding"] = {{"pad_id", 0}}; }, "padding is not supported (set it to null)"},
      {[](json& j) { j["added_tokens"] = {{{"id", 300}, {"content", ""}, {"special", true}}}; },
       "added token 300 has empty content"},
  };
  for (const Case& c : cases) {
    json j = tiny_tokenizer(byte_level(false, false), {});
    c.edit(j);
    std::string path = write_temp(j.dump());
    std::string message = error_of([&] { Tokenizer::load(path); });
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << "names the file: " << message;
    EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(TokenizerErrors, DefaultConstructedTokenizerThrows) {
  Tokenizer empty;
  EXPECT_NE(error_of([&] { empty.encode("x"); }).find("before Tokenizer::load"), std::string::npos);
}
