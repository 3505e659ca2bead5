// The built-in default (`polaris_train` with no arguments, `make demo`):
// a tiny Qwen3-style model learns, from scratch, to add 2-digit numbers by
// writing the sum out column by column ("47+38=" -> "7+8=15,4+3+1=8:85"),
// in about a minute on 2 CPU cores. The loss is on what follows the "=";
// at the end it answers held-out problems (a fixed hash of the operands
// keeps them out of training) greedily.
//
// It is `--mode sft --task addition-trace --init qwen3-demo` with its
// settings fixed, plus the evaluation: the same pieces as every other run.
// Under `mpirun -np N` (N dividing 16) it runs data parallel: every rank
// draws the same 16 rows per step and trains on its N-th of them, with the
// loss normalised over all 16, so the run is the single process's up to
// float rounding; rank 0 prints and evaluates.
#include <cstdio>

#include "data/row_sampler.h"
#include "model/scheduler.h"
#include "src/common/backend.h"
#include "src/train/loops.h"
#include "src/train/packed_batches.h"
#include "src/train/step_report.h"
#include "src/train/synthetic_environment.h"

namespace polaris {

int run_builtin_demo() {
  const char* task = "addition-trace";
  const int steps = 600, rows_per_step = 16, row_tokens = 64;
  const uint64_t seed = 1337;
  std::unique_ptr<Comm> comm = make_comm(launched_by_mpirun() ? "mpi" : "none");
  const int world = comm->world_size(), rank = comm->rank();
  require(rows_per_step % world == 0,
          "the built-in demo splits its 16 rows per step over the ranks: run it with mpirun -np "
          "1, 2, 4, 8 or 16, not " + std::to_string(world));
  silence_other_ranks(*comm);
  std::printf("Polaris built-in demo: a tiny Qwen3-style model learns to add 2-digit numbers,\n"
              "column by column, on the CPU. (polaris_train --help lists the flags for your own "
              "data.)\n");

  ModelConfig config = config_from_preset("qwen3-demo");
  std::unique_ptr<Ops> ops = make_ops("cpu");
  Transformer model(config, *ops);
  std::vector<float> params(model.num_params());
  init_params(config, model.layout(), seed, params.data());
  model.set_params(params);
  std::printf("model: %s, %zu parameters\n", config.describe().c_str(), model.num_params());

  std::vector<PackedRow> rows =
      pack_sequences(synthetic_sft_sequences(task, 20000, /*held_out=*/false, 0.0, seed), row_tokens).rows;
  TrainerOptions options;
  options.schedule = make_schedule("cosine", 1e-3f, 0.1f, 30, steps);
  options.adamw.weight_decay = 0.01f;
  options.comm = comm.get();
  Trainer trainer(model, options);
  StepReporter reporter(steps, 50, "");
  RowSampler sampler(rows.size(), seed);
  for (int step = 0; step < steps; ++step) {
    std::vector<size_t> indices;
    for (int b = 0; b < rows_per_step; ++b) {
      const size_t row = sampler.next();
      if (b * world / rows_per_step == rank) indices.push_back(row);  // this rank's slice
    }
    std::vector<Batch> micro = {batch_from_packed_rows(rows, indices)};
    reporter.report(trainer.step(micro, global_sum(comm.get(), total_target_weight(micro))));
  }
  if (rank != 0) return 0;  // rank 0 evaluates

  // Held-out problems, answered greedily.
  std::unique_ptr<RlEnvironment> heldout = make_synthetic_environment(task, 0, 50, seed);
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < heldout->size(Split::Eval); ++i)
    prompts.push_back(heldout->prompt(Split::Eval, i));
  SamplingParams greedy;
  greedy.temperature = 0.f;
  greedy.max_new_tokens = 24;
  greedy.stop_tokens = heldout->stop_tokens();
  std::vector<Completion> completions = generate(model, prompts, greedy);
  int correct = 0;
  std::printf("\nheld-out problems (greedy):\n");
  for (size_t i = 0; i < completions.size(); ++i) {
    const Score score = heldout->score(Split::Eval, i, completions[i].tokens);
    correct += score.correct;
    if (i < 6)
      std::printf("  %-7s %-22s %s\n", heldout->prompt_text(Split::Eval, i).c_str(),
                  heldout->decode(completions[i].tokens).c_str(),
                  score.correct ? "correct" : "wrong");
  }
  std::printf("held-out accuracy: %d/%zu problems never seen in training\n", correct,
              completions.size());
  return 0;
}

}  // namespace polaris
