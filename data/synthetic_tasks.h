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

// a+b with `digits`-digit operands. Held out: one pair in ten, picked by a
// hash of (a, b), so every digit pattern still occurs in training.
class AdditionTask {
 public:
  explicit AdditionTask(int digits) : digits_(digits) {}
  Problem sample(std::mt19937_64& rng, bool held_out) const;
  Problem make(long long a, long long b) const;
  static bool is_held_out(long long a, long long b);
  // The final answer in a completion: the text before <eos>/newline.
  static std::string extract_answer(const std::string& completion);

 private:
  int digits_;
};

// a+b written out column by column, right to left, then the answer:
//   "347+285=" -> "7+5=12,4+8+1=13,3+2+1=6:632"
// (each column: the digits, "+1" when a carry comes in, "=" the column sum).
// A demonstration can be made with a slip: the first column that receives a
// carry forgets it, and the rest of the trace follows from the slip, so the
// final answer is wrong in a way the trace explains. Imitating such data
// gives a model that slips at that rate; reinforcement learning on the
// verifiable answer can then remove the slip (make demo-rl). Held out: as
// for AdditionTask.
class TraceAdditionTask {
 public:
  explicit TraceAdditionTask(int digits) : digits_(digits) {}
  Problem make(long long a, long long b, bool slip) const;
  Problem sample(std::mt19937_64& rng, bool held_out, double slip_rate) const;
  // The answer after the last ':' of a completion ("" when there is none).
  static std::string extract_answer(const std::string& completion);

 private:
  int digits_;
};

}  // namespace polaris
