// Countdown reward: reach the target from the given numbers with + - * /.
//
// The response's final expression (see extract_countdown_expression) is parsed
// by a small recursive-descent parser, never eval'd:
//
//   expression := term (('+' | '-') term)*
//   term       := factor (('*' | '/') factor)*
//   factor     := integer | '(' expression ')'
//
// "×", "÷", "\times", "\cdot", "\div" and "x" between operands are accepted as
// * and /. There is no unary minus: Countdown numbers are positive, and
// allowing "-" would let "-(a-b)" reuse tricks the game forbids. Arithmetic is
// exact (rationals), so 7/2*2 is 7 and a division by zero makes the answer
// wrong rather than inf. The literals used must be a sub-multiset of the given
// numbers (each number at most once), or the whole multiset with
// use_all_numbers.
//
// Cost. A long answer could chain thousands of exact operations on growing
// fractions ("99/97*" 1600 times took 23 s). Since every literal must be a
// given number, the parser stops at the first literal past their count, and
// an intermediate result over kMaxResultDigits digits (far past anything a
// handful of int64 numbers can honestly make) fails the answer.
#include <algorithm>
#include <cctype>

#include "data/verifier.h"
#include "src/common/error.h"

namespace polaris {

namespace {

constexpr size_t kMaxResultDigits = 400;  // numerator + denominator

bool too_many_digits(const Rational& value) {
  return value.num().num_digits() + value.den().num_digits() > kMaxResultDigits;
}

struct ArithmeticParser {
  std::string text;  // operators already canonicalised to + - * / ( ) and digits
  size_t pos = 0;
  std::vector<BigInt>* literals;
  size_t max_literals;
  bool failed = false;

  char peek() const { return pos < text.size() ? text[pos] : '\0'; }

  int depth = 0;

  Rational expression() {
    // Nesting limit: deep parentheses from a model must not overflow the stack.
    if (++depth > 100) {
      failed = true;
      return Rational();
    }
    Rational value = term();
    while (!failed && (peek() == '+' || peek() == '-')) {
      char op = text[pos++];
      Rational rhs = term();
      if (failed) break;
      value = op == '+' ? value + rhs : value - rhs;
      if (too_many_digits(value)) failed = true;
    }
    depth--;
    return value;
  }

  Rational term() {
    Rational value = factor();
    while (!failed && (peek() == '*' || peek() == '/')) {
      char op = text[pos++];
      Rational rhs = factor();
      if (failed) break;
      if (op == '/' && rhs.is_zero()) {  // division by zero: no value
        failed = true;
        break;
      }
      value = op == '*' ? value * rhs : value / rhs;
      if (too_many_digits(value)) failed = true;
    }
    return value;
  }

  Rational factor() {
    if (failed) return Rational();
    if (peek() == '(') {
      pos++;
      Rational value = expression();
      if (peek() != ')') failed = true;
      else pos++;
      return value;
    }
    size_t start = pos;
    while (std::isdigit(static_cast<unsigned char>(peek()))) pos++;
    // No number, an absurdly long one, or one more than the numbers given.
    if (pos == start || pos - start > 30 || literals->size() == max_literals) {
      failed = true;
      return Rational();
    }
    BigInt literal = BigInt::from_string(text.substr(start, pos - start));
    literals->push_back(literal);
    return Rational(literal);
  }
};

// Rewrites the accepted operator spellings to single ASCII characters and
// drops whitespace. Anything else is kept and later fails the parse.
std::string canonical_operators(const std::string& expression) {
  static const std::pair<const char*, const char*> kSpellings[] = {
      {"\\times", "*"}, {"\\cdot", "*"}, {"\\div", "/"}, {"\xC3\x97", "*"} /* × */,
      {"\xC3\xB7", "/"} /* ÷ */, {"\xE2\x88\x92", "-"} /* − */, {"\\left", ""}, {"\\right", ""},
      {"\\(", ""}, {"\\)", ""}, {"x", "*"}, {"X", "*"}};
  std::string out;
  for (size_t i = 0; i < expression.size();) {
    bool replaced = false;
    for (const auto& [from, to] : kSpellings) {
      size_t n = std::char_traits<char>::length(from);
      if (expression.compare(i, n, from) == 0) {
        out += to;
        i += n;
        replaced = true;
        break;
      }
    }
    if (replaced) continue;
    if (!std::isspace(static_cast<unsigned char>(expression[i]))) out += expression[i];
    i++;
  }
  return out;
}

std::string trim(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) begin++;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) end--;
  return text.substr(begin, end - begin);
}

}  // namespace

bool evaluate_arithmetic(const std::string& expression, Rational* value,
                         std::vector<BigInt>* literals, size_t max_literals) {
  std::vector<BigInt> scratch;
  ArithmeticParser parser;
  parser.text = canonical_operators(expression);
  parser.literals = literals ? literals : &scratch;
  parser.max_literals = max_literals;
  parser.literals->clear();
  if (parser.text.empty()) return false;
  Rational result = parser.expression();
  if (parser.failed || parser.pos != parser.text.size()) return false;
  *value = result;
  return true;
}

bool extract_countdown_expression(const std::string& response, std::string* expression) {
  std::string region = answer_region(response);
  std::string found;
  size_t open = region.rfind("<answer>");
  size_t close = open == std::string::npos ? std::string::npos : region.find("</answer>", open);
  if (open != std::string::npos && close != std::string::npos) {
    found = region.substr(open + 8, close - open - 8);
  } else if (!extract_last_boxed(region, &found)) {
    // The last non-empty line.
    size_t end = region.size();
    while (true) {
      size_t newline = end == 0 ? std::string::npos : region.rfind('\n', end - 1);
      size_t begin = newline == std::string::npos ? 0 : newline + 1;
      std::string line = trim(region.substr(begin, end - begin));
      if (!line.empty()) {
        found = line;
        break;
      }
      if (newline == std::string::npos) break;
      end = newline;
    }
  }
  found.erase(std::remove(found.begin(), found.end(), '$'), found.end());
  size_t equals = found.find('=');
  if (equals != std::string::npos) found = found.substr(0, equals);
  found = trim(found);
  if (found.empty()) return false;
  *expression = found;
  return true;
}

VerifierResult verify_countdown(const std::string& response, const std::vector<int64_t>& numbers,
                                int64_t target, bool use_all_numbers) {
  VerifierResult result;
  result.format_ok = check_format(response);
  if (!extract_countdown_expression(response, &result.extracted)) return result;
  Rational value;
  std::vector<BigInt> used;
  if (!evaluate_arithmetic(result.extracted, &value, &used, numbers.size())) return result;
  // Multiset check: sort both lists and walk them together.
  std::vector<BigInt> available(numbers.begin(), numbers.end());
  std::sort(available.begin(), available.end());
  std::sort(used.begin(), used.end());
  if (use_all_numbers ? used != available
                      : !std::includes(available.begin(), available.end(), used.begin(), used.end()))
    return result;
  result.correct = value == Rational(target);
  result.reward = result.correct ? 1.0 : 0.0;
  return result;
}

}  // namespace polaris
