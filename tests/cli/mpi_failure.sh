#!/usr/bin/env bash
# A failing rank ends the whole MPI job (optim/comm.h): run_main prints the
# error and MpiComm's fatal hook calls MPI_Abort, so the other rank, blocked
# in the gradient all-reduce, is killed instead of hanging.
#   1. POLARIS_FAIL_RANK=1 (src/train/trainer.cpp: rank 1 throws at its first
#      optimizer step): the job exits non-zero within 10 s, naming the fault.
#   2. Ranks given different --batch: every rank stops with a line naming --batch.
#   3. --comm nccl and --prompts-per-step not divisible by the ranks: clear errors.
# Run from the repository root after `make`.
set -u
BIN=build/polaris_train
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (make deps installs openmpi-bin)"; exit 1; }
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe -x OMP_NUM_THREADS)

python3 - "$DIR/shard_000.bin" <<'PY' || fail "could not write the shard"
import random, struct, sys
random.seed(7)
n = 5000
header = [0] * 256
header[0], header[1], header[2] = 20240520, 1, n
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *[random.randrange(512) for _ in range(n)]))
PY
RUN=(--init qwen3-tiny --data "$DIR/shard_000.bin" --steps 50 --seq 32 --zero 1)

# 1. An injected fault on rank 1.
start=$(date +%s)
POLARIS_FAIL_RANK=1 timeout 30 "${MPIRUN[@]}" -np 2 -x POLARIS_FAIL_RANK "$BIN" "${RUN[@]}" \
  --batch 2 --out "$DIR/out.bin" >"$DIR/fault.log" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
[ $status -ne 0 ] || fail "the job with a failing rank exited 0"
[ $status -ne 124 ] || fail "the job with a failing rank hung (killed by timeout after 30 s)"
[ $elapsed -le 10 ] || fail "the job took ${elapsed}s to end after a rank failed (want <= 10 s)"
grep -q "error: injected fault on rank 1" "$DIR/fault.log" || fail "no error line: $(tail -5 "$DIR/fault.log")"
[ ! -e "$DIR/out.bin" ] || fail "a failed job wrote --out"

# 2. Ranks that disagree on --batch (MPMD: one command line per rank).
start=$(date +%s)
timeout 30 "${MPIRUN[@]}" -np 1 "$BIN" "${RUN[@]}" --batch 2 : -np 1 "$BIN" "${RUN[@]}" --batch 4 \
  >"$DIR/batch.log" 2>&1
status=$?
[ $status -ne 0 ] || fail "ranks with different --batch ran"
[ $status -ne 124 ] || fail "ranks with different --batch hung"
grep -q "error: ranks disagree on --batch" "$DIR/batch.log" || fail "no line naming --batch: $(tail -5 "$DIR/batch.log")"

# 3. Flags that cannot work.
timeout 30 "$BIN" "${RUN[@]}" --batch 2 --comm nccl >"$DIR/nccl.log" 2>&1 && fail "--comm nccl ran"
grep -q "error: --comm nccl" "$DIR/nccl.log" || fail "no line naming --comm nccl: $(cat "$DIR/nccl.log")"
timeout 30 "${MPIRUN[@]}" -np 2 "$BIN" --mode grpo --task addition --init qwen3-tiny --steps 1 \
  --batch 2 --seq 32 --prompts-per-step 3 --group-size 2 --max-response 4 >"$DIR/grpo.log" 2>&1 \
  && fail "--prompts-per-step 3 ran on 2 ranks"
grep -q "error: --prompts-per-step 3 must be divisible" "$DIR/grpo.log" \
  || fail "no line naming --prompts-per-step: $(tail -5 "$DIR/grpo.log")"
echo "PASS"
