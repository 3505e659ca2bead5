// Sequence packing: variable-length documents -> fixed rows of T tokens.
//
// SFT examples are short and of every length; padding each to T wastes most
// of the compute. Packing puts several documents in one row and tells the
// attention op where each starts, so tokens never attend across documents.
//
// Input: a document is ids[0..L) and weights[0..L), where weights[i] is the
// loss weight of *predicting ids[i]* from ids[0..i) (so for SFT, weights is the
// chat's assistant_mask: 1 on the assistant tokens the model must produce).
// weights[0] is never used: nothing predicts a document's first token.
//
// Output row (each array has T entries):
//   tokens[t]     the input token
//   targets[t]    the next token of the same document, or -1 at a document's
//                 last token and on padding (a truncated document's last kept
//                 token keeps its true next token as target)
//   weights[t]    the loss weight of predicting targets[t] (0 where target is -1)
//   positions[t]  position within its document (RoPE), restarting at 0
//   doc_ids[t]    0, 1, 2, ... for the documents of this row in order; the
//                 padding at the end is one more document with its own id
// Attention is causal and within one doc_id: query t sees key s iff
// s <= t and doc_ids[s] == doc_ids[t] (can_attend below).
//
// Placement: first-fit decreasing (longest documents first, each into the
// first row with room; a segment tree finds that row in O(log rows)), which
// wastes little space and is deterministic. PackStrategy::kInOrder keeps the
// input order instead (greedy: start a new row when the next document does
// not fit), for data whose order matters.
//
// Documents longer than T are truncated to their first T tokens and counted,
// not split: a chat's second half without its prompt teaches the wrong thing,
// and truncation keeps every row's documents whole from their start.
// Documents with fewer than 2 tokens have nothing to predict and are dropped.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace polaris {

struct PackSequence {
  std::vector<int32_t> ids;
  std::vector<float> weights;  // same length as ids; weights[i] = loss weight of predicting ids[i]
};

struct PackedRow {
  std::vector<int32_t> tokens, targets, positions, doc_ids;
  std::vector<float> weights;
  int num_documents = 0;  // real documents (not counting the padding document)
};

enum class PackStrategy { kFirstFitDecreasing, kInOrder };

struct PackOptions {
  PackStrategy strategy = PackStrategy::kFirstFitDecreasing;
  int32_t pad_id = 0;  // token id written into padding (weight 0, target -1)
};

struct PackResult {
  std::vector<PackedRow> rows;
  size_t num_truncated = 0;  // documents longer than T, cut to T tokens
  size_t num_dropped = 0;    // documents with fewer than 2 tokens
  size_t num_padding = 0;    // padding tokens over all rows
};

// Throws Error when T < 2 or a document's ids and weights differ in length.
PackResult pack_sequences(const std::vector<PackSequence>& documents, int T,
                          const PackOptions& options = {});

// The attention rule the ops implement from doc_ids.
inline bool can_attend(const PackedRow& row, int query, int key) {
  return key <= query && row.doc_ids[key] == row.doc_ids[query];
}

}  // namespace polaris
