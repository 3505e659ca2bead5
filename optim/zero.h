// ZeRO sharding of the flat parameter buffer (DESIGN.md: shards are
// contiguous ranges of it). Rank r of W owns [begin, end) with
//   base = total / W, extra = total % W
//   begin = r * base + min(r, extra),  size = base + (r < extra)
// so the ranges tile [0, total) in rank order and differ in size by at most 1.
//
// Stages (Rajbhandari et al. 2020), as this engine runs them:
//   0  all-reduce the gradient; every rank runs AdamW on the whole buffer
//      (plain data parallel: params, grads, m, v all replicated).
//   1  all-reduce the gradient; each rank runs AdamW on its shard only, so it
//      holds m and v for the shard (1/W of them); then all-gather the params.
//   2  reduce-scatter the gradient: each rank receives only its shard's
//      reduced gradient (half the bytes of an all-reduce); AdamW on the shard,
//      all-gather the params. The backward pass still writes a full-size local
//      gradient buffer (the CPU backend has no per-bucket release), so on this
//      backend stage 2 saves communication, not gradient memory; the report
//      below gives the memory a bucketed backward would need.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace polaris {

struct ShardRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};

// Rank `rank`'s range of [0, total) split over `world` ranks (formula above).
// Throws Error when world < 1 or rank is outside [0, world).
ShardRange zero_shard_range(size_t total, int rank, int world);
// Every rank's range, in rank order.
std::vector<ShardRange> zero_shard_ranges(size_t total, int world);

// Per-rank bytes of fp32 training state for a stage (the largest shard).
struct ZeroMemory {
  size_t params = 0, grads = 0, moments = 0;  // bytes; moments = m + v
  size_t total() const { return params + grads + moments; }
};
//   params  = 4 P                    (every stage: forward needs all weights)
//   grads   = 4 P (stage 0, 1),  4 S (stage 2)
//   moments = 8 P (stage 0),     8 S (stage 1, 2)
// with P = total parameters and S = the largest shard, ceil(P / W).
ZeroMemory zero_memory_per_rank(size_t total, int world, int stage);
// One line: "ZeRO-1 over 2 ranks: per rank params 1.2 MB, grads ..., total ...".
std::string describe_zero_memory(size_t total, int world, int stage);

}  // namespace polaris
