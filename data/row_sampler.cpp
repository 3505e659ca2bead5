// Row sampler (see row_sampler.h): a keyed Feistel permutation per epoch.
#include "data/row_sampler.h"

#include <string>

#include "src/common/error.h"
#include "src/common/mix.h"

namespace polaris {

RowSampler::RowSampler(uint64_t num_rows, uint64_t seed, int rank, int world_size, bool shuffle)
    : num_rows_(num_rows), seed_(seed), rank_(rank), world_size_(world_size), shuffle_(shuffle) {
  require(world_size >= 1, "RowSampler: world_size must be >= 1, got " + std::to_string(world_size));
  require(rank >= 0 && rank < world_size, "RowSampler: rank " + std::to_string(rank) +
                                              " outside [0, " + std::to_string(world_size) + ")");
  require(num_rows >= static_cast<uint64_t>(world_size),
          "RowSampler: " + std::to_string(num_rows) + " rows cannot be split over " +
              std::to_string(world_size) + " ranks");
  rows_per_rank_ = num_rows / static_cast<uint64_t>(world_size);
  half_bits_ = 1;
  while (half_bits_ < 32 && (uint64_t(1) << (2 * half_bits_)) < num_rows) half_bits_++;
}

uint64_t RowSampler::permuted(uint64_t epoch, uint64_t i) const {
  if (!shuffle_) return i;
  const uint64_t mask = (uint64_t(1) << half_bits_) - 1;
  const uint64_t key = mix64(seed_ ^ mix64(epoch + 0x5851F42D4C957F2Dull));
  uint64_t x = i;
  do {  // cycle walking: re-encrypt until the value is a valid row
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
      uint64_t f = mix64(key ^ (round << 56) ^ right) & mask;
      uint64_t new_right = left ^ f;
      left = right;
      right = new_right;
    }
    x = (left << half_bits_) | right;
  } while (x >= num_rows_);
  return x;
}

uint64_t RowSampler::next() {
  if (state_.position == rows_per_rank_) {
    state_.epoch++;
    state_.position = 0;
  }
  uint64_t global = state_.position * static_cast<uint64_t>(world_size_) + static_cast<uint64_t>(rank_);
  state_.position++;
  return permuted(state_.epoch, global);
}

void RowSampler::restore(const RowSamplerState& state) {
  require(state.position <= rows_per_rank_,
          "RowSampler: restored position " + std::to_string(state.position) + " is past the epoch's " +
              std::to_string(rows_per_rank_) + " rows per rank (different dataset or world size?)");
  state_ = state;
}

}  // namespace polaris
