// Math reward: is the response's final answer the reference answer?
//
// Three steps.
//
// 1. Extract (extract_math_answer): the last \boxed{} of the answer region
//    (see verifier.h), else what follows the last "answer is" / "Answer:" /
//    "**Final Answer:**": its first $...$ if one opens in that sentence, else
//    the sentence ("The final answer is $5$. I hope it is correct." -> "5").
//    When the last box never closes (cut off), there is no answer.
//
// 2. Normalise (normalize_math_answer) the surface form both sides share:
//    "$", "\left", "\right", "\dfrac" -> "\frac", "^\circ", \text{...} wrappers
//    and trailing units ("5\text{ m}", "12 square cm", "5 dollars"; never a bare
//    letter: "2m" is a product), "\%" (so "50\%" is 50, never 1/2), the
//    minus sign U+2212, "1,000" -> "1000" (only when the whole answer is one
//    number written d,ddd, so the tuple "(1,000)" and the list "1, 100"
//    survive), "12\,345" -> "12345", "x =" or "= x", spaces (but "1 2" is not
//    12), a final ".".
//
// 3. Compare by value. Each side is parsed into an exact symbolic value: a sum
//    of terms  c * sqrt(r) * pi^k  with c an exact rational, r a square-free
//    integer and k an integer (products of surds stay square-free through a
//    gcd, so only the argument of a \sqrt{} is ever factorised, with a bounded
//    number of trial divisions). That covers integers, decimals ("2.50" = 2.5,
//    "0.1+0.2" = 0.3), a/b, \frac{a}{b}, \frac12, signs, 2\sqrt{3} = \sqrt{12},
//    \frac{\sqrt{3}}{2}, 2\pi, \frac{\pi}{2}, powers with integer exponents
//    ("2^10" is 2^{10}: the whole digit run, as LaTeX readers mean it),
//    scientific notation ("1e+20", as JSON numbers are printed).
//    Tuples "(1, 2)" and intervals "[1, 3)" compare element by element with the
//    same brackets; sets "\{1, 2\}" and bare lists "1, 2" ignore order.
//    Anything the parser does not understand (variables, \infty, matrices)
//    falls back to comparing the normalised strings, and so does a value that
//    outgrows the digit and pi^k bounds (kMaxDigits, kMaxPiPower), which keep
//    every answer to milliseconds and machine ints from wrapping around.
//
// A mixed number "1\frac{1}{2}" or "1\frac12" (integer literal directly followed
// by a \frac of two integer literals) means 1 + 1/2, as in school answers; any
// other juxtaposition is multiplication ("2\frac{\pi}{3}").
#include <algorithm>
#include <cctype>
#include <cmath>
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

// "\text{abc}" -> "abc" for each wrapper command whose brace closes (an
// unclosed one stays as written). One pass with a stack of open braces:
// unwrapping one at a time, each a search and an erase, took seconds on
// 20,000 nested "\text{".
void unwrap_command(std::string* text, const std::string& command) {
  const std::string pattern = command + "{";
  std::vector<bool> drop(text->size(), false);
  std::vector<std::pair<size_t, bool>> open_braces;  // where "{" or the wrapper starts; a wrapper?
  for (size_t i = 0; i < text->size(); i++) {
    if (text->compare(i, pattern.size(), pattern) == 0) {
      open_braces.push_back({i, true});
      i += pattern.size() - 1;
    } else if ((*text)[i] == '{') {
      open_braces.push_back({i, false});
    } else if ((*text)[i] == '}' && !open_braces.empty()) {
      auto [start, wrapper] = open_braces.back();
      open_braces.pop_back();
      if (!wrapper) continue;
      std::fill(drop.begin() + start, drop.begin() + start + pattern.size(), true);
      drop[i] = true;
    }
  }
  std::string kept;
  for (size_t i = 0; i < text->size(); i++)
    if (!drop[i]) kept += (*text)[i];
  *text = kept;
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

// The thin spaces that LaTeX and typography put between thousands groups:
// "\," and U+2009 / U+202F.
const char* const kThinSpaces[] = {"\\,", "\xE2\x80\x89", "\xE2\x80\xAF"};

size_t thin_space_length(const std::string& text, size_t at) {
  for (const char* space : kThinSpaces) {
    size_t n = std::char_traits<char>::length(space);
    if (text.compare(at, n, space) == 0) return n;
  }
  return 0;
}

// "12\,345" -> "12345": a run of 1-3 digits followed by groups of exactly three
// digits, each after a thin space. Other spaced digits ("1 2", "12 345") stay
// apart, so they are not read as one number.
std::string join_thin_space_thousands(const std::string& text) {
  auto is_digit = [&](size_t i) { return i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); };
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_digit(i) || (i > 0 && (is_digit(i - 1) || text[i - 1] == '.'))) {
      out += text[i++];
      continue;
    }
    size_t end = i;
    while (is_digit(end)) end++;
    std::string joined = text.substr(i, end - i);
    if (joined.size() <= 3) {
      while (true) {
        size_t space = thin_space_length(text, end);
        size_t group = end + space;
        if (space == 0 || !is_digit(group) || !is_digit(group + 1) || !is_digit(group + 2) || is_digit(group + 3))
          break;
        joined += text.substr(group, 3);
        end = group + 3;
      }
    }
    out += joined;
    i = end;
  }
  return out;
}

// Deletes whitespace, except that one space stays between two digits: "1 2"
// and "5 6" are two numbers (no value, compared as strings), never 12 and 56.
std::string remove_spaces(const std::string& text) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  auto is_digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (!is_space(text[i])) {
      out += text[i];
      continue;
    }
    size_t next = i;
    while (next < text.size() && is_space(text[next])) next++;
    if (!out.empty() && is_digit(out.back()) && next < text.size() && is_digit(text[next])) out += ' ';
    i = next - 1;
  }
  return out;
}

// Unit words stripped from the end of an answer that is otherwise a number.
// The single letters ("m", "s", "g", "h", "l") only count inside \text{}: bare,
// "2m" and "2 m" are products.
const char* const kUnitWords[] = {
    "cm", "mm", "km", "m", "meter", "meters", "metre", "metres", "centimeter", "centimeters",
    "kilometer", "kilometers", "in", "inch", "inches", "ft", "foot", "feet", "yd", "yard", "yards",
    "mile", "miles", "g", "kg", "gram", "grams", "kilogram", "kilograms", "lb", "lbs", "pound",
    "pounds", "oz", "ounce", "ounces", "s", "sec", "second", "seconds", "min", "minute",
    "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days", "week", "weeks", "year", "years",
    "dollar", "dollars", "cent", "cents", "unit", "units", "degree", "degrees", "radian",
    "radians", "percent", "mph", "l", "liter", "liters", "ml", "sq", "square", "cubic"};

// The commands whose content is taken as a unit when it is made of unit words.
const char* const kUnitWrappers[] = {"\\text", "\\textrm", "\\mbox", "\\mathrm"};

bool is_unit_word(const std::string& word) {
  std::string lower = to_lower(word);
  for (const char* unit : kUnitWords)
    if (lower == unit) return true;
  return false;
}

// Where "text[0, end)" ends once a trailing power that belongs to a unit
// ("cm^2", "\text{m}^{3}") is left out.
size_t end_before_unit_power(const std::string& text, size_t end) {
  for (const char* power : {"^{2}", "^{3}", "^2", "^3"}) {
    size_t n = std::char_traits<char>::length(power);
    if (end >= n && text.compare(end - n, n, power) == 0) return end - n;
  }
  return end;
}

// " square units", "cm^2": one or more unit words, each with an optional power.
bool is_unit_phrase(const std::string& text) {
  size_t words = 0, i = 0;
  while (i < text.size()) {
    if (std::isspace(static_cast<unsigned char>(text[i]))) {
      i++;
      continue;
    }
    size_t end = i;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) end++;
    std::string word = text.substr(i, end_before_unit_power(text, end) - i);
    bool letters = std::all_of(word.begin(), word.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
    if (word.empty() || !letters || !is_unit_word(word)) return false;
    words++;
    i = end;
  }
  return words > 0;
}

// Where a trailing unit of "text[0, end)" starts, or npos. A unit is either a
// wrapper of unit words ("\text{ cm}", "\mathrm{kg}") or a unit word of two or
// more letters after a space ("10 meters").
size_t trailing_unit_start(const std::string& text, size_t end) {
  bool escaped_brace = end >= 2 && text[end - 2] == '\\';
  if (end > 0 && text[end - 1] == '}' && !escaped_brace) {
    int depth = 0;
    for (size_t j = end; j-- > 0;) {
      if (j > 0 && text[j - 1] == '\\') continue;  // "\{" and "\}" are not groups
      if (text[j] == '}') depth++;
      if (text[j] == '{' && --depth == 0) {
        for (const char* wrapper : kUnitWrappers) {
          size_t n = std::char_traits<char>::length(wrapper);
          if (j >= n && text.compare(j - n, n, wrapper) == 0 &&
              is_unit_phrase(text.substr(j + 1, end - 1 - (j + 1))))
            return j - n;
        }
        return std::string::npos;
      }
    }
    return std::string::npos;
  }
  size_t begin = end;
  while (begin > 0 && std::isalpha(static_cast<unsigned char>(text[begin - 1]))) begin--;
  bool spaced = begin > 0 && std::isspace(static_cast<unsigned char>(text[begin - 1]));
  if (end - begin >= 2 && spaced && is_unit_word(text.substr(begin, end - begin))) return begin;
  return std::string::npos;
}

// "12 square cm" -> "12", "5\text{ dollars}" -> "5", "3\,\mathrm{m}^2" -> "3".
// Only strips when what remains still holds a digit and ends like a number or
// expression, so a lone "m s" or "\text{cm}" stays as written.
std::string strip_trailing_units(std::string text) {
  while (true) {
    std::string t = trim(text);
    size_t unit = trailing_unit_start(t, end_before_unit_power(t, t.size()));
    if (unit == std::string::npos) return t;
    std::string rest = trim(t.substr(0, unit));
    if (rest.empty()) return t;
    char last = rest.back();
    bool numeric_end = std::isdigit(static_cast<unsigned char>(last)) || last == '}' ||
                       last == ')' || last == '.' || std::isalpha(static_cast<unsigned char>(last));
    if (!numeric_end) return t;
    if (std::none_of(rest.begin(), rest.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      return t;
    text = rest;
  }
}

// "x", "\theta", "y_1", "y_{1}": a name that "x = 5" or "5 = x" gives a value.
bool is_variable_name(const std::string& name) {
  if (name.empty()) return false;
  auto is_letter = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; };
  if (name.size() == 1) return is_letter(name[0]);
  if (name[0] == '\\') return std::all_of(name.begin() + 1, name.end(), is_letter);
  return name.size() > 2 && is_letter(name[0]) && name[1] == '_';
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
// Most decimal digits one term may hold (coefficient numerator + denominator +
// radicand). Every product and sum reduces its fraction by a gcd whose cost
// grows with the square of the length, and a long answer can chain thousands
// of them ("\frac{99}{97}" 600 times took 2 s under a 4000-digit cap). No real
// answer comes near 500 digits; past it the value is given up and the answers
// are compared as strings.
constexpr size_t kMaxDigits = 500;
// Largest |k| of a pi^k term. k is a machine int: unbounded, "{{\pi^{1024}}^{1024}}..."
// wrapped around to pi^0 and equalled 1.
constexpr int kMaxPiPower = 64;
// Longest integer literal read exactly; longer ones are no value (parsing and
// reducing thousands of digits costs far more than any real answer needs).
constexpr size_t kMaxLiteralDigits = 400;

Value make_value(const Term& term) {
  Value v;
  if (!term.coefficient.is_zero()) v[{term.radicand, term.pi_power}] = term.coefficient;
  return v;
}

size_t term_digits(const TermKey& key, const Rational& coefficient) {
  return coefficient.num().num_digits() + coefficient.den().num_digits() + key.radicand.num_digits();
}

// False (and *v unusable) when the sum outgrows kMaxDigits.
bool add_term(Value* v, const TermKey& key, const Rational& coefficient) {
  Rational sum = (*v)[key] + coefficient;
  if (sum.is_zero()) v->erase(key);
  else (*v)[key] = sum;
  return term_digits(key, sum) <= kMaxDigits;
}

// Factorising is only for the radicand of a \sqrt{}: products of surds never
// factorise (multiply_radicands), so a long answer costs at most this many trial
// divisions per \sqrt{}.
constexpr int64_t kTrialDivisionLimit = 10000;
constexpr size_t kMaxRadicandDigits = 60;  // longer radicands stay as written
constexpr int64_t kBigTrialDivisionLimit = 1000;

int64_t integer_sqrt(int64_t n) {
  int64_t root = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (root > 0 && root > n / root) root--;
  while (root + 1 <= n / (root + 1)) root++;
  return root;
}

// n = outside^2 * inside for 0 <= n < 2^63. After trial division by every p with
// p^3 <= rest, what is left has at most two prime factors (1, p, pq or p^2), so
// one square test finishes the job: exact whenever the trial divisions reach
// the cube root, which is always so for n up to 10^12.
void split_square_factors_small(int64_t n, int64_t* outside, int64_t* inside) {
  *outside = 1;
  *inside = 1;
  int64_t rest = n;
  if (rest <= 1) {
    *inside = rest;
    return;
  }
  for (int64_t p = 2; p <= kTrialDivisionLimit && p * p * p <= rest; p += p == 2 ? 1 : 2) {
    bool odd_power = false;
    while (rest % p == 0) {
      rest /= p;
      if (odd_power) *outside *= p;
      odd_power = !odd_power;
    }
    if (odd_power) *inside *= p;
  }
  int64_t root = integer_sqrt(rest);
  if (root * root == rest) *outside *= root;
  else *inside *= rest;
}

// n mod m from n's decimal digits: BigInt's division is general and slow, and
// trial division asks this a thousand times per radicand.
int64_t decimal_remainder(const std::string& digits, int64_t m) {
  int64_t r = 0;
  for (char c : digits) r = (r * 10 + (c - '0')) % m;
  return r;
}

// sqrt(n) = outside * sqrt(inside), n >= 0. inside is square-free when n fits
// in int64 and its cube root is reached (see above), or when n is larger and
// what is left after the primes up to 1000 fits in int64 and is split exactly;
// otherwise some square factor stays inside, which can only make equal values
// compare unequal, never the reverse. Radicands over 60 digits stay as written.
void split_square_factors(const BigInt& n, BigInt* outside, BigInt* inside) {
  int64_t small, out, in;
  if (n.to_int64(&small)) {
    split_square_factors_small(small, &out, &in);
    *outside = BigInt(out);
    *inside = BigInt(in);
    return;
  }
  *outside = BigInt(1);
  if (n.num_digits() > kMaxRadicandDigits) {
    *inside = n;
    return;
  }
  BigInt rest = n, square_free_part(1);
  std::string digits = rest.to_string();
  for (int64_t p = 2; p <= kBigTrialDivisionLimit; p++) {
    bool odd_power = false;
    while (decimal_remainder(digits, p) == 0) {
      rest = rest / BigInt(p);
      digits = rest.to_string();
      if (odd_power) *outside = *outside * BigInt(p);
      odd_power = !odd_power;
    }
    if (odd_power) square_free_part = square_free_part * BigInt(p);
    if (rest.to_int64(&small)) {  // the rest has no factor up to p: finish in int64
      split_square_factors_small(small, &out, &in);
      *outside = *outside * BigInt(out);
      *inside = square_free_part * BigInt(in);
      return;
    }
  }
  *inside = square_free_part * rest;
}

// sqrt(a) * sqrt(b) = g * sqrt((a/g) * (b/g)) with g = gcd(a, b). For square-free
// a and b, a/g and b/g are coprime and square-free, so the product is too:
// exact at any size, and no factorising (which made a 4k-character sum of surds
// take seconds).
void multiply_radicands(const BigInt& a, const BigInt& b, BigInt* outside, BigInt* inside) {
  if (a == BigInt(1) || b == BigInt(1)) {  // a rational factor: most products
    *outside = BigInt(1);
    *inside = a * b;
    return;
  }
  BigInt g = BigInt::gcd(a, b);
  *outside = g;
  *inside = (a / g) * (b / g);
}

bool multiply(const Value& a, const Value& b, Value* out) {
  Value product;
  for (const auto& [ka, ca] : a)
    for (const auto& [kb, cb] : b) {
      BigInt outside, inside;
      multiply_radicands(ka.radicand, kb.radicand, &outside, &inside);
      TermKey key{inside, ka.pi_power + kb.pi_power};  // both within kMaxPiPower: no overflow
      Rational c = ca * cb * Rational(outside);
      if (std::abs(key.pi_power) > kMaxPiPower || term_digits(key, c) > kMaxDigits ||
          !add_term(&product, key, c))
        return false;
    }
  if (product.size() > kMaxTerms) return false;
  *out = product;
  return true;
}

// 1 / (c sqrt(r) pi^k) = (1 / (c r)) sqrt(r) pi^-k. Only single terms: dividing
// by a sum would need rationalising denominators, which answers rarely need.
// |k| stays within kMaxPiPower, and powers are products, so multiply() bounds
// them all.
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
  if (q.is_zero()) {  // radicand 0 would be a nonzero-looking term
    *out = Value();
    return true;
  }
  // sqrt(p/q) = sqrt(p*q) / q; p and q split apart (smaller numbers factorise
  // better), and being coprime their square-free parts multiply square-free.
  BigInt num_outside, num_inside, den_outside, den_inside, outside, inside;
  split_square_factors(q.num(), &num_outside, &num_inside);
  split_square_factors(q.den(), &den_outside, &den_inside);
  multiply_radicands(num_inside, den_inside, &outside, &inside);
  Term t;
  t.coefficient = Rational(num_outside * den_outside * outside, q.den());
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
  // Square and multiply: log2(n) products, not n (each one reduces big rationals).
  Value result = make_value(Term{Rational(1), BigInt(1), 0});
  while (n > 0) {
    if ((n & 1) && !multiply(result, b, &result)) return false;
    n >>= 1;
    if (n > 0 && !multiply(b, b, &b)) return false;
  }
  *out = result;
  return true;
}

// Recursive descent over a normalised answer (no spaces):
//   sum     := ['+'|'-'] product (('+'|'-') product)*
//   product := unary (('*' | '/' | juxtaposition) unary)*
//   unary   := ('+'|'-')* power
//   power   := primary ('^' (group | ['-'] digits))?
//   primary := number | '(' sum ')' | '{' sum '}' | \frac A B | \sqrt A | \pi
// A number is a decimal with an optional exponent ("2.5E3", "1e-05").
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
      for (const auto& [key, c] : term)
        if (!add_term(&total, key, negative ? -c : c)) return fail();
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

  // Signs in a loop, not by recursion: the depth limit counts brackets, and
  // 60,000 "-" in a row overflowed the stack.
  Value unary() {
    bool negative = false;
    while (peek() == '-' || peek() == '+') negative ^= s[pos++] == '-';
    Value v = power_expr();
    if (negative)
      for (auto& [key, c] : v) c = -c;
    return v;
  }

  Value power_expr() {
    size_t start = pos;
    Value base = primary();
    if (failed) return base;
    // Mixed number: an integer literal followed directly by \frac{int}{int} or \frac12.
    if (at("\\frac") && std::isdigit(static_cast<unsigned char>(s[start]))) {
      size_t literal_end = start;
      while (literal_end < s.size() && std::isdigit(static_cast<unsigned char>(s[literal_end]))) literal_end++;
      if (literal_end == pos) {
        size_t save = pos;
        pos += 5;
        std::string numerator, denominator;
        if (integer_argument(&numerator) && integer_argument(&denominator) && peek() != '^') {
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
      else if (std::isdigit(static_cast<unsigned char>(peek()))) exponent = digits();
      else if (peek() == '-' && pos + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[pos + 1]))) {
        pos++;
        exponent = digits();
        for (auto& [key, c] : exponent) c = -c;
      } else return fail();
      if (failed || !power(base, exponent, &base)) return fail();
    }
    return base;
  }

  // A \frac argument that is an integer literal: "{123}" -> "123", or one bare
  // digit as in "\frac12". Advances only on success.
  bool integer_argument(std::string* digits) {
    if (std::isdigit(static_cast<unsigned char>(peek()))) {
      *digits = std::string(1, s[pos++]);
      return true;
    }
    if (peek() != '{') return false;
    size_t end = pos + 1;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) end++;
    if (end == pos + 1 || end >= s.size() || s[end] != '}' || end - pos - 1 > kMaxLiteralDigits) return false;
    *digits = s.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    return true;
  }

  Value digit() {
    Term t;
    t.coefficient = Rational(s[pos++] - '0');
    return make_value(t);
  }

  // The digit run of an unbraced exponent: "2^10" is 2^{10}.
  Value digits() {
    size_t start = pos;
    while (std::isdigit(static_cast<unsigned char>(peek()))) pos++;
    if (pos - start > kMaxLiteralDigits) return fail();
    return make_value(Term{Rational(BigInt::from_string(s.substr(start, pos - start))), BigInt(1), 0});
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
    // Scientific notation, as JSON writers print big and small numbers ("1e+20",
    // "1e-05", "2.5E3"): the e must be followed by digits, so "2e" stays 2 times e.
    if (pos > start && (peek() == 'e' || peek() == 'E')) {
      size_t exponent = pos + 1;
      if (exponent < s.size() && (s[exponent] == '+' || s[exponent] == '-')) exponent++;
      if (exponent < s.size() && std::isdigit(static_cast<unsigned char>(s[exponent]))) {
        pos = exponent;
        while (std::isdigit(static_cast<unsigned char>(peek()))) pos++;
      }
    }
    Rational number;
    if (pos == start || pos - start > kMaxLiteralDigits) return fail();
    if (!Rational::parse(s.substr(start, pos - start), &number)) return fail();
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

// A string that two items share exactly when scalars_equal says they are
// equal: the value's terms when the item parses, else the item itself (the
// prefixes keep the two kinds apart).
std::string canonical_form(const std::string& item) {
  Value v;
  if (!parse_value(item, &v)) return "text:" + item;
  std::string form = "value:";
  for (const auto& [key, c] : v)
    form += c.to_string() + "*sqrt(" + key.radicand.to_string() + ")*pi^" + std::to_string(key.pi_power) + ";";
  return form;
}

// Multisets compared by sorted canonical forms: each item is parsed once, where
// matching every item against every other took seconds for a 1000-item list.
bool unordered_equal(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() != b.size()) return false;
  std::vector<std::string> forms_a, forms_b;
  for (const auto& item : a) forms_a.push_back(canonical_form(item));
  for (const auto& item : b) forms_b.push_back(canonical_form(item));
  std::sort(forms_a.begin(), forms_a.end());
  std::sort(forms_b.begin(), forms_b.end());
  return forms_a == forms_b;
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
  replace_all(&s, "\xE2\x88\x92", "-");  // U+2212 minus sign
  // Percent signs go: "50\%" matches a reference of 50 or 50\%, nothing else
  // (not 0.5: whether the reference means 50 or 1/2 is not known here).
  replace_all(&s, "\\%", "");
  replace_all(&s, "%", "");
  s = join_thin_space_thousands(s);
  for (const char* space : {"\\!", "\\,", "\\;", "\\:", "\\ ", "~"}) replace_all(&s, space, " ");
  replace_all(&s, "\\times", "*");
  replace_all(&s, "\\cdot", "*");
  replace_all(&s, "\\div", "/");
  // Units first, while \text{} still marks them and spaces still part words.
  s = strip_trailing_units(s);
  for (const char* wrapper : {"\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mathbf",
                              "\\mbox", "\\operatorname", "\\boxed"})
    unwrap_command(&s, wrapper);
  s = trim(s);
  while (!s.empty() && s.back() == '.') s = trim(s.substr(0, s.size() - 1));
  // "x = 5", "y_1 = 5", "\theta = 5" or "5 = x" when the answer is a single equation.
  size_t equals = s.find('=');
  if (equals != std::string::npos && s.find('=', equals + 1) == std::string::npos) {
    std::string lhs = trim(s.substr(0, equals)), rhs = trim(s.substr(equals + 1));
    if (is_variable_name(lhs) && !rhs.empty()) s = rhs;
    else if (is_variable_name(rhs) && !lhs.empty()) s = lhs;
  }
  // Thousands separators before the spaces go: "1,000" is one number but
  // "1, 100" is two (a space after the comma makes it a list).
  if (is_thousands_number(s)) s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  s = remove_spaces(s);
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

namespace {

// Where the answer begins after the last "answer is", "answer:" or "answer**:"
// ("**Final Answer:** 5", "**Answer**: 5") in the lowercased text.
bool find_answer_phrase(const std::string& lower, size_t* start) {
  bool found = false;
  for (size_t at = lower.find("answer"); at != std::string::npos; at = lower.find("answer", at + 1)) {
    size_t j = at + 6;
    while (j < lower.size() && lower[j] == '*') j++;
    if (j < lower.size() && lower[j] == ':') {
      *start = j + 1;
      found = true;
    } else if (lower.compare(j, 3, " is") == 0 &&
               (j + 3 == lower.size() || !std::isalpha(static_cast<unsigned char>(lower[j + 3])))) {
      *start = j + 3;
      found = true;
    }
  }
  return found;
}

// Where the sentence that goes on at `from` ends: ". " or a line break.
size_t sentence_end(const std::string& text, size_t from) {
  return std::min(text.find(". ", from), text.find('\n', from));
}

// The answer stated from `start` on: the first "$...$" / "$$...$$" span if one
// opens before the sentence ends ("is $5$. I hope it is correct." -> "5"),
// else the text up to the end of the sentence, without the Markdown bold,
// colons, "$" and final "." around it. An inline "$...$" must close within its
// sentence, so a dollar sign ("is $5. Then $x$ ...") does not swallow the next one.
std::string answer_after_phrase(const std::string& text, size_t start) {
  auto is_decoration = [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == '*' || c == ':' || c == '$';
  };
  size_t i = start;
  while (i < text.size() && is_decoration(text[i]) && text[i] != '$') i++;
  size_t stop = sentence_end(text, i);
  size_t dollar = text.find('$', i);
  std::string found;
  if (dollar < stop) {
    bool display = text.compare(dollar, 2, "$$") == 0;
    size_t open = dollar + (display ? 2 : 1);
    size_t close = text.find(display ? "$$" : "$", open);
    if (close != std::string::npos && (display || close < sentence_end(text, open)))
      found = text.substr(open, close - open);
  }
  if (trim(found).empty()) found = text.substr(i, stop == std::string::npos ? std::string::npos : stop - i);
  size_t begin = 0, end = found.size();
  while (begin < end && is_decoration(found[begin])) begin++;
  while (end > begin && (is_decoration(found[end - 1]) || found[end - 1] == '.')) end--;
  return found.substr(begin, end - begin);
}

}  // namespace

bool extract_math_answer(const std::string& response, std::string* answer) {
  std::string region = answer_region(response);
  std::string boxed;
  if (extract_last_boxed(region, &boxed)) {
    *answer = boxed;
    return !trim(boxed).empty();
  }
  // A box that never closes is a final answer cut off at the length limit: no
  // answer, not whatever an earlier "Answer: 3" said.
  if (region.find("\\boxed") != std::string::npos || region.find("\\fbox") != std::string::npos)
    return false;
  size_t start;
  if (!find_answer_phrase(to_lower(region), &start)) return false;
  std::string found = answer_after_phrase(region, start);
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
