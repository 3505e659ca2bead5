#!/usr/bin/env bash
# run/plot_metrics.py on a synthetic metrics log (run from the repo root; exit 0 = pass):
# the stdlib PNG writer (forced with --no-matplotlib, so this passes with or
# without matplotlib) writes a valid PNG (signature, IHDR, CRCs, decodable IDAT of
# the stated size, curves drawn in colour); the default path works too; bad
# input ends in one "error:" line naming the file (and line), exit 1, no PNG.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
SCRIPT=run/plot_metrics.py

python3 - "$TMP/log.jsonl" <<'PY' || fail "setup"
import json, math, sys
with open(sys.argv[1], "w") as f:
    for s in range(1, 121):
        f.write(json.dumps({"step": s, "loss": 3 * math.exp(-s / 40) + 0.2 * math.sin(s), "lr": 1e-3,
                            "grad_norm": 1.5, "reward": s / 120, "accuracy": s / 240,
                            "response_len": 100 + s % 17}) + "\n")
        if s % 20 == 0:
            f.write(json.dumps({"event": "validation", "step": s, "val_loss": 3 * math.exp(-s / 40)}) + "\n")
            f.write(json.dumps({"event": "eval", "step": s, "accuracy": s / 300}) + "\n")
    f.write('{"step": 121, "loss": 0.')   # a log still being written: ignored
PY

check_png() {  # FILE: a well-formed RGB PNG with something drawn in colour
  python3 - "$1" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad signature"
pos, chunks = 8, []
while pos < len(data):
    n, = struct.unpack(">I", data[pos:pos + 4]); kind = data[pos + 4:pos + 8]
    body = data[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, "bad CRC in %r" % kind
    chunks.append((kind, body)); pos += 12 + n
assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [c[0] for c in chunks]
w, h, depth, ctype = struct.unpack(">IIBB", chunks[0][1][:10])
assert w >= 400 and h >= 300, (w, h)
if ctype == 2 and depth == 8 and b"pHYs" not in [c[0] for c in chunks]:  # our writer: decode it
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    assert len(raw) == h * (1 + 3 * w), "IDAT size"
    assert all(raw[y * (1 + 3 * w)] == 0 for y in range(h)), "filter bytes"
    blue, red = raw.count(b"\x1f\x77\xb4"), raw.count(b"\xd6\x27\x28")
    assert blue > 500 and red > 50, (blue, red)
print("png ok", w, h)
PY
}

out=$(python3 "$SCRIPT" "$TMP/log.jsonl" --out "$TMP/plot.png" --no-matplotlib) || fail "plot (stdlib)"
echo "$out" | grep -q "panels: loss, reward, accuracy, response_len" || fail "panels: $out"
check_png "$TMP/plot.png" || fail "stdlib PNG"
python3 "$SCRIPT" "$TMP/log.jsonl" >/dev/null || fail "plot (default)"
check_png "$TMP/log.png" || fail "default PNG"
# A pretraining log: loss/val_loss, then lr, grad_norm... fill the other panels.
printf '{"step":1,"loss":5,"lr":0.1,"grad_norm":2,"tokens_per_s":10}\n{"event":"validation","step":1,"val_loss":5.5}\n{"step":2,"loss":4,"lr":0.1,"grad_norm":1,"tokens_per_s":12}\n' >"$TMP/pre.jsonl"
out=$(python3 "$SCRIPT" "$TMP/pre.jsonl" --out "$TMP/pre.png" --no-matplotlib) || fail "pretrain log"
echo "$out" | grep -q "panels: loss, lr, grad_norm, tokens_per_s" || fail "pretrain panels: $out"
check_png "$TMP/pre.png" >/dev/null || fail "pretrain PNG"
# A GRPO log whose only accuracy data are held-out evaluations ("avg_at_k"
# events, src/train/grpo.cpp evaluate()): they fill the accuracy panel as dots.
python3 - "$TMP/grpo.jsonl" <<'PY' || fail "setup (grpo log)"
import json, sys
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"event": "eval", "step": 0, "avg_at_k": 0.25, "k": 4, "problems": 8}) + "\n")
    for s in range(1, 41):
        f.write(json.dumps({"step": s, "loss": 1.0 / s, "lr": 1e-4, "grad_norm": 0.5}) + "\n")
        if s % 10 == 0:
            f.write(json.dumps({"event": "eval", "step": s, "avg_at_k": 0.25 + s / 80,
                                "k": 4, "problems": 8}) + "\n")
PY
out=$(python3 "$SCRIPT" "$TMP/grpo.jsonl" --out "$TMP/grpo.png" --no-matplotlib) || fail "grpo log"
echo "$out" | grep -q "panels: loss, accuracy, lr, grad_norm" || fail "avg_at_k not drawn: $out"
check_png "$TMP/grpo.png" >/dev/null || fail "grpo PNG"
ls "$TMP"/*.tmp >/dev/null 2>&1 && fail "left .tmp files behind"

no_output_on_error "$TMP/e.png"
printf '{"step":1,"loss":2}\n{oops\n{"step":2,"loss":1}\n' >"$TMP/bad.jsonl"
printf '{"step":1,"note":"x"}\n' >"$TMP/nothing.jsonl"
: >"$TMP/empty.jsonl"
expect_error "missing log" "$TMP/nope.jsonl" python3 "$SCRIPT" "$TMP/nope.jsonl" --out "$TMP/e.png"
expect_error "malformed line" "$TMP/bad.jsonl:2" python3 "$SCRIPT" "$TMP/bad.jsonl" --out "$TMP/e.png"
expect_error "no metrics" "no numeric metrics" python3 "$SCRIPT" "$TMP/nothing.jsonl" --out "$TMP/e.png"
expect_error "empty log" "no records" python3 "$SCRIPT" "$TMP/empty.jsonl" --out "$TMP/e.png"
expect_error "unwritable" "$TMP/no/dir/e.png" python3 "$SCRIPT" "$TMP/log.jsonl" --out "$TMP/no/dir/e.png" --no-matplotlib
echo ok
