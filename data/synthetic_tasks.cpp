#include "data/synthetic_tasks.h"

#include <cstring>

#include "src/common/error.h"
#include "src/common/mix.h"

namespace polaris {

CharVocab::CharVocab() : alphabet_("0123456789+-*/=()<>,.:; abcdefghijklmnopqrstuvwxyz\n") {
  std::memset(index_, -1, sizeof(index_));
  for (size_t i = 0; i < alphabet_.size(); ++i) index_[(unsigned char)alphabet_[i]] = int(i);
}

std::vector<int32_t> CharVocab::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char ch : text) {
    require(index_[ch] >= 0, std::string("character vocabulary has no '") + char(ch) + "'");
    ids.push_back(index_[ch]);
  }
  return ids;
}

std::string CharVocab::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id == eos()) break;
    if (id >= 0 && id < int(alphabet_.size())) text += alphabet_[size_t(id)];
  }
  return text;
}

bool AdditionTask::is_held_out(long long a, long long b) {
  // A fixed hash, so neighbouring pairs fall on both sides of the split.
  return mix64(uint64_t(a) * 1000003u + uint64_t(b)) % 10 == 0;
}

Problem AdditionTask::make(long long a, long long b) const {
  Problem p;
  p.prompt = std::to_string(a) + "+" + std::to_string(b) + "=";
  p.answer = std::to_string(a + b);
  p.target = p.answer;
  return p;
}

Problem AdditionTask::sample(std::mt19937_64& rng, bool held_out) const {
  long long limit = 1;
  for (int i = 0; i < digits_; ++i) limit *= 10;
  std::uniform_int_distribution<long long> operand(0, limit - 1);
  while (true) {
    long long a = operand(rng), b = operand(rng);
    if (is_held_out(a, b) == held_out) return make(a, b);
  }
}

std::string AdditionTask::extract_answer(const std::string& completion) {
  size_t end = completion.find('\n');
  return completion.substr(0, end);
}

Problem TraceAdditionTask::make(long long a, long long b, bool slip) const {
  Problem p;
  p.prompt = std::to_string(a) + "+" + std::to_string(b) + "=";
  p.answer = std::to_string(a + b);
  std::string trace, digits;
  int carry = 0;
  bool slipped = false;
  long long x = a, y = b;
  for (int column = 0; column < digits_; ++column, x /= 10, y /= 10) {
    const int da = int(x % 10), db = int(y % 10);
    int carry_in = carry;
    if (carry_in && slip && !slipped) {
      carry_in = 0;  // the slip: this column forgets its incoming carry
      slipped = true;
    }
    const int sum = da + db + carry_in;
    if (column > 0) trace += ",";
    trace += std::to_string(da) + "+" + std::to_string(db) + (carry_in ? "+1" : "") + "=" +
             std::to_string(sum);
    digits.insert(digits.begin(), char('0' + sum % 10));
    carry = sum / 10;
  }
  if (carry) digits.insert(digits.begin(), '1');
  size_t first = digits.find_first_not_of('0');
  digits = first == std::string::npos ? "0" : digits.substr(first);
  p.target = trace + ":" + digits;
  return p;
}

Problem TraceAdditionTask::sample(std::mt19937_64& rng, bool held_out, double slip_rate) const {
  long long limit = 1;
  for (int i = 0; i < digits_; ++i) limit *= 10;
  std::uniform_int_distribution<long long> operand(0, limit - 1);
  std::bernoulli_distribution slip(slip_rate);
  while (true) {
    long long a = operand(rng), b = operand(rng);
    if (AdditionTask::is_held_out(a, b) == held_out) return make(a, b, slip(rng));
  }
}

std::string TraceAdditionTask::extract_answer(const std::string& completion) {
  size_t colon = completion.rfind(':');
  if (colon == std::string::npos) return "";
  std::string answer = completion.substr(colon + 1);
  return answer.substr(0, answer.find('\n'));
}

}  // namespace polaris
