#include "data/token_loader.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "data/token_shards.h"
#include "src/common/error.h"

namespace polaris {

TokenRowLoader::TokenRowLoader(const std::string& flag, const std::string& pattern, int T,
                               int vocab_size, uint64_t seed, int rank, int world_size)
    : T_(T), seed_(seed), rank_(rank), world_(world_size), flag_(flag) {
  require(world_size >= 1 && rank >= 0 && rank < world_size,
          flag + ": rank " + std::to_string(rank) + " outside [0, " +
              std::to_string(world_size) + ")");
  std::vector<std::string> files;
  try {
    files = expand_shard_pattern(pattern);
  } catch (const Error& e) {
    throw Error(flag + ": " + e.what());
  }
  for (const std::string& file : files) {
    TokenizerId recorded;
    std::vector<uint32_t> shard = read_token_shard(file, &recorded);
    if (recorded.recorded()) {
      require(recorded.vocab_size <= vocab_size,
              flag + ": " + file + " was made with " + recorded.describe() +
                  ", more than the model's vocabulary of " + std::to_string(vocab_size));
      if (!tokenizer_.recorded()) {
        tokenizer_ = recorded;
        tokenizer_file_ = file;
      }
      require(recorded == tokenizer_, flag + ": " + file + " was made with " +
                                          recorded.describe() + ", but " + tokenizer_file_ +
                                          " with " + tokenizer_.describe());
    }
    for (uint32_t token : shard) {
      require(token < uint32_t(vocab_size), file + ": token id " + std::to_string(token) +
                                                " is outside the model's vocabulary of " +
                                                std::to_string(vocab_size) +
                                                " (shards made with another model's tokenizer?)");
      tokens_.push_back(int32_t(token));
    }
  }
  windows_ = tokens_.size() > size_t(T) ? (tokens_.size() - 1) / size_t(T) : 0;
  require(windows_ > 0, flag + " " + pattern + ": " + std::to_string(tokens_.size()) +
                            " tokens are fewer than one row of --seq " + std::to_string(T) +
                            " + 1");
}

void TokenRowLoader::require_tokenizer(const TokenizerId& expected,
                                       const std::string& source) const {
  if (!expected.recorded() || !tokenizer_.recorded()) return;
  require(expected == tokenizer_, flag_ + ": " + tokenizer_file_ + " was made with " +
                                      tokenizer_.describe() + ", but " + source + " is " +
                                      expected.describe());
}

Batch TokenRowLoader::make_batch(const std::vector<size_t>& windows) const {
  const int B = int(windows.size());
  std::vector<int32_t> rows(size_t(B) * T_);
  Batch batch;
  for (int b = 0; b < B; ++b)
    std::copy_n(tokens_.begin() + windows[b] * T_, T_, rows.begin() + size_t(b) * T_);
  batch = Batch::from_token_rows(rows, B, T_);
  // The last position of each window predicts the window's extra token.
  for (int b = 0; b < B; ++b) {
    size_t last = size_t(b) * T_ + T_ - 1;
    batch.targets[last] = tokens_[windows[b] * T_ + T_];
    batch.weights[last] = 1.f;
  }
  return batch;
}

Batch TokenRowLoader::next_batch(int B) {
  std::vector<size_t> picked;
  const size_t first = size_t(rank_) * size_t(B), global = size_t(world_) * size_t(B);
  for (size_t i = 0; i < global; ++i) {
    if (cursor_ == order_.size()) {
      shuffle_epoch(epoch_);
      cursor_ = 0;
      ++epoch_;
    }
    const size_t window = order_[cursor_++];
    if (i >= first && i < first + size_t(B)) picked.push_back(window);
  }
  return make_batch(picked);
}

void TokenRowLoader::shuffle_epoch(uint64_t epoch) {
  order_.resize(windows_);
  std::iota(order_.begin(), order_.end(), 0);
  std::mt19937_64 rng(seed_ * 1000003 + epoch);
  std::shuffle(order_.begin(), order_.end(), rng);
}

void TokenRowLoader::restore(uint64_t epoch, size_t cursor) {
  require((epoch == 0 && cursor == 0) || (epoch > 0 && cursor <= windows_),
          "checkpoint: data position (epoch " + std::to_string(epoch) + ", window " +
              std::to_string(cursor) + ") does not fit this --data (" +
              std::to_string(windows_) + " windows)");
  epoch_ = epoch;
  cursor_ = cursor;
  order_.clear();
  if (epoch > 0) shuffle_epoch(epoch - 1);
}

Batch TokenRowLoader::batch_at(int index, int B) const {
  std::vector<size_t> picked;
  const size_t first = (size_t(index) * size_t(world_) + size_t(rank_)) * size_t(B);
  for (int b = 0; b < B; ++b) picked.push_back((first + size_t(b)) % windows_);
  return make_batch(picked);
}

}  // namespace polaris
