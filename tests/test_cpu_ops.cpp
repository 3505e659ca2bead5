// Tests of the CPU reference ops (model/cpu_ops.h):
//   - every backward against double-precision central differences of
//     L = sum(dout * out) (or the loss itself for cross_entropy),
//   - backward accumulates (a second call doubles the gradient) and skips null
//     gradient pointers,
//   - forward values against naive direct formulas,
//   - AdamW against a hand-computed example,
//   - bitwise determinism across thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "model/cpu_ops.h"

namespace polaris {
namespace {

using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;

Vec randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
  return s;
}

double max_abs(const Vec& a) {
  double m = 0;
  for (float x : a) m = std::max(m, (double)std::fabs(x));
  return m;
}

bool bitwise_equal(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct ThreadCount {  // restores the OpenMP thread count when it goes out of scope
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

// Compares the analytic gradient of L with respect to x against central
// differences, element by element: num_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
// (with the step actually representable in fp32). L runs the fp32 forward and
// reduces in double; the error allowed is tol * max|analytic|.
void expect_grad(const char* what, Vec& x, const Vec& analytic, const std::function<double()>& L,
                 float eps = 1e-2f, double tol = 1e-3) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  ThreadCount one(1);  // many tiny forwards: skip the thread start-up cost
  const double scale = max_abs(analytic);
  ASSERT_GT(scale, 0.0) << what << ": gradient is all zero, the check proves nothing";
  double worst = 0;
  size_t worst_i = 0;
  double worst_num = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const float orig = x[i];
    x[i] = orig + eps;
    const double xp = x[i], lp = L();
    x[i] = orig - eps;
    const double xm = x[i], lm = L();
    x[i] = orig;
    const double num = (lp - lm) / (xp - xm);
    const double err = std::fabs(num - analytic[i]);
    if (err > worst) worst = err, worst_i = i, worst_num = num;
  }
  EXPECT_LE(worst, tol * scale) << what << ": element " << worst_i << " analytic "
                                << analytic[worst_i] << " numeric " << worst_num
                                << " (max |grad| " << scale << ")";
}

// a second call adds the same gradient again: g2 == 2 * g1 (up to rounding:
// ops that scatter-add row by row, like embedding_backward, round each add).
// For parameter gradients and the norms' din (model/ops.h: they accumulate).
void expect_doubled(const char* what, const Vec& once, const Vec& twice) {
  ASSERT_EQ(once.size(), twice.size());
  const double tol = 1e-6 * std::max(1.0, max_abs(once));
  for (size_t i = 0; i < once.size(); i++)
    ASSERT_NEAR(twice[i], 2.0 * once[i], tol) << what << " element " << i;
}

// a written gradient: a second call into a buffer holding the first result
// gives the same values again (nothing is added)
void expect_written(const char* what, const Vec& once, const Vec& twice) {
  ASSERT_EQ(once.size(), twice.size());
  for (size_t i = 0; i < once.size(); i++)
    ASSERT_EQ(twice[i], once[i]) << what << " element " << i << " (written, not added)";
}

CpuOps ops;

// ---- memory and elementwise ---------------------------------------------------------

TEST(CpuOps, MemoryAndElementwise) {
  EXPECT_EQ(ops.name(), "cpu");
  float* p = ops.alloc(1000);
  int32_t* ip = ops.alloc_int(1000);
  for (int i = 0; i < 1000; i++) {
    ASSERT_EQ(p[i], 0.f);
    ASSERT_EQ(ip[i], 0);
  }
  Vec a = randn(1000, 1), b = randn(1000, 2), h(1000);
  ops.upload(p, a.data(), 1000);
  ops.download(h.data(), p, 1000);
  EXPECT_TRUE(bitwise_equal(a, h));
  IVec ia(1000, 7), ih(1000);
  ops.upload_int(ip, ia.data(), 1000);
  std::memcpy(ih.data(), ip, 1000 * sizeof(int32_t));
  EXPECT_EQ(ia, ih);
  ops.zero(p, 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(p[i], 0.f);
  ops.release(p);
  ops.release(ip);

  Vec out(1000);
  ops.add(out.data(), a.data(), b.data(), 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(out[i], a[i] + b[i]);
  Vec c = a;
  ops.add(c.data(), c.data(), b.data(), 1000);  // aliasing
  EXPECT_TRUE(bitwise_equal(c, out));
  c = a;
  ops.accumulate(c.data(), b.data(), 1000);
  EXPECT_TRUE(bitwise_equal(c, out));
  ops.copy(c.data(), a.data(), 1000);
  EXPECT_TRUE(bitwise_equal(c, a));
  ops.scale(c.data(), 0.5f, 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(c[i], a[i] * 0.5f);
}

TEST(CpuOps, SumSquares) {
  Vec x = randn(100003, 3);
  double ref = 0;
  for (float v : x) ref += (double)v * v;
  EXPECT_NEAR(ops.sum_squares(x.data(), x.size()), ref, 1e-9 * ref);
  EXPECT_EQ(ops.sum_squares(x.data(), 0), 0.0);
}

// ---- embedding -------------------------------------------------------------------------

TEST(CpuOps, EmbeddingForwardBackward) {
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

// ---- normalisation ---------------------------------------------------------------------

TEST(CpuOps, LayerNormForwardMatchesFormula) {
  const int N = 4, C = 37;
  Vec x = randn(N * C, 1, 3.f), w = randn(C, 2), b = randn(C, 3), out(N * C), mean(N), rstd(N);
  for (auto& v : x) v += 2.f;
  ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
  for (int i = 0; i < N; i++) {
    double m = 0, var = 0;
    for (int c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    for (int c = 0; c < C; c++) var += (x[i * C + c] - m) * (x[i * C + c] - m);
    var /= C;
    const double r = 1 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[i], m, 1e-5);
    EXPECT_NEAR(rstd[i], r, 1e-5 * r);
    for (int c = 0; c < C; c++)
      EXPECT_NEAR(out[i * C + c], (x[i * C + c] - m) * r * w[c] + b[c], 1e-5);
  }
}

TEST(CpuOps, LayerNormBackward) {
  const int N = 5, C = 12;
  Vec x = randn(N * C, 1), w = randn(C, 2), b = randn(C, 3), dout = randn(N * C, 4);
  Vec out(N * C), mean(N), rstd(N);
  auto L = [&] {
    ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    return dot(out, dout);
  };
  L();
  Vec dx(N * C), dw(C), db(C);
  ops.layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_grad("layernorm din", x, dx, L, 1e-2f);
  expect_grad("layernorm dweight", w, dw, L);
  expect_grad("layernorm dbias", b, db, L);
  L();
  Vec dx2 = dx, dw2 = dw, db2 = db;
  ops.layernorm_backward(dx2.data(), dw2.data(), db2.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_doubled("din", dx, dx2);
  expect_doubled("dweight", dw, dw2);
  expect_doubled("dbias", db, db2);
  Vec dw3(C);
  ops.layernorm_backward(nullptr, dw3.data(), nullptr, dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  EXPECT_TRUE(bitwise_equal(dw3, dw));
}

TEST(CpuOps, RmsNormForwardBackward) {
  const int N = 6, C = 16;
  Vec x = randn(N * C, 1), w = randn(C, 2), dout = randn(N * C, 4), out(N * C), rstd(N);
  auto L = [&] {
    ops.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    return dot(out, dout);
  };
  L();
  for (int i = 0; i < N; i++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[i * C + c] * x[i * C + c];
    const double r = 1 / std::sqrt(ss / C + 1e-6);
    EXPECT_NEAR(rstd[i], r, 1e-6 * r);
    for (int c = 0; c < C; c++) EXPECT_NEAR(out[i * C + c], x[i * C + c] * r * w[c], 1e-5);
  }
  Vec dx(N * C), dw(C);
  ops.rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_grad("rmsnorm din", x, dx, L);
  expect_grad("rmsnorm dweight", w, dw, L);
  L();
  Vec dx2 = dx, dw2 = dw;
  ops.rmsnorm_backward(dx2.data(), dw2.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_doubled("din", dx, dx2);
  expect_doubled("dweight", dw, dw2);
  Vec dx3(N * C);
  ops.rmsnorm_backward(dx3.data(), nullptr, dout.data(), x.data(), w.data(), rstd.data(), N, C);
  EXPECT_TRUE(bitwise_equal(dx3, dx));
}

// ---- matmul -----------------------------------------------------------------------------

TEST(CpuOps, MatmulForwardMatchesNaive) {
  for (bool with_bias : {true, false}) {
    const int N = 70, IC = 33, OC = 67;  // edges of the 4x4 tiles and 64x64 blocks
    Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), out(N * OC);
    ops.matmul_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        double s = with_bias ? b[o] : 0;
        for (int i = 0; i < IC; i++) s += (double)x[n * IC + i] * w[o * IC + i];
        ASSERT_NEAR(out[n * OC + o], s, 1e-4) << n << "," << o;
      }
  }
}

TEST(CpuOps, MatmulBackward) {
  for (bool with_bias : {true, false}) {
    const int N = 9, IC = 7, OC = 10;
    Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), dout = randn(N * OC, 4);
    Vec out(N * OC);
    auto L = [&] {
      ops.matmul_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
      return dot(out, dout);
    };
    Vec dx(N * IC), dw(OC * IC), db(OC);
    ops.matmul_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    expect_grad("matmul din", x, dx, L);
    expect_grad("matmul dweight", w, dw, L);
    if (with_bias) expect_grad("matmul dbias", b, db, L);
    Vec dx2 = dx, dw2 = dw, db2 = db;
    ops.matmul_backward(dx2.data(), dw2.data(), with_bias ? db2.data() : nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    expect_written("din", dx, dx2);
    expect_doubled("dweight", dw, dw2);
    if (with_bias) expect_doubled("dbias", db, db2);
    Vec dw3(OC * IC);
    ops.matmul_backward(nullptr, dw3.data(), nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    EXPECT_TRUE(bitwise_equal(dw3, dw));
  }
}

// ---- rope --------------------------------------------------------------------------------

TEST(CpuOps, RopeForwardMatchesRotation) {
  const int N = 5, H = 3, D = 16;
  const float theta = 10000.f;
  IVec pos = {0, 1, 7, 100, 4000};
  Vec x = randn(N * H * D, 1), out(N * H * D);
  ops.rope_forward(out.data(), x.data(), pos.data(), N, H, D, theta);
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) {
        const double a = pos[n] * std::pow((double)theta, -2.0 * i / D);
        const float* xi = &x[(n * H + h) * D];
        const double e1 = xi[i] * std::cos(a) - xi[i + D / 2] * std::sin(a);
        const double e2 = xi[i + D / 2] * std::cos(a) + xi[i] * std::sin(a);
        // fp32 angles (as Hugging Face computes them) lose ~pos * 1e-7 rad
        const double tol = 1e-5 + 4e-7 * pos[n];
        EXPECT_NEAR(out[(n * H + h) * D + i], e1, tol);
        EXPECT_NEAR(out[(n * H + h) * D + i + D / 2], e2, tol);
      }
  // in place
  Vec y = x;
  ops.rope_forward(y.data(), y.data(), pos.data(), N, H, D, theta);
  EXPECT_TRUE(bitwise_equal(y, out));
}

TEST(CpuOps, RopeBackward) {
  const int N = 4, H = 2, D = 8;
  IVec pos = {3, 0, 11, 5};
  Vec x = randn(N * H * D, 1), dout = randn(N * H * D, 2), out(N * H * D);
  auto L = [&] {
    ops.rope_forward(out.data(), x.data(), pos.data(), N, H, D, 1e6f);
    return dot(out, dout);
  };
  Vec dx(N * H * D);
  ops.rope_backward(dx.data(), dout.data(), pos.data(), N, H, D, 1e6f);
  expect_grad("rope din", x, dx, L);
  Vec dx2 = dx;
  ops.rope_backward(dx2.data(), dout.data(), pos.data(), N, H, D, 1e6f);
  expect_written("rope din", dx, dx2);
  ops.rope_backward(nullptr, dout.data(), pos.data(), N, H, D, 1e6f);  // skipped
}

// ---- attention ---------------------------------------------------------------------------

struct AttnCase {
  AttentionShape sh;
  bool docs;
};

// doc ids with several documents per row (lengths vary per row)
IVec make_docs(int B, int T) {
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

TEST(CpuOps, AttentionForwardMatchesNaive) {
  for (const auto& c : kAttnCases) {
    const auto& s = c.sh;
    const int N = s.B * s.T;
    Vec q = randn(N * s.num_heads * s.head_dim, 1), k = randn(N * s.num_kv_heads * s.head_dim, 2),
        v = randn(N * s.num_kv_heads * s.head_dim, 3);
    IVec docs = make_docs(s.B, s.T);
    const int32_t* doc = c.docs ? docs.data() : nullptr;
    Vec out(q.size()), lse(s.B * s.num_heads * s.T);
    ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), doc, s);
    std::vector<double> eout, else_;
    naive_attention(eout, else_, q, k, v, doc, s);
    for (size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], eout[i], 1e-5) << i;
    for (size_t i = 0; i < lse.size(); i++) ASSERT_NEAR(lse[i], else_[i], 1e-5) << i;
  }
}

TEST(CpuOps, AttentionBackward) {
  for (const auto& c : kAttnCases) {
    const auto& s = c.sh;
    const int N = s.B * s.T;
    Vec q = randn(N * s.num_heads * s.head_dim, 1), k = randn(N * s.num_kv_heads * s.head_dim, 2),
        v = randn(N * s.num_kv_heads * s.head_dim, 3), dout = randn(q.size(), 4);
    IVec docs = make_docs(s.B, s.T);
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

TEST(CpuOps, ScatterRowsAndDecodeMatchForward) {
  // Decoding token t against a cache of keys/values 0..t gives the same bits
  // as row t of the full causal forward.
  const AttentionShape s{2, 9, 4, 2, 16};
  const int N = s.B * s.T, KVW = s.num_kv_heads * s.head_dim, QW = s.num_heads * s.head_dim;
  Vec q = randn(N * QW, 1), k = randn(N * KVW, 2), v = randn(N * KVW, 3);
  Vec out(N * QW), lse(s.B * s.num_heads * s.T);
  ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), nullptr, s);
  const int max_len = 12;
  Vec kc(s.B * max_len * KVW), vc(kc.size());
  IVec rows(N);  // row b*T + t of k goes to cache row b*max_len + t
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++) rows[b * s.T + t] = b * max_len + t;
  ops.scatter_rows(kc.data(), k.data(), KVW, rows.data(), N, KVW);
  ops.scatter_rows(vc.data(), v.data(), KVW, rows.data(), N, KVW);
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++)
      ASSERT_EQ(0, std::memcmp(&kc[(b * max_len + t) * KVW], &k[(b * s.T + t) * KVW], KVW * sizeof(float)));
  for (int t : {0, 4, 8}) {
    Vec qt(s.B * QW), ot(s.B * QW);
    IVec lengths(s.B, t + 1);
    for (int b = 0; b < s.B; b++) std::memcpy(&qt[b * QW], &q[(b * s.T + t) * QW], QW * sizeof(float));
    ops.attention_decode(ot.data(), qt.data(), QW, kc.data(), vc.data(), lengths.data(), s.B, max_len,
                         s.num_heads, s.num_kv_heads, s.head_dim);
    for (int b = 0; b < s.B; b++)
      EXPECT_EQ(0, std::memcmp(&ot[b * QW], &out[(b * s.T + t) * QW], QW * sizeof(float))) << "t=" << t;
  }
}

// ---- activations -------------------------------------------------------------------------

TEST(CpuOps, Gelu) {
  const size_t n = 64;
  Vec x = randn(n, 1, 2.f), dout = randn(n, 2), out(n);
  ops.gelu_forward(out.data(), x.data(), n);
  for (size_t i = 0; i < n; i++) {
    const double xi = x[i];
    const double e = 0.5 * xi * (1 + std::tanh(std::sqrt(2 / M_PI) * (xi + 0.044715 * xi * xi * xi)));
    ASSERT_NEAR(out[i], e, 1e-5);
  }
  auto L = [&] {
    ops.gelu_forward(out.data(), x.data(), n);
    return dot(out, dout);
  };
  Vec dx(n);
  ops.gelu_backward(dx.data(), dout.data(), x.data(), n);
  expect_grad("gelu din", x, dx, L, 1e-3f);
  Vec dx2 = dx;
  ops.gelu_backward(dx2.data(), dout.data(), x.data(), n);
  expect_written("gelu din", dx, dx2);
}

TEST(CpuOps, SwiGLU) {
  // gate_up rows [gate (F) | up (F)]; the gradient is written into the same layout.
  const int N = 4, F = 16;
  const size_t n = size_t(N) * F;
  Vec gu = randn(2 * n, 1, 2.f), dout = randn(n, 3), out(n);
  ops.swiglu_forward(out.data(), gu.data(), N, F);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < F; j++) {
      const double g = gu[i * 2 * F + j], u = gu[i * 2 * F + F + j];
      ASSERT_NEAR(out[i * F + j], g / (1 + std::exp(-g)) * u, 1e-5);
    }
  auto L = [&] {
    ops.swiglu_forward(out.data(), gu.data(), N, F);
    return dot(out, dout);
  };
  Vec dgu(2 * n, 7.f);  // written: the prefill must vanish
  ops.swiglu_backward(dgu.data(), dout.data(), gu.data(), N, F);
  expect_grad("swiglu dgate_up", gu, dgu, L, 1e-3f);
  Vec dgu2(2 * n, -3.f);
  ops.swiglu_backward(dgu2.data(), dout.data(), gu.data(), N, F);
  EXPECT_TRUE(bitwise_equal(dgu, dgu2));
  // in place: dgate_up may alias gate_up
  Vec inplace = gu;
  ops.swiglu_backward(inplace.data(), dout.data(), inplace.data(), N, F);
  EXPECT_TRUE(bitwise_equal(inplace, dgu));
}

// ---- loss --------------------------------------------------------------------------------

TEST(CpuOps, CrossEntropyForwardMatchesLogSoftmax) {
  const int N = 5, V = 13;
  Vec logits = randn(N * V, 1, 3.f), w = {1.f, 0.5f, 0.f, -2.f, 1.f}, ew = {0.1f, 0.f, 0.3f, 0.f, -0.2f};
  IVec targets = {3, 0, 12, -1, 7};
  Vec losses(N), lp(N), ent(N);
  LossArgs a;
  a.logits = logits.data(), a.targets = targets.data(), a.weights = w.data();
  a.entropy_weights = ew.data(), a.N = N, a.V = V;
  a.losses = losses.data(), a.logprobs = lp.data(), a.entropies = ent.data();
  ops.cross_entropy(a);
  for (int i = 0; i < N; i++) {
    if (targets[i] < 0) {
      EXPECT_EQ(losses[i], 0.f);
      EXPECT_EQ(lp[i], 0.f);
      EXPECT_EQ(ent[i], 0.f);
      continue;
    }
    double z = 0;
    for (int j = 0; j < V; j++) z += std::exp((double)logits[i * V + j]);
    double H = 0;
    for (int j = 0; j < V; j++) {
      const double p = std::exp((double)logits[i * V + j]) / z;
      H -= p * std::log(p);
    }
    const double logprob = std::log(std::exp((double)logits[i * V + targets[i]]) / z);
    EXPECT_NEAR(lp[i], logprob, 1e-5);
    EXPECT_NEAR(ent[i], H, 1e-5);
    EXPECT_NEAR(losses[i], -w[i] * logprob - ew[i] * H, 1e-5);
  }
  // a huge logit stays finite (stable log-softmax)
  logits[0] = 1e4f;
  ops.cross_entropy(a);
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_NEAR(lp[0], targets[0] == 0 ? 0.0 : logits[targets[0]] - 1e4, 1e-2);
}

TEST(CpuOps, CrossEntropyBackward) {
  const int N = 6, V = 11;
  for (bool entropy : {false, true}) {
    Vec logits = randn(N * V, 1, 2.f), w = {1.f, 0.5f, -1.5f, 2.f, 1.f, 0.7f};
    Vec ew = {0.2f, -0.3f, 0.5f, 0.1f, 1.f, 0.4f};
    IVec targets = {3, -1, 10, 0, -5, 7};
    Vec losses(N), dl(N * V);
    LossArgs a;
    a.logits = logits.data(), a.targets = targets.data(), a.weights = w.data();
    a.entropy_weights = entropy ? ew.data() : nullptr, a.N = N, a.V = V, a.scale = 0.37f;
    a.losses = losses.data();
    auto L = [&] {
      LossArgs f = a;
      f.dlogits = nullptr;
      ops.cross_entropy(f);
      double s = 0;
      for (float x : losses) s += x;
      return a.scale * s;
    };
    a.dlogits = dl.data();
    std::fill(dl.begin(), dl.end(), 123.f);  // overwritten, not accumulated
    ops.cross_entropy(a);
    for (int i : {1, 4})  // ignored rows: zero gradient, zero loss
      for (int j = 0; j < V; j++) ASSERT_EQ(dl[i * V + j], 0.f);
    EXPECT_EQ(losses[1], 0.f);
    expect_grad(entropy ? "cross_entropy dlogits (entropy)" : "cross_entropy dlogits", logits, dl, L, 1e-3f);
    // dlogits aliasing logits gives the same bits
    ops.cross_entropy(a);
    Vec alias = logits, losses2(N);
    LossArgs b = a;
    b.logits = alias.data(), b.dlogits = alias.data(), b.losses = losses2.data();
    ops.cross_entropy(b);
    EXPECT_TRUE(bitwise_equal(alias, dl));
    EXPECT_TRUE(bitwise_equal(losses2, losses));
  }
}

// ---- optimizer ---------------------------------------------------------------------------

TEST(CpuOps, AdamWTwoSteps) {
  // By hand, lr 0.1, beta1 0.9, beta2 0.95, eps 1e-8, grad_scale 2, grads 0.5 then -0.25:
  //   step 1: g = 1;    m = 0.1,  v = 0.05; mhat = 1, vhat = 1  -> p = 1 - 0.1 = 0.9
  //   step 2: g = -0.5; m = 0.04, v = 0.06; mhat = 0.04/0.19, vhat = 0.06/0.0975
  //           p = 0.9 - 0.1 * 0.210526 / 0.784465 = 0.873163
  float p = 1.f, m = 0.f, v = 0.f;
  AdamWArgs a;
  a.learning_rate = 0.1f, a.beta1 = 0.9f, a.beta2 = 0.95f, a.epsilon = 1e-8f, a.grad_scale = 2.f;
  float g = 0.5f;
  a.step = 1;
  ops.adamw_update(&p, nullptr, &g, &m, &v, 1, a);
  EXPECT_NEAR(p, 0.9f, 1e-6);
  EXPECT_NEAR(m, 0.1f, 1e-7);
  EXPECT_NEAR(v, 0.05f, 1e-7);
  g = -0.25f;
  a.step = 2;
  ops.adamw_update(&p, nullptr, &g, &m, &v, 1, a);
  EXPECT_NEAR(m, 0.04f, 1e-7);
  EXPECT_NEAR(v, 0.06f, 1e-7);
  EXPECT_NEAR(p, 0.8731630565, 1e-6);
}

TEST(CpuOps, AdamWWeightDecayIsDecoupled) {
  // With a zero gradient the moments stay zero and only the decay acts:
  // p -= lr * wd * p, whatever the gradient scale or the moments' bias correction.
  Vec p = {2.f, -3.f, 0.5f}, g(3, 0.f), m(3, 0.f), v(3, 0.f);
  AdamWArgs a;
  a.learning_rate = 0.01f, a.weight_decay = 0.1f, a.step = 5, a.grad_scale = 7.f;
  Vec expect = p;
  for (auto& x : expect) x -= 0.01f * (0.1f * x);
  ops.adamw_update(p.data(), nullptr, g.data(), m.data(), v.data(), 3, a);
  for (int i = 0; i < 3; i++) EXPECT_FLOAT_EQ(p[i], expect[i]);
  // with a gradient: the decay term is lr * wd * p, not folded into the
  // gradient (it would then be normalised by sqrt(v))
  Vec p1 = {2.f}, g1 = {1.f}, m1 = {0.f}, v1 = {0.f};
  a.step = 1, a.grad_scale = 1.f;
  ops.adamw_update(p1.data(), nullptr, g1.data(), m1.data(), v1.data(), 1, a);
  EXPECT_NEAR(p1[0], 2.f - 0.01f * (1.f + 0.1f * 2.f), 1e-6);
}

// ---- determinism across thread counts ----------------------------------------------------

template <typename F>
void expect_same_bits_across_threads(const char* what, F run) {
  std::vector<Vec> results;
  for (int threads : {1, 2, 4}) {
    ThreadCount tc(threads);
    results.push_back(run());
  }
  for (size_t i = 1; i < results.size(); i++)
    EXPECT_TRUE(bitwise_equal(results[0], results[i])) << what << ": thread count changes bits";
}

TEST(CpuOps, DeterministicAcrossThreadCounts) {
  {
    const int N = 131, IC = 70, OC = 90;
    Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), dout = randn(N * OC, 3);
    expect_same_bits_across_threads("matmul", [&] {
      Vec out(N * OC), dx(N * IC), dw(OC * IC), db(OC);
      ops.matmul_forward(out.data(), x.data(), w.data(), db.data(), N, IC, OC);
      ops.matmul_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, IC, OC);
      Vec all = out;
      all.insert(all.end(), dx.begin(), dx.end());
      all.insert(all.end(), dw.begin(), dw.end());
      all.insert(all.end(), db.begin(), db.end());
      return all;
    });
  }
  {
    const AttentionShape s{3, 17, 4, 2, 16};
    const int N = s.B * s.T;
    Vec q = randn(N * 64, 1), k = randn(N * 32, 2), v = randn(N * 32, 3), dout = randn(N * 64, 4);
    IVec docs = make_docs(s.B, s.T);
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
  {
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
  {
    const int N = 100, C = 150;
    Vec x = randn(N * C, 1), w = randn(C, 2), b = randn(C, 3), dout = randn(N * C, 4);
    expect_same_bits_across_threads("norms", [&] {
      Vec out(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
      ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
      ops.layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
      ops.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
      ops.rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
      Vec all = dx;
      all.insert(all.end(), dw.begin(), dw.end());
      all.insert(all.end(), db.begin(), db.end());
      return all;
    });
  }
  {
    Vec x = randn(1000003, 5);
    expect_same_bits_across_threads("sum_squares", [&] {
      const double s = ops.sum_squares(x.data(), x.size());
      Vec bits(2);
      std::memcpy(bits.data(), &s, sizeof s);
      return bits;
    });
  }
}

}  // namespace
}  // namespace polaris
