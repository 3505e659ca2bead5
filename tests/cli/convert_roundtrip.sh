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

no_output_on_error "$TMP/x.bin" "$TMP/y.bin"
expect_error "missing dir" "no_such_dir" $BIN --from-hf "$TMP/no_such_dir" --out "$TMP/x.bin"
expect_error "unknown flag" "--frobnicate" $BIN --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/y.bin" --frobnicate 3
echo "PASS convert_roundtrip"
