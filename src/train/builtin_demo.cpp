// The built-in default (`polaris_train` with no arguments, `make demo`):
// a tiny Qwen3-style model learns 2-digit addition written as text
// ("47+38=85"), from scratch, in about a minute on 2 CPU cores. The loss is
// on the answer only; at the end it answers held-out problems (a fixed rule
// on the operands keeps them out of training) greedily.
#include <cstdio>
#include <random>

#include "data/synthetic_tasks.h"
#include "model/sampler.h"
#include "src/common/backend.h"
#include "src/train/loops.h"
#include "src/train/step_report.h"

namespace polaris {

namespace {

constexpr int kDigits = 2;
constexpr int kRowTokens = 12;  // <bos> + "99+99=" + "198" + <eos> fits with room

// One problem per row: <bos> prompt answer <eos>, padded with <eos>; the
// loss covers the answer and the <eos> after it.
Batch addition_batch(const AdditionTask& task, const CharVocab& vocab, std::mt19937_64& rng,
                     int B) {
  std::vector<int32_t> rows(size_t(B) * kRowTokens, vocab.eos());
  std::vector<std::pair<int, int>> answer_span(B);
  for (int b = 0; b < B; ++b) {
    Problem p = task.sample(rng, /*held_out=*/false);
    std::vector<int32_t> ids = {vocab.bos()};
    for (int32_t id : vocab.encode(p.prompt)) ids.push_back(id);
    const int answer_start = int(ids.size());
    for (int32_t id : vocab.encode(p.target)) ids.push_back(id);
    ids.push_back(vocab.eos());
    std::copy(ids.begin(), ids.end(), rows.begin() + size_t(b) * kRowTokens);
    answer_span[b] = {answer_start, int(ids.size())};
  }
  Batch batch = Batch::from_token_rows(rows, B, kRowTokens);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < kRowTokens; ++t) {
      // position t predicts token t+1: weight it when t+1 is in the answer span
      const bool answer = t + 1 >= answer_span[b].first && t + 1 < answer_span[b].second;
      batch.weights[size_t(b) * kRowTokens + t] = answer ? 1.f : 0.f;
    }
  return batch;
}

}  // namespace

int run_builtin_demo() {
  std::printf("Polaris built-in demo: a tiny Qwen3-style model learns %d-digit addition on the "
              "CPU.\n(polaris_train --help lists the flags for your own data.)\n",
              kDigits);
  CharVocab vocab;
  AdditionTask task(kDigits);
  ModelConfig config = config_from_preset("qwen3-demo");
  std::unique_ptr<Ops> ops = make_ops("cpu");
  Transformer model(config, *ops);
  std::vector<float> params(model.num_params());
  init_params(config, model.layout(), 1337, params.data());
  model.set_params(params);
  std::printf("model: %s, %zu parameters\n", config.describe().c_str(), model.num_params());

  const int steps = 800, batch = 64;
  TrainerOptions options;
  options.schedule = make_schedule("cosine", 1e-3f, 0.1f, 30, steps);
  options.adamw.weight_decay = 0.01f;
  Trainer trainer(model, options);
  StepReporter reporter(steps, 50, "");
  std::mt19937_64 rng(42);
  for (int step = 0; step < steps; ++step) {
    std::vector<Batch> micro = {addition_batch(task, vocab, rng, batch)};
    reporter.report(trainer.step(micro, total_target_weight(micro)));
  }

  // Held-out problems, answered greedily.
  std::mt19937_64 eval_rng(7);
  std::vector<Problem> problems;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 50; ++i) {
    problems.push_back(task.sample(eval_rng, /*held_out=*/true));
    std::vector<int32_t> ids = {vocab.bos()};
    for (int32_t id : vocab.encode(problems.back().prompt)) ids.push_back(id);
    prompts.push_back(ids);
  }
  SamplingParams greedy;
  greedy.temperature = 0.f;
  greedy.max_new_tokens = kDigits + 2;
  greedy.stop_tokens = {vocab.eos()};
  std::vector<Completion> completions = generate(model, prompts, greedy);
  int correct = 0;
  std::printf("\nheld-out samples (greedy):\n");
  for (size_t i = 0; i < problems.size(); ++i) {
    std::string answer = vocab.decode(completions[i].tokens);
    const bool ok = answer == problems[i].answer;
    correct += ok;
    if (i < 8)
      std::printf("  %s%-4s %s\n", problems[i].prompt.c_str(), answer.c_str(),
                  ok ? "correct" : ("wrong, expected " + problems[i].answer).c_str());
  }
  std::printf("held-out accuracy: %d/%zu problems never seen in training\n", correct,
              problems.size());
  return 0;
}

}  // namespace polaris
