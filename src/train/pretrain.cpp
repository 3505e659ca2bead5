// Pre-training from token shards: next-token loss on every position,
// validation loss every --val-every steps.
#include <cstdio>

#include "data/token_loader.h"
#include "optim/watchdog.h"
#include "src/common/backend.h"
#include "src/train/loops.h"
#include "src/train/memory_check.h"
#include "src/train/run_checkpoint.h"
#include "src/train/step_report.h"

namespace polaris {

void start_run(const TrainOptions& options, Transformer& model) {
  model.set_recompute(options.recompute);
  model.set_decode_mode(options.decode_mode);
  if (!model.ops().host_memory() || options.world_size() > 1 || options.trainer.zero_stage > 0)
    std::printf("%s\n",
                memory_report_per_rank(model, options.trainer, size_t(options.batch) * options.seq)
                    .c_str());
}

void finish_run(const TrainOptions& options, const Transformer& model, Trainer& trainer,
                const TokenizerId& tokenizer) {
  if (const size_t peak = model.ops().peak_memory_bytes())
    std::printf("peak device memory: %.2f GiB\n", double(peak) / (1024.0 * 1024.0 * 1024.0));
  // Collective under ZeRO-1/2 (the master's shards to rank 0), so every
  // rank gathers, though only rank 0 has an --out.
  const bool sharded = model.master_end() - model.master_begin() < model.num_params();
  if (options.out_path.empty() && !sharded) return;
  const std::vector<float> params = trainer.master_params();
  if (options.out_path.empty()) return;
  write_model_bin(options.out_path, model.config(), params, false, tokenizer);
  std::printf("saved %s\n", options.out_path.c_str());
}

int run_pretrain(const TrainOptions& options) {
  require(!options.data.empty(), "--mode pretrain needs --data PATTERN (token shard files)");
  LoadedModel start = starting_row_model(options);
  std::unique_ptr<Ops> ops = make_ops(options.backend, options.attention);
  Transformer model(start.config, *ops);
  start_run(options, model);
  model.set_params(start.params);
  // Data parallel: each rank takes its slice of every global batch of
  // world * --batch rows (data/token_loader.h), and the loss normaliser is the
  // global target weight, so the ranks' summed gradients equal one process's
  // at --batch world * B.
  Comm* comm = options.comm.get();
  TokenRowLoader train("--data", options.data, options.seq, start.config.vocab_size, options.seed,
                       options.rank(), options.world_size());
  std::unique_ptr<TokenRowLoader> val;
  if (!options.val_data.empty())
    val.reset(new TokenRowLoader("--val-data", options.val_data, options.seq,
                                 start.config.vocab_size, options.seed, options.rank(),
                                 options.world_size()));
  // Shards made with another tokenizer would train silently while their ids fit.
  train.require_tokenizer(options.tokenizer_id, options.tokenizer_source);
  if (val) val->require_tokenizer(options.tokenizer_id, options.tokenizer_source);
  std::printf("model: %s, %zu parameters | data: %zu tokens | backend %s\n",
              start.config.describe().c_str(), model.num_params(), train.num_tokens(),
              ops->name().c_str());

  Trainer trainer(model, options.trainer);
  StepReporter reporter(options.steps, options.print_every, options.log_path,
                        options.resume);
  auto validate = [&](int step) {
    WatchdogPhase phase("validation");
    double loss = 0, weight = 0;
    for (int i = 0; i < options.val_batches; ++i) {
      watchdog_tick();
      LossOutputs out = model.forward(val->batch_at(i, options.batch));
      loss += out.loss_sum;
      weight += out.weight_sum;
    }
    loss = global_sum(comm, loss);
    weight = global_sum(comm, weight);
    reporter.event("validation", {{"step", step}, {"val_loss", loss / weight}});
  };
  RunCheckpoints checkpoints(options);
  if (!options.tokenizer_id.recorded())
    checkpoints.use_tokenizer(train.tokenizer(), "--data " + options.data + "'s tokenizer");
  int first_step = 0;
  const std::optional<ResumedRun> resumed = checkpoints.resume(model, trainer);
  if (resumed) {
    first_step = resumed->step;
    train.restore(uint64_t(resumed->number("data_epoch")),
                  size_t(resumed->number("data_cursor")));
  }
  reporter.resume_at(resumed ? resumed->step : -1);
  for (int step = first_step; step < options.steps; ++step) {
    WatchdogStep watched(step + 1);
    std::vector<Batch> micro;
    {
      WatchdogPhase phase("data");
      for (int k = 0; k < options.grad_accum; ++k) micro.push_back(train.next_batch(options.batch));
    }
    StepStats stats = trainer.step(micro, global_sum(comm, total_target_weight(micro)));
    reporter.report(stats);
    if (val && (stats.step % options.val_every == 0 || stats.step == options.steps))
      validate(stats.step);
    if (checkpoints.due(step + 1))
      checkpoints.save(step + 1, model, trainer,
                       {{"data_epoch", train.epoch()}, {"data_cursor", train.cursor()}});
  }
  finish_run(options, model, trainer, checkpoints.tokenizer());
  return 0;
}

}  // namespace polaris
