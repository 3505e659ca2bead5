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
      dir_(options.checkpoint_dir),
      every_(options.checkpoint_every),
      keep_last_(options.keep_last),
      resume_(options.resume) {
  require(every_ >= 0, "--checkpoint-every must be >= 0 (0: only at the end)");
  require(!(every_ > 0 && dir_.empty()), "--checkpoint-every needs --checkpoint-dir DIR");
  require(!(resume_ && dir_.empty()), "--resume needs --checkpoint-dir DIR");
  require(keep_last_ >= 0, "--keep-last must be >= 0 (0 keeps every checkpoint)");
  // A directory that cannot be written must fail now, not at the first
  // checkpoint K steps into the run.
  if (enabled()) {
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    require(!error, "--checkpoint-dir " + dir_ + ": cannot create: " + error.message());
    require(::access(dir_.c_str(), W_OK) == 0,
            "--checkpoint-dir " + dir_ + ": cannot write in it: " + errno_text());
  }
}

bool RunCheckpoints::due(int step) const {
  return enabled() && ((every_ > 0 && step % every_ == 0) || step == options_.steps);
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
  // The fp32 master, whose ZeRO shards are gathered the same way.
  std::vector<float> params = trainer.master_params();
  if (options_.rank() == 0) {
    Checkpoint c;
    c.config = model.config();
    c.params = std::move(params);
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
               {"flags", options_.resume_identity},
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
  for (const auto& [name, now] : options_.resume_identity) {
    const std::string before = saved.contains(name) && saved[name].is_string()
                                   ? saved[name].get<std::string>()
                                   : "(not recorded)";
    const std::string flag = name == "global-batch" ? "batch x ranks" : "--" + name;
    require(before == now, "--resume: " + flag + " was '" + before + "' in " + path + ", now '" +
                               now + "'; resume with the same value");
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
  // at the checkpoint's step; set_params rounded them to nearest. (Each rank
  // took its shard of the master from the full parameters.)
  trainer.restore_weight_copy();
  run.state = c.state["loop"];
  run.extra_tensors = std::move(c.extra_tensors);
  std::printf("resumed from %s at step %d (saved by %d rank(s), ZeRO-%d)\n", path.c_str(), run.step,
              c.state["world_size"].get<int>(), c.state["zero"].get<int>());
  return run;
}

}  // namespace polaris
