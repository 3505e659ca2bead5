#!/usr/bin/env bash
# polaris_tokenize shards --val-fraction F holds out about F of the tokens,
# whatever the corpus looks like, and says how it split:
#   1. one large text file beside a few JSONL lines (documents few and uneven):
#      "by tokens", and the validation shards hold 2-10% of the tokens at F = 0.05
#      (whole documents would send the text file, ~95% of the tokens, one way);
#   2. 400 JSONL lines of even length: "by documents", 20 of 400, about 5%;
#   3. --val-fraction 0: "none", no validation shard.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_tokenize
QWEN=tests/fixtures/qwen3_tokenizer/tokenizer.json
require_built "$BIN"
export OMP_NUM_THREADS=1

python3 - "$TMP" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(3)
words = "the of model token gradient batch layer tensor value shard rank step loss curve".split()
with open(d + "/book.txt", "w") as f:
    for line in range(600):
        f.write(" ".join(random.choice(words) for _ in range(8)) + ".\n")
with open(d + "/few.jsonl", "w") as f:
    for i in range(5):
        f.write(json.dumps({"text": "A short note number %d." % i}) + "\n")
with open(d + "/even.jsonl", "w") as f:
    for i in range(400):
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(8))}) + "\n")
PY

# tokens PREFIX SPLIT: the tokens in PREFIX_SPLIT_*.bin (header word 2 of each).
tokens() {
  local total=0 shard count
  for shard in "$1"_"$2"_*.bin; do
    [ -f "$shard" ] || continue
    count=$(od -An -t d4 -j 8 -N 4 "$shard" | tr -d ' ')
    total=$((total + count))
  done
  echo "$total"
}

# share_between PREFIX LOW HIGH: LOW <= val / (train + val) <= HIGH.
share_between() {
  local train val
  train=$(tokens "$1" train); val=$(tokens "$1" val)
  python3 -c "import sys; s = $val / ($train + $val); print('%.3f' % s); sys.exit(0 if $2 <= s <= $3 else 1)"
}

# 1. Few, uneven documents.
"$BIN" shards --tokenizer "$QWEN" --out "$TMP/uneven" --val-fraction 0.05 "$TMP/book.txt" "$TMP/few.jsonl" \
  2>"$TMP/uneven.log" || fail "shards failed: $(cat "$TMP/uneven.log")"
grep -q "^validation split: by tokens" "$TMP/uneven.log" || fail "split not by tokens: $(cat "$TMP/uneven.log")"
share=$(share_between "$TMP/uneven" 0.02 0.10) || fail "uneven corpus: validation share $share, want 0.02-0.10"
echo "ok  uneven corpus: $(grep '^validation split' "$TMP/uneven.log"); share $share"

# 2. Many even documents.
"$BIN" shards --tokenizer "$QWEN" --out "$TMP/even" --val-fraction 0.05 "$TMP/even.jsonl" \
  2>"$TMP/even.log" || fail "shards failed: $(cat "$TMP/even.log")"
grep -q "^validation split: by documents: 20 of 400" "$TMP/even.log" || fail "split not by documents: $(cat "$TMP/even.log")"
share=$(share_between "$TMP/even" 0.03 0.07) || fail "even corpus: validation share $share, want 0.03-0.07"
echo "ok  even corpus: $(grep '^validation split' "$TMP/even.log"); share $share"

# 3. No validation.
"$BIN" shards --tokenizer "$QWEN" --out "$TMP/none" --val-fraction 0 "$TMP/even.jsonl" \
  2>"$TMP/none.log" || fail "shards failed: $(cat "$TMP/none.log")"
grep -q "^validation split: none" "$TMP/none.log" || fail "no 'none' line: $(cat "$TMP/none.log")"
ls "$TMP"/none_val_*.bin >/dev/null 2>&1 && fail "--val-fraction 0 wrote a validation shard"
echo "PASS tokenize_validation_split"
