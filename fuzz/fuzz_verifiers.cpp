// The reward verifiers (data/verifier.h) on arbitrary responses and
// references, under their cost bound. Input: one byte choosing the verifier
// (math, countdown, format; bit 2 sets countdown_use_all_numbers), then the
// reference, a NUL, and the response. Countdown's reference is JSON
// ({"numbers": [...], "target": N}); when it does not parse, the response
// still goes through the arithmetic parser.
//
// An input under kVerifierCostBytes that takes over kVerifierCostSeconds of
// CPU is a finding. Under the sanitizers (make fuzz) everything runs several
// times slower, so the bound is scaled by POLARIS_FUZZ_SLOWDOWN there.
#include "data/json_input.h"
#include "data/verifier.h"
#include "fuzz/target.h"
#include "src/common/error.h"

#ifndef POLARIS_FUZZ_SLOWDOWN
#define POLARIS_FUZZ_SLOWDOWN 1
#endif

namespace polaris::fuzz {

static void run_verifier(uint8_t selector, const std::string& reference, const std::string& response) {
  switch (selector % 3) {
    case 0: {
      verify("math", response, reference);
      normalize_math_answer(response);
      math_answers_equal(response, reference);
      break;
    }
    case 1: {
      Rational value;
      std::vector<BigInt> literals;
      evaluate_arithmetic(response, &value, &literals);
      nlohmann::json parsed;
      std::string problem;
      if (parse_json_bounded(reference, &parsed, &problem)) {
        VerifyOptions options;
        options.countdown_use_all_numbers = (selector & 4) != 0;
        verify("countdown", response, parsed, options);
      }
      break;
    }
    default: {
      verify("format", response, nullptr);
      std::string boxed;
      extract_last_boxed(answer_region(response), &boxed);
      break;
    }
  }
}

static void fuzz_verifiers(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const auto [reference, response] = split_at_nul(data + 1, size - 1);
  const double start = thread_cpu_seconds();
  try {
    run_verifier(data[0], reference, response);
  } catch (const Error&) {
    // A reference of the wrong shape is refused; the cost bound still holds.
  }
  const double seconds = thread_cpu_seconds() - start;
  const double limit = kVerifierCostSeconds * POLARIS_FUZZ_SLOWDOWN;
  if (size < kVerifierCostBytes && seconds > limit)
    throw FuzzFinding("verifier " + std::to_string(data[0] % 3) + " took " +
                      std::to_string(seconds) + " s on a " + std::to_string(size) +
                      "-byte input (limit " + std::to_string(limit) + " s)");
}

POLARIS_FUZZ_TARGET("verifiers", fuzz_verifiers)

}  // namespace polaris::fuzz
