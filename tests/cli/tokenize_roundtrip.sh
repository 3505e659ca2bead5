#!/usr/bin/env bash
# polaris_tokenize end to end (run from the repo root after `make`; exit 0 = pass):
# encode -> decode round trip of a small corpus, shards (header, sizes, token
# count, train/val split), malformed JSONL errors naming FILE:LINE, --skip-bad,
# and one-line errors for bad flags.
set -euo pipefail
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup

BIN=build/polaris_tokenize
TOKENIZER=tests/fixtures/qwen3_tokenizer/tokenizer.json
require_built "$BIN"

# A corpus written the way the program writes JSON (raw UTF-8, \n \t \" escapes),
# so the decoded output must be byte-identical to it.
cat > "$TMP/corpus.jsonl" <<'JSONL'
{"text":"Hello, world! This is a small corpus."}
{"text":"def f(x):\n    return x ** 2  # square\n"}
{"text":"안녕하세요, 세계! 中文字符 and emoji 😀🚀"}
{"text":"  leading and trailing spaces  \t\ttabs\r\nwindows line"}
{"text":"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>"}
{"text":"quotes \"inside\" and a backslash \\ here"}
{"text":"Ünïcödé façade naïve café 1234567890"}
{"text":""}
{"text":"A plain text file is one document.\nIt has two lines.\n"}
{"text":"Another document, with numbers 3.14159.\n"}
JSONL
# The last two are also written as plain-text files for the shards test.
printf 'A plain text file is one document.\nIt has two lines.\n' > "$TMP/doc1.txt"
printf 'Another document, with numbers 3.14159.\n' > "$TMP/doc2.md"
head -8 "$TMP/corpus.jsonl" > "$TMP/corpus8.jsonl"

# 1. encode -> decode round trip.
"$BIN" encode --tokenizer "$TOKENIZER" < "$TMP/corpus.jsonl" > "$TMP/ids.jsonl"
[ "$(wc -l < "$TMP/ids.jsonl")" -eq 10 ] || fail "encode wrote $(wc -l < "$TMP/ids.jsonl") lines, expected 10"
head -1 "$TMP/ids.jsonl" | grep -q '^{"ids":\[9707,11,1879,0,' || fail "unexpected ids: $(head -1 "$TMP/ids.jsonl")"
"$BIN" decode --tokenizer "$TOKENIZER" < "$TMP/ids.jsonl" > "$TMP/decoded.jsonl"
cmp -s "$TMP/corpus.jsonl" "$TMP/decoded.jsonl" || { diff "$TMP/corpus.jsonl" "$TMP/decoded.jsonl" >&2; fail "round trip differs"; }

# 2. shards: 8 JSONL documents + 2 plain-text documents, tiny shards to force several.
"$BIN" shards --tokenizer "$TOKENIZER" --out "$TMP/c" --val-fraction 0.2 --shard-tokens 40 \
  "$TMP/corpus8.jsonl" "$TMP/doc1.txt" "$TMP/doc2.md" 2> "$TMP/shards.log" || { cat "$TMP/shards.log" >&2; fail "shards failed"; }
grep -q "document separator: <|endoftext|> (id 151643)" "$TMP/shards.log" || fail "separator not reported"
grep -q "^done: 10 documents" "$TMP/shards.log" || { cat "$TMP/shards.log" >&2; fail "no summary line"; }
[ -f "$TMP/c_train_000000.bin" ] && [ -f "$TMP/c_train_000001.bin" ] || fail "train shards missing"
[ -f "$TMP/c_val_000000.bin" ] || fail "val shard missing"
ls "$TMP"/*.tmp >/dev/null 2>&1 && fail "temporary files left behind"

# Every shard: magic 20240520, version 2 (vocab 151669 > 65535), size = 1024 + 4 * count.
total=0
for shard in "$TMP"/c_*.bin; do
  read -r magic version count <<< "$(od -An -t d4 -N 12 "$shard")"
  [ "$magic" = 20240520 ] || fail "$shard: magic $magic"
  [ "$version" = 2 ] || fail "$shard: version $version"
  [ "$(stat -c %s "$shard")" -eq $((1024 + 4 * count)) ] || fail "$shard: size does not match count $count"
  [ "$count" -le 40 ] || fail "$shard: $count tokens > --shard-tokens 40"
  total=$((total + count))
done
# Expected tokens: every document's ids plus one separator per document.
ids=$(grep -o '[0-9]\+' "$TMP/ids.jsonl" | wc -l)
[ "$total" -eq $((ids + 10)) ] || fail "shards hold $total tokens, expected $((ids + 10))"

# 3. A malformed JSONL line: error names FILE:LINE, exit 1, no shards left behind.
cp "$TMP/corpus8.jsonl" "$TMP/bad.jsonl"
sed -i '3s/.*/{"text": "unterminated/' "$TMP/bad.jsonl"
if "$BIN" shards --tokenizer "$TOKENIZER" --out "$TMP/bad" --shard-tokens 10 "$TMP/bad.jsonl" 2> "$TMP/bad.log"; then
  fail "malformed JSONL accepted"
fi
grep -q "^error: $TMP/bad.jsonl:3: malformed JSON" "$TMP/bad.log" || { cat "$TMP/bad.log" >&2; fail "error does not name FILE:LINE"; }
ls "$TMP"/bad_*.bin >/dev/null 2>&1 && fail "a failed run left shards behind"

# 4. --skip-bad: skipped and counted.
"$BIN" shards --tokenizer "$TOKENIZER" --out "$TMP/skip" --skip-bad "$TMP/bad.jsonl" 2> "$TMP/skip.log" \
  || { cat "$TMP/skip.log" >&2; fail "--skip-bad failed"; }
grep -q "skipped 1 bad lines" "$TMP/skip.log" || { cat "$TMP/skip.log" >&2; fail "--skip-bad count missing"; }
[ -f "$TMP/skip_train_000000.bin" ] || fail "--skip-bad wrote no shard"

# 5. encode with a malformed line names <stdin>:LINE.
printf '{"text":"ok"}\n{"txt":"wrong key"}\n' > "$TMP/enc.jsonl"
expect_error "bad encode input" 'error: <stdin>:2: no string field "text"' \
  "$BIN" encode --tokenizer "$TOKENIZER" < "$TMP/enc.jsonl"

# 6. Bad flags and tokenizer paths end in one line.
expect_error "unknown flag" "no-such-flag" "$BIN" encode --tokenizer "$TOKENIZER" --no-such-flag < /dev/null
expect_error "missing tokenizer" "$TMP/missing.json" "$BIN" encode --tokenizer "$TMP/missing.json" < /dev/null
# shards-only flags are not silently ignored by encode / decode.
expect_error "encode --out" "--out does not apply to \`encode\`" \
  "$BIN" encode --tokenizer "$TOKENIZER" --out "$TMP/x" < /dev/null
expect_error "decode --val-fraction" "--val-fraction does not apply to \`decode\`" \
  "$BIN" decode --tokenizer "$TOKENIZER" --val-fraction 0.1 < /dev/null
expect_error "encode --shard-tokens" "--shard-tokens does not apply to \`encode\`" \
  "$BIN" encode --tokenizer "$TOKENIZER" --shard-tokens 100 < /dev/null
expect_error "decode --jsonl-key" "--jsonl-key does not apply to \`decode\`" \
  "$BIN" decode --tokenizer "$TOKENIZER" --jsonl-key body < /dev/null

# 7. Rerunning shards into a used --out prefix. A run that succeeds leaves just
# its own shards (an earlier, larger run's PREFIX_train_000001.bin ... would
# otherwise join the trainer's glob); a run that fails midway, after writing
# shards, leaves the earlier run's shards as they were.
shard_sums() { (cd "$TMP" && md5sum c_*.bin); }
before=$(shard_sums)
[ "$(ls "$TMP"/c_train_*.bin | wc -l)" -ge 2 ] || fail "setup: section 2 wrote a single train shard"
python3 - "$TMP/fails_late.jsonl" <<'PY_' || fail "setup: fails_late.jsonl"
import sys
with open(sys.argv[1], "w") as f:
    f.writelines('{"text": "document number %d"}\n' % i for i in range(9000))  # > one encoding batch
    f.write('{"text": "cut\n')
PY_
expect_error "rerun fails midway" "$TMP/fails_late.jsonl:9001: malformed JSON" \
  "$BIN" shards --tokenizer "$TOKENIZER" --out "$TMP/c" --shard-tokens 1000 "$TMP/fails_late.jsonl"
[ "$(shard_sums)" = "$before" ] || fail "a failed rerun changed the earlier shards: $(ls "$TMP")"
ls "$TMP"/*.pending >/dev/null 2>&1 && fail "a failed rerun left pending shards: $(ls "$TMP")"
"$BIN" shards --tokenizer "$TOKENIZER" --out "$TMP/c" --val-fraction 0 "$TMP/doc1.txt" 2> "$TMP/rerun.log" \
  || { cat "$TMP/rerun.log" >&2; fail "rerun failed"; }
[ "$(cd "$TMP" && ls c_*)" = "c_train_000000.bin" ] || fail "rerun left other shards: $(cd "$TMP" && ls c_*)"
read -r _ _ count <<< "$(od -An -t d4 -N 12 "$TMP/c_train_000000.bin")"
[ "$count" -eq 14 ] || fail "rerun shard holds $count tokens, expected doc1.txt's 13 and a separator"
ls "$TMP"/*.pending >/dev/null 2>&1 && fail "pending shards left behind: $(ls "$TMP")"

echo "tokenize_roundtrip: ok"
