#!/usr/bin/env bash
# polaris_convert on bad input: one "error: ..." line naming the file or flag,
# exit status 1, nothing half-written. Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_convert
require_built "$BIN"
no_output_on_error "$TMP/out_hf" "$TMP/d.bin" "$TMP/e.bin" "$TMP/f.bin"

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
expect_error "--info with --dtype" "--dtype does not apply to --info" $BIN --info "$TMP/good.bin" --dtype bf16
expect_error "--info with --out" "--out does not apply to --info" $BIN --info "$TMP/good.bin" --out "$TMP/e.bin"
# A bad rope_scaling in config.json: one line naming the file and the field.
cp -r tests/fixtures/qwen3_tiny/hf_model "$TMP/badrope"
python3 - "$TMP/badrope/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"rope_type": "yarn", "factor": -4.0}
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "negative YaRN factor" "config.json: rope_scaling.factor must be a positive number" $BIN --from-hf "$TMP/badrope" --out "$TMP/e.bin"
python3 - "$TMP/badrope/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "unknown rope_type" "config.json: field \"rope_scaling.rope_type\" 'dynamic' is not supported" $BIN --from-hf "$TMP/badrope" --out "$TMP/e.bin"
# --from-checkpoint: a directory with no checkpoint, and a broken step directory.
mkdir -p "$TMP/no_checkpoints" "$TMP/broken/step_00000002"
expect_error "--from-checkpoint without checkpoints" "no checkpoint in it" $BIN --from-checkpoint "$TMP/no_checkpoints" --out "$TMP/g.bin"
echo '{}' >"$TMP/broken/step_00000002/state.json"
: >"$TMP/broken/step_00000002/model.h5"
expect_error "--from-checkpoint broken model.h5" "model.h5" $BIN --from-checkpoint "$TMP/broken/step_00000002" --out "$TMP/g.bin"
echo "PASS bad_inputs_convert"
