// GradientSink: where the backward pass adds parameter gradients, one
// contiguous segment of the flat buffer at a time.
//
// The backward walks the layers from the last to the first, so the
// gradients of the flat buffer (model/params.h: embeddings, layer 0 ..
// layer L-1, final norm, lm_head) are finished in the reverse order. The
// Transformer announces each segment before it writes the first gradient of
// it (open) and after it wrote the last one (close):
//   [final norm, end)              the LM head (untied) and the final norm
//   per layer, last to first:
//     [mlp_norm, layer end)        the MLP half: its norm, gate/up, down
//     [layer begin, mlp_norm)      the attention half: norm, qkv, q/k norms, o
//   [0, layer 0)                   the embeddings
// With tied embeddings the LM head's gradient IS embed_tokens', written at
// the very start of the backward (the loss) and again at its end, so
// [0, layer 0) stays open over the whole backward.
//
// Without a sink the Transformer adds into its own full buffer, grads().
// ZeRO-2 (optim/sharded_gradients.h) instead hands out a scratch buffer per
// segment and reduce-scatters each one as soon as it is closed, so no rank
// ever holds the whole fp32 gradient.
#pragma once
#include <cstddef>

namespace polaris {

struct GradientSegment {
  size_t begin = 0, end = 0;  // flat positions [begin, end)
  size_t size() const { return end - begin; }
};

class GradientSink {
 public:
  virtual ~GradientSink() = default;
  // The fp32 buffer (Ops memory, end - begin floats) that the gradients of
  // flat positions [begin, end) are ADDED into during this pass: element i
  // is the gradient of position begin + i.
  virtual float* open(size_t begin, size_t end) = 0;
  // The pass wrote its last gradient of [begin, end) (the ops that wrote it
  // are issued; on an asynchronous backend they may still be running).
  virtual void close(size_t begin, size_t end) = 0;
};

}  // namespace polaris
