// Before a run starts: does one training step fit in this machine's memory?
//
// A --batch or --seq far too large would otherwise end in the kernel's
// out-of-memory killer (exit 137, no message) minutes into a run. Checked
// from the config alone, before the weights are allocated. The step needs,
// per rank (P parameters, S = ceil(P / ranks); optim/zero.h):
//   weights 4P twice (the ops' copy and the host copy it was loaded from)
//   + the fp32 master 4S beside them under ZeRO-1/2
//   + gradients 4P (4S + 4B under ZeRO-2, B its bucket scratch:
//     ShardedGradients::scratch_floats) + Adam moments 8P (8S from ZeRO-1)
//   + activations for the tokens of one forward/backward pass
//     (Transformer::activation_bytes, counted exactly as they are allocated)
//   + the host batches of one step (grad_accum passes, ~24 bytes per token).
// Ranks started by mpirun on the same machine share its memory.
#pragma once
#include <cstddef>
#include <string>

#include "model/config.h"
#include "src/train/options.h"

namespace polaris {

// The model's part of the above on the CPU backend, per rank of `world`
// at ZeRO `stage`: everything but the activations and the batches.
size_t cpu_model_state_bytes(const ModelConfig& config, int world, int stage);

// Throws one line naming `flags` (e.g. "--batch 64 --seq 4096") when the
// step does not fit; the CPU backend only (the CUDA backend will check its
// device memory).
void require_step_fits_in_memory(const TrainOptions& options, const ModelConfig& config,
                                 size_t tokens_per_pass, const std::string& flags);

// The starting model of a run that trains on rows of --seq tokens
// (pretraining, SFT), after checking, from its config alone, that --seq fits
// its positions and a step of --batch rows fits in memory.
LoadedModel starting_row_model(const TrainOptions& options);

}  // namespace polaris
