#!/usr/bin/env bash
# The multi-rank watchdog (optim/watchdog.h, polaris_train --rank-timeout):
#   1. a rank that hangs (POLARIS_STALL_RANK=1:S:hang, src/train/trainer.cpp:
#      it sleeps forever inside step S's forward+backward but its heartbeat
#      thread still speaks) ends the whole job within the timeout plus a few
#      seconds, with one line naming rank 1, the phase and the step;
#   2. a rank that stops itself (SIGSTOP: it cannot speak at all) is named by
#      its silence; rank 0 stopped is named by rank 1; with 3 ranks, ranks 0
#      and 1 stopped together are named by rank 2 (every rank judges, the
#      lowest still speaking prints); with 2 ranks, both hung (threads
#      alive, nobody's counter moves) end the job too;
#   3. a normal run with a short timeout is unaffected (exit 0, no line);
#   4. negative control: with --rank-timeout 0 the hanging job does hang
#      (killed by `timeout`), so it is the watchdog that ends it in 1 and 2;
#   5. bad values of --rank-timeout, and ranks that disagree on it, end in one
#      line naming the flag.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
require_mpirun
MPIRUN+=(-x POLARIS_STALL_RANK)
write_token_shard "$TMP/shard_000.bin" 7 5000
RUN=(--init qwen3-tiny --data "$TMP/shard_000.bin" --steps 400 --seq 32 --batch 2)
TIMEOUT=3

# stalled NAME SPEC WANT [RANKS]: the job of RANKS ranks (default 2) with
# POLARIS_STALL_RANK=SPEC ends with an error line matching the extended regex
# WANT, the whole run within TIMEOUT + 12 s (start-up and 20 steps take a
# second or two; the full 400 steps would take far longer).
stalled() {
  local name=$1 spec=$2 want=$3 ranks=${4:-2} start status elapsed
  start=$(date +%s)
  POLARIS_STALL_RANK=$spec timeout -k 5 60 "${MPIRUN[@]}" -np "$ranks" "$BIN" "${RUN[@]}" \
    --rank-timeout $TIMEOUT --out "$TMP/out.bin" >"$TMP/$name.log" 2>&1
  status=$?
  elapsed=$(( $(date +%s) - start ))
  [ $status -ne 0 ] || fail "$name: the stalled job exited 0"
  [ $status -ne 124 ] || fail "$name: the stalled job hung until killed after 60 s"
  [ $elapsed -le $((TIMEOUT + 12)) ] || fail "$name: the job took ${elapsed}s to end (timeout ${TIMEOUT}s)"
  grep -Eq "^error: $want; ending the job$" "$TMP/$name.log" \
    || fail "$name: no line matching '$want': $(grep -v '^step' "$TMP/$name.log" | head -5)"
  [ "$(grep -c 'made no progress' "$TMP/$name.log")" = 1 ] || fail "$name: not exactly one watchdog line"
  [ ! -e "$TMP/out.bin" ] || fail "$name: a stalled job wrote --out"
  echo "ok  $name (${elapsed}s in all): $(grep '^error:' "$TMP/$name.log")"
}
# The stall comes at step 20 (about a second in), after some heartbeats.
stalled hang 1:20:hang "rank 1 made no progress for [0-9]+ s \(last phase: forward\+backward, step 20\)"
stalled stop 1:20:stop "rank 1 made no progress for [0-9]+ s \(last phase: [a-z +-]+, step [0-9]+\)"
stalled "stop rank 0" 0:20:stop "rank 0 made no progress for [0-9]+ s \(last phase: [a-z +-]+, step [0-9]+\)"
stalled "stop ranks 0 and 1 of 3" 0,1:20:stop \
  "rank [01] made no progress for [0-9]+ s \(last phase: [a-z +-]+, step [0-9]+\)" 3
stalled "hang ranks 0 and 1 of 2" 0,1:20:hang \
  "rank [01] made no progress for [0-9]+ s \(last phase: forward\+backward, step 20\)"

# 3. Unaffected: a full run with the watchdog on.
timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" "${RUN[@]}" --steps 40 --rank-timeout $TIMEOUT \
  --out "$TMP/normal.bin" >"$TMP/normal.log" 2>&1 || fail "normal run: $(tail -5 "$TMP/normal.log")"
grep -q "made no progress" "$TMP/normal.log" && fail "normal run: the watchdog fired"
[ -s "$TMP/normal.bin" ] || fail "normal run wrote no --out"
echo "ok  a normal run with --rank-timeout $TIMEOUT finishes"

# 4. Negative control: no watchdog, the same stall hangs.
POLARIS_STALL_RANK=1:20:hang timeout -k 5 $((TIMEOUT + 8)) "${MPIRUN[@]}" -np 2 "$BIN" "${RUN[@]}" \
  --rank-timeout 0 >"$TMP/control.log" 2>&1
status=$?
[ $status -eq 124 ] || fail "control: without the watchdog the stalled job ended ($status): $(tail -3 "$TMP/control.log")"
echo "ok  without the watchdog (--rank-timeout 0) the stalled job hangs"

# 5. Bad values.
expect_error "--rank-timeout -1" "--rank-timeout" "$BIN" "${RUN[@]}" --rank-timeout -1
expect_error "--rank-timeout nan" "--rank-timeout" "$BIN" "${RUN[@]}" --rank-timeout nan
timeout 60 "${MPIRUN[@]}" -np 1 "$BIN" "${RUN[@]}" --rank-timeout 5 : -np 1 "$BIN" "${RUN[@]}" \
  --rank-timeout 6 >"$TMP/disagree.log" 2>&1 && fail "ranks with different --rank-timeout ran"
grep -q "error: ranks disagree on --rank-timeout" "$TMP/disagree.log" \
  || fail "no line naming --rank-timeout: $(tail -3 "$TMP/disagree.log")"
echo "PASS watchdog"
