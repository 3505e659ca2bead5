// Chat format tests against Qwen3's real chat template and tokenizer.
//
// The expected strings were produced by rendering tokenizer_config.json's
// Jinja template (trim_blocks, lstrip_blocks, as transformers does) with the
// same messages; the ids use tests/fixtures/qwen3_tokenizer/tokenizer.json.
#include <gtest/gtest.h>

#include <algorithm>
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

TEST(ChatTokens, PiecewiseEqualsWholeEncoding) {
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
  std::vector<int32_t> trained, untrained;
  for (size_t i = 0; i < rendered.ids.size(); i++)
    (rendered.assistant_mask[i] ? trained : untrained).push_back(rendered.ids[i]);
  EXPECT_EQ(tok.decode(trained), "<think>\nAdd them.\n</think>\n\nIt is 5.<|im_end|>");
  EXPECT_EQ(tok.decode(untrained),
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
