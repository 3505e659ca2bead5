#include "data/synthetic_tasks.h"

#include <cstring>

#include "src/common/error.h"

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

}  // namespace polaris
