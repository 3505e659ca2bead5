#!/usr/bin/env bash
# ZeRO stages 0, 1, 2 on 1, 2, 3 and 4 ranks equal one process
# (optim/zero.h, optim/sharded_gradients.h).
#
# An untied Qwen3-shaped model of 93673 parameters (odd, and not a multiple
# of 3: no world size from 2 to 4 divides it, so the shards are uneven), a
# global batch of 12 rows (one process --batch 12; N ranks --batch 12/N, each
# taking its slice of every global batch, data/token_loader.h), 2 micro-batches
# per step and --grad-clip 0.3 (the clipping is active: the norm is above it).
# After 3 steps every tensor must equal the single process's to 1e-6
# relative. Controls: a run with another --lr fails the same comparison.
# Stages 1 and 2 hold the fp32 master of their shard only, beside the full
# weights, and all-gather the weights AdamW wrote (Transformer::shard_master;
# on the CPU the weights are fp32, so the path is the GPU's with exact
# copies): the per-rank memory report at start must say so. Stage 2 on
# N > 1 ranks: the measured peak gradient memory of every rank is below the
# full fp32 gradient (no rank ever holds it).
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
COMPARE=tests/cli/compare_model_bins.py
require_built "$BIN"
require_mpirun
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

write_token_shard "$TMP/shard_000.bin" 11 20000
cat >"$TMP/config.json" <<'JSON'
{"model_type": "qwen3", "hidden_size": 47, "num_hidden_layers": 3, "num_attention_heads": 3,
 "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 64, "vocab_size": 512,
 "max_position_embeddings": 64, "tie_word_embeddings": false}
JSON
COMMON=(--init "$TMP/config.json" --data "$TMP/shard_000.bin" --steps 3 --seq 16 --grad-accum 2
        --grad-clip 0.3 --lr 3e-4 --warmup-steps 0 --seed 4)
timeout 60 "$BIN" "${COMMON[@]}" --batch 12 --log "$TMP/single.jsonl" --out "$TMP/single.bin" \
  >"$TMP/single.log" 2>&1 || fail "single-process run: $(tail -3 "$TMP/single.log")"
grep -q '"grad_norm":[1-9]' "$TMP/single.jsonl" || grep -q '"grad_norm":0\.[3-9]' "$TMP/single.jsonl" \
  || fail "the gradient norm never exceeds --grad-clip 0.3: clipping is not exercised"

for ranks in 1 2 3 4; do
  for zero in 0 1 2; do
    name="np$ranks-zero$zero"
    timeout 60 mpirun -np $ranks --oversubscribe -x OMP_NUM_THREADS "$BIN" "${COMMON[@]}" \
      --batch $((12 / ranks)) --zero $zero --out "$TMP/$name.bin" >"$TMP/$name.log" 2>&1 \
      || fail "$name: $(tail -5 "$TMP/$name.log")"
    python3 "$COMPARE" "$TMP/single.bin" "$TMP/$name.bin" 1e-6 >"$TMP/$name.cmp" \
      || fail "$name differs from one process: $(cat "$TMP/$name.cmp")"
    echo "ok  $name: $(cat "$TMP/$name.cmp")"
    # The report at start: fp32 weights 4P, and from stage 1 on the master
    # is a shard of its own, 4S, moments 8S (optim/zero.h).
    [ $ranks -gt 1 ] || [ $zero -gt 0 ] || continue
    python3 - "$TMP/$name.log" $ranks $zero <<'PY' || fail "$name: the memory report is not the ZeRO formula"
import re, sys
log, n, stage = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
P = 93673; S = -(-P // n)
m = re.search(r"weights ([0-9.]+) MiB \(fp32\), fp32 master ([0-9.]+) MiB, grads [0-9.]+ MiB, "
              r"Adam moments ([0-9.]+) MiB", log)
mib = lambda b: "%.2f" % (b / 2**20)
want = (mib(4 * P), mib(4 * S if stage else 0), mib(8 * S if stage else 8 * P))
sys.exit(0 if m and m.groups() == want else print(m and m.groups(), "expected", want) or 1)
PY
  done
  [ $ranks -gt 1 ] || continue
  # "gradient memory per rank: peak X bytes measured (the largest rank), ZeRO-2
  # formula F bytes, full fp32 gradient G bytes"
  line=$(grep "^gradient memory per rank" "$TMP/np$ranks-zero2.log") \
    || fail "np$ranks --zero 2: no gradient memory line: $(head -5 "$TMP/np$ranks-zero2.log")"
  read -r peak formula full < <(echo "$line" | sed -E 's/.*peak ([0-9]+) .*formula ([0-9]+) .*gradient ([0-9]+) bytes.*/\1 \2 \3/')
  [ "$peak" -lt "$full" ] || fail "np$ranks --zero 2: peak gradient memory $peak >= the full buffer $full"
  [ "$peak" -le "$formula" ] || fail "np$ranks --zero 2: peak $peak above the formula's $formula"
  echo "ok  np$ranks --zero 2: peak gradient memory $peak bytes per rank < full $full"
done

# Control: another --lr must fail the same comparison.
timeout 60 mpirun -np 3 --oversubscribe -x OMP_NUM_THREADS "$BIN" "${COMMON[@]}" --batch 4 \
  --zero 2 --lr 3.003e-4 --out "$TMP/control.bin" >"$TMP/control.log" 2>&1 \
  || fail "control run: $(tail -5 "$TMP/control.log")"
python3 "$COMPARE" "$TMP/single.bin" "$TMP/control.bin" 1e-6 >/dev/null \
  && fail "the comparison cannot tell --lr 3.003e-4 from 1e-3"
echo "PASS"
