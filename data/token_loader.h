// Token rows for pre-training, read from token shard files.
//
// All shards matching a pattern are read into one stream of tokens, cut into
// non-overlapping windows of T+1 tokens (T inputs, and the last one is the
// target of position T-1). Each epoch visits every window once, in an order
// shuffled from (seed, epoch), so a run is reproducible from its seed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace polaris {

class TokenRowLoader {
 public:
  // Throws Error naming the flag (`flag`, e.g. "--data") when the pattern
  // matches nothing, a shard is bad, a token is >= vocab_size, or the data
  // hold less than one window.
  TokenRowLoader(const std::string& flag, const std::string& pattern, int T, int vocab_size,
                 uint64_t seed);
  Batch next_batch(int B);                // B shuffled windows
  Batch batch_at(int index, int B) const; // the index-th B windows in file order (validation)
  size_t num_windows() const { return windows_; }
  size_t num_tokens() const { return tokens_.size(); }

 private:
  Batch make_batch(const std::vector<size_t>& windows) const;
  std::vector<int32_t> tokens_;
  int T_;
  size_t windows_;
  uint64_t seed_;
  uint64_t epoch_ = 0;
  size_t cursor_ = 0;
  std::vector<size_t> order_;
};

}  // namespace polaris
