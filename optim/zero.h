// ZeRO sharding of the flat parameter buffer (DESIGN.md: shards are
// contiguous ranges of it). Rank r of W owns [begin, end) with
//   base = total / W, extra = total % W
//   begin = r * base + min(r, extra),  size = base + (r < extra)
// so the ranges tile [0, total) in rank order and differ in size by at most 1.
//
// Stages (Rajbhandari et al. 2020), as this engine runs them:
//   0  all-reduce the gradient; every rank runs AdamW on the whole buffer
//      (plain data parallel: weights, master, grads, m, v all replicated).
//   1  reduce-scatter the gradient once the step's backwards are done (each
//      owner's range of the full buffer reduced in place on it); each rank
//      holds the fp32 master and m, v of its shard only (1/W of them), runs
//      AdamW there, writing its range of the weights (bf16 on the GPU); then
//      all-gather the weights (each owner broadcasts its range: 2 bytes a
//      parameter with bf16 weights).
//   2  reduce-scatter the gradient in buckets as the backward produces them
//      (optim/sharded_gradients.h): each rank holds only its shard's reduced
//      gradient plus a bucket's scratch, never the full gradient; AdamW on
//      the shard, all-gather the weights.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "model/ops.h"  // DType

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

// Per-rank bytes of training state for a stage (the largest shard).
struct ZeroMemory {
  size_t weights = 0, master = 0, grads = 0, moments = 0;  // bytes; moments = m + v
  size_t total() const { return weights + master + grads + moments; }
};
//   weights = b P                     (every stage: the forward reads them all;
//                                      b = 2 for bf16 weights, 4 for fp32)
//   master  = 0 (stage 0, fp32 weights: they are the master),
//             4 P (stage 0, bf16 weights),  4 S (stage 1, 2: a shard of its own)
//   grads   = 4 P (stage 0, 1),  4 S + 4 B (stage 2)
//   moments = 8 P (stage 0),     8 S (stage 1, 2)
// with P = total parameters, S = the largest shard, ceil(P / W), and B the
// stage-2 bucket scratch in floats (ShardedGradients::scratch_floats: the
// largest backward segment, twice when the reduction overlaps, plus the tied
// embeddings; 0 when one rank writes straight into its whole-buffer shard).
// So with bf16 weights: 16P + 2P (stage 0), 2P + 4P + 12S (1), 2P + 16S + 4B (2).
ZeroMemory zero_memory_per_rank(size_t total, int world, int stage, DType weights,
                                size_t bucket_floats = 0);
// One line: "ZeRO-1 over 2 ranks: per rank weights 1.2 MiB (bf16), master ..., total ...".
std::string describe_zero_memory(size_t total, int world, int stage, DType weights,
                                 size_t bucket_floats = 0);

}  // namespace polaris
