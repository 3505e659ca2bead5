// Ops::sample_rows' default (model/ops.h): the rows come to the host (fp32)
// and model/sampler.cpp's sample_token picks each token, in parallel over
// rows. It is the CPU backend's implementation and the oracle of the GPU
// sampler (cuda/sampling.cu, tests/test_ops_sampling.cpp).
#include <string>
#include <vector>

#include "model/ops.h"
#include "model/sampler.h"
#include "src/common/error.h"

namespace polaris {

void Ops::sample_rows(int32_t* tokens, float* logprobs, CBuf logits, int row_stride,
                      const int32_t* row_indices, const SampleRowParams* params, int n, int V) {
  require(n >= 0 && V > 0 && row_stride >= V, "sample_rows: bad shape (n " + std::to_string(n) +
                                                  ", V " + std::to_string(V) + ", row stride " +
                                                  std::to_string(row_stride) + ")");
  for (int i = 0; i < n; ++i)
    require(row_indices[i] >= 0, "sample_rows: negative row index " + std::to_string(row_indices[i]));
  std::vector<const float*> rows(static_cast<size_t>(n));
  std::vector<float> host;
  if (host_memory() && logits.dtype == DType::f32) {  // read in place
    for (int i = 0; i < n; ++i) rows[size_t(i)] = logits.f32() + size_t(row_indices[i]) * row_stride;
  } else {
    host.resize(size_t(n) * V);
    for (int i = 0; i < n; ++i) {
      download(host.data() + size_t(i) * V, logits + size_t(row_indices[i]) * row_stride, size_t(V));
      rows[size_t(i)] = host.data() + size_t(i) * V;
    }
  }
  sample_token_rows(tokens, logprobs, rows.data(), params, n, V);
}

}  // namespace polaris
