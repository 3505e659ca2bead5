// The verifiers' cost bound (data/verifier.h): GRPO grades every sampled
// response, so no input under kVerifierCostBytes may take more than
// kVerifierCostSeconds. Adversarial responses are generated here for each
// verifier (deep nesting, huge literals, power towers, long sums and tuples,
// repeated markers) and fed through the `verifiers` fuzz target
// (fuzz/fuzz_verifiers.cpp), which checks the bound itself; the CPU time is
// also measured here, so a slow verifier fails this test either way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "data/verifier.h"
#include "fuzz/target.h"
#include "src/common/error.h"

using namespace polaris;

namespace {

enum Verifier : uint8_t { kMath = 0, kCountdown = 1, kFormat = 2, kCountdownAllNumbers = 5 };

struct CostCase {
  std::string name;
  uint8_t verifier;
  std::string reference, response;
};

std::string repeat(const std::string& piece, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out += piece;
  return out;
}

// `piece` repeated until the whole input would reach `bytes`.
std::string fill(const std::string& head, const std::string& piece, const std::string& tail,
                 size_t bytes) {
  std::string out = head;
  while (out.size() + piece.size() + tail.size() < bytes) out += piece;
  return out + tail;
}

// open ... inner ... close, nested as deep as `bytes` allows.
std::string nest(const std::string& open, const std::string& inner, const std::string& close,
                 size_t bytes) {
  const size_t depth = (bytes - inner.size()) / (open.size() + close.size());
  return repeat(open, depth) + inner + repeat(close, depth);
}

// Just under the bound, leaving room for the selector, reference and NUL.
constexpr size_t kBudget = kVerifierCostBytes - 200;

std::vector<CostCase> adversarial_cases() {
  const std::string countdown_ref = "{\"numbers\": [1, 2, 3, 4, 5, 6], \"target\": 24}";
  std::string many_numbers = "{\"numbers\": [";
  for (int i = 0; i < 400; ++i) many_numbers += (i ? ", " : "") + std::to_string(1 + i % 9);
  many_numbers += "], \"target\": 400}";
  return {
      // math: the boxed answer and the value parser
      {"nested boxes", kMath, "1", nest("\\boxed{", "1", "}", kBudget)},
      {"deep parentheses", kMath, "1", "\\boxed{" + nest("(", "1", ")", kBudget - 8) + "}"},
      {"nested fractions", kMath, "1/2", "\\boxed{" + nest("\\frac{1}{", "2", "}", kBudget - 8) + "}"},
      {"nested roots", kMath, "2", "\\boxed{" + nest("\\sqrt{", "16", "}", kBudget - 8) + "}"},
      {"huge literal", kMath, "1", "\\boxed{" + std::string(kBudget - 10, '9') + "}"},
      {"power tower", kMath, "1", "\\boxed{" + fill("", "9^", "9", kBudget - 10) + "}"},
      {"braced power tower", kMath, "2", "\\boxed{" + nest("2^{", "99", "}", kBudget - 8) + "}"},
      {"huge exponents", kMath, "10", "\\boxed{" + fill("1", "+10^{999999999999}-\\pi^{123456789}", "", kBudget - 10) + "}"},
      {"long sum", kMath, "5000", "\\boxed{" + fill("1", "+1", "", kBudget - 10) + "}"},
      {"sum of surds", kMath, "0", [] {
         std::string s = "\\boxed{";
         for (int p = 2; s.size() < kBudget - 20; ++p) s += "+\\sqrt{" + std::to_string(p) + "}";
         return s + "}";
       }()},
      {"product of fractions", kMath, "1", "\\boxed{" + fill("1", "*\\frac{97}{89}", "", kBudget - 10) + "}"},
      {"long tuple", kMath, "(1, 2)", "\\boxed{(" + fill("1", ",1", "", kBudget - 12) + ")}"},
      {"repeated answer phrases", kMath, "3", fill("", "The answer is 3. ", "", kBudget)},
      {"think markers", kMath, "3", fill("", "<think></think>", "\\boxed{3}", kBudget)},
      {"unclosed boxes", kMath, "3", fill("", "\\boxed{", "", kBudget)},
      {"dollar runs", kMath, "3", "**Answer:** " + fill("", "$", "3", kBudget - 20)},
      {"spaced digits", kMath, "1", "\\boxed{" + fill("1", " 1", "", kBudget - 10) + "}"},
      {"unit words", kMath, "3", "\\boxed{3" + fill("", " \\text{cm}", "", kBudget - 10) + "}"},
      // countdown: the expression parser and exact arithmetic
      {"deep parentheses", kCountdown, countdown_ref, nest("(", "1", ")", kBudget)},
      {"huge literal", kCountdown, countdown_ref, std::string(kBudget, '9')},
      {"long product", kCountdown, countdown_ref, fill("99999", "*99999", "", kBudget)},
      {"long division chain", kCountdown, countdown_ref, fill("1", "/7", "", kBudget)},
      {"alternating chain", kCountdown, countdown_ref, fill("1", "/3+1", "", kBudget)},
      {"many lines", kCountdown, countdown_ref, fill("", "1+2\n", "(1+2+3)*4", kBudget)},
      {"many answer tags", kCountdown, countdown_ref, fill("", "<answer>1+2</answer>", "", kBudget)},
      {"every number", kCountdownAllNumbers, many_numbers, fill("1", "+1", "", kBudget - many_numbers.size())},
      // format
      {"think tags", kFormat, "", fill("", "<think>", repeat("</think>", 100), kBudget)},
      {"unicode spaces", kFormat, "", "<think>x</think>" + fill("", "\xc2\xa0\xe2\x80\x83", "", kBudget - 20)},
      {"long thought", kFormat, "", "<think>" + std::string(kBudget - 30, 'a') + "</think> ok"},
  };
}

}  // namespace

TEST(VerifierCost, AdversarialInputsUnderTheBound) {
  fuzz::TargetFunction verifiers = nullptr;
  for (const fuzz::Target& target : fuzz::registered_targets())
    if (target.name == "verifiers") verifiers = target.run;
  ASSERT_NE(verifiers, nullptr);
  double worst = 0;
  for (const CostCase& c : adversarial_cases()) {
    std::string input(1, char(c.verifier));
    input += c.reference;
    input += '\0';
    input += c.response;
    SCOPED_TRACE(c.name + " (verifier " + std::to_string(c.verifier % 3) + ", " +
                 std::to_string(input.size()) + " bytes)");
    EXPECT_LT(input.size(), kVerifierCostBytes);
    EXPECT_GT(input.size(), kVerifierCostBytes / 2) << "not adversarial in size";
    const double start = fuzz::thread_cpu_seconds();
    try {
      verifiers(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    } catch (const fuzz::FuzzFinding& e) {
      ADD_FAILURE() << e.what();
    }
    const double seconds = fuzz::thread_cpu_seconds() - start;
    EXPECT_LT(seconds, kVerifierCostSeconds);
    worst = std::max(worst, seconds);
  }
  std::printf("  slowest adversarial input: %.4f s (bound %.1f s)\n", worst, kVerifierCostSeconds);
}

// The verifiers still grade what these inputs mean (the bound is not bought by
// giving up): a boxed answer after a long thought, a long but valid Countdown
// expression, a deep but balanced one.
TEST(VerifierCost, BoundedInputsAreStillGraded) {
  EXPECT_TRUE(verify_math("<think>" + std::string(8000, 'a') + "</think>\\boxed{\\frac{1}{2}}", "0.5").correct);
  EXPECT_TRUE(verify_countdown(repeat("(", 50) + "4*6" + repeat(")", 50), {4, 6}, 24).correct);
  EXPECT_TRUE(verify_format("<think>" + std::string(9000, 'x') + "</think> 24").format_ok);
}
