#include "src/train/memory_check.h"

#include <unistd.h>

#include <cstdlib>

#include "model/params.h"
#include "model/transformer.h"
#include "optim/sharded_gradients.h"
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

size_t cpu_model_state_bytes(const ModelConfig& config, int world, int stage) {
  const ParamLayout layout = build_param_layout(config);
  const size_t scratch =
      stage == 2 ? ShardedGradients::scratch_floats(layout, world > 1, world, false, false) : 0;
  const ZeroMemory zero = zero_memory_per_rank(layout.total, world, stage, DType::f32, scratch);
  return 4 * layout.total + zero.total();  // + the host copy the weights were loaded from
}

void require_step_fits_in_memory(const TrainOptions& options, const ModelConfig& config,
                                 size_t tokens_per_pass, const std::string& flags) {
  if (options.backend != "cpu") return;
  const double available = physical_memory_bytes();
  if (available <= 0) return;  // unknown: nothing to check against
  const int ranks = ranks_on_this_machine();
  const std::string among_ranks =
      ranks > 1 ? ", times " + std::to_string(ranks) + " ranks on this machine" : "";

  const size_t parameters = build_param_layout(config).total;
  const double state = double(
      cpu_model_state_bytes(config, options.world_size(), options.trainer.zero_stage));
  const std::string model = starting_model_name(options);
  require(state * ranks <= available,
          model + ": " + std::to_string(parameters) + " parameters need " + format_bytes(state) +
              " for weights, master, gradients and Adam moments (ZeRO-" +
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
