// CudaOps: the fused softmax cross-entropy over bf16 logits (LossArgs in
// model/ops.h): loss, log-probability of the target, entropy and the gradient
// of the logits, in one kernel, with one block per row.
//
// ---- the math (per row i, logits l_j, j < V, target t) ---------------------------
//   M = max_j l_j,  S = sum_j e_j with e_j = exp(l_j - M),  T = sum_j e_j (l_j - M)
//   log S, lse = M + log S,  log p_j = (l_j - M) - log S,  p_j = exp(log p_j)
//   logprob = log p_t,  H = -sum_j p_j log p_j = log S - T / S
//   loss = w (-logprob) - ew H
//   dlogits_j = scale (w (p_j - [j == t]) + ew p_j (log p_j + H))
// w = weights[i] (1 when null), ew = entropy_weights[i] (0 when null).
// target < 0: the row is ignored (loss, logprob, entropy 0, dlogits row 0).
// target >= V: a caller bug (the CPU reference throws; the transformer
// validates targets on the host with Batch::validate before any op runs). The
// kernel cannot throw, so it makes the row loud: loss, logprob, entropy and the
// whole dlogits row are NaN.
// Logits must be finite (as on the CPU: an -inf logit makes e (l - M) NaN).
//
// ---- the decomposition ---------------------------------------------------------
// One block per row, 1024 threads (fewer, whole warps, for V < 1024); thread
// k owns columns k, k + blockDim, ... (coalesced bf16 reads).
//   pass 1 (reads the row once): each thread keeps an online (M_k, S_k, T_k)
//     over its columns: a new maximum rescales the sums by r = exp(M_old - M_new)
//     (S <- r S + 1, T <- r (T + S (M_old - M_new))), so one exp per logit.
//     Then M = block_max(M_k); each thread rescales its (S_k, T_k) to M and
//     block_sum adds them. Thread 0 reads l_t before any block barrier, so the
//     later writes of an aliased dlogits cannot have touched it.
//   pass 2 (reads the row again, writes it once): p_j and the gradient; each
//     thread reads l_j and then writes dlogits_j at the same index, and every
//     read of pass 1 finished before the barriers of the block reductions, so
//     dlogits may alias logits.
// block_max / block_sum combine in a fixed order: the result is bitwise
// deterministic (and independent of the GPU).
// fp32 accuracy: each thread adds <= ceil(V / 1024) = 149 terms (V = 151936),
// then a 10-level tree: S and T carry a relative error of at most ~160 * 2^-24
// ~ 1e-5 (typically ~1e-7); log S, log p and H inherit it as absolute errors.
//
// ---- bytes, flops, roofline (H100: 3.35 TB/s HBM, 989 TFLOP/s bf16) -------------
// Per row: pass 1 reads 2V bytes, pass 2 reads 2V and writes 2V: 6V bytes
// (4V when pass 2's read hits L2: a V = 151936 row is 297 KiB, and ~264 rows in
// flight on 132 SMs is ~78 MiB, more than the 50 MiB L2, so count 6V). Compute:
// two exps and ~15 flops per logit (~3 flop/B): memory bound; the SFU exp rate
// (~16/clk/SM, ~3.9e12/s) allows ~1.9e12 logits/s, above the ~0.56e12/s the
// 6 B/logit traffic allows at 3.35 TB/s.
// Qwen3's V = 151936 at N = 8192 tokens: 7.5 GB moved, ~2.2 ms; GPT-2's
// V = 50257 at N = 16384: 4.9 GB, ~1.5 ms.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr int kLossThreads = 1024;
static_assert(kLossThreads % 32 == 0 && kLossThreads <= 1024,
              "block_sum / block_max need whole warps, at most 1024 threads");

// Adds logit l to a thread's online softmax statistics (m, s, t) =
// (max, sum of exp(l - m), sum of exp(l - m) (l - m)).
__device__ __forceinline__ void online_add(float l, float& m, float& s, float& t) {
  if (l > m) {
    if (s > 0.f) {  // rescale the old terms to the new maximum (m is finite here)
      const float r = expf(m - l);
      t = r * (t + s * (m - l));
      s = r * s;
    }
    s += 1.f;  // the new maximum's own term: exp(0) = 1, times (l - l) = 0
    m = l;
  } else {
    const float e = expf(l - m);
    s += e;
    t += e * (l - m);
  }
}

struct LossKernelArgs {
  const bf16* logits;
  bf16* dlogits;  // may equal logits, or null
  const int32_t* targets;
  const float* weights;
  const float* entropy_weights;
  float scale;
  int V;
  float* losses;
  float* logprobs;
  float* entropies;
};

__global__ __launch_bounds__(kLossThreads) void cross_entropy_kernel(LossKernelArgs a) {
  __shared__ float shared[32];
  const int V = a.V;
  const size_t row = blockIdx.x;
  const bf16* l = a.logits + row * V;
  bf16* dl = a.dlogits ? a.dlogits + row * V : nullptr;
  const int target = a.targets[row];

  if (target < 0 || target >= V) {  // ignored (0) or out of range (NaN): uniform per block
    const float fill = target < 0 ? 0.f : NAN;
    if (threadIdx.x == 0) {
      a.losses[row] = fill;
      if (a.logprobs) a.logprobs[row] = fill;
      if (a.entropies) a.entropies[row] = fill;
    }
    if (dl) {
      const bf16 value = to_bf16(fill);
      for (int j = threadIdx.x; j < V; j += blockDim.x) dl[j] = value;
    }
    return;
  }

  // Pass 1: online max / sum / sum e (l - m) per thread.
  float m = -INFINITY, s = 0.f, t = 0.f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) online_add(to_f32(l[j]), m, s, t);
  const float l_target = threadIdx.x == 0 ? to_f32(l[target]) : 0.f;  // before any barrier

  const float M = block_max(m, shared);
  // A thread without columns (V < blockDim) has s = 0 and contributes nothing.
  const float r = s > 0.f ? expf(m - M) : 0.f;
  const float S = block_sum(s > 0.f ? r * s : 0.f, shared);
  const float T = block_sum(s > 0.f ? r * (t + s * (m - M)) : 0.f, shared);
  const float log_s = logf(S);
  const float H = log_s - T / S;
  const float w = a.weights ? a.weights[row] : 1.f;
  const float ew = a.entropy_weights ? a.entropy_weights[row] : 0.f;

  if (threadIdx.x == 0) {
    const float logprob = (l_target - M) - log_s;
    a.losses[row] = w * -logprob - ew * H;
    if (a.logprobs) a.logprobs[row] = logprob;
    if (a.entropies) a.entropies[row] = H;
  }

  // Pass 2: the gradient (read l_j, then write dl_j: aliasing is safe).
  if (dl) {
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
      const float logp = (to_f32(l[j]) - M) - log_s;
      const float p = expf(logp);
      float g = w * (p - (j == target ? 1.f : 0.f));
      if (ew != 0.f) g += ew * p * (logp + H);
      dl[j] = to_bf16(a.scale * g);
    }
  }
}

}  // namespace

void CudaOps::cross_entropy(const LossArgs& args) {
  const char* op = "cross_entropy";
  const int N = args.N, V = args.V;
  require(N >= 0 && V > 0, std::string(op) + ": bad shape " + shape_str("N", N, "V", V));
  if (N == 0) return;
  LossKernelArgs a;
  a.logits = bf16_ptr(args.logits, op);
  a.dlogits = args.dlogits ? bf16_ptr(args.dlogits, op) : nullptr;
  a.targets = args.targets;
  a.weights = args.weights;
  a.entropy_weights = args.entropy_weights;
  a.scale = args.scale;
  a.V = V;
  a.losses = args.losses;
  a.logprobs = args.logprobs;
  a.entropies = args.entropies;
  if (!a.logits || !a.targets || !a.losses)
    throw Error(std::string(op) + ": logits, targets and losses are required (" +
                shape_str("N", N, "V", V) + ")");
  // Whole warps, no more threads than columns (rounded up to a warp).
  const int threads = V >= kLossThreads ? kLossThreads : ((V + 31) / 32) * 32;
  CudaContext& ctx = context();
  cross_entropy_kernel<<<(unsigned)N, threads, 0, ctx.stream>>>(a);
  check_launch(op, shape_str("N", N, "V", V));
}

}  // namespace polaris
