// polaris_train: pre-train, fine-tune (SFT) or RL-post-train (GRPO) a model.
//
//   polaris_train                      the built-in default: a tiny model learns addition
//   polaris_train model.bin --data 'shards/train_*.bin' --val-data 'shards/val_*.bin' ...
//   polaris_train --init qwen3-tiny --data ...
//   polaris_train model.bin --mode sft  --data chat.jsonl --tokenizer tokenizer.json
//   polaris_train model.bin --mode grpo --data problems.jsonl --tokenizer tokenizer.json
// Flags: README.md "polaris_train".
#include <cstdio>
#include <cstring>

#include "optim/watchdog.h"
#include "src/common/cli.h"
#include "src/train/loops.h"

namespace {

const char* kUsage = R"(usage:
  polaris_train                       the built-in demo (a tiny model learns addition)
  polaris_train MODEL.bin | --init PRESET|config.json  --mode pretrain|sft|grpo  [flags]

data:      --data PATTERN|FILE  --val-data ...  --tokenizer tokenizer.json  --task NAME
           --task-slip-rate R  --train-examples N  --system-prompt TEXT  --max-prompt N
shape:     --steps N  --batch B  --seq T  --grad-accum K
optimizer: --lr X  --lr-schedule cosine|linear|constant  --warmup-steps N  --min-lr-fraction F
           --weight-decay W  --beta2 B  --grad-clip C
run:       --seed S  --log FILE.jsonl  --print-every N  --out MODEL.bin
           --val-every N  --val-batches N  --skip-bad
device:    --backend auto|cpu|cuda  --recompute none|mlp|layer  --attention flash|cudnn|simple
           --profile (3 warm-up + 5 captured steps for Nsight; run/profile.sh)
parallel:  mpirun -np N polaris_train ... [--zero 0|1|2] [--comm mpi] [--rank-timeout SECONDS]
resume:    --checkpoint-dir DIR  --checkpoint-every K  --keep-last N  --resume
grpo:      --prompts-per-step P  --group-size G  --minibatches M  --clip-low/--clip-high  --clip-ratio-c C
           --kl-coef B  --entropy-coef C  --dynamic-sampling  --no-std-normalize
           --temperature[-schedule]  --max-response[-schedule]  --top-p P  --top-k K  --min-p M
           --pass-rates FILE  --max-refills N
           --eval-data FILE  --eval-samples K  --eval-every N  --eval-temperature T  --eval-problems N
README.md "polaris_train" explains every flag.
)";

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  return polaris::run_main([&] {
    if (argc == 1) return polaris::run_builtin_demo();
    polaris::TrainOptions options = polaris::parse_train_options(argc, argv);
    polaris::Watchdog watchdog(options.rank_timeout);
    if (options.mode == "sft") return polaris::run_sft(options);
    if (options.mode == "grpo") return polaris::run_grpo(options);
    return polaris::run_pretrain(options);
  });
}
