// Supervised fine-tuning: chat JSONL rendered in the Qwen3 chat format (or a
// built-in --task), loss on the assistant's tokens only, packed rows.
#include <cstdio>

#include "data/row_sampler.h"
#include "data/sft_dataset.h"
#include "data/tokenizer.h"
#include "optim/watchdog.h"
#include "src/common/backend.h"
#include "src/train/loops.h"
#include "src/train/memory_check.h"
#include "src/train/packed_batches.h"
#include "src/train/run_checkpoint.h"
#include "src/train/step_report.h"
#include "src/train/synthetic_environment.h"

namespace polaris {

namespace {

// A built-in task's validation set: this many held-out problems.
constexpr size_t kTaskValidationExamples = 512;

// The documents to train on (or, with validation, to measure the validation
// loss on): from --task (its training split with --train-examples and
// --task-slip-rate; for validation its held-out split, without slips), or
// JSONL (--data or --val-data) with --tokenizer.
std::vector<PackSequence> sft_documents(const TrainOptions& o, const std::string& jsonl,
                                        bool validation, uint64_t seed) {
  if (!o.task.empty()) {
    if (validation)
      return synthetic_sft_sequences(o.task, kTaskValidationExamples, /*held_out=*/true, 0.0,
                                     seed);
    return synthetic_sft_sequences(o.task, size_t(o.train_examples), /*held_out=*/false,
                                   o.task_slip_rate, seed);
  }
  require(!o.tokenizer.empty(), "--mode sft with JSONL data needs --tokenizer tokenizer.json");
  Tokenizer tokenizer = Tokenizer::load(o.tokenizer);
  SftDataset dataset = SftDataset::load(jsonl, o.skip_bad);
  if (dataset.skipped_lines)
    std::printf("%s: skipped %zu bad lines (--skip-bad)\n", jsonl.c_str(), dataset.skipped_lines);
  return tokenize_sft(tokenizer, dataset);
}

std::vector<PackedRow> pack(const std::vector<PackSequence>& documents, int T, const char* what) {
  PackResult packed = pack_sequences(documents, T);
  require(!packed.rows.empty(), std::string(what) + ": no document has 2 or more tokens");
  std::printf("%s: %zu documents packed into %zu rows of %d tokens (%zu truncated, %.1f%% padding)\n",
              what, documents.size(), packed.rows.size(), T, packed.num_truncated,
              100.0 * packed.num_padding / (double(packed.rows.size()) * T));
  return packed.rows;
}

}  // namespace

int run_sft(const TrainOptions& options) {
  require(!options.task.empty() || !options.data.empty(),
          "--mode sft needs --data chat.jsonl (with --tokenizer) or a built-in --task");
  LoadedModel start = starting_row_model(options);
  std::vector<PackedRow> rows =
      pack(sft_documents(options, options.data, false, options.seed), options.seq, "train");
  std::vector<PackedRow> val_rows;
  if (!options.val_data.empty() || !options.task.empty())
    val_rows = pack(sft_documents(options, options.val_data, true, options.seed + 1),
                    options.seq, "validation");
  for (const auto* packed : {&rows, &val_rows})
    for (const PackedRow& row : *packed)
      for (int32_t id : row.tokens)
        require(id < start.config.vocab_size,
                outside_vocabulary(options, packed == &rows ? "--data " + options.data
                                                            : "--val-data " + options.val_data,
                                   id, start.config.vocab_size));

  std::unique_ptr<Ops> ops = make_ops(options.backend, options.attention);
  Transformer model(start.config, *ops);
  start_run(options, model);
  model.set_params(start.params);
  std::printf("model: %s, %zu parameters | backend %s\n", start.config.describe().c_str(),
              model.num_params(), ops->name().c_str());
  Trainer trainer(model, options.trainer);
  StepReporter reporter(options.steps, options.print_every, options.log_path,
                        options.resume);
  // Data parallel: rank r takes entries r, r + W, ... of each epoch's order
  // (data/row_sampler.h), so one micro-batch over all ranks covers the same
  // rows as one process's micro-batch at --batch W * B; the loss normaliser
  // is the global target weight.
  Comm* comm = options.comm.get();
  RowSampler sampler(rows.size(), options.seed, options.rank(), options.world_size());
  auto validate = [&](int step) {
    WatchdogPhase phase("validation");
    double loss = 0, weight = 0;
    const size_t batches = std::min<size_t>(options.val_batches,
                                            (val_rows.size() + options.batch - 1) / options.batch);
    for (size_t i = 0; i < batches; ++i) {
      std::vector<size_t> indices;
      for (int b = 0; b < options.batch; ++b)
        indices.push_back(((i * options.world_size() + options.rank()) * options.batch + b) %
                          val_rows.size());
      LossOutputs out = model.forward(batch_from_packed_rows(val_rows, indices));
      loss += out.loss_sum;
      weight += out.weight_sum;
    }
    loss = global_sum(comm, loss);
    weight = global_sum(comm, weight);
    reporter.event("validation", {{"step", step}, {"val_loss", loss / std::max(weight, 1e-9)}});
  };
  // The data position is saved as rows taken by all ranks together, so a run
  // can resume on another number of ranks.
  RunCheckpoints checkpoints(options);
  const uint64_t world = uint64_t(options.world_size());
  int first_step = 0;
  const std::optional<ResumedRun> resumed = checkpoints.resume(model, trainer);
  reporter.resume_at(resumed ? resumed->step : -1);
  if (resumed) {
    first_step = resumed->step;
    const uint64_t taken = uint64_t(resumed->number("rows_taken"));
    require(taken % world == 0, "--resume: the saved data position (" + std::to_string(taken) +
                                    " rows) does not split over " + std::to_string(world) +
                                    " ranks");
    sampler.restore({uint64_t(resumed->number("epoch")), taken / world});
  }
  for (int step = first_step; step < options.steps; ++step) {
    WatchdogStep watched(step + 1);
    std::vector<Batch> micro;
    for (int k = 0; k < options.grad_accum; ++k) {
      std::vector<size_t> indices;
      for (int b = 0; b < options.batch; ++b) indices.push_back(sampler.next());
      micro.push_back(batch_from_packed_rows(rows, indices));
    }
    StepStats stats =
        trainer.step(micro, std::max(global_sum(comm, total_target_weight(micro)), 1e-9));
    reporter.report(stats);
    if (!val_rows.empty() && (stats.step % options.val_every == 0 || stats.step == options.steps))
      validate(stats.step);
    if (checkpoints.due(step + 1))
      checkpoints.save(step + 1, model, trainer,
                       {{"epoch", sampler.state().epoch},
                        {"rows_taken", sampler.state().position * world}});
  }
  finish_run(options, model, trainer);
  return 0;
}

}  // namespace polaris
