#!/usr/bin/env bash
# polaris_sample against the reference: the qwen3_tiny and gpt2_tiny fixtures
# converted to model.bin, greedy decoding of their prompt with --prompt-ids
# and --print-ids must print transformers' 24-token greedy continuation
# (tests/fixtures/*/expected.json). Also: sampled runs are reproducible from
# --seed, and bad input ends in one error line. Run from the repo root after make.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
require_built build/polaris_sample build/polaris_convert
export OMP_NUM_THREADS=1

for fixture in qwen3_tiny gpt2_tiny; do
  build/polaris_convert --from-hf "tests/fixtures/$fixture/hf_model" --out "$TMP/$fixture.bin" \
    >/dev/null || fail "$fixture: convert"
  read -r prompt expected < <(python3 - "tests/fixtures/$fixture/expected.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
print(",".join(map(str, e["prompt"])), ",".join(map(str, e["greedy_continuation"])))
PY
)
  got=$(build/polaris_sample "$TMP/$fixture.bin" --prompt-ids "$prompt" --print-ids \
        --temperature 0 --max-new-tokens 24) || fail "$fixture: polaris_sample failed"
  [ "$got" = "$expected" ] || fail "$fixture: greedy continuation $got, expected $expected"
  echo "ok  $fixture: greedy continuation matches transformers (24 tokens)"
done

a=$(build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2,3 --samples 3 --seed 7 --top-k 50)
b=$(build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2,3 --samples 3 --seed 7 --top-k 50)
c=$(build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2,3 --samples 3 --seed 8 --top-k 50)
[ "$a" = "$b" ] || fail "the same --seed gave different samples"
[ "$a" != "$c" ] || fail "another --seed gave the same samples"
[ "$(echo "$a" | wc -l)" = 3 ] || fail "--samples 3 printed $(echo "$a" | wc -l) lines"
echo "ok  sampling is reproducible from --seed"
d=$(build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2,3 --samples 3 --seed 7 --top-k 50 \
    --cuda-graphs off) || fail "--cuda-graphs off failed"
[ "$a" = "$d" ] || fail "--cuda-graphs off changed the samples"
echo "ok  --cuda-graphs off gives the same samples"

expect_error "no prompt" "exactly one of --prompt-ids" build/polaris_sample "$TMP/qwen3_tiny.bin"
expect_error "bad id" "--prompt-ids: 'x'" build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,x
expect_error "id out of vocabulary" "--prompt-ids: token id 99999 is outside the vocabulary of $TMP/qwen3_tiny.bin" \
  build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,99999
expect_error "trailing comma" "ends with a comma" build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2,
expect_error "too many new tokens" "--max-new-tokens 300" build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1,2 --max-new-tokens 300
expect_error "missing model" "no_such.bin" build/polaris_sample "$TMP/no_such.bin" --prompt-ids 1
expect_error "prompt needs tokenizer" "--prompt needs --tokenizer" \
  build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt hello
expect_error "bad top-p" "--top-p" build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1 --top-p 0
expect_error "bad --cuda-graphs" "--cuda-graphs must be on or off" \
  build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1 --cuda-graphs maybe
expect_error "too long" "positions" build/polaris_sample "$TMP/qwen3_tiny.bin" --prompt-ids 1 \
  --max-new-tokens 1000
echo "ok: polaris_sample"
