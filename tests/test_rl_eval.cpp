// The JSONL RL environment (src/train/jsonl_environment.h) with the real Qwen3
// tokenizer, the pass-rate file reader, and the evaluation metrics
// (src/train/eval_metrics.h) against hand-computed values.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "data/chat.h"
#include "data/rl_dataset.h"
#include "src/common/error.h"
#include "src/train/eval_metrics.h"
#include "src/train/jsonl_environment.h"
#include "src/train/temperature_sweep.h"
#include "tests/test_util.h"

using namespace polaris;

namespace {

const Tokenizer& qwen3() {
  static const Tokenizer tokenizer = Tokenizer::load("tests/fixtures/qwen3_tokenizer/tokenizer.json");
  return tokenizer;
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "polaris_rl_eval_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kProblems =
    "{\"problem\": \"What is 6 times 7?\", \"answer\": 42, \"pass_rate\": 0.25}\n"
    "\n"
    "{\"prompt\": \"Reach 24 with 3, 8.\", \"numbers\": [3, 8], \"target\": 24}\n"
    "{\"problem\": \"What is 1/2 + 1/4?\", \"answer\": \"3/4\", \"source\": \"x\"}\n";

JsonlEnvironmentOptions quiet_options() {
  JsonlEnvironmentOptions o;
  o.quiet = true;
  return o;
}

std::vector<int32_t> completion(const std::string& text) { return qwen3().encode(text); }

}  // namespace

TEST(JsonlEnvironment, PromptsAreTheChatGenerationPrompt) {
  const std::string path = write_temp("p.jsonl", kProblems);
  JsonlEnvironmentOptions o = quiet_options();
  o.system_prompt = "Think step by step.";
  JsonlEnvironment env(qwen3(), path, "", o);
  ASSERT_EQ(env.size(Split::Train), 3u);
  EXPECT_EQ(env.size(Split::Eval), 3u);  // no eval file: Eval = Train
  RlDataset data = RlDataset::load(path);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(env.prompt(Split::Train, i),
              render_generation_prompt(qwen3(), rl_prompt_messages(data.examples[i], o.system_prompt)));
    EXPECT_EQ(env.prompt(Split::Eval, i), env.prompt(Split::Train, i));
    EXPECT_EQ(env.prompt_text(Split::Train, i), data.examples[i].prompt);
    EXPECT_EQ(env.example(Split::Train, i).line, data.examples[i].line);
  }
  EXPECT_EQ(env.example(Split::Train, 1).line, 3u);  // the blank line counts
  // enable_thinking = false pre-closes the think block.
  o.enable_thinking = false;
  JsonlEnvironment no_think(qwen3(), path, "", o);
  EXPECT_EQ(no_think.prompt(Split::Train, 0),
            render_generation_prompt(qwen3(), rl_prompt_messages(data.examples[0], o.system_prompt),
                                     false));
  EXPECT_NE(no_think.prompt(Split::Train, 0), env.prompt(Split::Train, 0));
  EXPECT_NE(error_of([&] { env.prompt(Split::Train, 3); }).find("out of range"), std::string::npos);
}

TEST(JsonlEnvironment, SeparateEvalFile) {
  const std::string train = write_temp("t.jsonl", kProblems);
  const std::string eval = write_temp("e.jsonl", "{\"problem\": \"2+2?\", \"answer\": \"4\"}\n");
  auto env = make_jsonl_environment(qwen3(), train, eval, quiet_options());
  EXPECT_EQ(env->size(Split::Train), 3u);
  EXPECT_EQ(env->size(Split::Eval), 1u);
  EXPECT_EQ(env->prompt_text(Split::Eval, 0), "2+2?");
  EXPECT_NE(env->name().find(train), std::string::npos);
}

TEST(JsonlEnvironment, StopTokens) {
  const std::string path = write_temp("s.jsonl", kProblems);
  auto env = make_jsonl_environment(qwen3(), path, "", quiet_options());
  const int im_end = qwen3().token_to_id("<|im_end|>");
  const int eot = qwen3().token_to_id("<|endoftext|>");
  ASSERT_GE(im_end, 0);
  ASSERT_GE(eot, 0);
  EXPECT_EQ(env->stop_tokens(), (std::vector<int32_t>{im_end, eot}));
}

TEST(JsonlEnvironment, ScoresMathAndCountdown) {
  const std::string path = write_temp("m.jsonl",
                                      "{\"problem\": \"6*7?\", \"answer\": 42}\n"
                                      "{\"problem\": \"6*7?\", \"answer\": 41}\n"
                                      "{\"prompt\": \"24 from 3, 8\", \"numbers\": [3, 8], \"target\": 24}\n");
  auto env = make_jsonl_environment(qwen3(), path, "", quiet_options());
  const auto c = completion("<think>\n6*7 = 42\n</think>\n\nThe answer is \\boxed{42}<|im_end|>");
  EXPECT_EQ(c.back(), qwen3().token_to_id("<|im_end|>"));
  Score right = env->score(Split::Train, 0, c);
  EXPECT_TRUE(right.correct);
  EXPECT_DOUBLE_EQ(right.reward, 1.0);
  EXPECT_TRUE(right.format_ok);
  EXPECT_EQ(right.answer, "42");
  Score wrong = env->score(Split::Train, 1, c);
  EXPECT_FALSE(wrong.correct);
  EXPECT_DOUBLE_EQ(wrong.reward, 0.0);
  EXPECT_EQ(wrong.answer, "42");
  // Decoding drops the trailing stop token only.
  EXPECT_EQ(env->decode(c), "<think>\n6*7 = 42\n</think>\n\nThe answer is \\boxed{42}");
  // A box while thinking is not an answer; a cut-off think block scores 0.
  EXPECT_FALSE(env->score(Split::Train, 0, completion("<think>\\boxed{42}</think>\n\nno idea")).correct);
  EXPECT_FALSE(env->score(Split::Train, 0, completion("<think>\\boxed{42} hmm")).correct);
  // Ids the tokenizer has no token for (a padded model vocabulary) decode to nothing.
  auto padded = c;
  padded.insert(padded.begin(), qwen3().vocab_size() + 5);
  EXPECT_TRUE(env->score(Split::Train, 0, padded).correct);
  // Countdown.
  EXPECT_TRUE(env->score(Split::Train, 2, completion("<think>ok</think>\n<answer>3*8</answer>")).correct);
  EXPECT_FALSE(env->score(Split::Train, 2, completion("<think>ok</think>\n<answer>3+8</answer>")).correct);
}

TEST(JsonlEnvironment, RequireFormatOption) {
  const std::string path = write_temp("f.jsonl", "{\"problem\": \"6*7?\", \"answer\": 42}\n");
  JsonlEnvironmentOptions o = quiet_options();
  o.verify.require_format = true;
  auto env = make_jsonl_environment(qwen3(), path, "", o);
  Score s = env->score(Split::Train, 0, completion("The answer is \\boxed{42}"));
  EXPECT_DOUBLE_EQ(s.reward, 0.0);
  EXPECT_FALSE(s.format_ok);
  EXPECT_DOUBLE_EQ(env->score(Split::Train, 0, completion("<think>x</think>\\boxed{42}")).reward, 1.0);
}

TEST(JsonlEnvironment, MaxPromptTokensDropsLongPrompts) {
  const std::string path = write_temp("l.jsonl",
                                      "{\"problem\": \"short\", \"answer\": 1}\n"
                                      "{\"problem\": \"" + std::string(400, 'x') + " y z\", \"answer\": 2}\n");
  JsonlEnvironmentOptions o = quiet_options();
  o.max_prompt_tokens = 30;
  JsonlEnvironment env(qwen3(), path, "", o);
  EXPECT_EQ(env.size(Split::Train), 1u);
  EXPECT_EQ(env.dropped_long(Split::Train), 1u);
  EXPECT_EQ(env.example(Split::Train, 0).line, 1u);
  o.max_prompt_tokens = 3;  // nothing left
  EXPECT_NE(error_of([&] { JsonlEnvironment(qwen3(), path, "", o); }).find("nothing is left"),
            std::string::npos);
}

TEST(JsonlEnvironment, BadLinesNameFileAndLine) {
  const std::string path = write_temp("b.jsonl",
                                      "{\"problem\": \"a\", \"answer\": 1}\n"
                                      "{not json\n"
                                      "{\"problem\": \"b\", \"answer\": 2}\n");
  EXPECT_NE(error_of([&] { make_jsonl_environment(qwen3(), path, "", quiet_options()); })
                .find(path + ":2:"),
            std::string::npos);
  JsonlEnvironmentOptions o = quiet_options();
  o.skip_bad = true;
  JsonlEnvironment env(qwen3(), path, "", o);
  EXPECT_EQ(env.size(Split::Train), 2u);
  EXPECT_EQ(env.skipped_lines(Split::Train), 1u);
  EXPECT_NE(error_of([&] { make_jsonl_environment(qwen3(), path + ".missing", "", o); })
                .find(path + ".missing"),
            std::string::npos);
}

TEST(JsonlEnvironment, PassRatesFromFieldAndFile) {
  const std::string path = write_temp("r.jsonl", kProblems);
  auto env = make_jsonl_environment(qwen3(), path, "", quiet_options());
  EXPECT_EQ(env->pass_rate(0), std::optional<double>(0.25));
  EXPECT_EQ(env->pass_rate(1), std::nullopt);
  EXPECT_EQ(env->pass_rate(2), std::nullopt);
  // A --pass-rates file keyed by line: it wins over the field; absent lines keep it.
  JsonlEnvironmentOptions o = quiet_options();
  o.pass_rates_path = write_temp("rates.jsonl", "{\"line\": 4, \"pass_rate\": 0.5}\n{\"line\": 3, \"pass_rate\": 1}\n");
  auto with_file = make_jsonl_environment(qwen3(), path, "", o);
  EXPECT_EQ(with_file->pass_rate(0), std::optional<double>(0.25));
  EXPECT_EQ(with_file->pass_rate(1), std::optional<double>(1.0));
  EXPECT_EQ(with_file->pass_rate(2), std::optional<double>(0.5));
}

TEST(PassRates, RoundTrip) {
  const std::string path = write_temp("rt.jsonl",
                                      "{\"line\": 1, \"pass_rate\": 0.0}\n"
                                      "\n"
                                      "{\"line\": 7, \"pass_rate\": 0.75, \"extra\": true}\n"
                                      "{\"line\": 3, \"pass_rate\": 1}\n");
  std::map<size_t, double> rates = read_pass_rates(path);
  EXPECT_EQ(rates, (std::map<size_t, double>{{1, 0.0}, {3, 1.0}, {7, 0.75}}));
}

TEST(PassRates, BadInputNamesFileAndLine) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"{\"line\": 1, \"pass_rate\": 0.5}\n{oops\n", ":2:"},
      {"{\"pass_rate\": 0.5}\n", ":1: missing \"line\""},
      {"{\"line\": 2}\n", ":1: missing \"pass_rate\""},
      {"{\"line\": 0, \"pass_rate\": 0.5}\n", "positive integer"},
      {"{\"line\": 1.5, \"pass_rate\": 0.5}\n", "positive integer"},
      {"{\"line\": 1, \"pass_rate\": 1.5}\n", "in [0, 1]"},
      {"{\"line\": 1, \"pass_rate\": \"0.5\"}\n", "must be a number"},
      {"{\"line\": 1, \"pass_rate\": 0.5}\n{\"line\": 1, \"pass_rate\": 0.2}\n", ":2: line 1 is given twice"},
      {"[1, 2]\n", ":1: expected a JSON object"},
  };
  int n = 0;
  for (const Case& c : cases) {
    const std::string path = write_temp("bad" + std::to_string(n++) + ".jsonl", c.text);
    const std::string message = error_of([&] { read_pass_rates(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(c.message), std::string::npos) << c.text << " -> " << message;
  }
  const std::string missing = ::testing::TempDir() + "polaris_no_such_rates.jsonl";
  EXPECT_NE(error_of([&] { read_pass_rates(missing); }).find(missing), std::string::npos);
  const std::string empty = write_temp("empty.jsonl", "");
  EXPECT_NE(error_of([&] { read_pass_rates(empty); }).find(empty), std::string::npos);
}

TEST(EvalMetrics, PassAtK) {
  EXPECT_DOUBLE_EQ(pass_at_k(4, 1, 1), 0.25);
  EXPECT_DOUBLE_EQ(pass_at_k(4, 1, 4), 1.0);
  EXPECT_NEAR(pass_at_k(5, 2, 2), 1.0 - 3.0 / 10.0, 1e-12);  // 1 - C(3,2)/C(5,2)
  EXPECT_DOUBLE_EQ(pass_at_k(5, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(pass_at_k(5, 0, 5), 0.0);
  EXPECT_DOUBLE_EQ(pass_at_k(5, 5, 1), 1.0);
  EXPECT_NEAR(pass_at_k(10, 3, 1), 0.3, 1e-12);  // pass@1 = c/n
  EXPECT_NEAR(pass_at_k(10, 3, 3), 1.0 - 35.0 / 120.0, 1e-12);  // 1 - C(7,3)/C(10,3)
  // Large n stays finite and exact enough.
  EXPECT_NEAR(pass_at_k(1000, 1, 1), 0.001, 1e-12);
  EXPECT_THROW(pass_at_k(4, 5, 1), Error);
  EXPECT_THROW(pass_at_k(4, 1, 5), Error);
  EXPECT_THROW(pass_at_k(4, 1, 0), Error);
  EXPECT_THROW(pass_at_k(4, -1, 1), Error);
}

TEST(EvalMetrics, MajorityAnswer) {
  EXPECT_EQ(majority_answer({"3", "4", "4", "3", "5"}), "3");  // tie: first occurrence
  EXPECT_EQ(majority_index({"3", "4", "4", "3", "5"}), 0);
  EXPECT_EQ(majority_answer({"", "7", "", "", "8", "8"}), "8");  // empty answers never win
  EXPECT_EQ(majority_index({"", "7", "", "", "8", "8"}), 4);
  EXPECT_EQ(majority_answer({"", ""}), "");
  EXPECT_EQ(majority_index({"", ""}), -1);
  EXPECT_EQ(majority_index({}), -1);
}

// ---------------------------------------------------------------------------
// Temperature sweep (src/train/temperature_sweep.h)

namespace polaris {
namespace {

TEST(TemperatureSweep, ParsesInclusiveRanges) {
  const std::vector<double> t = parse_temperature_sweep("temperature-sweep", "1.4:1.6:0.05");
  ASSERT_EQ(t.size(), 5u);  // 1.4, 1.45, 1.5, 1.55, 1.6 despite 0.05's rounding
  EXPECT_DOUBLE_EQ(t.front(), 1.4);
  EXPECT_NEAR(t.back(), 1.6, 1e-12);
  EXPECT_EQ(parse_temperature_sweep("temperature-sweep", "0.7:0.7:0.1"), std::vector<double>{0.7});
  EXPECT_EQ(parse_temperature_sweep("temperature-sweep", "0:1:0.4").size(), 3u);  // 0, 0.4, 0.8
  for (const char* bad : {"", "1.4", "1.4:1.6", "1.6:1.4:0.05", "1.4:1.6:0", "1.4:1.6:-1",
                          "a:1:0.1", "1:2:0.1x", "-1:1:0.5", "0:10:0.001"})
    EXPECT_ERROR(parse_temperature_sweep("temperature-sweep", bad), "--temperature-sweep");
}

// |distinct n-grams| / |n-grams| pooled over the group's completions.
TEST(TemperatureSweep, DistinctNgramRatio) {
  const std::vector<int32_t> a = {1, 2, 3, 4, 5}, b = {9, 8, 7, 6, 5};
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({a, a, a, a}, 4), 2.0 / 8.0);  // identical: 1/K
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({a, b}, 4), 1.0);              // nothing shared
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({a, {1, 2, 3, 4, 9}}, 4), 3.0 / 4.0);
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({{1, 1, 1, 1, 1, 1}}, 4), 1.0 / 3.0);  // repeats within one
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({{1, 2}, {3}}, 4), 0.0);  // none long enough
  EXPECT_DOUBLE_EQ(distinct_ngram_ratio({a, {1, 2}}, 4), 1.0);    // short ones add nothing
}

// The most diverse temperature within the tolerance of the best accuracy.
TEST(TemperatureSweep, RecommendsMostDiverseWithinTolerance) {
  const std::vector<SweepPoint> points = {
      {1.40, 0.50, 0.30}, {1.45, 0.52, 0.35}, {1.50, 0.51, 0.40}, {1.55, 0.45, 0.50}};
  EXPECT_EQ(recommend_temperature(points, 0.02), 2u);  // 1.55 loses 0.07 accuracy
  EXPECT_EQ(recommend_temperature(points, 0.10), 3u);  // now it is within tolerance
  EXPECT_EQ(recommend_temperature(points, 0.0), 1u);   // only the best itself
  const std::vector<SweepPoint> tie = {{1.0, 0.5, 0.4}, {1.1, 0.5, 0.4}};
  EXPECT_EQ(recommend_temperature(tie, 0.0), 0u);  // ties: the lower temperature
  EXPECT_THROW(recommend_temperature({}, 0.1), Error);
}

}  // namespace
}  // namespace polaris
