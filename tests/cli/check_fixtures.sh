#!/usr/bin/env bash
# polaris_check against the Hugging Face reference dumps in tests/fixtures/:
# both tiny models PASS (logits, loss, every gradient, greedy continuation);
# a missing or corrupted fixture is one "error: ..." line and exit 1; a
# fixture whose expected values disagree with the model prints FAIL, exit 1.
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

# A wrong expected loss is a failed check (FAIL, exit 1), not an error.
cp -r tests/fixtures/qwen3_tiny "$TMP/wrongloss"
python3 - "$TMP/wrongloss/expected.json" <<'EOF'
import json, sys
path = sys.argv[1]
data = json.load(open(path))
data["loss"] += 0.01
json.dump(data, open(path, "w"))
EOF
"$BIN" "$TMP/wrongloss" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 1 ] || fail "wrong loss: exit $rc, expected 1"
[ "$(tail -1 "$TMP/out")" = FAIL ] || fail "wrong loss: last line is not FAIL: $(tail -3 "$TMP/out")"
grep -qE '^  loss .*FAIL$' "$TMP/out" || fail "wrong loss: the loss line does not say FAIL"

echo "PASS check_fixtures"
