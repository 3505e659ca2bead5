// Verifiable rewards: score a model's response against a known answer.
//
// GRPO samples several responses per prompt and needs a number for each. For
// math and Countdown the number comes from a program, not a reward model:
//
//   kind "math"      reference: the answer as a string or JSON number.
//                    The last \boxed{...} (or \fbox{...}) of the answer region
//                    is compared with it by value (verify_math.cpp).
//   kind "countdown" reference: {"numbers": [ints], "target": int}. The final
//                    arithmetic expression must use only the given numbers,
//                    each at most once, and evaluate exactly to the target
//                    (verify_countdown.cpp).
//   kind "format"    reward 1 when the response is "<think>...</think>answer"
//                    (verify_format.cpp).
//
// The answer region. Qwen3-style responses think first. Only the text after the
// last "</think>" counts as the answer, so a \boxed{} written while thinking is
// never graded. A response that opens <think> and never closes it (cut off at
// the length limit) has no answer region and scores 0. A response with no think
// tags at all is graded as a whole.
//
// Rewards are 1.0 (correct) or 0.0. With VerifyOptions::require_format, a
// correct answer in a badly formatted response scores 0 too.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/rational.h"

namespace polaris {

struct VerifierResult {
  double reward = 0.0;
  bool correct = false;    // the extracted answer equals the reference
  bool format_ok = false;  // check_format(response)
  std::string extracted;   // the answer text that was graded ("" when none was found)
};

struct VerifyOptions {
  bool require_format = false;            // reward 0 unless check_format passes
  bool countdown_use_all_numbers = false;  // Countdown: every number exactly once
};

// The cost bound: GRPO verifies every sampled response, so no response under
// kVerifierCostBytes may take more than kVerifierCostSeconds of CPU time in
// any verifier (tests/test_verifier_cost.cpp, fuzz/fuzz_verifiers.cpp).
constexpr size_t kVerifierCostBytes = 10 * 1024;
constexpr double kVerifierCostSeconds = 0.2;

// The dispatcher the GRPO loop calls. Throws Error on an unknown kind or a
// reference of the wrong shape (that is a dataset bug, not a wrong answer).
VerifierResult verify(const std::string& kind, const std::string& response,
                      const nlohmann::json& reference, const VerifyOptions& options = {});

// --- Shared helpers (verifier.cpp) ---

// The text after the last "</think>"; the whole response when it has no think
// tags; "" when "<think>" is opened and never closed.
std::string answer_region(const std::string& text);
// The content of the last \boxed{...} / \fbox{...} (nested braces allowed;
// "\boxed 5" also works). False when there is none or the last one is never
// closed (a truncated answer is no answer).
bool extract_last_boxed(const std::string& text, std::string* content);

// --- Math (verify_math.cpp) ---

// The answer a math response gives: the last box of the answer region, else
// what follows the last "answer is" / "Answer:" / "**Answer:**" (its first
// $...$ in that sentence, else the sentence up to ". " or the line end). False
// if none, and when the last box never closes (cut off: no earlier phrase
// stands in for it).
bool extract_math_answer(const std::string& response, std::string* answer);
// Normalises surface form: spaces (one stays between two digits: "1 2" is not
// 12), \left/\right, \dfrac, degrees, units (in \text{} or a spaced unit word,
// never a bare letter), dollar signs, percent ("50\%" -> "50"), the minus sign
// U+2212, thousands separators ("1,000" and "12\,345" but not "1, 100" or
// "1 000"), "x =" / "= x", ...
std::string normalize_math_answer(const std::string& answer);
// True when the two answers are the same value (exact rationals with surds and
// multiples of pi; tuples/intervals elementwise) or the same normalised string.
bool math_answers_equal(const std::string& given, const std::string& reference);
VerifierResult verify_math(const std::string& response, const std::string& reference);

// --- Countdown (verify_countdown.cpp) ---

// Parses + - * / and parentheses over non-negative integer literals by
// recursive descent and evaluates exactly. False on a syntax error, a
// division by zero, more than max_literals literals or an intermediate result
// of over 400 digits. `literals` receives every integer literal in order.
bool evaluate_arithmetic(const std::string& expression, Rational* value,
                         std::vector<BigInt>* literals, size_t max_literals = SIZE_MAX);
// The final expression of a Countdown response: the last <answer>...</answer>
// of the answer region, else its last \boxed{}, else its last non-empty line;
// with "$" removed and anything from the first "=" on dropped.
bool extract_countdown_expression(const std::string& response, std::string* expression);
VerifierResult verify_countdown(const std::string& response, const std::vector<int64_t>& numbers,
                                int64_t target, bool use_all_numbers = false);

// --- Format (verify_format.cpp) ---

// Exactly one <think>...</think> block, at the start (after optional
// whitespace), followed by a non-blank answer (Unicode spaces such as U+00A0
// count as blank).
bool check_format(const std::string& response);
VerifierResult verify_format(const std::string& response);

}  // namespace polaris
