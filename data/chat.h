// Chat format: conversations -> token ids + the mask of tokens SFT learns.
//
// Qwen3 uses ChatML. Each message renders as
//
//   <|im_start|>{role}\n{content}<|im_end|>\n
//
// and the assistant's reasoning lives in a <think> block, handled exactly as
// Qwen3's Jinja chat template does (tokenizer_config.json):
//   - reasoning comes from ChatMessage::reasoning, or else is split out of the
//     content ("<think>r</think>c": reasoning r, content c);
//   - assistant turns after the last user message keep it, rendered as
//     "<think>\n{reasoning}\n</think>\n\n{content}" -- the final assistant turn
//     always gets the block, even an empty one ("<think>\n\n</think>\n\n");
//   - assistant turns before the last user message lose their reasoning: only
//     the content is rendered (the model does not see old thoughts).
// The generation prompt "<|im_start|>assistant\n" starts a sampled reply; with
// thinking disabled it also closes an empty think block so the model answers
// directly. Tool calls and tool messages are not supported (Error).
//
// The mask is 1 on what SFT trains: each assistant message's rendered body
// (think block + content) and its closing <|im_end|>, because the model must
// learn to stop. It is 0 on system/user messages, on the "<|im_start|>assistant\n"
// header (given at sampling time) and on the "\n" after <|im_end|> (never
// generated: sampling stops at <|im_end|>).
//
// The ids are those of encoding the whole rendered text once, as Hugging Face
// does (template, then tokenizer). Encoding pieces separately would differ where
// a piece boundary falls inside a pre-token: the header's "\n" and a body that
// starts with "\n" are one "\n\n" token. So the mask comes from byte ranges: a
// token is trained when all its bytes lie in a trained span (a body plus its
// <|im_end|>). The one token that can straddle a span boundary is the header's
// "\n" merged with whitespace that starts a body ("\n", "\r\n", " \n", ...); it
// is not trained (the header is given at sampling time).
// tests/test_chat.cpp checks ids == encode(render_chat_text(...)) and the mask
// against the spans for many random conversations.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace polaris {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
  // Assistant reasoning given separately (like HF's reasoning_content); when
  // absent it is split out of a "<think>...</think>" in the content.
  std::optional<std::string> reasoning;
};

struct ChatOptions {
  bool add_generation_prompt = false;  // end with "<|im_start|>assistant\n"
  bool enable_thinking = true;         // false: generation prompt pre-closes an empty think block
};

struct RenderedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> assistant_mask;  // same length as ids; 1 = train on this token
};

// The rendered text, byte-identical to Qwen3's chat template with the same
// messages, add_generation_prompt and enable_thinking. Throws Error on an
// unknown role or an empty conversation.
std::string render_chat_text(const std::vector<ChatMessage>& messages, const ChatOptions& options = {});

// Token ids (== tokenizer.encode(render_chat_text(messages, options))) and mask.
// Requires the tokenizer to know <|im_start|> and <|im_end|>.
RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         const ChatOptions& options = {});

// The prompt for sampling a reply (GRPO rollouts, evaluation): the messages
// plus the generation prompt, encoded whole (render_chat's ids with
// add_generation_prompt set).
std::vector<int32_t> render_generation_prompt(const Tokenizer& tokenizer,
                                              const std::vector<ChatMessage>& messages,
                                              bool enable_thinking = true);

}  // namespace polaris
