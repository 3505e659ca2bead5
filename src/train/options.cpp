#include "src/train/options.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "data/input_fingerprint.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/params.h"
#include "model/transformer.h"
#include "src/common/backend.h"

namespace polaris {

namespace {

const std::set<std::string> kValueFlags = {
    // every mode
    "data", "val-data", "steps", "batch", "seq", "grad-accum", "lr", "lr-schedule",
    "warmup-steps", "min-lr-fraction", "weight-decay", "grad-clip", "beta2", "seed", "backend",
    "recompute", "attention",
    "log", "mode", "init", "out", "val-every", "val-batches", "print-every", "tokenizer",
    // built-in synthetic tasks (src/train/synthetic_environment.h)
    "task", "task-slip-rate", "train-examples",
    // data parallel (optim/comm.h) and checkpoints (src/train/run_checkpoint.h)
    "zero", "comm", "rank-timeout", "checkpoint-dir", "checkpoint-every", "keep-last",
    // GRPO (src/train/grpo.cpp)
    "prompts-per-step", "group-size", "minibatches", "clip-low", "clip-high", "clip-ratio-c", "kl-coef",
    "entropy-coef", "temperature", "temperature-schedule", "max-response",
    "max-response-schedule", "top-p", "top-k", "min-p", "pass-rates", "eval-data", "eval-every",
    "eval-samples", "max-refills", "max-prompt", "eval-temperature", "eval-problems",
    "system-prompt",
};
const std::set<std::string> kSwitchFlags = {"resume", "profile", "no-std-normalize", "dynamic-sampling",
                                            "skip-bad"};

// One flag set serves every mode, so a flag that the chosen mode (or data
// source) never reads is rejected rather than silently ignored.
const std::set<std::string> kGrpoOnly = {
    "prompts-per-step", "group-size", "minibatches", "clip-low", "clip-high", "clip-ratio-c", "kl-coef",
    "entropy-coef", "temperature", "temperature-schedule", "max-response",
    "max-response-schedule", "top-p", "top-k", "min-p", "pass-rates", "eval-data", "eval-every",
    "eval-samples", "max-refills", "max-prompt", "eval-temperature", "eval-problems",
    "system-prompt", "dynamic-sampling", "no-std-normalize"};
// GRPO packs its rollouts itself (--batch rows per micro-batch, no --seq or
// --grad-accum), evaluates with --eval-* instead of a validation loss, and
// samples built-in problems without slips.
const std::set<std::string> kNotGrpo = {"seq", "grad-accum", "val-data", "val-every",
                                        "val-batches", "task-slip-rate"};
// Pretraining reads token shards only.
// (--tokenizer applies: the shards' recorded tokenizer must be it.)
const std::set<std::string> kNotPretrain = {"task", "task-slip-rate", "train-examples",
                                            "skip-bad"};
// A built-in --task brings its own problems, vocabulary and held-out split.
const std::set<std::string> kNotWithTask = {"data", "tokenizer", "val-data", "skip-bad",
                                            "eval-data", "system-prompt", "max-prompt"};
// Only a built-in --task reads these.
const std::set<std::string> kTaskOnly = {"task-slip-rate", "train-examples", "eval-problems"};

void reject_foreign_flags(const Flags& flags, const std::string& mode) {
  auto reject = [&](const std::set<std::string>& names, const std::string& why) {
    for (const std::string& name : names)
      require(!flags.has(name), "--" + name + " " + why);
  };
  const std::string not_for_mode = "does not apply to --mode " + mode;
  if (mode != "grpo") reject(kGrpoOnly, not_for_mode);
  if (mode == "grpo") reject(kNotGrpo, not_for_mode);
  if (mode == "pretrain") reject(kNotPretrain, not_for_mode);
  if (flags.has("task"))
    reject(kNotWithTask, "does not apply with --task (the built-in task is the data)");
  else
    reject(kTaskOnly, "applies only with a built-in --task");
  // Validation runs on --val-data, or on an SFT task's held-out problems.
  if (mode != "grpo" && !flags.has("val-data") && !(mode == "sft" && flags.has("task")))
    reject({"val-every", "val-batches"}, "applies only with --val-data (a validation set)");
}

// --out is written after the last step: a path that cannot be written must
// fail before the first one, not after hours of training.
void require_writable_file_path(const std::string& flag, const std::string& path) {
  struct stat info;
  require(!(::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)),
          flag + " " + path + ": is a directory, not a file");
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  require(::access(dir.c_str(), W_OK) == 0,
          flag + " " + path + ": cannot write in " + dir + ": " + errno_text());
}

// --out must not be one of the run's data files: writing the model over a
// shard would destroy it without a word. (Over the starting model.bin is
// allowed: updating a model in place is a choice, and the file is only
// replaced, atomically, after the last step.)
void require_out_is_not_an_input(const TrainOptions& o) {
  struct stat out;
  if (::stat(o.out_path.c_str(), &out) != 0) return;  // a new file: nothing to overwrite
  for (const char* flag : {"data", "val-data", "eval-data", "tokenizer", "pass-rates"}) {
    const std::string what = std::string("--") + flag, pattern = o.flags->get(flag, "");
    if (pattern.empty()) continue;
    glob_t matches;
    if (::glob(pattern.c_str(), 0, nullptr, &matches) != 0) continue;
    for (size_t i = 0; i < matches.gl_pathc; ++i) {
      struct stat input;
      const bool same = ::stat(matches.gl_pathv[i], &input) == 0 && input.st_dev == out.st_dev &&
                        input.st_ino == out.st_ino;
      const std::string path = matches.gl_pathv[i];
      if (same) {
        globfree(&matches);
        throw Error("--out " + o.out_path + " is " + path + ", an input of this run (" + what +
                    "): it would be overwritten");
      }
    }
    globfree(&matches);
  }
}

// The tokenizer the run's ids must come from: --tokenizer's, else the one
// the model file records; when both exist they must be the same.
void resolve_tokenizer(TrainOptions& o) {
  TokenizerId from_model;
  if (!o.model_path.empty()) read_model_bin_config(o.model_path, nullptr, &from_model);
  if (o.tokenizer.empty()) {
    o.tokenizer_id = from_model;
    o.tokenizer_source = "the model file " + o.model_path + "'s tokenizer";
    return;
  }
  o.tokenizer_id = tokenizer_id(o.tokenizer, Tokenizer::load(o.tokenizer).vocab_size());
  o.tokenizer_source = "--tokenizer " + o.tokenizer;
  require(!from_model.recorded() || from_model == o.tokenizer_id,
          "--tokenizer " + o.tokenizer + " is " + o.tokenizer_id.describe() +
              ", but the model file " + o.model_path + " was made with " + from_model.describe());
}

// Ranks given different inputs would train silently on different things:
// every input's fingerprint (data/input_fingerprint.h: the files' sizes and
// contents, or the value itself when it names no file) must agree.
void require_same_inputs(Comm& comm, const TrainOptions& o) {
  const std::string what = ": a fingerprint of its files' contents, or of its value";
  if (!o.model_path.empty())
    comm.require_same("the model file" + what, input_fingerprint(o.model_path));
  for (const char* flag : {"init", "data", "val-data", "tokenizer", "eval-data", "pass-rates",
                           "task", "system-prompt"})
    if (o.flags->has(flag))
      comm.require_same(std::string("--") + flag + what, input_fingerprint(o.flags->get(flag, "")));
}

}  // namespace

TrainOptions parse_train_options(int argc, char** argv) {
  auto flags = std::make_shared<Flags>(argc, argv, kValueFlags, kSwitchFlags);
  TrainOptions o;
  o.flags = flags;
  require(flags->positional().size() <= 1,
          "polaris_train takes at most one model file, got '" +
              (flags->positional().size() > 1 ? flags->positional()[1] : std::string()) + "'");
  if (!flags->positional().empty()) o.model_path = flags->positional()[0];
  o.init_preset = flags->get("init", "");
  require(o.model_path.empty() || o.init_preset.empty(),
          "--init starts from a fresh model: give either a model file or --init, not both");
  o.mode = flags->get("mode", "pretrain");
  require(o.mode == "pretrain" || o.mode == "sft" || o.mode == "grpo",
          "--mode must be pretrain, sft or grpo, got '" + o.mode + "'");
  reject_foreign_flags(*flags, o.mode);
  o.data = flags->get("data", "");
  o.val_data = flags->get("val-data", "");
  o.tokenizer = flags->get("tokenizer", "");
  resolve_tokenizer(o);
  o.backend = resolve_backend(flags->get("backend", "auto"));
  o.recompute = parse_recompute(flags->get("recompute", "none"));
  o.attention = flags->get("attention", "flash");
  o.log_path = flags->get("log", "");
  o.out_path = flags->get("out", "");
  o.steps = flags->get_positive_int("steps", 100);
  if (flags->has("profile")) {
    // A short run for Nsight: warm-up steps, then the captured ones
    // (cudaProfilerStart/Stop; see run/profile.sh).
    require(!flags->has("resume"), "--profile starts a fresh short run: drop --resume");
    o.trainer.profile_warmup = 3;
    o.trainer.profile_steps = 5;
    o.steps = o.trainer.profile_warmup + o.trainer.profile_steps;
    std::printf("--profile: %d warm-up steps, then %d steps inside the profiler's capture range\n",
                o.trainer.profile_warmup, o.trainer.profile_steps);
  }
  o.batch = flags->get_positive_int("batch", 8);
  o.seq = flags->get_positive_int("seq", 256);
  o.grad_accum = flags->get_positive_int("grad-accum", 1);
  o.val_every = flags->get_positive_int("val-every", 100);
  o.val_batches = flags->get_positive_int("val-batches", 8);
  o.print_every = flags->get_positive_int("print-every", 1);
  long long seed = flags->get_int("seed", 1337);
  require(seed >= 0, "flag --seed must be >= 0");
  o.seed = uint64_t(seed);

  o.trainer.schedule = make_schedule(
      flags->get("lr-schedule", "cosine"), float(flags->get_double("lr", 3e-4)),
      float(flags->get_double("min-lr-fraction", 0.1)),
      flags->get_int32("warmup-steps", std::min(100, o.steps / 10)), o.steps);
  o.trainer.adamw.weight_decay = float(flags->get_double("weight-decay", 0.1));
  o.trainer.adamw.beta2 = float(flags->get_double("beta2", 0.95));
  require(o.trainer.adamw.weight_decay >= 0 && o.trainer.adamw.weight_decay <= 1,
          "flag --weight-decay must be in [0, 1] (a fraction of lr per step), got " +
              flags->get("weight-decay", ""));
  require(o.trainer.adamw.beta2 >= 0 && o.trainer.adamw.beta2 < 1,
          "flag --beta2 must be in [0, 1), got " + flags->get("beta2", ""));
  o.trainer.grad_clip = float(flags->get_double("grad-clip", 1.0));
  require(o.trainer.grad_clip >= 0, "flag --grad-clip must be >= 0 (0: no clipping), got " +
                                        flags->get("grad-clip", ""));

  o.rank_timeout = flags->get_double("rank-timeout", 600);
  require(std::isfinite(o.rank_timeout) && o.rank_timeout >= 0,
          "flag --rank-timeout must be a number of seconds >= 0 (0: no watchdog), got " +
              flags->get("rank-timeout", ""));

  const std::string zero = flags->get("zero", "0");
  require(zero == "0" || zero == "1" || zero == "2", "--zero must be 0, 1 or 2, got '" + zero + "'");
  o.trainer.zero_stage = zero[0] - '0';

  // Data parallel: one Comm per process, made once, here.
  o.comm = std::shared_ptr<Comm>(
      make_comm(flags->get("comm", launched_by_mpirun() ? "mpi" : "none")).release());
  o.trainer.comm = o.comm.get();
  if (o.comm->world_size() > 1) {
    // With --backend cuda the MPI comm stages device buffers through the host
    // (src/train/trainer.cpp), so several ranks can share one GPU.
    Comm& comm = *o.comm;
    comm.require_same("--steps", uint64_t(o.steps));
    comm.require_same("--batch", uint64_t(o.batch));
    comm.require_same("--seq", uint64_t(o.seq));
    comm.require_same("--grad-accum", uint64_t(o.grad_accum));
    comm.require_same_double("--lr", double(o.trainer.schedule.max_lr));
    comm.require_same("--zero", uint64_t(o.trainer.zero_stage));
    comm.require_same("--seed", o.seed);
    comm.require_same_double("--rank-timeout", o.rank_timeout);
    comm.require_same("--mode", std::hash<std::string>()(o.mode));
    require_same_inputs(comm, o);
    if (comm.rank() != 0) {
      // Only rank 0 prints and writes: the others' console goes nowhere
      // (errors still reach stderr) and they write no --log or --out.
      require(std::freopen("/dev/null", "w", stdout) != nullptr,
              "rank " + std::to_string(comm.rank()) + ": cannot redirect stdout to /dev/null");
      o.log_path.clear();
      o.out_path.clear();
    }
  }
  if (!o.out_path.empty()) {
    require_writable_file_path("--out", o.out_path);
    require_out_is_not_an_input(o);
  }

  return o;
}

ModelConfig starting_config(const TrainOptions& options) {
  if (!options.model_path.empty()) return read_model_bin_config(options.model_path);
  require(!options.init_preset.empty(),
          "give a model file (polaris_train model.bin ...) or --init PRESET|config.json");
  // Any other shape: a Hugging Face config.json (read as polaris_convert
  // reads one), so a new architecture needs no preset.
  const std::string& init = options.init_preset;
  const bool is_json = init.size() > 5 && init.compare(init.size() - 5, 5, ".json") == 0;
  return is_json ? read_hf_config(init) : config_from_preset(init);
}

LoadedModel starting_model(const TrainOptions& options) {
  if (!options.model_path.empty()) return read_model_bin(options.model_path);
  LoadedModel model;
  model.config = starting_config(options);
  ParamLayout layout = build_param_layout(model.config);
  model.params.resize(layout.total);
  init_params(model.config, layout, options.seed, model.params.data());
  return model;
}

}  // namespace polaris
