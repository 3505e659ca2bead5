#include "src/train/run_checkpoint.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "optim/watchdog.h"
#include "optim/zero.h"

namespace polaris {

namespace {

// Flags whose change would make the resumed run a different computation.
// (--batch is per rank: the global batch, --batch x ranks, must match.)
const char* const kMustMatch[] = {
    "mode", "global-batch", "seq", "grad-accum", "lr", "lr-schedule", "warmup-steps",
    "min-lr-fraction", "weight-decay", "beta2", "grad-clip", "seed", "task", "task-slip-rate",
    "train-examples", "data", "tokenizer", "skip-bad", "prompts-per-step", "group-size",
    "minibatches", "clip-low", "clip-high", "clip-ratio-c", "kl-coef", "entropy-coef", "temperature",
    "temperature-schedule", "max-response", "max-response-schedule", "top-p", "top-k", "min-p", "max-refills",
    "pass-rates", "eval-data", "system-prompt", "max-prompt", "dynamic-sampling",
    "no-std-normalize"};

bool is_switch(const std::string& name) {
  return name == "skip-bad" || name == "dynamic-sampling" || name == "no-std-normalize";
}

// A float flag's value as text (7 significant digits, a float's precision),
// so "3e-4", "0.0003" and an absent flag whose default is 3e-4 all read the same.
std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.7g", value);
  return text;
}

nlohmann::json run_flags(const TrainOptions& o) {
  nlohmann::json flags = nlohmann::json::object();
  for (const char* name : kMustMatch)
    if (o.flags->has(name)) flags[name] = is_switch(name) ? "given" : o.flags->get(name, "");
  // The optimizer's effective values rather than the text typed: a flag left
  // at its default and one given as that default are the same run, and the
  // warmup's default (which depends on --steps) cannot shift silently.
  const LrSchedule& schedule = o.trainer.schedule;
  flags["mode"] = o.mode;
  flags["global-batch"] = std::to_string(o.batch * o.world_size());
  flags["seq"] = std::to_string(o.seq);
  flags["grad-accum"] = std::to_string(o.grad_accum);
  flags["seed"] = std::to_string(o.seed);
  flags["lr"] = number_text(schedule.max_lr);
  flags["lr-schedule"] = schedule.kind;
  flags["warmup-steps"] = std::to_string(schedule.warmup_steps);
  flags["min-lr-fraction"] = number_text(schedule.min_lr_fraction);
  flags["weight-decay"] = number_text(o.trainer.adamw.weight_decay);
  flags["beta2"] = number_text(o.trainer.adamw.beta2);
  flags["grad-clip"] = number_text(o.trainer.grad_clip);
  return flags;
}

// Every rank's optimizer range: the whole buffer at stage 0 (each rank holds
// all moments), ZeRO shards otherwise.
std::vector<ShardRange> optimizer_ranges(size_t total, int world, int stage) {
  if (stage == 0 || world == 1) return {ShardRange{0, total}};
  return zero_shard_ranges(total, world);
}

}  // namespace

double ResumedRun::number(const std::string& key) const {
  require(state.contains(key) && state[key].is_number(),
          path + "/state.json: missing number \"loop." + key + "\"");
  return state[key].get<double>();
}

RunCheckpoints::RunCheckpoints(const TrainOptions& options)
    : options_(options),
      dir_(options.flags->get("checkpoint-dir", "")),
      every_(options.flags->get_int32("checkpoint-every", 0)),
      keep_last_(options.flags->get_int32("keep-last", 3)),
      resume_(options.flags->has("resume")) {
  require(dir_.empty() || every_ > 0 || resume_,
          "--checkpoint-dir needs --checkpoint-every K (steps between checkpoints)");
  require(every_ >= 0, "--checkpoint-every must be positive");
  require(!(every_ > 0 && dir_.empty()), "--checkpoint-every needs --checkpoint-dir DIR");
  require(!(resume_ && dir_.empty()), "--resume needs --checkpoint-dir DIR");
  require(keep_last_ >= 0, "--keep-last must be >= 0 (0 keeps every checkpoint)");
  // A directory that cannot be written must fail now, not at the first
  // checkpoint K steps into the run.
  if (every_ > 0) {
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    require(!error, "--checkpoint-dir " + dir_ + ": cannot create: " + error.message());
    require(::access(dir_.c_str(), W_OK) == 0,
            "--checkpoint-dir " + dir_ + ": cannot write in it: " + errno_text());
  }
}

bool RunCheckpoints::due(int step) const {
  return enabled() && every_ > 0 && (step % every_ == 0 || step == options_.steps);
}

void RunCheckpoints::save(int step, const Transformer& model, Trainer& trainer,
                          const nlohmann::json& loop_state,
                          const std::map<std::string, std::vector<float>>& extra_tensors) {
  WatchdogPhase phase("checkpoint");
  auto start = std::chrono::steady_clock::now();
  Comm* comm = options_.comm.get();
  const int world = options_.world_size();
  const size_t total = model.num_params();
  const std::vector<ShardRange> ranges =
      optimizer_ranges(total, world, options_.trainer.zero_stage);
  // Every shard's moments gathered to rank 0, the only rank that writes and
  // the only one that holds full-size buffers (the others keep their shard).
  const bool writer = options_.rank() == 0;
  std::vector<float> m(writer ? total : 0), v(writer ? total : 0);
  const std::vector<float> own_m = trainer.optimizer().moments_host(0);
  const std::vector<float> own_v = trainer.optimizer().moments_host(1);
  if (ranges.size() > 1) {
    comm->gather_to_root(own_m.data(), m.data(), ranges);
    comm->gather_to_root(own_v.data(), v.data(), ranges);
  } else if (writer) {
    m = own_m;  // stage 0 (or one rank): every rank holds all the moments
    v = own_v;
  }
  if (options_.rank() == 0) {
    Checkpoint c;
    c.config = model.config();
    c.params = model.get_params();
    for (const ShardRange& r : ranges) {
      OptimizerShard shard;
      shard.begin = r.begin;
      shard.end = r.end;
      shard.step = trainer.optimizer().step_count();
      shard.m.assign(m.begin() + r.begin, m.begin() + r.end);
      shard.v.assign(v.begin() + r.begin, v.begin() + r.end);
      c.optimizer.push_back(std::move(shard));
    }
    c.state = {{"step", step},
               {"world_size", world},
               {"zero", options_.trainer.zero_stage},
               {"flags", run_flags(options_)},
               {"loop", loop_state}};
    c.extra_tensors = extra_tensors;
    write_checkpoint(dir_, step, c, keep_last_);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("checkpoint %s/%s (%.1f MB of weights and moments, %.2f s)\n", dir_.c_str(),
                checkpoint_name(step).c_str(), 3.0 * total * 4 / 1e6, seconds);
    std::fflush(stdout);
  }
  if (comm) comm->barrier();
}

std::optional<ResumedRun> RunCheckpoints::resume(Transformer& model, Trainer& trainer) {
  if (!enabled()) return std::nullopt;
  WatchdogPhase phase("resume");
  if (!resume_) {
    const std::string path = latest_checkpoint(dir_);
    require(path.empty(), "--checkpoint-dir " + dir_ +
                              " already holds a run: add --resume to continue it, or choose "
                              "another directory");
    return std::nullopt;
  }
  // The newest checkpoint that verifies against its manifest; one line for
  // each newer one passed over (corrupt, truncated, incomplete).
  std::vector<std::string> skipped;
  const std::string path = latest_verified_checkpoint(dir_, &skipped);
  for (const std::string& why : skipped)
    std::printf("--resume: skipping %s\n", why.c_str());
  if (path.empty()) {
    std::printf("--resume: no checkpoint in %s yet, starting from the beginning\n", dir_.c_str());
    return std::nullopt;
  }
  Checkpoint c = read_checkpoint(path, /*verify=*/false);  // just verified
  require(c.params.size() == model.num_params() &&
              c.config.describe() == model.config().describe(),
          path + ": the checkpoint's model (" + c.config.describe() +
              ") is not the one this run trains (" + model.config().describe() + ")");
  const std::string state_file = path + "/state.json";
  for (const char* key : {"flags", "loop"})
    require(c.state.contains(key) && c.state[key].is_object(),
            state_file + ": missing object \"" + std::string(key) + "\"");
  for (const char* key : {"step", "world_size", "zero"})
    require(c.state.contains(key) && c.state[key].is_number_integer(),
            state_file + ": missing integer \"" + std::string(key) + "\"");
  const nlohmann::json& saved = c.state["flags"];
  const nlohmann::json now = run_flags(options_);
  for (const char* name : kMustMatch) {
    auto value = [](const nlohmann::json& flags, const char* key) {
      return flags.contains(key) && flags[key].is_string() ? flags[key].get<std::string>() : "";
    };
    const std::string before = value(saved, name), after = value(now, name);
    const std::string flag =
        std::string(name) == "global-batch" ? "batch x ranks" : "--" + std::string(name);
    require(before == after, "--resume: " + flag + " was '" + before + "' in " + path +
                                 ", now '" + after + "'; resume with the same value");
  }
  ResumedRun run;
  run.path = path;
  run.step = c.state["step"].get<int>();
  require(run.step <= options_.steps,
          "--resume: " + path + " is at step " + std::to_string(run.step) + ", past --steps " +
              std::to_string(options_.steps));
  model.set_params(c.params);
  const ShardRange own = trainer.shard();
  std::vector<OptimizerShard> mine = reshard(c.optimizer, {{own.begin, own.end}});
  trainer.optimizer().set_state(mine[0].step, mine[0].m, mine[0].v);
  // The bf16 weights as the uninterrupted run rounded them (stochastically)
  // at the checkpoint's step; set_params rounded them to nearest.
  trainer.optimizer().round_copy(model.params(), model.weight_copy());
  run.state = c.state["loop"];
  run.extra_tensors = std::move(c.extra_tensors);
  std::printf("resumed from %s at step %d (saved by %d rank(s), ZeRO-%d)\n", path.c_str(), run.step,
              c.state["world_size"].get<int>(), c.state["zero"].get<int>());
  return run;
}

}  // namespace polaris
