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
expect_error "--cuda-graphs bogus" "--cuda-graphs" "$BIN" "${COMMON[@]}" --task addition --cuda-graphs yes
expect_error "min-p above 1" "--min-p" "$BIN" "${COMMON[@]}" --task addition --min-p 2
expect_error "bad temperature schedule" "--temperature-schedule" "$BIN" "${COMMON[@]}" --task addition --temperature-schedule garbage
expect_error "missing data file" "missing.jsonl" "$BIN" "${COMMON[@]}" --data "$TMP/missing.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
# A tokenizer whose ids run past the model's vocabulary (qwen3-tiny has 512):
# the line names the problem's file and line, the model and the tokenizer.
printf '{"problem": "What is 2+2?", "answer": "4"}\n{"problem": "Name the largest planet.", "answer": "Jupiter"}\n' \
  >"$TMP/problems.jsonl"
expect_error "tokenizer bigger than the model" \
  "$TMP/problems.jsonl:1: prompt: token id" "$BIN" "${COMMON[@]}" --data "$TMP/problems.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
grep -qF "outside the vocabulary of --init qwen3-tiny (512 ids): --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json is not this model's" "$TMP/err" \
  || fail "the vocabulary error does not name the model and the tokenizer: $(cat "$TMP/err")"

# Every problem's pass rate is 0 or 1: nothing for GRPO to learn from. A model
# whose vocabulary covers the Qwen3 tokenizer's, otherwise tiny.
python3 - tests/fixtures/qwen3_tiny/hf_model/config.json "$TMP/wide_vocab.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
config.update(vocab_size=151936, hidden_size=16, num_attention_heads=1, num_key_value_heads=1,
              head_dim=16, intermediate_size=16, num_hidden_layers=1, layer_types=["full_attention"])
json.dump(config, open(sys.argv[2], "w"))
EOF
printf '{"problem": "What is 2+2?", "answer": "4", "pass_rate": 1.0}\n{"problem": "What is 3+5?", "answer": "8", "pass_rate": 0.0}\n' \
  >"$TMP/solved.jsonl"
expect_error "no problem of intermediate pass rate" \
  "--data $TMP/solved.jsonl: no training problem is left after the difficulty filter" \
  "$BIN" --mode grpo --init "$TMP/wide_vocab.json" --steps 1 --max-response 8 \
  --data "$TMP/solved.jsonl" --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
echo "all grpo bad-input cases passed"
