// ZeRO-2's sharded gradients (see sharded_gradients.h).
#include "optim/sharded_gradients.h"

#include <algorithm>

#include "src/common/error.h"

namespace polaris {

namespace {
bool same(const GradientSegment& a, size_t begin, size_t end) {
  return a.size() > 0 && a.begin == begin && a.end == end;
}
}  // namespace

ShardedGradients::ShardedGradients(Transformer& model, Comm* comm,
                                   const std::vector<ShardRange>& ranges, int rank)
    : model_(model), ops_(model.ops()), comm_(comm), ranges_(ranges), rank_(rank),
      world_(int(ranges.size())) {
  require(world_ >= 1 && rank >= 0 && rank < world_, "ShardedGradients: bad rank or ranges");
  require(world_ == 1 || comm, "ShardedGradients: several ranks need a comm");
  require(ranges.back().end == model.num_params(), "ShardedGradients: ranges must tile the model");
  staged_ = comm && !ops_.host_memory() && !comm->device_buffers();
  held_ = held_segment(model.layout());
  largest_other_ = largest_other_segment(model.layout());
  const size_t n = shard().size();
  accum_ = ops_.alloc(n);
  if (staged_) host_accum_.assign(n, 0.f);
  note_usage();
}

ShardedGradients::~ShardedGradients() {
  if (held_slot_.buffer) ops_.release(held_slot_.buffer);
  for (Slot& s : slots_) ops_.release(s.buffer);
  ops_.release(accum_);
}

GradientSegment ShardedGradients::held_segment(const ParamLayout& layout) {
  return layout.lm_head == layout.embed_tokens ? Transformer::gradient_segments(layout).back()
                                               : GradientSegment();
}

size_t ShardedGradients::largest_other_segment(const ParamLayout& layout) {
  const GradientSegment held = held_segment(layout);
  size_t largest = 0;
  for (const GradientSegment& s : Transformer::gradient_segments(layout))
    if (!same(held, s.begin, s.end)) largest = std::max(largest, s.size());
  return largest;
}

size_t ShardedGradients::scratch_floats(const Transformer& model, const Comm* comm) {
  return scratch_floats(model.layout(), comm != nullptr, comm ? comm->world_size() : 1,
                        comm && comm->device_buffers(),
                        comm && !model.ops().host_memory() && !comm->device_buffers());
}

size_t ShardedGradients::scratch_floats(const ParamLayout& layout, bool comm, int world,
                                        bool overlapped, bool staged) {
  if (!comm) return 0;
  const size_t held = held_segment(layout).size(), other = largest_other_segment(layout);
  const size_t shard = zero_shard_range(layout.total, 0, world).size();
  return held + slot_count(overlapped) * other + (staged ? shard + std::max(other, held) : 0);
}

void ShardedGradients::note_usage() {
  size_t bytes = 4 * shard().size() + 4 * host_accum_.size() + 4 * host_segment_.capacity();
  if (held_slot_.buffer) bytes += 4 * held_slot_.capacity;
  for (const Slot& s : slots_) bytes += 4 * s.capacity;
  if (model_.holds_full_gradient()) bytes += 4 * model_.num_params();
  peak_bytes_ = std::max(peak_bytes_, bytes);
}

void ShardedGradients::zero() {
  ops_.zero(accum_, shard().size());
  std::fill(host_accum_.begin(), host_accum_.end(), 0.f);
}

ShardedGradients::Slot& ShardedGradients::take_slot(size_t size, bool held) {
  Slot* slot = nullptr;
  if (held) {
    slot = &held_slot_;
  } else {
    const size_t index = next_slot_++ % slot_count(comm_);
    if (index == slots_.size()) slots_.emplace_back();
    slot = &slots_[index];
  }
  require(!slot->in_use, "ShardedGradients: a scratch buffer was taken twice");
  if (!slot->buffer) {
    slot->capacity = held ? size : largest_other_;
    slot->buffer = ops_.alloc(slot->capacity);
    note_usage();
  }
  require(size <= slot->capacity, "ShardedGradients: a segment is larger than its scratch");
  // Its last reduction may still be reading it (asynchronous comms).
  comm_->wait_fence(slot->fence);
  return *slot;
}

float* ShardedGradients::open(size_t begin, size_t end) {
  if (direct()) return accum_ + begin;
  Slot& slot = take_slot(end - begin, same(held_, begin, end));
  slot.in_use = true;
  slot.begin = begin;
  slot.end = end;
  ops_.zero(slot.buffer, end - begin);
  return slot.buffer;
}

void ShardedGradients::close(size_t begin, size_t end) {
  if (direct()) return;
  Slot* slot = same(held_, begin, end) ? &held_slot_ : nullptr;
  for (Slot& s : slots_)
    if (!slot && s.in_use && s.begin == begin && s.end == end) slot = &s;
  require(slot && slot->in_use, "ShardedGradients: closing a segment that is not open");
  reduce_segment(slot->buffer, begin, end);
  slot->fence = comm_->fence();
  slot->in_use = false;
}

void ShardedGradients::reduce_segment(const float* grads, size_t begin, size_t end) {
  const float* source = grads;
  if (staged_) {
    if (host_segment_.capacity() < end - begin) {
      host_segment_.reserve(std::max(largest_other_, held_.size()));
      note_usage();
    }
    host_segment_.resize(end - begin);
    ops_.download(host_segment_.data(), grads, end - begin);
    source = host_segment_.data();
  }
  float* accum = staged_ ? host_accum_.data() : accum_;
  for (int r = 0; r < world_; ++r) {
    const ShardRange& range = ranges_[size_t(r)];
    const size_t lo = std::max(begin, range.begin), hi = std::min(end, range.end);
    if (lo >= hi) continue;
    comm_->reduce_add_to(source + (lo - begin), r == rank_ ? accum + (lo - range.begin) : nullptr,
                         hi - lo, r);
  }
}

void ShardedGradients::add_empty_pass() {
  for (const GradientSegment& s : model_.gradient_segments()) {
    open(s.begin, s.end);
    close(s.begin, s.end);
  }
}

float* ShardedGradients::finish() {
  if (staged_) ops_.upload(accum_, host_accum_.data(), shard().size());
  if (!direct()) comm_->wait_all();
  note_usage();
  return accum_;
}

}  // namespace polaris
