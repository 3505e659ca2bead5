#include "src/train/options.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <cstdio>

#include "data/input_fingerprint.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/params.h"
#include "model/transformer.h"
#include "src/common/backend.h"
#include "src/train/train_flags.h"

namespace polaris {

namespace {

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
  const std::pair<const char*, std::string> inputs[] = {
      {"--data", o.data}, {"--val-data", o.val_data}, {"--eval-data", o.eval_data},
      {"--tokenizer", o.tokenizer}, {"--pass-rates", o.grpo.pass_rates_path}};
  for (const auto& [what, pattern] : inputs) {
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
        throw Error("--out " + o.out_path + " is " + path + ", an input of this run (" +
                    std::string(what) +
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
// the model file's and every kSameInput flag's fingerprint
// (data/input_fingerprint.h: the files' sizes and contents, or the value
// itself when it names no file) must agree.
void require_same_inputs(Comm& comm, const TrainOptions& o, const Flags& flags) {
  const std::string what = ": a fingerprint of its files' contents, or of its value";
  if (!o.model_path.empty())
    comm.require_same("the model file" + what, input_fingerprint(o.model_path));
  for (const FlagSpec& spec : flags.table())
    if (spec.checks & kSameInput)
      comm.require_same("--" + std::string(spec.name) + what,
                        input_fingerprint(flags.canonical(spec.name)));
}

}  // namespace

void silence_other_ranks(const Comm& comm) {
  if (comm.rank() == 0) return;
  require(std::freopen("/dev/null", "w", stdout) != nullptr,
          "rank " + std::to_string(comm.rank()) + ": cannot redirect stdout to /dev/null");
}

namespace {

// The Comm, made before anything else can fail: under mpirun the ranks
// agree on a fatal error through MPI (optim/comm.h), so even a bad flag is
// one line, not one per rank. With flags that do not parse, or a --comm that
// cannot be made, the default comm reports the error.
//
// Under mpirun the default is NCCL when the run is on GPUs (one rank per
// GPU) and this build has it, MPI otherwise.
std::string default_comm(const Flags* flags) {
  if (!launched_by_mpirun()) return "none";
  if (!nccl_available()) return "mpi";
  const std::string backend = flags && flags->has("backend") ? flags->text("backend") : "auto";
  return resolve_backend(backend) == "cuda" ? "nccl" : "mpi";
}

std::shared_ptr<Comm> first_comm(const Flags* flags) {
  set_fatal_reporter(report_fatal_error_across_ranks);
  const std::string fallback = launched_by_mpirun() ? "mpi" : "none";
  bool fallback_failed = false;
  try {
    const std::string chosen = flags && flags->has("comm") ? flags->text("comm") : default_comm(flags);
    fallback_failed = chosen == fallback;
    return std::shared_ptr<Comm>(make_comm(chosen).release());
  } catch (const Error&) {
    // Kept until exit: it reports the error.
    static std::unique_ptr<Comm> reporter;
    if (!fallback_failed) reporter = make_comm(fallback);
    throw;
  }
}

}  // namespace

TrainOptions parse_train_options(int argc, char** argv) {
  std::unique_ptr<Flags> parsed;
  std::exception_ptr bad_flags;
  try {
    parsed.reset(new Flags(argc, argv, train_flag_table()));
  } catch (const Error&) {
    bad_flags = std::current_exception();
  }
  TrainOptions o;
  o.comm = first_comm(parsed.get());
  o.trainer.comm = o.comm.get();
  if (bad_flags) std::rethrow_exception(bad_flags);
  const Flags& flags = *parsed;
  require(flags.positional().size() <= 1,
          "polaris_train takes at most one model file, got '" +
              (flags.positional().size() > 1 ? flags.positional()[1] : std::string()) + "'");
  if (!flags.positional().empty()) o.model_path = flags.positional()[0];
  o.init_preset = flags.text("init");
  require(o.model_path.empty() || o.init_preset.empty(),
          "--init starts from a fresh model: give either a model file or --init, not both");
  o.mode = flags.text("mode");
  require(o.mode == "pretrain" || o.mode == "sft" || o.mode == "grpo",
          "--mode must be pretrain, sft or grpo, got '" + o.mode + "'");
  reject_foreign_flags(flags, o.mode);
  o.data = flags.text("data");
  o.val_data = flags.text("val-data");
  o.tokenizer = flags.text("tokenizer");
  resolve_tokenizer(o);
  o.task = flags.text("task");
  // The one default that depends on the mode: SFT demonstrations are cheap
  // and many help; GRPO problems are sampled a few per step.
  o.train_examples = flags.has("train-examples") ? flags.count("train-examples")
                                                 : (o.mode == "sft" ? 20000 : 4096);
  o.eval_problems = flags.count("eval-problems");
  o.task_slip_rate = flags.number("task-slip-rate");
  o.skip_bad = flags.has("skip-bad");
  o.system_prompt = flags.text("system-prompt");
  o.max_prompt = flags.integer("max-prompt");
  o.eval_data = flags.text("eval-data");
  o.backend = resolve_backend(flags.text("backend"));
  o.recompute = parse_recompute(flags.text("recompute"));
  o.decode_mode = parse_cuda_graphs(flags.text("cuda-graphs"));
  o.attention = flags.text("attention");
  o.log_path = flags.text("log");
  o.out_path = flags.text("out");
  o.steps = flags.count("steps");
  if (flags.has("profile")) {
    // A short run for Nsight: warm-up steps, then the captured ones
    // (cudaProfilerStart/Stop; see run/profile.sh).
    require(!flags.has("resume"), "--profile starts a fresh short run: drop --resume");
    o.trainer.profile_warmup = 3;
    o.trainer.profile_steps = 5;
    o.steps = o.trainer.profile_warmup + o.trainer.profile_steps;
    std::printf("--profile: %d warm-up steps, then %d steps inside the profiler's capture range\n",
                o.trainer.profile_warmup, o.trainer.profile_steps);
  }
  o.batch = flags.count("batch");
  o.seq = flags.count("seq");
  o.grad_accum = flags.count("grad-accum");
  o.val_every = flags.count("val-every");
  o.val_batches = flags.count("val-batches");
  o.print_every = flags.count("print-every");
  const int seed = flags.integer("seed");
  require(seed >= 0, "flag --seed must be >= 0");
  o.seed = uint64_t(seed);

  const int warmup = flags.has("warmup-steps") ? flags.integer("warmup-steps")
                                               : std::min(100, o.steps / 10);
  o.trainer.schedule = make_schedule(flags.text("lr-schedule"), float(flags.number("lr")),
                                     float(flags.number("min-lr-fraction")), warmup, o.steps);
  o.trainer.adamw.weight_decay = float(flags.number("weight-decay"));
  o.trainer.adamw.beta2 = float(flags.number("beta2"));
  require(o.trainer.adamw.weight_decay >= 0 && o.trainer.adamw.weight_decay <= 1,
          "flag --weight-decay must be in [0, 1] (a fraction of lr per step), got " +
              flags.text("weight-decay"));
  require(o.trainer.adamw.beta2 >= 0 && o.trainer.adamw.beta2 < 1,
          "flag --beta2 must be in [0, 1), got " + flags.text("beta2"));
  o.trainer.grad_clip = float(flags.number("grad-clip"));
  require(o.trainer.grad_clip >= 0,
          "flag --grad-clip must be >= 0 (0: no clipping), got " + flags.text("grad-clip"));

  const std::string zero = flags.text("zero");
  require(zero == "0" || zero == "1" || zero == "2", "--zero must be 0, 1 or 2, got '" + zero + "'");
  o.trainer.zero_stage = zero[0] - '0';
  o.rank_timeout = flags.number("rank-timeout");
  require(o.rank_timeout >= 0, "flag --rank-timeout must be a number of seconds >= 0 (0: no "
                               "watchdog), got " + flags.text("rank-timeout"));
  if (o.mode == "grpo") o.grpo = GrpoOptions::from_flags(flags);

  o.checkpoint_dir = flags.text("checkpoint-dir");
  o.checkpoint_every = flags.integer("checkpoint-every");
  o.keep_last = flags.integer("keep-last");
  o.resume = flags.has("resume");

  for (const FlagSpec& spec : flags.table()) {
    if (spec.checks & kSameOnRanks)
      o.comm->require_same("--" + std::string(spec.name), flags.canonical(spec.name));
    if (spec.checks & kSameOnResume) o.resume_identity[spec.name] = flags.canonical(spec.name);
  }
  if (o.comm->world_size() > 1) require_same_inputs(*o.comm, o, flags);
  // --batch is per rank: the global batch is what a resumed run must keep —
  // except in GRPO, whose --batch only cuts the rollouts into micro-batches
  // of one summed gradient, so a GRPO run resumes on any number of ranks.
  // The warmup's default depends on --steps, which a resumed run may raise.
  if (o.mode != "grpo") o.resume_identity["global-batch"] = std::to_string(o.batch * o.world_size());
  o.resume_identity["warmup-steps"] = std::to_string(o.trainer.schedule.warmup_steps);
  // What --backend auto and the default --comm resolved to must agree too
  // (a node without a GPU among nodes with one).
  o.comm->require_same("--backend", o.backend);
  o.comm->require_same("--comm", o.comm->name());
  if (o.comm->world_size() > 1) {
    // Only rank 0 prints and writes: the others write no --log or --out.
    silence_other_ranks(*o.comm);
    if (o.comm->rank() != 0) {
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

std::string starting_model_name(const TrainOptions& options) {
  return options.model_path.empty() ? "--init " + options.init_preset : options.model_path;
}

std::string outside_vocabulary(const TrainOptions& options, const std::string& where, int64_t id,
                               int vocab_size) {
  std::string line = where + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                     starting_model_name(options) + " (" + std::to_string(vocab_size) + " ids)";
  if (!options.tokenizer.empty())
    line += ": --tokenizer " + options.tokenizer +
            " is not this model's (a model's vocabulary must cover its tokenizer's)";
  return line;
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
