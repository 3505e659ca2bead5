#include "model/kv_cache.h"

#include <algorithm>
#include <atomic>
#include <string>

#include "src/common/error.h"

namespace polaris {

KVCache::KVCache(Ops& ops, int num_layers, int kv_dim, int block_size, int initial_blocks,
                 int max_blocks)
    : ops_(ops), num_layers_(num_layers), kv_dim_(kv_dim), block_size_(block_size),
      max_blocks_(max_blocks) {
  require(num_layers > 0 && kv_dim > 0, "kv cache: layers and kv_dim must be positive");
  require(block_size > 0, "kv cache: block size must be positive, got " +
                              std::to_string(block_size));
  require(max_blocks > 0, "kv cache: it needs at least one block");
  keys_.assign(size_t(num_layers), Buf());
  values_.assign(size_t(num_layers), Buf());
  grow(std::min(std::max(initial_blocks, 1), max_blocks));
}

KVCache::~KVCache() {
  for (Buf b : keys_) ops_.release(b.ptr);
  for (Buf b : values_) ops_.release(b.ptr);
}

size_t KVCache::block_bytes() const {
  return size_t(2) * num_layers_ * block_size_ * kv_dim_ * dtype_size(ops_.activation_dtype());
}

// New pools of new_capacity blocks holding the old ones' contents: block ids
// stay valid. Blocks already free are handed out before the new ones, the
// new ones lowest id first.
void KVCache::grow(int new_capacity) {
  // A new id first: a failed growth may already have moved some layers' pools.
  static std::atomic<uint64_t> placements{0};
  pools_id_ = ++placements;
  const size_t old_rows = size_t(capacity_) * block_size_ * kv_dim_;
  const size_t rows = size_t(new_capacity) * block_size_ * kv_dim_;
  for (int l = 0; l < num_layers_; ++l)
    for (std::vector<Buf>* pools : {&keys_, &values_}) {
      Buf& old = (*pools)[size_t(l)];
      Buf fresh = ops_.alloc_activations(rows);
      if (old) {
        ops_.copy(fresh, old, old_rows);
        ops_.release(old.ptr);
      }
      old = fresh;
    }
  refcount_.resize(size_t(new_capacity), 0);
  std::vector<int32_t> fresh_ids;  // under the free blocks already listed, lowest on top
  for (int b = new_capacity - 1; b >= capacity_; --b) fresh_ids.push_back(b);
  free_.insert(free_.begin(), fresh_ids.begin(), fresh_ids.end());
  capacity_ = new_capacity;
}

bool KVCache::ensure_free(int blocks) {
  while (int(free_.size()) < blocks) {
    if (capacity_ >= max_blocks_) return false;
    const int want = capacity_ + blocks - int(free_.size());
    try {
      grow(std::min(max_blocks_, std::max(want, capacity_ + std::max(1, capacity_ / 2))));
    } catch (const std::exception&) {
      // The backend is out of memory: the pool stays as it is (layers grown
      // before the failure keep their larger pools, unused past capacity_)
      // and this is the cap from now on: callers preempt instead.
      max_blocks_ = capacity_;
      return false;
    }
  }
  return true;
}

int32_t KVCache::take_block() {
  if (!ensure_free(1)) return -1;
  const int32_t block = free_.back();
  free_.pop_back();
  refcount_[size_t(block)] = 1;
  peak_used_ = std::max(peak_used_, used());
  return block;
}

int KVCache::blocks_needed(const BlockTable& table, int tokens) const {
  if (tokens <= 0) return 0;
  const int filled = table.length % block_size_;
  const bool cow = filled > 0 && refcount_[size_t(table.blocks.back())] > 1;
  const int room = filled > 0 ? block_size_ - filled : 0;  // rows left in the last block
  const int fresh = tokens > room ? (tokens - room + block_size_ - 1) / block_size_ : 0;
  return fresh + (cow ? 1 : 0);
}

int32_t KVCache::append(BlockTable& table) {
  const int offset = table.length % block_size_;
  if (offset == 0) {
    const int32_t block = take_block();
    if (block < 0) return -1;
    table.blocks.push_back(block);
  } else {
    const int32_t shared = table.blocks.back();
    if (refcount_[size_t(shared)] > 1) {
      // Copy-on-write: this table diverges inside a shared block.
      const int32_t block = take_block();
      if (block < 0) return -1;
      const size_t row = size_t(block_size_) * kv_dim_;
      for (int l = 0; l < num_layers_; ++l) {
        ops_.copy(keys_[size_t(l)] + size_t(block) * row, keys_[size_t(l)] + size_t(shared) * row,
                  size_t(offset) * kv_dim_);
        ops_.copy(values_[size_t(l)] + size_t(block) * row,
                  values_[size_t(l)] + size_t(shared) * row, size_t(offset) * kv_dim_);
      }
      refcount_[size_t(shared)] -= 1;
      table.blocks.back() = block;
    }
  }
  const int32_t row = table.blocks.back() * block_size_ + offset;
  table.length += 1;
  return row;
}

BlockTable KVCache::fork(const BlockTable& table) {
  for (int32_t b : table.blocks) refcount_[size_t(b)] += 1;
  return table;
}

void KVCache::free(BlockTable& table) {
  for (int32_t b : table.blocks) {
    require(refcount_[size_t(b)] > 0, "kv cache: internal error (block freed twice)");
    if (--refcount_[size_t(b)] == 0) free_.push_back(b);
  }
  table.blocks.clear();
  table.length = 0;
}

}  // namespace polaris
