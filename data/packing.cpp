// Sequence packing (see packing.h): first-fit decreasing or in-order greedy
// placement, then each row written out with targets, weights, positions and
// document ids.
#include "data/packing.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "src/common/error.h"

namespace polaris {

namespace {

// Max-segment tree over the free space of rows 0..capacity-1. Rows not yet
// opened have all T tokens free, so "the first row with free >= need" is an
// open row when one fits and otherwise the next new row: exactly first fit.
class FreeSpaceTree {
 public:
  FreeSpaceTree(size_t capacity, int T) : size_(1) {
    while (size_ < capacity) size_ *= 2;
    tree_.assign(2 * size_, T);
  }
  // Leftmost row whose free space is >= need (need <= T, so one exists).
  size_t first_fit(int need) const {
    size_t node = 1;
    while (node < size_) node = tree_[2 * node] >= need ? 2 * node : 2 * node + 1;
    return node - size_;
  }
  void use(size_t row, int amount) {
    size_t node = row + size_;
    tree_[node] -= amount;
    for (node /= 2; node >= 1; node /= 2) tree_[node] = std::max(tree_[2 * node], tree_[2 * node + 1]);
  }

 private:
  size_t size_;
  std::vector<int> tree_;
};

}  // namespace

PackResult pack_sequences(const std::vector<PackSequence>& documents, int T, const PackOptions& options) {
  require(T >= 2, "pack_sequences: row length T must be at least 2, got " + std::to_string(T));
  PackResult result;
  std::vector<size_t> order;  // documents to place, and their (possibly truncated) lengths
  std::vector<int> length(documents.size(), 0);
  for (size_t d = 0; d < documents.size(); d++) {
    const PackSequence& doc = documents[d];
    require(doc.ids.size() == doc.weights.size(),
            "pack_sequences: document " + std::to_string(d) + " has " + std::to_string(doc.ids.size()) +
                " ids but " + std::to_string(doc.weights.size()) + " weights");
    if (doc.ids.size() < 2) {
      result.num_dropped++;
      continue;
    }
    if (doc.ids.size() > static_cast<size_t>(T)) result.num_truncated++;
    length[d] = static_cast<int>(std::min(doc.ids.size(), static_cast<size_t>(T)));
    order.push_back(d);
  }

  // Assign documents to rows.
  std::vector<std::vector<size_t>> row_docs;
  if (options.strategy == PackStrategy::kFirstFitDecreasing) {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length[a] > length[b]; });
    FreeSpaceTree tree(std::max<size_t>(order.size(), 1), T);
    for (size_t d : order) {
      size_t row = tree.first_fit(length[d]);
      if (row == row_docs.size()) row_docs.emplace_back();
      row_docs[row].push_back(d);
      tree.use(row, length[d]);
    }
  } else {
    int used = T;  // forces a new row for the first document
    for (size_t d : order) {
      if (used + length[d] > T) {
        row_docs.emplace_back();
        used = 0;
      }
      row_docs.back().push_back(d);
      used += length[d];
    }
  }

  // Write each row.
  for (const auto& docs : row_docs) {
    PackedRow row;
    row.tokens.reserve(T);
    for (size_t k = 0; k < docs.size(); k++) {
      const PackSequence& doc = documents[docs[k]];
      const int L = length[docs[k]];
      for (int i = 0; i < L; i++) {
        // A truncated document's last kept token still has its true next token.
        bool has_next = static_cast<size_t>(i) + 1 < doc.ids.size();
        row.tokens.push_back(doc.ids[i]);
        row.targets.push_back(has_next ? doc.ids[i + 1] : -1);
        row.weights.push_back(has_next ? doc.weights[i + 1] : 0.0f);
        row.positions.push_back(i);
        row.doc_ids.push_back(static_cast<int32_t>(k));
      }
    }
    row.num_documents = static_cast<int>(docs.size());
    for (int p = 0; static_cast<int>(row.tokens.size()) < T; p++) {
      row.tokens.push_back(options.pad_id);
      row.targets.push_back(-1);
      row.weights.push_back(0.0f);
      row.positions.push_back(p);
      row.doc_ids.push_back(row.num_documents);
      result.num_padding++;
    }
    result.rows.push_back(std::move(row));
  }
  return result;
}

}  // namespace polaris
