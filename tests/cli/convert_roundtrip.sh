#!/usr/bin/env bash
# polaris_convert: HF -> model.bin -> HF -> model.bin on both fixtures must give
# byte-identical model.bin files (safetensors headers may order keys differently,
# so the comparison is done on model.bin), plus the basic bad inputs.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_convert
require_built "$BIN"

for fx in qwen3_tiny gpt2_tiny; do
  src=tests/fixtures/$fx/hf_model
  $BIN --from-hf "$src" --out "$TMP/$fx.a.bin" >/dev/null || fail "$fx: --from-hf"
  $BIN "$TMP/$fx.a.bin" --to-hf "$TMP/$fx.hf" >/dev/null || fail "$fx: --to-hf"
  [ -f "$TMP/$fx.hf/config.json" ] && [ -f "$TMP/$fx.hf/model.safetensors" ] || fail "$fx: HF dir incomplete"
  $BIN --from-hf "$TMP/$fx.hf" --out "$TMP/$fx.b.bin" >/dev/null || fail "$fx: --from-hf (round 2)"
  cmp -s "$TMP/$fx.a.bin" "$TMP/$fx.b.bin" || fail "$fx: HF -> bin -> HF -> bin is not bit-identical"
  # the exported safetensors is the original file, byte for byte
  cmp -s "$src/model.safetensors" "$TMP/$fx.hf/model.safetensors" \
    || fail "$fx: exported model.safetensors differs from the original"
  # bf16 model.bin: header + 2 bytes per parameter, --info says bf16
  $BIN --from-hf "$src" --out "$TMP/$fx.bf16.bin" --dtype bf16 >/dev/null || fail "$fx: --dtype bf16"
  a=$(stat -c %s "$TMP/$fx.a.bin"); b=$(stat -c %s "$TMP/$fx.bf16.bin")
  [ $(( (a - 1024) / 2 + 1024 )) -eq "$b" ] || fail "$fx: bf16 size $b, fp32 size $a"
  $BIN --info "$TMP/$fx.bf16.bin" >"$TMP/info" || fail "$fx: --info"
  grep -q 'dtype *bf16' "$TMP/info" || fail "$fx: --info does not report bf16"
done
grep -q 'parameters *361,216' <($BIN --info "$TMP/qwen3_tiny.a.bin") || fail "qwen3_tiny: parameter count"
grep -q 'parameters *132,864' <($BIN --info "$TMP/gpt2_tiny.a.bin") || fail "gpt2_tiny: parameter count"
ls "$TMP"/*.tmp >/dev/null 2>&1 && fail "left .tmp files behind"

# YaRN: a config.json with rope_scaling yarn (factor 4 over a 64-position
# original context, max_position_embeddings 64) survives HF -> bin -> HF -> bin,
# --info shows it, and polaris_sample generates past the 64 trained positions
# (the same model without YaRN refuses that length).
cp -r tests/fixtures/qwen3_tiny/hf_model "$TMP/yarn_hf"
python3 - "$TMP/yarn_hf/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["max_position_embeddings"] = 64
c["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
json.dump(c, open(sys.argv[1], "w"))
PY
$BIN --from-hf "$TMP/yarn_hf" --out "$TMP/yarn.a.bin" >/dev/null || fail "yarn: --from-hf"
$BIN --info "$TMP/yarn.a.bin" >"$TMP/yarn_info" || fail "yarn: --info"
grep -q 'rope_scaling *yarn factor=4 original_max_positions=64' "$TMP/yarn_info" || fail "yarn: --info lacks rope_scaling"
grep -q 'context_limit *256' "$TMP/yarn_info" || fail "yarn: --info context_limit"
$BIN "$TMP/yarn.a.bin" --to-hf "$TMP/yarn.hf" >/dev/null || fail "yarn: --to-hf"
python3 - "$TMP/yarn.hf/config.json" <<'PY' || fail "yarn: exported config.json lacks YaRN"
import json, math, sys
c = json.load(open(sys.argv[1]))
for key in ("rope_scaling", "rope_parameters"):
    r = c[key]
    assert r["rope_type"] == "yarn" and r["factor"] == 4.0, r
    assert r["original_max_position_embeddings"] == 64, r
    assert abs(r["attention_factor"] - (0.1 * math.log(4) + 1)) < 1e-6, r
PY
$BIN --from-hf "$TMP/yarn.hf" --out "$TMP/yarn.b.bin" >/dev/null || fail "yarn: --from-hf (round 2)"
cmp -s "$TMP/yarn.a.bin" "$TMP/yarn.b.bin" || fail "yarn: HF -> bin -> HF -> bin is not bit-identical"
if [ -x build/polaris_sample ]; then
  out=$(build/polaris_sample "$TMP/yarn.a.bin" --prompt-ids 1,2,3 --print-ids --temperature 0 \
        --max-new-tokens 100) || fail "yarn: polaris_sample past 64 positions failed"
  [ "$(echo "$out" | tr ',' '\n' | wc -l)" -eq 100 ] || fail "yarn: expected 100 generated ids, got $out"
  python3 - "$TMP/yarn_hf/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
del c["rope_scaling"]
json.dump(c, open(sys.argv[1], "w"))
PY
  $BIN --from-hf "$TMP/yarn_hf" --out "$TMP/plain64.bin" >/dev/null || fail "plain64: --from-hf"
  if build/polaris_sample "$TMP/plain64.bin" --prompt-ids 1,2,3 --temperature 0 --max-new-tokens 100 \
      >/dev/null 2>&1; then fail "without YaRN, 102 positions of a 64-position model were accepted"; fi
  echo "ok  yarn: round trip, and generation past the trained length"
fi

no_output_on_error "$TMP/x.bin" "$TMP/y.bin"
expect_error "missing dir" "no_such_dir" $BIN --from-hf "$TMP/no_such_dir" --out "$TMP/x.bin"
expect_error "unknown flag" "--frobnicate" $BIN --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/y.bin" --frobnicate 3
echo "PASS convert_roundtrip"
