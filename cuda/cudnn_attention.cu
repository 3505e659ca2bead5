// Causal attention on cuDNN's fused flash-attention engines (cuDNN 9 backend
// graph API), an alternative to the own kernels of cuda/attention.cu.
//
// What cuDNN computes. The same math as Ops::attention_forward/backward
// (model/ops.h), per batch row b and query head h (kv head h / (H / KVH)):
//   forward:  S = scale * Q K^T (scale = 1/sqrt(D)), S[t, s] = -inf for s > t,
//             m = rowmax S, l = sum_s exp(S - m), stats = m + ln l (= our lse,
//             natural log, fp32 [B, H, T, 1] = our [B, H, T] exactly),
//             O = (exp(S - m) / l) V
//   backward: P = exp(S - stats) (recomputed from the saved stats),
//             Delta = rowsum(dO * O), dV = P^T dO, dP = dO V^T,
//             dS = P * (dP - Delta) * scale, dQ = dS K, dK = dS^T Q
//             (GQA: dK, dV summed over the query heads of a kv head).
// cuDNN recognises the graphs below as "flash attention" and runs one fused
// FlashAttention-2 style kernel (tensor cores, bf16 in, fp32 accumulation,
// S and P never in memory); the graph is only the specification.
//
// How the graph is built (backend API: cudnnBackendCreateDescriptor /
// SetAttribute / Finalize). Tensors are 4-d [B, heads, T, D] views of our
// row-major [B*T, row] buffers: q strides (T*q_row, D, q_row, 1), so the fused
// qkv layout needs no copy; K enters as K^T (dims [B, KVH, D, T], the last two
// strides swapped), out/dout are dense (T*H*D, D, H*D, 1). The forward graph:
//   matmul(Q, K^T) -> mul(scale) -> [gen_index row, gen_index col,
//   cmp_ge(row, col), binary_select(S, -inf, mask)] -> reduce max -> sub ->
//   exp -> reduce sum -> (log, add max -> Stats) and (div -> P, bf16) ->
//   matmul(P, V) -> O.
// The backward graph (the "dP workspace" form, see determinism):
//   Delta = mul(reduce_add(dO * O), 1) (a non-virtual fp32 [B, H, T] buffer
//   we own); S as in the forward, sub(Stats), causal select, exp -> P;
//   reshape(P) = P^T (bf16) -> matmul(P^T, dO) -> dV (GQA: into a virtual
//   [B, H, T, D] then reduce_add over the head group);
//   matmul(dO, V^T) = dP -> sub(Delta) -> mul(P) -> mul(scale) = dS;
//   reshape(dS) = dS^T -> matmul(dS^T, Q) -> dK (GQA reduced likewise);
//   reshape(K^T) = K -> matmul(dS, K) -> dQ (bf16, written directly).
// Scalars (scale, -inf, 1) are pass-by-value tensors. Engines come from
// heuristics mode A (then FALLBACK); the first engine config that finalizes
// into an execution plan wins.
//
// Caching. A CudnnState per CudaContext (file-level map keyed by the
// context's address, checked against its device; cudnn_attention_release()
// drops it) holds the cuDNN handle, created lazily, and the plans, built once
// per key (B, T, H, KVH, D, q/k/v strides, causal, forward|backward) together
// with every descriptor they reference and a workspace allocated for the plan
// (cuDNN's workspace, plus Delta for the backward, plus a scratch gradient
// buffer used when the caller passes a null dq/dk/dv). Each call sets the
// handle's stream to ctx.stream, so everything stays in stream order. The
// cache is not bounded: every distinct T (say) adds a plan and its workspace.
// Tensors are declared 16-byte aligned; q/k/v/out/dout/dq/dk/dv pointers that
// are not throw, a misaligned lse (a slice of a larger buffer) goes through
// an aligned copy in the plan's memory.
//
// Determinism. cuDNN's backward has two forms on Hopper: one accumulates dQ
// in fp32 with atomics (non-deterministic), the other keeps dP tiles in a
// workspace (B * H * ceil64(T)^2 * 2 bytes) and writes dQ without atomics —
// cuDNN's "deterministic algorithm". We always build the second (dQ written
// straight from the matmul, no fp32 dQ accumulator), and we also skip any
// engine whose numerical notes say NONDETERMINISTIC. Its workspace is the
// price: cudnn_attention_supported() refuses shapes needing more than 1 GiB,
// so those fall back to the own kernels.
//
// Supported: bf16, head_dim a multiple of 8 up to 128, GQA/MQA (H a multiple
// of KVH), any T >= 1, strided q/k/v (row strides multiples of 8 elements,
// pointers 16-byte aligned), one document per row (doc_ids == null).
// Falls back (supported() false): packed documents. cuDNN expresses variable
// length sequences as padded batches (seq_len tensors) or ragged ones
// (per-sequence ragged offsets): a packed row would become one cuDNN batch
// element per document, so the element count, the longest document and the
// offsets must be known on the host when the plan is built — a device-to-host
// copy of doc_ids and a sync on every call — and our lse layout [B, H, T]
// (head-major within a row) is not cuDNN's ragged stats layout (token-major).
// That is not worth it against the own kernel; the caller falls back.
//
// Cost (H100): the same flops as any flash attention, ~4 B H T^2 D / 2 for
// the causal forward (two matmuls, half the square) and ~2.5x that backward,
// against 989 TFLOP/s bf16; bytes ~ q, k, v, out once (forward) and q, k, v,
// out, dout, dq, dk, dv once (backward) plus the dP workspace traffic.
#include "cuda/cudnn_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/context.cuh"
#include "src/common/error.h"

#ifdef POLARIS_HAVE_CUDNN
#include <cudnn_graph.h>
#endif

namespace polaris {

namespace {

std::string cudnn_shape_str(const AttentionShape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" +
         std::to_string(s.num_heads) + " KVH=" + std::to_string(s.num_kv_heads) + " D=" +
         std::to_string(s.head_dim) + " q_row=" + std::to_string(s.q_row()) + " k_row=" +
         std::to_string(s.k_row()) + " v_row=" + std::to_string(s.v_row());
}

}  // namespace

#ifndef POLARIS_HAVE_CUDNN

bool cudnn_attention_supported(const AttentionShape&, const int32_t*, std::string* why) {
  if (why) *why = "built without cuDNN (POLARIS_HAVE_CUDNN unset)";
  return false;
}

void cudnn_attention_forward(CudaContext&, Buf, float*, CBuf, CBuf, CBuf, const int32_t*,
                             const AttentionShape& shape) {
  throw Error("cudnn_attention_forward (" + cudnn_shape_str(shape) +
              "): built without cuDNN (POLARIS_HAVE_CUDNN unset)");
}

void cudnn_attention_backward(CudaContext&, Buf, Buf, Buf, CBuf, CBuf, CBuf, CBuf, CBuf,
                              const float*, const int32_t*, const AttentionShape& shape) {
  throw Error("cudnn_attention_backward (" + cudnn_shape_str(shape) +
              "): built without cuDNN (POLARIS_HAVE_CUDNN unset)");
}

void cudnn_attention_release(CudaContext&) {}

#else  // POLARIS_HAVE_CUDNN

namespace {

// The handle attributes of the operation graph and the execution plan carry
// deprecated enumerator names in cuDNN 9 headers (a deprecation warning is an
// error here) although the library still requires them; their values:
constexpr cudnnBackendAttributeName_t kAttrOperationGraphHandle =
    static_cast<cudnnBackendAttributeName_t>(800);  // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
constexpr cudnnBackendAttributeName_t kAttrExecutionPlanHandle =
    static_cast<cudnnBackendAttributeName_t>(400);  // CUDNN_ATTR_EXECUTION_PLAN_HANDLE

constexpr int kMaxHeadDim = 128;
constexpr long long kMaxDpWorkspaceBytes = 1ll << 30;

bool shape_reason(const AttentionShape& s, const int32_t* doc_ids, std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  if (s.B < 1 || s.T < 1 || s.num_heads < 1 || s.num_kv_heads < 1 || s.head_dim < 1)
    return no("empty or negative shape");
  if (s.num_heads % s.num_kv_heads != 0)
    return no("num_heads is not a multiple of num_kv_heads");
  if (s.head_dim % 8 != 0 || s.head_dim > kMaxHeadDim)
    return no("head_dim must be a multiple of 8 and at most " + std::to_string(kMaxHeadDim));
  if (s.q_row() % 8 != 0 || s.k_row() % 8 != 0 || s.v_row() % 8 != 0)
    return no("q/k/v row strides must be multiples of 8 elements (16-byte rows)");
  if (s.q_row() < s.num_heads * s.head_dim || s.k_row() < s.num_kv_heads * s.head_dim ||
      s.v_row() < s.num_kv_heads * s.head_dim)
    return no("a row stride is smaller than the row");
  if (doc_ids)
    return no("packed documents (doc_ids) are not expressible without a host sync per call "
              "(cuDNN needs per-document ragged offsets and lengths on the host when the plan "
              "is built, and its ragged stats layout is not our [B, H, T] lse)");
  const long long t64 = (s.T + 63ll) / 64 * 64;
  const long long dp_bytes = (long long)s.B * s.num_heads * t64 * t64 * 2;
  if (dp_bytes > kMaxDpWorkspaceBytes)
    return no("the deterministic backward's dP workspace (" + std::to_string(dp_bytes >> 20) +
              " MiB) exceeds the 1 GiB limit");
  return true;
}

void cudnn_check(cudnnStatus_t status, const std::string& what) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw Error(what + ": " + cudnnGetErrorString(status));
}

// One backend descriptor, destroyed with its owner.
struct Descriptor {
  cudnnBackendDescriptor_t d = nullptr;
  Descriptor() = default;
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
};

// The tensor UIDs of the variant pack.
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kScale, kNegInf, kDO, kDQ, kDK, kDV, kDelta, kOne,
  kFirstVirtual = 100
};

struct Tensor {
  cudnnBackendDescriptor_t desc = nullptr;
  int64_t dims[4] = {};
  int64_t strides[4] = {};
};

// Builds one operation graph and its execution plan; every descriptor stays
// alive in `keep` for as long as the plan does.
class GraphBuilder {
 public:
  GraphBuilder(cudnnHandle_t handle, std::string where) : handle_(handle), where_(std::move(where)) {}

  cudnnBackendDescriptor_t make(cudnnBackendDescriptorType_t type, const char* what) {
    keep_.emplace_back(new Descriptor);
    cudnn_check(cudnnBackendCreateDescriptor(type, &keep_.back()->d),
                where_ + ": cudnnBackendCreateDescriptor(" + what + ")");
    return keep_.back()->d;
  }
  void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
           cudnnBackendAttributeType_t type, int64_t count, const void* value, const char* what) {
    cudnn_check(cudnnBackendSetAttribute(d, name, type, count, value),
                where_ + ": cudnnBackendSetAttribute(" + what + ")");
  }
  void finalize(cudnnBackendDescriptor_t d, const char* what) {
    cudnn_check(cudnnBackendFinalize(d), where_ + ": cudnnBackendFinalize(" + what + ")");
  }

  Tensor tensor(int64_t uid, cudnnDataType_t type, const int64_t (&dims)[4],
                const int64_t (&strides)[4], bool is_virtual = false, bool by_value = false) {
    Tensor t;
    for (int i = 0; i < 4; ++i) {
      t.dims[i] = dims[i];
      t.strides[i] = strides[i];
    }
    t.desc = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor");
    const int64_t alignment = 16;
    set(t.desc, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor type");
    set(t.desc, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, t.dims, "tensor dims");
    set(t.desc, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, t.strides, "tensor strides");
    set(t.desc, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    set(t.desc, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment,
        "tensor alignment");
    if (is_virtual) {
      const bool yes = true;
      set(t.desc, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes, "tensor virtual");
    }
    if (by_value) {
      const bool yes = true;
      set(t.desc, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes, "tensor by value");
    }
    finalize(t.desc, "tensor");
    return t;
  }
  // A virtual (never in memory) intermediate.
  Tensor virt(cudnnDataType_t type, const int64_t (&dims)[4], const int64_t (&strides)[4]) {
    return tensor(next_virtual_++, type, dims, strides, true);
  }
  Tensor like(const Tensor& t, cudnnDataType_t type) {
    return virt(type, {t.dims[0], t.dims[1], t.dims[2], t.dims[3]},
                {t.strides[0], t.strides[1], t.strides[2], t.strides[3]});
  }
  Tensor scalar(int64_t uid) { return tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }

  void matmul(const Tensor& a, const Tensor& b, const Tensor& c) {
    cudnnBackendDescriptor_t mm = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul");
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "matmul comp type");
    finalize(mm, "matmul");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul op");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a.desc, "matmul A");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b.desc, "matmul B");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c.desc, "matmul C");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm, "matmul desc");
    finalize(op, "matmul op");
    ops_.push_back(op);
  }

  // y = mode(x[, b[, t]]); axis >= 0 only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, const Tensor& x, const Tensor* b, const Tensor* t,
                 const Tensor& y, cudnnDataType_t prec = CUDNN_DATA_FLOAT, int64_t axis = -1) {
    cudnnBackendDescriptor_t pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise");
    set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pointwise precision");
    if (axis >= 0) set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
    finalize(pw, "pointwise");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise op");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw,
        "pointwise desc");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc,
        "pointwise X");
    if (b)
      set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->desc,
          "pointwise B");
    if (t)
      set(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t->desc,
          "pointwise T");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc,
        "pointwise Y");
    finalize(op, "pointwise op");
    ops_.push_back(op);
  }
  void unary(cudnnPointwiseMode_t mode, const Tensor& x, const Tensor& y) {
    pointwise(mode, x, nullptr, nullptr, y);
  }
  void binary(cudnnPointwiseMode_t mode, const Tensor& x, const Tensor& b, const Tensor& y) {
    pointwise(mode, x, &b, nullptr, y);
  }

  void reduction(cudnnReduceTensorOp_t mode, const Tensor& x, const Tensor& y) {
    cudnnBackendDescriptor_t red = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction");
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    set(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode,
        "reduction operator");
    set(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "reduction comp type");
    finalize(red, "reduction");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction op");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc,
        "reduction X");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc,
        "reduction Y");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &red,
        "reduction desc");
    finalize(op, "reduction op");
    ops_.push_back(op);
  }

  void reshape(const Tensor& x, const Tensor& y) {
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape op");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc,
        "reshape X");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc,
        "reshape Y");
    finalize(op, "reshape op");
    ops_.push_back(op);
  }

  // The causal mask on scores s: s where row >= col, else -inf.
  Tensor causal_mask(const Tensor& s, const Tensor& neg_inf) {
    const Tensor row = like(s, CUDNN_DATA_INT32);
    const Tensor col = like(s, CUDNN_DATA_INT32);
    const Tensor keep = like(s, CUDNN_DATA_BOOLEAN);
    const Tensor out = like(s, CUDNN_DATA_FLOAT);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, row, CUDNN_DATA_FLOAT, 2);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, col, CUDNN_DATA_FLOAT, 3);
    pointwise(CUDNN_POINTWISE_CMP_GE, row, &col, nullptr, keep, CUDNN_DATA_BOOLEAN);
    pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, &neg_inf, &keep, out);
    return out;
  }

  // Finalizes the operation graph and the first engine config (heuristics
  // mode A, then FALLBACK) that makes an execution plan; with
  // `deterministic`, engines noted NONDETERMINISTIC are skipped.
  cudnnBackendDescriptor_t build_plan(bool deterministic) {
    cudnnBackendDescriptor_t graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
    if (handle_) set(graph, kAttrOperationGraphHandle, CUDNN_TYPE_HANDLE, 1, &handle_, "graph handle");
    set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops_.size()),
        ops_.data(), "graph ops");
    finalize(graph, "operation graph");

    std::string tried;
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      cudnnBackendDescriptor_t heur = make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
      set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
          "heuristics graph");
      set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
      const cudnnStatus_t hs = cudnnBackendFinalize(heur);
      if (hs != CUDNN_STATUS_SUCCESS) {
        tried += std::string(" heuristics: ") + cudnnGetErrorString(hs) + ";";
        continue;
      }
      int64_t count = 0;
      cudnn_check(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                           CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
                  where_ + ": heuristics result count");
      if (count <= 0) {
        tried += " no engine from heuristics;";
        continue;
      }
      std::vector<cudnnBackendDescriptor_t> cfgs(static_cast<size_t>(count));
      for (auto& c : cfgs) c = make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
      int64_t got = 0;
      cudnn_check(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                           CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs.data()),
                  where_ + ": heuristics results");
      if (got <= 0) tried += " heuristics returned no engine config;";
      for (int64_t i = 0; i < got; ++i) {
        if (deterministic && !engine_deterministic(cfgs[size_t(i)])) {
          tried += " engine " + std::to_string(i) + ": nondeterministic;";
          continue;
        }
        cudnnBackendDescriptor_t plan = make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "plan");
        set(plan, kAttrExecutionPlanHandle, CUDNN_TYPE_HANDLE, 1, &handle_, "plan handle");
        set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
            &cfgs[size_t(i)], "plan engine config");
        const cudnnStatus_t ps = cudnnBackendFinalize(plan);
        if (ps == CUDNN_STATUS_SUCCESS) return plan;
        if (tried.size() < 400)
          tried += " engine " + std::to_string(i) + ": " + cudnnGetErrorString(ps) + ";";
      }
    }
    throw Error(where_ + ": no cuDNN engine runs this graph (" +
                (deterministic ? "deterministic required;" : "") + tried + ")");
  }

  std::vector<std::unique_ptr<Descriptor>> take() { return std::move(keep_); }

 private:
  bool engine_deterministic(cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t engine = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine");
    int64_t n = 0;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &n, &engine) != CUDNN_STATUS_SUCCESS)
      return true;  // no notes to read: let the plan decide
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    int64_t count = 0;
    if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                 CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                 &count, notes) != CUDNN_STATUS_SUCCESS)
      return true;
    for (int64_t i = 0; i < count && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; ++i)
      if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return false;
    return true;
  }

  cudnnHandle_t handle_;
  std::string where_;
  std::vector<std::unique_ptr<Descriptor>> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kFirstVirtual;
};

struct PlanKey {
  int B, T, H, KVH, D, q_row, k_row, v_row;
  bool causal, backward;
  bool operator<(const PlanKey& o) const {
    const int a[] = {B, T, H, KVH, D, q_row, k_row, v_row, causal, backward};
    const int b[] = {o.B, o.T, o.H, o.KVH, o.D, o.q_row, o.k_row, o.v_row, o.causal, o.backward};
    for (int i = 0; i < 10; ++i)
      if (a[i] != b[i]) return a[i] < b[i];
    return false;
  }
};

struct Plan {
  std::vector<std::unique_ptr<Descriptor>> descriptors;  // the plan references them
  cudnnBackendDescriptor_t plan = nullptr;                // owned by `descriptors`
  void* memory = nullptr;         // one allocation: workspace | Delta | scratch grads
  size_t workspace_bytes = 0;     // cuDNN's workspace at `memory`
  size_t delta_offset = 0;        // backward: Delta fp32 [B, H, T]
  size_t stats_offset = 0;        // backward: an aligned copy of a misaligned lse
  size_t scratch_offset = 0;      // stand-in for a null dq / dk / dv (backward), lse (forward)
  ~Plan() {
    if (memory) cudaFree(memory);
  }
};

struct CudnnState {
  int device = -1;
  cudnnHandle_t handle = nullptr;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  ~CudnnState() {
    plans.clear();
    if (handle) cudnnDestroy(handle);
  }
};

std::mutex g_states_mutex;
std::map<const CudaContext*, std::unique_ptr<CudnnState>>& states() {
  static auto* m = new std::map<const CudaContext*, std::unique_ptr<CudnnState>>;  // never destroyed:
  return *m;  // no cuDNN calls during static destruction, after the driver may be gone
}

// The state of this context, created (with its handle) on first use. A state
// left by a destroyed context whose address was reused is still valid when
// the device matches (it holds no pointer into the context), else rebuilt.
CudnnState& state_for(CudaContext& ctx, const std::string& where) {
  std::lock_guard<std::mutex> lock(g_states_mutex);
  std::unique_ptr<CudnnState>& s = states()[&ctx];
  if (s && s->device != ctx.device) s.reset();
  if (!s) {
    cuda_check(cudaSetDevice(ctx.device), where + ": cudaSetDevice");
    std::unique_ptr<CudnnState> fresh(new CudnnState);
    fresh->device = ctx.device;
    cudnn_check(cudnnCreate(&fresh->handle), where + ": cudnnCreate");
    s = std::move(fresh);
  }
  cudnn_check(cudnnSetStream(s->handle, ctx.stream), where + ": cudnnSetStream");
  return *s;
}

// The 4-d views of our buffers ([B, heads, T, D] unless said).
struct Views {
  int64_t B, T, H, KVH, D, qr, kr, vr;
  explicit Views(const AttentionShape& s)
      : B(s.B), T(s.T), H(s.num_heads), KVH(s.num_kv_heads), D(s.head_dim), qr(s.q_row()),
        kr(s.k_row()), vr(s.v_row()) {}
  Tensor q(GraphBuilder& g, int64_t uid) const {
    return g.tensor(uid, CUDNN_DATA_BFLOAT16, {B, H, T, D}, {T * qr, D, qr, 1});
  }
  Tensor k_t(GraphBuilder& g) const {  // K^T: [B, KVH, D, T]
    return g.tensor(kK, CUDNN_DATA_BFLOAT16, {B, KVH, D, T}, {T * kr, D, 1, kr});
  }
  Tensor kv(GraphBuilder& g, int64_t uid, int64_t row) const {
    return g.tensor(uid, CUDNN_DATA_BFLOAT16, {B, KVH, T, D}, {T * row, D, row, 1});
  }
  Tensor v_t(GraphBuilder& g) const {  // V^T: [B, KVH, D, T]
    return g.tensor(kV, CUDNN_DATA_BFLOAT16, {B, KVH, D, T}, {T * vr, D, 1, vr});
  }
  Tensor dense(GraphBuilder& g, int64_t uid) const {  // out, dout: [N, H*D]
    return g.tensor(uid, CUDNN_DATA_BFLOAT16, {B, H, T, D}, {T * H * D, D, H * D, 1});
  }
  Tensor stats(GraphBuilder& g, int64_t uid) const {  // fp32 [B, H, T, 1]
    return g.tensor(uid, CUDNN_DATA_FLOAT, {B, H, T, 1}, {H * T, T, 1, 1});
  }
  Tensor scores(GraphBuilder& g, cudnnDataType_t type) const {  // virtual [B, H, T, T]
    return g.virt(type, {B, H, T, T}, {H * T * T, T * T, T, 1});
  }
  Tensor scores_t(GraphBuilder& g) const {  // virtual transposed view, bf16
    return g.virt(CUDNN_DATA_BFLOAT16, {B, H, T, T}, {H * T * T, T * T, 1, T});
  }
  Tensor row_stat(GraphBuilder& g) const {  // virtual fp32 [B, H, T, 1]
    return g.virt(CUDNN_DATA_FLOAT, {B, H, T, 1}, {H * T, T, 1, 1});
  }
  Tensor full_heads(GraphBuilder& g, cudnnDataType_t type) const {  // virtual [B, H, T, D]
    return g.virt(type, {B, H, T, D}, {H * T * D, T * D, D, 1});
  }
};

void build_forward(GraphBuilder& g, const Views& v) {
  const Tensor q = v.q(g, kQ), kt = v.k_t(g), val = v.kv(g, kV, v.vr);
  const Tensor o = v.dense(g, kO), stats = v.stats(g, kStats);
  const Tensor scale = g.scalar(kScale), neg_inf = g.scalar(kNegInf);

  const Tensor s = v.scores(g, CUDNN_DATA_FLOAT);
  g.matmul(q, kt, s);
  const Tensor s_scaled = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_MUL, s, scale, s_scaled);
  const Tensor s_masked = g.causal_mask(s_scaled, neg_inf);
  // softmax with its stats, as cuDNN's flash pattern expects it
  const Tensor m = v.row_stat(g);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s_masked, m);
  const Tensor centred = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_SUB, s_masked, m, centred);
  const Tensor e = v.scores(g, CUDNN_DATA_FLOAT);
  g.unary(CUDNN_POINTWISE_EXP, centred, e);
  const Tensor l = v.row_stat(g);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, l);
  const Tensor log_l = v.row_stat(g);
  g.unary(CUDNN_POINTWISE_LOG, l, log_l);
  g.binary(CUDNN_POINTWISE_ADD, m, log_l, stats);
  const Tensor p = v.scores(g, CUDNN_DATA_BFLOAT16);
  g.binary(CUDNN_POINTWISE_DIV, e, l, p);
  g.matmul(p, val, o);
}

void build_backward(GraphBuilder& g, const Views& v) {
  const Tensor q = v.q(g, kQ), kt = v.k_t(g), vt = v.v_t(g);
  const Tensor o = v.dense(g, kO), dout = v.dense(g, kDO), stats = v.stats(g, kStats);
  const Tensor dq = v.q(g, kDQ), dk = v.kv(g, kDK, v.kr), dv = v.kv(g, kDV, v.vr);
  const Tensor delta = v.stats(g, kDelta);
  const Tensor scale = g.scalar(kScale), neg_inf = g.scalar(kNegInf), one = g.scalar(kOne);
  const bool gqa = v.H != v.KVH;

  // Delta = rowsum(dO * O)
  const Tensor doo = v.full_heads(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_MUL, dout, o, doo);
  const Tensor doo_sum = v.row_stat(g);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, doo, doo_sum);
  g.binary(CUDNN_POINTWISE_MUL, doo_sum, one, delta);

  // P = exp(scale * Q K^T - stats), causal
  const Tensor s = v.scores(g, CUDNN_DATA_FLOAT);
  g.matmul(q, kt, s);
  const Tensor s_scaled = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_MUL, s, scale, s_scaled);
  const Tensor s_centred = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_SUB, s_scaled, stats, s_centred);
  const Tensor s_masked = g.causal_mask(s_centred, neg_inf);
  const Tensor p = v.scores(g, CUDNN_DATA_FLOAT);
  g.unary(CUDNN_POINTWISE_EXP, s_masked, p);

  // dV = P^T dO (summed over the head group)
  const Tensor p_t = v.scores_t(g);
  g.reshape(p, p_t);
  if (!gqa) {
    g.matmul(p_t, dout, dv);
  } else {
    const Tensor dv_full = v.full_heads(g, CUDNN_DATA_BFLOAT16);
    g.matmul(p_t, dout, dv_full);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);
  }

  // dS = P * (dO V^T - Delta) * scale
  const Tensor dp = v.scores(g, CUDNN_DATA_FLOAT);
  g.matmul(dout, vt, dp);
  const Tensor dp_centred = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_SUB, dp, delta, dp_centred);
  const Tensor ds_unscaled = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_MUL, dp_centred, p, ds_unscaled);
  const Tensor ds = v.scores(g, CUDNN_DATA_FLOAT);
  g.binary(CUDNN_POINTWISE_MUL, ds_unscaled, scale, ds);

  // dK = dS^T Q (summed over the head group)
  const Tensor ds_t = v.scores_t(g);
  g.reshape(ds, ds_t);
  if (!gqa) {
    g.matmul(ds_t, q, dk);
  } else {
    const Tensor dk_full = v.full_heads(g, CUDNN_DATA_BFLOAT16);
    g.matmul(ds_t, q, dk_full);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);
  }

  // dQ = dS K, written directly (no fp32 accumulator: the deterministic form)
  // (fp32 view, as the reference frontend types this reshape's output)
  const Tensor k = g.virt(CUDNN_DATA_FLOAT, {v.B, v.KVH, v.T, v.D}, {v.T * v.kr, v.D, v.kr, 1});
  g.reshape(kt, k);
  g.matmul(ds, k, dq);
}

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

Plan& plan_for(CudaContext& ctx, CudnnState& st, const AttentionShape& shape, bool backward,
               const std::string& where) {
  const PlanKey key{shape.B,       shape.T,       shape.num_heads, shape.num_kv_heads,
                    shape.head_dim, shape.q_row(), shape.k_row(),   shape.v_row(),
                    true,           backward};
  auto it = st.plans.find(key);
  if (it != st.plans.end()) return *it->second;

  GraphBuilder g(st.handle, where);
  const Views views(shape);
  if (backward)
    build_backward(g, views);
  else
    build_forward(g, views);
  std::unique_ptr<Plan> plan(new Plan);
  plan->plan = g.build_plan(/*deterministic=*/backward);
  plan->descriptors = g.take();

  int64_t ws = 0, n = 0;
  cudnn_check(cudnnBackendGetAttribute(plan->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &n, &ws),
              where + ": plan workspace size");
  plan->workspace_bytes = size_t(ws);
  size_t total = align_up(plan->workspace_bytes, 256);
  if (backward) {
    plan->delta_offset = total;
    total += align_up(size_t(shape.B) * shape.num_heads * shape.T * sizeof(float), 256);
    plan->stats_offset = total;
    total += align_up(size_t(shape.B) * shape.num_heads * shape.T * sizeof(float), 256);
    plan->scratch_offset = total;
    const int widest = std::max(shape.q_row(), std::max(shape.k_row(), shape.v_row()));
    total += align_up(size_t(shape.B) * shape.T * widest * 2, 256);
  } else {
    plan->scratch_offset = total;  // stats when the caller passes no lse
    total += align_up(size_t(shape.B) * shape.num_heads * shape.T * sizeof(float), 256);
  }
  if (total > 0)
    cuda_check(cudaMalloc(&plan->memory, total),
               where + ": cudaMalloc(" + std::to_string(total) + " bytes of cuDNN workspace)");
  ctx.note_memory_use();
  Plan& ref = *plan;
  st.plans.emplace(key, std::move(plan));
  return ref;
}

void check_aligned(const void* p, const char* name, const std::string& where) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    throw Error(where + ": " + name + " is not 16-byte aligned (cuDNN plans assume it)");
}

void execute(CudnnState& st, Plan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& ptrs, const std::string& where) {
  GraphBuilder g(st.handle, where);  // owns the variant pack descriptor
  cudnnBackendDescriptor_t pack = g.make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  void* workspace = plan.memory;
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()),
        uids.data(), "variant pack uids");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(ptrs.size()),
        ptrs.data(), "variant pack pointers");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace,
        "variant pack workspace");
  g.finalize(pack, "variant pack");
  cudnn_check(cudnnBackendExecute(st.handle, plan.plan, pack), where + ": cudnnBackendExecute");
  check_launch("cudnn_attention", where);
}

std::string where_of(const char* op, const AttentionShape& shape) {
  return std::string(op) + " (" + cudnn_shape_str(shape) + ")";
}

}  // namespace

bool cudnn_attention_supported(const AttentionShape& shape, const int32_t* doc_ids,
                               std::string* why) {
  return shape_reason(shape, doc_ids, why);
}

void cudnn_attention_forward(CudaContext& ctx, Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                             const int32_t* doc_ids, const AttentionShape& shape) {
  const char* op = "cudnn_attention_forward";
  const std::string where = where_of(op, shape);
  std::string why;
  if (!shape_reason(shape, doc_ids, &why)) throw Error(where + ": unsupported: " + why);
  void* pq = const_cast<bf16*>(bf16_ptr(q, op));
  void* pk = const_cast<bf16*>(bf16_ptr(k, op));
  void* pv = const_cast<bf16*>(bf16_ptr(v, op));
  void* po = bf16_ptr(out, op);
  check_aligned(pq, "q", where);
  check_aligned(pk, "k", where);
  check_aligned(pv, "v", where);
  check_aligned(po, "out", where);

  CudnnState& st = state_for(ctx, where);
  Plan& plan = plan_for(ctx, st, shape, /*backward=*/false, where);
  // cuDNN always writes the stats (16-byte aligned): into the plan's scratch
  // when not wanted, or via the scratch when lse is not aligned (an lse
  // slice of a larger buffer).
  void* stats_scratch = static_cast<char*>(plan.memory) + plan.scratch_offset;
  const bool lse_direct = lse && reinterpret_cast<uintptr_t>(lse) % 16 == 0;
  void* plse = lse_direct ? static_cast<void*>(lse) : stats_scratch;
  float scale = 1.f / std::sqrt(float(shape.head_dim));
  float neg_inf = -INFINITY;
  execute(st, plan, {kQ, kK, kV, kO, kStats, kScale, kNegInf},
          {pq, pk, pv, po, plse, &scale, &neg_inf}, where);
  if (lse && !lse_direct)
    cuda_check(cudaMemcpyAsync(lse, stats_scratch,
                               size_t(shape.B) * shape.num_heads * shape.T * sizeof(float),
                               cudaMemcpyDeviceToDevice, ctx.stream),
               where + ": cudaMemcpyAsync(lse)");
}

void cudnn_attention_backward(CudaContext& ctx, Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q,
                              CBuf k, CBuf v, CBuf out, const float* lse,
                              const int32_t* doc_ids, const AttentionShape& shape) {
  const char* op = "cudnn_attention_backward";
  const std::string where = where_of(op, shape);
  std::string why;
  if (!shape_reason(shape, doc_ids, &why)) throw Error(where + ": unsupported: " + why);
  if (!dq && !dk && !dv) return;  // nothing asked for
  if (!lse) throw Error(where + ": lse is required");
  void* pq = const_cast<bf16*>(bf16_ptr(q, op));
  void* pk = const_cast<bf16*>(bf16_ptr(k, op));
  void* pv = const_cast<bf16*>(bf16_ptr(v, op));
  void* po = const_cast<bf16*>(bf16_ptr(out, op));
  void* pdo = const_cast<bf16*>(bf16_ptr(dout, op));
  CudnnState& st = state_for(ctx, where);
  Plan& plan = plan_for(ctx, st, shape, /*backward=*/true, where);
  // A gradient nobody wants goes to the plan's scratch (same row stride).
  void* scratch = static_cast<char*>(plan.memory) + plan.scratch_offset;
  void* pdq = dq ? static_cast<void*>(bf16_ptr(dq, op)) : scratch;
  void* pdk = dk ? static_cast<void*>(bf16_ptr(dk, op)) : scratch;
  void* pdv = dv ? static_cast<void*>(bf16_ptr(dv, op)) : scratch;
  const void* all[] = {pq, pk, pv, po, pdo, pdq, pdk, pdv};
  const char* names[] = {"q", "k", "v", "out", "dout", "dq", "dk", "dv"};
  for (int i = 0; i < 8; ++i) check_aligned(all[i], names[i], where);
  // The stats must be 16-byte aligned: copy a misaligned lse (a slice of a
  // larger buffer) to the plan's aligned copy first.
  void* plse = const_cast<float*>(lse);
  if (reinterpret_cast<uintptr_t>(lse) % 16 != 0) {
    plse = static_cast<char*>(plan.memory) + plan.stats_offset;
    cuda_check(cudaMemcpyAsync(plse, lse,
                               size_t(shape.B) * shape.num_heads * shape.T * sizeof(float),
                               cudaMemcpyDeviceToDevice, ctx.stream),
               where + ": cudaMemcpyAsync(lse)");
  }
  void* delta = static_cast<char*>(plan.memory) + plan.delta_offset;

  float scale = 1.f / std::sqrt(float(shape.head_dim));
  float neg_inf = -INFINITY;
  float one = 1.f;
  execute(st, plan, {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kDelta, kScale, kNegInf, kOne},
          {pq, pk, pv, po, pdo, plse, pdq, pdk, pdv, delta, &scale, &neg_inf,
           &one},
          where);
}

void cudnn_attention_release(CudaContext& ctx) {
  std::lock_guard<std::mutex> lock(g_states_mutex);
  auto it = states().find(&ctx);
  if (it == states().end()) return;
  // Plans may be in flight on the stream: wait before freeing their memory.
  cudaStreamSynchronize(ctx.stream);
  states().erase(it);
}

#endif  // POLARIS_HAVE_CUDNN

}  // namespace polaris
