// A paged KV cache: keys and values of many sequences in fixed-size blocks.
//
// Memory is a pool of blocks per layer, each block `block_size` rows of
// kv_dim keys (and as many values). A sequence owns a BlockTable: the ids of
// its blocks in order, so its token j lives in row j % block_size of block
// blocks[j / block_size]. Memory follows the tokens actually cached: a
// sequence takes a block when it crosses into one, gives all back when it
// ends, and the pool itself grows (by half, copying) only when the free list
// is empty, up to a cap, or until the backend runs out of memory: then the
// cap becomes the current size and append() reports no block (the scheduler
// preempts) instead of failing.
//
// Blocks are reference-counted so sequences can share them: fork() gives a
// new table the same blocks (the G completions of one prompt share the
// prompt's keys and values, computed once). A shared block is never written:
// append() on a table whose last block is shared and partly filled copies
// that block's filled rows into a fresh block first (copy-on-write at the
// first divergent block); full shared blocks stay shared for good.
//
// The bookkeeping (tables, counts, free list) is host memory; the pools are
// Ops memory, read by Ops::attention_decode through PagedKV.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/ops.h"

namespace polaris {

struct BlockTable {
  std::vector<int32_t> blocks;
  int length = 0;  // tokens cached
};

class KVCache {
 public:
  // Starts with `initial_blocks` (at least 1) and grows up to `max_blocks`.
  KVCache(Ops& ops, int num_layers, int kv_dim, int block_size, int initial_blocks,
          int max_blocks);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int block_size() const { return block_size_; }
  int capacity() const { return capacity_; }      // blocks allocated now
  int max_blocks() const { return max_blocks_; }
  // Blocks a new allocation can still get (free now + room to grow).
  int available() const { return int(free_.size()) + (max_blocks_ - capacity_); }
  int used() const { return capacity_ - int(free_.size()); }
  int peak_used() const { return peak_used_; }
  int peak_capacity() const { return capacity_; }  // the pool never shrinks
  // Bytes of one block over every layer, keys and values.
  size_t block_bytes() const;
  int refcount(int block) const { return refcount_[size_t(block)]; }

  // Layer l's pools as attention_decode and scatter_rows read them.
  Buf keys(int layer) const { return keys_[size_t(layer)]; }
  Buf values(int layer) const { return values_[size_t(layer)]; }
  // Names the pools' current placement: changes whenever they move (the
  // pool grows), never repeats, not even across caches (recordings of a
  // decode step that point at the pools key on it: model/decode_graphs.h).
  uint64_t pools_id() const { return pools_id_; }

  // Grows the pool until `blocks` blocks are free; false when the cap (or
  // the backend's memory) does not allow it.
  bool ensure_free(int blocks);
  // Blocks append() would take for `tokens` more tokens on `table`
  // (a copy-on-write of a shared partial last block included).
  int blocks_needed(const BlockTable& table, int tokens) const;
  // Makes room for the table's next token and returns its pool row
  // (block * block_size + offset); -1, changing nothing, when no block is
  // available.
  int32_t append(BlockTable& table);
  // A table sharing every block of `table` (reference counts + 1).
  BlockTable fork(const BlockTable& table);
  // Gives the table's blocks back (each freed when no other table holds it).
  void free(BlockTable& table);

 private:
  int32_t take_block();  // -1 when none is available
  void grow(int new_capacity);

  Ops& ops_;
  int num_layers_, kv_dim_, block_size_, capacity_ = 0, max_blocks_, peak_used_ = 0;
  uint64_t pools_id_ = 0;
  std::vector<Buf> keys_, values_;
  std::vector<int> refcount_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block first
};

}  // namespace polaris
