#!/usr/bin/env bash
# Data parallel equals one process (optim/comm.h, optim/zero.h).
#
# Pre-training: one process at --batch 4 and `mpirun -np 2` at --batch 2 see
# the same global rows (rank r takes rows [2r, 2r+2) of each global batch of 4,
# data/token_loader.h) and divide by the same GLOBAL loss normaliser, so the
# final weights must agree to float rounding (1e-5 relative per tensor) for
# --zero 0, 1 and 2. A control run with another --lr must FAIL the same check,
# so the comparison can tell runs apart. SFT on --task addition: 2 ranks vs 1.
# GRPO on --task addition with 2 ranks completes and logs each step once.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
COMPARE=tests/cli/compare_model_bins.py
require_built "$BIN"
require_mpirun
TWO_RANKS=(timeout 60 "${MPIRUN[@]}" -np 2)

# A token shard: 256 int32 header (magic, version 1 = uint16, count), tokens < 512.
write_token_shard "$TMP/shard_000.bin" 7 20000

COMMON=(--init qwen3-tiny --data "$TMP/shard_000.bin" --steps 4 --seq 32 --grad-accum 2
        --grad-clip 1.0 --seed 1)
timeout 60 "$BIN" "${COMMON[@]}" --batch 4 --out "$TMP/single.bin" >"$TMP/single.log" 2>&1 \
  || fail "single-process run: $(tail -3 "$TMP/single.log")"
for zero in 0 1 2; do
  "${TWO_RANKS[@]}" "$BIN" "${COMMON[@]}" --batch 2 --zero $zero --log "$TMP/z$zero.jsonl" \
    --out "$TMP/z$zero.bin" >"$TMP/z$zero.log" 2>&1 \
    || fail "mpirun -np 2 --zero $zero: $(tail -5 "$TMP/z$zero.log")"
  python3 "$COMPARE" "$TMP/single.bin" "$TMP/z$zero.bin" \
    || fail "--zero $zero: 2 ranks differ from one process"
  [ "$(wc -l <"$TMP/z$zero.jsonl")" = 4 ] || fail "--zero $zero: --log has $(wc -l <"$TMP/z$zero.jsonl") records, want 4 (rank 0 only)"
  [ "$(grep -c '^step ' "$TMP/z$zero.log")" = 4 ] || fail "--zero $zero: console printed $(grep -c '^step ' "$TMP/z$zero.log") step lines, want 4"
done
grep -q "ZeRO-1 over 2 ranks" "$TMP/z1.log" || fail "no per-rank memory report: $(head -3 "$TMP/z1.log")"

# Control: a different --lr must not pass the same comparison.
"${TWO_RANKS[@]}" "$BIN" "${COMMON[@]}" --batch 2 --zero 1 --lr 4e-4 --out "$TMP/control.bin" \
  >"$TMP/control.log" 2>&1 || fail "control run: $(tail -5 "$TMP/control.log")"
python3 "$COMPARE" "$TMP/single.bin" "$TMP/control.bin" \
  && fail "the comparison cannot tell --lr 4e-4 from the default"

# SFT on a built-in task: 2 ranks at --batch 2 vs one process at --batch 4.
SFT=(--mode sft --task addition --train-examples 400 --init qwen3-tiny --steps 3 --seq 32
     --grad-accum 1 --seed 3 --lr 1e-3 --val-every 100)
timeout 60 "$BIN" "${SFT[@]}" --batch 4 --out "$TMP/sft1.bin" >"$TMP/sft1.log" 2>&1 \
  || fail "SFT single process: $(tail -3 "$TMP/sft1.log")"
"${TWO_RANKS[@]}" "$BIN" "${SFT[@]}" --batch 2 --zero 1 --out "$TMP/sft2.bin" >"$TMP/sft2.log" 2>&1 \
  || fail "SFT 2 ranks: $(tail -5 "$TMP/sft2.log")"
python3 "$COMPARE" "$TMP/sft1.bin" "$TMP/sft2.bin" || fail "SFT: 2 ranks differ from one process"

# GRPO with 2 ranks: completes, one log record per step. The KL and entropy
# terms make every step update the weights even when a fresh model earns no
# reward (groups of equal rewards alone would skip the optimizer step).
"${TWO_RANKS[@]}" "$BIN" --mode grpo --task addition --init qwen3-tiny --steps 2 --batch 4 \
  --prompts-per-step 2 --group-size 4 --max-response 8 --eval-problems 4 --eval-samples 2 \
  --kl-coef 0.01 --entropy-coef 0.01 --zero 2 --seed 5 --log "$TMP/grpo.jsonl" \
  >"$TMP/grpo.log" 2>&1 || fail "GRPO 2 ranks: $(tail -5 "$TMP/grpo.log")"
steps=$(grep -c '"reward"' "$TMP/grpo.jsonl")
[ "$steps" = 2 ] || fail "GRPO --log has $steps step records, want 2: $(cat "$TMP/grpo.jsonl")"
updates=$(grep -c '"optimizer_steps"' "$TMP/grpo.jsonl")
[ "$updates" = 2 ] || fail "GRPO: $updates of 2 steps updated the weights: $(cat "$TMP/grpo.jsonl")"
echo "PASS"
