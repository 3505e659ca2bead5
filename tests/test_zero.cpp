// ZeRO shard ranges (optim/zero.h), the per-rank memory report, the
// single-process Comm (optim/comm.h), and the gradient segments ZeRO-2 is
// built on (model/gradient_sink.h, optim/sharded_gradients.h): a backward
// through a sink gives the full-buffer gradient bit for bit, with every
// position in exactly one segment, and never allocates the full buffer.
// The multi-process paths are tested end to end under mpirun:
// tests/cli/zero_stages_equivalence.sh, mpi_equivalence.sh, mpi_failure.sh.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>

#include <vector>

#include "model/cpu_ops.h"
#include "model/transformer.h"
#include "optim/comm.h"
#include "optim/sharded_gradients.h"
#include "optim/zero.h"
#include "src/common/error.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

// Tiny shapes: on a loaded machine, OpenMP threads spinning for a
// descheduled peer cost more than the work (see tests/test_transformer.cpp).
const bool kOneThread = [] {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
  return true;
}();

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
  std::vector<float> accum = {10, 20, 30};
  comm->reduce_add_to(x.data(), accum.data(), 3, 0);  // one rank: accum += x
  EXPECT_EQ(accum, (std::vector<float>{11, 22, 33}));
  comm->require_same("--batch", 4);  // one rank always agrees
  EXPECT_DOUBLE_EQ(global_sum(comm.get(), 2.5), 2.5);
  EXPECT_DOUBLE_EQ(global_sum(nullptr, 2.5), 2.5);
}

TEST(Comm, FlagValues) {
  EXPECT_THROW(make_comm("gloo"), Error);
  if (!nccl_available()) {
    EXPECT_THROW(make_comm("nccl"), Error);
    return;
  }
  // A plain process: NCCL over a world of one, refused on the CPU backend
  // (NCCL reduces GPU buffers), naming the flags.
  std::unique_ptr<Comm> nccl = make_comm("nccl");
  EXPECT_EQ(nccl->world_size(), 1);
  EXPECT_TRUE(nccl->device_buffers());
  CpuOps cpu;
  try {
    nccl->attach(cpu);
    FAIL() << "attach to the CPU backend";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--backend cuda"), std::string::npos) << e.what();
  }
}

// A sink that hands out a fresh scratch per segment and copies it into a
// full-size vector on close, recording what was opened and closed.
class RecordingSink : public GradientSink {
 public:
  explicit RecordingSink(size_t total) : full(total, 0.f), writes(total, 0) {}
  float* open(size_t begin, size_t end) override {
    EXPECT_LT(begin, end);
    scratch.emplace_back(end - begin, 0.f);
    opened.push_back({begin, end});
    return scratch.back().data();
  }
  void close(size_t begin, size_t end) override {
    for (size_t i = 0; i < opened.size(); ++i)
      if (opened[i].begin == begin && opened[i].end == end) {
        for (size_t k = begin; k < end; ++k) {
          full[k] += scratch[i][k - begin];
          writes[k]++;
        }
        closed.push_back({begin, end});
        return;
      }
    ADD_FAILURE() << "closed [" << begin << ", " << end << ") without opening it";
  }
  std::vector<float> full;
  std::vector<int> writes;
  std::vector<GradientSegment> opened, closed;
  std::vector<std::vector<float>> scratch;
};

Batch rows_batch(int vocab, int B, int T, uint64_t seed) {
  std::vector<int32_t> tokens(size_t(B) * T);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + seed * 13) % size_t(vocab));
  return Batch::from_token_rows(tokens, B, T);
}

TEST(GradientSegments, SinkGradientsEqualTheFullBufferAndTileIt) {
  const std::vector<ModelConfig> configs = {qwen3_config(40, 16, 3, 2, 1, 8, 24, true),
                                            qwen3_config(40, 16, 2, 2, 2, 8, 24, false),
                                            gpt2_config(40, 16, 2, 2)};
  for (const ModelConfig& config : configs) {
    CpuOps ops;
    Transformer reference(config, ops);
    const std::vector<float> params = random_params(reference, 5);
    reference.set_params(params);
    const Batch batch = rows_batch(config.vocab_size, 2, 8, 3);
    reference.zero_grads();
    reference.forward_backward(batch, 0.25f);
    const std::vector<float> expected = reference.get_grads();

    Transformer model(config, ops);
    model.set_params(params);
    RecordingSink sink(model.num_params());
    model.forward_backward(batch, 0.25f, &sink);
    EXPECT_FALSE(model.holds_full_gradient()) << "the sink's backward allocated the full buffer";
    EXPECT_EQ(sink.full, expected) << config.describe();
    for (size_t k = 0; k < sink.writes.size(); ++k)
      ASSERT_EQ(sink.writes[k], 1) << "position " << k << " in " << sink.writes[k] << " segments";
    // The closing order is the one gradient_segments() announces.
    const std::vector<GradientSegment> announced = model.gradient_segments();
    ASSERT_EQ(sink.closed.size(), announced.size());
    for (size_t i = 0; i < announced.size(); ++i) {
      EXPECT_EQ(sink.closed[i].begin, announced[i].begin);
      EXPECT_EQ(sink.closed[i].end, announced[i].end);
    }
  }
}

// One process, ZeRO-2: the segments go straight into the shard, which is
// the whole buffer, accumulated over micro-batches like grads().
TEST(ShardedGradientsTest, OneProcessAccumulatesTheFullGradient) {
  const ModelConfig config = qwen3_config(40, 16, 2, 2, 1, 8, 24, true);
  CpuOps ops;
  Transformer reference(config, ops), model(config, ops);
  const std::vector<float> params = random_params(reference, 7);
  reference.set_params(params);
  model.set_params(params);
  const Batch a = rows_batch(40, 2, 8, 1), b = rows_batch(40, 1, 8, 2);
  reference.zero_grads();
  reference.forward_backward(a, 0.5f);
  reference.forward_backward(b, 0.5f);
  ShardedGradients sharded(model, nullptr, zero_shard_ranges(model.num_params(), 1), 0);
  for (int step = 0; step < 2; ++step) {  // zero() really starts over
    sharded.zero();
    model.forward_backward(a, 0.5f, &sharded);
    model.forward_backward(b, 0.5f, &sharded);
    const float* shard = sharded.finish();
    EXPECT_EQ(std::vector<float>(shard, shard + model.num_params()), reference.get_grads());
  }
  EXPECT_FALSE(model.holds_full_gradient());
  EXPECT_EQ(sharded.peak_bytes(), 4 * model.num_params());
  EXPECT_EQ(sharded.scratch_floats(), 0u);
}

}  // namespace
}  // namespace polaris
