#include "model/decode_graphs.h"

#include "src/common/error.h"

namespace polaris {

DecodeMode parse_cuda_graphs(const std::string& value) {
  if (value == "on") return DecodeMode::recorded;
  if (value == "off") return DecodeMode::exact;
  throw Error("--cuda-graphs must be on or off, got '" + value + "'");
}

int decode_batch_bucket(int S) {
  require(S > 0, "decode: the batch must be positive");
  if (S > 256) return (S + 255) / 256 * 256;
  int M = 1;
  while (M < S) M *= 2;
  return M;
}

int decode_width_bucket(int blocks) {
  require(blocks < (1 << 30), "decode: a block table is too wide");
  int W = 1;
  while (W < blocks) W *= 2;
  return W;
}

DecodeRecordings::~DecodeRecordings() {
  try {
    clear();
  } catch (...) {
    // A failing device at teardown: nothing better to do than drop them.
  }
}

void DecodeRecordings::clear() {
  for (const auto& entry : recordings_) ops_.forget(entry.second);
  recordings_.clear();
}

void DecodeRecordings::use_layout(const std::vector<uint64_t>& layout) {
  if (layout == layout_) return;
  clear();
  layout_ = layout;
}

void DecodeRecordings::run(int M, int W, const std::function<void()>& step) {
  const std::pair<int, int> key(M, W);
  const auto it = recordings_.find(key);
  if (it != recordings_.end()) {
    if (ops_.replay(it->second)) {
      replayed_ += 1;
      return;
    }
    ops_.forget(it->second);  // the backend's scratch moved since: record again
    recordings_.erase(it);
  }
  // Op by op first: this step's results, and every one-time setup (matmul
  // plans, scratch growth) done where it may wait and allocate.
  step();
  ops_.record_begin();
  try {
    step();
  } catch (...) {
    ops_.record_cancel();
    throw;
  }
  recordings_[key] = ops_.record_end();
  recorded_ += 1;
}

}  // namespace polaris
