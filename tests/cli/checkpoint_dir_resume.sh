#!/usr/bin/env bash
# --checkpoint-dir and --resume behave the same however they are combined:
#   1. --checkpoint-dir D alone checkpoints at the end of the run;
#   2. --resume --checkpoint-dir E on a missing E says so, starts from the
#      beginning and checkpoints into E like a fresh run;
#   3. the same command line with more --steps then continues from E;
#   4. a fresh run (no --resume) refuses a D that already holds a run.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
export OMP_NUM_THREADS=1

write_token_shard "$TMP/shard_000.bin" 5 4000
RUN=(--init qwen3-tiny --data "$TMP/shard_000.bin" --seq 32 --batch 2 --print-every 100)

# 1.
"$BIN" "${RUN[@]}" --steps 3 --checkpoint-dir "$TMP/d" >"$TMP/d.log" 2>&1 || fail "--checkpoint-dir alone: $(tail -3 "$TMP/d.log")"
[ -f "$TMP/d/step_00000003/model.h5" ] || fail "--checkpoint-dir alone wrote no checkpoint at the end: $(ls -R "$TMP/d" 2>&1)"
echo "ok  --checkpoint-dir alone: $(grep '^checkpoint ' "$TMP/d.log")"

# 2.
"$BIN" "${RUN[@]}" --steps 3 --resume --checkpoint-dir "$TMP/e" >"$TMP/e.log" 2>&1 || fail "--resume on a missing dir: $(tail -3 "$TMP/e.log")"
grep -q "^--resume: no checkpoint in $TMP/e yet, starting from the beginning" "$TMP/e.log" \
  || fail "no line saying the run starts over: $(head -3 "$TMP/e.log")"
[ -f "$TMP/e/step_00000003/model.h5" ] || fail "--resume on an empty dir wrote no checkpoint"
echo "ok  --resume on a missing directory starts and checkpoints there"

# 3.
"$BIN" "${RUN[@]}" --steps 5 --resume --checkpoint-dir "$TMP/e" >"$TMP/e2.log" 2>&1 || fail "resume: $(tail -3 "$TMP/e2.log")"
grep -q "^resumed from $TMP/e/step_00000003 at step 3" "$TMP/e2.log" || fail "did not resume: $(head -3 "$TMP/e2.log")"
[ -f "$TMP/e/step_00000005/model.h5" ] || fail "the resumed run wrote no checkpoint at its end"
echo "ok  the same command line continues the run"

# 4.
expect_error "fresh run into a used directory" "already holds a run" "$BIN" "${RUN[@]}" --steps 3 --checkpoint-dir "$TMP/d"
echo "PASS checkpoint_dir_resume"
