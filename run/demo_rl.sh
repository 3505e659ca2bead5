#!/usr/bin/env bash
# make demo-rl: the Polaris recipe in miniature, on the CPU, in a few minutes.
#
# 1. SFT: a fresh tiny Qwen3-style model imitates demonstrations of 2-digit
#    addition written out column by column ("47+38=" -> "7+8=15,4+3+1=8:85").
#    Half of the demonstrations slip: the column that receives a carry
#    forgets it, and the answer follows from the slip. The model learns to
#    slip about as often.
# 2. GRPO: P prompts x G samples per step from the model's own weights,
#    reward 1 when the final answer is right; group-relative advantages and
#    the clipped objective teach it to keep the carry.
# Stage 1 reports the validation loss on held-out problems (never trained
# on); stage 2 reports avg@4 (the mean correctness of 4 samples each) on
# held-out problems before and after GRPO: its last line is
# "held-out avg@4 before X after Y".
#
# OUT=dir keeps the models and logs (default build/demo_rl); curves:
#   python3 run/plot_metrics.py build/demo_rl/grpo.jsonl --out grpo.png
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/demo_rl}
mkdir -p "$out"
seed=${SEED:-1}

echo "== stage 1: SFT on demonstrations that slip on half the carries"
build/polaris_train --init qwen3-demo --mode sft --task addition-trace --task-slip-rate 0.5 \
  --steps 600 --batch 16 --seq 64 --lr 1e-3 --seed "$seed" --print-every 50 --val-every 300 \
  --log "$out/sft.jsonl" --out "$out/sft.bin"

echo "== stage 2: GRPO on the verifiable answer"
build/polaris_train "$out/sft.bin" --mode grpo --task addition-trace \
  --steps 40 --prompts-per-step 32 --group-size 8 --minibatches 2 --batch 32 \
  --lr 1e-4 --warmup-steps 0 --lr-schedule constant --max-response 24 \
  --eval-samples 4 --eval-problems 128 --seed "$seed" --print-every 5 \
  --log "$out/grpo.jsonl" --out "$out/grpo.bin"
