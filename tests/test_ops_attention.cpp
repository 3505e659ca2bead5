// CudaOps attention (cuda/attention.cu) against the CPU reference:
//   - forward (out, lse) and backward (dq, dk, dv) for head_dim in {64, 128,
//     48, 96} x GQA ratio in {1, 2, 4} x T in {1, 17, 127}, B = 2, with and
//     without packed documents (1-5 documents a row, runs of varied length);
//     then head_dim 256, a T = 300 row, odd and small head dims (33, 8, 36:
//     the scalar staging path), and q, k, v as column ranges of one fused
//     [N, Q + 2 KV] buffer with dq, dk, dv written into one fused gradient
//     buffer of the same layout (every column of it must be written);
//   - the backward runs twice on the GPU and must be bitwise identical, and
//     a call that asks only for dq (or only dk, dv) gives the same bits;
//   - bad shapes and a buffer of the wrong dtype end in one Error line;
//   - decode (cuda/paged_attention.cu): paged caches filled with scatter_rows
//     from a fused buffer through shuffled block tables (rows past a
//     sequence's length stay NaN, so reading one fails), attention_decode
//     against the CPU and against the matching row of a GPU forward; group
//     sizes 1-16 (one and two head passes) and a 700-key sequence (split
//     over the sequence, then combined).
//
// Inputs are bf16-exact (random_vector), so both backends see the same
// values. The backward gets the same out (the CPU forward's, rounded to bf16)
// and the same lse on both sides, so each comparison measures one op's own
// arithmetic. The CPU side always gets dense buffers; the GPU side gets the
// fused strided layout where a test says so (the comparison then also checks
// the strides).
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "src/common/error.h"
#include "tests/attention_cases.h"

namespace polaris {
namespace {

// These tests hold the simple fused kernels (cuda/attention.cu) to fp32-level
// tolerances; the flash path has its own tests (test_ops_flash_attention.cpp).
void use_simple_attention(Ops& gpu) {
#ifdef POLARIS_HAVE_CUDA
  dynamic_cast<CudaOps&>(gpu).set_attention("simple");
#endif
}

using test::AttentionImpl;
using test::AttentionReference;
using test::bitwise_equal;
using test::columns;
using test::docs_from_starts;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::fuse;
using test::GpuAttention;
using test::GpuAttentionResult;
using test::ops_attention;
using test::random_vector;
using Vec = std::vector<float>;

// bf16 keeps 8 significant bits: rounding to nearest errs by at most half
// an ulp, < 2^-8 of the value (an ulp is 2^-7 relative at the bottom of a
// binade). Every output here is rounded to bf16 exactly once.
//
// out: the GPU computes in fp32 (scores, online softmax, P v), then rounds
// once: relative error < 2^-8; rtol 2^-7 leaves a factor 2. The fp32 parts
// differ from the CPU's (summation order, exp2 of base-2 scores vs exp) by a
// few 1e-7 relative per term, <= ~1e-6 * max|v| ~ 4e-6 absolute on an
// output; atol 1e-4 covers outputs near zero with 25x margin and stays far
// below a wrong element (one key dropped from a 127-token document moves
// an output by ~|v|/127 ~ 1e-2).
constexpr double kOutAtol = 1e-4, kOutRtol = 1.0 / 128;
// lse stays fp32 on both sides (no bf16 rounding): |lse| <~ 10, the dot
// products and the log-sum-exp err by ~1e-6 relative.
constexpr double kLseAtol = 1e-4, kLseRtol = 1e-5;
// dq, dk, dv: one bf16 rounding of an fp32 result as well (P recomputed
// from the fp32 lse, dP and Delta in fp32, Delta kept in fp32 scratch, the
// sums in fp32, then dq/dk/dv rounded once): rtol 2^-7 as for out. The fp32
// part errs more than the forward's: dS = P (dP - Delta) subtracts two dot
// products of size ~sqrt(D) (fp32 error up to ~D * 2^-24 * |terms|), and
// dk/dv sum that over every query of the document and the group's query
// heads (sum_t P_ts up to ~G * ln T ~ 20 for the first keys): a worst-case
// bound of ~2e-4 absolute, typically 10x less. atol 5e-4.
constexpr double kGradAtol = 5e-4, kGradRtol = 1.0 / 128;
// Decode against the GPU forward: two different fp32 computations, each
// rounded once to bf16, can land on adjacent bf16 values (one ulp, <= 2^-7
// relative, apart); rtol 2^-6 leaves a factor 2.
constexpr double kDecodeVsForwardRtol = 1.0 / 64;

using Case = test::AttentionCase;

// Forward and backward of one case on both backends, compared.
void check_case(Ops& gpu, const Case& c) {
  SCOPED_TRACE(describe(c));
  const std::string sh = describe(c);
  const AttentionReference want = attention_reference(c);
  GpuAttention g(gpu, c, want);
  const GpuAttentionResult got = run_gpu_attention(g, ops_attention(gpu), sh);
  expect_close("attention_forward out", sh, got.out, want.out, kOutAtol, kOutRtol);
  expect_close("attention_forward lse", sh, got.lse, want.lse, kLseAtol, kLseRtol);
  expect_close("attention_backward dq", sh, got.dq, want.dq, kGradAtol, kGradRtol);
  expect_close("attention_backward dk", sh, got.dk, want.dk, kGradAtol, kGradRtol);
  expect_close("attention_backward dv", sh, got.dv, want.dv, kGradAtol, kGradRtol);
}

TEST(OpsAttention, ForwardBackwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  uint32_t seed = 100;
  for (int D : {64, 128, 48, 96})
    for (int group : {1, 2, 4})
      for (int T : {1, 17, 127})
        for (bool docs : {false, true}) {
          Case c;
          c.B = 2;
          c.T = T;
          c.KVH = 2;
          c.H = 2 * group;
          c.D = D;
          c.docs = docs;
          c.seed = seed += 10;
          check_case(*gpu, c);
        }
}

TEST(OpsAttention, HeadDim256AndLongRow) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  Case c;  // the largest head-dim bucket
  c.T = 127;
  c.H = 4;
  c.KVH = 2;
  c.D = 256;
  c.docs = true;
  c.seed = 7;
  check_case(*gpu, c);
  // T = 300: many key tiles per query tile, query tiles past a document's end.
  c.T = 300;
  c.H = 8;
  c.KVH = 2;
  c.D = 64;
  c.seed = 8;
  check_case(*gpu, c);
  c.docs = false;
  c.seed = 9;
  check_case(*gpu, c);
}

// Document runs whose edges sit on and next to the kernels' tile edges
// (query and key blocks of 16, tiles of 32): documents starting at the last
// key of a 16-key block (15, 31) and running past the next query tile of 32
// (the dk/dv kernel's early exit must not stop there), one-token documents,
// starts at 63, 64, 65 and at the last token.
TEST(OpsAttention, DocumentEdgesAtTileEdges) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  Case c;
  c.B = 2;
  c.T = 100;
  c.H = 4;
  c.KVH = 2;
  c.D = 64;
  c.docs = true;
  c.seed = 321;
  c.doc_ids = docs_from_starts(c.T, {1, 2, 15, 47, 63, 64, 65, 80, 99}, 3);
  const std::vector<int32_t> row2 = docs_from_starts(c.T, {16, 17, 31, 96}, 0);
  c.doc_ids.insert(c.doc_ids.end(), row2.begin(), row2.end());
  check_case(*gpu, c);
}

// Head dims that are not multiples of 8 take the scalar staging path; 33 is
// odd (an output pair straddles the end of the head).
TEST(OpsAttention, OddAndSmallHeadDims) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  uint32_t seed = 40;
  for (int D : {33, 8, 20})
    for (bool docs : {false, true}) {
      Case c;
      c.T = 45;
      c.H = 4;
      c.KVH = 1;
      c.D = D;
      c.docs = docs;
      c.seed = seed += 3;
      check_case(*gpu, c);
    }
}

// q, k, v as column ranges of one [N, Q + 2 KV] projection (the transformer's
// fused qkv); dq, dk, dv written into one fused buffer with the same strides.
TEST(OpsAttention, FusedQkvStrides) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  struct S { int T, H, KVH, D; bool docs; };
  // D = 64: 16-byte staging with strides; D = 36: row stride 288 but head dim
  // not a multiple of 8 (scalar path); D = 96 with GQA 4 and documents.
  for (const S& s : {S{127, 4, 2, 64, true}, S{60, 2, 2, 36, false}, S{127, 8, 2, 96, true},
                     S{17, 3, 1, 128, false}}) {
    Case c;
    c.T = s.T;
    c.H = s.H;
    c.KVH = s.KVH;
    c.D = s.D;
    c.docs = s.docs;
    c.fused = true;
    c.seed = uint32_t(500 + s.D + s.T);
    check_case(*gpu, c);
  }
}

// Asking for part of the gradients (null = not needed) computes the same
// bits for what is asked, and a forward without lse gives the same out.
TEST(OpsAttention, NullOutputs) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  Case c;
  c.T = 70;
  c.H = 4;
  c.KVH = 2;
  c.D = 64;
  c.docs = true;
  c.seed = 77;
  const AttentionReference ref = attention_reference(c);
  GpuAttention g(*gpu, c, ref);
  const AttentionImpl impl = ops_attention(*gpu);
  g.forward(impl);
  const Vec out_with_lse = g.out.download();
  g.forward(impl, /*want_lse=*/false);
  EXPECT_TRUE(bitwise_equal(out_with_lse, g.out.download())) << "out without lse differs";

  auto run = [&](bool want_q, bool want_kv, Vec& hdq, Vec& hdk, Vec& hdv) {
    g.backward(impl, want_q, want_kv);
    g.download_grads(hdq, hdk, hdv);
  };
  Vec dq, dk, dv, dq_only, dk_none, dv_none, dq_none, dk_only, dv_only;
  run(true, true, dq, dk, dv);
  run(true, false, dq_only, dk_none, dv_none);
  run(false, true, dq_none, dk_only, dv_only);
  EXPECT_TRUE(bitwise_equal(dq, dq_only)) << "dq alone differs";
  EXPECT_TRUE(bitwise_equal(dk, dk_only)) << "dk without dq differs";
  EXPECT_TRUE(bitwise_equal(dv, dv_only)) << "dv without dq differs";
  // What was not asked for is left alone (still the NaN poison).
  EXPECT_TRUE(std::all_of(dk_none.begin(), dk_none.end(), [](float x) { return std::isnan(x); }));
  EXPECT_TRUE(std::all_of(dq_none.begin(), dq_none.end(), [](float x) { return std::isnan(x); }));
}

// Bad shapes and a buffer of the wrong dtype: one Error line naming the
// problem, before anything is launched.
TEST(OpsAttention, BadInputsThrow) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  DeviceBuffer a(*gpu, 4096, DType::bf16), f32(*gpu, 4096, DType::f32),
      lse(*gpu, 64, DType::f32);
  auto forward_error = [&](const AttentionShape& s, CBuf q) -> std::string {
    try {
      gpu->attention_forward(a, lse.f32(), q, a, a, nullptr, s);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const auto npos = std::string::npos;
  EXPECT_NE(forward_error(AttentionShape{1, 4, 2, 2, 300}, a).find("head_dim"), npos);
  EXPECT_NE(forward_error(AttentionShape{1, 4, 3, 2, 8}, a).find("num_kv_heads"), npos);
  EXPECT_NE(forward_error(AttentionShape{1, 4, 2, 2, 8, 8}, a).find("row stride"), npos);
  EXPECT_NE(forward_error(AttentionShape{1, 4, 2, 2, 8}, f32).find("bf16"), npos);
  std::string decode_error = "no error";
  try {
    PagedKV bad;
    bad.keys = bad.values = a;
    bad.table_width = bad.block_size = 1;
    gpu->attention_decode(a, a, 0, bad, 1, 2, 2, 0);
  } catch (const Error& e) {
    decode_error = e.what();
  }
  EXPECT_NE(decode_error.find("head_dim"), npos) << decode_error;
}

// Paged KV-cache decoding: keys and values are scattered from a fused
// [S * max_len, Q + 2 KV] buffer into pools of 16-row blocks, sequence s's
// position p going to row p % 16 of block table[s][p / 16] (tables use the
// blocks in a shuffled order); only the first lengths[s] rows of each
// sequence are written (the rest stay NaN: reading one would poison the
// output). Each sequence's query is row lengths[s] - 1 of its q columns.
TEST(OpsAttention, DecodeMatchesCpuAndForward) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  use_simple_attention(*gpu);
  CpuOps cpu;
  struct S { int H, KVH, D; };
  for (const S& s : {S{4, 2, 64}, S{8, 2, 96}, S{4, 4, 128}, S{2, 1, 33}, S{4, 2, 256},
                     S{6, 2, 64}, S{16, 1, 64}}) {
    const int nseq = 3, max_len = 700, bs = 16, width = (max_len + bs - 1) / bs;
    const std::vector<int32_t> lengths = {1, 33, max_len};
    const size_t Q = size_t(s.H) * s.D, KV = size_t(s.KVH) * s.D, W = Q + 2 * KV;
    const size_t rows = size_t(nseq) * max_len;
    const int num_blocks = nseq * width;
    const std::string sh = "S=3 max_len=700 H=" + std::to_string(s.H) +
                           " KVH=" + std::to_string(s.KVH) + " D=" + std::to_string(s.D);
    SCOPED_TRACE(sh);
    const uint32_t seed = uint32_t(900 + s.D + s.H);
    const Vec hq = random_vector(rows * Q, seed), hk = random_vector(rows * KV, seed + 1),
              hv = random_vector(rows * KV, seed + 2);
    const Vec fused = fuse(hq, hk, hv, rows, Q, KV);
    // Block tables: a shuffled permutation of the pool's blocks.
    std::vector<int32_t> table(static_cast<size_t>(num_blocks), 0);
    for (int b = 0; b < num_blocks; ++b) table[size_t(b)] = int32_t((b * 37 + 11) % num_blocks);
    auto pool_row = [&](int q, int pos) {
      return int32_t(table[size_t(q) * width + pos / bs] * bs + pos % bs);
    };

    // Rows to scatter: (s, pos) for pos < lengths[s], from fused row s*max_len + pos.
    std::vector<int32_t> cache_rows;
    Vec kfused_rows;   // fused rows, in scatter order
    for (int q = 0; q < nseq; ++q)
      for (int pos = 0; pos < lengths[q]; ++pos) {
        const size_t r = size_t(q) * max_len + pos;
        cache_rows.push_back(pool_row(q, pos));
        kfused_rows.insert(kfused_rows.end(), fused.begin() + r * W, fused.begin() + (r + 1) * W);
      }
    const int n = int(cache_rows.size());
    const size_t pool = size_t(num_blocks) * bs;
    // Decode queries: row lengths[s] - 1 of each sequence, as [S, W] rows
    // (q in the first Q columns: q_stride = W).
    Vec qdec(size_t(nseq) * W), qdec_dense(size_t(nseq) * Q);
    for (int q = 0; q < nseq; ++q) {
      const size_t r = size_t(q) * max_len + lengths[q] - 1;
      std::copy(fused.begin() + r * W, fused.begin() + (r + 1) * W, qdec.begin() + q * W);
      std::copy(hq.begin() + r * Q, hq.begin() + (r + 1) * Q, qdec_dense.begin() + q * Q);
    }

    // ---- GPU: scatter, decode ----
    DeviceBuffer gsrc(*gpu, kfused_rows, DType::bf16);
    DeviceInts grows(*gpu, cache_rows), glen(*gpu, lengths), gtable(*gpu, table);
    DeviceBuffer gk(*gpu, pool * KV, DType::bf16), gv(*gpu, pool * KV, DType::bf16);
    gk.poison();
    gv.poison();
    gpu->scatter_rows(gk, CBuf(gsrc.buf) + Q, int(W), grows.ptr, n, int(KV));
    gpu->scatter_rows(gv, CBuf(gsrc.buf) + Q + KV, int(W), grows.ptr, n, int(KV));
    // scatter_rows: written rows are the k/v values exactly; others untouched.
    const Vec kc = gk.download(), vc = gv.download();
    std::vector<bool> written(pool, false);
    for (int q = 0; q < nseq; ++q)
      for (int pos = 0; pos < lengths[q]; ++pos) {
        const size_t r = size_t(q) * max_len + pos, c = size_t(pool_row(q, pos));
        written[c] = true;
        for (size_t cidx = 0; cidx < KV; ++cidx) {
          ASSERT_EQ(kc[c * KV + cidx], hk[r * KV + cidx]) << "scatter_rows k row " << r;
          ASSERT_EQ(vc[c * KV + cidx], hv[r * KV + cidx]) << "scatter_rows v row " << r;
        }
      }
    for (size_t c = 0; c < pool; ++c) {
      if (!written[c]) {
        ASSERT_TRUE(std::isnan(kc[c * KV]) && std::isnan(vc[c * KV])) << "scatter_rows wrote " << c;
      }
    }
    DeviceBuffer gq(*gpu, qdec, DType::bf16), gout(*gpu, size_t(nseq) * Q, DType::bf16);
    gout.poison();
    PagedKV gcache;
    gcache.keys = gk;
    gcache.values = gv;
    gcache.block_table = gtable.ptr;
    gcache.lengths = glen.ptr;
    gcache.table_width = width;
    gcache.block_size = bs;
    gpu->attention_decode(gout, gq, int(W), gcache, nseq, s.H, s.KVH, s.D);
    const Vec got = gout.download();

    // ---- CPU: the same pools (zeros where never written), dense q ----
    Vec kpool(pool * KV, 0.f), vpool(pool * KV, 0.f);
    for (size_t c = 0; c < pool; ++c) {
      if (!written[c]) continue;
      for (size_t cidx = 0; cidx < KV; ++cidx) {
        kpool[c * KV + cidx] = kc[c * KV + cidx];
        vpool[c * KV + cidx] = vc[c * KV + cidx];
      }
    }
    DeviceBuffer ck(cpu, kpool, DType::f32), cv(cpu, vpool, DType::f32),
        cq(cpu, qdec_dense, DType::f32), cout_(cpu, size_t(nseq) * Q, DType::f32);
    DeviceInts clen(cpu, lengths), ctable(cpu, table);
    PagedKV ccache = gcache;
    ccache.keys = ck;
    ccache.values = cv;
    ccache.block_table = ctable.ptr;
    ccache.lengths = clen.ptr;
    cpu.attention_decode(cout_, cq, int(Q), ccache, nseq, s.H, s.KVH, s.D);
    expect_close("attention_decode vs cpu", sh, got, cout_.download(), kOutAtol, kOutRtol);

    // ---- against the GPU forward: B = S rows of T = max_len tokens, the
    // fused buffer as q|k|v; sequence s's decode is row lengths[s] - 1. ----
    DeviceBuffer gfused(*gpu, fused, DType::bf16), gfwd(*gpu, rows * Q, DType::bf16);
    AttentionShape fs{nseq, max_len, s.H, s.KVH, s.D, int(W), int(W), int(W)};
    gpu->attention_forward(gfwd, nullptr, gfused, CBuf(gfused.buf) + Q, CBuf(gfused.buf) + Q + KV,
                           nullptr, fs);
    const Vec fwd = gfwd.download();
    Vec fwd_rows(size_t(nseq) * Q);
    for (int q = 0; q < nseq; ++q) {
      const size_t r = size_t(q) * max_len + lengths[q] - 1;
      std::copy(fwd.begin() + r * Q, fwd.begin() + (r + 1) * Q, fwd_rows.begin() + q * Q);
    }
    expect_close("attention_decode vs forward", sh, got, fwd_rows, kOutAtol,
                 kDecodeVsForwardRtol);
  }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): forward (out, lse) against naive
// attention in double; backward against central differences, dq/dk/dv
// written, null gradients skipped; q/k/v as column ranges of one fused buffer
// equal to the dense result bitwise; scatter_rows + attention_decode equal to
// rows of the full forward; bits independent of the thread count.

using test::dot;
using test::expect_grad;
using test::expect_same_bits_across_threads;
using test::expect_written;
using test::randn;
using IVec = std::vector<int32_t>;

struct AttnCase {
  AttentionShape sh;
  bool docs;
};

// doc ids with several short documents per row (lengths vary per row)
IVec small_docs(int B, int T) {
  IVec d(B * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) d[b * T + t] = (t + b) / 3 + (t >= T - 2 ? 100 : 0);
  return d;
}

// naive attention in double: out [B*T, H*D], lse [B, H, T]
void naive_attention(std::vector<double>& out, std::vector<double>& lse, const Vec& q,
                     const Vec& k, const Vec& v, const int32_t* doc, const AttentionShape& s) {
  const int B = s.B, T = s.T, H = s.num_heads, KVH = s.num_kv_heads, D = s.head_dim;
  out.assign((size_t)B * T * H * D, 0);
  lse.assign((size_t)B * H * T, 0);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        const int kvh = h / (H / KVH);
        std::vector<double> sc(T, -INFINITY);
        double mx = -INFINITY;
        for (int u = 0; u <= t; u++) {
          if (doc && doc[b * T + u] != doc[b * T + t]) continue;
          double d = 0;
          for (int i = 0; i < D; i++)
            d += (double)q[((b * T + t) * H + h) * D + i] * k[((b * T + u) * KVH + kvh) * D + i];
          sc[u] = d / std::sqrt((double)D);
          mx = std::max(mx, sc[u]);
        }
        double sum = 0;
        for (int u = 0; u <= t; u++) sum += std::exp(sc[u] - mx);
        lse[(b * H + h) * T + t] = mx + std::log(sum);
        for (int u = 0; u <= t; u++) {
          const double p = std::exp(sc[u] - mx) / sum;
          for (int i = 0; i < D; i++)
            out[((b * T + t) * H + h) * D + i] += p * v[((b * T + u) * KVH + kvh) * D + i];
        }
      }
}

const AttnCase kAttnCases[] = {
    {{2, 7, 4, 2, 8}, true},    // GQA, packed documents, T not a power of two
    {{1, 6, 2, 2, 16}, false},  // multi-head, one document
    {{1, 5, 6, 2, 32}, true},   // GQA group of 3, head_dim 32
    {{2, 5, 3, 1, 8}, true},    // multi-query
};

TEST(CpuAttention, ForwardMatchesNaive) {
  CpuOps ops;
  for (const auto& c : kAttnCases) {
    const auto& s = c.sh;
    const int N = s.B * s.T;
    Vec q = randn(N * s.num_heads * s.head_dim, 1), k = randn(N * s.num_kv_heads * s.head_dim, 2),
        v = randn(N * s.num_kv_heads * s.head_dim, 3);
    IVec docs = small_docs(s.B, s.T);
    const int32_t* doc = c.docs ? docs.data() : nullptr;
    Vec out(q.size()), lse(s.B * s.num_heads * s.T);
    ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), doc, s);
    std::vector<double> eout, else_;
    naive_attention(eout, else_, q, k, v, doc, s);
    for (size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], eout[i], 1e-5) << i;
    for (size_t i = 0; i < lse.size(); i++) ASSERT_NEAR(lse[i], else_[i], 1e-5) << i;
  }
}

TEST(CpuAttention, Backward) {
  CpuOps ops;
  for (const auto& c : kAttnCases) {
    const auto& s = c.sh;
    const int N = s.B * s.T;
    Vec q = randn(N * s.num_heads * s.head_dim, 1), k = randn(N * s.num_kv_heads * s.head_dim, 2),
        v = randn(N * s.num_kv_heads * s.head_dim, 3), dout = randn(q.size(), 4);
    IVec docs = small_docs(s.B, s.T);
    const int32_t* doc = c.docs ? docs.data() : nullptr;
    Vec out(q.size()), lse(s.B * s.num_heads * s.T);
    auto L = [&] {
      ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), doc, s);
      return dot(out, dout);
    };
    L();
    Vec dq(q.size()), dk(k.size()), dv(v.size());
    ops.attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), doc, s);
    expect_grad("attention dq", q, dq, L);
    expect_grad("attention dk", k, dk, L);
    expect_grad("attention dv", v, dv, L);
    L();
    Vec dq2 = dq, dk2 = dk, dv2 = dv;
    ops.attention_backward(dq2.data(), dk2.data(), dv2.data(), dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), doc, s);
    expect_written("dq", dq, dq2);
    expect_written("dk", dk, dk2);
    expect_written("dv", dv, dv2);
    Vec dk3(k.size());
    ops.attention_backward(nullptr, dk3.data(), nullptr, dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), doc, s);
    EXPECT_TRUE(bitwise_equal(dk3, dk));
  }
}

// q, k, v as column ranges of one [N, Q + 2 KV] buffer (the fused qkv
// projection: q_stride = k_stride = v_stride = Q + 2 KV), and dq, dk, dv
// written into one fused buffer with the same strides: the same bits as the
// dense computation (out and lse too).
TEST(CpuAttention, FusedQkvStridesMatchDense) {
  CpuOps ops;
  for (const auto& c : kAttnCases) {
    const auto& s = c.sh;
    const int N = s.B * s.T;
    const int Q = s.num_heads * s.head_dim, KV = s.num_kv_heads * s.head_dim, W = Q + 2 * KV;
    const Vec q = randn(size_t(N) * Q, 1), k = randn(size_t(N) * KV, 2),
              v = randn(size_t(N) * KV, 3), dout = randn(q.size(), 4);
    IVec docs = small_docs(s.B, s.T);
    const int32_t* doc = c.docs ? docs.data() : nullptr;
    Vec out(q.size()), lse(s.B * s.num_heads * s.T), dq(q.size()), dk(k.size()), dv(v.size());
    ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), doc, s);
    ops.attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), doc, s);

    AttentionShape fs = s;
    fs.q_stride = fs.k_stride = fs.v_stride = W;
    const Vec qkv = fuse(q, k, v, N, Q, KV);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Vec fout(out.size(), nan), flse(lse.size(), nan);
    ops.attention_forward(fout.data(), flse.data(), qkv.data(), qkv.data() + Q,
                          qkv.data() + Q + KV, doc, fs);
    EXPECT_TRUE(bitwise_equal(fout, out)) << "out, case H=" << s.num_heads;
    EXPECT_TRUE(bitwise_equal(flse, lse)) << "lse, case H=" << s.num_heads;
    Vec dqkv(size_t(N) * W, nan);  // every column is dq, dk or dv: all written
    ops.attention_backward(dqkv.data(), dqkv.data() + Q, dqkv.data() + Q + KV, dout.data(),
                           qkv.data(), qkv.data() + Q, qkv.data() + Q + KV, fout.data(),
                           flse.data(), doc, fs);
    EXPECT_TRUE(bitwise_equal(columns(dqkv, N, W, 0, Q), dq)) << "dq, case H=" << s.num_heads;
    EXPECT_TRUE(bitwise_equal(columns(dqkv, N, W, Q, KV), dk)) << "dk, case H=" << s.num_heads;
    EXPECT_TRUE(bitwise_equal(columns(dqkv, N, W, Q + KV, KV), dv)) << "dv, case H=" << s.num_heads;
  }
}

TEST(CpuAttention, ScatterRowsAndDecodeMatchForward) {
  // Decoding token t against a paged cache of keys/values 0..t (blocks of
  // 4 rows, the two sequences' blocks interleaved in the pool) gives the
  // same bits as row t of the full causal forward.
  CpuOps ops;
  const AttentionShape s{2, 9, 4, 2, 16};
  const int N = s.B * s.T, KVW = s.num_kv_heads * s.head_dim, QW = s.num_heads * s.head_dim;
  Vec q = randn(N * QW, 1), k = randn(N * KVW, 2), v = randn(N * KVW, 3);
  Vec out(N * QW), lse(s.B * s.num_heads * s.T);
  ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), nullptr, s);
  const int bs = 4, width = 3;
  const IVec table = {4, 1, 2, 0, 5, 3};  // sequence b owns table[b * width ...]
  Vec kc(6 * bs * KVW), vc(kc.size());
  IVec rows(N);  // row b*T + t of k goes to its block's row
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++) rows[b * s.T + t] = table[b * width + t / bs] * bs + t % bs;
  ops.scatter_rows(kc.data(), k.data(), KVW, rows.data(), N, KVW);
  ops.scatter_rows(vc.data(), v.data(), KVW, rows.data(), N, KVW);
  for (int i = 0; i < N; i++)
    ASSERT_EQ(0, std::memcmp(&kc[rows[i] * KVW], &k[i * KVW], KVW * sizeof(float)));
  for (int t : {0, 4, 8}) {
    Vec qt(s.B * QW), ot(s.B * QW);
    IVec lengths(s.B, t + 1);
    for (int b = 0; b < s.B; b++) std::memcpy(&qt[b * QW], &q[(b * s.T + t) * QW], QW * sizeof(float));
    PagedKV cache;
    cache.keys = kc.data();
    cache.values = vc.data();
    cache.block_table = table.data();
    cache.lengths = lengths.data();
    cache.table_width = width;
    cache.block_size = bs;
    ops.attention_decode(ot.data(), qt.data(), QW, cache, s.B, s.num_heads, s.num_kv_heads,
                         s.head_dim);
    for (int b = 0; b < s.B; b++)
      EXPECT_EQ(0, std::memcmp(&ot[b * QW], &out[(b * s.T + t) * QW], QW * sizeof(float))) << "t=" << t;
  }
  // Negative control: a wrong block table reads other rows.
  IVec lengths(s.B, 8), swapped = table;
  std::swap(swapped[0], swapped[1]);
  Vec qt(s.B * QW), ot(s.B * QW);
  for (int b = 0; b < s.B; b++) std::memcpy(&qt[b * QW], &q[(b * s.T + 7) * QW], QW * sizeof(float));
  PagedKV cache;
  cache.keys = kc.data();
  cache.values = vc.data();
  cache.block_table = swapped.data();
  cache.lengths = lengths.data();
  cache.table_width = width;
  cache.block_size = bs;
  ops.attention_decode(ot.data(), qt.data(), QW, cache, s.B, s.num_heads, s.num_kv_heads,
                       s.head_dim);
  EXPECT_NE(0, std::memcmp(&ot[0], &out[7 * QW], QW * sizeof(float)));
}

TEST(CpuAttention, DeterministicAcrossThreadCounts) {
  CpuOps ops;
  const AttentionShape s{3, 17, 4, 2, 16};
  const int N = s.B * s.T;
  Vec q = randn(N * 64, 1), k = randn(N * 32, 2), v = randn(N * 32, 3), dout = randn(N * 64, 4);
  IVec docs = small_docs(s.B, s.T);
  expect_same_bits_across_threads("attention", [&] {
    Vec out(q.size()), lse(s.B * s.num_heads * s.T), dq(q.size()), dk(k.size()), dv(v.size());
    ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), docs.data(), s);
    ops.attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), docs.data(), s);
    Vec all = dq;
    all.insert(all.end(), dk.begin(), dk.end());
    all.insert(all.end(), dv.begin(), dv.end());
    return all;
  });
}

}  // namespace
}  // namespace polaris
