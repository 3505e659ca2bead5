#!/usr/bin/env bash
# One error per job (optim/comm.h): a failing rank waits briefly for the
# others; when every rank fails alike the job prints one line (rank 0's) and
# exits 1 without an abort, and when only some ranks fail the line names the
# rank and MPI_Abort ends the job, so the others, blocked in the gradient
# all-reduce, are killed instead of hanging.
#   1. POLARIS_FAIL_RANK=1 (src/train/trainer.cpp: rank 1 throws at its first
#      optimizer step): the job exits non-zero within 20 s, "error: rank 1: ...".
#   2. Ranks given different --batch: one line naming --batch.
#   3. --comm nccl on the CPU backend and --prompts-per-step not divisible by
#      the ranks: clear errors.
#   4. A rank killed (SIGKILL) mid-run: mpirun ends the other within 10 s.
#   5. Ranks started on different models: every rank stops at start, naming --init.
#   6. `mpirun -np 4 polaris_train model.bin` with nothing else: one error
#      line (rank 0's, naming --data), not one per rank.
#   7. Every rank fails the same way (a bad flag, a missing file): stderr is
#      exactly one line, without a rank, and no MPI_ABORT (mpirun -q, so
#      mpirun's own note about a non-zero exit is left out).
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN" build/polaris_convert
require_mpirun

write_token_shard "$TMP/shard_000.bin" 7 5000
RUN=(--init qwen3-tiny --data "$TMP/shard_000.bin" --steps 50 --seq 32 --zero 1)

# 1. An injected fault on rank 1.
start=$(date +%s)
POLARIS_FAIL_RANK=1 timeout 30 "${MPIRUN[@]}" -np 2 -x POLARIS_FAIL_RANK "$BIN" "${RUN[@]}" \
  --batch 2 --out "$TMP/out.bin" >"$TMP/fault.log" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
[ $status -ne 0 ] || fail "the job with a failing rank exited 0"
[ $status -ne 124 ] || fail "the job with a failing rank hung (killed by timeout after 30 s)"
[ $elapsed -le 20 ] || fail "the job took ${elapsed}s to end after a rank failed (want <= 20 s)"
grep -q "^error: rank 1: injected fault on rank 1" "$TMP/fault.log" || fail "no error line naming rank 1: $(tail -5 "$TMP/fault.log")"
[ ! -e "$TMP/out.bin" ] || fail "a failed job wrote --out"

# 2. Ranks that disagree on --batch (MPMD: one command line per rank).
start=$(date +%s)
timeout 30 "${MPIRUN[@]}" -np 1 "$BIN" "${RUN[@]}" --batch 2 : -np 1 "$BIN" "${RUN[@]}" --batch 4 \
  >"$TMP/batch.log" 2>&1
status=$?
[ $status -ne 0 ] || fail "ranks with different --batch ran"
[ $status -ne 124 ] || fail "ranks with different --batch hung"
grep -q "error: ranks disagree on --batch" "$TMP/batch.log" || fail "no line naming --batch: $(tail -5 "$TMP/batch.log")"

# 3. Flags that cannot work.
timeout 30 "$BIN" "${RUN[@]}" --batch 2 --comm nccl >"$TMP/nccl.log" 2>&1 && fail "--comm nccl ran"
grep -q "error: --comm nccl" "$TMP/nccl.log" || fail "no line naming --comm nccl: $(cat "$TMP/nccl.log")"
timeout 30 "${MPIRUN[@]}" -np 2 "$BIN" --mode grpo --task addition --init qwen3-tiny --steps 1 \
  --batch 2 --prompts-per-step 3 --group-size 2 --max-response 4 >"$TMP/grpo.log" 2>&1 \
  && fail "--prompts-per-step 3 ran on 2 ranks"
grep -q "error: --prompts-per-step 3 must be divisible" "$TMP/grpo.log" \
  || fail "no line naming --prompts-per-step: $(tail -5 "$TMP/grpo.log")"

# 4. SIGKILL one rank mid-run (after rank 0 printed its first step).
"${MPIRUN[@]}" -np 2 "$BIN" "${RUN[@]}" --steps 100000 --batch 2 \
  >"$TMP/kill.log" 2>&1 &
job=$!
for _ in $(seq 200); do grep -q '^step ' "$TMP/kill.log" && break; sleep 0.1; done
grep -q '^step ' "$TMP/kill.log" || { kill $job; fail "the run never printed a step: $(tail -3 "$TMP/kill.log")"; }
victim=""
for pid in $(ps -o pid= --ppid $job); do
  grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$pid/environ 2>/dev/null && victim=$pid
done
[ -n "$victim" ] || { kill $job; fail "could not find rank 1's process"; }
start=$(date +%s)
kill -9 "$victim"
for _ in $(seq 150); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then kill $job; fail "rank 0 still runs 15 s after rank 1 was killed"; fi
wait $job && fail "the job with a killed rank exited 0"
echo "ok  rank 1 killed: the job ended in $(( $(date +%s) - start )) s"

# 5. Different models behind the same flags: "--init config.json" read in
# a different working directory on each rank (as the same path on two nodes
# can hold different files): qwen3-tiny's shape, and a one-layer one.
mkdir -p "$TMP/a" "$TMP/b"
for layers in 2 1; do
  dir=$([ $layers = 2 ] && echo a || echo b)
  cat >"$TMP/$dir/config.json" <<JSON
{"model_type": "qwen3", "hidden_size": 128, "num_hidden_layers": $layers, "num_attention_heads": 4,
 "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 256, "vocab_size": 512,
 "max_position_embeddings": 256, "tie_word_embeddings": true}
JSON
done
SAME=(--init config.json --data "$TMP/shard_000.bin" --steps 50 --seq 32 --zero 1 --batch 2)
timeout 30 "${MPIRUN[@]}" -np 1 -wdir "$TMP/a" "$PWD/$BIN" "${SAME[@]}" : \
  -np 1 -wdir "$TMP/b" "$PWD/$BIN" "${SAME[@]}" >"$TMP/model.log" 2>&1
status=$?
[ $status -ne 0 ] && [ $status -ne 124 ] || fail "ranks on different models: exit $status"
# The inputs' fingerprints (data/input_fingerprint.h) catch it first, naming --init.
grep -q "error: ranks disagree on --init: a fingerprint" "$TMP/model.log" \
  || fail "no line naming --init: $(tail -5 "$TMP/model.log")"

# 6. The README's command with nothing after the model.
build/polaris_convert --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/model.bin" >/dev/null \
  || fail "setup: converting the qwen3_tiny fixture"
timeout 30 "${MPIRUN[@]}" -np 4 "$BIN" "$TMP/model.bin" >"$TMP/bare.log" 2>&1 \
  && fail "a run without --data exited 0"
[ "$(grep -c '^error: ' "$TMP/bare.log")" = 1 ] \
  || fail "want one error line from 4 ranks: $(grep '^error: ' "$TMP/bare.log")"
grep -q "^error: .*--data" "$TMP/bare.log" || fail "the error does not name --data: $(cat "$TMP/bare.log")"

# 7. The same error on every rank: one line.
one_line_job() {  # NAME WORD ARGS...: mpirun -q -np 2 polaris_train ARGS fails with one stderr line
  local name=$1 word=$2 status=0; shift 2
  timeout 60 "${MPIRUN[@]}" -q -np 2 "$BIN" "$@" >"$TMP/one.out" 2>"$TMP/one.err" || status=$?
  [ $status -eq 1 ] || fail "$name: exit $status, expected 1: $(cat "$TMP/one.err")"
  [ "$(wc -l <"$TMP/one.err")" -eq 1 ] || fail "$name: not one line: $(cat "$TMP/one.err")"
  grep -q "^error: .*$word" "$TMP/one.err" || fail "$name: '$word' not in: $(cat "$TMP/one.err")"
  if grep -q "rank" "$TMP/one.err"; then fail "$name: a shared error names a rank: $(cat "$TMP/one.err")"; fi
  echo "ok  $name: $(cat "$TMP/one.err")"
}
one_line_job "unknown flag on every rank" "unknown flag --bogus" "${RUN[@]}" --batch 2 --bogus 1
one_line_job "missing data on every rank" "--data" --init qwen3-tiny --data "$TMP/missing_*.bin" --steps 1
one_line_job "flag outside its mode" "--group-size does not apply" "${RUN[@]}" --group-size 4
echo "PASS"
