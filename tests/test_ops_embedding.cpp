// CudaOps embedding (cuda/embedding.cu) against the CPU reference, for N in
// {1, 7, 130} x C in {5, 96, 771, 2560} (C = 5 and 771 take the scalar
// forward, 96 and 2560 the 16-byte one; N = 130 runs the backward's groups of
// 8 rows and its tail, N = 1 and 7 the tail only):
//   - forward with and without a position table;
//   - backward into nonzero (accumulating) fp32 tables, with tokens drawn from
//     a small vocabulary so several rows land on one table row (also within
//     one group of 8), with and without positions, and with every token equal;
//   - a second GPU backward is bitwise identical.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <cstring>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::bitwise_equal;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::random_ints;
using test::random_vector;
using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;

constexpr int kNs[] = {1, 7, 130};
constexpr int kCs[] = {5, 96, 771, 2560};
constexpr int kVocab = 11;      // small: tokens repeat
constexpr int kPositions = 9;   // positions[i] = i % 9: they repeat too

std::string shape(int N, int C, bool positions) {
  return "N=" + std::to_string(N) + " C=" + std::to_string(C) +
         (positions ? " with positions" : " no positions");
}

IVec position_ids(int N) {
  IVec p(N);
  for (int i = 0; i < N; ++i) p[i] = i % kPositions;
  return p;
}

TEST(OpsEmbedding, ForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (bool with_positions : {false, true})
    for (int N : kNs)
      for (int C : kCs) {
        const uint32_t seed = uint32_t(N * 10007 + C);
        const IVec tokens = random_ints(N, seed, 0, kVocab - 1);
        const IVec positions = position_ids(N);
        const Vec tok_table = random_vector(size_t(kVocab) * C, seed + 1);
        const Vec pos_table = random_vector(size_t(kPositions) * C, seed + 2, 0.5f);

        DeviceBuffer ctok(cpu, tok_table, DType::f32), cpos(cpu, pos_table, DType::f32);
        DeviceInts ctokens(cpu, tokens), cpositions(cpu, positions);
        DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32);
        cpu.embedding_forward(cout_, ctokens, with_positions ? (int32_t*)cpositions : nullptr,
                              ctok, with_positions ? CBuf(cpos) : CBuf(), N, C);

        DeviceBuffer gtok(*gpu, tok_table, DType::bf16), gpos(*gpu, pos_table, DType::bf16);
        DeviceInts gtokens(*gpu, tokens), gpositions(*gpu, positions);
        DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16);
        gout.poison();
        gpu->embedding_forward(gout, gtokens, with_positions ? (int32_t*)gpositions : nullptr,
                               gtok, with_positions ? CBuf(gpos) : CBuf(), N, C);

        // Without positions the output is a copy of bf16 values: exact. With
        // positions, two bf16 values summed in fp32 (exact) and rounded once
        // to bf16: relative error <= 2^-9; rtol 2^-8 leaves a factor 2.
        expect_close("embedding_forward", shape(N, C, with_positions), gout.download(),
                     cout_.download(), 0, with_positions ? 1.0 / 256 : 0);
      }
}

// Runs the backward on both sides from the same prefilled tables and compares.
void check_backward(Ops& gpu, const IVec& tokens, bool with_positions, int C, uint32_t seed) {
  CpuOps cpu;
  const int N = int(tokens.size());
  const IVec positions = position_ids(N);
  const Vec dout = random_vector(size_t(N) * C, seed);
  const Vec dtok0 = random_vector(size_t(kVocab) * C, seed + 1, 1.f, false);
  const Vec dpos0 = random_vector(size_t(kPositions) * C, seed + 2, 1.f, false);

  DeviceBuffer cdout(cpu, dout, DType::f32), cdtok(cpu, dtok0, DType::f32),
      cdpos(cpu, dpos0, DType::f32);
  DeviceInts ctokens(cpu, tokens), cpositions(cpu, positions);
  cpu.embedding_backward(cdtok.f32(), with_positions ? cdpos.f32() : nullptr, cdout, ctokens,
                         with_positions ? (int32_t*)cpositions : nullptr, N, C);

  DeviceBuffer gdout(gpu, dout, DType::bf16);
  DeviceInts gtokens(gpu, tokens), gpositions(gpu, positions);
  Vec got_tok[2], got_pos[2];
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer gdtok(gpu, dtok0, DType::f32), gdpos(gpu, dpos0, DType::f32);
    gpu.embedding_backward(gdtok.f32(), with_positions ? gdpos.f32() : nullptr, gdout, gtokens,
                           with_positions ? (int32_t*)gpositions : nullptr, N, C);
    got_tok[run] = gdtok.download();
    got_pos[run] = gdpos.download();
  }

  // Exact: both sides add the same fp32 values (dout is bf16-exact) to each
  // table element in the same order (rows in increasing i), so the sums are
  // bitwise equal, repeated tokens included.
  const std::string where = shape(N, C, with_positions);
  expect_close("embedding_backward dtoken_table", where, got_tok[0], cdtok.download(), 0, 0);
  // Without positions the position table is not touched (it stays dpos0).
  expect_close("embedding_backward dposition_table", where, got_pos[0],
               with_positions ? cdpos.download() : dpos0, 0, 0);
  EXPECT_TRUE(bitwise_equal(got_tok[0], got_tok[1])) << "dtoken_table not deterministic " << where;
  EXPECT_TRUE(bitwise_equal(got_pos[0], got_pos[1]))
      << "dposition_table not deterministic " << where;
}

TEST(OpsEmbedding, BackwardMatchesCpuWithRepeatedTokens) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (bool with_positions : {false, true})
    for (int N : kNs)
      for (int C : kCs) {
        const uint32_t seed = uint32_t(N * 7919 + C + (with_positions ? 1 : 0));
        check_backward(*gpu, random_ints(N, seed, 0, kVocab - 1), with_positions, C, seed + 5);
      }
}

// Every row on one table row: the longest chain of repeated additions.
TEST(OpsEmbedding, BackwardAllTokensEqual) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (int N : {7, 130})
    for (int C : {5, 771}) check_backward(*gpu, IVec(N, 3), true, C, uint32_t(N + C));
}

// Only the position table's gradient.
TEST(OpsEmbedding, BackwardSkipsNullTokenTable) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  const int N = 130, C = 96;
  const IVec tokens = random_ints(N, 91, 0, kVocab - 1);
  const IVec positions = position_ids(N);
  const Vec dout = random_vector(size_t(N) * C, 92);
  const Vec dpos0 = random_vector(size_t(kPositions) * C, 93, 1.f, false);

  DeviceBuffer cdout(cpu, dout, DType::f32), cdpos(cpu, dpos0, DType::f32);
  DeviceInts ctokens(cpu, tokens), cpositions(cpu, positions);
  cpu.embedding_backward(nullptr, cdpos.f32(), cdout, ctokens, cpositions, N, C);

  DeviceBuffer gdout(*gpu, dout, DType::bf16), gdpos(*gpu, dpos0, DType::f32);
  DeviceInts gtokens(*gpu, tokens), gpositions(*gpu, positions);
  gpu->embedding_backward(nullptr, gdpos.f32(), gdout, gtokens, gpositions, N, C);
  // Exact, as in check_backward.
  expect_close("embedding_backward dposition_table (only)", shape(N, C, true), gdpos.download(),
               cdpos.download(), 0, 0);
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): forward against the table lookup,
// backward against central differences, accumulating, skipping a null table
// gradient, no position table (Qwen); the scatter-add's bits independent of
// the thread count.

using test::dot;
using test::expect_doubled;
using test::expect_grad;
using test::expect_same_bits_across_threads;
using test::randn;

TEST(CpuEmbedding, ForwardBackward) {
  CpuOps ops;
  const int N = 9, C = 6, V = 5, P = 4;
  IVec tokens = {0, 3, 3, 1, 4, 3, 0, 2, 1}, positions = {0, 1, 2, 3, 0, 1, 2, 3, 0};
  Vec tt = randn(V * C, 1), pt = randn(P * C, 2), out(N * C), dout = randn(N * C, 3);
  ops.embedding_forward(out.data(), tokens.data(), positions.data(), tt.data(), pt.data(), N, C);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) ASSERT_EQ(out[i * C + c], tt[tokens[i] * C + c] + pt[positions[i] * C + c]);
  Vec dtt(V * C), dpt(P * C);
  ops.embedding_backward(dtt.data(), dpt.data(), dout.data(), tokens.data(), positions.data(), N, C);
  auto L = [&] {
    ops.embedding_forward(out.data(), tokens.data(), positions.data(), tt.data(), pt.data(), N, C);
    return dot(out, dout);
  };
  expect_grad("dtoken_table", tt, dtt, L);
  expect_grad("dposition_table", pt, dpt, L);
  // accumulates; null skipped
  Vec dtt2 = dtt, dpt2 = dpt;
  ops.embedding_backward(dtt2.data(), dpt2.data(), dout.data(), tokens.data(), positions.data(), N, C);
  expect_doubled("dtoken_table", dtt, dtt2);
  expect_doubled("dposition_table", dpt, dpt2);
  Vec dtt3(V * C);
  ops.embedding_backward(dtt3.data(), nullptr, dout.data(), tokens.data(), positions.data(), N, C);
  EXPECT_TRUE(bitwise_equal(dtt3, dtt));
  // no position table (Qwen)
  ops.embedding_forward(out.data(), tokens.data(), nullptr, tt.data(), nullptr, N, C);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) ASSERT_EQ(out[i * C + c], tt[tokens[i] * C + c]);
}

TEST(CpuEmbedding, DeterministicAcrossThreadCounts) {
  CpuOps ops;
  const int N = 300, C = 200, V = 7;
  IVec tokens(N);
  for (int i = 0; i < N; i++) tokens[i] = (i * 5) % V;
  Vec dout = randn(N * C, 1);
  expect_same_bits_across_threads("embedding", [&] {
    Vec dt(V * C);
    ops.embedding_backward(dt.data(), nullptr, dout.data(), tokens.data(), nullptr, N, C);
    return dt;
  });
}

}  // namespace
}  // namespace polaris
