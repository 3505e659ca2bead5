#!/usr/bin/env bash
# A resumed run equals the uninterrupted one (src/train/run_checkpoint.h).
#
# For pre-training, SFT and GRPO (with its KL reference model): run 6 steps
# with --checkpoint-every 3, then resume a copy of the step-3 checkpoint to
# step 6. On the CPU every op is deterministic, so the final weights must be
# bit-identical, and the resumed --log, which starts as a copy of the whole
# run's log plus a torn line (a crash after step 6 that only the step-3
# checkpoint survived), must read like the uninterrupted log. Then a checkpoint written by 2 ranks under ZeRO-1 resumes in
# one process (the moments are re-sharded) and matches the uninterrupted
# single process to float rounding. Also: a fresh run refuses a directory
# that holds a run, and --resume with another --lr is refused.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
COMPARE=tests/cli/compare_model_bins.py
require_built "$BIN" build/polaris_convert
export OMP_NUM_THREADS=1

write_token_shard "$TMP/shard_000.bin" 11 20000

# check NAME ARGS...: uninterrupted vs resumed from step 3, bit for bit.
check() {
  local name=$1; shift
  timeout 120 "$BIN" "$@" --steps 6 --checkpoint-dir "$TMP/$name.full" --checkpoint-every 3 \
    --keep-last 0 --log "$TMP/$name.full.jsonl" --out "$TMP/$name.full.bin" >"$TMP/$name.full.log" 2>&1 \
    || fail "$name: uninterrupted run: $(tail -3 "$TMP/$name.full.log")"
  [ -d "$TMP/$name.full/step_00000003" ] || fail "$name: no step-3 checkpoint: $(ls "$TMP/$name.full")"
  mkdir -p "$TMP/$name.cut"
  cp -r "$TMP/$name.full/step_00000003" "$TMP/$name.cut/"
  echo step_00000003 >"$TMP/$name.cut/latest"
  { cat "$TMP/$name.full.jsonl"; printf '{"step": 7, "lo'; } >"$TMP/$name.cut.jsonl"
  timeout 120 "$BIN" "$@" --steps 6 --checkpoint-dir "$TMP/$name.cut" --checkpoint-every 3 --resume \
    --log "$TMP/$name.cut.jsonl" --out "$TMP/$name.resumed.bin" >"$TMP/$name.resumed.log" 2>&1 \
    || fail "$name: resumed run: $(tail -3 "$TMP/$name.resumed.log")"
  grep -q "resumed from .*step_00000003 at step 3" "$TMP/$name.resumed.log" \
    || fail "$name: did not resume: $(head -5 "$TMP/$name.resumed.log")"
  [ "$(grep -c '^step ' "$TMP/$name.resumed.log")" = 3 ] || fail "$name: resumed run did not take 3 steps"
  cmp -s "$TMP/$name.full.bin" "$TMP/$name.resumed.bin" \
    || fail "$name: resumed weights differ from the uninterrupted run"
  python3 - "$TMP/$name.full.jsonl" "$TMP/$name.cut.jsonl" <<'PY' || fail "$name: resumed --log differs"
import json, sys
def records(path):  # every field but the timings
    return [{k: v for k, v in json.loads(line).items() if not (k.endswith("ms") or "per_s" in k)}
            for line in open(path)]
full, resumed = records(sys.argv[1]), records(sys.argv[2])
if full != resumed:
    sys.exit("uninterrupted log:\n%s\nresumed log:\n%s" % (full, resumed))
PY
  echo "ok  $name: resumed at step 3, bit-identical at step 6, same log"
}

check pretrain --init qwen3-tiny --data "$TMP/shard_000.bin" --batch 2 --seq 32 --lr 1e-3 --seed 1
# A checkpoint's weights export to the model.bin the run itself wrote.
build/polaris_convert --from-checkpoint "$TMP/pretrain.full" --out "$TMP/exported.bin" >/dev/null \
  || fail "polaris_convert --from-checkpoint"
cmp -s "$TMP/exported.bin" "$TMP/pretrain.full.bin" || fail "exported checkpoint differs from --out"
echo "ok  polaris_convert --from-checkpoint equals the run's --out"
check sft --init qwen3-demo --mode sft --task addition --train-examples 400 --batch 4 --seq 32 \
  --lr 1e-3 --seed 2
check grpo --init qwen3-demo --mode grpo --task addition --prompts-per-step 4 --group-size 4 \
  --max-response 4 --eval-samples 1 --eval-problems 8 --kl-coef 0.05 --entropy-coef 0.01 \
  --dynamic-sampling --temperature-schedule 0:1.0,4:1.2 --lr 1e-3 --seed 3

# A directory that holds a run is not silently overwritten.
"$BIN" --init qwen3-tiny --data "$TMP/shard_000.bin" --batch 2 --seq 32 --steps 6 \
  --checkpoint-dir "$TMP/pretrain.full" --checkpoint-every 3 >"$TMP/again.log" 2>"$TMP/again.err" \
  && fail "a fresh run reused a directory that holds a run"
grep -q "already holds a run" "$TMP/again.err" || fail "wrong message: $(cat "$TMP/again.err")"
# A resumed run must keep the flags that change the computation.
"$BIN" --init qwen3-tiny --data "$TMP/shard_000.bin" --batch 2 --seq 32 --steps 6 --lr 2e-3 \
  --seed 1 --checkpoint-dir "$TMP/pretrain.cut" --checkpoint-every 3 --resume \
  >"$TMP/lr.log" 2>"$TMP/lr.err" && fail "--resume accepted another --lr"
grep -q "^error: --resume: --lr was '0.001'" "$TMP/lr.err" || fail "wrong message: $(cat "$TMP/lr.err")"
echo "ok  refusals"

# 2 ranks (ZeRO-1) save, one process resumes: the moments are re-sharded.
if have_mpirun; then
  COMMON=(--init qwen3-tiny --data "$TMP/shard_000.bin" --seq 32 --lr 1e-3 --seed 4 --steps 6)
  timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" "${COMMON[@]}" --batch 2 \
    --zero 1 --checkpoint-dir "$TMP/mpi" --checkpoint-every 3 --keep-last 0 >"$TMP/mpi.log" 2>&1 \
    || fail "2-rank run: $(tail -5 "$TMP/mpi.log")"
  mkdir -p "$TMP/mpi.cut"
  cp -r "$TMP/mpi/step_00000003" "$TMP/mpi.cut/"
  echo step_00000003 >"$TMP/mpi.cut/latest"
  timeout 120 "$BIN" "${COMMON[@]}" --batch 4 --zero 1 --checkpoint-dir "$TMP/mpi.cut" \
    --checkpoint-every 3 --resume --out "$TMP/mpi.resumed.bin" >"$TMP/mpi.resumed.log" 2>&1 \
    || fail "1-process resume of a 2-rank checkpoint: $(tail -3 "$TMP/mpi.resumed.log")"
  grep -q "saved by 2 rank(s), ZeRO-1" "$TMP/mpi.resumed.log" || fail "no re-shard line"
  timeout 120 "$BIN" "${COMMON[@]}" --batch 4 --out "$TMP/mpi.single.bin" >/dev/null 2>&1 \
    || fail "single-process reference run"
  python3 "$COMPARE" "$TMP/mpi.single.bin" "$TMP/mpi.resumed.bin" \
    || fail "2 ranks -> 1 process resume differs from the uninterrupted single process"
  echo "ok  2-rank ZeRO-1 checkpoint resumed in 1 process"
fi
echo "ok: resumed runs equal uninterrupted ones"
