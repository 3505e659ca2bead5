#!/usr/bin/env bash
# Ranks must train on the same inputs (src/train/options.cpp, data/input_fingerprint.h):
# at start every input's fingerprint (its files' sizes and contents) is compared
# across ranks, and a mismatch ends the job with a line naming the flag.
#   1. --data: two shards of the same size, different tokens -> "--data";
#   2. the model file: two model.bin of the same shape, different weights;
#   3. --init: different presets;
#   4. positive control: the same shard under two different paths runs.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
require_mpirun
write_token_shard "$TMP/a.bin" 7 3000
write_token_shard "$TMP/b.bin" 8 3000
cp "$TMP/a.bin" "$TMP/a_copy.bin"
COMMON=(--steps 2 --seq 16 --batch 2)

# disagree NAME WORD RANK0_ARGS -- RANK1_ARGS: the two-rank job fails with a
# "ranks disagree on WORD" line.
disagree() {
  local name=$1 word=$2 status=0 zero=() one=(); shift 2
  while [ "$1" != "--" ]; do zero+=("$1"); shift; done; shift
  one=("$@")
  timeout 60 "${MPIRUN[@]}" -np 1 "$BIN" "${zero[@]}" "${COMMON[@]}" : -np 1 "$BIN" "${one[@]}" \
    "${COMMON[@]}" >"$TMP/$name.log" 2>&1 || status=$?
  [ $status -ne 0 ] || fail "$name: ranks given different inputs ran"
  [ $status -ne 124 ] || fail "$name: the job hung"
  grep -q "^error: ranks disagree on $word" "$TMP/$name.log" \
    || fail "$name: no line naming $word: $(grep -v '^-\|^ *$' "$TMP/$name.log" | head -3)"
  echo "ok  $name: $(grep -m1 '^error:' "$TMP/$name.log")"
}

disagree data "--data" --init qwen3-tiny --data "$TMP/a.bin" -- --init qwen3-tiny --data "$TMP/b.bin"

timeout 60 "$BIN" --init qwen3-tiny --data "$TMP/a.bin" "${COMMON[@]}" --out "$TMP/m1.bin" >/dev/null \
  || fail "setup: model 1"
timeout 60 "$BIN" --init qwen3-tiny --data "$TMP/a.bin" "${COMMON[@]}" --seed 9 --out "$TMP/m2.bin" \
  >/dev/null || fail "setup: model 2"
[ "$(stat -c %s "$TMP/m1.bin")" = "$(stat -c %s "$TMP/m2.bin")" ] || fail "setup: models differ in size"
disagree model "the model file" "$TMP/m1.bin" --data "$TMP/a.bin" -- "$TMP/m2.bin" --data "$TMP/a.bin"
disagree init "--init" --init qwen3-tiny --data "$TMP/a.bin" -- --init gpt2-tiny --data "$TMP/a.bin"

# 4. The same bytes under another path: the ranks agree and train.
timeout 60 "${MPIRUN[@]}" -np 1 "$BIN" --init qwen3-tiny --data "$TMP/a.bin" "${COMMON[@]}" : \
  -np 1 "$BIN" --init qwen3-tiny --data "$TMP/a_copy.bin" "${COMMON[@]}" >"$TMP/same.log" 2>&1 \
  || fail "the same data under two paths: $(grep -m3 'error' "$TMP/same.log")"
echo "ok  the same shard under two paths trains"
echo "PASS mpi_input_fingerprints"
