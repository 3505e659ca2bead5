// Math reward: is the response's final answer the reference answer?
//
// Three steps.
//
// 1. Extract (extract_math_answer): the last \boxed{} of the answer region
//    (see verifier.h), else the text after the last "answer is" / "Answer:".
//
// 2. Normalise (normalize_math_answer) the surface form both sides share:
//    "$", "\left", "\right", "\dfrac" -> "\frac", "^\circ", \text{...} wrappers
//    and trailing unit words ("cm", "dollars"), "\%", "1,000" -> "1000" (only
//    when the whole answer is one number, so the tuple "(1,000)" survives),
//    a leading "x =", spaces, a final ".".
//
// 3. Compare by value. Each side is parsed into an exact symbolic value: a sum
//    of terms  c * sqrt(r) * pi^k  with c an exact rational, r a square-free
//    integer and k an integer. That covers integers, decimals ("2.50" = 2.5,
//    "0.1+0.2" = 0.3), a/b, \frac{a}{b}, \frac12, signs, 2\sqrt{3} = \sqrt{12},
//    \frac{\sqrt{3}}{2}, 2\pi, \frac{\pi}{2}, powers with integer exponents.
//    Tuples "(1, 2)" and intervals "[1, 3)" compare element by element with the
//    same brackets; sets "\{1, 2\}" and bare lists "1, 2" ignore order.
//    Anything the parser does not understand (variables, \infty, matrices)
//    falls back to comparing the normalised strings.
//
// A mixed number "1\frac{1}{2}" (integer literal directly followed by a \frac of
// two integer literals) means 1 + 1/2, as in school answers; any other
// juxtaposition is multiplication ("2\frac{\pi}{3}").
#include <algorithm>
#include <cctype>
#include <map>

#include "data/verifier.h"

namespace polaris {

namespace {

// ---------------------------------------------------------------------------
// Small string helpers

std::string trim(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) begin++;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) end--;
  return text.substr(begin, end - begin);
}

std::string to_lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

void replace_all(std::string* text, const std::string& from, const std::string& to) {
  for (size_t at = text->find(from); at != std::string::npos; at = text->find(from, at + to.size()))
    text->replace(at, from.size(), to);
}

// Removes a LaTeX command like "\left" but not "\leftarrow": the name must not
// be followed by another letter.
void remove_command(std::string* text, const std::string& command) {
  for (size_t at = text->find(command); at != std::string::npos; at = text->find(command, at)) {
    size_t end = at + command.size();
    if (end < text->size() && std::isalpha(static_cast<unsigned char>((*text)[end]))) {
      at = end;
      continue;
    }
    text->erase(at, command.size());
  }
}

// "\text{abc}" -> "abc" for each wrapper command (innermost braces balanced).
void unwrap_command(std::string* text, const std::string& command) {
  std::string pattern = command + "{";
  for (size_t at = text->find(pattern); at != std::string::npos; at = text->find(pattern, at)) {
    size_t open = at + command.size();
    int depth = 0;
    size_t close = std::string::npos;
    for (size_t j = open; j < text->size(); j++) {
      if ((*text)[j] == '{') depth++;
      if ((*text)[j] == '}' && --depth == 0) {
        close = j;
        break;
      }
    }
    if (close == std::string::npos) return;  // unbalanced: leave as is
    text->erase(close, 1);
    text->erase(at, pattern.size());
  }
}

bool is_thousands_number(const std::string& text) {
  // -?d{1,3}(,ddd)+(.d*)?
  size_t i = 0;
  if (i < text.size() && text[i] == '-') i++;
  size_t lead = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) i++, lead++;
  if (lead < 1 || lead > 3) return false;
  int groups = 0;
  while (i < text.size() && text[i] == ',') {
    for (int k = 1; k <= 3; k++)
      if (i + k >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i + k]))) return false;
    i += 4;
    groups++;
  }
  if (groups == 0) return false;
  if (i < text.size() && text[i] == '.') {
    i++;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) i++;
  }
  return i == text.size();
}

// Unit words stripped from the end of an answer that is otherwise a number.
const char* const kUnitWords[] = {
    "cm", "mm", "km", "m", "meter", "meters", "metre", "metres", "centimeter", "centimeters",
    "kilometer", "kilometers", "in", "inch", "inches", "ft", "foot", "feet", "yd", "yard", "yards",
    "mile", "miles", "g", "kg", "gram", "grams", "kilogram", "kilograms", "lb", "lbs", "pound",
    "pounds", "oz", "ounce", "ounces", "s", "sec", "second", "seconds", "min", "minute",
    "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days", "week", "weeks", "year", "years",
    "dollar", "dollars", "cent", "cents", "unit", "units", "degree", "degrees", "radian",
    "radians", "percent", "mph", "l", "liter", "liters", "ml", "sq", "square", "cubic"};

bool is_unit_word(const std::string& word) {
  std::string lower = to_lower(word);
  for (const char* unit : kUnitWords)
    if (lower == unit) return true;
  return false;
}

// "12 square cm" -> "12", "5 dollars" -> "5", "3m^2" -> "3". Only strips when
// what remains ends like a number, so "2m" as a variable product stays if the
// remainder would be empty or symbolic.
std::string strip_trailing_units(std::string text) {
  while (true) {
    std::string t = trim(text);
    // Drop a trailing ^2 / ^3 / ^{2} that belongs to a unit ("cm^2").
    size_t end = t.size();
    for (const char* power : {"^{2}", "^{3}", "^2", "^3"}) {
      size_t n = std::char_traits<char>::length(power);
      if (end >= n && t.compare(end - n, n, power) == 0) {
        end -= n;
        break;
      }
    }
    size_t begin = end;
    while (begin > 0 && std::isalpha(static_cast<unsigned char>(t[begin - 1]))) begin--;
    if (begin == end || !is_unit_word(t.substr(begin, end - begin))) return t;
    std::string rest = trim(t.substr(0, begin));
    if (rest.empty()) return t;
    char last = rest.back();
    bool numeric_end = std::isdigit(static_cast<unsigned char>(last)) || last == '}' ||
                       last == ')' || last == '.' || std::isalpha(static_cast<unsigned char>(last));
    if (!numeric_end) return t;
    // The remainder must still contain a digit (so "m s" is not reduced to "m").
    if (std::none_of(rest.begin(), rest.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      return t;
    text = rest;
  }
}

// ---------------------------------------------------------------------------
// Exact symbolic values: sums of c * sqrt(r) * pi^k

struct Term {
  Rational coefficient;
  BigInt radicand = BigInt(1);  // square-free, >= 1
  int pi_power = 0;
};

struct TermKey {
  BigInt radicand;
  int pi_power;
  bool operator<(const TermKey& other) const {
    if (radicand != other.radicand) return radicand < other.radicand;
    return pi_power < other.pi_power;
  }
};

// Canonical: like terms combined, zero terms dropped, sorted by key.
using Value = std::map<TermKey, Rational>;

constexpr size_t kMaxTerms = 32;
constexpr size_t kMaxDigits = 4000;  // guard against "9^{9^{9}}"-style blow-ups

Value make_value(const Term& term) {
  Value v;
  if (!term.coefficient.is_zero()) v[{term.radicand, term.pi_power}] = term.coefficient;
  return v;
}

void add_term(Value* v, const TermKey& key, const Rational& coefficient) {
  Rational sum = (*v)[key] + coefficient;
  if (sum.is_zero()) v->erase(key);
  else (*v)[key] = sum;
}

// sqrt(n) = outside * sqrt(inside) with inside square-free (exactly for n up
// to 10^12; above that only square factors up to 200^2 are pulled out).
void split_square_factors(const BigInt& n, BigInt* outside, BigInt* inside) {
  *outside = BigInt(1);
  int64_t small;
  if (n.to_int64(&small) && small <= 1000000000000LL) {
    int64_t out = 1;
    for (int64_t i = 2; i * i <= small; i++)
      while (small % (i * i) == 0) {
        small /= i * i;
        out *= i;
      }
    *outside = BigInt(out);
    *inside = BigInt(small);
    return;
  }
  BigInt rest = n;
  if (n.num_digits() > 60) {  // not worth the time; such radicands stay as written
    *inside = n;
    return;
  }
  for (int64_t i = 2; i <= 200; i++) {
    BigInt square(i * i);
    while ((rest % square).is_zero()) {
      rest = rest / square;
      *outside = *outside * BigInt(i);
    }
  }
  *inside = rest;
}

bool multiply(const Value& a, const Value& b, Value* out) {
  Value product;
  for (const auto& [ka, ca] : a)
    for (const auto& [kb, cb] : b) {
      BigInt outside, inside;
      split_square_factors(ka.radicand * kb.radicand, &outside, &inside);
      Rational c = ca * cb * Rational(outside);
      if (c.num().num_digits() + c.den().num_digits() > kMaxDigits) return false;
      add_term(&product, {inside, ka.pi_power + kb.pi_power}, c);
    }
  if (product.size() > kMaxTerms) return false;
  *out = product;
  return true;
}

// 1 / (c sqrt(r) pi^k) = (1 / (c r)) sqrt(r) pi^-k. Only single terms: dividing
// by a sum would need rationalising denominators, which answers rarely need.
bool reciprocal(const Value& v, Value* out) {
  if (v.size() != 1) return false;
  const auto& [key, c] = *v.begin();
  Value r;
  r[{key.radicand, -key.pi_power}] = Rational(1) / (c * Rational(key.radicand));
  *out = r;
  return true;
}

bool is_plain_rational(const Value& v, Rational* out) {
  if (v.empty()) {
    *out = Rational(0);
    return true;
  }
  if (v.size() != 1 || v.begin()->first.radicand != BigInt(1) || v.begin()->first.pi_power != 0)
    return false;
  *out = v.begin()->second;
  return true;
}

bool square_root(const Value& v, Value* out) {
  Rational q;
  if (!is_plain_rational(v, &q) || q.sign() < 0) return false;
  // sqrt(p/q) = sqrt(p*q) / q
  BigInt outside, inside;
  split_square_factors(q.num() * q.den(), &outside, &inside);
  Term t;
  t.coefficient = Rational(outside, q.den());
  t.radicand = inside;
  *out = make_value(t);
  return true;
}

bool power(const Value& base, const Value& exponent, Value* out) {
  Rational e;
  int64_t n;
  if (!is_plain_rational(exponent, &e) || !e.is_integer() || !e.num().to_int64(&n)) return false;
  if (n < -1024 || n > 1024) return false;
  Value b = base;
  if (n < 0) {
    if (!reciprocal(base, &b)) return false;
    n = -n;
  }
  Value result = make_value(Term{Rational(1), BigInt(1), 0});
  for (int64_t k = 0; k < n; k++)
    if (!multiply(result, b, &result)) return false;
  *out = result;
  return true;
}

// Recursive descent over a normalised answer (no spaces):
//   sum     := ['+'|'-'] product (('+'|'-') product)*
//   product := unary (('*' | '/' | juxtaposition) unary)*
//   unary   := ('+'|'-') unary | power
//   power   := primary ('^' (group | digit))?
//   primary := number | '(' sum ')' | '{' sum '}' | \frac A B | \sqrt A | \pi
// A and B are a {group} or a single digit/\pi (for "\frac12", "\frac\pi2").
struct MathParser {
  const std::string& s;
  size_t pos = 0;
  bool failed = false;
  int depth = 0;
  static constexpr int kMaxDepth = 100;

  explicit MathParser(const std::string& text) : s(text) {}

  bool at(const char* literal) const { return s.compare(pos, std::char_traits<char>::length(literal), literal) == 0; }
  char peek() const { return pos < s.size() ? s[pos] : '\0'; }
  Value fail() {
    failed = true;
    return Value();
  }

  Value sum() {
    // Nesting limit: a model can emit 10^5 parentheses; recursion must not follow.
    if (++depth > kMaxDepth) return fail();
    struct Leave {
      int& d;
      ~Leave() { d--; }
    } leave{depth};
    Value total;
    bool first = true;
    while (!failed) {
      bool negative = false;
      if (peek() == '+' || peek() == '-') negative = s[pos++] == '-';
      else if (!first) break;
      Value term = product();
      if (failed) break;
      for (const auto& [key, c] : term) add_term(&total, key, negative ? -c : c);
      if (total.size() > kMaxTerms) return fail();
      first = false;
      if (peek() != '+' && peek() != '-') break;
    }
    return total;
  }

  bool starts_factor() const {
    char c = peek();
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '(' || c == '{' ||
           at("\\frac") || at("\\sqrt") || at("\\pi");
  }

  Value product() {
    Value value = unary();
    while (!failed) {
      if (peek() == '*') {
        pos++;
        Value rhs = unary();
        if (failed || !multiply(value, rhs, &value)) return fail();
      } else if (peek() == '/') {
        pos++;
        Value rhs = unary(), inverse;
        if (failed || !reciprocal(rhs, &inverse) || !multiply(value, inverse, &value)) return fail();
      } else if (starts_factor()) {
        Value rhs = power_expr();
        if (failed || !multiply(value, rhs, &value)) return fail();
      } else {
        break;
      }
    }
    return value;
  }

  Value unary() {
    if (peek() == '-' || peek() == '+') {
      bool negative = s[pos++] == '-';
      Value v = unary();
      if (negative)
        for (auto& [key, c] : v) c = -c;
      return v;
    }
    return power_expr();
  }

  Value power_expr() {
    size_t start = pos;
    Value base = primary();
    if (failed) return base;
    // Mixed number: an integer literal followed directly by \frac{int}{int}.
    if (at("\\frac") && std::isdigit(static_cast<unsigned char>(s[start]))) {
      size_t literal_end = start;
      while (literal_end < s.size() && std::isdigit(static_cast<unsigned char>(s[literal_end]))) literal_end++;
      if (literal_end == pos) {
        size_t save = pos;
        pos += 5;
        std::string numerator, denominator;
        if (integer_group(&numerator) && integer_group(&denominator) && peek() != '^') {
          Rational whole;
          Rational::parse(s.substr(start, literal_end - start), &whole);
          BigInt den = BigInt::from_string(denominator);
          if (den.is_zero()) return fail();
          Rational frac(BigInt::from_string(numerator), den);
          return make_value(Term{whole + frac, BigInt(1), 0});
        }
        pos = save;
      }
    }
    if (peek() == '^') {
      pos++;
      Value exponent;
      if (peek() == '{') exponent = primary();
      else if (std::isdigit(static_cast<unsigned char>(peek()))) exponent = digit();
      else if (peek() == '-' && pos + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[pos + 1]))) {
        pos++;
        exponent = digit();
        for (auto& [key, c] : exponent) c = -c;
      } else return fail();
      if (failed || !power(base, exponent, &base)) return fail();
    }
    return base;
  }

  // "{123}" -> "123"; advances only on success.
  bool integer_group(std::string* digits) {
    if (peek() != '{') return false;
    size_t end = pos + 1;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) end++;
    if (end == pos + 1 || end >= s.size() || s[end] != '}') return false;
    *digits = s.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    return true;
  }

  Value digit() {
    Term t;
    t.coefficient = Rational(s[pos++] - '0');
    return make_value(t);
  }

  // The argument of \frac or \sqrt: {sum}, one digit, or \pi.
  Value argument() {
    if (peek() == '{') return primary();
    if (std::isdigit(static_cast<unsigned char>(peek()))) return digit();
    if (at("\\pi")) return primary();
    return fail();
  }

  Value primary() {
    if (failed) return Value();
    char c = peek();
    if (c == '(' || c == '{') {
      char close = c == '(' ? ')' : '}';
      pos++;
      Value v = sum();
      if (failed || peek() != close) return fail();
      pos++;
      return v;
    }
    if (at("\\frac")) {
      pos += 5;
      Value numerator = argument();
      Value denominator = argument(), inverse;
      if (failed || !reciprocal(denominator, &inverse) || !multiply(numerator, inverse, &numerator))
        return fail();
      return numerator;
    }
    if (at("\\sqrt")) {
      pos += 5;
      if (peek() == '[') return fail();  // n-th roots are not modelled
      Value radicand = argument(), root;
      if (failed || !square_root(radicand, &root)) return fail();
      return root;
    }
    if (at("\\pi") && !(pos + 3 < s.size() && std::isalpha(static_cast<unsigned char>(s[pos + 3])))) {
      pos += 3;
      return make_value(Term{Rational(1), BigInt(1), 1});
    }
    size_t start = pos;
    while (std::isdigit(static_cast<unsigned char>(peek())) || peek() == '.') pos++;
    Rational number;
    if (pos == start || pos - start > 400 || !Rational::parse(s.substr(start, pos - start), &number))
      return fail();
    return make_value(Term{number, BigInt(1), 0});
  }
};

bool parse_value(const std::string& text, Value* out) {
  if (text.empty()) return false;
  MathParser parser(text);
  Value v = parser.sum();
  if (parser.failed || parser.pos != text.size()) return false;
  *out = v;
  return true;
}

bool values_equal(const Value& a, const Value& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first.radicand != ib->first.radicand || ia->first.pi_power != ib->first.pi_power ||
        ia->second != ib->second)
      return false;
  }
  return true;
}

bool scalars_equal(const std::string& a, const std::string& b) {
  if (a == b) return true;
  Value va, vb;
  return parse_value(a, &va) && parse_value(b, &vb) && values_equal(va, vb);
}

// Splits on commas outside (), [], {}.
std::vector<std::string> split_top_level(const std::string& text) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == '(' || c == '[' || c == '{') depth++;
    if (c == ')' || c == ']' || c == '}') depth--;
    if (c == ',' && depth == 0) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(text.substr(start));
  return parts;
}

// A bracketed sequence: "(1,2)", "[1,3)", "\{1,2\}". Returns the opening and
// closing brackets and the inside.
bool bracketed(const std::string& text, std::string* open, std::string* close, std::string* inside) {
  if (text.size() >= 4 && text.compare(0, 2, "\\{") == 0 && text.compare(text.size() - 2, 2, "\\}") == 0) {
    *open = "{";
    *close = "}";
    *inside = text.substr(2, text.size() - 4);
    return true;
  }
  if (text.size() < 2) return false;
  char first = text.front(), last = text.back();
  if ((first != '(' && first != '[') || (last != ')' && last != ']')) return false;
  // The first bracket must close at the very end ("(1)+(2)" is not a tuple).
  int depth = 0;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == '(' || c == '[' || c == '{') depth++;
    if (c == ')' || c == ']' || c == '}') depth--;
    if (depth == 0 && i + 1 < text.size()) return false;
  }
  *open = std::string(1, first);
  *close = std::string(1, last);
  *inside = text.substr(1, text.size() - 2);
  return true;
}

bool unordered_equal(std::vector<std::string> a, std::vector<std::string> b) {
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (const auto& x : a) {
    bool matched = false;
    for (size_t j = 0; j < b.size() && !matched; j++)
      if (!used[j] && scalars_equal(x, b[j])) used[j] = matched = true;
    if (!matched) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------

std::string normalize_math_answer(const std::string& answer) {
  std::string s = trim(answer);
  // Math delimiters around the whole answer.
  for (const auto& [open, close] : {std::pair<const char*, const char*>{"\\(", "\\)"}, {"\\[", "\\]"}}) {
    if (s.size() >= 4 && s.compare(0, 2, open) == 0 && s.compare(s.size() - 2, 2, close) == 0)
      s = trim(s.substr(2, s.size() - 4));
  }
  replace_all(&s, "\\$", "");
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  for (const char* wrapper : {"\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mathbf",
                              "\\mbox", "\\operatorname", "\\boxed"})
    unwrap_command(&s, wrapper);
  replace_all(&s, "\\dfrac", "\\frac");
  replace_all(&s, "\\tfrac", "\\frac");
  replace_all(&s, "^{\\circ}", "");
  replace_all(&s, "^\\circ", "");
  replace_all(&s, "\xC2\xB0", "");  // the degree sign
  remove_command(&s, "\\circ");
  remove_command(&s, "\\degree");
  remove_command(&s, "\\left");
  remove_command(&s, "\\right");
  remove_command(&s, "\\displaystyle");
  replace_all(&s, "{,}", ",");
  replace_all(&s, "\\%", "");
  replace_all(&s, "%", "");
  for (const char* space : {"\\!", "\\,", "\\;", "\\:", "\\ ", "~"}) replace_all(&s, space, " ");
  replace_all(&s, "\\times", "*");
  replace_all(&s, "\\cdot", "*");
  replace_all(&s, "\\div", "/");
  s = strip_trailing_units(s);
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }),
          s.end());
  while (!s.empty() && s.back() == '.') s.pop_back();
  // A leading "x=" / "y_1=" / "\theta=" when the answer is a single equation.
  size_t equals = s.find('=');
  if (equals != std::string::npos && s.find('=', equals + 1) == std::string::npos && equals > 0) {
    std::string lhs = s.substr(0, equals);
    bool variable = (lhs.size() == 1 && std::isalpha(static_cast<unsigned char>(lhs[0]))) ||
                    (lhs[0] == '\\' && lhs.size() > 1 &&
                     std::all_of(lhs.begin() + 1, lhs.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); })) ||
                    (lhs.size() > 2 && std::isalpha(static_cast<unsigned char>(lhs[0])) && lhs[1] == '_');
    if (variable) s = s.substr(equals + 1);
  }
  if (is_thousands_number(s)) s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  // A multiple-choice letter in parentheses: "(B)" -> "B".
  if (s.size() == 3 && s[0] == '(' && s[2] == ')' && std::isupper(static_cast<unsigned char>(s[1])))
    s = s.substr(1, 1);
  return s;
}

bool math_answers_equal(const std::string& given, const std::string& reference) {
  std::string a = normalize_math_answer(given), b = normalize_math_answer(reference);
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  std::string open_a, close_a, inside_a, open_b, close_b, inside_b;
  bool seq_a = bracketed(a, &open_a, &close_a, &inside_a);
  bool seq_b = bracketed(b, &open_b, &close_b, &inside_b);
  std::vector<std::string> parts_a = split_top_level(seq_a ? inside_a : a);
  std::vector<std::string> parts_b = split_top_level(seq_b ? inside_b : b);
  if (seq_a && seq_b && (parts_a.size() > 1 || parts_b.size() > 1)) {
    if (open_a != open_b || close_a != close_b) return false;
    if (open_a == "{") return unordered_equal(parts_a, parts_b);  // sets
    if (parts_a.size() != parts_b.size()) return false;
    for (size_t i = 0; i < parts_a.size(); i++)
      if (!scalars_equal(parts_a[i], parts_b[i])) return false;
    return true;
  }
  if (!seq_a && !seq_b && (parts_a.size() > 1 || parts_b.size() > 1))
    return unordered_equal(parts_a, parts_b);  // "1, 2" lists of solutions
  if (parts_a.size() > 1 || parts_b.size() > 1) return false;  // tuple vs non-tuple
  return scalars_equal(a, b);
}

bool extract_math_answer(const std::string& response, std::string* answer) {
  std::string region = answer_region(response);
  std::string boxed;
  if (extract_last_boxed(region, &boxed)) {
    *answer = boxed;
    return !trim(boxed).empty();
  }
  // "The answer is X." / "Answer: X" -- the last such phrase, to the end of its line.
  std::string lower = to_lower(region);
  size_t best = std::string::npos;
  size_t start = 0;
  for (const char* phrase : {"answer is", "answer:"}) {
    size_t at = lower.rfind(phrase);
    if (at != std::string::npos && (best == std::string::npos || at > best)) {
      best = at;
      start = at + std::char_traits<char>::length(phrase);
    }
  }
  if (best == std::string::npos) return false;
  size_t end = region.find('\n', start);
  std::string found = trim(region.substr(start, end == std::string::npos ? std::string::npos : end - start));
  if (!found.empty() && found[0] == ':') found = trim(found.substr(1));
  while (!found.empty() && (found.back() == '.' || found.back() == '$')) found.pop_back();
  while (!found.empty() && found.front() == '$') found.erase(0, 1);
  found = trim(found);
  if (found.empty()) return false;
  *answer = found;
  return true;
}

VerifierResult verify_math(const std::string& response, const std::string& reference) {
  VerifierResult result;
  result.format_ok = check_format(response);
  if (!extract_math_answer(response, &result.extracted)) return result;
  result.correct = math_answers_equal(result.extracted, reference);
  result.reward = result.correct ? 1.0 : 0.0;
  return result;
}

}  // namespace polaris
