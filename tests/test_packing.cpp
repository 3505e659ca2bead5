// Sequence packing: row layout (targets, weights, positions, doc ids), the
// attention rule, truncation, dropping, both strategies, and that every
// trainable (token, target, weight) triple survives packing exactly once.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "data/packing.h"
#include "src/common/error.h"

using polaris::PackOptions;
using polaris::PackSequence;
using polaris::PackStrategy;

namespace {

PackSequence doc(std::vector<int32_t> ids, std::vector<float> weights = {}) {
  if (weights.empty()) weights.assign(ids.size(), 1.0f);
  return {ids, weights};
}

}  // namespace

TEST(Packing, RowLayoutInOrder) {
  PackOptions options;
  options.strategy = PackStrategy::kInOrder;
  options.pad_id = 99;
  auto result = polaris::pack_sequences({doc({1, 2, 3}, {0, 0.5f, 1}), doc({4, 5})}, 8, options);
  ASSERT_EQ(result.rows.size(), 1u);
  const auto& r = result.rows[0];
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{1, 2, 3, 4, 5, 99, 99, 99}));
  EXPECT_EQ(r.targets, (std::vector<int32_t>{2, 3, -1, 5, -1, -1, -1, -1}));
  EXPECT_EQ(r.weights, (std::vector<float>{0.5f, 1, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(r.positions, (std::vector<int32_t>{0, 1, 2, 0, 1, 0, 1, 2}));
  EXPECT_EQ(r.doc_ids, (std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2, 2}));
  EXPECT_EQ(r.num_documents, 2);
  EXPECT_EQ(result.num_padding, 3u);
  // Attention: causal and inside one document.
  EXPECT_TRUE(polaris::can_attend(r, 2, 0));
  EXPECT_FALSE(polaris::can_attend(r, 0, 2));
  EXPECT_FALSE(polaris::can_attend(r, 3, 2));
  EXPECT_TRUE(polaris::can_attend(r, 4, 3));
  EXPECT_FALSE(polaris::can_attend(r, 5, 4));
}

TEST(Packing, InOrderStartsNewRowWhenFull) {
  PackOptions options;
  options.strategy = PackStrategy::kInOrder;
  auto result = polaris::pack_sequences({doc({1, 2, 3}), doc({4, 5, 6}), doc({7, 8})}, 5, options);
  ASSERT_EQ(result.rows.size(), 2u);
  EXPECT_EQ(result.rows[0].tokens, (std::vector<int32_t>{1, 2, 3, 0, 0}));
  EXPECT_EQ(result.rows[1].tokens, (std::vector<int32_t>{4, 5, 6, 7, 8}));
  EXPECT_EQ(result.rows[1].doc_ids, (std::vector<int32_t>{0, 0, 0, 1, 1}));
}

TEST(Packing, FirstFitDecreasingFillsGaps) {
  // Lengths 3, 4, 3, 2 (and a 1, dropped: nothing to predict) into T = 6.
  // In order: {3}, {4}, {3, 2} = 3 rows. FFD (4, 3, 3, 2): {4, 2}, {3, 3} = 2 rows.
  std::vector<PackSequence> docs = {doc({1, 1, 1}), doc({2, 2, 2, 2}), doc({3, 3, 3}), doc({9}),
                                    doc({4, 4})};
  PackOptions in_order;
  in_order.strategy = PackStrategy::kInOrder;
  auto greedy = polaris::pack_sequences(docs, 6, in_order);
  EXPECT_EQ(greedy.rows.size(), 3u);
  EXPECT_EQ(greedy.num_dropped, 1u);
  auto ffd = polaris::pack_sequences(docs, 6);
  EXPECT_EQ(ffd.num_dropped, 1u);
  ASSERT_EQ(ffd.rows.size(), 2u);
  EXPECT_EQ(ffd.rows[0].tokens, (std::vector<int32_t>{2, 2, 2, 2, 4, 4}));
  EXPECT_EQ(ffd.rows[1].tokens, (std::vector<int32_t>{1, 1, 1, 3, 3, 3}));  // ties keep input order
  EXPECT_EQ(ffd.rows[1].doc_ids, (std::vector<int32_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(ffd.num_padding, 0u);
}

TEST(Packing, TruncatesLongDocumentsKeepingTheRealNextToken) {
  auto result = polaris::pack_sequences({doc({1, 2, 3, 4, 5, 6}, {0, 0, 1, 1, 1, 0.25f}), doc({7, 8})}, 4);
  EXPECT_EQ(result.num_truncated, 1u);
  ASSERT_EQ(result.rows.size(), 2u);
  EXPECT_EQ(result.rows[0].tokens, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(result.rows[0].targets, (std::vector<int32_t>{2, 3, 4, 5}));  // 5 is outside the row
  EXPECT_EQ(result.rows[0].weights, (std::vector<float>{0, 1, 1, 1}));
  EXPECT_EQ(result.rows[1].tokens, (std::vector<int32_t>{7, 8, 0, 0}));
}

TEST(Packing, EveryTrainableTargetSurvivesOnce) {
  std::mt19937 rng(7);
  std::vector<PackSequence> docs;
  std::multiset<std::tuple<int32_t, int32_t, int32_t, float>> expected;  // (doc marker, token, target, weight)
  for (int d = 0; d < 300; d++) {
    int length = 1 + static_cast<int>(rng() % 40);
    PackSequence s;
    for (int i = 0; i < length; i++) {
      s.ids.push_back(d * 1000 + i);
      s.weights.push_back(static_cast<float>(rng() % 3) * 0.5f);
    }
    for (int i = 0; i + 1 < std::min(length, 32); i++)
      expected.insert({d, s.ids[i], s.ids[i + 1], s.weights[i + 1]});
    if (length > 32) expected.insert({d, s.ids[31], s.ids[32], s.weights[32]});
    docs.push_back(s);
  }
  for (PackStrategy strategy : {PackStrategy::kFirstFitDecreasing, PackStrategy::kInOrder}) {
    PackOptions options;
    options.strategy = strategy;
    options.pad_id = -5;
    auto result = polaris::pack_sequences(docs, 32, options);
    std::multiset<std::tuple<int32_t, int32_t, int32_t, float>> got;
    size_t pad = 0;
    for (const auto& row : result.rows) {
      ASSERT_EQ(row.tokens.size(), 32u);
      ASSERT_EQ(row.targets.size(), 32u);
      ASSERT_EQ(row.weights.size(), 32u);
      ASSERT_EQ(row.positions.size(), 32u);
      ASSERT_EQ(row.doc_ids.size(), 32u);
      for (int t = 0; t < 32; t++) {
        if (row.tokens[t] == -5) {
          pad++;
          EXPECT_EQ(row.weights[t], 0.0f);
          EXPECT_EQ(row.targets[t], -1);
          EXPECT_EQ(row.doc_ids[t], row.num_documents);
          continue;
        }
        // positions restart at each document and count up inside it
        int32_t d = row.tokens[t] / 1000;
        EXPECT_EQ(row.positions[t], row.tokens[t] % 1000);
        if (t > 0 && row.doc_ids[t] == row.doc_ids[t - 1]) {
          EXPECT_EQ(row.positions[t], row.positions[t - 1] + 1);
        }
        if (row.targets[t] >= 0) {
          got.insert({d, row.tokens[t], row.targets[t], row.weights[t]});
        } else {
          EXPECT_EQ(row.weights[t], 0.0f);
        }
      }
    }
    EXPECT_EQ(got, expected);
    EXPECT_EQ(pad, result.num_padding);
    EXPECT_GT(result.num_truncated, 0u);
    EXPECT_GT(result.num_dropped, 0u);
  }
}

TEST(Packing, BadInput) {
  EXPECT_THROW(polaris::pack_sequences({doc({1, 2})}, 1), polaris::Error);
  PackSequence mismatched{{1, 2, 3}, {1, 1}};
  try {
    polaris::pack_sequences({doc({1, 2}), mismatched}, 8);
    FAIL() << "expected Error";
  } catch (const polaris::Error& e) {
    EXPECT_STREQ(e.what(), "pack_sequences: document 1 has 3 ids but 2 weights");
  }
  EXPECT_TRUE(polaris::pack_sequences({}, 8).rows.empty());
}
