// Exact arithmetic for the verifiers: arbitrary-precision integers and rationals.
//
// Reward verifiers must never say "equal" because two numbers round to the same
// double (0.1 + 0.2 vs 0.3, or two 50-digit integers that differ in the last
// digit). So answers are parsed into exact rationals p/q with big integers.
//
// BigInt: sign + magnitude in base 10^9 limbs (least significant first), so
// decimal parsing and printing are trivial. Schoolbook add/sub/mul; division is
// short division by a one-limb divisor, else long division with each quotient
// limb estimated from the leading limbs and corrected. The numbers verifiers
// see are at most a few thousand digits, where this is plenty fast.
//
// Rational: num/den with den > 0 and gcd(num, den) = 1, so equality is just
// equality of the two integers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace polaris {

class BigInt {
 public:
  BigInt() = default;
  BigInt(int64_t value);  // NOLINT: implicit on purpose, for literals like BigInt(2)
  // Parses an optional sign and decimal digits ("-0042"). Throws Error otherwise.
  static BigInt from_string(const std::string& decimal);
  std::string to_string() const;

  bool is_zero() const { return limbs_.empty(); }
  bool is_negative() const { return negative_; }
  int sign() const { return is_zero() ? 0 : (negative_ ? -1 : 1); }
  size_t num_digits() const;  // decimal digits of |this| (0 has 1 digit)
  // True and *out set when |this| fits in int64.
  bool to_int64(int64_t* out) const;

  BigInt operator-() const;
  BigInt abs() const;
  friend BigInt operator+(const BigInt& a, const BigInt& b);
  friend BigInt operator-(const BigInt& a, const BigInt& b);
  friend BigInt operator*(const BigInt& a, const BigInt& b);
  // Truncating division (like C++ ints): q = trunc(a / b), r = a - q*b.
  // Throws Error on division by zero.
  static void divmod(const BigInt& a, const BigInt& b, BigInt* quotient, BigInt* remainder);
  friend BigInt operator/(const BigInt& a, const BigInt& b);
  friend BigInt operator%(const BigInt& a, const BigInt& b);

  friend bool operator==(const BigInt& a, const BigInt& b);
  friend bool operator!=(const BigInt& a, const BigInt& b) { return !(a == b); }
  friend bool operator<(const BigInt& a, const BigInt& b);
  friend bool operator>(const BigInt& a, const BigInt& b) { return b < a; }
  friend bool operator<=(const BigInt& a, const BigInt& b) { return !(b < a); }
  friend bool operator>=(const BigInt& a, const BigInt& b) { return !(a < b); }

  static BigInt gcd(BigInt a, BigInt b);  // always >= 0
  static BigInt pow(const BigInt& base, unsigned exponent);

 private:
  static constexpr uint32_t kBase = 1000000000u;
  std::vector<uint32_t> limbs_;  // magnitude, little-endian, no leading zero limbs
  bool negative_ = false;        // never true for zero

  void trim();
  static int compare_magnitude(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
  static std::vector<uint32_t> add_magnitude(const std::vector<uint32_t>& a,
                                             const std::vector<uint32_t>& b);
  // Requires |a| >= |b|.
  static std::vector<uint32_t> sub_magnitude(const std::vector<uint32_t>& a,
                                             const std::vector<uint32_t>& b);
};

class Rational {
 public:
  Rational() : num_(0), den_(1) {}
  Rational(int64_t value) : num_(value), den_(1) {}  // NOLINT: implicit on purpose
  Rational(const BigInt& value) : num_(value), den_(1) {}  // NOLINT
  // Throws Error when den is zero.
  Rational(const BigInt& num, const BigInt& den);

  // Parses "12", "-3.250", ".5", "7/8", "-1.5/2" and scientific notation
  // ("1e+20", "1e-05", "2.5E3"; exponents up to 1000). False on anything else.
  static bool parse(const std::string& text, Rational* out);

  const BigInt& num() const { return num_; }
  const BigInt& den() const { return den_; }
  bool is_zero() const { return num_.is_zero(); }
  bool is_integer() const { return den_ == BigInt(1); }
  int sign() const { return num_.sign(); }
  std::string to_string() const;  // "p" or "p/q"

  Rational operator-() const;
  friend Rational operator+(const Rational& a, const Rational& b);
  friend Rational operator-(const Rational& a, const Rational& b);
  friend Rational operator*(const Rational& a, const Rational& b);
  friend Rational operator/(const Rational& a, const Rational& b);  // throws Error on /0
  friend bool operator==(const Rational& a, const Rational& b) {
    return a.num_ == b.num_ && a.den_ == b.den_;
  }
  friend bool operator!=(const Rational& a, const Rational& b) { return !(a == b); }
  friend bool operator<(const Rational& a, const Rational& b);

 private:
  BigInt num_, den_;
  void normalize();
  // num/den known to be in lowest terms with den > 0: no gcd (a zero gets den 1).
  static Rational reduced(BigInt num, BigInt den);
};

}  // namespace polaris
