// Row sampler: which packed row each rank trains on next.
//
// Requirements: deterministic from the seed, a fresh shuffle every epoch,
// ranks see disjoint rows, and a checkpoint can resume it exactly.
//
// The epoch's order is a pseudo-random permutation of 0..N-1 computed on the
// fly, not stored: a 4-round Feistel network keyed by (seed, epoch) is a
// bijection on [0, 4^k) for the smallest 4^k >= N; indices that land >= N are
// fed through again ("cycle walking") until they land inside [0, N), which
// keeps it a bijection on [0, N). So the sampler's whole state is
// (epoch, position): nothing to save but two integers, and any position of any
// epoch can be computed directly.
//
// Ranks: rank r takes the epoch order's entries r, r + W, r + 2W, ... Every
// rank gets floor(N / W) rows per epoch so all ranks finish an epoch together;
// the last N mod W entries of each epoch's order (different rows each epoch)
// are skipped. With shuffle off the order is 0..N-1.
#pragma once
#include <cstdint>

namespace polaris {

struct RowSamplerState {
  uint64_t epoch = 0;
  uint64_t position = 0;  // rows this rank has taken in this epoch
};

class RowSampler {
 public:
  // Throws Error when num_rows < world_size, world_size < 1 or rank outside [0, world_size).
  RowSampler(uint64_t num_rows, uint64_t seed, int rank = 0, int world_size = 1, bool shuffle = true);

  uint64_t next();  // the next row index for this rank; rolls into the next epoch
  RowSamplerState state() const { return state_; }
  void restore(const RowSamplerState& state);  // throws Error if position is past the epoch's end

  uint64_t rows_per_epoch() const { return rows_per_rank_; }  // per rank
  uint64_t epoch() const { return state_.epoch; }
  // The row at index i (0 <= i < num_rows) of an epoch's global order.
  uint64_t permuted(uint64_t epoch, uint64_t i) const;

 private:
  uint64_t num_rows_, seed_;
  int rank_, world_size_;
  bool shuffle_;
  uint64_t rows_per_rank_;
  int half_bits_;  // the Feistel network works on 2 * half_bits_ bits
  RowSamplerState state_;
};

}  // namespace polaris
