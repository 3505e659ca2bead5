// ZeRO shard ranges (optim/zero.h), the per-rank memory report, the
// single-process Comm (optim/comm.h), and the gradient segments ZeRO-2 is
// built on (model/gradient_sink.h, optim/sharded_gradients.h): a backward
// through a sink gives the full-buffer gradient bit for bit, with every
// position in exactly one segment, and never allocates the full buffer.
// The multi-process paths are tested end to end under mpirun:
// tests/cli/zero_stages_equivalence.sh, mpi_equivalence.sh, mpi_failure.sh.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>

#include <map>
#include <vector>

#include "model/cpu_ops.h"
#include "model/transformer.h"
#include "optim/comm.h"
#include "optim/sharded_gradients.h"
#include "optim/zero.h"
#include "src/common/error.h"
#include "src/train/memory_check.h"
#include "src/train/trainer.h"
#include "tests/bf16_cpu_ops.h"
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
  ZeroMemory s0 = zero_memory_per_rank(P, W, 0, DType::bf16);
  EXPECT_EQ(s0.weights, 2 * P);
  EXPECT_EQ(s0.master, 4 * P);
  EXPECT_EQ(s0.grads, 4 * P);
  EXPECT_EQ(s0.moments, 8 * P);
  EXPECT_EQ(s0.total(), 18 * P);
  // fp32 weights are the master at stage 0.
  EXPECT_EQ(zero_memory_per_rank(P, W, 0, DType::f32).master, 0u);
  EXPECT_EQ(zero_memory_per_rank(P, W, 0, DType::f32).total(), 16 * P);
  ZeroMemory s1 = zero_memory_per_rank(P, W, 1, DType::bf16);
  EXPECT_EQ(s1.weights, 2 * P);
  EXPECT_EQ(s1.master, 4 * 250u);
  EXPECT_EQ(s1.grads, 4 * P);
  EXPECT_EQ(s1.moments, 8 * 250u);
  // From stage 1 on the master is a shard of its own, fp32 weights or not.
  EXPECT_EQ(zero_memory_per_rank(P, W, 1, DType::f32).master, 4 * 250u);
  EXPECT_EQ(zero_memory_per_rank(P, W, 1, DType::f32).weights, 4 * P);
  ZeroMemory s2 = zero_memory_per_rank(P, W, 2, DType::bf16, 30);
  EXPECT_EQ(s2.weights, 2 * P);
  EXPECT_EQ(s2.master, 4 * 250u);
  EXPECT_EQ(s2.grads, 4 * (250u + 30u));
  EXPECT_EQ(s2.moments, 8 * 250u);
  // An uneven split reports the largest shard.
  EXPECT_EQ(zero_memory_per_rank(1001, 4, 2, DType::bf16).grads, 4 * 251u);
  EXPECT_EQ(zero_memory_per_rank(1001, 4, 1, DType::bf16).master, 4 * 251u);
  EXPECT_THROW(zero_memory_per_rank(P, W, 3, DType::bf16), Error);
  const std::string line = describe_zero_memory(P, W, 1, DType::bf16);
  EXPECT_NE(line.find("ZeRO-1 over 4 ranks"), std::string::npos) << line;
  EXPECT_NE(line.find("(bf16)"), std::string::npos) << line;
}

TEST(Comm, SingleProcessIsIdentity) {
  // (The byte all-gather over real ranks: MpiComm.AllGatherBytes below,
  // run under mpirun by tests/cli/comm_all_gather.sh.)
  std::unique_ptr<Comm> comm = make_comm("none");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  std::vector<float> x = {1, 2, 3};
  comm->all_reduce_sum(x.data(), x.size());
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  std::vector<float> accum = {10, 20, 30};
  comm->reduce_add_to(x.data(), accum.data(), 3, 0);  // one rank: accum += x
  EXPECT_EQ(accum, (std::vector<float>{11, 22, 33}));
  std::vector<uint16_t> halves = {7, 8, 9};
  comm->all_gather(halves.data(), 2, zero_shard_ranges(3, 1));  // one rank: nothing moves
  EXPECT_EQ(halves, (std::vector<uint16_t>{7, 8, 9}));
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

// Ops that count the bytes they hold (any Ops implementation underneath).
template <class Base>
class CountingOps : public Base {
 public:
  Buf alloc_buf(size_t n, DType dtype) override {
    Buf b = Base::alloc_buf(n, dtype);
    note(b.ptr, n * dtype_size(dtype));
    return b;
  }
  int32_t* alloc_int(size_t n) override {
    int32_t* p = Base::alloc_int(n);
    note(p, 4 * n);
    return p;
  }
  void release(const void* p) override {
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      live_ -= it->second;
      sizes_.erase(it);
    }
    Base::release(p);
  }
  size_t live() const { return live_; }

 private:
  void note(const void* p, size_t bytes) {
    sizes_[p] = bytes;
    live_ += bytes;
  }
  std::map<const void*, size_t> sizes_;
  size_t live_ = 0;
};

// Rank 0 of `world` ranks with no peers: every collective leaves this
// rank's data as it is (the others' parts are absent). For what a rank
// allocates, not for what it computes.
class PretendRanks : public Comm {
 public:
  explicit PretendRanks(int world) : world_(world) {}
  int rank() const override { return 0; }
  int world_size() const override { return world_; }
  std::string name() const override { return "pretend"; }
  void all_reduce_sum(float*, size_t) override {}
  void all_reduce_sum(double*, size_t) override {}
  void all_reduce_max(double*, size_t) override {}
  void all_gather(void*, size_t, const std::vector<ShardRange>&) override {}
  void gather_to_root(const float* shard, float* full,
                      const std::vector<ShardRange>& ranges) override {
    std::copy(shard, shard + ranges[0].size(), full + ranges[0].begin);
  }
  void barrier() override {}
  void broadcast_bytes(void*, size_t, int) override {}
  void reduce_add_to(const float* in, float* root_accum, size_t n, int root) override {
    if (root == 0 && in != root_accum)
      for (size_t i = 0; i < n; ++i) root_accum[i] += in[i];
  }
  void require_same(const std::string&, const std::string&) override {}

 private:
  int world_;
};

// The memory report at start (memory_report_per_rank, describe_zero_memory)
// is zero_memory_per_rank; here that formula meets what a rank really holds
// after a step, per stage, for fp32 weights (the CPU) and bf16 weights
// beside an fp32 master (the GPU's layout, emulated): every byte the
// backend holds is the formula's weights + master + grads + moments, or
// the activations of the pass.
template <class Backend>
void expect_rank_memory_is_the_formula(int world) {
  const ModelConfig config = qwen3_config(40, 16, 2, 2, 1, 8, 24, false);
  for (int stage = 0; stage <= 2; ++stage) {
    CountingOps<Backend> ops;
    Transformer model(config, ops);
    model.set_params(random_params(model, 3));
    PretendRanks ranks(world);
    TrainerOptions options;
    options.schedule.kind = "constant";
    options.schedule.total_steps = 2;
    options.zero_stage = stage;
    options.comm = &ranks;
    Trainer trainer(model, options);
    const std::vector<Batch> batch = {rows_batch(40, 2, 8, 1)};
    trainer.step(batch, total_target_weight(batch));
    const DType dtype = ops.activation_dtype();
    const size_t bucket =
        stage == 2 ? ShardedGradients::scratch_floats(model, collective_comm(&ranks)) : 0;
    const ZeroMemory formula =
        zero_memory_per_rank(model.num_params(), world, stage, dtype, bucket);
    const size_t activations = Transformer::activation_bytes(config, 16, dtype);
    EXPECT_EQ(ops.live() - activations, formula.total())
        << ops.name() << " ZeRO-" << stage << " over " << world << " ranks: weights "
        << formula.weights << " master " << formula.master << " grads " << formula.grads
        << " moments " << formula.moments;
    // The CPU memory check before a run counts the same, plus the host copy
    // the weights were loaded from (stage 2's scratch included).
    if (dtype == DType::f32) {
      EXPECT_EQ(cpu_model_state_bytes(config, world, stage),
                4 * model.num_params() + ops.live() - activations)
          << "ZeRO-" << stage;
    }
    if (stage > 0) {
      EXPECT_EQ(model.master_end() - model.master_begin(), trainer.shard().size());
      EXPECT_THROW(model.get_params(), Error);  // a shard: gathered by master_params
    }
  }
}

TEST(ZeroMemory, RankHoldsWhatTheFormulaSays) {
  expect_rank_memory_is_the_formula<CpuOps>(3);
  expect_rank_memory_is_the_formula<test::Bf16CpuOps>(3);
}

// Under ZeRO-1/2 the master is a shard of its own (Transformer::shard_master)
// and AdamW writes the weights' range beside it: one process at stage 1
// equals stage 0 bit for bit, fp32 weights and bf16 alike, and the master
// gathered for the checkpoint (Trainer::master_params) is the full one.
TEST(ShardedMaster, OneProcessStagesAgreeBitForBit) {
  const ModelConfig config = qwen3_config(40, 16, 2, 2, 1, 8, 24, true);
  auto run = [&](Ops& ops, int stage, std::vector<float>* weights) {
    Transformer model(config, ops);
    model.set_params(random_params(model, 9));
    TrainerOptions options;
    options.schedule.kind = "constant";
    options.schedule.max_lr = 1e-2f;
    options.schedule.total_steps = 3;
    options.zero_stage = stage;
    Trainer trainer(model, options);
    const std::vector<Batch> batch = {rows_batch(40, 2, 8, 4)};
    for (int step = 0; step < 3; ++step) trainer.step(batch, total_target_weight(batch));
    weights->assign(model.num_params(), 0.f);
    ops.download(weights->data(), model.weights(), model.num_params());
    return trainer.master_params();
  };
  CpuOps cpu;
  test::Bf16CpuOps bf16;
  for (Ops* ops : std::vector<Ops*>{&cpu, &bf16}) {
    std::vector<float> weights0, weights1;
    const std::vector<float> master0 = run(*ops, 0, &weights0);
    const std::vector<float> master1 = run(*ops, 1, &weights1);
    EXPECT_EQ(master1, master0) << ops->name();
    EXPECT_EQ(weights1, weights0) << ops->name();
    if (ops == &cpu) {
      EXPECT_EQ(weights1, master1) << "fp32 weights equal their master";
    }
  }
}

// Comm::all_gather over real MPI ranks (skipped unless started by mpirun:
// tests/cli/comm_all_gather.sh runs it on 2, 3 and 4 ranks). Every rank
// fills its range with bytes that name the owner and the position, the rest
// with junk; after the gather every rank holds every owner's bytes, for
// elements of 1 to 8 bytes (2: bf16 weights), even and uneven ranges, a
// rank that owns nothing, and sizes past one element per rank.
// MPI is initialised once per process: the MPI tests share one comm.
Comm* mpi_comm() {
  static std::unique_ptr<Comm> comm = make_comm("mpi");
  return comm.get();
}

TEST(MpiComm, AllGatherBytes) {
  if (!launched_by_mpirun()) GTEST_SKIP() << "needs mpirun (tests/cli/comm_all_gather.sh)";
  Comm* comm = mpi_comm();
  const int rank = comm->rank(), world = comm->world_size();
  ASSERT_GE(world, 2);
  auto pattern = [](size_t byte, int owner) { return uint8_t(byte * 131 + size_t(owner) * 17 + 1); };
  std::vector<std::vector<ShardRange>> layouts;
  for (size_t total : {size_t(1), size_t(world - 1), size_t(1001), size_t(65537)})
    layouts.push_back(zero_shard_ranges(total, world));
  // Rank 0 owns nothing, the last rank most.
  std::vector<ShardRange> skewed = {{0, 0}};
  for (int r = 1; r < world; ++r) skewed.push_back({skewed.back().end, skewed.back().end + size_t(r) * 5});
  layouts.push_back(skewed);
  for (size_t element : {size_t(1), size_t(2), size_t(3), size_t(4), size_t(8)})
    for (const std::vector<ShardRange>& ranges : layouts) {
      const size_t total = ranges.back().end;
      std::vector<uint8_t> buffer(total * element, 0xEE);
      const ShardRange mine = ranges[size_t(rank)];
      for (size_t b = mine.begin * element; b < mine.end * element; ++b) buffer[b] = pattern(b, rank);
      comm->all_gather(buffer.data(), element, ranges);
      for (int owner = 0; owner < world; ++owner)
        for (size_t b = ranges[size_t(owner)].begin * element;
             b < ranges[size_t(owner)].end * element; ++b)
          ASSERT_EQ(buffer[b], pattern(b, owner))
              << "rank " << rank << ": byte " << b << " of owner " << owner << ", elements of "
              << element << " bytes, " << total << " elements";
    }
  // Ranges that do not tile the buffer are refused on every rank, before
  // any byte moves.
  std::vector<ShardRange> gap = zero_shard_ranges(100, world);
  gap.back().begin += 1;
  std::vector<float> data(100);
  EXPECT_THROW(comm->all_gather(data.data(), 4, gap), Error);
  EXPECT_THROW(comm->all_gather(data.data(), 4, zero_shard_ranges(100, world + 1)), Error);
  comm->barrier();
}

// The bf16 emulation as a device backend (host_memory() false): the trainer
// then stages the weight all-gather through the host as it does for
// --backend cuda --comm mpi (ranks sharing a GPU).
class DeviceLikeBf16Ops : public test::Bf16CpuOps {
 public:
  bool host_memory() const override { return false; }
};

// ZeRO-1 and 2 over real MPI ranks with bf16 weights beside a sharded fp32
// master, staged through the host: every rank's weights and the master
// gathered to rank 0 equal one process's (stage 0, the whole batch) up to
// the fp32 rounding of the reduction order (a bf16 weight may land one ulp
// apart where the master sits on a rounding boundary: 1e-2 relative per
// element is far below what a wrong or missing range would give).
TEST(MpiComm, StagedBf16ZeroMatchesOneProcess) {
  if (!launched_by_mpirun()) GTEST_SKIP() << "needs mpirun (tests/cli/comm_all_gather.sh)";
  Comm* comm = mpi_comm();
  const int rank = comm->rank(), world = comm->world_size();
  const ModelConfig config = qwen3_config(40, 16, 2, 2, 1, 8, 24, false);
  const int rows = 2, T = 8;
  std::vector<int32_t> tokens(size_t(world * rows * T));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + i / 5) % 40);
  const std::vector<Batch> global = {Batch::from_token_rows(tokens, world * rows, T)};
  const std::vector<Batch> local = {Batch::from_token_rows(
      std::vector<int32_t>(tokens.begin() + rank * rows * T, tokens.begin() + (rank + 1) * rows * T),
      rows, T)};
  const double weight = total_target_weight(global);
  TrainerOptions options;
  options.schedule.kind = "constant";
  options.schedule.max_lr = 1e-2f;
  options.schedule.total_steps = 3;
  options.adamw.stochastic_rounding = false;
  options.grad_clip = 0.5f;

  DeviceLikeBf16Ops ops;
  Transformer reference(config, ops);
  const std::vector<float> start = random_params(reference, 13);
  reference.set_params(start);
  Trainer one(reference, options);
  for (int step = 0; step < 3; ++step) one.step(global, weight);
  const std::vector<float> want_master = reference.get_params();
  std::vector<float> want_weights(reference.num_params());
  ops.download(want_weights.data(), reference.weights(), want_weights.size());

  for (int stage = 1; stage <= 2; ++stage) {
    Transformer model(config, ops);
    model.set_params(start);
    TrainerOptions sharded = options;
    sharded.zero_stage = stage;
    sharded.comm = comm;
    Trainer trainer(model, sharded);
    for (int step = 0; step < 3; ++step) trainer.step(local, weight);
    std::vector<float> weights(model.num_params());
    ops.download(weights.data(), model.weights(), weights.size());
    const std::vector<float> master = trainer.master_params();
    ASSERT_EQ(master.size(), rank == 0 ? model.num_params() : 0u);
    auto close = [](float a, float b) { return std::fabs(a - b) <= 1e-2f * std::fabs(b) + 1e-6f; };
    size_t far_weights = 0, far_master = 0;
    for (size_t i = 0; i < weights.size(); ++i) far_weights += !close(weights[i], want_weights[i]);
    for (size_t i = 0; i < master.size(); ++i) far_master += !close(master[i], want_master[i]);
    EXPECT_EQ(far_weights, 0u) << "rank " << rank << " ZeRO-" << stage << ": weights apart";
    EXPECT_EQ(far_master, 0u) << "rank " << rank << " ZeRO-" << stage << ": master apart";
    EXPECT_NE(weights, std::vector<float>(weights.size(), 0.f));
  }
}

}  // namespace
}  // namespace polaris
