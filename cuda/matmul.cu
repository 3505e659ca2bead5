// CudaOps: linear layers through cuBLASLt (bf16 inputs, fp32 accumulation).
//
// ---- The math (model/ops.h) -------------------------------------------------
//   forward:   out[N, OC]      = in[N, IC] @ W[OC, IC]^T + bias[OC]
//   backward:  din[N, IC]      = dout[N, OC] @ W[OC, IC]         (written)
//              dweight[OC, IC] += dout^T[OC, N] @ in[N, IC]      (fp32, accumulated)
//              dbias[OC]       += sum over the N rows of dout    (fp32, accumulated)
//   GELU fusion (tanh approximation, GPT-2's gelu_new):
//              pre = in @ W^T + bias;  out = gelu(pre)
//              dpre = gelu'(pre) * (dout @ W)                    (written)
//
// ---- Row-major tensors, column-major cuBLASLt ------------------------------
// cuBLASLt computes D = alpha * op(A) op(B) + beta * C on column-major
// matrices. A row-major [R, C] array with row stride ld is, read column-major,
// the [C, R] matrix X^T with leading dimension ld: the transpose comes free.
// So every product is written for the transposes of our row-major tensors:
//
//   forward   out^T [OC, N] = W [OC, IC]  . in^T [IC, N]
//     A = W    stored col-major [IC, OC] (lda = IC), transa = T -> op(A) [OC, IC]
//     B = in   stored col-major [IC, N]  (ldb = IC), transb = N -> op(B) [IC, N]
//     D = out  col-major [OC, N] (ldd = OC);  m = OC, n = N, k = IC
//     bias: one value per row of D (= per output channel), the BIAS epilogue;
//     GELU_AUX(_BIAS) also stores the GELU input (pre) as the aux matrix,
//     col-major [OC, N], aux ld = OC.
//   din       din^T [IC, N] = W^T [IC, OC] . dout^T [OC, N]
//     A = W    stored col-major [IC, OC] (lda = IC), transa = N
//     B = dout stored col-major [OC, N]  (ldb = OC), transb = N
//     D = din  col-major [IC, N] (ldd = IC);  m = IC, n = N, k = OC
//     DGELU epilogue: D = gelu'(aux) * (A B), aux = pre col-major [IC, N], ld IC.
//   dweight   dweight^T [IC, OC] += in^T [IC, N] . dout [N, OC]
//     A = in   stored col-major [IC, N]  (lda = IC), transa = N
//     B = dout stored col-major [OC, N]  (ldb = OC), transb = T -> op(B) [N, OC]
//     C = D = dweight, fp32 col-major [IC, OC] (ld IC) = row-major [OC, IC];
//     beta = 1: the GEMM itself accumulates into the fp32 gradient.
//     m = IC, n = OC, k = N
// A and B are bf16, compute CUBLAS_COMPUTE_32F (fp32 accumulation), scale
// type fp32; D is bf16 (out, din, dpre) or fp32 (dweight). The epilogue works
// on the fp32 accumulator, so the bias add and the GELU happen before the one
// rounding to bf16.
//
// ---- dbias: our own kernel ----------------------------------------------------
// cuBLASLt's BGRADB epilogue on the dweight GEMM would give sum_n dout[n, :],
// but it WRITES the bias-gradient vector, while ops.h wants dbias to
// ACCUMULATE (+=) over micro-batches; using it would take a scratch vector
// plus an add kernel anyway, and its support varies by type/layout. A column
// sum is a memory-bound pass (N * OC * 2 bytes), so a plain deterministic
// kernel costs next to nothing beside the GEMMs: blocks of 32 columns x 8
// row groups cover 256-row chunks; each thread sums its rows in order, the 8
// row groups are added in order in shared memory, and the per-chunk partials
// [chunks, OC] (the context's scratch) are added in chunk order into dbias
// by a second kernel (or directly when N <= 256). No atomics: bitwise
// reproducible.
//
// ---- GELU epilogues and their fallback --------------------------------------
// cuBLASLt's GELU epilogue is the tanh approximation (PyTorch's fused
// addmm + GELU relies on it matching gelu(approximate="tanh")), the same as
// CpuOps::gelu_forward; tests/test_ops_matmul.cpp checks it on the device. It requires the
// aux leading dimension to be a multiple of 8 (cublasLt.h), so
// matmul_gelu_forward fuses only when OC % 8 == 0 and matmul_backward_gelu only
// when IC % 8 == 0, and only when the heuristic offers an algorithm (and
// cublasLtMatmul accepts the call); otherwise
// the plain GEMM writes pre (or dpre) and a small elementwise kernel applies
// gelu (or multiplies by gelu'(pre) in place). The fallback rounds pre to bf16
// before the GELU (two roundings instead of one); both are well inside the
// bf16 tolerance of the tests.
//
// ---- Cost and roofline (H100 SXM: 989 TFLOP/s dense bf16, 3.35 TB/s HBM) -----
// Each GEMM is 2 * N * IC * OC flops (forward: one; backward: two, din and
// dweight). With bf16 operands it moves at least 2 * (N*IC + IC*OC + N*OC)
// bytes (dweight: + 8 * IC * OC for the fp32 read-modify-write), so the
// arithmetic intensity is about 1 / (1/N + 1/IC + 1/OC) flop/byte, against a
// ridge point of 989e12 / 3.35e12 ~ 295 flop/byte. GPT-2 small's MLP up
// projection at N = 8192 tokens (IC = 768, OC = 3072): 38.7 GFLOP, ~68 MB,
// intensity ~ 570: compute bound, ~39 us at the roofline (to be measured on
// the H100; small GEMMs land well below it). Decoding (N of a few rows) has intensity
// ~ N: memory bound on reading W, 2 * IC * OC / 3.35e12 s per call.
// Odd leading dimensions (e.g. a vocabulary of 50257 as OC) cost cuBLASLt its
// 16-byte vectorised kernels: the heuristic still finds one, but slower.
//
// ---- Plans --------------------------------------------------------------------
// Descriptors, layouts and the heuristic's choice are made once per GEMM key
// (sizes, transposes, types, leading dimensions, epilogue, beta == 0, and the
// alignment of every pointer, since the heuristic picks kernels by alignment)
// and kept in the context's MatmulPlanCache. The bias/aux pointers are set on
// the cached descriptor before every call (one host thread drives a context).
// cuBLAS results are bitwise reproducible for a fixed toolkit, GPU and
// workspace on one stream, which is how the context uses it.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "cuda/context.cuh"

namespace polaris {

// ---- the plan cache ------------------------------------------------------------

struct MatmulPlanCache {
  // One GEMM configuration: its descriptors and the algorithm the heuristic
  // chose. found == false: the heuristic had none (or cublasLtMatmul refused
  // an optional attempt, see run_gemm); kept only for optional
  // attempts (the fused GELU epilogues, a bias at an unaligned address),
  // whose callers then take their fallback without asking again.
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;  // C shares D's layout
    cublasLtMatmulAlgo_t algo{};
    bool found = false;

    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {  // destroy statuses ignored: nothing useful to do in a destructor
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (desc) cublasLtMatmulDescDestroy(desc);
    }
  };
  // m, n, k, transa, transb, a/b/d types, lda, ldb, ldd, epilogue, aux ld,
  // beta == 0, alignments of A, B, D, bias, aux.
  using Key = std::array<int64_t, 19>;
  std::map<Key, std::unique_ptr<Plan>> plans;

  // The plans' destructors release every descriptor.
  ~MatmulPlanCache() = default;
};

void MatmulPlanCacheDeleter::operator()(MatmulPlanCache* p) const { delete p; }

namespace {

using Plan = MatmulPlanCache::Plan;

// ---- one GEMM --------------------------------------------------------------------

// D[m, n] = op(A) op(B) (+ beta * D), column-major, with an optional epilogue.
struct Gemm {
  const char* op = "";          // the Ops member, for error lines
  int N = 0, IC = 0, OC = 0;    // its shape, for error lines
  int m = 0, n = 0, k = 0;
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  const void* A = nullptr;
  cudaDataType_t a_type = CUDA_R_16BF;
  int64_t lda = 0;
  const void* B = nullptr;
  cudaDataType_t b_type = CUDA_R_16BF;
  int64_t ldb = 0;
  void* D = nullptr;  // also C
  cudaDataType_t d_type = CUDA_R_16BF;
  int64_t ldd = 0;
  float beta = 0.f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // bf16 [m] (BIAS epilogues)
  const void* aux = nullptr;   // bf16 col-major [m, n], ld aux_ld (GELU_AUX, DGELU)
  int64_t aux_ld = 0;
};

std::string gemm_what(const Gemm& g, const char* call) {
  return std::string(g.op) + " " + shape_str("N", g.N, "IC", g.IC, "OC", g.OC) + ": " + call;
}

// Builds the error line only on failure (this runs on every call).
inline void lt_check(cublasStatus_t status, const Gemm& g, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) cublas_check(status, gemm_what(g, call));
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value,
              const Gemm& g) {
  lt_check(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)), g,
           "cublasLtMatmulDescSetAttribute");
}

template <class T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
              const T& value, const Gemm& g) {
  lt_check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)), g,
           "cublasLtMatmulPreferenceSetAttribute");
}

// The alignment (in bytes, a power of two, at most 256) every column of a
// matrix starts at: the lowest set bit of the address and of the column
// stride ld * element size. For a vector, ld = 0.
inline uint32_t column_alignment(const void* p, int64_t ld, size_t elem) {
  const uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(ld) * elem | 256u;
  return uint32_t(bits & (~bits + 1));
}

size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// The bias / aux pointers live in the descriptor: set before the heuristic
// (it reads their alignment) and before every call.
void set_pointers(const Plan& p, const Gemm& g) {
  if (g.bias) set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias, g);
  if (g.aux) set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux, g);
}

// The cached plan of g, made on first use. `required`: no algorithm is an
// Error naming the shape (otherwise the plan is kept with found == false).
Plan& plan_for(CudaContext& ctx, const Gemm& g, bool required) {
  if (!ctx.matmul_plans) ctx.matmul_plans.reset(new MatmulPlanCache);
  const uint32_t align_a = column_alignment(g.A, g.lda, type_size(g.a_type));
  const uint32_t align_b = column_alignment(g.B, g.ldb, type_size(g.b_type));
  const uint32_t align_d = column_alignment(g.D, g.ldd, type_size(g.d_type));
  const uint32_t align_bias = g.bias ? column_alignment(g.bias, 0, 2) : 0;
  const uint32_t align_aux = g.aux ? column_alignment(g.aux, g.aux_ld, 2) : 0;
  const MatmulPlanCache::Key key = {g.m,      g.n,        g.k,          int64_t(g.transa),
                                    int64_t(g.transb),    int64_t(g.a_type),
                                    int64_t(g.b_type),    int64_t(g.d_type),
                                    g.lda,    g.ldb,      g.ldd,        int64_t(g.epilogue),
                                    g.aux_ld, g.beta == 0.f ? 1 : 0,    align_a,
                                    align_b,  align_d,    align_bias,   align_aux};
  auto& plans = ctx.matmul_plans->plans;
  auto it = plans.find(key);
  if (it != plans.end()) {
    if (required && !it->second->found)
      throw Error(gemm_what(g, "cuBLASLt has no algorithm for this GEMM"));
    return *it->second;
  }

  std::unique_ptr<Plan> plan(new Plan);
  lt_check(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), g,
           "cublasLtMatmulDescCreate");
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(g.transa), g);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(g.transb), g);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(g.epilogue), g);
  if (g.bias) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(CUDA_R_16BF), g);
  // The aux (GELU input) type is left at its default, D's type (bf16 here):
  // cublasLt.h documents setting EPILOGUE_AUX_DATA_TYPE for fp8 outputs only
  // and has cublasLtMatmul return INVALID_VALUE for an unsupported setting,
  // which here would be an Error instead of the unfused fallback.
  if (g.aux) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, g.aux_ld, g);
  set_pointers(*plan, g);

  // Stored (pre-transpose) shapes: op(A) is [m, k], op(B) is [k, n].
  const bool ta = g.transa == CUBLAS_OP_T, tb = g.transb == CUBLAS_OP_T;
  lt_check(cublasLtMatrixLayoutCreate(&plan->a, g.a_type, ta ? g.k : g.m, ta ? g.m : g.k, g.lda),
           g, "cublasLtMatrixLayoutCreate(A)");
  lt_check(cublasLtMatrixLayoutCreate(&plan->b, g.b_type, tb ? g.n : g.k, tb ? g.k : g.n, g.ldb),
           g, "cublasLtMatrixLayoutCreate(B)");
  lt_check(cublasLtMatrixLayoutCreate(&plan->d, g.d_type, g.m, g.n, g.ldd), g,
           "cublasLtMatrixLayoutCreate(D)");

  cublasLtMatmulPreference_t pref = nullptr;
  lt_check(cublasLtMatmulPreferenceCreate(&pref), g, "cublasLtMatmulPreferenceCreate");
  // Owns pref from here on, so an Error below does not leak it.
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      pref_guard(pref, cublasLtMatmulPreferenceDestroy);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(ctx.workspace_bytes), g);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a, g);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b, g);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d, g);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d, g);

  constexpr int kRequested = 8;
  cublasLtMatmulHeuristicResult_t results[kRequested] = {};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                     pref, kRequested, results, &returned);
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) lt_check(status, g, "cublasLtMatmulAlgoGetHeuristic");
  // Results come ordered by estimated time: the first usable one is the best.
  for (int i = 0; status == CUBLAS_STATUS_SUCCESS && i < returned && !plan->found; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS &&
        results[i].workspaceSize <= ctx.workspace_bytes) {
      plan->algo = results[i].algo;
      plan->found = true;
    }
  }
  if (required && !plan->found)
    throw Error(gemm_what(g, "cuBLASLt has no algorithm for this GEMM") + " (m=" +
                std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
                ", epilogue " + std::to_string(int(g.epilogue)) + ")");
  Plan& ref = *plan;
  plans.emplace(key, std::move(plan));
  return ref;
}

// Runs g on the context's stream. Returns false (having done nothing) when
// the heuristic has no algorithm and !required; required: that is an Error.
bool run_gemm(CudaContext& ctx, const Gemm& g, bool required) {
  Plan& p = plan_for(ctx, g, required);
  if (!p.found) return false;
  set_pointers(p, g);
  const float alpha = 1.f;
  const cublasStatus_t status =
      cublasLtMatmul(ctx.cublaslt, p.desc, &alpha, g.A, p.a, g.B, p.b, &g.beta, g.D, p.d, g.D,
                     p.d, &p.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream);
  // An optional attempt (a fused epilogue, a bias at an unaligned address)
  // that cuBLASLt refuses when called, although its heuristic offered an
  // algorithm: argument checks, nothing was launched. Remember it as "no
  // algorithm" so the caller takes its fallback, now and on later calls.
  if (!required &&
      (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE)) {
    p.found = false;
    return false;
  }
  lt_check(status, g, "cublasLtMatmul");
  return true;
}

// A forward GEMM. Biases are often slices of the flat parameter buffer, at
// any element offset; should the heuristic have no BIAS kernel for a bias
// that is not 16-byte aligned, the GEMM runs on an aligned copy of it in the
// context's scratch (stream-ordered, so the copy is there before the GEMM
// reads it): the same numbers either way.
bool run_forward(CudaContext& ctx, Gemm g, bool required) {
  if (!g.bias || column_alignment(g.bias, 0, sizeof(bf16)) >= 16)
    return run_gemm(ctx, g, required);
  if (run_gemm(ctx, g, false)) return true;
  const size_t bytes = size_t(g.m) * sizeof(bf16);
  void* copy = ctx.ensure_scratch(bytes);
  cuda_check(cudaMemcpyAsync(copy, g.bias, bytes, cudaMemcpyDeviceToDevice, ctx.stream),
             gemm_what(g, "cudaMemcpyAsync (aligned copy of the bias)"));
  g.bias = copy;
  return run_gemm(ctx, g, required);
}

// out^T [OC, N] = W . in^T (+ bias): see the course note.
Gemm forward_gemm(const char* op, bf16* out, const bf16* in, const bf16* weight, const bf16* bias,
                  int N, int IC, int OC) {
  Gemm g;
  g.op = op;
  g.N = N, g.IC = IC, g.OC = OC;
  g.m = OC, g.n = N, g.k = IC;
  g.transa = CUBLAS_OP_T, g.transb = CUBLAS_OP_N;
  g.A = weight, g.lda = IC;
  g.B = in, g.ldb = IC;
  g.D = out, g.ldd = OC;
  g.beta = 0.f;
  g.bias = bias;
  g.epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  return g;
}

// din^T [IC, N] = W^T . dout^T (written).
Gemm din_gemm(const char* op, bf16* din, const bf16* dout, const bf16* weight, int N, int IC,
              int OC) {
  Gemm g;
  g.op = op;
  g.N = N, g.IC = IC, g.OC = OC;
  g.m = IC, g.n = N, g.k = OC;
  g.transa = CUBLAS_OP_N, g.transb = CUBLAS_OP_N;
  g.A = weight, g.lda = IC;
  g.B = dout, g.ldb = OC;
  g.D = din, g.ldd = IC;
  g.beta = 0.f;
  return g;
}

// dweight^T [IC, OC] += in^T . dout (fp32, beta = 1).
Gemm dweight_gemm(const char* op, float* dweight, const bf16* dout, const bf16* in, int N, int IC,
                  int OC) {
  Gemm g;
  g.op = op;
  g.N = N, g.IC = IC, g.OC = OC;
  g.m = IC, g.n = OC, g.k = N;
  g.transa = CUBLAS_OP_N, g.transb = CUBLAS_OP_T;
  g.A = in, g.lda = IC;
  g.B = dout, g.ldb = OC;
  g.D = dweight, g.d_type = CUDA_R_32F, g.ldd = IC;
  g.beta = 1.f;
  return g;
}

// ---- kernels ---------------------------------------------------------------------

// dbias: blocks of kBiasCols columns x kBiasGroups row groups over chunks of
// kBiasChunkRows rows.
constexpr int kBiasCols = 32;
constexpr int kBiasGroups = 8;
constexpr int kBiasChunkRows = 256;
constexpr int kBiasThreads = kBiasCols * kBiasGroups;
constexpr int kReduceThreads = 256;
constexpr int kElementwiseThreads = 256;
static_assert(kBiasCols == 32, "one warp reads one contiguous row segment");
static_assert(kBiasThreads <= 1024 && kBiasChunkRows % kBiasGroups == 0, "bias block shape");

// For every chunk c (blockIdx.y, striding by gridDim.y) and column col:
//   dst[c * OC + col] (+)= sum over rows r of the chunk of dout[r, col]
// Thread (x, y) sums rows y, y + 8, ... of the chunk in order; the 8 row
// groups are then added in order: the same bits on every run.
__global__ __launch_bounds__(kBiasThreads) void bias_grad_partial_kernel(
    float* __restrict__ dst, const bf16* __restrict__ dout, int N, int OC, int chunks,
    bool accumulate) {
  __shared__ float partial[kBiasGroups][kBiasCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int col = blockIdx.x * kBiasCols + tx;
  for (int chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    const int row0 = chunk * kBiasChunkRows;
    const int row1 = min(N, row0 + kBiasChunkRows);
    float sum = 0.f;
    if (col < OC)
      for (int r = row0 + ty; r < row1; r += kBiasGroups) sum += to_f32(dout[size_t(r) * OC + col]);
    __syncthreads();  // the previous chunk's partials have been read
    partial[ty][tx] = sum;
    __syncthreads();
    if (ty == 0 && col < OC) {
      float total = 0.f;
      for (int g = 0; g < kBiasGroups; ++g) total += partial[g][tx];
      float* out = dst + size_t(chunk) * OC + col;
      *out = accumulate ? *out + total : total;
    }
  }
}

// dbias[col] += sum over chunks, in chunk order, of partials[chunk, col].
__global__ __launch_bounds__(kReduceThreads) void bias_grad_reduce_kernel(
    float* __restrict__ dbias, const float* __restrict__ partials, int chunks, int OC) {
  const int col = blockIdx.x * kReduceThreads + threadIdx.x;
  if (col >= OC) return;
  float sum = 0.f;
  for (int c = 0; c < chunks; ++c) sum += partials[size_t(c) * OC + col];
  dbias[col] += sum;
}

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
__device__ __forceinline__ float gelu_tanh(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}

// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
__device__ __forceinline__ float gelu_tanh_grad(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float t = tanhf(u);
  return 0.5f * (1.f + t) +
         0.5f * x * (1.f - t * t) * kGeluScale * (1.f + 3.f * kGeluCubic * x * x);
}

// out[i] = gelu(pre[i]) (the unfused forward).
__global__ __launch_bounds__(kElementwiseThreads) void gelu_from_pre_kernel(
    bf16* __restrict__ out, const bf16* __restrict__ pre, size_t n) {
  const size_t i = size_t(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (i < n) out[i] = to_bf16(gelu_tanh(to_f32(pre[i])));
}

// dpre[i] *= gelu'(pre[i]) in place (the unfused backward).
__global__ __launch_bounds__(kElementwiseThreads) void dgelu_in_place_kernel(
    bf16* __restrict__ dpre, const bf16* __restrict__ pre, size_t n) {
  const size_t i = size_t(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (i < n) dpre[i] = to_bf16(to_f32(dpre[i]) * gelu_tanh_grad(to_f32(pre[i])));
}

// ---- host helpers ------------------------------------------------------------------

// N == 0: nothing to do (returns false); a negative N or a non-positive
// IC / OC is an Error naming the op.
bool check_shape(const char* op, int N, int IC, int OC) {
  if (N < 0 || IC <= 0 || OC <= 0)
    throw Error(std::string(op) + ": bad shape " + shape_str("N", N, "IC", IC, "OC", OC));
  return N > 0;
}

void bias_grad(CudaContext& ctx, const char* op, float* dbias, const bf16* dout, int N, int OC) {
  const int chunks = (N + kBiasChunkRows - 1) / kBiasChunkRows;
  const dim3 block(kBiasCols, kBiasGroups);
  const unsigned col_blocks = grid_for(size_t(OC), kBiasCols);
  const std::string shape = shape_str("N", N, "OC", OC);
  if (chunks == 1) {  // one chunk: add straight into dbias
    bias_grad_partial_kernel<<<dim3(col_blocks, 1), block, 0, ctx.stream>>>(dbias, dout, N, OC,
                                                                             1, true);
    check_launch(op, shape);
    return;
  }
  float* partials = static_cast<float*>(ctx.ensure_scratch(size_t(chunks) * OC * sizeof(float)));
  const unsigned grid_y = unsigned(chunks < 65535 ? chunks : 65535);
  bias_grad_partial_kernel<<<dim3(col_blocks, grid_y), block, 0, ctx.stream>>>(
      partials, dout, N, OC, chunks, false);
  check_launch(op, shape);
  bias_grad_reduce_kernel<<<grid_for(size_t(OC), kReduceThreads), kReduceThreads, 0,
                            ctx.stream>>>(dbias, partials, chunks, OC);
  check_launch(op, shape);
}

// dweight += dout^T @ in; dbias += column sums of dout (either may be null).
void parameter_grads(CudaContext& ctx, const char* op, float* dweight, float* dbias,
                     const bf16* dout, const bf16* in, int N, int IC, int OC) {
  if (dweight) run_gemm(ctx, dweight_gemm(op, dweight, dout, in, N, IC, OC), true);
  if (dbias) bias_grad(ctx, op, dbias, dout, N, OC);
}

}  // namespace

// ---- CudaOps members -------------------------------------------------------------

void CudaOps::matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC, int OC) {
  const char* op = "matmul_forward";
  if (!check_shape(op, N, IC, OC)) return;
  const bf16* bias_ptr = bias ? bf16_ptr(bias, op) : nullptr;
  run_forward(context(),
              forward_gemm(op, bf16_ptr(out, op), bf16_ptr(in, op), bf16_ptr(weight, op),
                           bias_ptr, N, IC, OC),
              true);
}

void CudaOps::matmul_gelu_forward(Buf pre, Buf out, CBuf in, CBuf weight, CBuf bias, int N,
                                  int IC, int OC) {
  const char* op = "matmul_gelu_forward";
  if (!check_shape(op, N, IC, OC)) return;
  if (!pre || !out)
    throw Error(std::string(op) + ": pre and out are both required (" +
                shape_str("N", N, "IC", IC, "OC", OC) + ")");
  CudaContext& ctx = context();
  bf16* pre_ptr = bf16_ptr(pre, op);
  bf16* out_ptr = bf16_ptr(out, op);
  const bf16* in_ptr = bf16_ptr(in, op);
  const bf16* w_ptr = bf16_ptr(weight, op);
  const bf16* bias_ptr = bias ? bf16_ptr(bias, op) : nullptr;

  // Fused: D = gelu(acc + bias) -> out, aux = acc + bias -> pre (aux ld OC).
  if (OC % 8 == 0) {
    Gemm g = forward_gemm(op, out_ptr, in_ptr, w_ptr, bias_ptr, N, IC, OC);
    g.epilogue = bias_ptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    g.aux = pre_ptr;
    g.aux_ld = OC;
    if (run_forward(ctx, g, false)) return;
  }
  // Unfused: pre = acc + bias, then out = gelu(pre).
  run_forward(ctx, forward_gemm(op, pre_ptr, in_ptr, w_ptr, bias_ptr, N, IC, OC), true);
  const size_t n = size_t(N) * OC;
  gelu_from_pre_kernel<<<grid_for(n, kElementwiseThreads), kElementwiseThreads, 0, ctx.stream>>>(
      out_ptr, pre_ptr, n);
  check_launch(op, shape_str("N", N, "IC", IC, "OC", OC));
}

void CudaOps::matmul_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in,
                              CBuf weight, int N, int IC, int OC) {
  const char* op = "matmul_backward";
  if (!check_shape(op, N, IC, OC)) return;
  CudaContext& ctx = context();
  const bf16* dout_ptr = bf16_ptr(dout, op);
  if (din)
    run_gemm(ctx, din_gemm(op, bf16_ptr(din, op), dout_ptr, bf16_ptr(weight, op), N, IC, OC),
             true);
  parameter_grads(ctx, op, dweight, dbias, dout_ptr, dweight ? bf16_ptr(in, op) : nullptr, N, IC,
                  OC);
}

void CudaOps::matmul_backward_gelu(Buf dpre, float* dweight, float* dbias, CBuf dout, CBuf in,
                                   CBuf pre, CBuf weight, int N, int IC, int OC) {
  const char* op = "matmul_backward_gelu";
  if (!check_shape(op, N, IC, OC)) return;
  CudaContext& ctx = context();
  const bf16* dout_ptr = bf16_ptr(dout, op);
  if (dpre) {
    bf16* dpre_ptr = bf16_ptr(dpre, op);
    const bf16* pre_ptr = bf16_ptr(pre, op);
    const bf16* w_ptr = bf16_ptr(weight, op);
    bool done = false;
    // Fused: D = gelu'(aux) * (dout @ W), aux = pre [N, IC] (aux ld IC).
    if (IC % 8 == 0) {
      Gemm g = din_gemm(op, dpre_ptr, dout_ptr, w_ptr, N, IC, OC);
      g.epilogue = CUBLASLT_EPILOGUE_DGELU;
      g.aux = pre_ptr;
      g.aux_ld = IC;
      done = run_gemm(ctx, g, false);
    }
    if (!done) {  // Unfused: dpre = dout @ W, then dpre *= gelu'(pre).
      run_gemm(ctx, din_gemm(op, dpre_ptr, dout_ptr, w_ptr, N, IC, OC), true);
      const size_t n = size_t(N) * IC;
      dgelu_in_place_kernel<<<grid_for(n, kElementwiseThreads), kElementwiseThreads, 0,
                              ctx.stream>>>(dpre_ptr, pre_ptr, n);
      check_launch(op, shape_str("N", N, "IC", IC, "OC", OC));
    }
  }
  parameter_grads(ctx, op, dweight, dbias, dout_ptr, dweight ? bf16_ptr(in, op) : nullptr, N, IC,
                  OC);
}

}  // namespace polaris
