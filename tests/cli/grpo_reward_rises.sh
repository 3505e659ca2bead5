#!/usr/bin/env bash
# A seeded short GRPO run on the CPU whose training reward rises: SFT the
# demo model on column-by-column addition whose demonstrations slip on half
# the carries (so the policy solves about three problems in four), then GRPO
# it and check with python3 that the mean "reward" of the last 5 step records
# is clearly above that of the first 5, that held-out avg@4 rises,
# that every step record carries the RL metric keys, and that the held-out
# avg@k line is printed. Run from the repository root after `make`.
export OMP_NUM_THREADS=1
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"

sft_slipping_adder "$TMP/sft.bin" 500 1e-3
"$BIN" "$TMP/sft.bin" --mode grpo --task addition-trace --steps 30 --prompts-per-step 32 \
  --group-size 8 --batch 32 --lr 1e-4 --warmup-steps 0 --lr-schedule constant --max-response 24 \
  --eval-samples 4 --eval-problems 128 --seed 1 --print-every 10 --log "$TMP/grpo.jsonl" \
  >"$TMP/grpo.log" 2>&1 || { cat "$TMP/grpo.log"; fail "grpo run"; }
cat "$TMP/grpo.log"
grep -qE '^held-out avg@[0-9]+ before [0-9.]+ after [0-9.]+$' "$TMP/grpo.log" \
  || fail "no 'held-out avg@K before X after Y' line"

python3 - "$TMP/grpo.jsonl" <<'PY' || exit 1
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
steps = [r for r in records if "event" not in r]
keys = ["step", "loss", "lr", "grad_norm", "tokens_per_s", "ms", "reward", "accuracy",
        "response_len", "kl", "clip_frac", "entropy", "rollout_ms", "logprob_ms", "update_ms"]
assert len(steps) >= 10, "only %d step records" % len(steps)
for r in steps:
    missing = [k for k in keys if k not in r]
    assert not missing, "step %s lacks %s" % (r.get("step"), missing)
rewards = [r["reward"] for r in steps]
first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
print("reward first 5 steps %.3f, last 5 steps %.3f" % (first, last))
print("rewards:", " ".join("%.2f" % x for x in rewards))
assert last >= first + 0.05, "reward did not rise by 0.05: %.3f -> %.3f" % (first, last)
evals = [r["avg_at_k"] for r in records if r.get("event") == "eval"]
print("held-out avg@4 before %.3f after %.3f" % (evals[0], evals[-1]))
assert evals[-1] >= evals[0] + 0.05, "held-out avg@4 did not rise by 0.05"
PY
echo "ok: GRPO raised the reward"
