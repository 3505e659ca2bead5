#!/usr/bin/env bash
# Checkpoint manifests through the programs (checkpoint/README.md, Verification):
# a byte flipped in the newest checkpoint's model.h5 (in HDF5's metadata, which
# could crash the library if it were opened) makes --resume skip that step with
# one line naming it and the file, and continue from the previous verified one;
# when none verifies, one error line names the newest and the file.
# polaris_convert --from-checkpoint refuses the corrupt step naming the file,
# and converts the older step named explicitly.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
TRAIN=build/polaris_train
CONVERT=build/polaris_convert
require_built "$TRAIN" "$CONVERT"
export OMP_NUM_THREADS=1

write_token_shard "$TMP/shard_000.bin" 5 8000
RUN=(--init qwen3-tiny --data "$TMP/shard_000.bin" --batch 2 --seq 16 --checkpoint-dir "$TMP/ck"
  --checkpoint-every 2 --keep-last 0)
timeout 120 "$TRAIN" "${RUN[@]}" --steps 4 --out "$TMP/first.bin" >"$TMP/first.log" 2>&1 \
  || fail "setup: checkpointed run: $(tail -3 "$TMP/first.log")"
for step in 2 4; do
  [ -f "$TMP/ck/step_0000000$step/manifest.json" ] || fail "step $step has no manifest.json"
done
(cd "$TMP/ck/step_00000004" && python3 - <<'PY') || fail "manifest.json does not match sha256 of the files"
import hashlib, json, os
m = json.load(open("manifest.json"))
names = sorted(e["name"] for e in m["files"])
assert names == sorted(f for f in os.listdir(".") if f != "manifest.json"), names
for e in m["files"]:
    data = open(e["name"], "rb").read()
    assert len(data) == e["size"] and hashlib.sha256(data).hexdigest() == e["sha256"], e["name"]
PY
cp -r "$TMP/ck/step_00000004" "$TMP/step4.good"

flip() {  # flip FILE OFFSET
  python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x5a]))" "$1" "$2"
}
flip "$TMP/ck/step_00000004/model.h5" 700

timeout 120 "$TRAIN" "${RUN[@]}" --steps 4 --resume --out "$TMP/resumed.bin" >"$TMP/resumed.log" 2>&1 \
  || fail "resume past a corrupt step: $(tail -3 "$TMP/resumed.log")"
grep -q '^--resume: skipping step_00000004: .*step_00000004/model.h5: SHA-256' "$TMP/resumed.log" \
  || fail "no skip line naming step 4 and model.h5: $(head -5 "$TMP/resumed.log")"
[ "$(grep -c '^--resume: skipping' "$TMP/resumed.log")" = 1 ] || fail "more than one skip line"
grep -q "resumed from .*step_00000002 at step 2" "$TMP/resumed.log" \
  || fail "did not resume from step 2: $(head -5 "$TMP/resumed.log")"
echo "ok  resume skips the corrupt step 4: $(grep '^--resume: skipping' "$TMP/resumed.log")"
# The resumed run rewrote step 4, which verifies again.
timeout 120 "$CONVERT" --from-checkpoint "$TMP/ck" --out "$TMP/c.bin" >"$TMP/c.log" 2>&1 \
  || fail "convert the rewritten step 4: $(cat "$TMP/c.log")"

no_output_on_error "$TMP/e.bin"
flip "$TMP/ck/step_00000004/model.h5" 300
expect_error "convert a corrupt step" "step_00000004/model.h5: SHA-256" \
  "$CONVERT" --from-checkpoint "$TMP/ck" --out "$TMP/e.bin"
expect_error "convert a corrupt step dir" "step_00000004/model.h5: SHA-256" \
  "$CONVERT" --from-checkpoint "$TMP/ck/step_00000004" --out "$TMP/e.bin"
timeout 120 "$CONVERT" --from-checkpoint "$TMP/ck/step_00000002" --out "$TMP/c2.bin" >"$TMP/c2.log" 2>&1 \
  || fail "convert the older step named explicitly: $(cat "$TMP/c2.log")"
truncate -s -1 "$TMP/ck/step_00000002/optimizer.h5"
no_output_on_error "$TMP/never.bin"
expect_error "resume with nothing verified" "no older checkpoint" \
  "$TRAIN" "${RUN[@]}" --steps 6 --resume --out "$TMP/never.bin"
grep -qF "step_00000004/model.h5" "$TMP/err" || fail "the error does not name the newest: $(cat "$TMP/err")"
echo "PASS resume_skips_corrupt"
