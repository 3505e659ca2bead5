// Shared pieces of the tests that hold a GPU attention to the CPU reference
// (test_ops_attention.cpp: the simple kernels; test_ops_flash_attention.cpp:
// flash; test_ops_cudnn_attention.cpp: cuDNN). What differs between them,
// the implementation called and the tolerances its arithmetic earns, stays in
// each file; the case, its inputs, the reference and the GPU run live here:
//   - AttentionCase: the shape, packed documents or not, q/k/v dense or as
//     column ranges of one fused [N, Q + 2 KV] buffer;
//   - attention_reference(): bf16-exact inputs and the CPU's dense fp32
//     forward (out, lse) and backward (dq, dk, dv). The backward gets the
//     CPU forward's out rounded to bf16, and the GPU gets the same out and
//     lse, so each comparison measures one op's own arithmetic;
//   - GpuAttention: the GPU buffers of a case (dense or fused), its forward
//     and backward through an AttentionImpl, every output poisoned (NaN)
//     first, so an element never written fails;
//   - run_gpu_attention(): forward, then the backward twice (bitwise
//     identical: no atomics), every column of a fused gradient buffer written.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace test {

struct AttentionCase {
  int B = 2, T = 1, H = 2, KVH = 2, D = 64;
  bool docs = false;   // packed documents (else doc_ids null)
  bool fused = false;  // GPU q, k, v (and dq, dk, dv) as column ranges of one buffer
  uint32_t seed = 1;
  std::vector<int32_t> doc_ids;  // explicit [B*T] layout (docs); else make_docs
  int max_docs = 5;              // make_docs: documents per row at most
};

inline std::string describe(const AttentionCase& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " KVH=" + std::to_string(c.KVH) + " D=" + std::to_string(c.D) +
         (c.docs ? " docs" : "") + (c.fused ? " fused-qkv" : "");
}

// Per row: 1..max_docs documents (at most T) of varied lengths, contiguous
// runs, ids increasing by 1-3 from a random first id (a row's ids need not
// start at 0 nor be consecutive).
inline std::vector<int32_t> make_docs(int B, int T, uint32_t seed, int max_docs) {
  std::mt19937 rng(seed);
  std::vector<int32_t> doc(size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    const int ndocs = std::min(T, 1 + int(rng() % unsigned(max_docs)));
    std::vector<int> cuts;  // ndocs - 1 distinct cut points in 1..T-1
    while (int(cuts.size()) < ndocs - 1) {
      const int c = 1 + int(rng() % unsigned(T - 1));
      if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(T);
    int id = int(rng() % 10), prev = 0;
    for (int c : cuts) {
      for (int t = prev; t < c; ++t) doc[size_t(b) * T + t] = id;
      id += 1 + int(rng() % 3);
      prev = c;
    }
  }
  return doc;
}

// One row of T tokens whose documents start at `starts` (ids from first_id).
inline std::vector<int32_t> docs_from_starts(int T, const std::vector<int>& starts,
                                             int first_id) {
  std::vector<int32_t> doc(T);
  int id = first_id;
  for (int t = 0; t < T; ++t) {
    if (t > 0 && std::find(starts.begin(), starts.end(), t) != starts.end()) ++id;
    doc[t] = id;
  }
  return doc;
}

// Interleaves dense q [N, Q], k [N, KV], v [N, KV] into rows of [N, Q + 2 KV].
inline std::vector<float> fuse(const std::vector<float>& q, const std::vector<float>& k,
                               const std::vector<float>& v, size_t N, size_t Q, size_t KV) {
  const size_t W = Q + 2 * KV;
  std::vector<float> f(N * W);
  for (size_t n = 0; n < N; ++n) {
    std::copy(q.begin() + n * Q, q.begin() + (n + 1) * Q, f.begin() + n * W);
    std::copy(k.begin() + n * KV, k.begin() + (n + 1) * KV, f.begin() + n * W + Q);
    std::copy(v.begin() + n * KV, v.begin() + (n + 1) * KV, f.begin() + n * W + Q + KV);
  }
  return f;
}

// A case's inputs and the CPU's results on them (dense, fp32).
struct AttentionReference {
  std::vector<float> q, k, v, dout;  // bf16-exact
  std::vector<int32_t> doc;          // {0} without documents
  std::vector<float> out, lse;       // the forward
  std::vector<float> out_bf;         // out rounded to bf16: the backward's out on both sides
  std::vector<float> dq, dk, dv;     // the backward
};

inline AttentionReference attention_reference(const AttentionCase& c) {
  CpuOps cpu;
  AttentionReference r;
  const size_t N = size_t(c.B) * c.T, Q = size_t(c.H) * c.D, KV = size_t(c.KVH) * c.D;
  const size_t stats = size_t(c.B) * c.H * c.T;
  r.q = random_vector(N * Q, c.seed);
  r.k = random_vector(N * KV, c.seed + 1);
  r.v = random_vector(N * KV, c.seed + 2);
  r.dout = random_vector(N * Q, c.seed + 3);
  r.doc = !c.docs                ? std::vector<int32_t>{0}
          : !c.doc_ids.empty() ? c.doc_ids
                               : make_docs(c.B, c.T, c.seed + 4, c.max_docs);
  const AttentionShape dense{c.B, c.T, c.H, c.KVH, c.D};
  DeviceBuffer cq(cpu, r.q, DType::f32), ck(cpu, r.k, DType::f32), cv(cpu, r.v, DType::f32);
  DeviceBuffer cout_(cpu, N * Q, DType::f32), clse(cpu, stats, DType::f32);
  DeviceInts cdoc(cpu, r.doc);
  const int32_t* doc = c.docs ? cdoc.ptr : nullptr;
  cpu.attention_forward(cout_, clse.f32(), cq, ck, cv, doc, dense);
  r.out = cout_.download();
  r.lse = clse.download();
  r.out_bf = r.out;
  for (float& x : r.out_bf) x = round_bf16(x);
  DeviceBuffer cout_bf(cpu, r.out_bf, DType::f32), cdout(cpu, r.dout, DType::f32);
  // Zeroed: the reference is right whether it writes or adds its gradients.
  DeviceBuffer cdq(cpu, N * Q, DType::f32), cdk(cpu, N * KV, DType::f32),
      cdv(cpu, N * KV, DType::f32);
  cpu.attention_backward(cdq, cdk, cdv, cdout, cq, ck, cv, cout_bf, clse.f32(), doc, dense);
  r.dq = cdq.download();
  r.dk = cdk.download();
  r.dv = cdv.download();
  return r;
}

// The GPU attention under test: Ops::attention_forward / _backward's
// signatures (the default calls them on the GPU ops; cuDNN wraps its own).
struct AttentionImpl {
  std::function<void(Buf out, float* lse, CBuf q, CBuf k, CBuf v, const int32_t* doc,
                     const AttentionShape& shape)>
      forward;
  std::function<void(Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v, CBuf out,
                      const float* lse, const int32_t* doc, const AttentionShape& shape)>
      backward;
};

inline AttentionImpl ops_attention(Ops& gpu) {
  AttentionImpl impl;
  impl.forward = [&gpu](Buf out, float* lse, CBuf q, CBuf k, CBuf v, const int32_t* doc,
                        const AttentionShape& shape) {
    gpu.attention_forward(out, lse, q, k, v, doc, shape);
  };
  impl.backward = [&gpu](Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v, CBuf out,
                         const float* lse, const int32_t* doc, const AttentionShape& shape) {
    gpu.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, doc, shape);
  };
  return impl;
}

// The GPU side of one case: q, k, v (dense or fused), the gradient buffers
// in the same layout, and the backward's inputs (dout, the reference's out
// rounded to bf16 and its lse, the documents).
struct GpuAttention {
  const AttentionCase& c;
  size_t N, Q, KV, W, stats;
  DeviceBuffer qkv, q, k, v;      // fused: qkv holds all; dense: q, k, v
  DeviceBuffer dqkv, dq, dk, dv;  // the same layout for the gradients
  DeviceBuffer out, lse;          // the forward's outputs
  DeviceBuffer out_bf, dout, lse_in;
  DeviceInts doc_ids;
  AttentionShape shape;

  GpuAttention(Ops& g, const AttentionCase& cs, const AttentionReference& ref)
      : c(cs),
        N(size_t(cs.B) * cs.T),
        Q(size_t(cs.H) * cs.D),
        KV(size_t(cs.KVH) * cs.D),
        W(Q + 2 * KV),
        stats(size_t(cs.B) * cs.H * cs.T),
        qkv(g, cs.fused ? fuse(ref.q, ref.k, ref.v, N, Q, KV) : std::vector<float>(1),
            DType::bf16),
        q(g, cs.fused ? std::vector<float>(1) : ref.q, DType::bf16),
        k(g, cs.fused ? std::vector<float>(1) : ref.k, DType::bf16),
        v(g, cs.fused ? std::vector<float>(1) : ref.v, DType::bf16),
        dqkv(g, cs.fused ? N * W : 1, DType::bf16),
        dq(g, cs.fused ? 1 : N * Q, DType::bf16),
        dk(g, cs.fused ? 1 : N * KV, DType::bf16),
        dv(g, cs.fused ? 1 : N * KV, DType::bf16),
        out(g, N * Q, DType::bf16),
        lse(g, stats, DType::f32),
        out_bf(g, ref.out_bf, DType::bf16),
        dout(g, ref.dout, DType::bf16),
        lse_in(g, ref.lse, DType::f32),
        doc_ids(g, ref.doc) {
    shape = AttentionShape{cs.B, cs.T, cs.H, cs.KVH, cs.D};
    if (cs.fused) shape.q_stride = shape.k_stride = shape.v_stride = int(W);
  }
  CBuf q_in() const { return c.fused ? CBuf(qkv.buf) : CBuf(q.buf); }
  CBuf k_in() const { return c.fused ? CBuf(qkv.buf + Q) : CBuf(k.buf); }
  CBuf v_in() const { return c.fused ? CBuf(qkv.buf + Q + KV) : CBuf(v.buf); }
  Buf dq_out() const { return c.fused ? dqkv.buf : dq.buf; }
  Buf dk_out() const { return c.fused ? dqkv.buf + Q : dk.buf; }
  Buf dv_out() const { return c.fused ? dqkv.buf + Q + KV : dv.buf; }
  const int32_t* docs() const { return c.docs ? doc_ids.ptr : nullptr; }

  // The forward into poisoned out and lse (lse: null to ask for out alone).
  void forward(const AttentionImpl& impl, bool want_lse = true) {
    out.poison();
    lse.poison();
    impl.forward(out, want_lse ? lse.f32() : nullptr, q_in(), k_in(), v_in(), docs(), shape);
  }
  // The backward into poisoned gradient buffers; the ones not asked for are
  // passed as null.
  void backward(const AttentionImpl& impl, bool want_q = true, bool want_kv = true) {
    if (c.fused) {
      dqkv.poison();
    } else {
      dq.poison();
      dk.poison();
      dv.poison();
    }
    impl.backward(want_q ? dq_out() : Buf(), want_kv ? dk_out() : Buf(),
                  want_kv ? dv_out() : Buf(), dout, q_in(), k_in(), v_in(), out_bf,
                  lse_in.f32(), docs(), shape);
  }
  // dq, dk, dv as dense host matrices.
  void download_grads(std::vector<float>& hdq, std::vector<float>& hdk,
                      std::vector<float>& hdv) const {
    if (c.fused) {
      const std::vector<float> f = dqkv.download();
      hdq = columns(f, N, W, 0, Q);
      hdk = columns(f, N, W, Q, KV);
      hdv = columns(f, N, W, Q + KV, KV);
    } else {
      hdq = dq.download();
      hdk = dk.download();
      hdv = dv.download();
    }
  }
};

struct GpuAttentionResult {
  std::vector<float> out, lse, dq, dk, dv;
};

// The forward, then the backward twice: the two must give the same bits, and
// every column of a fused gradient buffer is some head's dq, dk or dv.
inline GpuAttentionResult run_gpu_attention(GpuAttention& g, const AttentionImpl& impl,
                                            const std::string& label) {
  GpuAttentionResult r;
  g.forward(impl);
  r.out = g.out.download();
  r.lse = g.lse.download();
  g.backward(impl);
  g.download_grads(r.dq, r.dk, r.dv);
  if (g.c.fused) {
    const std::vector<float> all = g.dqkv.download();
    EXPECT_TRUE(std::none_of(all.begin(), all.end(), [](float x) { return std::isnan(x); }))
        << label << ": an element of the fused dq|dk|dv buffer was not written";
  }
  std::vector<float> dq2, dk2, dv2;
  g.backward(impl);
  g.download_grads(dq2, dk2, dv2);
  EXPECT_TRUE(bitwise_equal(r.dq, dq2)) << label << ": dq differs between two runs";
  EXPECT_TRUE(bitwise_equal(r.dk, dk2)) << label << ": dk differs between two runs";
  EXPECT_TRUE(bitwise_equal(r.dv, dv2)) << label << ": dv differs between two runs";
  return r;
}

}  // namespace test
}  // namespace polaris
