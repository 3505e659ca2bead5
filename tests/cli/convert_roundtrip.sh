#!/usr/bin/env bash
# polaris_convert: HF -> model.bin -> HF -> model.bin on both fixtures must give
# byte-identical model.bin files (safetensors headers may order keys differently,
# so the comparison is done on model.bin), plus the basic bad inputs.
# Run from the repository root after `make`.
set -u
BIN=build/polaris_convert
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect_error NAME CMD...: exit status 1, exactly one stderr line "error: ...".
expect_error() {
  local name=$1; shift
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$TMP/err")"
  grep -q '^error: ' "$TMP/err" || fail "$name: stderr does not start with 'error: ': $(cat "$TMP/err")"
}

for fx in qwen3_tiny gpt2_tiny; do
  src=tests/fixtures/$fx/hf_model
  $BIN --from-hf "$src" --out "$TMP/$fx.a.bin" >/dev/null || fail "$fx: --from-hf"
  $BIN "$TMP/$fx.a.bin" --to-hf "$TMP/$fx.hf" >/dev/null || fail "$fx: --to-hf"
  [ -f "$TMP/$fx.hf/config.json" ] && [ -f "$TMP/$fx.hf/model.safetensors" ] || fail "$fx: HF dir incomplete"
  $BIN --from-hf "$TMP/$fx.hf" --out "$TMP/$fx.b.bin" >/dev/null || fail "$fx: --from-hf (round 2)"
  cmp -s "$TMP/$fx.a.bin" "$TMP/$fx.b.bin" || fail "$fx: HF -> bin -> HF -> bin is not bit-identical"
  # the exported safetensors holds the same bytes as the original (same size: same tensors, fp32)
  [ "$(stat -c %s "$src/model.safetensors")" -ge 1000 ] || fail "$fx: fixture missing"
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

expect_error "missing dir" $BIN --from-hf "$TMP/no_such_dir" --out "$TMP/x.bin"
grep -q 'no_such_dir' "$TMP/err" || fail "missing dir: message does not name the directory"
[ -e "$TMP/x.bin" ] && fail "missing dir: wrote $TMP/x.bin"
expect_error "unknown flag" $BIN --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/y.bin" --frobnicate 3
grep -q -- '--frobnicate' "$TMP/err" || fail "unknown flag: message does not name the flag"
[ -e "$TMP/y.bin" ] && fail "unknown flag: wrote $TMP/y.bin"
echo "PASS convert_roundtrip"
