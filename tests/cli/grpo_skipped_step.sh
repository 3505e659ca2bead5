#!/usr/bin/env bash
# A GRPO step in which every group's rewards are equal takes no optimizer step:
# the console line says "skipped" (not "loss 0.0000 | grad norm 0.000"), and
# its --log record has "skipped": true. An untrained model never answers an
# addition problem right, so every step of this run is such a step.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
export OMP_NUM_THREADS=1

"$BIN" --mode grpo --task addition --init qwen3-tiny --steps 2 --prompts-per-step 2 --group-size 2 \
  --batch 4 --max-response 4 --eval-problems 2 --eval-samples 1 --log "$TMP/log.jsonl" \
  >"$TMP/out.log" 2>&1 || fail "run failed: $(tail -3 "$TMP/out.log")"
grep -q "^step 1/2 | skipped (no group with a reward signal)" "$TMP/out.log" \
  || fail "no 'skipped' console line: $(grep '^step' "$TMP/out.log")"
grep "^step" "$TMP/out.log" | grep -q "grad norm" && fail "a skipped step printed a grad norm: $(grep '^step' "$TMP/out.log")"
python3 - "$TMP/log.jsonl" <<'PY' || fail "log records"
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if "event" not in r]
assert len(steps) == 2 and all(r.get("skipped") is True for r in steps), steps
PY
echo "ok  $(grep '^step 1/2' "$TMP/out.log")"
echo "PASS grpo_skipped_step"
