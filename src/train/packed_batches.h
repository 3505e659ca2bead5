// Packed rows (data/packing.h) as model batches.
#pragma once
#include <vector>

#include "data/packing.h"
#include "model/transformer.h"

namespace polaris {

// Stacks rows[indices[0]], rows[indices[1]], ... (all of one length T) into
// one Batch: tokens, targets, weights, restarted positions and doc_ids.
Batch batch_from_packed_rows(const std::vector<PackedRow>& rows,
                             const std::vector<size_t>& indices);

}  // namespace polaris
