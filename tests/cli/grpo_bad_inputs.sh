#!/usr/bin/env bash
# polaris_train --mode grpo on bad input: exit status 1 and exactly one stderr
# line "error: ..." naming the flag or file (and no --out written). Run from
# the repository root after `make`.
export OMP_NUM_THREADS=1
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
require_built "$BIN"
no_output_on_error "$TMP/out.bin"

COMMON=(--mode grpo --init qwen3-tiny --steps 2 --out "$TMP/out.bin")
expect_error "no data or task" "--data" "$BIN" "${COMMON[@]}"
expect_error "unknown task" "bogus" "$BIN" "${COMMON[@]}" --task bogus
expect_error "group size 1" "--group-size" "$BIN" "${COMMON[@]}" --task addition --group-size 1
expect_error "dual clip below the upper clip" "--clip-ratio-c" "$BIN" "${COMMON[@]}" --task addition --clip-ratio-c 1.1
expect_error "negative top-k" "--top-k" "$BIN" "${COMMON[@]}" --task addition --top-k -1
expect_error "min-p above 1" "--min-p" "$BIN" "${COMMON[@]}" --task addition --min-p 2
expect_error "bad temperature schedule" "--temperature-schedule" "$BIN" "${COMMON[@]}" --task addition --temperature-schedule garbage
expect_error "missing data file" "missing.jsonl" "$BIN" "${COMMON[@]}" --data "$TMP/missing.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
echo "all grpo bad-input cases passed"
