#!/usr/bin/env bash
# polaris_convert on bad input: one "error: ..." line naming the file or flag,
# exit status 1, nothing half-written. Run from the repository root after `make`.
set -u
BIN=build/polaris_convert
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect_error NAME WORD CMD...: exit 1, one stderr line "error: ..." containing WORD.
expect_error() {
  local name=$1 word=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$TMP/err")"
  grep -q '^error: ' "$TMP/err" || fail "$name: no 'error: ' line: $(cat "$TMP/err")"
  grep -qF -- "$word" "$TMP/err" || fail "$name: '$word' not in: $(cat "$TMP/err")"
}

$BIN --from-hf tests/fixtures/gpt2_tiny/hf_model --out "$TMP/good.bin" >/dev/null || fail "setup"
head -c 2000 "$TMP/good.bin" >"$TMP/trunc.bin"
printf 'not a model at all, just some bytes that are long enough? no' >"$TMP/junk.bin"
cp -r tests/fixtures/qwen3_tiny/hf_model "$TMP/nocfg" && rm "$TMP/nocfg/config.json"
mkdir "$TMP/badst" && cp tests/fixtures/qwen3_tiny/hf_model/config.json "$TMP/badst/" \
  && printf '\xff\xff\x00\x00\x00\x00\x00\x00{}' >"$TMP/badst/model.safetensors"

expect_error "no arguments" "usage" $BIN
expect_error "two modes" "choose one" $BIN --from-hf a --to-hf b
expect_error "missing --out" "--out" $BIN --from-hf tests/fixtures/gpt2_tiny/hf_model
expect_error "bad dtype" "--dtype" $BIN --from-hf tests/fixtures/gpt2_tiny/hf_model --out "$TMP/d.bin" --dtype fp8
expect_error "missing model.bin" "nope.bin: cannot open" $BIN "$TMP/nope.bin" --to-hf "$TMP/out_hf"
expect_error "truncated model.bin" "trunc.bin: truncated" $BIN "$TMP/trunc.bin" --to-hf "$TMP/out_hf"
expect_error "junk model.bin" "junk.bin" $BIN --info "$TMP/junk.bin"
expect_error "no config.json" "config.json: cannot open" $BIN --from-hf "$TMP/nocfg" --out "$TMP/e.bin"
expect_error "bad safetensors" "model.safetensors: header length" $BIN --from-hf "$TMP/badst" --out "$TMP/f.bin"
[ -e "$TMP/out_hf" ] && fail "wrote $TMP/out_hf from a bad model.bin"
for f in d e f; do [ -e "$TMP/$f.bin" ] && fail "wrote $TMP/$f.bin on error"; done
ls "$TMP"/*.tmp >/dev/null 2>&1 && fail "left .tmp files behind"
echo "PASS bad_inputs_convert"
