// Exact big-integer and rational arithmetic (see rational.h for the why).
#include "data/rational.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "src/common/error.h"

namespace polaris {

// ---------------------------------------------------------------------------
// BigInt

BigInt::BigInt(int64_t value) {
  negative_ = value < 0;
  // Work in uint64 so INT64_MIN does not overflow when negated.
  uint64_t magnitude = negative_ ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  while (magnitude > 0) {
    limbs_.push_back(static_cast<uint32_t>(magnitude % kBase));
    magnitude /= kBase;
  }
}

void BigInt::trim() {
  while (!limbs_.empty() && limbs_.back() == 0) limbs_.pop_back();
  if (limbs_.empty()) negative_ = false;
}

BigInt BigInt::from_string(const std::string& decimal) {
  size_t i = 0;
  bool negative = false;
  if (i < decimal.size() && (decimal[i] == '-' || decimal[i] == '+')) {
    negative = decimal[i] == '-';
    i++;
  }
  require(i < decimal.size(), "BigInt: no digits in \"" + decimal + "\"");
  for (size_t j = i; j < decimal.size(); j++)
    require(decimal[j] >= '0' && decimal[j] <= '9', "BigInt: not a decimal integer: \"" + decimal + "\"");
  BigInt result;
  // Read 9-digit chunks from the right end.
  for (size_t end = decimal.size(); end > i;) {
    size_t begin = end >= i + 9 ? end - 9 : i;
    uint32_t limb = 0;
    for (size_t j = begin; j < end; j++) limb = limb * 10 + static_cast<uint32_t>(decimal[j] - '0');
    result.limbs_.push_back(limb);
    end = begin;
  }
  result.negative_ = negative;
  result.trim();
  return result;
}

std::string BigInt::to_string() const {
  if (limbs_.empty()) return "0";
  std::string out = negative_ ? "-" : "";
  out += std::to_string(limbs_.back());
  for (size_t k = limbs_.size() - 1; k-- > 0;) {
    std::string chunk = std::to_string(limbs_[k]);
    out += std::string(9 - chunk.size(), '0') + chunk;
  }
  return out;
}

size_t BigInt::num_digits() const {
  if (limbs_.empty()) return 1;
  return (limbs_.size() - 1) * 9 + std::to_string(limbs_.back()).size();
}

bool BigInt::to_int64(int64_t* out) const {
  if (limbs_.size() > 3) return false;
  unsigned __int128 magnitude = 0;
  for (size_t k = limbs_.size(); k-- > 0;) magnitude = magnitude * kBase + limbs_[k];
  unsigned __int128 limit = static_cast<unsigned __int128>(INT64_MAX) + (negative_ ? 1 : 0);
  if (magnitude > limit) return false;
  *out = negative_ ? static_cast<int64_t>(0 - static_cast<uint64_t>(magnitude))
                   : static_cast<int64_t>(magnitude);
  return true;
}

BigInt BigInt::operator-() const {
  BigInt result = *this;
  if (!result.is_zero()) result.negative_ = !negative_;
  return result;
}

BigInt BigInt::abs() const {
  BigInt result = *this;
  result.negative_ = false;
  return result;
}

int BigInt::compare_magnitude(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (size_t k = a.size(); k-- > 0;)
    if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
  return 0;
}

std::vector<uint32_t> BigInt::add_magnitude(const std::vector<uint32_t>& a,
                                            const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out;
  uint32_t carry = 0;
  for (size_t k = 0; k < std::max(a.size(), b.size()) || carry; k++) {
    uint64_t sum = carry;
    if (k < a.size()) sum += a[k];
    if (k < b.size()) sum += b[k];
    out.push_back(static_cast<uint32_t>(sum % kBase));
    carry = static_cast<uint32_t>(sum / kBase);
  }
  return out;
}

std::vector<uint32_t> BigInt::sub_magnitude(const std::vector<uint32_t>& a,
                                            const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out(a.size());
  int64_t borrow = 0;
  for (size_t k = 0; k < a.size(); k++) {
    int64_t diff = static_cast<int64_t>(a[k]) - borrow - (k < b.size() ? b[k] : 0);
    borrow = diff < 0;
    if (diff < 0) diff += kBase;
    out[k] = static_cast<uint32_t>(diff);
  }
  return out;
}

BigInt operator+(const BigInt& a, const BigInt& b) {
  BigInt result;
  if (a.negative_ == b.negative_) {
    result.limbs_ = BigInt::add_magnitude(a.limbs_, b.limbs_);
    result.negative_ = a.negative_;
  } else if (BigInt::compare_magnitude(a.limbs_, b.limbs_) >= 0) {
    result.limbs_ = BigInt::sub_magnitude(a.limbs_, b.limbs_);
    result.negative_ = a.negative_;
  } else {
    result.limbs_ = BigInt::sub_magnitude(b.limbs_, a.limbs_);
    result.negative_ = b.negative_;
  }
  result.trim();
  return result;
}

BigInt operator-(const BigInt& a, const BigInt& b) { return a + (-b); }

BigInt operator*(const BigInt& a, const BigInt& b) {
  BigInt result;
  if (a.is_zero() || b.is_zero()) return result;
  std::vector<uint64_t> acc(a.limbs_.size() + b.limbs_.size() + 1, 0);
  for (size_t i = 0; i < a.limbs_.size(); i++) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b.limbs_.size() || carry; j++) {
      uint64_t cur = acc[i + j] + carry + (j < b.limbs_.size() ? uint64_t(a.limbs_[i]) * b.limbs_[j] : 0);
      acc[i + j] = cur % BigInt::kBase;
      carry = cur / BigInt::kBase;
    }
  }
  result.limbs_.assign(acc.begin(), acc.end());
  result.negative_ = a.negative_ != b.negative_;
  result.trim();
  return result;
}

void BigInt::divmod(const BigInt& a, const BigInt& b, BigInt* quotient, BigInt* remainder) {
  require(!b.is_zero(), "BigInt: division by zero");
  BigInt divisor = b.abs();
  BigInt q, r;
  q.limbs_.assign(a.limbs_.size(), 0);
  if (divisor.limbs_.size() == 1) {
    // A one-limb divisor (small factors, the last steps of every gcd): short
    // division, one machine division per limb instead of a binary search.
    uint64_t d = divisor.limbs_[0], rest = 0;
    for (size_t k = a.limbs_.size(); k-- > 0;) {
      uint64_t current = rest * kBase + a.limbs_[k];
      q.limbs_[k] = static_cast<uint32_t>(current / d);
      rest = current % d;
    }
    r = BigInt(static_cast<int64_t>(rest));
  } else {
    // Long division, one base-10^9 limb at a time, from the most significant:
    // r = r * base + limb; the quotient limb is the largest d with divisor*d <= r
    // (d < base because r < divisor * base). d is estimated from the leading
    // limbs (r's top three over the divisor's top two, off by at most a couple)
    // and then corrected, so a limb costs one multiplication, not a search:
    // gcds of thousand-digit rationals stay in milliseconds.
    const size_t n = divisor.limbs_.size();
    auto leading = [](const std::vector<uint32_t>& limbs, size_t count) {
      long double value = 0;
      for (size_t k = 1; k <= count; k++)
        value = value * kBase + (k <= limbs.size() ? limbs[limbs.size() - k] : 0);
      return value;
    };
    const long double divisor_top = leading(divisor.limbs_, 2);
    // The top n-1 limbs are below the divisor (quotient limbs 0): start with them
    // at once, so a division costs O(n * (len(a) - n + 1)), linear for the
    // similar-sized operands of every gcd step.
    size_t head = std::min(a.limbs_.size(), n - 1);
    r.limbs_.assign(a.limbs_.end() - head, a.limbs_.end());
    for (size_t k = a.limbs_.size() - head; k-- > 0;) {
      r.limbs_.insert(r.limbs_.begin(), a.limbs_[k]);
      r.trim();
      if (r.limbs_.size() < n) continue;  // r < divisor: the quotient limb is 0
      // r ~ top3 * base^(len-3), divisor ~ top2 * base^(n-2), len is n or n+1.
      long double estimate = leading(r.limbs_, 3) / divisor_top;
      if (r.limbs_.size() == n) estimate /= kBase;
      uint32_t digit = static_cast<uint32_t>(std::clamp<long double>(estimate, 0, kBase - 1));
      BigInt product = divisor * BigInt(digit);
      while (compare_magnitude(product.limbs_, r.limbs_) > 0) {
        digit--;
        product = product - divisor;
      }
      while (compare_magnitude((product + divisor).limbs_, r.limbs_) <= 0) {
        digit++;
        product = product + divisor;
      }
      q.limbs_[k] = digit;
      r = r - product;
    }
  }
  q.negative_ = a.negative_ != b.negative_;
  q.trim();
  r.negative_ = a.negative_;  // remainder takes the dividend's sign (truncation)
  r.trim();
  if (quotient) *quotient = q;
  if (remainder) *remainder = r;
}

BigInt operator/(const BigInt& a, const BigInt& b) {
  BigInt q;
  BigInt::divmod(a, b, &q, nullptr);
  return q;
}

BigInt operator%(const BigInt& a, const BigInt& b) {
  BigInt r;
  BigInt::divmod(a, b, nullptr, &r);
  return r;
}

bool operator==(const BigInt& a, const BigInt& b) {
  return a.negative_ == b.negative_ && a.limbs_ == b.limbs_;
}

bool operator<(const BigInt& a, const BigInt& b) {
  if (a.negative_ != b.negative_) return a.negative_;
  int c = BigInt::compare_magnitude(a.limbs_, b.limbs_);
  return a.negative_ ? c > 0 : c < 0;
}

BigInt BigInt::gcd(BigInt a, BigInt b) {
  a = a.abs();
  b = b.abs();
  while (!b.is_zero()) {
    int64_t x, y;
    if (a.to_int64(&x) && b.to_int64(&y)) return BigInt(std::gcd(x, y));  // machine words from here on
    BigInt r = a % b;
    a = b;
    b = r;
  }
  return a;
}

BigInt BigInt::pow(const BigInt& base, unsigned exponent) {
  BigInt result(1), square = base;
  while (exponent) {
    if (exponent & 1) result = result * square;
    exponent >>= 1;
    if (exponent) square = square * square;
  }
  return result;
}

// ---------------------------------------------------------------------------
// Rational

Rational::Rational(const BigInt& num, const BigInt& den) : num_(num), den_(den) {
  require(!den.is_zero(), "Rational: zero denominator");
  normalize();
}

void Rational::normalize() {
  if (den_.is_negative()) {
    num_ = -num_;
    den_ = -den_;
  }
  BigInt g = BigInt::gcd(num_, den_);
  if (g != BigInt(1) && !g.is_zero()) {
    num_ = num_ / g;
    den_ = den_ / g;
  }
  if (num_.is_zero()) den_ = BigInt(1);
}

// Largest |exponent| of "1e+20"-style numbers: a double ends near 1e+308, and
// 10^n for a larger n only costs time (an answer is never that big).
constexpr int64_t kMaxDecimalExponent = 1000;

// A decimal like "-12.50", ".5" or "2.5E3" / "1e-05" (how JSON writers print
// large and small doubles) -> exact rational.
static bool parse_decimal(const std::string& text, Rational* out) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  std::string digits;
  int64_t exponent = 0;  // value = digits * 10^exponent
  bool seen_point = false, seen_digit = false;
  for (; i < text.size(); i++) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      digits += c;
      seen_digit = true;
      if (seen_point) exponent--;
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
  }
  if (!seen_digit) return false;
  if (i < text.size()) {  // only an exponent may follow: e or E, a sign, digits
    if (text[i] != 'e' && text[i] != 'E') return false;
    i++;
    bool negative_exponent = false;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative_exponent = text[i++] == '-';
    if (i == text.size()) return false;
    int64_t written = 0;
    for (; i < text.size(); i++) {
      if (text[i] < '0' || text[i] > '9') return false;
      written = written * 10 + (text[i] - '0');
      if (written > kMaxDecimalExponent) return false;
    }
    exponent += negative_exponent ? -written : written;
  }
  BigInt num = BigInt::from_string(digits);
  if (negative) num = -num;
  if (exponent >= 0) {
    *out = Rational(num * BigInt::pow(BigInt(10), static_cast<unsigned>(exponent)));
  } else {
    *out = Rational(num, BigInt::pow(BigInt(10), static_cast<unsigned>(-exponent)));
  }
  return true;
}

bool Rational::parse(const std::string& text, Rational* out) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) return parse_decimal(text, out);
  Rational num, den;
  if (!parse_decimal(text.substr(0, slash), &num) || !parse_decimal(text.substr(slash + 1), &den))
    return false;
  if (den.is_zero()) return false;
  *out = num / den;
  return true;
}

std::string Rational::to_string() const {
  return is_integer() ? num_.to_string() : num_.to_string() + "/" + den_.to_string();
}

Rational Rational::operator-() const {
  Rational r = *this;
  r.num_ = -r.num_;
  return r;
}

// The operations below reduce with gcds of the operands' parts (Knuth, TAOCP
// 4.5.1) instead of one gcd of the full product: in a long product like
// (4/3)(4/3)... the gcds pair a big number with a small one, which costs one
// short division, where reducing 4^k / 3^k from scratch cost a whole Euclid
// run of big divisions per step.

Rational Rational::reduced(BigInt num, BigInt den) {
  Rational r;
  r.num_ = std::move(num);
  r.den_ = r.num_.is_zero() ? BigInt(1) : std::move(den);
  return r;
}

static BigInt divide_out(const BigInt& a, const BigInt& g) { return g == BigInt(1) ? a : a / g; }

Rational operator+(const Rational& a, const Rational& b) {
  BigInt g = BigInt::gcd(a.den_, b.den_);
  if (g == BigInt(1)) return Rational::reduced(a.num_ * b.den_ + b.num_ * a.den_, a.den_ * b.den_);
  // With a.den = g*s and b.den = g*t: a + b = (a.num*t + b.num*s) / (g*s*t), and
  // only g can share a factor with that numerator.
  BigInt s = a.den_ / g, t = b.den_ / g;
  BigInt num = a.num_ * t + b.num_ * s;
  BigInt g2 = BigInt::gcd(num, g);
  return Rational::reduced(divide_out(num, g2), s * divide_out(b.den_, g2));
}
Rational operator-(const Rational& a, const Rational& b) { return a + (-b); }
Rational operator*(const Rational& a, const Rational& b) {
  // a.num/a.den and b.num/b.den are reduced, so only cross pairs share factors.
  BigInt g1 = BigInt::gcd(a.num_, b.den_), g2 = BigInt::gcd(b.num_, a.den_);
  return Rational::reduced(divide_out(a.num_, g1) * divide_out(b.num_, g2),
                           divide_out(a.den_, g2) * divide_out(b.den_, g1));
}
Rational operator/(const Rational& a, const Rational& b) {
  require(!b.is_zero(), "Rational: division by zero");
  Rational inverse;  // b's parts swapped, the sign moved up: still reduced
  inverse.num_ = b.num_.is_negative() ? -b.den_ : b.den_;
  inverse.den_ = b.num_.abs();
  return a * inverse;
}
bool operator<(const Rational& a, const Rational& b) {
  return a.num_ * b.den_ < b.num_ * a.den_;  // dens are positive
}

}  // namespace polaris
