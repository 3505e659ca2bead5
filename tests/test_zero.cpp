// ZeRO shard ranges (optim/zero.h), the per-rank memory report, and the
// single-process Comm (optim/comm.h). The multi-process paths are tested
// end to end under mpirun: tests/cli/mpi_equivalence.sh, mpi_failure.sh.
#include <gtest/gtest.h>

#include <vector>

#include "optim/comm.h"
#include "optim/zero.h"
#include "src/common/error.h"

namespace polaris {
namespace {

TEST(ZeroShards, RangesTileTheBufferAndAreBalanced) {
  const std::vector<size_t> totals = {0, 1, 2, 3, 7, 8, 9, 100, 101, 1023, 1024, 361216, 4000000007ull};
  for (size_t total : totals) {
    for (int world = 1; world <= 17; ++world) {
      std::vector<ShardRange> ranges = zero_shard_ranges(total, world);
      ASSERT_EQ(ranges.size(), size_t(world));
      size_t covered = 0, smallest = total, largest = 0;
      for (int r = 0; r < world; ++r) {
        const ShardRange one = zero_shard_range(total, r, world);
        EXPECT_EQ(one.begin, ranges[size_t(r)].begin);
        EXPECT_EQ(one.end, ranges[size_t(r)].end);
        EXPECT_EQ(one.begin, covered) << "total " << total << " world " << world << " rank " << r;
        EXPECT_LE(one.begin, one.end);
        covered = one.end;
        smallest = std::min(smallest, one.size());
        largest = std::max(largest, one.size());
      }
      EXPECT_EQ(covered, total) << "total " << total << " world " << world;
      EXPECT_LE(largest - smallest, 1u) << "total " << total << " world " << world;
      EXPECT_EQ(largest, (total + size_t(world) - 1) / size_t(world));
    }
  }
}

TEST(ZeroShards, BadRankOrWorldIsAnError) {
  EXPECT_THROW(zero_shard_range(10, 0, 0), Error);
  EXPECT_THROW(zero_shard_range(10, 2, 2), Error);
  EXPECT_THROW(zero_shard_range(10, -1, 2), Error);
}

TEST(ZeroMemory, FormulaPerStage) {
  const size_t P = 1000;
  const int W = 4;  // shard S = 250
  ZeroMemory s0 = zero_memory_per_rank(P, W, 0);
  EXPECT_EQ(s0.params, 4 * P);
  EXPECT_EQ(s0.grads, 4 * P);
  EXPECT_EQ(s0.moments, 8 * P);
  EXPECT_EQ(s0.total(), 16 * P);
  ZeroMemory s1 = zero_memory_per_rank(P, W, 1);
  EXPECT_EQ(s1.params, 4 * P);
  EXPECT_EQ(s1.grads, 4 * P);
  EXPECT_EQ(s1.moments, 8 * 250u);
  ZeroMemory s2 = zero_memory_per_rank(P, W, 2);
  EXPECT_EQ(s2.params, 4 * P);
  EXPECT_EQ(s2.grads, 4 * 250u);
  EXPECT_EQ(s2.moments, 8 * 250u);
  // An uneven split reports the largest shard.
  EXPECT_EQ(zero_memory_per_rank(1001, 4, 2).grads, 4 * 251u);
  // One rank: every stage is plain training.
  for (int stage = 0; stage <= 2; ++stage)
    EXPECT_EQ(zero_memory_per_rank(P, 1, stage).total(), 16 * P);
  EXPECT_THROW(zero_memory_per_rank(P, W, 3), Error);
  EXPECT_NE(describe_zero_memory(P, W, 1).find("ZeRO-1 over 4 ranks"), std::string::npos);
}

TEST(Comm, SingleProcessIsIdentity) {
  std::unique_ptr<Comm> comm = make_comm("none");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  std::vector<float> x = {1, 2, 3};
  comm->all_reduce_sum(x.data(), x.size());
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  std::vector<float> shard(3);
  comm->reduce_scatter_sum(x.data(), shard.data(), zero_shard_ranges(3, 1));
  EXPECT_EQ(shard, x);
  comm->require_same("--batch", 4);  // one rank always agrees
  EXPECT_DOUBLE_EQ(global_sum(comm.get(), 2.5), 2.5);
  EXPECT_DOUBLE_EQ(global_sum(nullptr, 2.5), 2.5);
}

TEST(Comm, FlagValues) {
  EXPECT_THROW(make_comm("nccl"), Error);
  EXPECT_THROW(make_comm("gloo"), Error);
  try {
    make_comm("nccl");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace polaris
