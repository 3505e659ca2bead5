// Decode steps through recordings (Ops::record_begin / replay: CUDA graphs
// on the GPU), keyed by a batch bucket and a block-table width.
//
// A recording freezes every shape and pointer of the ops it holds, while a
// decode step's batch S and its sequences' block counts change from step to
// step. So a recorded step runs padded (Transformer::decode, DecodeMode):
//   - S rows are padded up to their bucket M = decode_batch_bucket(S):
//     1, 2, 4, ..., 256, then multiples of 256. A padded row reads token 0
//     at position 0, writes no cache row (row index -1: scatter_rows skips
//     it) and attends to no key (length 0: attention_decode gives zeros), so
//     it touches nothing a real row reads; every op computes a row from that
//     row alone, so the real rows' results are those of the unpadded step
//     (bitwise on the CPU, tests/test_decode_graph.cpp).
//   - the block tables are padded to width W = decode_width_bucket(longest
//     table): the next power of two. attention_decode picks its split count
//     from (M, W), so it is fixed within a key.
// The step's inputs (tokens, positions, cache rows, lengths, tables) are
// uploaded into fixed buffers before each replay, outside the recording.
// A (M, W) key is recorded the first time it is seen (after running the step
// op by op once, which also does the backend's one-time setup) and replayed
// after. Recordings point at the KV cache's pools and at the model's decode
// buffers: use_layout() forgets them all when either has moved.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/ops.h"

namespace polaris {

// How Transformer::decode runs its steps:
//   exact     the batch as given (S rows, tables as wide as the longest);
//   padded    padded to (M, W) as above, op by op: what a recording holds,
//             run directly (tests compare it against exact and recorded);
//   recorded  padded and recorded per (M, W), where Ops::can_record();
//             on a backend that cannot record, exact (padding would only
//             cost compute there).
enum class DecodeMode { exact, padded, recorded };
// --cuda-graphs on|off: "on" -> recorded, "off" -> exact; throws an Error
// naming the flag otherwise.
DecodeMode parse_cuda_graphs(const std::string& value);

// 1, 2, 4, ..., 256 for S <= 256, then S rounded up to a multiple of 256.
int decode_batch_bucket(int S);
// The next power of two >= blocks (at least 1).
int decode_width_bucket(int blocks);

class DecodeRecordings {
 public:
  explicit DecodeRecordings(Ops& ops) : ops_(ops) {}
  ~DecodeRecordings();  // forgets every recording
  DecodeRecordings(const DecodeRecordings&) = delete;
  DecodeRecordings& operator=(const DecodeRecordings&) = delete;

  // The placement of everything the recordings point at (the cache's
  // pools_id, the decode buffers' reallocation count): a different one
  // forgets them all.
  void use_layout(const std::vector<uint64_t>& layout);
  // Runs `step` (the ops of one decode step at M rows and table width W)
  // through its recording: a replay when there is a usable one, else the
  // step op by op, then its recording for the next time.
  void run(int M, int W, const std::function<void()>& step);
  void clear();

  size_t recorded() const { return recorded_; }  // recordings made
  size_t replayed() const { return replayed_; }  // steps run from one
  size_t held() const { return recordings_.size(); }

 private:
  Ops& ops_;
  std::vector<uint64_t> layout_;
  std::map<std::pair<int, int>, Ops::Recording> recordings_;
  size_t recorded_ = 0, replayed_ = 0;
};

}  // namespace polaris
