// Chat format tests against Qwen3's real chat template and tokenizer.
//
// The expected strings were produced by rendering tokenizer_config.json's
// Jinja template (trim_blocks, lstrip_blocks, as transformers does) with the
// same messages; the ids use tests/fixtures/qwen3_tokenizer/tokenizer.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <random>
#include <string>
#include <vector>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "src/common/error.h"

using polaris::ChatMessage;
using polaris::ChatOptions;

namespace {

const polaris::Tokenizer& qwen3() {
  static const polaris::Tokenizer tokenizer =
      polaris::Tokenizer::load("tests/fixtures/qwen3_tokenizer/tokenizer.json");
  return tokenizer;
}

ChatMessage msg(const std::string& role, const std::string& content) { return {role, content, std::nullopt}; }

// A token's bytes in the encoded text: an added token's content, else its
// byte-level string mapped back through the GPT-2 alphabet.
std::string token_bytes(const polaris::Tokenizer& tok, int32_t id) {
  static const std::vector<std::pair<std::string, char>> alphabet = [] {
    std::vector<std::pair<std::string, char>> a;
    for (int b = 0; b < 256; b++)
      a.push_back({polaris::Tokenizer::bytes_to_byte_level(std::string(1, static_cast<char>(b))),
                   static_cast<char>(b)});
    return a;
  }();
  std::string token = tok.id_to_token(id);
  if (tok.is_added_token(id)) return token;
  std::string out;
  for (size_t i = 0; i < token.size();) {
    bool found = false;
    for (const auto& [ch, byte] : alphabet) {
      if (token.compare(i, ch.size(), ch) == 0) {
        out += byte;
        i += ch.size();
        found = true;
        break;
      }
    }
    if (!found) ADD_FAILURE() << "token " << id << " has a character outside the byte-level alphabet";
    if (!found) return out;
  }
  return out;
}

// Byte spans [begin, end) SFT trains in a rendered text: from after each
// "<|im_start|>assistant\n" through the next "<|im_end|>" (contents here never
// contain <|im_start|> or <|im_end|>).
std::vector<std::pair<size_t, size_t>> assistant_spans(const std::string& text) {
  const std::string header = "<|im_start|>assistant\n", im_end = "<|im_end|>";
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t at = text.find(header); at != std::string::npos; at = text.find(header, at + 1)) {
    size_t begin = at + header.size(), end = text.find(im_end, begin);
    if (end != std::string::npos) spans.push_back({begin, end + im_end.size()});
  }
  return spans;
}

// Checks render_chat against encoding the whole rendered text and against the
// assistant spans of that text: a token is trained iff all its bytes lie in a
// span; the only span bytes left untrained are whitespace at a span's start that
// the tokenizer merged with the header's "\n" into one (untrained) token.
// Adds the number of such straddling tokens to *straddles.
void check_against_whole_text(const polaris::Tokenizer& tok, const std::vector<ChatMessage>& messages,
                              const ChatOptions& options, const std::string& label, int* straddles) {
  const std::string text = polaris::render_chat_text(messages, options);
  const polaris::RenderedChat rendered = polaris::render_chat(tok, messages, options);
  const std::vector<int32_t> whole = tok.encode(text);
  ASSERT_EQ(rendered.ids, whole) << label;
  ASSERT_EQ(rendered.assistant_mask.size(), rendered.ids.size()) << label;
  if (options.add_generation_prompt) {
    EXPECT_EQ(polaris::render_generation_prompt(tok, messages, options.enable_thinking), whole) << label;
  }

  std::vector<size_t> begins, ends;
  std::string seen;
  for (int32_t id : whole) {
    begins.push_back(seen.size());
    seen += token_bytes(tok, id);
    ends.push_back(seen.size());
  }
  ASSERT_EQ(seen, text) << label;  // contents here are NFC and valid UTF-8
  const auto spans = assistant_spans(text);
  int assistants = 0;
  for (const auto& m : messages) assistants += m.role == "assistant";
  ASSERT_EQ(static_cast<int>(spans.size()), assistants) << label;

  for (size_t i = 0; i < whole.size(); i++) {
    bool inside = false;
    for (const auto& [b, e] : spans) inside |= b <= begins[i] && ends[i] <= e;
    ASSERT_EQ(rendered.assistant_mask[i], inside ? 1 : 0) << label << ": token " << i;
  }
  const int32_t im_end = tok.token_to_id("<|im_end|>");
  for (const auto& [b, e] : spans) {
    std::string trained;
    size_t straddle_end = b;
    for (size_t i = 0; i < whole.size(); i++) {
      if (rendered.assistant_mask[i] && begins[i] >= b && ends[i] <= e) trained += token_bytes(tok, whole[i]);
      if (begins[i] < b && ends[i] > b) {
        ++*straddles;
        straddle_end = ends[i];  // the header's "\n" merged with the body's leading whitespace
        EXPECT_EQ(text.substr(begins[i], b - begins[i]), "\n") << label;
        EXPECT_EQ(text.substr(b, ends[i] - b).find_first_not_of(" \t\r\n"), std::string::npos) << label;
      }
      if (ends[i] == e) {
        EXPECT_EQ(whole[i], im_end) << label;
      }
    }
    EXPECT_EQ(trained, text.substr(straddle_end, e - straddle_end)) << label;
  }
}

// Random message text from fragments that stress pre-token boundaries.
std::string random_content(std::mt19937& rng) {
  static const std::vector<std::string> fragments = {
      "", "\n", "\n\n", "\n\n\n", " ", "  ", "\t", "\r\n", " \n", "\n ", "Hello", " world", "x",
      "2+3=5", "123", "'s", "!!", "?", "```python\nprint(1)\n```", "日本語", " ¿qué?", "é", "🙂", "\\frac{1}{3}",
      "<think>", "</think>", "<think>\nr\n</think>\n\n", "<think>r</think>", "<tool_call>", "...", " - ", ":\n"};
  std::uniform_int_distribution<int> count(0, 6), pick(0, static_cast<int>(fragments.size()) - 1);
  std::string out;
  for (int n = count(rng); n > 0; n--) out += fragments[pick(rng)];
  return out;
}

std::vector<ChatMessage> random_conversation(std::mt19937& rng) {
  std::vector<ChatMessage> messages;
  std::uniform_int_distribution<int> coin(0, 1), turns(1, 6), die(0, 5);
  if (coin(rng)) messages.push_back(msg("system", random_content(rng)));
  for (int t = turns(rng); t > 0; t--) {
    int roll = die(rng);
    std::string role = roll <= 2 ? "assistant" : roll <= 4 ? "user" : "system";
    ChatMessage m = msg(role, random_content(rng));
    if (role == "assistant" && die(rng) == 0) m.reasoning = random_content(rng);
    messages.push_back(m);
  }
  return messages;
}

struct TemplateCase {
  const char* name;
  std::vector<ChatMessage> messages;
  bool add_generation_prompt;
  bool enable_thinking;
  std::string expected;
};

std::vector<TemplateCase> template_cases() {
  ChatMessage with_reasoning = msg("assistant", "A");
  with_reasoning.reasoning = "\nthink hard\n";
  return {
      {"single_turn",
       {msg("system", "You are helpful."), msg("user", "What is 2+3?"),
        msg("assistant", "<think>\nAdd them.\n</think>\n\nIt is 5.")},
       false, true,
       "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
       "<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\nIt is 5.<|im_end|>\n"},
      {"no_think_last", {msg("user", "Hi"), msg("assistant", "Hello!")}, false, true,
       "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n"},
      {"multi_turn",
       {msg("user", "Q1"), msg("assistant", "<think>r1</think>A1"), msg("user", "Q2"),
        msg("assistant", "<think>\n\nr2\n\n</think>\n\nA2")},
       false, true,
       "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
       "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n"},
      {"reasoning_field", {msg("user", "Q"), with_reasoning}, false, true,
       "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nthink hard\n</think>\n\nA<|im_end|>\n"},
      {"gen_prompt", {msg("user", "Solve x+1=2.")}, true, true,
       "<|im_start|>user\nSolve x+1=2.<|im_end|>\n<|im_start|>assistant\n"},
      {"gen_prompt_nothink", {msg("user", "Solve x+1=2.")}, true, false,
       "<|im_start|>user\nSolve x+1=2.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"},
      {"two_assistants_after_query",
       {msg("user", "Q"), msg("assistant", "<think>a</think>first"), msg("assistant", "second"),
        msg("assistant", "third")},
       false, true,
       "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\na\n</think>\n\nfirst<|im_end|>\n"
       "<|im_start|>assistant\nsecond<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nthird<|im_end|>\n"},
      {"later_system", {msg("user", "Q"), msg("system", "S2"), msg("assistant", "ok")}, false, true,
       "<|im_start|>user\nQ<|im_end|>\n<|im_start|>system\nS2<|im_end|>\n"
       "<|im_start|>assistant\n<think>\n\n</think>\n\nok<|im_end|>\n"},
  };
}

// The rendered ids the mask trains on, and the others, each in order.
struct MaskSplit {
  std::vector<int32_t> trained, untrained;
};
MaskSplit split_by_mask(const polaris::RenderedChat& rendered) {
  MaskSplit split;
  for (size_t i = 0; i < rendered.ids.size(); i++)
    (rendered.assistant_mask[i] ? split.trained : split.untrained).push_back(rendered.ids[i]);
  return split;
}

}  // namespace

TEST(ChatText, MatchesQwen3Template) {
  for (const auto& c : template_cases()) {
    ChatOptions options;
    options.add_generation_prompt = c.add_generation_prompt;
    options.enable_thinking = c.enable_thinking;
    EXPECT_EQ(polaris::render_chat_text(c.messages, options), c.expected) << c.name;
  }
}

TEST(ChatText, RejectsBadConversations) {
  EXPECT_THROW(polaris::render_chat_text({}), polaris::Error);
  try {
    polaris::render_chat_text({msg("user", "q"), msg("tool", "x")});
    FAIL() << "expected Error";
  } catch (const polaris::Error& e) {
    EXPECT_NE(std::string(e.what()).find("message 1 has unsupported role \"tool\""), std::string::npos) << e.what();
  }
}

TEST(ChatTokens, IdsEqualWholeEncoding) {
  const auto& tok = qwen3();
  for (const auto& c : template_cases()) {
    ChatOptions options;
    options.add_generation_prompt = c.add_generation_prompt;
    options.enable_thinking = c.enable_thinking;
    polaris::RenderedChat rendered = polaris::render_chat(tok, c.messages, options);
    EXPECT_EQ(rendered.ids, tok.encode(c.expected)) << c.name;
    EXPECT_EQ(rendered.ids.size(), rendered.assistant_mask.size());
  }
  // Typical longer texts: punctuation, digits, unicode, code, trailing spaces.
  std::vector<ChatMessage> conversation = {
      msg("system", "You are Qwen, a careful math tutor. Answer in LaTeX when useful."),
      msg("user", "Compute \\int_0^1 x^2 dx, and explain. Also: ¿qué tal? 日本語もOK."),
      msg("assistant", "<think>\nThe antiderivative is x^3/3.\nEvaluate at 1 and 0.\n</think>\n\n"
                       "The integral is $\\frac{1}{3}$, so the answer is \\boxed{\\frac{1}{3}}."),
      msg("user", "Now write it in Python:\n```python\nprint(1/3)\n```"),
      msg("assistant", "```python\nfrom fractions import Fraction\nprint(Fraction(1, 3))  # 1/3\n```")};
  polaris::RenderedChat rendered = polaris::render_chat(tok, conversation);
  EXPECT_EQ(rendered.ids, tok.encode(polaris::render_chat_text(conversation)));
}

TEST(ChatTokens, MaskCoversAssistantBodyAndImEnd) {
  const auto& tok = qwen3();
  const auto cases = template_cases();
  const auto& c = cases[0];  // system, user, assistant with thinking
  polaris::RenderedChat rendered = polaris::render_chat(tok, c.messages);
  const MaskSplit split = split_by_mask(rendered);
  EXPECT_EQ(tok.decode(split.trained), "<think>\nAdd them.\n</think>\n\nIt is 5.<|im_end|>");
  EXPECT_EQ(tok.decode(split.untrained),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
            "<|im_start|>assistant\n\n");
  // The trained tokens are one contiguous run ending at <|im_end|>, followed by "\n".
  const int im_end = tok.token_to_id("<|im_end|>");
  size_t last = rendered.ids.size() - 1;
  EXPECT_EQ(rendered.assistant_mask[last], 0);
  EXPECT_EQ(rendered.ids[last - 1], im_end);
  EXPECT_EQ(rendered.assistant_mask[last - 1], 1);
}

TEST(ChatTokens, MultiTurnMasksEveryAssistantTurn) {
  const auto& tok = qwen3();
  const auto cases = template_cases();
  const auto& c = cases[2];  // two assistant turns, first has its thinking dropped
  polaris::RenderedChat rendered = polaris::render_chat(tok, c.messages);
  std::vector<int32_t> trained;
  int runs = 0;
  for (size_t i = 0; i < rendered.ids.size(); i++) {
    if (rendered.assistant_mask[i]) trained.push_back(rendered.ids[i]);
    if (rendered.assistant_mask[i] && (i == 0 || !rendered.assistant_mask[i - 1])) runs++;
  }
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(tok.decode(trained), "A1<|im_end|><think>\nr2\n</think>\n\nA2<|im_end|>");
}

TEST(ChatTokens, GenerationPrompt) {
  const auto& tok = qwen3();
  std::vector<ChatMessage> messages = {msg("user", "Solve x+1=2.")};
  std::vector<int32_t> prompt = polaris::render_generation_prompt(tok, messages);
  EXPECT_EQ(tok.decode(prompt), template_cases()[4].expected);
  std::vector<int32_t> no_think = polaris::render_generation_prompt(tok, messages, false);
  EXPECT_EQ(tok.decode(no_think), template_cases()[5].expected);
  EXPECT_EQ(no_think.back(), tok.encode("\n\n").back());
  EXPECT_EQ(prompt.back(), tok.encode("assistant\n").back());
  // <think> and </think> are single added tokens.
  EXPECT_NE(std::find(no_think.begin(), no_think.end(), tok.token_to_id("<think>")), no_think.end());
  EXPECT_NE(std::find(no_think.begin(), no_think.end(), tok.token_to_id("</think>")), no_think.end());
}

// The defect that made render_chat encode the text whole: an earlier assistant
// turn whose content starts with "\n". The header's "\n" and that "\n" are one
// "\n\n" token in the whole text; encoding the pieces apart gave one id more.
TEST(ChatTokens, EarlierAssistantTurnStartingWithNewline) {
  const auto& tok = qwen3();
  std::vector<ChatMessage> messages = {msg("user", "Q1"), msg("assistant", "\nA1"), msg("user", "Q2"),
                                       msg("assistant", "A2")};
  const std::string text = polaris::render_chat_text(messages);
  EXPECT_EQ(text,
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n");
  polaris::RenderedChat rendered = polaris::render_chat(tok, messages);
  EXPECT_EQ(rendered.ids, tok.encode(text));
  // Encoding "...assistant\n" and "\nA1<|im_end|>" apart would not give these ids.
  size_t pieces = tok.encode("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n").size() +
                  tok.encode("\nA1<|im_end|>").size() +
                  tok.encode("\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n").size() +
                  tok.encode("<think>\n\n</think>\n\nA2<|im_end|>").size() + tok.encode("\n").size();
  EXPECT_EQ(pieces, rendered.ids.size() + 1);
  // The merged "\n\n" straddles header and body: not trained; the rest of the body is.
  const int32_t double_newline = tok.encode("\n\n").at(0);
  auto at = std::find(rendered.ids.begin(), rendered.ids.end(), double_newline);
  ASSERT_NE(at, rendered.ids.end());
  EXPECT_EQ(tok.decode({rendered.ids.begin(), at}), "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant");
  EXPECT_EQ(rendered.assistant_mask[at - rendered.ids.begin()], 0);
  EXPECT_EQ(tok.decode(split_by_mask(rendered).trained),
            "A1<|im_end|><think>\n\n</think>\n\nA2<|im_end|>");
  int straddles = 0;
  check_against_whole_text(tok, messages, {}, "leading newline", &straddles);
  EXPECT_EQ(straddles, 1);

  // Other leading whitespace. BPE inside the merged pre-token may or may not put
  // a token boundary back at the header's "\n" ("\n\r\n" -> "\n", "\r\n").
  const std::vector<std::pair<std::string, int>> contents = {
      {"\n\nA1", 1}, {" \nA1", 1}, {"\n", 1}, {"\n\n", 1}, {"\r\nA1", 0}, {"  \n\n  A1\n\n", 0}};
  for (const auto& [content, expected] : contents) {
    messages[1].content = content;
    int count = 0;
    check_against_whole_text(tok, messages, {}, "content \"" + content + "\"", &count);
    EXPECT_EQ(count, expected) << content;
  }
}

TEST(ChatTokens, RandomConversationsMatchWholeEncodingAndSpans) {
  const auto& tok = qwen3();
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> coin(0, 1);
  int straddles = 0;
  for (int n = 0; n < 400; n++) {
    std::vector<ChatMessage> messages = random_conversation(rng);
    ChatOptions options;
    options.add_generation_prompt = coin(rng);
    options.enable_thinking = coin(rng);
    check_against_whole_text(tok, messages, options, "conversation " + std::to_string(n), &straddles);
    if (HasFailure()) return;
  }
  EXPECT_GT(straddles, 20);  // the case that piecewise encoding got wrong is well covered
}

// Text the tokenizer changes (NFC normalization, invalid UTF-8 -> U+FFFD): the
// ids are still the whole encoding and the mask still covers the bodies.
TEST(ChatTokens, NormalizedAndInvalidUtf8Contents) {
  const auto& tok = qwen3();
  std::vector<ChatMessage> messages = {msg("user", "Cafe\xcc\x81 \xff?"), msg("assistant", "\nCafe\xcc\x81\xff"),
                                       msg("user", "e\xcc\x81"), msg("assistant", "<think>e\xcc\x81</think>\xc3")};
  const std::string text = polaris::render_chat_text(messages);
  polaris::RenderedChat rendered = polaris::render_chat(tok, messages);
  EXPECT_EQ(rendered.ids, tok.encode(text));
  const MaskSplit split = split_by_mask(rendered);
  EXPECT_EQ(tok.decode(split.trained), "Caf\xc3\xa9\xef\xbf\xbd<|im_end|><think>\n\xc3\xa9\n</think>\n\n\xef\xbf\xbd<|im_end|>");
  EXPECT_EQ(tok.decode(split.untrained),
            "<|im_start|>user\nCaf\xc3\xa9 \xef\xbf\xbd?<|im_end|>\n<|im_start|>assistant\n\n\n<|im_start|>user\n"
            "\xc3\xa9<|im_end|>\n<|im_start|>assistant\n\n");
}
