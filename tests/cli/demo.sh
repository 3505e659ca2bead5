#!/usr/bin/env bash
# `make demo`: polaris_train with no arguments trains the built-in tiny model
# on 2-digit addition written column by column. The loss must fall from
# chance (ln 64 ~ 4.2) to near zero, samples must be printed, and the
# held-out problems (never seen in training) must be solved.
# It runs under `mpirun -np 2`: with no arguments the demo is data parallel
# (src/train/builtin_demo.cpp), the same math as one process, each rank
# taking half of every step's rows; rank 0 alone prints, so every line
# appears once.
# Run from the repository root after `make` (about 30 s on 2 cores).
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
require_mpirun

(cd "$TMP" && timeout 600 "${MPIRUN[@]}" -np 2 "$OLDPWD/$BIN") >"$TMP/out" 2>"$TMP/err" \
  || fail "the demo failed: $(tail -3 "$TMP/err")"
grep -q '^data parallel: 2 ranks over mpi' "$TMP/out" || fail "not data parallel: $(head -5 "$TMP/out")"
[ "$(grep -c '^Polaris built-in demo' "$TMP/out")" = 1 ] || fail "the banner is printed by more than one rank"
dups=$(grep '^step ' "$TMP/out" | sort | uniq -d | head -2)
[ -z "$dups" ] || fail "step lines printed twice: $dups"
[ -s "$TMP/err" ] && fail "the demo wrote to stderr: $(head -3 "$TMP/err")"
first=$(grep -m1 '^step ' "$TMP/out" | sed -E 's/.*loss ([0-9.]+).*/\1/')
last=$(grep '^step ' "$TMP/out" | tail -1 | sed -E 's/.*loss ([0-9.]+).*/\1/')
grep -q '^step 600/600 ' "$TMP/out" || fail "the demo did not reach step 600"
python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(not (a > 3.5 and b < 0.1))" \
  "$first" "$last" || fail "the loss did not fall from chance to near zero: $first -> $last"
samples=$(grep -cE '^  [0-9]+\+[0-9]+= .* (correct|wrong)$' "$TMP/out")
[ "$samples" -ge 5 ] || fail "fewer than 5 greedy samples printed ($samples)"
solved=$(sed -nE 's/^held-out accuracy: ([0-9]+)\/([0-9]+) .*/\1 \2/p' "$TMP/out")
[ -n "$solved" ] || fail "no held-out accuracy line"
set -- $solved
[ "$1" -ge $(( $2 * 9 / 10 )) ] || fail "held-out accuracy $1/$2 is below 90%"
[ -z "$(ls -A "$TMP" | grep -v '^out$\|^err$')" ] || fail "the demo left files behind: $(ls "$TMP")"
echo "PASS demo: loss $first -> $last, $samples samples, held-out $1/$2"
