#!/usr/bin/env bash
# polaris_check against the Hugging Face reference dumps in tests/fixtures/:
# both tiny models PASS (logits, loss, every gradient, greedy continuation);
# a missing or corrupted fixture is one "error: ..." line and exit 1; a
# fixture whose logits, loss, one gradient or one greedy token disagree with
# the model prints FAIL on that line and last, exit 1.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_check
require_built "$BIN"

for fixture in qwen3_tiny gpt2_tiny; do
  "$BIN" "tests/fixtures/$fixture" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  cat "$TMP/out"
  [ "$rc" -eq 0 ] || fail "$fixture: exit $rc: $(cat "$TMP/err")"
  [ "$(tail -1 "$TMP/out")" = PASS ] || fail "$fixture: last line is not PASS"
  grep -q FAIL "$TMP/out" && fail "$fixture: a check says FAIL"
  for what in logits loss gradients greedy; do
    grep -qE "^  $what .* ok$" "$TMP/out" || fail "$fixture: no passing '$what' line"
  done
done

# Missing fixture directory, and a bad usage.
expect_error "missing dir" "$TMP/nowhere" "$BIN" "$TMP/nowhere"
expect_error "no arguments" "usage" "$BIN"

# Truncated forward.safetensors.
cp -r tests/fixtures/qwen3_tiny "$TMP/truncated"
size=$(stat -c %s tests/fixtures/qwen3_tiny/forward.safetensors)
head -c $((size / 2)) tests/fixtures/qwen3_tiny/forward.safetensors >"$TMP/truncated/forward.safetensors"
expect_error "truncated forward.safetensors" "forward.safetensors" "$BIN" "$TMP/truncated"

# forward.safetensors cut inside its JSON header.
cp -r tests/fixtures/qwen3_tiny "$TMP/header"
head -c 20 tests/fixtures/qwen3_tiny/forward.safetensors >"$TMP/header/forward.safetensors"
expect_error "cut header" "forward.safetensors" "$BIN" "$TMP/header"

# Missing grads.safetensors; expected.json not JSON.
cp -r tests/fixtures/gpt2_tiny "$TMP/nograds" && rm "$TMP/nograds/grads.safetensors"
expect_error "missing grads" "grads.safetensors" "$BIN" "$TMP/nograds"
cp -r tests/fixtures/gpt2_tiny "$TMP/badjson" && printf '{"loss": 1.0,' >"$TMP/badjson/expected.json"
expect_error "bad expected.json" "expected.json" "$BIN" "$TMP/badjson"

# expected.json with a field missing, or a prompt id outside the vocabulary.
edit_expected() {  # edit_expected DIR PYTHON_STATEMENT (on `data`)
  python3 - "$1/expected.json" "$2" <<'EOF'
import json, sys
path, statement = sys.argv[1], sys.argv[2]
data = json.load(open(path))
exec(statement)
json.dump(data, open(path, "w"))
EOF
}
cp -r tests/fixtures/qwen3_tiny "$TMP/noloss" && edit_expected "$TMP/noloss" 'del data["loss"]'
expect_error "expected.json without loss" '"loss"' "$BIN" "$TMP/noloss"
cp -r tests/fixtures/qwen3_tiny "$TMP/badprompt" && edit_expected "$TMP/badprompt" 'data["prompt"][0] = 99999'
expect_error "prompt id outside the vocabulary" '"prompt"' "$BIN" "$TMP/badprompt"

# perturb_tensor FILE NAME [nan]: adds 1.0 to the first fp32 value of tensor
# NAME (or makes it NaN).
perturb_tensor() {
  python3 - "$1" "$2" "${3:-}" <<'EOF'
import json, struct, sys
path, name, nan = sys.argv[1], sys.argv[2], sys.argv[3] == "nan"
blob = bytearray(open(path, "rb").read())
header_len = struct.unpack("<Q", blob[:8])[0]
entry = json.loads(blob[8:8 + header_len])[name]
assert entry["dtype"] == "F32", entry
at = 8 + header_len + entry["data_offsets"][0]
value = float("nan") if nan else struct.unpack("<f", blob[at:at + 4])[0] + 1.0
blob[at:at + 4] = struct.pack("<f", value)
open(path, "wb").write(blob)
EOF
}

# expect_fail NAME DIR LINE_REGEX: a disagreement is a failed check (the
# named line says FAIL, the last line is FAIL, exit 1), not an error.
expect_fail() {
  local name=$1 dir=$2 line=$3 rc
  "$BIN" "$dir" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1: $(cat "$TMP/err")"
  [ "$(tail -1 "$TMP/out")" = FAIL ] || fail "$name: last line is not FAIL: $(tail -3 "$TMP/out")"
  grep -qE "^  $line.*FAIL$" "$TMP/out" || fail "$name: no FAIL line matching '$line'"
  echo "ok  $name: FAIL"
}

cp -r tests/fixtures/qwen3_tiny "$TMP/wrongloss" && edit_expected "$TMP/wrongloss" 'data["loss"] += 0.01'
expect_fail "wrong loss" "$TMP/wrongloss" "loss "
cp -r tests/fixtures/qwen3_tiny "$TMP/wronggreedy"
edit_expected "$TMP/wronggreedy" 'data["greedy_continuation"][5] = (data["greedy_continuation"][5] + 1) % 512'
expect_fail "wrong greedy token" "$TMP/wronggreedy" "greedy +5/24"
cp -r tests/fixtures/gpt2_tiny "$TMP/wronglogit"
perturb_tensor "$TMP/wronglogit/forward.safetensors" logits
expect_fail "wrong logit" "$TMP/wronglogit" "logits "
cp -r tests/fixtures/qwen3_tiny "$TMP/wronggrad"
perturb_tensor "$TMP/wronggrad/grads.safetensors" model.layers.1.mlp.down_proj.weight
expect_fail "wrong gradient" "$TMP/wronggrad" "gradient  layers.1.mlp.down.weight "
# NaN on the reference side must fail too (a max over NaN would skip it).
cp -r tests/fixtures/qwen3_tiny "$TMP/nanlogit"
perturb_tensor "$TMP/nanlogit/forward.safetensors" logits nan
expect_fail "NaN logit" "$TMP/nanlogit" "logits "
cp -r tests/fixtures/qwen3_tiny "$TMP/nangrad"
perturb_tensor "$TMP/nangrad/grads.safetensors" model.layers.0.self_attn.q_norm.weight nan
expect_fail "NaN gradient" "$TMP/nangrad" "gradient  layers.0.attn.q_norm.weight "

echo "PASS check_fixtures"
