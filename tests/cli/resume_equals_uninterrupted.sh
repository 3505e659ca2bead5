#!/usr/bin/env bash
# A resumed run equals the uninterrupted one (src/train/run_checkpoint.h).
#
# For pre-training, SFT and GRPO (with its KL reference model): run 6 steps
# with --checkpoint-every 3, then resume a copy of the step-3 checkpoint to
# step 6. On the CPU every op is deterministic, so the final weights must be
# bit-identical. Then a checkpoint written by 2 ranks under ZeRO-1 resumes in
# one process (the moments are re-sharded) and matches the uninterrupted
# single process to float rounding. Also: a fresh run refuses a directory
# that holds a run, and --resume with another --lr is refused.
# Run from the repository root after `make`.
set -u
BIN=build/polaris_train
COMPARE=tests/cli/compare_model_bins.py
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

python3 - "$D/shard_000.bin" <<'PY' || fail "could not write the shard"
import random, struct, sys
random.seed(11)
n = 20000
header = [0] * 256
header[0], header[1], header[2] = 20240520, 1, n
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *[random.randrange(512) for _ in range(n)]))
PY

# check NAME ARGS...: uninterrupted vs resumed from step 3, bit for bit.
check() {
  local name=$1; shift
  timeout 120 "$BIN" "$@" --steps 6 --checkpoint-dir "$D/$name.full" --checkpoint-every 3 \
    --keep-last 0 --out "$D/$name.full.bin" >"$D/$name.full.log" 2>&1 \
    || fail "$name: uninterrupted run: $(tail -3 "$D/$name.full.log")"
  [ -d "$D/$name.full/step_00000003" ] || fail "$name: no step-3 checkpoint: $(ls "$D/$name.full")"
  mkdir -p "$D/$name.cut"
  cp -r "$D/$name.full/step_00000003" "$D/$name.cut/"
  echo step_00000003 >"$D/$name.cut/latest"
  timeout 120 "$BIN" "$@" --steps 6 --checkpoint-dir "$D/$name.cut" --checkpoint-every 3 --resume \
    --out "$D/$name.resumed.bin" >"$D/$name.resumed.log" 2>&1 \
    || fail "$name: resumed run: $(tail -3 "$D/$name.resumed.log")"
  grep -q "resumed from .*step_00000003 at step 3" "$D/$name.resumed.log" \
    || fail "$name: did not resume: $(head -5 "$D/$name.resumed.log")"
  [ "$(grep -c '^step ' "$D/$name.resumed.log")" = 3 ] || fail "$name: resumed run did not take 3 steps"
  cmp -s "$D/$name.full.bin" "$D/$name.resumed.bin" \
    || fail "$name: resumed weights differ from the uninterrupted run"
  echo "ok  $name: resumed at step 3, bit-identical at step 6"
}

check pretrain --init qwen3-tiny --data "$D/shard_000.bin" --batch 2 --seq 32 --lr 1e-3 --seed 1
check sft --init qwen3-demo --mode sft --task addition --train-examples 400 --batch 4 --seq 32 \
  --lr 1e-3 --seed 2
check grpo --init qwen3-demo --mode grpo --task addition --prompts-per-step 4 --group-size 4 \
  --max-response 4 --eval-samples 1 --eval-problems 8 --kl-coef 0.05 --entropy-coef 0.01 \
  --dynamic-sampling --temperature-schedule 0:1.0,4:1.2 --lr 1e-3 --seed 3

# A directory that holds a run is not silently overwritten.
"$BIN" --init qwen3-tiny --data "$D/shard_000.bin" --batch 2 --seq 32 --steps 6 \
  --checkpoint-dir "$D/pretrain.full" --checkpoint-every 3 >"$D/again.log" 2>"$D/again.err" \
  && fail "a fresh run reused a directory that holds a run"
grep -q "already holds a run" "$D/again.err" || fail "wrong message: $(cat "$D/again.err")"
# A resumed run must keep the flags that change the computation.
"$BIN" --init qwen3-tiny --data "$D/shard_000.bin" --batch 2 --seq 32 --steps 6 --lr 2e-3 \
  --seed 1 --checkpoint-dir "$D/pretrain.cut" --checkpoint-every 3 --resume \
  >"$D/lr.log" 2>"$D/lr.err" && fail "--resume accepted another --lr"
grep -q "^error: --resume: --lr was '1e-3'" "$D/lr.err" || fail "wrong message: $(cat "$D/lr.err")"
echo "ok  refusals"

# 2 ranks (ZeRO-1) save, one process resumes: the moments are re-sharded.
if command -v mpirun >/dev/null; then
  COMMON=(--init qwen3-tiny --data "$D/shard_000.bin" --seq 32 --lr 1e-3 --seed 4 --steps 6)
  timeout 120 mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS "$BIN" "${COMMON[@]}" --batch 2 \
    --zero 1 --checkpoint-dir "$D/mpi" --checkpoint-every 3 --keep-last 0 >"$D/mpi.log" 2>&1 \
    || fail "2-rank run: $(tail -5 "$D/mpi.log")"
  mkdir -p "$D/mpi.cut"
  cp -r "$D/mpi/step_00000003" "$D/mpi.cut/"
  echo step_00000003 >"$D/mpi.cut/latest"
  timeout 120 "$BIN" "${COMMON[@]}" --batch 4 --zero 1 --checkpoint-dir "$D/mpi.cut" \
    --checkpoint-every 3 --resume --out "$D/mpi.resumed.bin" >"$D/mpi.resumed.log" 2>&1 \
    || fail "1-process resume of a 2-rank checkpoint: $(tail -3 "$D/mpi.resumed.log")"
  grep -q "saved by 2 rank(s), ZeRO-1" "$D/mpi.resumed.log" || fail "no re-shard line"
  timeout 120 "$BIN" "${COMMON[@]}" --batch 4 --out "$D/mpi.single.bin" >/dev/null 2>&1 \
    || fail "single-process reference run"
  python3 "$COMPARE" "$D/mpi.single.bin" "$D/mpi.resumed.bin" \
    || fail "2 ranks -> 1 process resume differs from the uninterrupted single process"
  echo "ok  2-rank ZeRO-1 checkpoint resumed in 1 process"
fi
echo "ok: resumed runs equal uninterrupted ones"
