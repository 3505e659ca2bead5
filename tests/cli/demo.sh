#!/usr/bin/env bash
# `make demo`: polaris_train with no arguments trains the built-in tiny model
# on 2-digit addition written column by column. The loss must fall from
# chance (ln 64 ~ 4.2) to near zero, samples must be printed, and the
# held-out problems (never seen in training) must be solved.
# Run from the repository root after `make` (about 30 s on 2 cores).
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"

(cd "$TMP" && timeout 600 "$OLDPWD/$BIN") >"$TMP/out" 2>"$TMP/err" \
  || fail "the demo failed: $(tail -3 "$TMP/err")"
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
