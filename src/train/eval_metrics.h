// Evaluation metrics over K sampled responses per problem (polaris_eval, GRPO eval).
//
//   avg@K   mean correctness over every sample
//   pass@k  the chance that at least one of k samples drawn (without
//           replacement) from the n generated is correct, estimated without
//           bias from c correct out of n (Chen et al. 2021, "Codex"):
//               pass@k = 1 - C(n-c, k) / C(n, k)
//           computed as 1 - prod_{i=n-c+1..n} (1 - k/i), stable for large n
//   maj@K   the majority-vote answer (most frequent non-empty extracted
//           answer, ties broken by first occurrence) is correct
#pragma once
#include <string>
#include <vector>

namespace polaris {

// 1 - C(n-c, k)/C(n, k). Requires 0 <= c <= n and 1 <= k <= n (Error otherwise).
double pass_at_k(int n, int c, int k);

// Index of the first sample carrying the most frequent non-empty answer
// (ties: the answer that occurs first); -1 when every answer is empty.
int majority_index(const std::vector<std::string>& answers);
// That answer ("" when none).
std::string majority_answer(const std::vector<std::string>& answers);

}  // namespace polaris
