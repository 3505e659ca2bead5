#include "src/train/memory_check.h"

#include <unistd.h>

#include <cstdlib>

#include "model/params.h"
#include "model/transformer.h"
#include "optim/zero.h"
#include "src/common/error.h"
#include "src/common/metrics.h"

namespace polaris {

namespace {

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? double(pages) * double(page_size) : 0;
}

// Ranks of this job on this machine (OpenMPI sets it); 1 without mpirun.
int ranks_on_this_machine() {
  const char* local_size = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int ranks = local_size ? std::atoi(local_size) : 1;
  return ranks > 0 ? ranks : 1;
}

}  // namespace

void require_step_fits_in_memory(const TrainOptions& options, const ModelConfig& config,
                                 size_t tokens_per_pass, const std::string& flags) {
  if (options.backend != "cpu") return;
  const double available = physical_memory_bytes();
  if (available <= 0) return;  // unknown: nothing to check against
  const int ranks = ranks_on_this_machine();
  const std::string among_ranks =
      ranks > 1 ? ", times " + std::to_string(ranks) + " ranks on this machine" : "";

  // The model's state as this build allocates it: the weights twice (the
  // ops' copy and the host copy they were loaded from), the gradient (the
  // full buffer, or ZeRO-2's shard: its bucket scratch, a segment or two, is
  // left to the margin) and the Adam moments (sharded from ZeRO-1 on).
  const size_t parameters = build_param_layout(config).total;
  const ZeroMemory zero =
      zero_memory_per_rank(parameters, options.world_size(), options.trainer.zero_stage);
  const double state = 4.0 * parameters * 2 + double(zero.grads) + double(zero.moments);
  const std::string model = starting_model_name(options);
  require(state * ranks <= available,
          model + ": " + std::to_string(parameters) + " parameters need " + format_bytes(state) +
              " for weights, gradients and Adam moments (ZeRO-" +
              std::to_string(options.trainer.zero_stage) + ")" + among_ranks +
              ", more than this machine's " + format_bytes(available) +
              " of memory: use a smaller model, or more machines with --zero");

  const double activations = double(Transformer::activation_bytes(config, tokens_per_pass));
  const double batches = 24.0 * double(tokens_per_pass) * options.grad_accum;
  const double needed = (state + activations + batches) * ranks;
  require(needed <= available,
          flags + ": a training step needs about " + format_bytes(needed) + " (activations " +
              format_bytes(activations) + " for " + std::to_string(tokens_per_pass) +
              " tokens per pass, weights, gradients and Adam moments " + format_bytes(state) +
              among_ranks + "), more than this machine's " + format_bytes(available) +
              " of memory: lower them");
}

LoadedModel starting_row_model(const TrainOptions& options) {
  const ModelConfig config = starting_config(options);
  require(options.seq <= config.context_limit(),
          "--seq " + std::to_string(options.seq) + " is longer than the model's " +
              std::to_string(config.context_limit()) + " positions");
  require_step_fits_in_memory(
      options, config, size_t(options.batch) * options.seq,
      "--batch " + std::to_string(options.batch) + " --seq " + std::to_string(options.seq) +
          (options.grad_accum > 1 ? " --grad-accum " + std::to_string(options.grad_accum) : ""));
  return starting_model(options);
}

}  // namespace polaris
