// Verifier tests: one table of {kind, response, reference, expected reward}.
//
// Most rows are adversarial: several boxes, boxes hidden in the thinking,
// unbalanced braces, 50-digit numbers that differ in the last digit, division
// by zero, empty answers, invalid UTF-8. A row's name is its index in the table,
// so a failure prints the row.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <tuple>
#include <vector>

#include "data/rational.h"
#include "data/verifier.h"
#include "src/common/error.h"

using polaris::BigInt;
using polaris::Rational;
using json = nlohmann::json;

namespace {

struct Row {
  const char* kind;
  std::string response;
  json reference;
  double expected;
};

json countdown(std::vector<int64_t> numbers, int64_t target) {
  return json{{"numbers", numbers}, {"target", target}};
}

const std::string kBig50 = "12345678901234567890123456789012345678901234567890";
const std::string kBig50Plus1 = "12345678901234567890123456789012345678901234567891";
const std::string kBig60 = "999999999999999999999999999999999999999999999999999999999999";

const std::vector<Row> kRows = {
    // ---- math: plain agreement ----
    {"math", "The sum is \\boxed{42}.", "42", 1},
    {"math", "\\boxed{42}", 42, 1},
    {"math", "\\boxed{41}", "42", 0},
    {"math", "\\boxed{-7}", "-7", 1},
    {"math", "\\boxed{ 7 }", "7", 1},
    {"math", "\\boxed{\\frac{1}{2}}", "1/2", 1},
    {"math", "\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", 1},
    {"math", "\\boxed{\\tfrac{3}{4}}", "0.75", 1},
    {"math", "\\boxed{\\frac12}", "0.5", 1},
    {"math", "\\boxed{2.50}", "2.5", 1},
    {"math", "\\boxed{2.500}", "5/2", 1},
    {"math", "\\boxed{.5}", "1/2", 1},
    {"math", "\\boxed{-\\frac{1}{2}}", "\\frac{-1}{2}", 1},
    {"math", "\\boxed{\\frac{-1}{-2}}", "1/2", 1},
    {"math", "\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", 1},
    {"math", "\\boxed{2\\sqrt{3}}", "\\sqrt{12}", 1},
    {"math", "\\boxed{\\sqrt{12}}", "2\\sqrt3", 1},
    {"math", "\\boxed{\\sqrt{8}}", "2\\sqrt{3}", 0},
    {"math", "\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}", 1},
    {"math", "\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}", 1},
    {"math", "\\boxed{\\sqrt{\\frac{1}{4}}}", "1/2", 1},
    {"math", "\\boxed{2\\pi}", "2\\pi", 1},
    {"math", "\\boxed{\\frac{\\pi}{2}}", "\\frac12\\pi", 1},
    {"math", "\\boxed{\\frac{\\pi}{2}}", "\\pi/2", 1},
    {"math", "\\boxed{\\frac{\\pi}{3}}", "\\frac{\\pi}{2}", 0},
    {"math", "\\boxed{1+\\sqrt{2}}", "\\sqrt{2}+1", 1},
    {"math", "\\boxed{1-\\sqrt{2}}", "\\sqrt{2}-1", 0},
    {"math", "\\boxed{2^{10}}", "1024", 1},
    {"math", "\\boxed{2^{-1}}", "0.5", 1},
    {"math", "\\boxed{3\\times 4}", "12", 1},
    {"math", "\\boxed{1\\frac{1}{2}}", "3/2", 1},
    {"math", "\\boxed{2\\frac{\\pi}{3}}", "\\frac{2\\pi}{3}", 1},
    {"math", "\\boxed{(1, 2)}", "(1,2)", 1},
    {"math", "\\boxed{(2, 1)}", "(1,2)", 0},
    {"math", "\\boxed{\\left( \\frac{1}{2}, 3 \\right)}", "(0.5, 3)", 1},
    {"math", "\\boxed{[1, 3)}", "[1,3)", 1},
    {"math", "\\boxed{[1, 3]}", "[1,3)", 0},
    {"math", "\\boxed{(1, 3]}", "[1,3]", 0},
    {"math", "\\boxed{\\{3, 1\\}}", "\\{1,3\\}", 1},
    {"math", "\\boxed{3, 1}", "1, 3", 1},
    {"math", "\\boxed{1, 2, 3}", "1, 3", 0},
    {"math", "\\boxed{x = 5}", "5", 1},
    {"math", "\\boxed{5}", "x=5", 1},
    {"math", "\\boxed{\\theta = \\frac{\\pi}{4}}", "\\frac{\\pi}{4}", 1},
    {"math", "\\boxed{30^\\circ}", "30", 1},
    {"math", "\\boxed{30^{\\circ}}", "30", 1},
    {"math", "\\boxed{30\xC2\xB0}", "30", 1},
    {"math", "\\boxed{12\\text{ cm}}", "12", 1},
    {"math", "\\boxed{12 \\text{ square units}}", "12", 1},
    {"math", "\\boxed{\\$5.00}", "5", 1},
    {"math", "\\boxed{5 \\text{ dollars}}", "5", 1},
    {"math", "\\boxed{50\\%}", "50", 1},
    {"math", "\\boxed{\\text{(B)}}", "B", 1},
    {"math", "\\boxed{\\text{Monday}}", "Monday", 1},
    {"math", "\\boxed{\\text{Tuesday}}", "Monday", 0},
    {"math", "\\boxed{x^2+1}", "x^2 + 1", 1},
    {"math", "\\boxed{\\infty}", "\\infty", 1},
    {"math", "\\boxed{(-\\infty, 2]}", "(-\\infty,2]", 1},
    {"math", "\\fbox{9}", "9", 1},
    {"math", "\\boxed 9", "9", 1},
    {"math", "The answer is 17.", "17", 1},
    {"math", "Answer: $\\frac{3}{5}$", "0.6", 1},
    {"math", "So the final answer is $-4$.", "-4", 1},
    {"math", "1\\,000 dollars? \\boxed{1\\,000}", "1000", 1},
    {"math", "\\boxed{3.14}", "\\pi", 0},

    // ---- math: adversarial ----
    // several boxes: the last one wins
    {"math", "First \\boxed{3}, no wait \\boxed{4}", "4", 1},
    {"math", "First \\boxed{4}, no wait \\boxed{3}", "4", 0},
    {"math", "\\boxed{1} \\fbox{2}", "2", 1},
    {"math", "\\fbox{2} \\boxed{1}", "2", 0},
    // nested braces inside the box
    {"math", "\\boxed{\\frac{\\frac{1}{2}}{2}}", "1/4", 1},
    {"math", "\\boxed{{{7}}}", "7", 1},
    {"math", "\\boxed{\\boxed{8}}", "8", 1},
    // unbalanced braces: the last box never closes -> no answer
    {"math", "\\boxed{5", "5", 0},
    {"math", "\\boxed{5} and finally \\boxed{5", "5", 0},
    {"math", "\\boxed{\\frac{1}{2}", "1/2", 0},
    {"math", "\\boxed{5}}", "5", 1},
    {"math", "\\boxed{}", "5", 0},
    {"math", "\\boxed{   }", "5", 0},
    // a box inside the thinking only
    {"math", "<think>maybe \\boxed{5}</think>I am not sure.", "5", 0},
    {"math", "<think>maybe \\boxed{6}</think>It is \\boxed{5}.", "5", 1},
    {"math", "<think>maybe \\boxed{5}</think>It is \\boxed{6}.", "5", 0},
    // thinking that never closes: truncated, no answer
    {"math", "<think>so \\boxed{5}", "5", 0},
    {"math", "<think>a</think><think>b</think>\\boxed{5}", "5", 1},
    // huge numbers: exact, off-by-one detected
    {"math", "\\boxed{" + kBig50 + "}", kBig50, 1},
    {"math", "\\boxed{" + kBig50Plus1 + "}", kBig50, 0},
    {"math", "\\boxed{" + kBig60 + "}", kBig60, 1},
    {"math", "\\boxed{" + kBig60 + "}", "1000000000000000000000000000000000000000000000000000000000000", 0},
    {"math", "\\boxed{" + kBig60 + "+1}", "1000000000000000000000000000000000000000000000000000000000000", 1},
    {"math", "\\boxed{\\frac{" + kBig50 + "}{" + kBig50 + "}}", "1", 1},
    {"math", "\\boxed{0." + kBig50 + "}", "0." + kBig50Plus1, 0},
    {"math", "\\boxed{2^{100}}", "1267650600228229401496703205376", 1},
    {"math", "\\boxed{2^{100}}", "1267650600228229401496703205377", 0},
    {"math", "\\boxed{9^{9999}}", "1", 0},  // exponent over the limit: no value, string differs
    // decimals are exact: 0.1 + 0.2 is 0.3, and not 0.30000000000000004
    {"math", "\\boxed{0.1+0.2}", "0.3", 1},
    {"math", "\\boxed{0.30000000000000004}", "0.3", 0},
    {"math", "\\boxed{0.333}", "1/3", 0},
    {"math", "\\boxed{1.0}", "1", 1},
    // negative zero
    {"math", "\\boxed{-0}", "0", 1},
    {"math", "\\boxed{-0.0}", "0", 1},
    {"math", "\\boxed{-0}", "-1", 0},
    // thousands separators vs tuples
    {"math", "\\boxed{1,000}", "1000", 1},
    {"math", "\\boxed{1{,}000}", "1000", 1},
    {"math", "\\boxed{(1,000)}", "1000", 0},
    {"math", "\\boxed{1,000}", "(1,000)", 0},
    {"math", "\\boxed{1,000,000}", "10^6", 1},
    {"math", "\\boxed{1,00}", "100", 0},
    {"math", "\\boxed{12,345.5}", "12345.5", 1},
    // division by zero is no value, never "equal"
    {"math", "\\boxed{\\frac{1}{0}}", "1", 0},
    {"math", "\\boxed{1/0}", "2/0", 0},
    {"math", "\\boxed{\\frac{1}{0}}", "\\frac{1}{0}", 1},  // same string is same answer
    // empty / whitespace answers and references
    {"math", "", "5", 0},
    {"math", "   \n\t ", "5", 0},
    {"math", "\\boxed{5}", "", 0},
    {"math", "\\boxed{5}", "   ", 0},
    {"math", "The answer is", "5", 0},
    {"math", "The answer is .", "5", 0},
    // non-UTF-8 bytes never crash and never match by accident
    {"math", "\xff\xfe\\boxed{\xc3\x28}", "5", 0},
    {"math", "\xff\xfe\\boxed{5}\x80", "5", 1},
    {"math", "\\boxed{\xe2\x82}", "\xe2\x82", 1},
    // answer phrases: the last wins; a box beats a phrase
    {"math", "The answer is 3. Actually the answer is 4.", "4", 1},
    {"math", "The answer is 3.\nWait, \\boxed{4}", "3", 0},
    {"math", "answer: 3\nmore text", "3", 1},
    // traps for a sloppy parser
    {"math", "\\boxed{2-3}", "-1", 1},
    {"math", "\\boxed{2--3}", "5", 1},
    {"math", "\\boxed{1e5}", "100000", 1},  // scientific notation (was 0 until review 4 item 6)
    {"math", "\\boxed{\\sqrt{-4}}", "2i", 0},
    {"math", "\\boxed{\\sqrt[3]{8}}", "2", 0},
    {"math", "\\boxed{(1)+(2)}", "3", 1},
    {"math", "\\boxed{5\\leftarrow}", "5", 0},
    {"math", "\\boxed{0.5}", "50\\%", 0},
    {"math", "\\boxed{10}", "10 \\text{ apples}", 0},  // unknown unit words are kept
    {"math", "\\boxed{\\pi^2}", "\\pi\\pi", 1},
    {"math", "\\boxed{\\frac{2}{\\pi}}", "2\\pi^{-1}", 1},
    // deep nesting must fail cleanly, not overflow the stack
    {"math", "\\boxed{" + std::string(100000, '(') + "1" + std::string(100000, ')') + "}", "1", 0},
    {"math", "\\boxed{" + std::string(50, '(') + "1" + std::string(50, ')') + "}", "1", 1},
    {"math", "\\boxed{\\sqrt{" + kBig60 + kBig60 + "}}", "1", 0},

    // ---- math: review findings (each row failed before its fix) ----
    // a comma followed by a space separates items; only "d,ddd" groups are thousands
    {"math", "\\boxed{0, 100}", "100", 0},
    {"math", "\\boxed{1, 100}", "1100", 0},
    {"math", "\\boxed{3, 500}", "3500", 0},
    {"math", "\\boxed{12,345,678}", "12345678", 1},
    {"math", "\\boxed{(1, 100)}", "(1,100)", 1},
    {"math", "\\boxed{1,100}", "1, 100", 0},
    // a bare letter after a number is a factor, not a unit
    {"math", "\\boxed{2m}", "2", 0},
    {"math", "\\boxed{4h}", "4", 0},
    {"math", "\\boxed{3s}", "3", 0},
    {"math", "\\boxed{5g}", "5", 0},
    {"math", "\\boxed{7l}", "7", 0},
    {"math", "\\boxed{\\frac{1}{2}h}", "\\frac{1}{2}", 0},
    {"math", "\\boxed{2\\pi s}", "2\\pi", 0},
    {"math", "\\boxed{2x m}", "2x", 0},
    {"math", "\\boxed{2 m}", "2", 0},
    {"math", "\\boxed{5cm}", "5", 0},
    // units that are written as units still go
    {"math", "\\boxed{5\\text{ m}}", "5", 1},
    {"math", "\\boxed{5\\,\\mathrm{kg}}", "5", 1},
    {"math", "\\boxed{10 meters}", "10", 1},
    {"math", "\\boxed{12 \\text{cm}^2}", "12", 1},
    {"math", "\\boxed{12 square cm}", "12", 1},
    {"math", "\\boxed{9\\mbox{ hours}}", "9", 1},
    // an unbraced exponent is the whole digit run
    {"math", "\\boxed{2^10}", "0", 0},
    {"math", "\\boxed{2^10}", "1024", 1},
    {"math", "\\boxed{10^12}", "1000000000000", 1},
    {"math", "\\boxed{2^-10}", "\\frac{1}{1024}", 1},
    // mixed numbers with an unbraced \frac
    {"math", "\\boxed{1\\frac12}", "1/2", 0},
    {"math", "\\boxed{1\\frac12}", "3/2", 1},
    {"math", "\\boxed{2\\frac3{4}}", "11/4", 1},
    // surds: exact whatever the size of the radicand
    {"math", "\\boxed{\\sqrt{999999999989}^2}", "999999999989", 1},
    {"math", "\\boxed{\\sqrt{999999999989}^2}", "999999999988", 0},
    {"math", "\\boxed{\\sqrt{999983}\\sqrt{999979}}", "\\sqrt{999962000357}", 1},
    {"math", "\\boxed{\\sqrt{4000000000004}}", "2\\sqrt{1000000000001}", 1},
    {"math", "\\boxed{\\sqrt{99999999999999999999}^2}", "99999999999999999999", 1},
    {"math", "\\boxed{(\\sqrt{2}+\\sqrt{3})^2}", "5+2\\sqrt{6}", 1},
    {"math", "\\boxed{\\sqrt{6}\\sqrt{10}}", "2\\sqrt{15}", 1},
    // common ways to state a final answer without a box
    {"math", "The final answer is $5$. I hope it is correct.", "5", 1},
    {"math", "The final answer is $6$. I hope it is correct.", "5", 0},
    {"math", "**Answer:** 5", "5", 1},
    {"math", "**Final Answer:** 5", "5", 1},
    {"math", "**Final Answer**: $\\frac{1}{2}$", "0.5", 1},
    {"math", "The answer is 3.5. That is all.", "3.5", 1},
    {"math", "Final answer:\n$$\n7\n$$", "7", 1},
    {"math", "The answer is therefore $x = 8$. Done.", "8", 1},
    {"math", "The answer is $5. Then $x$ is 3.", "5", 1},  // a dollar sign, not math
    {"math", "\\boxed{5=x}", "5", 1},
    {"math", "\\boxed{5=x}", "6", 0},
    // the square root of zero is zero, and dividing by it is no value (it used to throw)
    {"math", "\\boxed{\\sqrt{0}}", "0", 1},
    {"math", "\\boxed{\\frac{1}{\\sqrt{0}}}", "1", 0},
    {"math", "\\boxed{(1+\\sqrt{2})^{10}}", "3363+2378\\sqrt{2}", 1},

    // ---- math: review 4 findings (most rows failed or crashed before their fix; the
    // others pin what the fixes must keep, such as "12\,345" and "1 2" vs "1 2") ----
    // a run of signs is read in a loop: 200k of them used to overflow the stack
    {"math", "\\boxed{" + std::string(200000, '-') + "5}", "5", 1},
    {"math", "\\boxed{" + std::string(200001, '-') + "5}", "-5", 1},
    {"math", "\\boxed{" + std::string(200000, '+') + "5}", "5", 1},
    // pi^k with k past 64 is no value: k used to wrap around to pi^0 = 1
    {"math", "\\boxed{{{{\\pi^{1024}}^{1024}}^{1024}}^{4}}", "1", 0},
    {"math", "\\boxed{\\pi^{70}\\pi^{-70}}", "1", 0},
    {"math", "\\boxed{\\pi^{32}\\pi^{32}}", "\\pi^{64}", 1},
    // a final box cut off is no answer, not the earlier answer phrase
    {"math", "Answer: 3. Actually the final is \\boxed{4", "3", 0},
    {"math", "The answer is 5. Let me write \\boxed{", "5", 0},
    {"math", "The answer is 5. Let me write \\fbox{", "5", 0},
    // digits apart are two numbers, not one; only thin-space thousands join
    {"math", "\\boxed{1 2}", "12", 0},
    {"math", "The answer is: 5 6", "56", 0},
    {"math", "\\boxed{1 000}", "1000", 0},
    {"math", "\\boxed{2\\ 3}", "23", 0},
    {"math", "\\boxed{1 2}", "1 2", 1},
    {"math", "\\boxed{12\\,345}", "12345", 1},
    {"math", "\\boxed{1\\,234\\,567}", "1234567", 1},
    {"math", "\\boxed{12\xE2\x80\x89" "345}", "12345", 1},  // U+2009 thin space
    {"math", "\\boxed{1\\,2}", "12", 0},
    // scientific notation, as JSON numbers are printed ("1e+20", "1e-05")
    {"math", "\\boxed{100000000000000000000}", 1e20, 1},
    {"math", "\\boxed{100000000000000000001}", 1e20, 0},
    {"math", "\\boxed{0.00001}", 0.00001, 1},
    {"math", "\\boxed{2.5E3}", "2500", 1},
    {"math", "\\boxed{2.5\\times10^{3}}", "2500", 1},
    {"math", "\\boxed{1e-3}", "0.001", 1},
    {"math", "\\boxed{2e}", "2", 0},  // e not followed by digits: not an exponent
    // U+2212 is a minus sign
    {"math", "\\boxed{\xE2\x88\x92" "5}", "-5", 1},
    {"math", "The answer is \xE2\x88\x92" "5.", "-5", 1},
    {"math", "\\boxed{\xE2\x88\x92" "5}", "5", 0},
    // percent: "50\%" matches 50 written with or without %, nothing else
    {"math", "\\boxed{50}", "50\\%", 1},
    {"math", "\\boxed{50\\%}", "0.5", 0},
    {"math", "\\boxed{50\\%}", "\\frac{1}{2}", 0},

    // ---- countdown ----
    {"countdown", "<answer>(25 - 5) * 2</answer>", countdown({25, 5, 2, 7}, 40), 1},
    {"countdown", "<answer>25 + 15</answer>", countdown({25, 15}, 40), 1},
    {"countdown", "<answer>25 + 16</answer>", countdown({25, 15}, 40), 0},
    {"countdown", "\\boxed{7 \\times 6}", countdown({6, 7}, 42), 1},
    {"countdown", "\\boxed{84 \\div 2}", countdown({84, 2}, 42), 1},
    {"countdown", "I tried things.\n(3 + 5) * 2 = 16\n", countdown({3, 5, 2}, 16), 1},
    {"countdown", "<answer>3 × 4 ÷ 2</answer>", countdown({3, 4, 2}, 6), 1},
    {"countdown", "<answer>$7*6$</answer>", countdown({6, 7}, 42), 1},
    {"countdown", "<answer>10 / 4 * 2</answer>", countdown({10, 4, 2}, 5), 1},  // exact 2.5 * 2
    {"countdown", "<answer>7 / 2 * 2</answer>", countdown({7, 2, 2}, 7), 1},
    {"countdown", "<answer>7 / 2</answer>", countdown({7, 2}, 3), 0},  // 3.5, not integer division
    // adversarial
    {"countdown", "<answer>5 + 5</answer>", countdown({5, 2}, 10), 0},     // reuses 5
    {"countdown", "<answer>5 + 5</answer>", countdown({5, 5}, 10), 1},     // two fives given
    {"countdown", "<answer>40</answer>", countdown({25, 15}, 40), 0},      // number not given
    {"countdown", "<answer>6 / (3 - 3)</answer>", countdown({6, 3, 3}, 0), 0},  // division by zero
    {"countdown", "<answer>(6 / (3 - 3)) * 0</answer>", countdown({6, 3, 3, 0}, 0), 0},
    {"countdown", "<answer>-5 + 15</answer>", countdown({5, 15}, 10), 0},  // no unary minus
    {"countdown", "<answer>(25 - 5 * 2</answer>", countdown({25, 5, 2}, 40), 0},  // unbalanced
    {"countdown", "<answer>25 - 5) * 2</answer>", countdown({25, 5, 2}, 40), 0},
    {"countdown", "<answer>2 ** 5</answer>", countdown({2, 5}, 32), 0},
    {"countdown", "<answer>import os</answer>", countdown({1}, 1), 0},
    {"countdown", "<answer></answer>", countdown({1}, 1), 0},
    {"countdown", "<answer>   </answer>", countdown({1}, 1), 0},
    {"countdown", "", countdown({1}, 1), 0},
    {"countdown", "<answer>1 + 2</answer> then <answer>3 * 3</answer>", countdown({1, 2, 3, 3}, 9), 1},
    {"countdown", "<answer>3 * 3</answer> then <answer>1 + 2</answer>", countdown({1, 2, 3, 3}, 9), 0},
    {"countdown", "<think><answer>3 * 3</answer></think>no idea", countdown({3, 3}, 9), 0},
    {"countdown", "<think>hmm</think><answer>3 * 3</answer>", countdown({3, 3}, 9), 1},
    {"countdown", "<answer>3.5 * 2</answer>", countdown({3, 5, 2}, 7), 0},
    {"countdown", "<answer>" + kBig50 + " - " + kBig50 + "</answer>", countdown({1}, 0), 0},
    {"countdown", "<answer>\xff\xfe</answer>", countdown({1}, 1), 0},
    {"countdown", "<answer>((((1))))</answer>", countdown({1}, 1), 1},
    {"countdown", "<answer>1 2</answer>", countdown({1, 2}, 12), 0},  // juxtaposed literals
    {"countdown", "<answer>" + std::string(100000, '(') + "1" + std::string(100000, ')') + "</answer>",
     countdown({1}, 1), 0},
    {"countdown", "<answer>3 * 5 * 1</answer>", countdown({3, 5}, 15), 0},  // more literals than numbers
};

}  // namespace

class VerifierTable : public ::testing::TestWithParam<size_t> {};

TEST_P(VerifierTable, Row) {
  const Row& row = kRows[GetParam()];
  polaris::VerifierResult result = polaris::verify(row.kind, row.response, row.reference);
  EXPECT_EQ(result.reward, row.expected)
      << "kind=" << row.kind << " response=[" << row.response << "] reference=" << row.reference.dump(-1, ' ', false, json::error_handler_t::replace)
      << " extracted=[" << result.extracted << "]";
}

INSTANTIATE_TEST_SUITE_P(Rows, VerifierTable, ::testing::Range<size_t>(0, kRows.size()));

TEST(VerifierTable, HasEnoughRows) { EXPECT_GE(kRows.size(), 120u); }

// ---- cost: GRPO verifies every sampled answer, so none may take seconds ----

// The n largest primes below `below`.
std::vector<int64_t> largest_primes_below(int64_t below, size_t n) {
  std::vector<int64_t> primes;
  for (int64_t candidate = below - 1; primes.size() < n; candidate--) {
    bool prime = true;
    for (int64_t d = 2; d * d <= candidate && prime; d++) prime = candidate % d != 0;
    if (prime) primes.push_back(candidate);
  }
  return primes;
}

// `piece` joined with "+" as often as fits in about 4000 characters; *count gets how often.
std::string repeated_sum(const std::string& piece, int* count) {
  std::string sum = piece;
  for (*count = 1; sum.size() + 1 + piece.size() <= 4000; ++*count) sum += "+" + piece;
  return sum;
}

TEST(MathCost, PathologicalAnswersStayFast) {
  // k copies of (sqrt p1 + ... + sqrt p8)^2 = k * sum(p) + 2k * sum_{i<j} sqrt(p_i p_j). Each
  // product of two radicands near 10^6 used to be factorised by trial division (8.8 s).
  std::vector<int64_t> primes = largest_primes_below(1000000, 32);
  std::string block = "(";
  for (size_t i = 0; i < 8; i++) block += (i ? "+\\sqrt{" : "\\sqrt{") + std::to_string(primes[i]) + "}";
  block += ")^2";
  int copies;
  std::string surd_squares = repeated_sum(block, &copies);
  int64_t prime_sum = 0;
  for (size_t i = 0; i < 8; i++) prime_sum += primes[i];
  std::string expanded = std::to_string(copies * prime_sum);
  for (size_t i = 0; i < 8; i++)
    for (size_t j = i + 1; j < 8; j++)
      expanded += "+" + std::to_string(2 * copies) + "\\sqrt{" + std::to_string(primes[i] * primes[j]) + "}";
  // (32 surds)^2 has 528 terms, over the limit, but only after 1024 products (4.2 s before).
  std::string wide = "(";
  for (size_t i = 0; i < 32; i++) wide += (i ? "+\\sqrt{" : "\\sqrt{") + std::to_string(primes[i]) + "}";
  wide += ")^2";
  int surd_copies, power_copies;
  std::string large_surds = repeated_sum("\\sqrt{999999999989}", &surd_copies);
  std::string powers = repeated_sum("2^1000", &power_copies);
  // Long products of fractions used to reduce thousand-digit fractions at every
  // step (2 to 3.5 s each); a 1000-item list matched item against item (1.7 s).
  auto repeated = [](const std::string& piece, int times) {
    std::string out;
    for (int i = 0; i < times; i++) out += piece;
    return out;
  };
  std::string list, reversed_list;
  for (int i = 0; i < 1000; i++) {
    list += (i ? ", " : "") + std::to_string(i);
    reversed_list += (i ? ", " : "") + std::to_string(999 - i);
  }

  const std::vector<std::tuple<std::string, std::string, double>> cases = {
      {surd_squares, expanded, 1},
      {surd_squares, expanded + "+1", 0},
      {wide, "0", 0},
      {"1\\frac{" + std::string(4000, '9') + "}{" + std::string(4000, '7') + "}", "0", 0},
      {large_surds, std::to_string(surd_copies) + "\\sqrt{999999999989}", 1},
      {powers, std::to_string(power_copies) + "*2^{1000}", 1},
      {"(1+\\sqrt{2})^{1024}", "0", 0},
      {"(\\frac{1}{3}+\\sqrt{2})^{1024}", "0", 0},  // thousand-digit rationals to reduce
      {repeated("\\frac{99}{97}", 600), "1", 0},
      {repeated("\\frac{999999999}{999999937}", 200), "1", 0},
      {repeated("1\\frac{1}{3}", 1600), "1", 0},
      {list, reversed_list, 1},
      {list, reversed_list + ", 1000", 0},
      {"\\{" + list + "\\}", "\\{" + reversed_list + "\\}", 1},
  };
  for (const auto& [answer, reference, expected] : cases) {
    auto start = std::chrono::steady_clock::now();
    double reward = polaris::verify("math", "\\boxed{" + answer + "}", reference).reward;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(reward, expected) << answer.substr(0, 100);
    // Measured at a few ms to 40 ms; the bound only has to catch tenths of seconds.
    EXPECT_LT(seconds, 0.2) << answer.substr(0, 100);
  }
}

// ---- format ----

struct FormatRow {
  std::string response;
  bool ok;
};

TEST(Format, Table) {
  const std::vector<FormatRow> rows = {
      {"<think>reason</think>answer", true},
      {"  \n<think>\nreason\n</think>\n\n\\boxed{5}", true},
      {"<think></think>x", true},
      {"<think>reason</think>", false},            // no answer
      {"<think>reason</think>  \n ", false},       // blank answer
      {"answer <think>reason</think> more", false},  // not at the start
      {"<think>a</think><think>b</think>c", false},  // two blocks
      {"<think>a<think>b</think>c", false},          // nested open
      {"<think>reasoning forever", false},           // never closed
      {"</think><think>x", false},
      {"plain answer", false},
      {"", false},
      {"<think>\xff</think>\xfe", true},  // bytes are bytes
      {"<think>a</think>\xC2\xA0", false},                        // U+00A0 no-break space
      {"<think>a</think>\xE3\x80\x80\xEF\xBB\xBF\xE2\x80\x89\n", false},  // U+3000, U+FEFF, U+2009
      {"<think>a</think>\xE2\x80\xAF\xE2\x81\x9F\xE2\x80\x8A", false},  // U+202F, U+205F, U+200A
      {"<think>a</think>\xC2\xA0x\xC2\xA0", true},
      {"<think>a</think>\xC2", true},  // a cut-off sequence is a byte, not a space
  };
  for (const auto& row : rows) {
    EXPECT_EQ(polaris::check_format(row.response), row.ok) << row.response;
    EXPECT_EQ(polaris::verify("format", row.response, nullptr).reward, row.ok ? 1.0 : 0.0);
  }
}

TEST(Format, RequireFormatZeroesCorrectAnswers) {
  polaris::VerifyOptions options;
  options.require_format = true;
  auto bare = polaris::verify("math", "\\boxed{5}", "5", options);
  EXPECT_TRUE(bare.correct);
  EXPECT_FALSE(bare.format_ok);
  EXPECT_EQ(bare.reward, 0.0);
  auto good = polaris::verify("math", "<think>2+3</think>\\boxed{5}", "5", options);
  EXPECT_TRUE(good.format_ok);
  EXPECT_EQ(good.reward, 1.0);
}

TEST(Countdown, UseAllNumbersOption) {
  polaris::VerifyOptions options;
  options.countdown_use_all_numbers = true;
  EXPECT_EQ(polaris::verify("countdown", "<answer>25+15</answer>", countdown({25, 15, 3}, 40), options).reward, 0.0);
  EXPECT_EQ(polaris::verify("countdown", "<answer>25+15</answer>", countdown({25, 15, 3}, 40)).reward, 1.0);
  EXPECT_EQ(polaris::verify("countdown", "<answer>(25+15)*3</answer>", countdown({25, 15, 3}, 120), options).reward, 1.0);
}

TEST(Countdown, LongAnswersStayFast) {
  // Each literal past the count of given numbers used to be evaluated anyway,
  // on ever longer fractions: 3 s for 800 repeats, 23 s for 1600.
  for (int repeats : {800, 1600}) {
    std::string answer = "<answer>";
    for (int i = 0; i < repeats; i++) answer += "99/97*";
    answer += "99</answer>";
    auto start = std::chrono::steady_clock::now();
    double reward = polaris::verify("countdown", answer, countdown({99, 97, 3}, 99)).reward;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(reward, 0.0);
    EXPECT_LT(seconds, 0.1) << repeats;
  }
}

TEST(Countdown, EvaluateArithmetic) {
  Rational value;
  std::vector<BigInt> literals;
  ASSERT_TRUE(polaris::evaluate_arithmetic("(1 + 2) * 3 - 4 / 8", &value, &literals));
  EXPECT_EQ(value, Rational(BigInt(17), BigInt(2)));
  EXPECT_EQ(literals.size(), 5u);
  EXPECT_FALSE(polaris::evaluate_arithmetic("1 / 0", &value, &literals));
  EXPECT_FALSE(polaris::evaluate_arithmetic("1 +", &value, &literals));
  EXPECT_FALSE(polaris::evaluate_arithmetic("", &value, &literals));
  // No more literals than allowed (the numbers given), no results over 400 digits.
  EXPECT_TRUE(polaris::evaluate_arithmetic("1 + 2 + 3", &value, &literals, 3));
  EXPECT_FALSE(polaris::evaluate_arithmetic("1 + 2 + 3", &value, &literals, 2));
  auto product_of_20_digit_numbers = [](int count) {
    std::string product = "99999999999999999999";
    for (int i = 1; i < count; i++) product += " * 99999999999999999999";
    return product;
  };
  EXPECT_TRUE(polaris::evaluate_arithmetic(product_of_20_digit_numbers(19), &value, &literals));
  EXPECT_FALSE(polaris::evaluate_arithmetic(product_of_20_digit_numbers(21), &value, &literals));
}

TEST(Verify, BadReferencesAndKindsThrow) {
  EXPECT_THROW(polaris::verify("chess", "x", "5"), polaris::Error);
  EXPECT_THROW(polaris::verify("math", "x", json::array()), polaris::Error);
  EXPECT_THROW(polaris::verify("countdown", "x", "40"), polaris::Error);
  EXPECT_THROW(polaris::verify("countdown", "x", json{{"numbers", {1, 2}}}), polaris::Error);
  EXPECT_THROW(polaris::verify("countdown", "x", json{{"numbers", {1.5}}, {"target", 2}}), polaris::Error);
  // Beyond int64: refused, not wrapped to a negative target.
  EXPECT_THROW(polaris::verify("countdown", "x",
                               json::parse(R"({"numbers": [1], "target": 9223372036854775808})")),
               polaris::Error);
  EXPECT_THROW(polaris::verify("countdown", "x", json{{"numbers", {1e30}}, {"target", 2}}),
               polaris::Error);
}

TEST(Extraction, BoxedAndRegion) {
  std::string content;
  EXPECT_TRUE(polaris::extract_last_boxed("a \\boxed{x{y}z} b", &content));
  EXPECT_EQ(content, "x{y}z");
  EXPECT_TRUE(polaris::extract_last_boxed("\\boxed{\\{1\\}}", &content));
  EXPECT_EQ(content, "\\{1\\}");
  EXPECT_FALSE(polaris::extract_last_boxed("no box", &content));
  EXPECT_EQ(polaris::answer_region("<think>a</think>b"), "b");
  EXPECT_EQ(polaris::answer_region("<think>a"), "");
  EXPECT_EQ(polaris::answer_region("plain"), "plain");
  EXPECT_EQ(polaris::normalize_math_answer(" \\left( 1,\\!000 \\right) "), "(1,000)");
  EXPECT_EQ(polaris::normalize_math_answer("x = 1{,}000."), "1000");
}

// ---- exact arithmetic ----

TEST(Rational, BigIntArithmetic) {
  BigInt a = BigInt::from_string(kBig50), b = BigInt::from_string(kBig50Plus1);
  EXPECT_EQ((b - a).to_string(), "1");
  EXPECT_EQ((a - b).to_string(), "-1");
  EXPECT_EQ((a * BigInt(0)).to_string(), "0");
  BigInt product = a * b;
  EXPECT_EQ(product / a, b);
  EXPECT_EQ(product % a, BigInt(0));
  EXPECT_EQ(((product + BigInt(5)) % a).to_string(), "5");
  EXPECT_EQ(BigInt::from_string("-000123").to_string(), "-123");
  EXPECT_EQ(BigInt::from_string("-0").to_string(), "0");
  EXPECT_EQ((BigInt(-7) / BigInt(2)).to_string(), "-3");
  EXPECT_EQ((BigInt(-7) % BigInt(2)).to_string(), "-1");
  EXPECT_EQ(BigInt::gcd(BigInt(-12), BigInt(18)), BigInt(6));
  EXPECT_EQ(BigInt::pow(BigInt(10), 30).to_string(), "1" + std::string(30, '0'));
  EXPECT_THROW(BigInt(1) / BigInt(0), polaris::Error);
  EXPECT_THROW(BigInt::from_string("12a"), polaris::Error);
  int64_t small = 0;
  EXPECT_TRUE(BigInt(INT64_MIN).to_int64(&small));
  EXPECT_EQ(small, INT64_MIN);
  EXPECT_FALSE((BigInt(INT64_MAX) + BigInt(1)).to_int64(&small));
  EXPECT_LT(BigInt(-5), BigInt(3));
  EXPECT_LT(a, b);
}

TEST(Rational, LongDivisionMatchesMultiplication) {
  // Divisors of one to many limbs, with small and large leading limbs, where a
  // quotient-limb estimate is most likely to be off.
  const std::vector<std::string> divisors = {
      "7", "999999999", "1000000000", "1000000001", "999999999999999999",
      "100000000000000000000000000000001", kBig50, kBig60, "5" + std::string(40, '0') + "3"};
  const std::vector<std::string> quotients = {"0", "1", "999999999", "123456789123456789", kBig60 + kBig50};
  for (const auto& d : divisors)
    for (const auto& q : quotients)
      for (const std::string& r : {std::string("0"), std::string("1"), d}) {
        BigInt divisor = BigInt::from_string(d), quotient = BigInt::from_string(q);
        BigInt remainder = BigInt::from_string(r) - (r == d ? BigInt(1) : BigInt(0));  // < divisor
        BigInt dividend = divisor * quotient + remainder;
        BigInt got_quotient, got_remainder;
        BigInt::divmod(dividend, divisor, &got_quotient, &got_remainder);
        EXPECT_EQ(got_quotient, quotient) << dividend.to_string() << " / " << d;
        EXPECT_EQ(got_remainder, remainder) << dividend.to_string() << " % " << d;
        BigInt::divmod(-dividend, divisor, &got_quotient, &got_remainder);
        EXPECT_EQ(got_quotient, -quotient);
        EXPECT_EQ(got_remainder, -remainder);
      }
  BigInt big = BigInt::from_string(kBig60);
  EXPECT_EQ(BigInt::gcd(big * BigInt(6), big * BigInt(4)), big * BigInt(2));
  EXPECT_EQ(BigInt::gcd(big + BigInt(1), big), BigInt(1));
}

TEST(Rational, ParseAndCompare) {
  Rational r;
  ASSERT_TRUE(Rational::parse("-2.50", &r));
  EXPECT_EQ(r.to_string(), "-5/2");
  ASSERT_TRUE(Rational::parse("6/8", &r));
  EXPECT_EQ(r.to_string(), "3/4");
  EXPECT_FALSE(Rational::parse("1/0", &r));
  EXPECT_FALSE(Rational::parse("1.2.3", &r));
  EXPECT_FALSE(Rational::parse("", &r));
  // Scientific notation, as JSON numbers are printed.
  ASSERT_TRUE(Rational::parse("1e+20", &r));
  EXPECT_EQ(r.to_string(), "1" + std::string(20, '0'));
  ASSERT_TRUE(Rational::parse("1e-05", &r));
  EXPECT_EQ(r.to_string(), "1/100000");
  ASSERT_TRUE(Rational::parse("2.5E3", &r));
  EXPECT_EQ(r.to_string(), "2500");
  ASSERT_TRUE(Rational::parse("-1.25e-1/2", &r));
  EXPECT_EQ(r.to_string(), "-1/16");
  for (const char* bad : {"1e", "1e+", "e5", "1e5.5", "1e5e5", "1e1001", "1.5x"})
    EXPECT_FALSE(Rational::parse(bad, &r)) << bad;
  // Sums, products and quotients come out in lowest terms (reduced part by part).
  EXPECT_EQ((Rational(BigInt(1), BigInt(6)) + Rational(BigInt(1), BigInt(10))).to_string(), "4/15");
  EXPECT_EQ((Rational(BigInt(1), BigInt(6)) - Rational(BigInt(1), BigInt(6))).to_string(), "0");
  EXPECT_EQ((Rational(BigInt(2), BigInt(3)) * Rational(BigInt(9), BigInt(4))).to_string(), "3/2");
  EXPECT_EQ((Rational(0) * Rational(BigInt(5), BigInt(7))).to_string(), "0");
  EXPECT_EQ((Rational(BigInt(-2), BigInt(3)) / Rational(BigInt(-4), BigInt(9))).to_string(), "3/2");
  EXPECT_EQ((Rational(BigInt(2), BigInt(3)) / Rational(BigInt(-4), BigInt(9))).to_string(), "-3/2");
  EXPECT_EQ(Rational(BigInt(1), BigInt(10)) + Rational(BigInt(2), BigInt(10)), Rational(BigInt(3), BigInt(10)));
  EXPECT_LT(Rational(BigInt(1), BigInt(3)), Rational(BigInt(1), BigInt(2)));
  EXPECT_THROW(Rational(1) / Rational(0), polaris::Error);
}
