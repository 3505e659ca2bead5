// ShardedGradients: ZeRO-2's gradients, of which a rank holds only its shard.
//
// It is the GradientSink (model/gradient_sink.h) of every backward pass of
// a step. Each segment the backward opens gets a scratch buffer; when the
// backward closes it, the segment is reduced at once, piece by piece, to the
// ranks whose shards it overlaps:
//   for each rank r:  [lo, hi) = [begin, end) ∩ ranges[r]
//                     accum_r[lo - ranges[r].begin ...] += sum over ranks of scratch[lo - begin ...]
// (Comm::reduce_add_to), so over the micro-batches of a step accum_r
// receives exactly rank r's range of the summed gradient, and no rank ever
// holds the whole fp32 gradient. Scratch is reused: the tied embeddings
// (open through the whole backward) have their own buffer; the other
// segments share `slots` buffers of the largest one's size, one on a
// blocking comm (MPI), two on an asynchronous one (NCCL: the next segment is
// written while the last one is reduced on the comm stream, so the
// reduction overlaps the rest of the backward).
//
// Memory per rank: 4 S (the shard) + 4 * scratch_floats(), against 4 P for
// the full buffer; peak_bytes() is what was in use at most, measured as
// buffers are taken.
//
// No comm (one process): the segments are written straight into the
// accumulator, which is the whole buffer.
//
// A device backend with a host comm (--backend cuda --comm mpi: ranks
// sharing one GPU) stages each closed segment through the host and
// accumulates the shard on the host; finish() uploads it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/transformer.h"
#include "optim/comm.h"
#include "optim/zero.h"

namespace polaris {

class ShardedGradients : public GradientSink {
 public:
  // comm may be null (one process: ranges is the whole buffer); ranges
  // tile the buffer in rank order.
  ShardedGradients(Transformer& model, Comm* comm, const std::vector<ShardRange>& ranges,
                   int rank);
  ~ShardedGradients() override;
  ShardedGradients(const ShardedGradients&) = delete;
  ShardedGradients& operator=(const ShardedGradients&) = delete;

  // Start of a step: the accumulated shard is zero.
  void zero();
  float* open(size_t begin, size_t end) override;
  void close(size_t begin, size_t end) override;
  // A zero contribution in place of a backward: every segment opened and
  // closed in the backward's order, so the collectives match the other
  // ranks' when this rank ran fewer micro-batches (GRPO's uneven ranks).
  void add_empty_pass();
  // After the step's last backward: this rank's range of the gradient,
  // summed over ranks and micro-batches (Ops memory, shard().size() floats).
  float* finish();

  ShardRange shard() const { return ranges_[size_t(rank_)]; }
  // Bytes of gradient memory in use at most so far (shard + scratch).
  size_t peak_bytes() const { return peak_bytes_; }
  // The floats beside the shard a step uses (see above; staged: plus the
  // host accumulator and the host copy of a segment), so the gradient
  // memory is 4 (S + scratch_floats()) bytes.
  size_t scratch_floats() const { return scratch_floats(model_, comm_); }
  // The same before one is made (the memory report at start).
  static size_t scratch_floats(const Transformer& model, const Comm* comm);
  // The same before the model exists (the memory check at start): W ranks
  // over a comm (none when `comm` is false: 0), `overlapped` when it is
  // asynchronous (NCCL: two slots), `staged` when a device backend goes
  // through a host comm.
  static size_t scratch_floats(const ParamLayout& layout, bool comm, int world, bool overlapped,
                               bool staged);
  // Whether the segments go straight into the accumulator (no comm).
  bool direct() const { return comm_ == nullptr; }

 private:
  struct Slot {
    float* buffer = nullptr;
    size_t capacity = 0;
    uint64_t fence = 0;  // the comm's fence after this slot's last reduction
    bool in_use = false;
    size_t begin = 0, end = 0;
  };
  // The tied embeddings' segment (empty when untied) and the largest of
  // the others.
  static GradientSegment held_segment(const ParamLayout& layout);
  static size_t largest_other_segment(const ParamLayout& layout);
  static size_t slot_count(bool overlapped) { return overlapped ? 2 : 1; }
  static size_t slot_count(const Comm* comm) { return slot_count(comm && comm->device_buffers()); }
  Slot& take_slot(size_t size, bool held);
  void reduce_segment(const float* grads, size_t begin, size_t end);
  void note_usage();

  Transformer& model_;
  Ops& ops_;
  Comm* comm_;
  std::vector<ShardRange> ranges_;
  int rank_ = 0, world_ = 1;
  bool staged_ = false;           // device ops, host comm
  GradientSegment held_;          // the tied embeddings (empty when untied)
  size_t largest_other_ = 0;      // the largest segment but the held one
  Slot held_slot_;
  std::vector<Slot> slots_;       // round-robin for the other segments
  size_t next_slot_ = 0;
  float* accum_ = nullptr;        // Ops memory, shard().size()
  std::vector<float> host_accum_, host_segment_;  // staged mode only
  size_t peak_bytes_ = 0;
};

}  // namespace polaris
