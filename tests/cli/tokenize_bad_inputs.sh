#!/usr/bin/env bash
# polaris_tokenize on bad input: exit status 1, exactly one stderr line
# "error: ..." naming the file, line or flag, and nothing written (no shards,
# no --out directory it had to create). Also the bookkeeping around bad input:
# --skip-bad placeholders in encode/decode, the validation split among good
# documents only, --out directories created on demand, and plain-text files
# encoded in pieces giving the ids of encoding them whole (or read whole when a
# cut could change the ids).
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_tokenize
QWEN=tests/fixtures/qwen3_tokenizer/tokenizer.json
DEEPSEEK=tests/fixtures/deepseek_v3_tokenizer/tokenizer.json
require_built "$BIN"
export OMP_NUM_THREADS=1

mkdir "$TMP/a_directory"
: >"$TMP/empty.txt"
printf '\n  \n\n' >"$TMP/blank.jsonl"
printf '{"text":"fine"}\n' >"$TMP/good.jsonl"
printf '{"txt":"wrong key"}\n{"text": "unterminated\n' >"$TMP/all_bad.jsonl"
printf '{"text":"ok"}\n{"text":"caf\xe9 latin-1"}\n' >"$TMP/latin1.jsonl"   # byte 12 of line 2 is not UTF-8
printf '{"text":"ok"}\n{"text": "cut' >"$TMP/malformed.jsonl"

SHARDS=("$BIN" shards --tokenizer "$QWEN" --out "$TMP/new/dir/c")
no_output_on_error "$TMP/new"

# Inputs of `shards`.
expect_error "directory input" "$TMP/a_directory: is a directory" "${SHARDS[@]}" "$TMP/a_directory"
expect_error "directory among inputs" "is a directory" "${SHARDS[@]}" "$TMP/good.jsonl" "$TMP/a_directory"
expect_error "not a regular file" "/dev/null: not a regular file" "${SHARDS[@]}" /dev/null
expect_error "missing input" "$TMP/missing.txt: cannot open input file" "${SHARDS[@]}" "$TMP/missing.txt"
expect_error "empty text file" "$TMP/empty.txt: no documents (empty file)" "${SHARDS[@]}" "$TMP/empty.txt"
expect_error "blank JSONL file" "$TMP/blank.jsonl: no documents (only blank lines)" "${SHARDS[@]}" "$TMP/blank.jsonl"
expect_error "only bad lines" "$TMP/all_bad.jsonl: no documents (2 bad lines skipped by --skip-bad)" \
  "${SHARDS[@]}" --skip-bad "$TMP/all_bad.jsonl"
# A bad line is found while encoding, after --out's directory was made: it goes again.
expect_error "malformed line" "$TMP/malformed.jsonl:2: malformed JSON" "${SHARDS[@]}" "$TMP/good.jsonl" "$TMP/malformed.jsonl"
expect_error "invalid UTF-8" "$TMP/latin1.jsonl:2: invalid UTF-8 at byte 13" "${SHARDS[@]}" "$TMP/latin1.jsonl"

# Flags and the tokenizer.
expect_error "--out under a file" "--out $TMP/good.jsonl/c: cannot create directory $TMP/good.jsonl" \
  "$BIN" shards --tokenizer "$QWEN" --out "$TMP/good.jsonl/c" "$TMP/good.jsonl"
# An --out without a file name part would write nameless _train_000000.bin files.
expect_error "--out=" "--out wants a path prefix with a file name part" "$BIN" shards --tokenizer "$QWEN" --out= "$TMP/good.jsonl"
expect_error "--out directory/" "--out wants a path prefix with a file name part" \
  "$BIN" shards --tokenizer "$QWEN" --out "$TMP/new/" "$TMP/good.jsonl"
compgen -G "_*.bin" >/dev/null && fail "--out= wrote $(ls _*.bin)"
expect_error "shards --threads -3" "--threads must be >= 0" "${SHARDS[@]}" --threads -3 "$TMP/good.jsonl"
expect_error "encode --threads -3" "--threads must be >= 0" "$BIN" encode --tokenizer "$QWEN" --threads -3 </dev/null
expect_error "--chunk-bytes 0" "--chunk-bytes must be a positive integer" "${SHARDS[@]}" --chunk-bytes 0 "$TMP/good.jsonl"
expect_error "encode --chunk-bytes" "--chunk-bytes does not apply to \`encode\`" \
  "$BIN" encode --tokenizer "$QWEN" --chunk-bytes 10 </dev/null
expect_error "tokenizer directory" "tests/fixtures/qwen3_tokenizer: is a directory" \
  "${SHARDS[@]/$QWEN/tests/fixtures/qwen3_tokenizer}" "$TMP/good.jsonl"
expect_error "encode invalid UTF-8" "<stdin>:2: invalid UTF-8 at byte 13" "$BIN" encode --tokenizer "$QWEN" <"$TMP/latin1.jsonl"
printf '{"ids":[9707]}\n{"ids":[1,2],"note":"\xff"}\n' >"$TMP/bad_ids.jsonl"
expect_error "decode invalid UTF-8" "<stdin>:2: invalid UTF-8 at byte 22" "$BIN" decode --tokenizer "$QWEN" <"$TMP/bad_ids.jsonl"

# --skip-bad in encode / decode: one placeholder line per skipped line keeps the
# output aligned with the non-blank input lines.
printf '{"text":"a"}\n{"txt":"b"}\n\n{"text":"c"}\n' >"$TMP/enc.jsonl"
"$BIN" encode --tokenizer "$QWEN" --skip-bad <"$TMP/enc.jsonl" >"$TMP/enc.out" 2>"$TMP/enc.err" || fail "encode --skip-bad failed"
printf '%s\n' '{"ids":[64]}' '{"error":"<stdin>:2: no string field \"text\""}' '{"ids":[66]}' >"$TMP/enc.want"
cmp -s "$TMP/enc.out" "$TMP/enc.want" || fail "encode --skip-bad wrote: $(cat "$TMP/enc.out")"
grep -q "skipped 1 bad lines" "$TMP/enc.err" || fail "encode --skip-bad count: $(cat "$TMP/enc.err")"
"$BIN" encode --tokenizer "$QWEN" --skip-bad <"$TMP/latin1.jsonl" >"$TMP/latin1.out" 2>/dev/null || fail "encode --skip-bad (UTF-8)"
sed -n 2p "$TMP/latin1.out" | grep -qF '{"error":"<stdin>:2: invalid UTF-8 at byte 13"}' || fail "UTF-8 placeholder: $(cat "$TMP/latin1.out")"
printf '{"ids":[64]}\n{"ids":[-1]}\n{"ids":[66]}\n' >"$TMP/dec.jsonl"
"$BIN" decode --tokenizer "$QWEN" --skip-bad <"$TMP/dec.jsonl" >"$TMP/dec.out" 2>"$TMP/dec.err" || fail "decode --skip-bad failed"
[ "$(sed -n 1p "$TMP/dec.out")" = '{"text":"a"}' ] && [ "$(sed -n 3p "$TMP/dec.out")" = '{"text":"c"}' ] \
  && sed -n 2p "$TMP/dec.out" | grep -q '^{"error":"<stdin>:2: token id -1 is outside the vocabulary' \
  || fail "decode --skip-bad wrote: $(cat "$TMP/dec.out")"

# --skip-bad in shards: the validation document is chosen among good documents
# (the bad last lines used to take the only validation slot), counts agree, and
# --out's missing directories are created.
printf '{"text":"one"}\n{"text":"two"}\n{"txt":"bad"}\nnot json\n' >"$TMP/half_bad.jsonl"
"$BIN" shards --tokenizer "$QWEN" --out "$TMP/made/here/s" --skip-bad "$TMP/half_bad.jsonl" 2>"$TMP/skip.log" \
  || fail "shards --skip-bad failed: $(cat "$TMP/skip.log")"
grep -q "^done: 2 documents" "$TMP/skip.log" || fail "summary: $(cat "$TMP/skip.log")"
grep -q "skipped 2 bad lines" "$TMP/skip.log" || fail "skip count: $(cat "$TMP/skip.log")"
grep -q "no validation shard" "$TMP/skip.log" && fail "bad lines took the validation slot: $(cat "$TMP/skip.log")"
[ -f "$TMP/made/here/s_train_000000.bin" ] && [ -f "$TMP/made/here/s_val_000000.bin" ] || fail "shards missing: $(ls -R "$TMP/made")"

# Plain text in pieces: tiny --chunk-bytes (thousands of cuts) gives exactly the
# shards of reading the file whole, for both tokenizers.
python3 - "$TMP/corpus.txt" <<'PY' || fail "setup: corpus"
import random, sys
random.seed(3)
words = ["Hello", "world", "def", "f(x):", "return", "x**2", "안녕하세요", "中文字符", "😀", "3.14159",
         "don't", "it's", "é", "e\u0301", "\u180e", "\u00a0", "\t", "#", "(", ")", "--", "'s", "1234567"]
seps = [" ", " ", " ", "  ", "\n", "\n\n", "\r\n", "\n    ", "\n\t", " \n", "\n\u3000", ""]
with open(sys.argv[1], "w", encoding="utf-8", newline="") as f:
    f.write("".join(random.choice(words) + random.choice(seps) for _ in range(20000)))
PY
for tokenizer in "$QWEN" "$DEEPSEEK"; do
  rm -f "$TMP"/whole_* "$TMP"/pieces_*
  "$BIN" shards --tokenizer "$tokenizer" --out "$TMP/whole" --val-fraction 0 --chunk-bytes 1000000000 \
    "$TMP/corpus.txt" "$TMP/good.jsonl" 2>"$TMP/whole.log" || fail "whole: $(cat "$TMP/whole.log")"
  "$BIN" shards --tokenizer "$tokenizer" --out "$TMP/pieces" --val-fraction 0 --chunk-bytes 64 --threads 2 \
    "$TMP/corpus.txt" "$TMP/good.jsonl" 2>"$TMP/pieces.log" || fail "pieces: $(cat "$TMP/pieces.log")"
  grep -q "^done: 2 documents" "$TMP/pieces.log" || fail "pieces summary: $(cat "$TMP/pieces.log")"
  grep -q "read whole" "$TMP/pieces.log" && fail "$tokenizer: plain text was not cut: $(cat "$TMP/pieces.log")"
  cmp -s "$TMP/whole_train_000000.bin" "$TMP/pieces_train_000000.bin" \
    || fail "$tokenizer: text encoded in pieces differs from the whole file"
  echo "ok  pieces = whole ($tokenizer)"
done

# An added token with lstrip swallows the newlines before it when the file is
# encoded whole, which a cut right before it would not: such a tokenizer's text
# files are read whole.
python3 - "$QWEN" "$TMP/lstrip_tokenizer.json" "$TMP/lstrip.txt" <<'PY' || fail "setup: lstrip tokenizer"
import json, sys
tokenizer = json.load(open(sys.argv[1], encoding="utf-8"))
for token in tokenizer["added_tokens"]:
    if token["content"] == "<think>":
        token["lstrip"] = True
json.dump(tokenizer, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
open(sys.argv[3], "w").write("".join("question %d\n<think>answer\n" % i for i in range(500)))
PY
rm -f "$TMP"/whole_* "$TMP"/pieces_*
"$BIN" shards --tokenizer "$TMP/lstrip_tokenizer.json" --out "$TMP/whole" --val-fraction 0 --chunk-bytes 1000000000 \
  "$TMP/lstrip.txt" 2>"$TMP/whole.log" || fail "lstrip whole: $(cat "$TMP/whole.log")"
"$BIN" shards --tokenizer "$TMP/lstrip_tokenizer.json" --out "$TMP/pieces" --val-fraction 0 --chunk-bytes 64 \
  "$TMP/lstrip.txt" 2>"$TMP/pieces.log" || fail "lstrip pieces: $(cat "$TMP/pieces.log")"
grep -q "read whole" "$TMP/pieces.log" || fail "lstrip token: plain text was cut: $(cat "$TMP/pieces.log")"
cmp -s "$TMP/whole_train_000000.bin" "$TMP/pieces_train_000000.bin" || fail "lstrip token: pieces differ from whole"
echo "ok  pieces = whole (lstrip added token)"

echo "tokenize_bad_inputs: ok"
