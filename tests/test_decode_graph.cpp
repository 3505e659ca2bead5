// Decode steps padded to a bucket and replayed from recordings
// (model/decode_graphs.h; CUDA graphs, cuda/graph.cu):
//   - the buckets, the --cuda-graphs values, scatter_rows skipping row -1;
//   - DecodeRecordings' bookkeeping on a fake recording backend: the first
//     step of a key runs op by op and is recorded, later ones replay; a new
//     layout forgets everything; a stale recording (replay refused) is
//     recorded again; an error while recording cancels it;
//   - CPU (fp32 and bf16 storage): a padded decode step gives the real rows
//     the exact step's logits bitwise, and leaves the cache pools bitwise the
//     same, over many steps whose batch crosses buckets, whose tables widen,
//     with forks (shared prefixes) and pool growth; whole generations
//     (groups sharing prompts, preemption, several block sizes, GPT-2 and
//     Qwen3) give the same tokens and log-probs bitwise;
//   - the recorded path itself on the CPU, through a backend that records as
//     a CUDA graph does (calls stored with their pointers, not run; replayed
//     later on the memory as it is then; released memory poisoned): equal to
//     the exact steps bitwise across pool growth, preemption and stale
//     recordings, so the uploads-before-replay and the invalidation are
//     proven without a GPU;
//   - GPU (skipped without one): replayed steps equal the padded steps op by
//     op bitwise across buckets, widths and a pool growth (and recordings were
//     made and replayed); generation with graphs gives the tokens and
//     log-probs of the padded run op by op, bitwise, and nearly always those
//     of the exact run (other GEMM shapes round differently); a recording
//     refuses host waits and allocations by name, replays read memory as it
//     is at replay time, and a recording made before the scratch moved is
//     refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "model/decode_graphs.h"
#include "model/kv_cache.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/error.h"
#include "tests/bf16_cpu_ops.h"
#include "tests/ops_compare.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The model's weights from `seed` (random_params), decoding in `mode`.
void prepare(Transformer& model, uint64_t seed, DecodeMode mode) {
  model.set_params(random_params(model, seed));
  model.set_decode_mode(mode);
}

TEST(DecodeGraph, BucketsWidthsAndFlag) {
  const std::vector<std::pair<int, int>> buckets = {{1, 1},     {2, 2},     {3, 4},   {5, 8},
                                                    {9, 16},    {17, 32},   {33, 64}, {65, 128},
                                                    {129, 256}, {256, 256}, {257, 512},
                                                    {600, 768}};
  for (const auto& b : buckets) EXPECT_EQ(decode_batch_bucket(b.first), b.second) << b.first;
  EXPECT_THROW(decode_batch_bucket(0), Error);
  for (const auto& w : std::vector<std::pair<int, int>>{{0, 1}, {1, 1}, {2, 2}, {3, 4}, {9, 16}})
    EXPECT_EQ(decode_width_bucket(w.first), w.second) << w.first;
  EXPECT_EQ(parse_cuda_graphs("on"), DecodeMode::recorded);
  EXPECT_EQ(parse_cuda_graphs("off"), DecodeMode::exact);
  EXPECT_NE(error_of([] { parse_cuda_graphs("yes"); }).find("--cuda-graphs"), std::string::npos);
  CpuOps cpu;
  EXPECT_FALSE(cpu.can_record());
  EXPECT_THROW(cpu.record_begin(), Error);
}

// Padded rows carry row index -1: scatter_rows leaves the table alone for
// them, on both backends (the control: row 0 is written).
void check_scatter_skips(Ops& ops) {
  const int width = 8, n = 3;
  const std::vector<float> rows = test::random_vector(size_t(n) * width, 3);
  std::vector<float> before = test::random_vector(size_t(4) * width, 4);
  Buf table = ops.alloc_activations(size_t(4) * width);
  Buf src = ops.alloc_activations(rows.size());
  int32_t* index = ops.alloc_int(n);
  ops.upload(table, before.data(), before.size());
  ops.upload(src, rows.data(), rows.size());
  const std::vector<int32_t> skip = {-1, 2, -1};
  ops.upload_int(index, skip.data(), n);
  ops.scatter_rows(table, src, width, index, n, width);
  std::vector<float> after(before.size());
  ops.download(after.data(), table, after.size());
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < width; ++c) {
      const float want = r == 2 ? rows[size_t(width) + c] : before[size_t(r) * width + c];
      EXPECT_EQ(after[size_t(r) * width + c], want) << ops.name() << " row " << r;
    }
  const std::vector<int32_t> write = {0, 2, -1};  // negative control: row 0 changes
  ops.upload_int(index, write.data(), n);
  ops.scatter_rows(table, src, width, index, n, width);
  ops.download(after.data(), table, after.size());
  EXPECT_EQ(after[0], rows[0]);
  EXPECT_NE(after[0], before[0]);
  ops.release(table.ptr);
  ops.release(src.ptr);
  ops.release(index);
}

TEST(DecodeGraph, ScatterRowsSkipsNegativeRows) {
  CpuOps cpu;
  check_scatter_skips(cpu);
}

TEST(DecodeGraph, GpuScatterRowsSkipsNegativeRows) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  check_scatter_skips(*gpu);
}

// ---------------------------------------------------------------------------
// DecodeRecordings on a fake backend: "recording" only notes that a step ran
// inside record_begin/record_end; replay runs nothing and succeeds unless
// told the recording is stale.
class FakeRecorder : public CpuOps {
 public:
  bool recording = false, stale = false;
  int begun = 0, ended = 0, cancelled = 0, replays = 0, forgotten = 0;
  bool can_record() const override { return true; }
  void record_begin() override {
    recording = true;
    begun += 1;
  }
  Recording record_end() override {
    recording = false;
    ended += 1;
    return ended;
  }
  void record_cancel() override {
    recording = false;
    cancelled += 1;
  }
  bool replay(Recording) override {
    if (stale) return false;
    replays += 1;
    return true;
  }
  void forget(Recording) override { forgotten += 1; }
};

TEST(DecodeGraph, RecordingsKeyedAndForgotten) {
  FakeRecorder ops;
  int direct = 0, captured = 0;
  auto step = [&] { (ops.recording ? captured : direct) += 1; };
  {
    DecodeRecordings rec(ops);
    rec.use_layout({1, 1});
    rec.run(4, 2, step);  // new key: once op by op, then recorded
    EXPECT_EQ(direct, 1);
    EXPECT_EQ(captured, 1);
    rec.run(4, 2, step);  // replayed: the step's ops are not issued again
    rec.run(4, 2, step);
    EXPECT_EQ(direct, 1);
    EXPECT_EQ(ops.replays, 2);
    rec.run(8, 2, step);  // another bucket, another recording
    rec.run(4, 4, step);  // another width too
    EXPECT_EQ(rec.held(), 3u);
    EXPECT_EQ(rec.recorded(), 3u);
    EXPECT_EQ(rec.replayed(), 2u);
    rec.use_layout({1, 1});  // the same layout keeps them
    EXPECT_EQ(rec.held(), 3u);
    rec.use_layout({2, 1});  // the pools moved: all forgotten
    EXPECT_EQ(rec.held(), 0u);
    EXPECT_EQ(ops.forgotten, 3);
    rec.run(4, 2, step);
    EXPECT_EQ(direct, 4);
    ops.stale = true;  // the backend refuses the replay: forgotten, run, recorded again
    rec.run(4, 2, step);
    EXPECT_EQ(ops.forgotten, 4);
    EXPECT_EQ(direct, 5);
    EXPECT_EQ(rec.recorded(), 5u);
    ops.stale = false;
    // An op that throws while recording: the capture is cancelled, the error passes.
    auto failing = [&] {
      if (ops.recording) throw Error("download: not allowed while recording");
    };
    EXPECT_THROW(rec.run(16, 2, failing), Error);
    EXPECT_EQ(ops.cancelled, 1);
    EXPECT_FALSE(ops.recording);
    EXPECT_EQ(rec.held(), 1u);
  }
  EXPECT_EQ(ops.forgotten, 5);  // the destructor forgets what was held
}

// ---------------------------------------------------------------------------
// Decode steps driven by hand: exact on one cache, padded (or recorded) on
// another, step by step.

struct Stepper {
  Transformer& model;
  std::unique_ptr<KVCache> cache;
  std::vector<BlockTable> tables;
  std::vector<int32_t> last;  // each sequence's last token

  Stepper(Transformer& m, int block_size) : model(m) {
    cache = model.make_kv_cache(block_size, /*initial_blocks=*/2, /*max_blocks=*/400);
  }

  // Prefills `prompts` (one packed forward), returns their last logits.
  std::vector<float> prefill(const std::vector<std::vector<int32_t>>& prompts) {
    std::vector<int32_t> tokens, positions, docs, rows, logit_rows;
    for (size_t d = 0; d < prompts.size(); ++d) {
      tables.emplace_back();
      for (size_t i = 0; i < prompts[d].size(); ++i) {
        tokens.push_back(prompts[d][i]);
        positions.push_back(int32_t(i));
        docs.push_back(int32_t(d));
        rows.push_back(cache->append(tables.back()));
      }
      logit_rows.push_back(int32_t(tokens.size()) - 1);
      last.push_back(prompts[d].back());
    }
    return model.prefill(*cache, tokens, positions, docs, rows, logit_rows);
  }

  // A new sequence sharing sequence k's blocks (a group member).
  void fork(size_t k) {
    tables.push_back(cache->fork(tables[k]));
    last.push_back(last[k]);
  }

  // One decode step of the sequences `ids`, feeding token `feed(id)`.
  std::vector<float> decode(const std::vector<int>& ids, int step) {
    std::vector<int32_t> tokens, positions, rows;
    std::vector<const BlockTable*> ts;
    for (int id : ids) {
      BlockTable& t = tables[size_t(id)];
      rows.push_back(cache->append(t));
      EXPECT_GE(rows.back(), 0);
      tokens.push_back((last[size_t(id)] * 7 + step * 3 + id) % model.config().vocab_size);
      positions.push_back(t.length - 1);
      ts.push_back(&t);
    }
    for (size_t i = 0; i < ids.size(); ++i) last[size_t(ids[i])] = tokens[i];
    return model.decode(*cache, tokens, positions, rows, ts);
  }

  std::vector<float> pools() const {
    std::vector<float> all;
    const size_t n = size_t(cache->capacity()) * cache->block_size() * model.config().kv_dim();
    for (int l = 0; l < model.config().num_layers; ++l)
      for (const Buf& b : {cache->keys(l), cache->values(l)}) {
        std::vector<float> host(n);
        model.ops().download(host.data(), b, n);
        all.insert(all.end(), host.begin(), host.end());
      }
    return all;
  }
};

std::vector<std::vector<int32_t>> step_prompts(int vocab) {
  std::vector<std::vector<int32_t>> ps;
  for (int i = 0; i < 7; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 1 + (i * 5) % 11; ++t) p.push_back((i * 13 + t * 5 + 1) % vocab);
    ps.push_back(p);
  }
  return ps;
}

// Which sequences decode at step t: a batch that shrinks and grows across
// buckets (1, 2, 4, 8, 16), with forks joining after step 4.
std::vector<int> active_at(int t, int sequences) {
  std::vector<int> ids;
  for (int id = 0; id < sequences; ++id)
    if (t % 5 == 3 ? id == t % sequences : (id + t) % (2 + t % 3) != 0) ids.push_back(id);
  return ids;
}

// Runs the same steps on `a` (model a) and `b` (model b), expecting every
// step's logits and the final pools bitwise equal.
void expect_steps_equal(Transformer& ma, Transformer& mb, int block_size, int steps,
                        const char* what) {
  Stepper a(ma, block_size), b(mb, block_size);
  const auto ps = step_prompts(ma.config().vocab_size);
  ASSERT_TRUE(same_bits(a.prefill(ps), b.prefill(ps))) << what;
  const uint64_t first_pools = a.cache->pools_id();
  for (int t = 0; t < steps; ++t) {
    if (t == 4)  // group members join: shared prefixes, copy-on-write later
      for (size_t k : {size_t(1), size_t(3), size_t(3), size_t(6)}) {
        a.fork(k);
        b.fork(k);
      }
    const std::vector<int> ids = active_at(t, int(a.tables.size()));
    const std::vector<float> la = a.decode(ids, t), lb = b.decode(ids, t);
    ASSERT_EQ(la.size(), ids.size() * size_t(ma.config().vocab_size));
    EXPECT_TRUE(same_bits(la, lb)) << what << ": step " << t << ", " << ids.size()
                                   << " sequences";
  }
  EXPECT_NE(a.cache->pools_id(), first_pools) << what << ": the pool never grew";
  EXPECT_TRUE(same_bits(a.pools(), b.pools())) << what << ": the caches differ";
}

TEST(DecodeGraph, PaddedStepEqualsExactStepOnCpu) {
  const ModelConfig configs[] = {qwen3_config(97, 64, 2, 4, 2, 16, 96, false),
                                 gpt2_config(89, 48, 2, 4, 64)};
  for (ModelConfig config : configs) {
    config.max_positions = 64;
    CpuOps ops;
    Transformer exact(config, ops), padded(config, ops);
    prepare(exact, 17, DecodeMode::exact);
    prepare(padded, 17, DecodeMode::padded);
    for (int block_size : {1, 4, 5}) expect_steps_equal(exact, padded, block_size, 14, "cpu");
    // Negative control: the comparison sees a different model.
    Transformer other(config, ops);
    other.set_params(random_params(other, 18));
    Stepper a(exact, 4), b(other, 4);
    const auto ps = step_prompts(config.vocab_size);
    a.prefill(ps);
    b.prefill(ps);
    EXPECT_FALSE(same_bits(a.decode({0, 1, 2}, 0), b.decode({0, 1, 2}, 0)));
  }
}

TEST(DecodeGraph, PaddedStepEqualsExactStepWithBf16Storage) {
  ModelConfig config = qwen3_config(97, 64, 2, 4, 2, 16, 96, true);
  config.max_positions = 64;
  test::Bf16CpuOps ops;
  Transformer exact(config, ops), padded(config, ops);
  prepare(exact, 5, DecodeMode::exact);
  prepare(padded, 5, DecodeMode::padded);
  expect_steps_equal(exact, padded, 4, 8, "bf16 storage");
}

// Whole generations: a group's members share its prompt, sequences finish
// and are preempted, so batches change bucket and tables widen.
std::vector<std::vector<int32_t>> gen_prompts() {
  return {{1, 2, 3, 4, 5}, {7, 7, 1, 0, 9, 3, 3, 2}, {4, 12}, {22, 5, 8, 16, 3, 1, 9, 9, 2, 6, 0}};
}

void expect_same_completions(const std::vector<Completion>& got,
                             const std::vector<Completion>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << what << " sequence " << i;
    EXPECT_TRUE(same_bits(got[i].logprobs, want[i].logprobs)) << what << " sequence " << i;
  }
}

struct GenCase {
  int block_size;
  size_t cache_tokens;  // 0: roomy; 1: one sequence (preemption)
  int max_batch;
};

void expect_generations_equal(Transformer& a, Transformer& b, const std::string& what) {
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = 12;
  sp.seed = 4321;
  sp.stop_tokens = {3};  // some finish early: the batch shrinks
  for (const GenCase& g : {GenCase{4, 0, 256}, GenCase{1, 0, 256}, GenCase{3, 1, 256},
                           GenCase{4, 40, 5}}) {
    EngineOptions e;
    e.block_size = g.block_size;
    e.max_cache_tokens = g.cache_tokens;
    SamplingParams p = sp;
    p.max_batch = g.max_batch;
    GenerationStats stats;
    e.stats = &stats;
    const std::vector<Completion> want = generate_groups(a, gen_prompts(), 5, p, 0, e);
    const std::string name = what + " block " + std::to_string(g.block_size) + " cache " +
                             std::to_string(g.cache_tokens) + " batch " +
                             std::to_string(g.max_batch);
    expect_same_completions(generate_groups(b, gen_prompts(), 5, p, 0, e), want, name);
    if (g.cache_tokens == 0) {
      EXPECT_GT(stats.shared_prompts, 0u) << name;
    }
    if (g.cache_tokens == 1) {
      EXPECT_GT(stats.preemptions, 0u) << name;
    }
  }
}

TEST(DecodeGraph, PaddedGenerationEqualsExactOnCpu) {
  const ModelConfig configs[] = {qwen3_config(23, 32, 2, 4, 2, 8, 48, false),
                                 gpt2_config(29, 32, 2, 4, 32)};
  for (const ModelConfig& config : configs) {
    CpuOps ops;
    Transformer exact(config, ops), padded(config, ops);
    prepare(exact, 51, DecodeMode::exact);
    prepare(padded, 51, DecodeMode::padded);
    expect_generations_equal(exact, padded, config.is_qwen3() ? "qwen3" : "gpt2");
    // recorded on a backend that cannot record: the exact path.
    Transformer recorded(config, ops);
    recorded.set_params(random_params(recorded, 51));
    EXPECT_EQ(recorded.decode_mode(), DecodeMode::recorded);  // the default
    expect_generations_equal(exact, recorded, "cpu recorded");
    EXPECT_EQ(recorded.decode_steps_recorded(), 0u);
  }
}

// ---------------------------------------------------------------------------
// The recorded path on the CPU: a backend that records the way a CUDA graph
// does. While recording, each op is stored as a call with its arguments (the
// pointers frozen) and not run; replay runs the stored calls on whatever the
// memory holds then. Ops that wait or move memory refuse while recording, as
// on the GPU. Released memory is poisoned (NaN floats, zero ints) and kept,
// so a recording replayed after what it points at moved gives wrong results
// instead of passing by luck.
class GraphCpuOps : public CpuOps {
 public:
  bool stale = false;  // replay refuses (as after the GPU's scratch moved)
  ~GraphCpuOps() override {
    for (const auto& q : quarantine_) CpuOps::release(q);
  }
  bool can_record() const override { return true; }
  void record_begin() override {
    refuse("record_begin");
    recording_ = true;
    calls_.clear();
  }
  Recording record_end() override {
    recording_ = false;
    recordings_.push_back(std::move(calls_));
    calls_.clear();
    return Recording(recordings_.size() - 1);
  }
  void record_cancel() override {
    recording_ = false;
    calls_.clear();
  }
  bool replay(Recording r) override {
    refuse("replay");
    if (stale) return false;
    for (const auto& call : recordings_.at(size_t(r))) call();
    replays += 1;
    return true;
  }
  void forget(Recording r) override { recordings_.at(size_t(r)).clear(); }
  size_t replays = 0;

  // ---- what refuses while recording
  Buf alloc_buf(size_t n, DType dtype) override {
    refuse("alloc_buf");
    Buf b = CpuOps::alloc_buf(n, dtype);
    sizes_[b.ptr] = {std::max<size_t>(n, 1), false};
    return b;
  }
  int32_t* alloc_int(size_t n) override {
    refuse("alloc_int");
    int32_t* p = CpuOps::alloc_int(n);
    sizes_[p] = {std::max<size_t>(n, 1), true};
    return p;
  }
  void release(const void* p) override {
    refuse("release");
    if (!p) return;
    const auto it = sizes_.find(p);
    ASSERT_NE(it, sizes_.end());
    if (it->second.second)
      std::memset(const_cast<void*>(p), 0, it->second.first * sizeof(int32_t));
    else
      std::fill_n(static_cast<float*>(const_cast<void*>(p)), it->second.first, NAN);
    sizes_.erase(it);
    quarantine_.push_back(p);
  }
  void upload(Buf dst, const float* src, size_t n) override {
    refuse("upload");
    CpuOps::upload(dst, src, n);
  }
  void upload_int(int32_t* dst, const int32_t* src, size_t n) override {
    refuse("upload_int");
    CpuOps::upload_int(dst, src, n);
  }
  void download(float* dst, CBuf src, size_t n) override {
    refuse("download");
    CpuOps::download(dst, src, n);
  }
  void synchronize() override { refuse("synchronize"); }
  double sum_squares(const float* x, size_t n) override {
    refuse("sum_squares");
    return CpuOps::sum_squares(x, n);
  }

  // ---- the decode step's ops, recorded (the fused ones default to these)
  void zero(Buf p, size_t n) override {
    run([=] { CpuOps::zero(p, n); });
  }
  void copy(Buf dst, CBuf src, size_t n) override {
    run([=] { CpuOps::copy(dst, src, n); });
  }
  void add(Buf out, CBuf a, CBuf b, size_t n) override {
    run([=] { CpuOps::add(out, a, b, n); });
  }
  void embedding_forward(Buf out, const int32_t* tokens, const int32_t* positions, CBuf table,
                         CBuf position_table, int N, int C) override {
    run([=] { CpuOps::embedding_forward(out, tokens, positions, table, position_table, N, C); });
  }
  void layernorm_forward(Buf out, float* mean, float* rstd, CBuf in, CBuf weight, CBuf bias,
                         int N, int C, float eps) override {
    run([=] { CpuOps::layernorm_forward(out, mean, rstd, in, weight, bias, N, C, eps); });
  }
  void rmsnorm_forward(Buf out, float* rstd, CBuf in, CBuf weight, int N, int C,
                       float eps) override {
    run([=] { CpuOps::rmsnorm_forward(out, rstd, in, weight, N, C, eps); });
  }
  void matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                      int OC) override {
    run([=] { CpuOps::matmul_forward(out, in, weight, bias, N, IC, OC); });
  }
  void qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q, CBuf k,
                            int in_stride, CBuf q_weight, CBuf k_weight,
                            const int32_t* positions, int N, int heads, int kv_heads,
                            int head_dim, float eps, const RopeParams& rope) override {
    run([=] {
      CpuOps::qk_norm_rope_forward(q_out, k_out, q_rstd, k_rstd, q, k, in_stride, q_weight,
                                   k_weight, positions, N, heads, kv_heads, head_dim, eps, rope);
    });
  }
  void scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index, int n,
                    int width) override {
    run([=] { CpuOps::scatter_rows(table, rows, rows_stride, row_index, n, width); });
  }
  void attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S,
                        int num_heads, int num_kv_heads, int head_dim) override {
    const PagedKV frozen = cache;
    run([=] {
      CpuOps::attention_decode(out, q, q_stride, frozen, S, num_heads, num_kv_heads, head_dim);
    });
  }
  void gelu_forward(Buf out, CBuf in, size_t n) override {
    run([=] { CpuOps::gelu_forward(out, in, n); });
  }
  void swiglu_forward(Buf out, CBuf gate_up, int N, int F) override {
    run([=] { CpuOps::swiglu_forward(out, gate_up, N, F); });
  }

 private:
  void refuse(const char* op) const {
    if (recording_) throw Error(std::string(op) + ": not allowed while ops are being recorded");
  }
  void run(std::function<void()> call) {
    if (recording_)
      calls_.push_back(std::move(call));
    else
      call();
  }
  bool recording_ = false;
  std::vector<std::function<void()>> calls_;
  std::vector<std::vector<std::function<void()>>> recordings_;
  std::map<const void*, std::pair<size_t, bool>> sizes_;  // elements, is int
  std::vector<const void*> quarantine_;
};

TEST(DecodeGraph, RecordedStepEqualsExactStepOnARecordingCpuBackend) {
  ModelConfig config = qwen3_config(97, 64, 2, 4, 2, 16, 96, false);
  config.max_positions = 64;
  GraphCpuOps ops;
  Transformer exact(config, ops), recorded(config, ops);
  prepare(exact, 17, DecodeMode::exact);
  recorded.set_params(random_params(recorded, 17));
  for (int block_size : {4, 1}) expect_steps_equal(exact, recorded, block_size, 14, "recorded");
  EXPECT_GE(recorded.decode_steps_recorded(), 6u);
  EXPECT_GE(recorded.decode_steps_replayed(), 6u);
  EXPECT_EQ(ops.replays, recorded.decode_steps_replayed());
  // Whole generations, with preemption and pool growth (graphs recorded again).
  expect_generations_equal(exact, recorded, "recorded");
  // A stale recording (the backend refuses it) is recorded again: same results.
  ops.stale = true;
  const size_t made = recorded.decode_steps_recorded();
  expect_steps_equal(exact, recorded, 4, 6, "stale");
  EXPECT_GT(recorded.decode_steps_recorded(), made);
}

// The control for the test above: on this backend a recording kept after the
// pools moved (what use_layout prevents) writes into the released pool, not
// the new one, so a missed invalidation cannot pass unnoticed.
TEST(DecodeGraph, StaleRecordingMissesTheMovedPool) {
  ModelConfig config = qwen3_config(97, 64, 2, 4, 2, 16, 96, false);
  config.max_positions = 64;
  GraphCpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 17));
  Stepper s(model, 4);
  s.prefill(step_prompts(config.vocab_size));
  const int kv = config.kv_dim();
  Buf rows = ops.alloc_activations(size_t(kv));
  int32_t* index = ops.alloc_int(1);
  std::vector<float> ones(size_t(kv), 1.f);
  ops.upload(rows, ones.data(), ones.size());
  ops.upload_int(index, std::vector<int32_t>{0}.data(), 1);
  ops.record_begin();
  ops.scatter_rows(s.cache->keys(0), rows, kv, index, 1, kv);
  const Ops::Recording r = ops.record_end();
  const Buf old_pool = s.cache->keys(0);
  ASSERT_TRUE(s.cache->ensure_free(s.cache->capacity() + 8));  // the pool moves
  ASSERT_NE(s.cache->keys(0).ptr, old_pool.ptr);
  std::vector<float> before(ones.size()), after(ones.size());
  ops.download(before.data(), s.cache->keys(0), size_t(kv));
  ASSERT_TRUE(ops.replay(r));
  ops.download(after.data(), s.cache->keys(0), size_t(kv));
  EXPECT_EQ(before, after);  // the replay wrote into the released pool, not the new one
  EXPECT_EQ(old_pool.f32()[0], 1.f);
  ops.release(rows.ptr);
  ops.release(index);
}

// ---------------------------------------------------------------------------
// GPU

ModelConfig gpu_config() {
  ModelConfig config = qwen3_config(97, 64, 2, 4, 2, 32, 96, true);
  config.max_positions = 64;
  return config;
}

// Qwen3 (RMSNorm, q/k norm + RoPE, SwiGLU) and GPT-2 (LayerNorm, biases,
// whose GEMM may copy an unaligned bias through the scratch, GELU).
TEST(DecodeGraph, GpuReplayEqualsPaddedStepBitwise) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const ModelConfig gpt2 = gpt2_config(89, 64, 2, 4, 64);
  for (const ModelConfig& config : {gpu_config(), gpt2}) {
    Transformer recorded(config, *gpu), padded(config, *gpu);
    recorded.set_params(random_params(recorded, 23));
    prepare(padded, 23, DecodeMode::padded);
    const char* what = config.is_qwen3() ? "gpu qwen3" : "gpu gpt2";
    for (int block_size : {4, 1}) expect_steps_equal(recorded, padded, block_size, 16, what);
    EXPECT_GE(recorded.decode_steps_recorded(), 6u) << what;
    EXPECT_GE(recorded.decode_steps_replayed(), 6u) << what;
  }
}

TEST(DecodeGraph, GpuGenerationWithAndWithoutGraphs) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const ModelConfig config = gpu_config();
  Transformer recorded(config, *gpu), padded(config, *gpu), exact(config, *gpu);
  for (Transformer* m : {&recorded, &padded, &exact}) m->set_params(random_params(*m, 29));
  padded.set_decode_mode(DecodeMode::padded);
  exact.set_decode_mode(DecodeMode::exact);
  expect_generations_equal(padded, recorded, "gpu");
  EXPECT_GT(recorded.decode_steps_replayed(), 0u);
  // Without graphs (exact shapes): other GEMM shapes may round differently,
  // so tokens agree nearly always and log-probs within bf16 noise.
  SamplingParams sp;
  sp.max_new_tokens = 12;
  sp.seed = 77;
  EngineOptions e;
  e.block_size = 4;
  const auto with = generate_groups(recorded, gen_prompts(), 5, sp, 0, e);
  const auto without = generate_groups(exact, gen_prompts(), 5, sp, 0, e);
  ASSERT_EQ(with.size(), without.size());
  size_t same = 0;
  double worst = 0;
  for (size_t i = 0; i < with.size(); ++i) {
    if (with[i].tokens != without[i].tokens) continue;
    same += 1;
    for (size_t j = 0; j < with[i].logprobs.size(); ++j)
      worst = std::max(worst, std::fabs(double(with[i].logprobs[j]) - without[i].logprobs[j]));
  }
  EXPECT_GE(same, with.size() * 9 / 10);
  EXPECT_LT(worst, 5e-2);
}

TEST(DecodeGraph, GpuRecordingRulesAndReplay) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  Ops& ops = *gpu;
  ASSERT_TRUE(ops.can_record());
  const size_t n = 1000;
  Buf a = ops.alloc_activations(n), b = ops.alloc_activations(n), out = ops.alloc_activations(n);
  int32_t* ints = ops.alloc_int(4);
  std::vector<float> ha = test::random_vector(n, 1), hb = test::random_vector(n, 2), got(n);
  ops.upload(a, ha.data(), n);
  ops.upload(b, hb.data(), n);
  float* small = ops.alloc(16);
  ops.sum_squares(small, 16);  // a small scratch, grown later

  // Every op that waits for the device or moves memory refuses by name.
  const std::vector<int32_t> four = {1, 2, 3, 4};
  const std::vector<std::pair<std::string, std::function<void()>>> refused = {
      {"upload_int", [&] { ops.upload_int(ints, four.data(), 4); }},
      {"upload", [&] { ops.upload(a, ha.data(), n); }},
      {"download", [&] { ops.download(got.data(), a, n); }},
      {"alloc_buf", [&] { ops.alloc_activations(8); }},
      {"release", [&] { ops.release(b.ptr); }},
      {"synchronize", [&] { ops.synchronize(); }},
      {"sum_squares", [&] { ops.sum_squares(static_cast<float*>(nullptr), 4); }},
  };
  for (const auto& r : refused) {
    ops.record_begin();
    const std::string message = error_of(r.second);
    ops.record_cancel();
    EXPECT_NE(message.find(r.first), std::string::npos) << message;
    EXPECT_NE(message.find("recorded"), std::string::npos) << message;
  }
  // The stream works after the cancelled captures.
  ops.add(out, a, b, n);
  ops.download(got.data(), out, n);
  EXPECT_EQ(got[5], test::round_bf16(ha[5] + hb[5]));

  // A replay reads the inputs as they are at replay time; recording runs nothing.
  ops.zero(out, n);
  ops.record_begin();
  ops.add(out, a, b, n);
  const Ops::Recording r = ops.record_end();
  ops.download(got.data(), out, n);
  EXPECT_EQ(got[5], 0.f);  // captured, not run
  std::vector<float> hc = test::random_vector(n, 3);
  ops.upload(a, hc.data(), n);
  ASSERT_TRUE(ops.replay(r));
  ops.download(got.data(), out, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], test::round_bf16(hc[i] + hb[i])) << i;
  // The scratch grows (a bigger reduction): recordings made before are refused.
  float* big = ops.alloc(size_t(1) << 22);
  ops.sum_squares(big, size_t(1) << 22);
  EXPECT_FALSE(ops.replay(r));
  ops.forget(r);
  ops.release(big);
  ops.release(small);
  ops.release(a.ptr);
  ops.release(b.ptr);
  ops.release(out.ptr);
  ops.release(ints);
}

}  // namespace
}  // namespace polaris
