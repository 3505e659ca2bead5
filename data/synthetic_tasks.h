// Synthetic tasks generated in-process, for the built-in demos and tests.
//
// They need no files and no tokenizer: a small character vocabulary maps each
// character to one id. Every task splits its problems into a training set and
// a held-out set by a fixed rule on the operands, so a demo can report
// accuracy on problems it never trained on.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace polaris {

// One id per character of `alphabet`, then <bos> and <eos>.
class CharVocab {
 public:
  CharVocab();  // digits, arithmetic signs, letters, punctuation, space, newline
  int size() const { return int(alphabet_.size()) + 2; }
  int bos() const { return int(alphabet_.size()); }
  int eos() const { return int(alphabet_.size()) + 1; }
  std::vector<int32_t> encode(const std::string& text) const;  // throws on a foreign char
  std::string decode(const std::vector<int32_t>& ids) const;   // stops at <eos>; skips <bos>

 private:
  std::string alphabet_;
  int index_[256];
};

struct Problem {
  std::string prompt;   // what the model is given, e.g. "47+38="
  std::string answer;   // the final answer, e.g. "85"
  std::string target;   // the full text to imitate after the prompt (answer or trace + answer)
};

// a+b with `digits`-digit operands. Held out: (a * 7 + b) % 10 == 3.
class AdditionTask {
 public:
  explicit AdditionTask(int digits) : digits_(digits) {}
  Problem sample(std::mt19937_64& rng, bool held_out) const;
  Problem make(long long a, long long b) const;
  bool is_held_out(long long a, long long b) const { return (a * 7 + b) % 10 == 3; }
  // The final answer in a completion: the text before <eos>/newline.
  static std::string extract_answer(const std::string& completion);

 private:
  int digits_;
};

}  // namespace polaris
