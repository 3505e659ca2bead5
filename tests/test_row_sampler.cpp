// Row sampler: deterministic, a permutation per epoch, disjoint ranks, and a
// resumed sampler continues exactly like an uninterrupted one.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "data/row_sampler.h"
#include "src/common/error.h"

using polaris::RowSampler;

namespace {

std::vector<uint64_t> take(RowSampler& sampler, size_t n) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < n; i++) out.push_back(sampler.next());
  return out;
}

}  // namespace

TEST(RowSampler, DeterministicFromSeed) {
  RowSampler a(1000, 42), b(1000, 42), c(1000, 43);
  auto xa = take(a, 2500), xb = take(b, 2500), xc = take(c, 2500);
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
}

TEST(RowSampler, EachEpochIsAPermutation) {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 17ull, 64ull, 1000ull, 4097ull}) {
    RowSampler sampler(n, 7);
    std::vector<uint64_t> previous;
    for (int epoch = 0; epoch < 3; epoch++) {
      EXPECT_EQ(sampler.rows_per_epoch(), n);
      auto order = take(sampler, n);
      std::vector<uint64_t> sorted = order;
      std::sort(sorted.begin(), sorted.end());
      for (uint64_t i = 0; i < n; i++) {
        ASSERT_EQ(sorted[i], i) << "n=" << n << " epoch=" << epoch;
      }
      if (n >= 17 && epoch > 0) {
        EXPECT_NE(order, previous) << "epochs should reshuffle";
      }
      previous = order;
    }
    EXPECT_EQ(sampler.epoch(), 2u);
    sampler.next();
    EXPECT_EQ(sampler.epoch(), 3u);
  }
}

TEST(RowSampler, ShuffleOffIsIdentityOrder) {
  RowSampler sampler(5, 1, 0, 1, /*shuffle=*/false);
  EXPECT_EQ(take(sampler, 7), (std::vector<uint64_t>{0, 1, 2, 3, 4, 0, 1}));
  RowSampler rank1(10, 1, 1, 3, false);
  EXPECT_EQ(take(rank1, 4), (std::vector<uint64_t>{1, 4, 7, 1}));
}

TEST(RowSampler, RanksAreDisjointAndEqualSized) {
  const uint64_t n = 103;
  const int world = 4;
  for (int epoch = 0; epoch < 2; epoch++) {
    std::set<uint64_t> seen;
    for (int rank = 0; rank < world; rank++) {
      RowSampler sampler(n, 5, rank, world);
      EXPECT_EQ(sampler.rows_per_epoch(), n / world);
      if (epoch == 1) take(sampler, sampler.rows_per_epoch());
      for (uint64_t row : take(sampler, sampler.rows_per_epoch())) {
        EXPECT_LT(row, n);
        EXPECT_TRUE(seen.insert(row).second) << "row " << row << " given to two ranks";
      }
    }
    EXPECT_EQ(seen.size(), (n / world) * world);  // n mod world rows skipped this epoch
  }
}

TEST(RowSampler, ResumeEqualsUninterrupted) {
  RowSampler reference(37, 9, 1, 2);
  auto expected = take(reference, 100);  // crosses several epochs
  for (size_t stop : {0u, 1u, 17u, 18u, 19u, 55u}) {
    RowSampler first(37, 9, 1, 2);
    auto got = take(first, stop);
    polaris::RowSamplerState state = first.state();
    RowSampler resumed(37, 9, 1, 2);
    resumed.restore(state);
    auto rest = take(resumed, 100 - stop);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, expected) << "stopped after " << stop;
  }
}

TEST(RowSampler, BadArguments) {
  EXPECT_THROW(RowSampler(3, 0, 0, 4), polaris::Error);
  EXPECT_THROW(RowSampler(10, 0, 2, 2), polaris::Error);
  EXPECT_THROW(RowSampler(10, 0, -1, 2), polaris::Error);
  EXPECT_THROW(RowSampler(10, 0, 0, 0), polaris::Error);
  RowSampler sampler(10, 0, 0, 2);
  EXPECT_THROW(sampler.restore({0, 6}), polaris::Error);
  EXPECT_NO_THROW(sampler.restore({3, 5}));
}

TEST(RowSampler, LargeRowCountsNeedNoMemory) {
  RowSampler sampler(uint64_t(1) << 40, 3, 2, 8);
  for (int i = 0; i < 1000; i++) EXPECT_LT(sampler.next(), uint64_t(1) << 40);
}
