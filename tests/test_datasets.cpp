// SFT and RL JSONL datasets: good files load, every bad line is reported as
// "FILE:LINE: problem", skip_bad skips and counts, empty files are errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "data/rl_dataset.h"
#include "data/sft_dataset.h"
#include "data/tokenizer.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using polaris::error_of;

namespace {

// Writes `content` to a fresh file in the test temp directory.
std::string write_file(const std::string& name, const std::string& content) {
  std::string path = ::testing::TempDir() + "polaris_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

struct BadLine {
  std::string line;
  std::string problem;  // expected message after "FILE:2: "
};

}  // namespace

// ---- SFT ----

TEST(SftDataset, LoadsBothShapes) {
  std::string path = write_file("sft_good.jsonl",
      R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"},{"role":"assistant","content":"A"}]})" "\n"
      "\n"  // blank lines are ignored
      R"({"prompt":"Q2","response":"A2","system":"S2"})" "\r\n"
      R"({"messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A","reasoning_content":"R"}]})" "\n");
  polaris::SftDataset d = polaris::SftDataset::load(path);
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(d.skipped_lines, 0u);
  EXPECT_EQ(d.examples[0].messages.size(), 3u);
  EXPECT_EQ(d.examples[0].messages[2].content, "A");
  EXPECT_EQ(d.examples[1].line, 3u);
  ASSERT_EQ(d.examples[1].messages.size(), 3u);
  EXPECT_EQ(d.examples[1].messages[0].role, "system");
  EXPECT_EQ(d.examples[1].messages[1].content, "Q2");
  EXPECT_EQ(d.examples[1].messages[2].role, "assistant");
  EXPECT_EQ(d.examples[2].messages[1].reasoning.value_or(""), "R");
}

TEST(SftDataset, EveryBadLineNamesFileAndLine) {
  const std::string good = R"({"prompt":"Q","response":"A"})";
  const std::vector<BadLine> bad = {
      {"{not json", "invalid JSON at byte 3"},
      {"[1,2]", "expected a JSON object, got array"},
      {R"({"text":"hi"})", "expected \"messages\", or \"prompt\" and \"response\""},
      {R"({"messages":"hi"})", "\"messages\" must be an array, got string"},
      {R"({"messages":[]})", "\"messages\" is empty"},
      {R"({"messages":[1]})", "messages[0] must be an object"},
      {R"({"messages":[{"content":"x"}]})", "missing \"role\" in messages[0]"},
      {R"({"messages":[{"role":"user"}]})", "missing \"content\" in messages[0]"},
      {R"({"messages":[{"role":"user","content":5}]})", "\"content\" in messages[0] must be a string, got number"},
      {R"({"messages":[{"role":"bot","content":"x"}]})", "unknown role \"bot\" in messages[0] (expected system, user or assistant)"},
      {R"({"messages":[{"role":"user","content":"x"}]})", "no assistant message (nothing to train on)"},
      {R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","reasoning_content":3}]})",
       "\"reasoning_content\" in messages[1] must be a string, got number"},
      {R"({"prompt":"Q"})", "missing \"response\""},
      {R"({"response":"A"})", "missing \"prompt\""},
      {R"({"prompt":["Q"],"response":"A"})", "\"prompt\" must be a string, got array"},
      {R"({"prompt":"Q","response":"A","system":null})", "\"system\" must be a string, got null"},
      {"{\"prompt\":\"\xff\",\"response\":\"A\"}", "invalid JSON at byte 12"},
  };
  for (size_t i = 0; i < bad.size(); i++) {
    std::string path = write_file("sft_bad" + std::to_string(i) + ".jsonl", good + "\n" + bad[i].line + "\n" + good + "\n");
    EXPECT_EQ(error_of([&] { polaris::SftDataset::load(path); }), path + ":2: " + bad[i].problem);
    polaris::SftDataset d = polaris::SftDataset::load(path, /*skip_bad=*/true);
    EXPECT_EQ(d.examples.size(), 2u);
    EXPECT_EQ(d.skipped_lines, 1u);
    EXPECT_EQ(d.examples[1].line, 3u);
  }
}

TEST(SftDataset, EmptyMissingAndAllBadFiles) {
  std::string empty = write_file("sft_empty.jsonl", "");
  EXPECT_EQ(error_of([&] { polaris::SftDataset::load(empty); }), empty + ": empty file (no JSON lines)");
  std::string blank = write_file("sft_blank.jsonl", "\n  \n\t\n");
  EXPECT_EQ(error_of([&] { polaris::SftDataset::load(blank); }), blank + ": empty file (no JSON lines)");
  std::string missing = ::testing::TempDir() + "polaris_no_such_file.jsonl";
  EXPECT_EQ(error_of([&] { polaris::SftDataset::load(missing); }), missing + ": cannot open file");
  std::string all_bad = write_file("sft_all_bad.jsonl", "x\ny\n");
  EXPECT_EQ(error_of([&] { polaris::SftDataset::load(all_bad, true); }),
            all_bad + ": no valid records (2 bad lines skipped)");
}

TEST(SftDataset, TokenizesWithAssistantWeights) {
  polaris::Tokenizer tok = polaris::Tokenizer::load("tests/fixtures/qwen3_tokenizer/tokenizer.json");
  std::string path = write_file("sft_tok.jsonl", R"({"prompt":"What is 2+2?","response":"4"})" "\n");
  auto sequences = polaris::tokenize_sft(tok, polaris::SftDataset::load(path));
  ASSERT_EQ(sequences.size(), 1u);
  const auto& s = sequences[0];
  ASSERT_EQ(s.ids.size(), s.weights.size());
  std::vector<int32_t> trained;
  for (size_t i = 0; i < s.ids.size(); i++) {
    if (s.weights[i] == 1.0f) {
      trained.push_back(s.ids[i]);
    } else {
      EXPECT_EQ(s.weights[i], 0.0f);
    }
  }
  EXPECT_EQ(tok.decode(trained), "<think>\n\n</think>\n\n4<|im_end|>");
}

// ---- RL ----

TEST(RlDataset, LoadsMathAndCountdown) {
  std::string path = write_file("rl_good.jsonl",
      R"({"problem":"1+1?","answer":"2","pass_rate":0.25,"source":"gsm8k"})" "\n"
      R"({"prompt":"2+2?","answer":4})" "\n"
      R"({"prompt":"Make 24","numbers":[3,8,1],"target":24})" "\n"
      R"({"prompt":"Make 10","nums":[5,5],"target":10,"answer":"5+5"})" "\n"
      R"({"prompt":"p","kind":"math","answer":1.5,"numbers":[1],"target":1})" "\n");
  polaris::RlDataset d = polaris::RlDataset::load(path);
  ASSERT_EQ(d.examples.size(), 5u);
  EXPECT_EQ(d.examples[0].prompt, "1+1?");
  EXPECT_EQ(d.examples[0].kind, "math");
  EXPECT_EQ(d.examples[0].reference, "2");
  EXPECT_EQ(d.examples[0].pass_rate.value_or(-1), 0.25);
  EXPECT_EQ(d.examples[0].record["source"], "gsm8k");
  EXPECT_EQ(d.examples[1].reference, 4);
  EXPECT_FALSE(d.examples[1].pass_rate.has_value());
  EXPECT_EQ(d.examples[2].kind, "countdown");
  EXPECT_EQ(d.examples[2].reference, (nlohmann::json{{"numbers", {3, 8, 1}}, {"target", 24}}));
  EXPECT_EQ(d.examples[3].kind, "countdown");
  EXPECT_EQ(d.examples[3].reference["numbers"], (nlohmann::json{5, 5}));
  EXPECT_EQ(d.examples[4].kind, "math");
  EXPECT_EQ(d.examples[4].reference, 1.5);
  auto messages = polaris::rl_prompt_messages(d.examples[0], "Think step by step.");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, "system");
  EXPECT_EQ(messages[1].content, "1+1?");
  EXPECT_EQ(polaris::rl_prompt_messages(d.examples[0]).size(), 1u);
}

TEST(RlDataset, EveryBadLineNamesFileAndLine) {
  const std::string good = R"({"problem":"Q","answer":"1"})";
  const std::vector<BadLine> bad = {
      {"{\"problem\":", "invalid JSON at byte 12"},
      {"\"just a string\"", "expected a JSON object, got string"},
      {R"({"answer":"1"})", "missing \"problem\" (or \"prompt\")"},
      {R"({"problem":7,"answer":"1"})", "\"problem\" must be a string, got number"},
      {R"({"prompt":null,"answer":"1"})", "\"prompt\" must be a string, got null"},
      {R"({"problem":"Q"})", "missing \"answer\""},
      {R"({"problem":"Q","answer":[1]})", "\"answer\" must be a string or number, got array"},
      {R"({"problem":"Q","answer":null})", "\"answer\" must be a string or number, got null"},
      {R"({"problem":"Q","kind":"chess","answer":"1"})", "unknown kind \"chess\" (expected math or countdown)"},
      {R"({"problem":"Q","kind":3,"answer":"1"})", "\"kind\" must be a string, got number"},
      {R"({"problem":"Q","target":5})", "missing \"numbers\" for a countdown record"},
      {R"({"problem":"Q","numbers":[1,2]})", "missing \"target\" for a countdown record"},
      {R"({"problem":"Q","numbers":"1,2","target":3})", "\"numbers\" must be an array, got string"},
      {R"({"problem":"Q","numbers":[],"target":3})", "\"numbers\" is empty"},
      {R"({"problem":"Q","numbers":[1,2.5],"target":3})", "\"numbers\" must be an integer, got 2.5"},
      {R"({"problem":"Q","nums":[1,"2"],"target":3})", "\"nums\" must be an integer, got string"},
      {R"({"problem":"Q","numbers":[1,2],"target":"3"})", "\"target\" must be an integer, got string"},
      {R"({"problem":"Q","answer":"1","pass_rate":"high"})", "\"pass_rate\" must be a number, got string"},
      {R"({"problem":"Q","answer":"1","pass_rate":1.5})", "\"pass_rate\" must be in [0, 1], got 1.5"},
  };
  for (size_t i = 0; i < bad.size(); i++) {
    std::string path = write_file("rl_bad" + std::to_string(i) + ".jsonl", good + "\n" + bad[i].line + "\n" + good + "\n");
    EXPECT_EQ(error_of([&] { polaris::RlDataset::load(path); }), path + ":2: " + bad[i].problem);
    polaris::RlDataset d = polaris::RlDataset::load(path, /*skip_bad=*/true);
    EXPECT_EQ(d.examples.size(), 2u);
    EXPECT_EQ(d.skipped_lines, 1u);
  }
}

TEST(RlDataset, EmptyAndAllBadFiles) {
  std::string empty = write_file("rl_empty.jsonl", "");
  EXPECT_EQ(error_of([&] { polaris::RlDataset::load(empty); }), empty + ": empty file (no JSON lines)");
  std::string all_bad = write_file("rl_all_bad.jsonl", "{}\n\n{}\n{}\n");
  EXPECT_EQ(error_of([&] { polaris::RlDataset::load(all_bad); }),
            all_bad + ":1: missing \"problem\" (or \"prompt\")");
  EXPECT_EQ(error_of([&] { polaris::RlDataset::load(all_bad, true); }),
            all_bad + ": no valid records (3 bad lines skipped)");
}
