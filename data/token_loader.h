// Token rows for pre-training, read from token shard files.
//
// All shards matching a pattern are read into one stream of tokens, cut into
// non-overlapping windows of T+1 tokens (T inputs, and the last one is the
// target of position T-1). Each epoch visits every window once, in an order
// shuffled from (seed, epoch), so a run is reproducible from its seed.
//
// Data parallel (rank r of W): every rank computes the same shuffled order,
// and each batch of B rows is rank r's slice [r*B, (r+1)*B) of the GLOBAL
// batch of W*B rows taken from that order. So the union over ranks of one
// micro-batch is exactly the micro-batch a single process with --batch W*B
// would draw, in the same order: W ranks at --batch B and one process at
// --batch W*B train on the same rows (tests/cli/mpi_equivalence.sh relies on
// this, together with the loops' global loss normaliser).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer_id.h"
#include "model/transformer.h"

namespace polaris {

class TokenRowLoader {
 public:
  // Throws Error naming the flag (`flag`, e.g. "--data") when the pattern
  // matches nothing, a shard is bad, a token is >= vocab_size, the data
  // hold less than one window, shards record different tokenizers, or a
  // recorded tokenizer has more ids than vocab_size (the model's).
  // Also throws when rank is outside [0, world_size).
  TokenRowLoader(const std::string& flag, const std::string& pattern, int T, int vocab_size,
                 uint64_t seed, int rank = 0, int world_size = 1);
  Batch next_batch(int B);                // this rank's B of the next W*B shuffled windows
  // This rank's B of the index-th W*B windows in file order (validation).
  Batch batch_at(int index, int B) const;
  size_t num_windows() const { return windows_; }
  // Position in the data order, for checkpoints: epochs started and windows
  // taken from the current one. restore() continues exactly from there.
  uint64_t epoch() const { return epoch_; }
  size_t cursor() const { return cursor_; }
  void restore(uint64_t epoch, size_t cursor);
  size_t num_tokens() const { return tokens_.size(); }
  // Error naming the flag and a shard when the shards record a tokenizer
  // other than `expected` (when both are recorded); `source` says where
  // `expected` comes from ("--tokenizer tok.json").
  void require_tokenizer(const TokenizerId& expected, const std::string& source) const;
  // The tokenizer the shards record (unrecorded: none did).
  const TokenizerId& tokenizer() const { return tokenizer_; }

 private:
  Batch make_batch(const std::vector<size_t>& windows) const;
  void shuffle_epoch(uint64_t epoch);  // order_ = epoch's permutation of the windows
  std::vector<int32_t> tokens_;
  int T_;
  size_t windows_;
  uint64_t seed_;
  int rank_, world_;
  uint64_t epoch_ = 0;
  size_t cursor_ = 0;
  std::vector<size_t> order_;
  std::string flag_;
  TokenizerId tokenizer_;       // recorded by the shards (unrecorded: none did)
  std::string tokenizer_file_;  // the first shard that recorded it
};

}  // namespace polaris
