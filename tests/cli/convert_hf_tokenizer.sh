#!/usr/bin/env bash
# polaris_convert MODEL.bin --to-hf DIR --tokenizer FILE also writes the
# tokenizer, so DIR loads in transformers as it is:
#   1. DIR holds tokenizer.json and tokenizer_config.json identical to the
#      source's, valid JSON, the tokenizer encodes as the source does, every id
#      fits the exported config's vocab_size, and DIR still converts back;
#   2. a tokenizer with no tokenizer_config.json beside it gets a minimal one
#      (the generic fast tokenizer, context length, end-of-text token);
#   3. a tokenizer whose ids run past the model's vocabulary is refused with a
#      line naming --tokenizer, before anything is written;
#   4. when python3 has transformers, AutoTokenizer loads DIR and encodes alike.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
require_built build/polaris_convert build/polaris_train build/polaris_tokenize
export OMP_NUM_THREADS=1
QWEN=tests/fixtures/qwen3_tokenizer

# A model whose vocabulary covers the Qwen3 tokenizer's, otherwise tiny.
python3 - tests/fixtures/qwen3_tiny/hf_model/config.json "$TMP/wide.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config.update(vocab_size=151936, hidden_size=16, num_attention_heads=1, num_key_value_heads=1,
              head_dim=16, intermediate_size=16, num_hidden_layers=1, layer_types=["full_attention"])
json.dump(config, open(sys.argv[2], "w"))
PY
write_token_shard "$TMP/shard_000.bin" 3 2000
build/polaris_train --init "$TMP/wide.json" --data "$TMP/shard_000.bin" --steps 1 --batch 1 --seq 16 \
  --out "$TMP/wide.bin" >"$TMP/train.log" 2>&1 || fail "making the model: $(tail -3 "$TMP/train.log")"

# 1.
build/polaris_convert "$TMP/wide.bin" --to-hf "$TMP/hf" --tokenizer "$QWEN/tokenizer.json" \
  >"$TMP/convert.log" 2>&1 || fail "--to-hf --tokenizer: $(cat "$TMP/convert.log")"
cmp -s "$QWEN/tokenizer.json" "$TMP/hf/tokenizer.json" || fail "tokenizer.json differs from the source"
cmp -s "$QWEN/tokenizer_config.json" "$TMP/hf/tokenizer_config.json" || fail "tokenizer_config.json differs"
python3 - "$TMP/hf" <<'PY' || fail "the exported directory is inconsistent"
import json, sys
d = sys.argv[1]
tokenizer = json.load(open(d + "/tokenizer.json"))
json.load(open(d + "/tokenizer_config.json"))
config = json.load(open(d + "/config.json"))
ids = list(tokenizer["model"]["vocab"].values()) + [t["id"] for t in tokenizer.get("added_tokens", [])]
assert max(ids) < config["vocab_size"], (max(ids), config["vocab_size"])
PY
echo '{"text": "Hello, world! 12+34=46"}' >"$TMP/text.jsonl"
build/polaris_tokenize encode --tokenizer "$QWEN/tokenizer.json" <"$TMP/text.jsonl" >"$TMP/ids_source.jsonl"
build/polaris_tokenize encode --tokenizer "$TMP/hf/tokenizer.json" <"$TMP/text.jsonl" >"$TMP/ids_export.jsonl"
cmp -s "$TMP/ids_source.jsonl" "$TMP/ids_export.jsonl" || fail "the exported tokenizer encodes differently"
build/polaris_convert --from-hf "$TMP/hf" --out "$TMP/back.bin" >/dev/null 2>&1 || fail "the directory does not convert back"
echo "ok  $(cat "$TMP/convert.log")"

# 2. No tokenizer_config.json beside the tokenizer.
mkdir "$TMP/bare" && cp "$QWEN/tokenizer.json" "$TMP/bare/"
build/polaris_convert "$TMP/wide.bin" --to-hf "$TMP/hf_bare" --tokenizer "$TMP/bare/tokenizer.json" \
  >/dev/null 2>"$TMP/bare.err" || fail "bare tokenizer: $(cat "$TMP/bare.err")"
python3 - "$TMP/hf_bare/tokenizer_config.json" <<'PY' || fail "minimal tokenizer_config.json: $(cat "$TMP/hf_bare/tokenizer_config.json")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["tokenizer_class"] == "PreTrainedTokenizerFast" and c["model_max_length"] == 256, c
assert c["eos_token"] == "<|endoftext|>", c
PY
echo "ok  a tokenizer alone gets a minimal tokenizer_config.json"

# 3. The model's vocabulary (512) is smaller than the tokenizer's.
build/polaris_convert --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/small.bin" >/dev/null
expect_error "tokenizer past the vocabulary" "--tokenizer $QWEN/tokenizer.json: its ids run to" \
  build/polaris_convert "$TMP/small.bin" --to-hf "$TMP/hf_small" --tokenizer "$QWEN/tokenizer.json"
[ ! -e "$TMP/hf_small" ] || fail "a refused export wrote $TMP/hf_small"

# 4. transformers itself, when installed.
if python3 -c "import transformers" 2>/dev/null; then
  python3 - "$TMP/hf" "$QWEN" <<'PY' || fail "transformers cannot load the exported tokenizer"
import sys
from transformers import AutoTokenizer
a = AutoTokenizer.from_pretrained(sys.argv[1])
b = AutoTokenizer.from_pretrained(sys.argv[2])
assert a("Hello, world! 12+34=46")["input_ids"] == b("Hello, world! 12+34=46")["input_ids"]
PY
  echo "ok  transformers loads the directory"
else
  echo "note: python3 has no transformers here; loading in transformers itself not tried"
fi
echo "PASS convert_hf_tokenizer"
