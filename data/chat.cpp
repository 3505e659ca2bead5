// Chat format (see chat.h): Qwen3's ChatML template, rendered as a list of
// pieces, each with the mask value of its bytes. The whole text is encoded once
// and each token's mask comes from the byte range it covers.
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

namespace {

struct ByteSpan {
  size_t begin, end;
};

// The trained byte spans of a text made of the pieces, each `lengths[i]`
// bytes long there, adjacent spans merged.
std::vector<ByteSpan> trained_spans(const std::vector<Piece>& pieces, const std::vector<size_t>& lengths) {
  std::vector<ByteSpan> spans;
  size_t offset = 0;
  for (size_t i = 0; i < pieces.size(); i++) {
    size_t end = offset + lengths[i];
    if (pieces[i].mask && end > offset) {
      if (!spans.empty() && spans.back().end == offset)
        spans.back().end = end;
      else
        spans.push_back({offset, end});
    }
    offset = end;
  }
  return spans;
}

}  // namespace

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         const ChatOptions& options) {
  require(tokenizer.token_to_id("<|im_start|>") >= 0 && tokenizer.token_to_id("<|im_end|>") >= 0,
          tokenizer.path() + ": tokenizer has no <|im_start|>/<|im_end|> tokens for the chat format");
  const std::vector<Piece> pieces = render_pieces(messages, options);
  std::string text;
  for (const Piece& piece : pieces) text += piece.text;

  // The ids are those of the whole text, as Hugging Face encodes the rendered
  // template: pieces encoded on their own can split a pre-token (the header's
  // "\n" and a body starting with "\n" are one "\n\n" token).
  RenderedChat out;
  out.ids = tokenizer.encode(text);
  out.assistant_mask.assign(out.ids.size(), 0);

  // Each token's byte range in the text the tokenizer saw.
  std::vector<size_t> ends(out.ids.size());
  std::string seen;
  seen.reserve(text.size());
  for (size_t i = 0; i < out.ids.size(); i++) {
    seen += tokenizer.token_bytes(out.ids[i]);
    ends[i] = seen.size();
  }

  // Each piece's length in the text the tokenizer saw: its own, unless the
  // tokenizer changed the bytes (NFC normalization, invalid UTF-8 made
  // U+FFFD). It does so within the text between added tokens, and every piece
  // boundary follows an added token or a "\n", across which neither change
  // reaches, so each piece as the tokenizer sees it is its own tokens' bytes.
  std::vector<size_t> piece_lengths;
  if (seen == text) {
    for (const Piece& piece : pieces) piece_lengths.push_back(piece.text.size());
  } else {
    std::string joined;
    for (const Piece& piece : pieces) {
      const size_t before = joined.size();
      for (int32_t id : tokenizer.encode(piece.text)) joined += tokenizer.token_bytes(id);
      piece_lengths.push_back(joined.size() - before);
    }
    if (joined != seen)
      throw Error(tokenizer.path() + ": chat: cannot align the tokens of the rendered conversation with its "
                  "messages (the tokenizer changes text across a message boundary)");
  }
  const std::vector<ByteSpan> spans = trained_spans(pieces, piece_lengths);

  // A token is trained when all its bytes lie in a trained span. The only token
  // that can straddle a span boundary is the header's "\n" merged with whitespace
  // that starts a body ("assistant\n" + "\nA" -> "assistant", "\n\n", "A"):
  // it is not trained, since the header (its first byte) is given at sampling
  // time. A span's end is always <|im_end|>, a token of its own.
  size_t span = 0, begin = 0;
  for (size_t i = 0; i < out.ids.size(); i++) {
    size_t end = ends[i];
    while (span < spans.size() && spans[span].end < end) span++;
    if (span < spans.size() && spans[span].begin <= begin && end <= spans[span].end) out.assistant_mask[i] = 1;
    begin = end;
  }
  return out;
}

std::vector<int32_t> render_generation_prompt(const Tokenizer& tokenizer,
                                              const std::vector<ChatMessage>& messages,
                                              bool enable_thinking) {
  require(tokenizer.token_to_id("<|im_start|>") >= 0 && tokenizer.token_to_id("<|im_end|>") >= 0,
          tokenizer.path() + ": tokenizer has no <|im_start|>/<|im_end|> tokens for the chat format");
  ChatOptions options;
  options.add_generation_prompt = true;
  options.enable_thinking = enable_thinking;
  return tokenizer.encode(render_chat_text(messages, options));
}

}  // namespace polaris
