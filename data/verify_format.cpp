// Format reward: the response thinks once, first, then answers.
//
//   [whitespace] <think> reasoning </think> answer
//
// Exactly one "<think>" and one "</think>", the block at the start, and an
// answer with at least one character after it that is not whitespace (ASCII or
// Unicode: a no-break space alone is no answer). Rewarding this shape
// early in RL keeps the model from drifting into answers without reasoning or
// into reasoning that never ends.
#include <cctype>

#include "data/verifier.h"

namespace polaris {

static size_t count_occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) count++;
  return count;
}

// UTF-8 encodings of the Unicode spaces a model can emit that show nothing:
// U+0085, U+00A0, U+1680, U+2000-U+200B, U+2028, U+2029, U+202F, U+205F,
// U+3000 and U+FEFF. An answer of only these is as blank as one of ASCII spaces.
static size_t unicode_space_length(const std::string& text, size_t at) {
  auto byte = [&](size_t k) { return at + k < text.size() ? static_cast<unsigned char>(text[at + k]) : 0; };
  unsigned char b0 = byte(0), b1 = byte(1), b2 = byte(2);
  if (b0 == 0xC2 && (b1 == 0x85 || b1 == 0xA0)) return 2;
  if (b0 == 0xE1 && b1 == 0x9A && b2 == 0x80) return 3;
  if (b0 == 0xE2 && b1 == 0x80 && ((b2 >= 0x80 && b2 <= 0x8B) || b2 == 0xA8 || b2 == 0xA9 || b2 == 0xAF))
    return 3;
  if (b0 == 0xE2 && b1 == 0x81 && b2 == 0x9F) return 3;
  if (b0 == 0xE3 && b1 == 0x80 && b2 == 0x80) return 3;
  if (b0 == 0xEF && b1 == 0xBB && b2 == 0xBF) return 3;
  return 0;
}

static bool is_blank(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    if (std::isspace(static_cast<unsigned char>(text[i]))) {
      i++;
    } else if (size_t length = unicode_space_length(text, i)) {
      i += length;
    } else {
      return false;
    }
  }
  return true;
}

bool check_format(const std::string& response) {
  if (count_occurrences(response, "<think>") != 1 || count_occurrences(response, "</think>") != 1)
    return false;
  size_t first = 0;
  while (first < response.size() && std::isspace(static_cast<unsigned char>(response[first]))) first++;
  if (response.compare(first, 7, "<think>") != 0) return false;
  size_t close = response.find("</think>");
  if (close < first) return false;
  return !is_blank(response.substr(close + 8));
}

VerifierResult verify_format(const std::string& response) {
  VerifierResult result;
  result.format_ok = check_format(response);
  result.correct = result.format_ok;
  result.reward = result.format_ok ? 1.0 : 0.0;
  result.extracted = answer_region(response);
  return result;
}

}  // namespace polaris
