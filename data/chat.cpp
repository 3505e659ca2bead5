// Chat format (see chat.h): Qwen3's ChatML template, rendered as a list of
// pieces, each with the mask value of all its tokens.
#include "data/chat.h"

#include "src/common/error.h"

namespace polaris {

namespace {

struct Piece {
  std::string text;
  uint8_t mask;
};

std::string strip_newlines_left(const std::string& s) {
  size_t begin = s.find_first_not_of('\n');
  return begin == std::string::npos ? "" : s.substr(begin);
}

std::string strip_newlines_right(const std::string& s) {
  size_t end = s.find_last_not_of('\n');
  return end == std::string::npos ? "" : s.substr(0, end + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The assistant body the template emits between "<|im_start|>assistant\n" and
// "<|im_end|>".
std::string assistant_body(const ChatMessage& message, bool after_last_query, bool is_last) {
  std::string content = message.content;
  std::string reasoning;
  if (message.reasoning) {
    reasoning = *message.reasoning;
  } else {
    size_t first_close = content.find("</think>");
    if (first_close != std::string::npos) {
      size_t last_close = content.rfind("</think>");
      // reasoning: before the first </think>, after the last <think> before it
      std::string before = strip_newlines_right(content.substr(0, first_close));
      size_t open = before.rfind("<think>");
      reasoning = strip_newlines_left(open == std::string::npos ? before : before.substr(open + 7));
      content = strip_newlines_left(content.substr(last_close + 8));
    }
  }
  if (after_last_query && (is_last || !reasoning.empty()))
    return "<think>\n" + strip_newlines_right(strip_newlines_left(reasoning)) + "\n</think>\n\n" +
           strip_newlines_left(content);
  return content;
}

std::vector<Piece> render_pieces(const std::vector<ChatMessage>& messages, const ChatOptions& options) {
  require(!messages.empty(), "chat: a conversation needs at least one message");
  const int n = static_cast<int>(messages.size());
  // The last real user query (tool responses dressed as user messages don't count).
  int last_query = n - 1;
  for (int i = n - 1; i >= 0; i--) {
    const std::string& c = messages[i].content;
    if (messages[i].role == "user" &&
        !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  std::vector<Piece> pieces;
  for (int i = 0; i < n; i++) {
    const ChatMessage& m = messages[i];
    if (m.role == "system" || m.role == "user") {
      pieces.push_back({"<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n", 0});
    } else if (m.role == "assistant") {
      pieces.push_back({"<|im_start|>assistant\n", 0});
      pieces.push_back({assistant_body(m, i > last_query, i == n - 1) + "<|im_end|>", 1});
      pieces.push_back({"\n", 0});
    } else {
      throw Error("chat: message " + std::to_string(i) + " has unsupported role \"" + m.role +
                  "\" (expected system, user or assistant)");
    }
  }
  if (options.add_generation_prompt) {
    pieces.push_back({"<|im_start|>assistant\n", 0});
    if (!options.enable_thinking) pieces.push_back({"<think>\n\n</think>\n\n", 0});
  }
  return pieces;
}

}  // namespace

std::string render_chat_text(const std::vector<ChatMessage>& messages, const ChatOptions& options) {
  std::string text;
  for (const Piece& piece : render_pieces(messages, options)) text += piece.text;
  return text;
}

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         const ChatOptions& options) {
  require(tokenizer.token_to_id("<|im_start|>") >= 0 && tokenizer.token_to_id("<|im_end|>") >= 0,
          tokenizer.path() + ": tokenizer has no <|im_start|>/<|im_end|> tokens for the chat format");
  RenderedChat out;
  for (const Piece& piece : render_pieces(messages, options)) {
    std::vector<int32_t> ids = tokenizer.encode(piece.text);
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    out.assistant_mask.insert(out.assistant_mask.end(), ids.size(), piece.mask);
  }
  return out;
}

std::vector<int32_t> render_generation_prompt(const Tokenizer& tokenizer,
                                              const std::vector<ChatMessage>& messages,
                                              bool enable_thinking) {
  ChatOptions options;
  options.add_generation_prompt = true;
  options.enable_thinking = enable_thinking;
  return render_chat(tokenizer, messages, options).ids;
}

}  // namespace polaris
