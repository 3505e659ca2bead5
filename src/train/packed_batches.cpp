#include "src/train/packed_batches.h"

#include "src/common/error.h"

namespace polaris {

Batch batch_from_packed_rows(const std::vector<PackedRow>& rows,
                             const std::vector<size_t>& indices) {
  require(!indices.empty(), "batch_from_packed_rows: no rows");
  Batch batch;
  batch.B = int(indices.size());
  batch.T = int(rows[indices[0]].tokens.size());
  for (size_t index : indices) {
    const PackedRow& row = rows[index];
    require(int(row.tokens.size()) == batch.T, "batch_from_packed_rows: rows differ in length");
    auto append = [](auto& to, const auto& from) { to.insert(to.end(), from.begin(), from.end()); };
    append(batch.tokens, row.tokens);
    append(batch.targets, row.targets);
    append(batch.weights, row.weights);
    append(batch.positions, row.positions);
    append(batch.doc_ids, row.doc_ids);
  }
  return batch;
}

}  // namespace polaris
