#include "src/train/eval_metrics.h"

#include <unordered_map>

#include "src/common/error.h"

namespace polaris {

double pass_at_k(int n, int c, int k) {
  require(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n,
          "pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n=" + std::to_string(n) +
              " c=" + std::to_string(c) + " k=" + std::to_string(k));
  if (n - c < k) return 1.0;  // every k-subset holds a correct sample
  double all_wrong = 1.0;     // C(n-c, k) / C(n, k)
  for (int i = n - c + 1; i <= n; ++i) all_wrong *= 1.0 - double(k) / double(i);
  return 1.0 - all_wrong;
}

int majority_index(const std::vector<std::string>& answers) {
  std::unordered_map<std::string, int> count;
  for (const auto& a : answers)
    if (!a.empty()) ++count[a];
  int best = -1, best_count = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].empty()) continue;
    const int n = count[answers[i]];
    if (n > best_count) best = int(i), best_count = n;  // strict: the first occurrence wins ties
  }
  return best;
}

std::string majority_answer(const std::vector<std::string>& answers) {
  const int i = majority_index(answers);
  return i < 0 ? std::string() : answers[size_t(i)];
}

}  // namespace polaris
