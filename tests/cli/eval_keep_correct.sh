#!/usr/bin/env bash
# polaris_eval end to end (run from the repo root after `make`; exit 0 = pass).
#
# Setup, all tiny: a byte-level BPE tokenizer.json written here (256 byte symbols
# + the ChatML added tokens, no merges) whose id 0 is the byte "7"; a random
# qwen3-tiny model from `polaris_train --init qwen3-tiny --steps 1`, then a copy
# with its final RMSNorm weight (the last 128 floats of model.bin) zeroed, so its
# logits are all 0 and greedy decoding emits id 0 = "7" every step. A Countdown
# problem with numbers [7777] and target 7777 is then solved by every greedy
# 4-token response, which exercises --keep-correct with real data.
# Checks: the summary, --out / --pass-rates / --keep-correct structure, results
# independent of --batch, and bad inputs (one "error:" line, exit 1, no files).
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
EVAL=build/polaris_eval
TRAIN=build/polaris_train
require_built "$EVAL" "$TRAIN"

python3 - "$TMP" <<'PY' || fail "setup: python"
import json, struct, sys
out = sys.argv[1]
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
sym = {b: chr(c) for b, c in zip(bs, cs)}
ids = list(range(256))
ids[0], ids[ord("7")] = ids[ord("7")], ids[0]        # id 0 is the byte "7"
vocab = {sym[b]: ids[b] for b in range(256)}
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
added = [{"id": 256 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": t.startswith("<|")} for i, t in enumerate(specials)]
for a in added:
    vocab[a["content"]] = a["id"]
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
       "normalizer": None, "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab, "merges": []}}
json.dump(tok, open(out + "/tokenizer.json", "w"))
toks = [(i * 7) % 261 for i in range(2048)]
with open(out + "/shard.bin", "wb") as f:
    hdr = [0] * 256
    hdr[0], hdr[1], hdr[2] = 20240520, 1, len(toks)
    f.write(struct.pack("<256i", *hdr))
    f.write(struct.pack("<%dH" % len(toks), *toks))
# The zero-logit model: the final norm weight is the flat buffer's tail.
PY
$TRAIN --init qwen3-tiny --mode pretrain --data "$TMP/shard.bin" --steps 1 --batch 1 --seq 32 \
  --out "$TMP/m.bin" >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; fail "setup: polaris_train"; }
python3 - "$TMP" <<'PY' || fail "setup: zero model"
import sys
out = sys.argv[1]
data = bytearray(open(out + "/m.bin", "rb").read())
data[-128 * 4:] = bytes(128 * 4)   # qwen3-tiny: hidden 128, fp32, tied head
open(out + "/zero.bin", "wb").write(data)
PY

cat >"$TMP/p.jsonl" <<'EOF'
{"problem": "What is 2+2?", "answer": "4"}

{"problem": "What is 3*5?", "answer": 15, "pass_rate": 0.5}
{"prompt": "Make 7777 from 7777.", "numbers": [7777], "target": 7777}
EOF

# --- a random model: every output file, one record per problem -------------
$EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" --tokenizer "$TMP/tokenizer.json" --samples 2 \
  --max-response 8 --out "$TMP/out.jsonl" --pass-rates "$TMP/rates.jsonl" \
  --keep-correct "$TMP/keep.jsonl" >"$TMP/stdout" 2>"$TMP/stderr" \
  || { cat "$TMP/stderr"; fail "eval on a random model"; }
for key in "avg@2" "pass@1" "pass@2" "maj@2" "response length"; do
  grep -q "^$key" "$TMP/stdout" || fail "summary has no '$key': $(cat "$TMP/stdout")"
done
grep -q "3/3 problems" "$TMP/stderr" || fail "no progress line: $(cat "$TMP/stderr")"
ls "$TMP"/*.tmp >/dev/null 2>&1 && fail "left .tmp files behind"
python3 - "$TMP" <<'PY' || fail "output structure"
import json, sys
d = sys.argv[1]
def lines(name):
    return [json.loads(l) for l in open(d + "/" + name) if l.strip()]
out = lines("out.jsonl")
assert len(out) == 3, out
assert [r["line"] for r in out] == [1, 3, 4], [r["line"] for r in out]
assert [r["index"] for r in out] == [0, 1, 2]
assert out[0]["prompt"] == "What is 2+2?" and out[0]["answer"] == "4" and out[1]["answer"] == 15
for r in out:
    assert len(r["samples"]) == 2
    for s in r["samples"]:
        assert set(["response", "correct", "reward", "answer"]) <= set(s), s
        assert isinstance(s["response"], str) and isinstance(s["correct"], bool)
        assert 0 < s["tokens"] <= 8
    assert r["correct"] == sum(s["correct"] for s in r["samples"])
    assert r["pass_rate"] == r["correct"] / 2
rates = lines("rates.jsonl")
assert [(r["line"], r["pass_rate"]) for r in rates] == [(r["line"], r["pass_rate"]) for r in out], rates
for r in lines("keep.jsonl") if open(d + "/keep.jsonl").read().strip() else []:
    assert set(r) == {"prompt", "response"}, r
PY

# --- the same run in other chunk sizes samples the same responses ------------
for b in 1 5; do
  $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" --tokenizer "$TMP/tokenizer.json" --samples 2 \
    --max-response 8 --batch $b --out "$TMP/out_b$b.jsonl" >/dev/null 2>&1 || fail "eval --batch $b"
  cmp -s "$TMP/out.jsonl" "$TMP/out_b$b.jsonl" || fail "--batch $b changed the samples"
done

# --- greedy zero-logit model: "7777" solves the Countdown problem ------------
$EVAL "$TMP/zero.bin" --data "$TMP/p.jsonl" --tokenizer "$TMP/tokenizer.json" --samples 3 \
  --max-response 4 --temperature 0 --out "$TMP/zout.jsonl" --pass-rates "$TMP/zrates.jsonl" \
  --keep-correct "$TMP/zkeep.jsonl" --system-prompt "Be brief." \
  --drop-above 0.9 --kept-problems "$TMP/zkept.jsonl" >"$TMP/zstdout" 2>"$TMP/zstderr" \
  || { cat "$TMP/zstderr"; fail "eval on the zero-logit model"; }
grep -q "^avg@3 *0.3333" "$TMP/zstdout" || fail "avg@3: $(cat "$TMP/zstdout")"
grep -q "^pass@3 *0.3333" "$TMP/zstdout" || fail "pass@3: $(cat "$TMP/zstdout")"
grep -q "^maj@3 *0.3333" "$TMP/zstdout" || fail "maj@3: $(cat "$TMP/zstdout")"
python3 - "$TMP" <<'PY' || fail "keep-correct structure"
import json, sys
d = sys.argv[1]
keep = [json.loads(l) for l in open(d + "/zkeep.jsonl")]
assert keep == [{"prompt": "Make 7777 from 7777.", "response": "7777", "system": "Be brief."}] * 3, keep
rates = [json.loads(l) for l in open(d + "/zrates.jsonl")]
assert rates == [{"line": 1, "pass_rate": 0.0}, {"line": 3, "pass_rate": 0.0},
                 {"line": 4, "pass_rate": 1.0}], rates
out = [json.loads(l) for l in open(d + "/zout.jsonl")]
assert out[2]["majority_answer"] == "7777" and out[2]["majority_correct"] is True, out[2]
assert out[0]["samples"][0]["response"] == "7777"
# drop-easy: the problems at or below pass rate 0.9 (lines 1 and 3), verbatim
data = open(d + "/p.jsonl").read().split("\n")
assert open(d + "/zkept.jsonl").read() == data[0] + "\n" + data[2] + "\n", open(d + "/zkept.jsonl").read()
PY
grep -q "wrote .*zkept.jsonl (2 of 3 problems with pass rate <= 0.9)" "$TMP/zstdout" \
  || fail "--kept-problems summary: $(cat "$TMP/zstdout")"

# --- --temperature-sweep: accuracy and diversity per temperature, a pick -----
$EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" --tokenizer "$TMP/tokenizer.json" --samples 4 \
  --max-response 8 --temperature-sweep 1.4:1.6:0.05 --sweep-out "$TMP/sweep.jsonl" \
  >"$TMP/sweep.out" 2>&1 || { cat "$TMP/sweep.out"; fail "--temperature-sweep"; }
$EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" --tokenizer "$TMP/tokenizer.json" --samples 4 \
  --max-response 8 --temperature-sweep 0:1:1 --sweep-tolerance 1 --sweep-out "$TMP/sweep01.jsonl" \
  >"$TMP/sweep01.out" 2>&1 || { cat "$TMP/sweep01.out"; fail "--temperature-sweep 0:1:1"; }
grep -q "^recommended temperature" "$TMP/sweep.out" || fail "no recommendation: $(cat "$TMP/sweep.out")"
python3 - "$TMP/sweep.jsonl" "$TMP/sweep01.jsonl" <<'PY' || fail "sweep output"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
points, pick = lines[:-1], lines[-1]
assert [round(p["temperature"], 6) for p in points] == [1.4, 1.45, 1.5, 1.55, 1.6], points
for p in points:
    assert 0 <= p["accuracy"] <= 1 and 0 < p["diversity"] <= 1 and p["samples"] == 12, p
# the rule, recomputed: most diverse within 0.02 of the best accuracy (ties: lower T)
best = max(p["accuracy"] for p in points)
ok = [p for p in points if p["accuracy"] >= best - 0.02]
want = max(ok, key=lambda p: (p["diversity"], -p["temperature"]))["temperature"]
assert pick["recommended_temperature"] == want and pick["tolerance"] == 0.02, (pick, want)
# negative control: greedy (T=0) completions are identical, so less diverse than T=1
g, t1, pick01 = [json.loads(l) for l in open(sys.argv[2])]
assert g["temperature"] == 0 and g["diversity"] < t1["diversity"], (g, t1)
assert pick01["recommended_temperature"] == 1, pick01
PY

# --- bad inputs: one "error:" line naming the file or flag, exit 1, no files --
printf '{"problem": "ok", "answer": 1}\n{"problem": "no answer"}\n' >"$TMP/bad.jsonl"
printf '{"problem": "ok", "answer": 1}\n{oops\n' >"$TMP/malformed.jsonl"
T="--tokenizer $TMP/tokenizer.json"
O="--out $TMP/e.jsonl --pass-rates $TMP/e_rates.jsonl --keep-correct $TMP/e_keep.jsonl"
no_output_on_error "$TMP/e.jsonl" "$TMP/e_rates.jsonl" "$TMP/e_keep.jsonl"
expect_error "no model" "usage" $EVAL --data "$TMP/p.jsonl" $T
expect_error "missing --data" "--data" $EVAL "$TMP/m.bin" $T
expect_error "missing --tokenizer" "--tokenizer" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl"
expect_error "no data file" "$TMP/nope.jsonl" $EVAL "$TMP/m.bin" --data "$TMP/nope.jsonl" $T $O
expect_error "malformed line" "$TMP/malformed.jsonl:2" $EVAL "$TMP/m.bin" --data "$TMP/malformed.jsonl" $T $O
expect_error "bad record" "$TMP/bad.jsonl:2: missing \"answer\"" $EVAL "$TMP/m.bin" --data "$TMP/bad.jsonl" $T $O
expect_error "unknown flag" "--frobnicate" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --frobnicate 1
expect_error "bad --samples" "--samples" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --samples 0
expect_error "bad --top-p" "--top-p" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --top-p 0
expect_error "too long" "--max-response" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --max-response 1000 $O
expect_error "missing model" "$TMP/nope.bin" $EVAL "$TMP/nope.bin" --data "$TMP/p.jsonl" $T $O
expect_error "bad backend" "--backend" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --backend tpu $O
expect_error "unwritable --out" "$TMP/no/dir/o.jsonl" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --out "$TMP/no/dir/o.jsonl"
expect_error "--drop-above alone" "--kept-problems" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --drop-above 0.5
expect_error "bad --temperature-sweep" "--temperature-sweep" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --temperature-sweep 1.6:1.4:0.05
expect_error "--temperature with a sweep" "--temperature does not apply" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --temperature-sweep 1:2:0.5 --temperature 1
expect_error "--sweep-out alone" "--sweep-out needs --temperature-sweep" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --sweep-out "$TMP/s.jsonl"
expect_error "bad --drop-above" "--drop-above" $EVAL "$TMP/m.bin" --data "$TMP/p.jsonl" $T --drop-above 2 --kept-problems "$TMP/k.jsonl"
# --skip-bad skips the malformed line and evaluates the rest.
$EVAL "$TMP/m.bin" --data "$TMP/malformed.jsonl" $T --skip-bad --samples 1 --max-response 2 \
  --pass-rates "$TMP/skip_rates.jsonl" >"$TMP/skip.out" 2>&1 || fail "--skip-bad: $(cat "$TMP/skip.out")"
[ "$(cat "$TMP/skip_rates.jsonl")" = '{"line":1,"pass_rate":0.0}' ] || fail "--skip-bad rates: $(cat "$TMP/skip_rates.jsonl")"
grep -q "skipped 1 malformed" "$TMP/skip.out" || fail "--skip-bad does not say what it skipped"
echo "ok"
