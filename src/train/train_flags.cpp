#include "src/train/train_flags.h"

#include <functional>

#include "src/common/sampling_flags.h"

namespace polaris {

namespace {

using T = FlagType;
constexpr unsigned kTrainModes = kPretrain | kSft;  // those that pack rows of --seq tokens
constexpr unsigned kChatModes = kSft | kGrpo;       // those that read JSONL or a --task
constexpr unsigned kBoth = kSameOnRanks | kSameOnResume;

// Table order is --help's order. README.md "polaris_train" lists the same
// flags (tests/cli/flags_documented.sh checks both ways).
const std::vector<FlagSpec> kTrainFlags = join_flags({{
    // what to train, on what
    {"mode", T::text, "pretrain|sft|grpo", "pretrain", "what kind of training", kAnyMode, kBoth},
    {"init", T::text, "PRESET|config.json", "",
     "start from a fresh random model (a preset, or a Hugging Face config's shape) instead of "
     "model.bin", kAnyMode, kSameInput},
    {"data", T::text, "PATTERN|FILE", "",
     "pretrain: token shard glob; sft: chat JSONL; grpo: problems JSONL",
     kAnyMode | kDataOnly, kSameInput | kSameOnResume},
    {"val-data", T::text, "PATTERN|FILE", "", "validation set, as --data", kTrainModes | kDataOnly,
     kSameInput},
    {"tokenizer", T::text, "FILE", "",
     "tokenizer.json (JSONL data; pretrain: the tokenizer the shards must record)",
     kAnyMode | kDataOnly, kSameInput | kSameOnResume},
    {"task", T::text, "NAME", "",
     "a built-in task instead of --data: addition, addition-trace, addition-trace-3", kChatModes,
     kBoth},
    {"train-examples", T::count, "N", "",
     "the built-in task's training problems (default 20000 for sft, 4096 for grpo)",
     kChatModes | kTaskOnly, kBoth},
    {"task-slip-rate", T::number, "R", "0",
     "the fraction of addition-trace demonstrations that slip on a carry", kSft | kTaskOnly, kBoth},
    {"skip-bad", T::toggle, "", "", "skip (and count) malformed JSONL lines instead of stopping",
     kChatModes | kDataOnly, kBoth},
    {"system-prompt", T::text, "TEXT", "", "a system message before each problem",
     kGrpo | kDataOnly, kBoth},
    {"max-prompt", T::integer, "N", "0", "drop problems whose prompt is longer (0: no limit)",
     kGrpo | kDataOnly, kBoth},
    // shape of a step
    {"steps", T::count, "N", "100", "optimizer steps (grpo: rollout steps)", kAnyMode, kSameOnRanks},
    {"batch", T::count, "B", "8", "rows per micro-batch on each rank (grpo: rollout rows)",
     kAnyMode, kSameOnRanks},
    {"seq", T::count, "T", "256", "tokens per row", kTrainModes, kBoth},
    {"grad-accum", T::count, "K", "1", "micro-batches per optimizer step", kTrainModes, kBoth},
    // optimizer
    {"lr", T::number, "X", "3e-4", "peak learning rate", kAnyMode, kBoth},
    {"lr-schedule", T::text, "cosine|linear|constant", "cosine", "decay after the warmup",
     kAnyMode, kBoth},
    {"warmup-steps", T::integer, "N", "",
     "linear warmup steps (default min(100, steps/10))", kAnyMode, kBoth},
    {"min-lr-fraction", T::number, "F", "0.1", "the schedule's floor, as a fraction of --lr",
     kAnyMode, kBoth},
    {"weight-decay", T::number, "W", "0.1", "AdamW decoupled weight decay (not on norms, biases, "
     "embeddings)", kAnyMode, kBoth},
    {"beta2", T::number, "B", "0.95", "AdamW's second-moment decay", kAnyMode, kBoth},
    {"grad-clip", T::number, "C", "1.0", "global gradient-norm clip (0: none)", kAnyMode, kBoth},
    {"seed", T::integer, "S", "1337", "initialisation, data order, sampling", kAnyMode, kBoth},
    // the run's outputs
    {"log", T::text, "FILE.jsonl", "", "one JSON object per step", kAnyMode},
    {"print-every", T::count, "N", "1", "a console line every N steps", kAnyMode},
    {"out", T::text, "MODEL.bin", "", "write the trained model (fp32)", kAnyMode},
    {"val-every", T::count, "N", "100", "steps between validation losses",
     kTrainModes | kValidation},
    {"val-batches", T::count, "N", "8", "batches per validation loss", kTrainModes | kValidation},
    // device and parallelism
    {"backend", T::text, "auto|cpu|cuda", "auto", "the ops: cuda when a GPU is visible, else cpu",
     kAnyMode},
    {"recompute", T::text, "none|mlp|layer", "none", "activation recomputation", kAnyMode},
}, cuda_graphs_flags(kGrpo), {
    {"attention", T::text, "flash|cudnn|simple", "flash", "the CUDA backend's attention kernels",
     kAnyMode},
    {"profile", T::toggle, "", "", "3 warm-up + 5 steps in the profiler's capture range "
     "(run/profile.sh)", kAnyMode},
    {"comm", T::text, "nccl|mpi|none", "",
     "data parallel ranks (under mpirun: nccl with --backend cuda, else mpi; none otherwise)",
     kAnyMode},
    {"rank-timeout", T::number, "SECONDS", "600",
     "end a multi-rank job when no rank makes progress this long, naming the stuck one (0: off)",
     kAnyMode, kSameOnRanks},
    {"zero", T::text, "0|1|2", "0", "ZeRO stage: shard the Adam moments (1), and the gradient (2)",
     kAnyMode, kSameOnRanks},
    // checkpoints
    {"checkpoint-dir", T::text, "DIR", "",
     "checkpoint the run here, at its end and every --checkpoint-every steps", kAnyMode},
    {"checkpoint-every", T::integer, "K", "0", "steps between checkpoints (0: only at the end)",
     kAnyMode},
    {"keep-last", T::integer, "N", "3", "checkpoints kept (0: all)", kAnyMode},
    {"resume", T::toggle, "", "",
     "continue from --checkpoint-dir's newest checkpoint (none there: start from the beginning)",
     kAnyMode},
    // GRPO
    {"prompts-per-step", T::count, "P", "8", "problems per step", kGrpo, kBoth},
    {"group-size", T::count, "G", "8", "completions per problem", kGrpo, kBoth},
    {"minibatches", T::count, "M", "2", "optimizer steps per rollout batch", kGrpo, kBoth},
    {"clip-low", T::number, "E", "0.2", "ratio clip below 1", kGrpo, kBoth},
    {"clip-high", T::number, "E", "0.28", "ratio clip above 1", kGrpo, kBoth},
    {"clip-ratio-c", T::number, "C", "0", "dual clip for negative advantages (0: off; Polaris 3)",
     kGrpo, kBoth},
    {"kl-coef", T::number, "B", "0", "KL penalty to a frozen reference model (0: none)", kGrpo,
     kBoth},
    {"entropy-coef", T::number, "C", "0", "entropy bonus", kGrpo, kBoth},
    {"no-std-normalize", T::toggle, "", "", "advantages without dividing by the group's std",
     kGrpo, kBoth},
    {"dynamic-sampling", T::toggle, "", "",
     "drop groups whose rewards are all equal and sample new problems in their place", kGrpo,
     kBoth},
    {"dynamic-sampling-mode", T::text, "refill|substitute", "",
     "dynamic sampling on, in a mode: substitute replaces the all-equal groups by copies of "
     "informative ones (Polaris's in-batch substitution; the step is skipped when at most a "
     "third are informative)",
     kGrpo, kBoth},
    {"max-refills", T::integer, "N", "4", "sampling rounds to refill dropped groups", kGrpo, kBoth},
    {"temperature", T::number, "T", "1.0", "rollout temperature", kGrpo, kBoth},
    {"temperature-schedule", T::text, "STEP:T,...", "", "per-stage temperatures (0:1.0,50:1.1)",
     kGrpo, kBoth},
    {"max-response", T::count, "N", "256", "tokens per completion", kGrpo, kBoth},
    {"max-response-schedule", T::text, "STEP:N,...", "", "per-stage response lengths", kGrpo,
     kBoth},
}, sampling_cut_flags(kGrpo, kBoth), {
    {"pass-rates", T::text, "FILE", "",
     "polaris_eval --pass-rates output: train only on problems of intermediate pass rate", kGrpo,
     kSameInput | kSameOnResume},
    {"eval-data", T::text, "FILE", "", "held-out problems JSONL", kGrpo | kDataOnly,
     kSameInput | kSameOnResume},
    {"eval-samples", T::count, "K", "4", "samples per problem for avg@K", kGrpo},
    {"eval-every", T::integer, "N", "0", "steps between evaluations (0: before and after only)",
     kGrpo},
    {"eval-temperature", T::number, "T", "1.0", "evaluation temperature (0: greedy)", kGrpo},
    {"eval-problems", T::count, "N", "64", "the built-in task's held-out problems",
     kGrpo | kTaskOnly},
}});

std::string mode_names(unsigned scope) {
  std::string names;
  for (auto [bit, name] : {std::pair<unsigned, const char*>{kPretrain, "pretrain"},
                           {kSft, "sft"}, {kGrpo, "grpo"}})
    if (scope & bit) names += (names.empty() ? "" : ", ") + std::string(name);
  return names;
}

}  // namespace

const std::vector<FlagSpec>& train_flag_table() { return kTrainFlags; }

void reject_foreign_flags(const Flags& flags, const std::string& mode) {
  const unsigned mode_bit = mode == "grpo" ? kGrpo : mode == "sft" ? kSft : kPretrain;
  const bool task = flags.has("task");
  // Validation runs on --val-data, or on an SFT task's held-out problems.
  const bool validation = flags.has("val-data") || (mode == "sft" && task);
  // The mode first: "does not apply to --mode pretrain" says more than the
  // task rules about the same flag.
  auto each_given = [&](const std::function<void(const FlagSpec&, const std::string&)>& check) {
    for (const FlagSpec& spec : kTrainFlags)
      if (flags.has(spec.name)) check(spec, std::string("--") + spec.name);
  };
  each_given([&](const FlagSpec& spec, const std::string& flag) {
    require(spec.scope & mode_bit, flag + " does not apply to --mode " + mode);
  });
  each_given([&](const FlagSpec& spec, const std::string& flag) {
    require(!(task && (spec.scope & kDataOnly)),
            flag + " does not apply with --task (the built-in task is the data)");
    require(task || !(spec.scope & kTaskOnly), flag + " applies only with a built-in --task");
    require(validation || !(spec.scope & kValidation),
            flag + " applies only with --val-data (a validation set)");
  });
}

std::string train_usage() {
  return "usage:\n"
         "  polaris_train                       the built-in demo (a tiny model learns addition)\n"
         "  polaris_train MODEL.bin | --init PRESET|config.json  --mode pretrain|sft|grpo  "
         "[flags]\n"
         "  mpirun -np N polaris_train ...      data parallel over N ranks\n\n"
         "flags (README.md \"polaris_train\" explains each):\n" +
         describe_flags(kTrainFlags, [](const FlagSpec& spec) {
           return (spec.scope & kAnyMode) == kAnyMode ? std::string() : mode_names(spec.scope);
         });
}

}  // namespace polaris
