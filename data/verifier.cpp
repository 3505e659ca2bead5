// The verifier dispatcher and the helpers every verifier shares: finding the
// answer region after the thinking, and pulling out the last \boxed{}.
#include "data/verifier.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>

#include "src/common/error.h"

namespace polaris {

std::string answer_region(const std::string& text) {
  size_t close = text.rfind("</think>");
  if (close != std::string::npos) return text.substr(close + 8);
  // Thinking that never finished: whatever follows is not a final answer.
  if (text.find("<think>") != std::string::npos) return "";
  return text;
}

bool extract_last_boxed(const std::string& text, std::string* content) {
  size_t boxed = text.rfind("\\boxed");
  size_t fbox = text.rfind("\\fbox");
  size_t start;
  size_t name_length;
  if (boxed == std::string::npos && fbox == std::string::npos) return false;
  if (fbox == std::string::npos || (boxed != std::string::npos && boxed > fbox)) {
    start = boxed;
    name_length = 6;
  } else {
    start = fbox;
    name_length = 5;
  }
  size_t i = start + name_length;
  if (i < text.size() && text[i] == '{') {
    int depth = 0;
    for (size_t j = i; j < text.size(); j++) {
      if (text[j] == '\\' && j + 1 < text.size()) {  // \{ and \} are literal braces
        j++;
        continue;
      }
      if (text[j] == '{') depth++;
      if (text[j] == '}' && --depth == 0) {
        *content = text.substr(i + 1, j - i - 1);
        return true;
      }
    }
    return false;  // the last box never closes
  }
  // "\boxed 5": the argument is the next run of non-space characters.
  if (i < text.size() && text[i] == ' ') {
    while (i < text.size() && text[i] == ' ') i++;
    size_t end = i;
    while (end < text.size() && !isspace(static_cast<unsigned char>(text[end])) && text[end] != '$')
      end++;
    if (end == i) return false;
    *content = text.substr(i, end - i);
    return true;
  }
  return false;
}

// An int64 from JSON: an unsigned value above INT64_MAX or a float outside
// int64's range is refused (casting either would wrap, or be undefined).
static int64_t json_integer(const nlohmann::json& value, const std::string& what) {
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw Error("verify: countdown reference field " + what + " is too large: " + value.dump());
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::fabs(d) < 9.2e18 && d == std::trunc(d)) return static_cast<int64_t>(d);
  }
  throw Error("verify: countdown reference field " + what + " is not an integer: " + value.dump());
}

VerifierResult verify(const std::string& kind, const std::string& response,
                      const nlohmann::json& reference, const VerifyOptions& options) {
  VerifierResult result;
  if (kind == "math") {
    std::string answer;
    if (reference.is_string()) answer = reference.get<std::string>();
    else if (reference.is_number()) answer = reference.dump();
    else throw Error("verify: math reference must be a string or number, got " + reference.dump());
    result = verify_math(response, answer);
  } else if (kind == "countdown") {
    if (!reference.is_object() || !reference.contains("numbers") || !reference.contains("target") ||
        !reference["numbers"].is_array())
      throw Error("verify: countdown reference must be {\"numbers\": [...], \"target\": N}, got " +
                  reference.dump());
    std::vector<int64_t> numbers;
    for (const auto& n : reference["numbers"]) numbers.push_back(json_integer(n, "numbers"));
    result = verify_countdown(response, numbers, json_integer(reference["target"], "target"),
                              options.countdown_use_all_numbers);
  } else if (kind == "format") {
    result = verify_format(response);
  } else {
    throw Error("verify: unknown verifier kind \"" + kind + "\" (expected math, countdown or format)");
  }
  if (options.require_format && !result.format_ok) result.reward = 0.0;
  return result;
}

}  // namespace polaris
