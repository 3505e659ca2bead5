#!/usr/bin/env bash
# GRPO with Polaris's in-batch substitution (--dynamic-sampling-mode
# substitute): on a briefly SFT'd demo model (most groups informative) every
# kept step trains on the full batch, the uninformative groups replaced by
# copies (groups_substituted = groups_dropped = prompts - groups_informative); on the untrained
# model (every reward 0) every step is skipped; the same seed gives the same
# records (timings aside). Run from the repository root after `make`.
export OMP_NUM_THREADS=1
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"

sft_slipping_adder "$TMP/sft.bin" 300 2e-3
grpo() {  # LOG MODEL-ARGS...
  local log=$1
  shift
  "$BIN" "$@" --mode grpo --task addition-trace --steps 3 --prompts-per-step 6 --group-size 8 \
    --batch 32 --lr 1e-4 --warmup-steps 0 --lr-schedule constant --max-response 24 \
    --eval-samples 1 --eval-problems 8 --seed 3 --dynamic-sampling-mode substitute \
    --log "$log" >"$log.out" 2>&1 || { cat "$log.out"; fail "grpo run ($*)"; }
}
grpo "$TMP/a.jsonl" "$TMP/sft.bin"
grpo "$TMP/b.jsonl" "$TMP/sft.bin"
grpo "$TMP/untrained.jsonl" --init qwen3-demo

python3 - "$TMP/a.jsonl" "$TMP/b.jsonl" "$TMP/untrained.jsonl" <<'PY' || exit 1
import json, sys
def steps(path):
    return [json.loads(l) for l in open(path) if l.strip() and "event" not in json.loads(l)]
a, b, untrained = steps(sys.argv[1]), steps(sys.argv[2]), steps(sys.argv[3])
assert len(a) == 3 and len(untrained) == 3, (len(a), len(untrained))
timing = {"ms", "tokens_per_s", "rollout_ms", "logprob_ms", "update_ms"}
strip = lambda r: {k: v for k, v in r.items() if k not in timing}
assert [strip(r) for r in a] == [strip(r) for r in b], "the same seed gave different records"
kept = 0
for r in a:
    assert r["dynamic_sampling"] == "substitute", r
    inf, sub = r["groups_informative"], r["groups_substituted"]
    if r.get("skipped"):
        assert 3 * inf <= 6 and r["groups_kept"] == 0, r
    else:
        kept += 1
        assert 3 * inf > 6, r
        assert r["groups_kept"] == 6 and sub == 6 - inf and r["groups_dropped"] == 6 - inf, r
    print("step %d: informative %d, substituted %d, skipped %s" % (r["step"], inf, sub, r.get("skipped", False)))
assert kept >= 1, "no step of the SFT'd model was kept"
for r in untrained:
    assert r.get("skipped") and r["groups_informative"] == 0 and r["groups_substituted"] == 0, r
print("untrained model: %d steps, all skipped" % len(untrained))
PY
echo "PASS grpo_substitution"
