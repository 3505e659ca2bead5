// ZeRO shard ranges and the per-rank memory report (see zero.h).
#include "optim/zero.h"

#include <algorithm>
#include <cstdio>

#include "src/common/error.h"

namespace polaris {

ShardRange zero_shard_range(size_t total, int rank, int world) {
  require(world >= 1, "zero_shard_range: world size must be >= 1, got " + std::to_string(world));
  require(rank >= 0 && rank < world, "zero_shard_range: rank " + std::to_string(rank) +
                                         " outside [0, " + std::to_string(world) + ")");
  const size_t w = size_t(world), r = size_t(rank);
  const size_t base = total / w, extra = total % w;
  ShardRange range;
  range.begin = r * base + std::min(r, extra);
  range.end = range.begin + base + (r < extra ? 1 : 0);
  return range;
}

std::vector<ShardRange> zero_shard_ranges(size_t total, int world) {
  std::vector<ShardRange> ranges;
  for (int r = 0; r < world; ++r) ranges.push_back(zero_shard_range(total, r, world));
  return ranges;
}

ZeroMemory zero_memory_per_rank(size_t total, int world, int stage, DType weights,
                                size_t bucket_floats) {
  require(stage >= 0 && stage <= 2, "ZeRO stage must be 0, 1 or 2, got " + std::to_string(stage));
  require(world >= 1, "ZeRO: world size must be >= 1");
  const size_t shard = (total + size_t(world) - 1) / size_t(world);
  ZeroMemory m;
  m.weights = dtype_size(weights) * total;
  m.master = stage >= 1 ? 4 * shard : weights == DType::f32 ? 0 : 4 * total;
  m.grads = 4 * (stage == 2 ? shard + bucket_floats : total);
  m.moments = 8 * (stage >= 1 ? shard : total);
  return m;
}

std::string describe_zero_memory(size_t total, int world, int stage, DType weights,
                                 size_t bucket_floats) {
  ZeroMemory m = zero_memory_per_rank(total, world, stage, weights, bucket_floats);
  auto mb = [](size_t bytes) { return double(bytes) / (1024.0 * 1024.0); };
  char line[320];
  std::snprintf(line, sizeof line,
                "ZeRO-%d over %d rank%s: per rank weights %.2f MiB (%s), fp32 master %.2f MiB, "
                "grads %.2f MiB, Adam moments %.2f MiB, total %.2f MiB",
                stage, world, world == 1 ? "" : "s", mb(m.weights), dtype_name(weights),
                mb(m.master), mb(m.grads), mb(m.moments), mb(m.total()));
  return line;
}

}  // namespace polaris
