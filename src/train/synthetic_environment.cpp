#include "src/train/synthetic_environment.h"

#include <functional>
#include <random>

#include "data/synthetic_tasks.h"
#include "src/common/error.h"

namespace polaris {

namespace {

// Both tasks behind one face: a problem sampler and an answer extractor.
struct TaskSpec {
  std::function<Problem(std::mt19937_64&, bool held_out, double slip_rate)> sample;
  std::function<std::string(const std::string&)> extract_answer;
};

TaskSpec task_spec(const std::string& name) {
  if (name == "addition") {
    auto task = std::make_shared<AdditionTask>(2);
    return {[task](std::mt19937_64& rng, bool held_out, double) {
              return task->sample(rng, held_out);
            },
            AdditionTask::extract_answer};
  }
  if (name == "addition-trace" || name == "addition-trace-3") {
    auto task = std::make_shared<TraceAdditionTask>(name == "addition-trace" ? 2 : 3);
    return {[task](std::mt19937_64& rng, bool held_out, double slip_rate) {
              return task->sample(rng, held_out, slip_rate);
            },
            TraceAdditionTask::extract_answer};
  }
  std::string known;
  for (const std::string& n : synthetic_task_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("--task: unknown task '" + name + "' (known: " + known + ")");
}

class SyntheticEnvironment : public RlEnvironment {
 public:
  SyntheticEnvironment(const std::string& name, size_t train_size, size_t eval_size,
                       uint64_t seed)
      : name_(name), spec_(task_spec(name)) {
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < train_size; ++i) train_.push_back(spec_.sample(rng, false, 0.0));
    for (size_t i = 0; i < eval_size; ++i) eval_.push_back(spec_.sample(rng, true, 0.0));
  }
  std::string name() const override { return "task " + name_; }
  std::string where(Split, size_t) const override { return "--task " + name_; }
  size_t size(Split split) const override { return problems(split).size(); }
  std::vector<int32_t> prompt(Split split, size_t index) const override {
    std::vector<int32_t> ids = {vocab_.bos()};
    for (int32_t id : vocab_.encode(problems(split)[index].prompt)) ids.push_back(id);
    return ids;
  }
  Score score(Split split, size_t index, const std::vector<int32_t>& completion) const override {
    Score s;
    const std::string text = vocab_.decode(completion);
    s.answer = spec_.extract_answer(text);
    s.format_ok = !completion.empty() && completion.back() == vocab_.eos() && !s.answer.empty();
    s.correct = s.format_ok && s.answer == problems(split)[index].answer;
    s.reward = s.correct ? 1.0 : 0.0;
    return s;
  }
  std::vector<int32_t> stop_tokens() const override { return {vocab_.eos()}; }
  std::string decode(const std::vector<int32_t>& completion) const override {
    return vocab_.decode(completion);
  }
  std::string prompt_text(Split split, size_t index) const override {
    return problems(split)[index].prompt;
  }

 private:
  const std::vector<Problem>& problems(Split split) const {
    return split == Split::Train ? train_ : eval_;
  }
  std::string name_;
  TaskSpec spec_;
  CharVocab vocab_;
  std::vector<Problem> train_, eval_;
};

}  // namespace

std::vector<std::string> synthetic_task_names() {
  return {"addition", "addition-trace", "addition-trace-3"};
}

std::vector<PackSequence> synthetic_sft_sequences(const std::string& task, size_t count,
                                                  bool held_out, double slip_rate,
                                                  uint64_t seed) {
  TaskSpec spec = task_spec(task);
  CharVocab vocab;
  std::mt19937_64 rng(seed);
  std::vector<PackSequence> sequences;
  for (size_t i = 0; i < count; ++i) {
    Problem p = spec.sample(rng, held_out, slip_rate);
    PackSequence seq;
    seq.ids = {vocab.bos()};
    for (int32_t id : vocab.encode(p.prompt)) seq.ids.push_back(id);
    seq.weights.assign(seq.ids.size(), 0.f);
    for (int32_t id : vocab.encode(p.target)) seq.ids.push_back(id);
    seq.ids.push_back(vocab.eos());
    seq.weights.resize(seq.ids.size(), 1.f);
    sequences.push_back(std::move(seq));
  }
  return sequences;
}

std::unique_ptr<RlEnvironment> make_synthetic_environment(const std::string& task,
                                                          size_t train_size, size_t eval_size,
                                                          uint64_t seed) {
  return std::unique_ptr<RlEnvironment>(new SyntheticEnvironment(task, train_size, eval_size, seed));
}

}  // namespace polaris
