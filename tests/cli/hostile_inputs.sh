#!/usr/bin/env bash
# Hostile inputs through the programs: deep JSON nesting, absurd sizes and
# structural oddities (generated here, all small) end in one "error: <file>: ..."
# line, exit 1, fast, nothing written; never a crash, a hang or an OOM.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
TRAIN=build/polaris_train
CONVERT=build/polaris_convert
TOKENIZE=build/polaris_tokenize
CHECK=build/polaris_check
require_built "$TRAIN" "$CONVERT" "$TOKENIZE" "$CHECK"
export OMP_NUM_THREADS=1

# expect_fast_error NAME WORD PROGRAM ARGS...: expect_error within 20 seconds.
expect_fast_error() {
  local start=$SECONDS
  expect_error "$@"
  [ $((SECONDS - start)) -le 20 ] || fail "$1: took $((SECONDS - start)) s, expected a fast refusal"
}

write_token_shard "$TMP/good_000.bin" 3 4000
python3 - "$TMP" tests/fixtures/qwen3_tiny/hf_model/config.json <<'EOF' || fail "setup: hostile files"
import json, os, struct, sys
d, config_path = sys.argv[1], sys.argv[2]
deep = "[" * 100000 + "]" * 100000
open(d + "/deep_config.json", "w").write(deep)
config = json.load(open(config_path))
big = dict(config, num_hidden_layers=2147483647)
json.dump(big, open(d + "/layers_config.json", "w"))
# safetensors beside a good config: an overflowing shape, a deep header.
def safetensors(path, header):
    h = header.encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h)
for name, header in [("overflow", '{"t":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,0]}}'),
                     ("deepst", deep)]:
    os.makedirs(d + "/" + name)
    json.dump(config, open(d + "/" + name + "/config.json", "w"))
    safetensors(d + "/" + name + "/model.safetensors", header)
# tokenizer.json: deep, and an added token id 2^31 - 1.
open(d + "/deep_tokenizer.json", "w").write(deep)
tok = {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
       "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
       "added_tokens": [{"id": 2147483647, "content": "<x>", "special": True}]}
json.dump(tok, open(d + "/id_tokenizer.json", "w"))
# A token shard with a non-zero reserved header word.
header = [0] * 256
header[0], header[1], header[2], header[100] = 20240520, 1, 4000, 9
open(d + "/reserved_000.bin", "wb").write(struct.pack("<256i", *header) + struct.pack("<4000H", *([1] * 4000)))
EOF
printf 'some text\n' >"$TMP/doc.txt"

RUN=(--steps 2 --batch 2 --seq 16 --out "$TMP/out.bin")
no_output_on_error "$TMP/out.bin" "$TMP/e.bin" "$TMP/shards"

# Deep nesting.
expect_fast_error "deep config.json" "deep_config.json: nested deeper than 64 levels" \
  "$TRAIN" --init "$TMP/deep_config.json" --data "$TMP/good_*.bin" "${RUN[@]}"
expect_fast_error "deep safetensors header" "model.safetensors: nested deeper than 64 levels" \
  "$CONVERT" --from-hf "$TMP/deepst" --out "$TMP/e.bin"
expect_fast_error "deep tokenizer.json" "deep_tokenizer.json: nested deeper than 64 levels" \
  "$TOKENIZE" shards --tokenizer "$TMP/deep_tokenizer.json" --out "$TMP/shards/c" "$TMP/doc.txt"

{ printf '{"problem": "1+1", "answer": "2"}\n{"problem": '; head -c 100000 /dev/zero | tr '\0' '['; \
  head -c 100000 /dev/zero | tr '\0' ']'; printf ', "answer": "2"}\n'; } >"$TMP/deep.jsonl"
expect_fast_error "deep JSONL line" "deep.jsonl:2: nested deeper than 64 levels" \
  "$TRAIN" --mode grpo --init qwen3-tiny --steps 2 --out "$TMP/out.bin" --data "$TMP/deep.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
cp -r tests/fixtures/gpt2_tiny "$TMP/fixture"
python3 -c 'import sys; open(sys.argv[1], "w").write("{\"loss\": " + "[" * 100000 + "]" * 100000 + "}")' \
  "$TMP/fixture/expected.json"
expect_fast_error "deep expected.json" "expected.json: nested deeper than 64 levels" "$CHECK" "$TMP/fixture"

# Sizes.
expect_fast_error "absurd layer count" "layers_config.json: config field num_layers = 2147483647 is over the limit" \
  "$TRAIN" --init "$TMP/layers_config.json" --data "$TMP/good_*.bin" "${RUN[@]}"
"$CONVERT" --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/m.bin" >/dev/null || fail "setup: convert"
python3 - "$TMP/m.bin" <<'EOF' || fail "setup: patch model.bin"
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
b[6 * 4:7 * 4] = struct.pack("<i", 2147483647)
open(sys.argv[1].replace("m.bin", "layers.bin"), "wb").write(b)
EOF
expect_fast_error "absurd model.bin layers" "layers.bin: config field num_layers" "$CONVERT" --info "$TMP/layers.bin"
expect_fast_error "absurd model.bin layers (train)" "layers.bin: config field num_layers" \
  "$TRAIN" "$TMP/layers.bin" --data "$TMP/good_*.bin" "${RUN[@]}"
expect_fast_error "overflowing safetensors shape" "model.safetensors: tensor t: shape" \
  "$CONVERT" --from-hf "$TMP/overflow" --out "$TMP/e.bin"
expect_fast_error "token id 2^31-1" "id_tokenizer.json: added token id 2147483647" \
  "$TOKENIZE" shards --tokenizer "$TMP/id_tokenizer.json" --out "$TMP/shards/c" "$TMP/doc.txt"

# Structure: a token shard's reserved words.
expect_fast_error "shard reserved word" "reserved_000.bin: reserved header word 100 is 9" \
  "$TRAIN" --init qwen3-tiny --data "$TMP/reserved_*.bin" "${RUN[@]}"

# Structure: state.json of the wrong type or out of range, on --resume.
timeout 120 "$TRAIN" --init qwen3-tiny --data "$TMP/good_*.bin" --steps 2 --batch 2 --seq 16 \
  --checkpoint-dir "$TMP/ck" --checkpoint-every 2 --out "$TMP/first.bin" >"$TMP/ck.log" 2>&1 \
  || fail "setup: checkpointed run: $(tail -3 "$TMP/ck.log")"
STATE="$TMP/ck/step_00000002/state.json"
[ -f "$STATE" ] || fail "setup: no state.json"
cp "$STATE" "$TMP/state.good"
# Edited by hand, state.json would fail the manifest's checksum before its
# structure is looked at: test the structure checks on a manifest-less
# checkpoint (an older build's, read with a warning). resume_skips_corrupt.sh
# tests the manifest.
rm "$TMP/ck/step_00000002/manifest.json"
RESUME=("$TRAIN" --init qwen3-tiny --data "$TMP/good_*.bin" --steps 4 --batch 2 --seq 16
  --checkpoint-dir "$TMP/ck" --checkpoint-every 2 --resume --out "$TMP/out.bin")
set_state() {  # set_state PYTHON-EXPRESSION: state.json becomes f(the good state s)
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); json.dump($1, open(sys.argv[2],'w'))" \
    "$TMP/state.good" "$STATE" || fail "setup: set_state $1"
}
for bad in '[1, 2]' '42' 'None'; do
  set_state "$bad"
  expect_fast_error "state.json $bad" "state.json: expected a JSON object" "${RESUME[@]}"
done
set_state 'dict(s, step=-1)';          expect_fast_error "negative step" 'state.json: "step" must be an integer' "${RESUME[@]}"
set_state 'dict(s, step=2**40)';       expect_fast_error "64-bit step" 'state.json: "step" must be an integer' "${RESUME[@]}"
set_state 'dict(s, world_size=0)';     expect_fast_error "world_size 0" 'state.json: "world_size" must be an integer in [1' "${RESUME[@]}"
set_state 'dict(s, zero=7)';           expect_fast_error "zero 7" 'state.json: "zero" must be an integer in [0, 2], got 7' "${RESUME[@]}"
set_state 'dict(s, loop=dict(s["loop"], data_epoch=-1))'
expect_fast_error "negative data_epoch" 'state.json: "loop.data_epoch" must be an integer' "${RESUME[@]}"
expect_fast_error "convert a bad checkpoint" 'state.json: "loop.data_epoch"' \
  "$CONVERT" --from-checkpoint "$TMP/ck" --out "$TMP/e.bin"
cp "$TMP/state.good" "$STATE"
timeout 120 "${RESUME[@]}" >"$TMP/resume.log" 2>&1 || fail "the good state no longer resumes: $(tail -3 "$TMP/resume.log")"
echo "PASS hostile_inputs"
