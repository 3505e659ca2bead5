// CudaOps::sample_rows: the next token of n sequences from their rows of
// logits in device memory (model/ops.h), exactly the token the CPU's
// sample_token (model/sampler.cpp) picks, without sorting the vocabulary.
//
// ---- the math (one row of V logits l_j; model/sampler.h) ------------------------
//   M = max_j l_j, argmax = the lowest j with l_j == M (NaN never counts)
//   greedy (T = 0): the argmax.
//   x_j = (l_j - M) * (1/T); candidates: x_j >= cut (= cutoff(shift)), a
//   prefix of the sampling order (l desc, id asc); weight
//   q_j = floor(exp_nonpositive(x_j) * 2^shift), exact integers < 2^62 in all.
//   K = min(top_k, #candidates) (all when top_k = 0); total = sum of the
//   first K weights; keep = the shortest prefix that is within the first K,
//   has x >= log(min_p) throughout and (top_p < 1) reaches
//   need = top_p_need(top_p, total); u = uniform_below(kept total, stream,
//   counter); the token is the first in the order whose running weight sum
//   exceeds u.
//   log-prob (temperature 1, no cuts): (l_t - M) - log(sum_j exp(l_j - M)),
//   the sum of the float exps in double.
// Every float and integer step is model/sampling_math.h's, shared with the
// CPU (its float ops are the device's round-to-nearest intrinsics, never
// fused into FMAs), so the token is bitwise the CPU's. The log-prob's sum
// runs in another order than the CPU's: it may differ in the last bit.
//
// ---- the decomposition ---------------------------------------------------------
// One block of 1024 threads per row (one block per SM; blocks loop over rows
// when n exceeds the SM count); thread k reads columns k, k + 1024, ...
// (coalesced).
//   pass 1 (reads the row): max and argmax (block reduction on (l, -id)).
//   pass 2 (reads the row again; not for greedy rows without log-probs):
//     the log-prob's sum of exps (double, fixed-order block reduction) and
//     the candidates' order keys (sampling_math.h: order_key, 64 bits that
//     ascend in the sampling order) compacted into the block's scratch
//     (a warp ballot, one shared atomic per warp), with their weight total
//     and the count that min_p keeps.
//   selections over the candidates: MSB-first radix select on the keys,
//     8-bit digits (8 passes at most, usually 2-3): each pass histograms, in
//     shared memory, the keys that share the digits found so far: per bin
//     the count, the integer weight mass and the smallest key (a bin of one
//     key ends the select early). Warp 0 scans the 256 bins (a warp prefix
//     sum of 8-bin chunks) for the bin where the running count (top_k: rank
//     K - 1) or mass (top_p: need - 1; the draw: u) crosses the target.
//     Threads add runs of equal bins locally before one shared atomic, so a
//     flat row (every key in one bin) costs one atomic per thread, not per key.
//   one more pass for the kept mass when a cut applies.
// The result never depends on the order of the atomics: integer sums and a
// total order on distinct keys.
//
// ---- bytes, roofline (H100: 3.35 TB/s HBM, 50 MB L2, 132 SMs) -------------------
// Per row: the row twice (pass 1 and 2: 2 * 2V bytes in bf16, 0.6 MB at
// V = 151936; 2 * 4V in fp32; pass 2 rereads from L2 only when the rows in
// flight fit: 132 rows x 297 KB = 39 MB might, but count HBM), plus 8 bytes
// per candidate written once and read once per radix pass (L2-resident
// while the candidates are few, as at low temperature; at T = 1 a language
// model's row can keep 1e4-1e5 tokens above the cutoff, ~31 nats below the
// max, and a flat row makes all V candidates: 1.2 MB per pass). About 10
// float/integer ops per logit per pass: ~2.5 op/byte, memory bound. A decode
// step of 256 rows at V = 151936 (bf16) reads 156 MB of logits: ~47 us at
// HBM rate, where the host path first moved 78 MB over PCIe (~3 ms) and then
// sampled. Not yet optimised: each radix pass rereads every candidate key
// (3 selects x 2-3 digits + 1-2 total passes ~ 10 passes), so a row with a
// long tail above the cutoff (~1e5 candidates: 0.8 MB of keys) moves ~8 MB
// of keys, more than its logits; narrowing the key list after the first
// digit would remove most of it. bench_sampling measures it.
// Scratch: V * 8 bytes of keys per block of the grid (one per SM: 160 MB at
// V = 151936 on an H100), in the context's reusable scratch.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/context.cuh"
#include "model/sampler.h"
#include "model/sampling_math.h"

namespace polaris {

namespace {

using namespace sampling_detail;

constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr int kBinsPerLane = kDigitBins / 32;
static_assert(kSampleThreads % 32 == 0 && kSampleThreads <= 1024, "whole warps, at most 1024");
static_assert(kDigitBins == 32 * kBinsPerLane, "warp 0 scans 8 bins per lane");
static_assert(kSampleThreads >= kDigitBins, "one thread clears each histogram bin");

// A token outside [0, V): the row had no finite logit, or an internal check failed.
constexpr int32_t kNoFiniteLogit = -1;
constexpr int32_t kSelectFailed = -2;
constexpr uint64_t kNoKey = ~uint64_t(0);

// One row's draw, prepared on the host (the per-row constants that need a
// library call are computed there, by the CPU's own functions).
struct RowTask {
  uint64_t stream, counter;
  int32_t row;          // into the logits, row_stride apart
  int32_t top_k;        // 0: no cut
  float inv_temperature;
  float top_p;
  float min_p_x;        // min_p_floor(min_p): x below it is cut (-inf: none)
  int32_t greedy;
};

struct SampleArgs {
  const void* logits;
  long long row_stride;
  int V;
  int shift;            // weight_shift(V)
  float cut;            // cutoff(shift)
  double scale;         // 2^shift
  const RowTask* tasks;
  int n;
  uint64_t* keys;       // [gridDim.x, V] candidate keys
  int32_t* tokens;      // [n]
  float* logprobs;      // [n] or null
};

struct SampleShared {
  unsigned long long mass[kDigitBins];
  unsigned long long first_key[kDigitBins];
  unsigned int count[kDigitBins];
  unsigned long long reduce_u64[kSampleWarps];
  double reduce_f64[kSampleWarps];
  float reduce_max[kSampleWarps];
  int reduce_id[kSampleWarps];
  unsigned int reduce_count[kSampleWarps];
  unsigned int candidates;  // compaction cursor
  // a select's step, from warp 0 to the block
  int chosen_bin;
  unsigned long long chosen_target;
  unsigned long long chosen_key;  // kNoKey unless the bin holds one key
};
static_assert(sizeof(SampleShared) <= 8 * 1024, "the sampler's shared memory stays small");

__device__ __forceinline__ float load_logit(const float* p, size_t j) { return p[j]; }
__device__ __forceinline__ float load_logit(const bf16* p, size_t j) { return to_f32(p[j]); }

__device__ __forceinline__ unsigned long long warp_sum_u64(unsigned long long x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Block sums in a fixed order (every thread gets the result).
__device__ unsigned long long block_sum_u64(unsigned long long x, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum_u64(x);
  __syncthreads();
  if (lane == 0) sh.reduce_u64[warp] = x;
  __syncthreads();
  x = lane < kSampleWarps ? sh.reduce_u64[lane] : 0ull;
  return warp_sum_u64(x);
}

__device__ double block_sum_f64(double x, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  __syncthreads();
  if (lane == 0) sh.reduce_f64[warp] = x;
  __syncthreads();
  x = lane < kSampleWarps ? sh.reduce_f64[lane] : 0.0;
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// (l, id) pairs: the larger logit wins, the lower id on ties; id -1 (none) loses.
__device__ __forceinline__ void better_of(float& l, int& id, float other_l, int other_id) {
  if (other_id < 0) return;
  if (id < 0 || other_l > l || (other_l == l && other_id < id)) {
    l = other_l;
    id = other_id;
  }
}

__device__ void block_argmax(float& l, int& id, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1)
    better_of(l, id, __shfl_xor_sync(0xffffffffu, l, offset),
              __shfl_xor_sync(0xffffffffu, id, offset));
  __syncthreads();
  if (lane == 0) {
    sh.reduce_max[warp] = l;
    sh.reduce_id[warp] = id;
  }
  __syncthreads();
  l = lane < kSampleWarps ? sh.reduce_max[lane] : 0.f;
  id = lane < kSampleWarps ? sh.reduce_id[lane] : -1;
  for (int offset = 16; offset > 0; offset >>= 1)
    better_of(l, id, __shfl_xor_sync(0xffffffffu, l, offset),
              __shfl_xor_sync(0xffffffffu, id, offset));
}

// What a select counts per key: one (top_k) or the key's weight.
struct RowConstants {
  float max_logit, inv_temperature;
  double scale;
};

__device__ __forceinline__ uint64_t key_weight(uint64_t key, const RowConstants& rc) {
  const float x = scaled_inv(key_logit(key), rc.max_logit, rc.inv_temperature);
  return fixed_point(exp_nonpositive(x), rc.scale);
}

// Adds one key's measure to bin b of the histogram, through a per-thread run
// of equal bins (flushed when the bin changes and at the end).
struct BinRun {
  int bin = -1;
  unsigned long long mass = 0, first = kNoKey;
  unsigned int count = 0;

  __device__ void flush(SampleShared& sh, bool by_count) {
    if (bin < 0) return;
    if (!by_count) atomicAdd(&sh.mass[bin], mass);
    atomicAdd(&sh.count[bin], count);
    atomicMin(&sh.first_key[bin], first);
    bin = -1;
    mass = 0;
    count = 0;
    first = kNoKey;
  }
  __device__ void add(SampleShared& sh, bool by_count, int b, uint64_t key, uint64_t weight) {
    if (b != bin) {
      flush(sh, by_count);
      bin = b;
    }
    mass += weight;
    count += 1;
    first = key < first ? key : first;
  }
};

// Among the n candidate keys, the first in ascending order at which the
// running sum of the measure (by_count: 1 per key; else its weight) exceeds
// `target` (target < the sum over all keys). kNoKey if that invariant fails.
__device__ uint64_t select_key(const uint64_t* keys, int n, uint64_t target, bool by_count,
                               const RowConstants& rc, SampleShared& sh) {
  const int lane = threadIdx.x & 31;
  uint64_t prefix = 0;
  for (int digit = 0; digit < kKeyDigits; ++digit) {
    for (int b = threadIdx.x; b < kDigitBins; b += blockDim.x) {
      sh.mass[b] = 0;
      sh.count[b] = 0;
      sh.first_key[b] = kNoKey;
    }
    __syncthreads();
    BinRun run;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const uint64_t key = keys[i];
      if (key_prefix(key, digit) != prefix) continue;
      run.add(sh, by_count, int(key_digit(key, digit)), key, by_count ? 0 : key_weight(key, rc));
    }
    run.flush(sh, by_count);
    __syncthreads();
    if (threadIdx.x < 32) {  // warp 0: the bin where the running measure crosses target
      if (lane == 0) sh.chosen_bin = -1;  // stays so if no bin does (a broken invariant)
      __syncwarp();
      unsigned long long local = 0;
      for (int k = 0; k < kBinsPerLane; ++k) {
        const int b = lane * kBinsPerLane + k;
        local += by_count ? sh.count[b] : sh.mass[b];
      }
      unsigned long long inclusive = local;
      for (int offset = 1; offset < 32; offset <<= 1) {
        const unsigned long long up = __shfl_up_sync(0xffffffffu, inclusive, offset);
        if (lane >= offset) inclusive += up;
      }
      const unsigned long long exclusive = inclusive - local;
      const unsigned hit = __ballot_sync(0xffffffffu, exclusive <= target && target < inclusive);
      if (hit != 0 && lane == __ffs(hit) - 1) {
        unsigned long long before = exclusive;
        for (int k = 0; k < kBinsPerLane; ++k) {
          const int b = lane * kBinsPerLane + k;
          const unsigned long long m = by_count ? sh.count[b] : sh.mass[b];
          if (target < before + m) {
            sh.chosen_bin = b;
            sh.chosen_target = target - before;
            sh.chosen_key = sh.count[b] == 1 ? sh.first_key[b] : kNoKey;
            break;
          }
          before += m;
        }
      }
    }
    __syncthreads();
    const int bin = sh.chosen_bin;
    const uint64_t key = sh.chosen_key;
    target = sh.chosen_target;
    __syncthreads();  // everyone has read this step before anything rewrites it
    if (bin < 0) return kNoKey;
    if (key != kNoKey) return key;
    prefix = (prefix << 8) | uint64_t(bin);
  }
  return kNoKey;  // distinct keys: the last digit always isolates one
}

// Over the candidates with key <= limit (a prefix of the order): their
// weight sum, and the count and weight sum of those with x >= min_p_x.
struct PrefixTotals {
  uint64_t mass, min_p_mass;
  unsigned int min_p_count;
};
__device__ PrefixTotals prefix_totals(const uint64_t* keys, int n, uint64_t limit, float min_p_x,
                                      const RowConstants& rc, SampleShared& sh) {
  unsigned long long mass = 0, min_p_mass = 0, min_p_count = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const uint64_t key = keys[i];
    if (key > limit) continue;
    const float x = scaled_inv(key_logit(key), rc.max_logit, rc.inv_temperature);
    const uint64_t q = fixed_point(exp_nonpositive(x), rc.scale);
    mass += q;
    if (x >= min_p_x) {
      min_p_mass += q;
      min_p_count += 1;
    }
  }
  PrefixTotals t;
  t.mass = block_sum_u64(mass, sh);
  t.min_p_mass = block_sum_u64(min_p_mass, sh);
  t.min_p_count = unsigned(block_sum_u64(min_p_count, sh));
  return t;
}

// One block per SM (<= 64 registers; left free, ptxas aims for more blocks
// on sm_80 and spills).
template <class T>
__global__ __launch_bounds__(kSampleThreads, 1) void sample_rows_kernel(SampleArgs a) {
  __shared__ SampleShared sh;
  const int V = a.V;
  const int lane = threadIdx.x & 31;
  uint64_t* keys = a.keys + size_t(blockIdx.x) * size_t(V);
  for (int task_index = blockIdx.x; task_index < a.n; task_index += gridDim.x) {
    const RowTask task = a.tasks[task_index];
    const T* row = static_cast<const T*>(a.logits) + size_t(task.row) * size_t(a.row_stride);

    // Pass 1: the max and the argmax (lowest id among equal maxima).
    float best = 0.f;
    int best_id = -1;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
      const float l = load_logit(row, size_t(j));
      if (l > -INFINITY && (best_id < 0 || l > best)) {  // ascending j: ties keep the first
        best = l;
        best_id = j;
      }
    }
    block_argmax(best, best_id, sh);
    if (best_id < 0) {  // no finite logit: the host reports it
      if (threadIdx.x == 0) {
        a.tokens[task_index] = kNoFiniteLogit;
        if (a.logprobs) a.logprobs[task_index] = NAN;
      }
      __syncthreads();
      continue;
    }
    const float M = best;
    const bool greedy = task.greedy != 0;
    const RowConstants rc{M, task.inv_temperature, a.scale};

    // Pass 2: the log-prob's sum and the candidates (with their weight total
    // and how many min_p keeps).
    if (threadIdx.x == 0) sh.candidates = 0;
    __syncthreads();
    double exp_sum = 0;
    unsigned long long total = 0, min_p_kept = 0;
    if (a.logprobs || !greedy) {
      for (int j0 = 0; j0 < V; j0 += blockDim.x) {  // whole warps in every step (ballot)
        const int j = j0 + int(threadIdx.x);
        const float l = j < V ? load_logit(row, size_t(j)) : -INFINITY;
        if (a.logprobs)
          exp_sum += double(exp_nonpositive(l == M ? 0.f : POLARIS_FSUB(l, M)));
        if (greedy) continue;
        const float x = scaled_inv(l, M, task.inv_temperature);
        const bool candidate = j < V && x >= a.cut;
        const unsigned ballot = __ballot_sync(0xffffffffu, candidate);
        unsigned base = 0;
        if (lane == 0 && ballot) base = atomicAdd(&sh.candidates, unsigned(__popc(ballot)));
        base = __shfl_sync(0xffffffffu, base, 0);
        if (candidate) {
          keys[base + __popc(ballot & ((1u << lane) - 1u))] = order_key(l, j);
          total += fixed_point(exp_nonpositive(x), a.scale);
          min_p_kept += x >= task.min_p_x;
        }
      }
    }
    if (a.logprobs) exp_sum = block_sum_f64(exp_sum, sh);
    int32_t token = best_id;
    if (!greedy) {
      total = block_sum_u64(total, sh);
      min_p_kept = block_sum_u64(min_p_kept, sh);
      __syncthreads();  // the compaction's writes (keys, cursor) are done
      const int n = int(sh.candidates);
      // top_k: the first K candidates (limit: the K-th key).
      const bool top_k_cut = task.top_k > 0 && task.top_k < n;
      const unsigned int K = top_k_cut ? unsigned(task.top_k) : unsigned(n);
      uint64_t limit = kNoKey, k_total = total;
      unsigned int k_min_p = unsigned(min_p_kept);
      bool failed = false;
      if (top_k_cut) {
        limit = select_key(keys, n, uint64_t(K - 1), true, rc, sh);
        failed = limit == kNoKey;
        const PrefixTotals t = prefix_totals(keys, n, limit, task.min_p_x, rc, sh);
        k_total = t.mass;
        k_min_p = t.min_p_count;
      }
      // min_p keeps a prefix; top_p: up to the first key whose running mass
      // reaches need. The kept set: key <= limit and x >= min_p_x.
      bool cut = k_min_p < K;
      if (!failed && task.top_p < 1.f) {
        const uint64_t need = top_p_need(task.top_p, k_total);
        const uint64_t p_key = select_key(keys, n, need - 1, false, rc, sh);
        failed = p_key == kNoKey;
        if (p_key < limit) {
          limit = p_key;
          cut = true;
        }
      }
      uint64_t kept_total = k_total;
      if (!failed && cut)
        kept_total = prefix_totals(keys, n, limit, task.min_p_x, rc, sh).min_p_mass;
      if (!failed) {
        const uint64_t u = uniform_below(kept_total, task.stream, task.counter);
        const uint64_t drawn = select_key(keys, n, u, false, rc, sh);
        failed = drawn == kNoKey;
        if (!failed) token = key_id(drawn);
      }
      if (failed) token = kSelectFailed;
    }
    if (threadIdx.x == 0) {
      a.tokens[task_index] = token;
      if (a.logprobs) {
        const float l = token >= 0 ? load_logit(row, size_t(token)) : NAN;
        a.logprobs[task_index] = float(double(l == M ? 0.f : POLARIS_FSUB(l, M)) - log(exp_sum));
      }
    }
    __syncthreads();  // shared state is reused by the next row
  }
}

}  // namespace

void CudaOps::sample_rows(int32_t* tokens, float* logprobs, CBuf logits, int row_stride,
                          const int32_t* row_indices, const SampleRowParams* params, int n,
                          int V) {
  const char* op = "sample_rows";
  const std::string shape = shape_str("n", n, "V", V, "row_stride", row_stride);
  require(n >= 0 && V > 0 && row_stride >= V, std::string(op) + ": bad shape " + shape);
  if (n == 0) return;
  require(logits.ptr != nullptr, std::string(op) + ": no logits (" + shape + ")");
  std::vector<RowTask> tasks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const SampleRowParams& p = params[i];
    require(row_indices[i] >= 0,
            std::string(op) + ": negative row index " + std::to_string(row_indices[i]));
    RowTask& t = tasks[size_t(i)];
    t.stream = p.stream;
    t.counter = p.counter;
    t.row = row_indices[i];
    t.greedy = !(p.temperature > 0.f);
    t.inv_temperature = t.greedy ? 1.f : 1.f / p.temperature;
    t.top_k = p.top_k > 0 ? p.top_k : 0;
    t.top_p = p.top_p;
    t.min_p_x = min_p_floor(p.min_p);
  }
  CudaContext& ctx = context();
  const int grid = std::min(n, std::max(1, ctx.sm_count));
  auto align = [](size_t bytes) { return (bytes + 255) & ~size_t(255); };
  const size_t task_bytes = align(sizeof(RowTask) * size_t(n));
  const size_t token_bytes = align(sizeof(int32_t) * size_t(n));
  const size_t logprob_bytes = align(sizeof(float) * size_t(n));
  const size_t key_bytes = sizeof(uint64_t) * size_t(grid) * size_t(V);
  char* scratch = static_cast<char*>(
      ctx.ensure_scratch(task_bytes + token_bytes + logprob_bytes + key_bytes));
  SampleArgs a;
  a.logits = logits.ptr;
  a.row_stride = row_stride;
  a.V = V;
  a.shift = weight_shift(V);
  a.cut = cutoff(a.shift);
  a.scale = fixed_scale(a.shift);
  a.tasks = reinterpret_cast<const RowTask*>(scratch);
  a.n = n;
  a.tokens = reinterpret_cast<int32_t*>(scratch + task_bytes);
  a.logprobs = logprobs ? reinterpret_cast<float*>(scratch + task_bytes + token_bytes) : nullptr;
  a.keys = reinterpret_cast<uint64_t*>(scratch + task_bytes + token_bytes + logprob_bytes);
  cuda_check(cudaMemcpyAsync(scratch, tasks.data(), sizeof(RowTask) * size_t(n),
                             cudaMemcpyHostToDevice, ctx.stream),
             std::string(op) + ": cudaMemcpyAsync (" + shape + ")");
  if (logits.dtype == DType::f32)
    sample_rows_kernel<float><<<grid, kSampleThreads, 0, ctx.stream>>>(a);
  else
    sample_rows_kernel<bf16><<<grid, kSampleThreads, 0, ctx.stream>>>(a);
  check_launch(op, shape);
  cuda_check(cudaMemcpyAsync(tokens, a.tokens, sizeof(int32_t) * size_t(n),
                             cudaMemcpyDeviceToHost, ctx.stream),
             std::string(op) + ": cudaMemcpyAsync (" + shape + ")");
  if (logprobs)
    cuda_check(cudaMemcpyAsync(logprobs, a.logprobs, sizeof(float) * size_t(n),
                               cudaMemcpyDeviceToHost, ctx.stream),
               std::string(op) + ": cudaMemcpyAsync (" + shape + ")");
  cuda_check(cudaStreamSynchronize(ctx.stream),
             std::string(op) + ": cudaStreamSynchronize (" + shape + ")");
  for (int i = 0; i < n; ++i) {
    require(tokens[i] != kNoFiniteLogit, "sampling: every logit is -inf or NaN");
    require(tokens[i] >= 0 && tokens[i] < V,
            "sampling: internal error (the GPU select failed on row " + std::to_string(i) + ", " +
                shape + ")");
  }
}

}  // namespace polaris
