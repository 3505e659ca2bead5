#!/usr/bin/env bash
# polaris_train --mode grpo on bad input: exit status 1 and exactly one stderr
# line "error: ..." naming the flag or file (and no --out written). Run from
# the repository root after `make`.
export OMP_NUM_THREADS=1
set -u
BIN=build/polaris_train
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect_error NAME WORD ARGS...: exit 1, one stderr line "error: ..." containing WORD.
expect_error() {
  local name=$1 word=$2; shift 2
  timeout 120 "$BIN" "$@" >"$TMP/stdout" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1 (stderr: $(cat "$TMP/err"))"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$TMP/err")"
  grep -q '^error: ' "$TMP/err" || fail "$name: no 'error: ' line: $(cat "$TMP/err")"
  grep -qF -- "$word" "$TMP/err" || fail "$name: '$word' not in: $(cat "$TMP/err")"
  [ -e "$TMP/out.bin" ] && fail "$name: wrote --out despite the error"
  echo "ok  $name: $(cat "$TMP/err")"
}

COMMON=(--mode grpo --init qwen3-tiny --steps 2 --out "$TMP/out.bin")
expect_error "no data or task"      "--data"                 "${COMMON[@]}"
expect_error "unknown task"         "bogus"                  "${COMMON[@]}" --task bogus
expect_error "group size 1"         "--group-size"           "${COMMON[@]}" --task addition --group-size 1
expect_error "bad temperature schedule" "--temperature-schedule" "${COMMON[@]}" --task addition --temperature-schedule garbage
expect_error "missing data file"    "missing.jsonl"          "${COMMON[@]}" --data "$TMP/missing.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
echo "all grpo bad-input cases passed"
