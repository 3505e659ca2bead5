// Bf16CpuOps: a test backend that stores weights and activations in bf16 the
// way CudaOps does (activation_dtype() == bf16, 2-byte elements, fp32
// parameter gradients / master / moments / statistics), and computes every op
// with the CPU reference on fp32 copies, rounding each output once to bf16.
//
// It exists so the transformer's typed-buffer plumbing — element offsets of
// bf16 views, which buffers are fp32 and which are the backend's type, the
// master/copy split, strided q/k/v inside the fused qkv buffer — runs in CI
// without a GPU, and so bf16 tolerances (polaris_check, loss curves) can be
// judged against the fp32 reference on a CPU.
//
// Staging: every call converts each allocation it touches to fp32 once
// (whole allocations, so different views into one buffer — q, k, v columns
// of qkv, dq/dk/dv of dqkv — share one staged copy, and aliasing between an
// op's inputs and outputs behaves as on the device), runs CpuOps, then
// writes back, rounded to nearest, the allocations the op may write.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <new>
#include <vector>

#include "model/cpu_ops.h"
#include "src/common/error.h"
#include "tests/ops_compare.h"  // round_bf16

namespace polaris {
namespace test {

class Bf16CpuOps : public Ops {
 public:
  std::string name() const override { return "bf16-emulation"; }
  DType activation_dtype() const override { return DType::bf16; }
  bool host_memory() const override { return true; }

  // ---- memory --------------------------------------------------------------
  Buf alloc_buf(size_t n, DType dtype) override {
    const size_t bytes = std::max<size_t>(n, 1) * dtype_size(dtype);
    void* p = std::calloc(1, bytes);
    if (!p) throw std::bad_alloc();
    if (dtype == DType::bf16) bf16_allocations_[static_cast<char*>(p)] = bytes / 2;
    return Buf(p, dtype);
  }
  int32_t* alloc_int(size_t n) override { return cpu_.alloc_int(n); }
  void release(const void* p) override {
    bf16_allocations_.erase(static_cast<char*>(const_cast<void*>(p)));
    std::free(const_cast<void*>(p));
  }
  void upload(Buf dst, const float* src, size_t n) override {
    if (dst.dtype == DType::f32) return cpu_.upload(dst, src, n);
    uint16_t* d = static_cast<uint16_t*>(dst.ptr);
    for (size_t i = 0; i < n; ++i) d[i] = to_bits(src[i]);
  }
  void upload_int(int32_t* dst, const int32_t* src, size_t n) override {
    cpu_.upload_int(dst, src, n);
  }
  void download(float* dst, CBuf src, size_t n) override {
    if (src.dtype == DType::f32) return cpu_.download(dst, src, n);
    const uint16_t* s = static_cast<const uint16_t*>(src.ptr);
    for (size_t i = 0; i < n; ++i) dst[i] = from_bits(s[i]);
  }
  void zero(Buf p, size_t n) override {
    if (n) std::memset(p.ptr, 0, n * dtype_size(p.dtype));
  }
  void copy(Buf dst, CBuf src, size_t n) override {
    Scope s(*this);
    float* d = s.out(dst);
    const float* from = s.in(src);
    if (d != from) std::memmove(d, from, n * sizeof(float));
  }
  void add(Buf out, CBuf a, CBuf b, size_t n) override {
    Scope s(*this);
    cpu_.add(s.out(out), s.in(a), s.in(b), n);
  }
  void accumulate(float* dst, const float* src, size_t n) override { cpu_.accumulate(dst, src, n); }
  void scale(float* x, float v, size_t n) override { cpu_.scale(x, v, n); }
  double sum_squares(const float* x, size_t n) override { return cpu_.sum_squares(x, n); }

  // ---- the ops: stage, run the reference, round the outputs -----------------
  void embedding_forward(Buf out, const int32_t* tokens, const int32_t* positions, CBuf token_table,
                         CBuf position_table, int N, int C) override {
    Scope s(*this);
    cpu_.embedding_forward(s.out(out), tokens, positions, s.in(token_table), s.in(position_table),
                           N, C);
  }
  void embedding_backward(float* dt, float* dp, CBuf dout, const int32_t* tokens,
                          const int32_t* positions, int N, int C) override {
    Scope s(*this);
    cpu_.embedding_backward(dt, dp, s.in(dout), tokens, positions, N, C);
  }
  void layernorm_forward(Buf out, float* mean, float* rstd, CBuf in, CBuf w, CBuf b, int N, int C,
                         float eps) override {
    Scope s(*this);
    cpu_.layernorm_forward(s.out(out), mean, rstd, s.in(in), s.in(w), s.in(b), N, C, eps);
  }
  void layernorm_backward(Buf din, float* dw, float* db, CBuf dout, CBuf in, CBuf w,
                          const float* mean, const float* rstd, int N, int C) override {
    Scope s(*this);
    cpu_.layernorm_backward(s.out(din), dw, db, s.in(dout), s.in(in), s.in(w), mean, rstd, N, C);
  }
  void rmsnorm_forward(Buf out, float* rstd, CBuf in, CBuf w, int N, int C, float eps) override {
    Scope s(*this);
    cpu_.rmsnorm_forward(s.out(out), rstd, s.in(in), s.in(w), N, C, eps);
  }
  void rmsnorm_backward(Buf din, float* dw, CBuf dout, CBuf in, CBuf w, const float* rstd, int N,
                        int C) override {
    Scope s(*this);
    cpu_.rmsnorm_backward(s.out(din), dw, s.in(dout), s.in(in), s.in(w), rstd, N, C);
  }
  void matmul_forward(Buf out, CBuf in, CBuf w, CBuf b, int N, int IC, int OC) override {
    Scope s(*this);
    cpu_.matmul_forward(s.out(out), s.in(in), s.in(w), s.in(b), N, IC, OC);
  }
  void matmul_backward(Buf din, float* dw, float* db, CBuf dout, CBuf in, CBuf w, int N, int IC,
                       int OC) override {
    Scope s(*this);
    cpu_.matmul_backward(s.out(din), dw, db, s.in(dout), s.in(in), s.in(w), N, IC, OC);
  }
  void rope_forward(Buf out, CBuf in, const int32_t* pos, int N, int heads, int D,
                    const RopeParams& rope) override {
    Scope s(*this);
    cpu_.rope_forward(s.out(out), s.in(in), pos, N, heads, D, rope);
  }
  void rope_backward(Buf din, CBuf dout, const int32_t* pos, int N, int heads, int D,
                     const RopeParams& rope) override {
    Scope s(*this);
    cpu_.rope_backward(s.out(din), s.in(dout), pos, N, heads, D, rope);
  }
  void qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q, CBuf k,
                            int in_stride, CBuf qw, CBuf kw, const int32_t* pos, int N, int heads,
                            int kv_heads, int D, float eps, const RopeParams& rope) override {
    Scope s(*this);
    cpu_.qk_norm_rope_forward(s.out(q_out), s.out(k_out), q_rstd, k_rstd, s.in(q), s.in(k),
                              in_stride, s.in(qw), s.in(kw), pos, N, heads, kv_heads, D, eps,
                              rope);
  }
  void qk_norm_rope_backward(Buf dq, Buf dk, float* dqw, float* dkw, CBuf dq_out, CBuf dk_out,
                             CBuf q, CBuf k, int in_stride, CBuf qw, CBuf kw, const float* q_rstd,
                             const float* k_rstd, const int32_t* pos, int N, int heads,
                             int kv_heads, int D, const RopeParams& rope) override {
    Scope s(*this);
    cpu_.qk_norm_rope_backward(s.out(dq), s.out(dk), dqw, dkw, s.in(dq_out), s.in(dk_out),
                               s.in(q), s.in(k), in_stride, s.in(qw), s.in(kw), q_rstd, k_rstd,
                               pos, N, heads, kv_heads, D, rope);
  }
  void attention_forward(Buf out, float* lse, CBuf q, CBuf k, CBuf v, const int32_t* doc_ids,
                         const AttentionShape& shape) override {
    Scope s(*this);
    cpu_.attention_forward(s.out(out), lse, s.in(q), s.in(k), s.in(v), doc_ids, shape);
  }
  void attention_backward(Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v, CBuf out,
                          const float* lse, const int32_t* doc_ids,
                          const AttentionShape& shape) override {
    Scope s(*this);
    cpu_.attention_backward(s.out(dq), s.out(dk), s.out(dv), s.in(dout), s.in(q), s.in(k),
                            s.in(v), s.in(out), lse, doc_ids, shape);
  }
  void scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index, int n,
                    int width) override {
    Scope s(*this);
    cpu_.scatter_rows(s.out(table), s.in(rows), rows_stride, row_index, n, width);
  }
  void attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S, int H,
                        int KVH, int D) override {
    Scope s(*this);
    PagedKV staged = cache;
    staged.keys = s.in(cache.keys);
    staged.values = s.in(cache.values);
    cpu_.attention_decode(s.out(out), s.in(q), q_stride, staged, S, H, KVH, D);
  }
  void gelu_forward(Buf out, CBuf in, size_t n) override {
    Scope s(*this);
    cpu_.gelu_forward(s.out(out), s.in(in), n);
  }
  void gelu_backward(Buf din, CBuf dout, CBuf in, size_t n) override {
    Scope s(*this);
    cpu_.gelu_backward(s.out(din), s.in(dout), s.in(in), n);
  }
  void swiglu_forward(Buf out, CBuf gate_up, int N, int F) override {
    Scope s(*this);
    cpu_.swiglu_forward(s.out(out), s.in(gate_up), N, F);
  }
  void swiglu_backward(Buf dgate_up, CBuf dout, CBuf gate_up, int N, int F) override {
    Scope s(*this);
    cpu_.swiglu_backward(s.out(dgate_up), s.in(dout), s.in(gate_up), N, F);
  }
  void cross_entropy(const LossArgs& args) override {
    Scope s(*this);
    LossArgs a = args;
    a.dlogits = s.out(args.dlogits);
    a.logits = s.in(args.logits);
    cpu_.cross_entropy(a);
  }
  void adamw_update(float* params, Buf copy, const float* grads, float* m, float* v, size_t n,
                    const AdamWArgs& args) override {
    cpu_.adamw_update(params, nullptr, grads, m, v, n, args);
    if (copy) upload(copy, params, n);  // round to nearest (the device may round stochastically)
  }
  void round_weight_copy(Buf copy, const float* params, size_t n, const AdamWArgs&) override {
    if (copy) upload(copy, params, n);
  }

 private:
  static uint16_t to_bits(float x) {
    const float r = round_bf16(x);
    uint32_t bits;
    std::memcpy(&bits, &r, 4);
    return uint16_t(bits >> 16);
  }
  static float from_bits(uint16_t b) {
    const uint32_t bits = uint32_t(b) << 16;
    float x;
    std::memcpy(&x, &bits, 4);
    return x;
  }

  // One op call's fp32 staging of the bf16 allocations it touches.
  class Scope {
   public:
    explicit Scope(Bf16CpuOps& ops) : ops_(ops) {}
    ~Scope() noexcept(false) {
      for (auto& [base, staged] : staged_)
        if (staged.written) {
          uint16_t* d = reinterpret_cast<uint16_t*>(base);
          for (size_t i = 0; i < staged.values.size(); ++i) d[i] = to_bits(staged.values[i]);
        }
    }
    const float* in(CBuf b) { return b.dtype == DType::f32 ? b.f32() : view(b.ptr, false); }
    float* out(Buf b) { return b.dtype == DType::f32 ? b.f32() : view(b.ptr, true); }

   private:
    struct Staged {
      std::vector<float> values;
      bool written = false;
    };
    float* view(const void* ptr, bool written) {
      if (!ptr) return nullptr;
      char* p = static_cast<char*>(const_cast<void*>(ptr));
      auto it = ops_.bf16_allocations_.upper_bound(p);
      require(it != ops_.bf16_allocations_.begin(), "bf16 emulation: pointer outside any bf16 buffer");
      --it;
      char* base = it->first;
      require(p < base + 2 * it->second, "bf16 emulation: pointer outside any bf16 buffer");
      Staged& s = staged_[base];
      if (s.values.empty()) {
        s.values.resize(it->second);
        const uint16_t* src = reinterpret_cast<const uint16_t*>(base);
        for (size_t i = 0; i < it->second; ++i) s.values[i] = from_bits(src[i]);
      }
      s.written = s.written || written;
      return s.values.data() + (p - base) / 2;
    }
    Bf16CpuOps& ops_;
    std::map<char*, Staged> staged_;
  };

  CpuOps cpu_;
  std::map<char*, size_t> bf16_allocations_;  // base -> elements
};

}  // namespace test
}  // namespace polaris
