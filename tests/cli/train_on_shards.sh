#!/usr/bin/env bash
# End to end on the CPU: text corpus -> a tiny byte-level BPE tokenizer.json
# (learned here, python3 stdlib only) -> polaris_tokenize shards ->
# polaris_train --init qwen3-tiny for 30 steps -> the JSONL log says the loss
# fell, and the saved model.bin loads. Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
TRAIN=build/polaris_train
TOKENIZE=build/polaris_tokenize
CONVERT=build/polaris_convert
require_built "$TRAIN" "$TOKENIZE" "$CONVERT"

# 1. Corpus (one JSONL document per line) and tokenizer.json.
python3 - "$TMP" <<'EOF' || exit 1
import collections, json, random, re, sys
d = sys.argv[1]
random.seed(2024)
subjects = ["the cat", "a small dog", "the old farmer", "my sister", "the teacher", "a red bird",
            "the children", "our neighbour", "the baker", "a tired horse"]
verbs = ["sees", "likes", "finds", "carries", "watches", "paints", "follows", "helps", "calls", "hears"]
objects = ["the river", "a green apple", "the tall tree", "some bread", "the yellow house",
           "a quiet garden", "the morning train", "an empty box", "the blue sky", "a warm coat"]
endings = ["every day.", "in the evening.", "before lunch.", "after the rain.", "near the hill.",
           "with great care.", "again and again.", "on monday."]
docs = []
for i in range(400):
    sentences = []
    for _ in range(random.randint(2, 4)):
        s = "%s %s %s %s" % (random.choice(subjects), random.choice(verbs),
                             random.choice(objects), random.choice(endings))
        sentences.append(s[0].upper() + s[1:])
    docs.append(" ".join(sentences))
with open(d + "/corpus.jsonl", "w") as f:
    for doc in docs:
        f.write(json.dumps({"text": doc}) + "\n")

# GPT-2's byte -> printable unicode alphabet.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
         list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
byte_map = bytes_to_unicode()
alphabet = [byte_map[b] for b in range(256)]
vocab = {sym: i for i, sym in enumerate(alphabet)}

# Words as ByteLevel pre-tokenizes ASCII text (the GPT-2 pattern, ASCII classes).
pattern = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
words = collections.Counter()
for doc in docs:
    for w in pattern.findall(doc):
        words[tuple(byte_map[b] for b in w.encode("utf-8"))] += 1

merges = []
for _ in range(120):
    pairs = collections.Counter()
    for w, c in words.items():
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += c
    if not pairs:
        break
    (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
    if count < 2:
        break
    merges.append(a + " " + b)
    vocab[a + b] = len(vocab)
    merged = collections.Counter()
    for w, c in words.items():
        out, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(w[i])
                i += 1
        merged[tuple(out)] += c
    words = merged

eot = len(vocab)
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "vocab": vocab, "merges": merges},
}
assert eot + 1 < 512, eot
with open(d + "/tokenizer.json", "w") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
print("corpus: %d documents; tokenizer: %d merges, vocabulary %d" % (len(docs), len(merges), eot + 1))
EOF

# The tokenizer round-trips a line of the corpus.
head -1 "$TMP/corpus.jsonl" >"$TMP/line.jsonl"
$TOKENIZE encode --tokenizer "$TMP/tokenizer.json" <"$TMP/line.jsonl" >"$TMP/ids.jsonl" 2>"$TMP/err" \
  || fail "encode: $(cat "$TMP/err")"
$TOKENIZE decode --tokenizer "$TMP/tokenizer.json" <"$TMP/ids.jsonl" >"$TMP/back.jsonl" 2>"$TMP/err" \
  || fail "decode: $(cat "$TMP/err")"
python3 - "$TMP" <<'EOF' || fail "tokenizer round trip"
import json, sys
d = sys.argv[1]
text = json.loads(open(d + "/line.jsonl").readline())["text"]
ids = json.loads(open(d + "/ids.jsonl").readline())["ids"]
back = json.loads(open(d + "/back.jsonl").readline())["text"]
assert back == text, (text, back)
assert all(0 <= i < 512 for i in ids), ids
assert len(ids) < 0.6 * len(text.encode()), "merges are not used: %d ids for %d bytes" % (len(ids), len(text))
EOF

# 2. Shards.
$TOKENIZE shards --tokenizer "$TMP/tokenizer.json" --out "$TMP/data" --val-fraction 0.05 \
  "$TMP/corpus.jsonl" >"$TMP/tok.out" 2>"$TMP/tok.err" || fail "polaris_tokenize shards: $(cat "$TMP/tok.err")"
ls "$TMP"/data_train_*.bin >/dev/null 2>&1 || fail "no train shards: $(cat "$TMP/tok.err")"
ls "$TMP"/data_val_*.bin >/dev/null 2>&1 || fail "no val shards: $(cat "$TMP/tok.err")"

# 3. Train.
start=$(date +%s)
$TRAIN --init qwen3-tiny --data "$TMP/data_train_*.bin" --val-data "$TMP/data_val_*.bin" \
  --steps 30 --batch 4 --seq 32 --lr 3e-3 --log "$TMP/log.jsonl" --out "$TMP/m.bin" \
  >"$TMP/train.out" 2>"$TMP/train.err" || fail "polaris_train: $(cat "$TMP/train.err")"
echo "training took $(( $(date +%s) - start )) s"
tail -4 "$TMP/train.out"
[ -s "$TMP/train.err" ] && fail "polaris_train wrote to stderr: $(cat "$TMP/train.err")"

# 4. The log: 30 step records with the contract's keys, the loss falling.
python3 - "$TMP/log.jsonl" <<'EOF' || fail "log check"
import json, math, sys
steps, events = [], []
for n, line in enumerate(open(sys.argv[1]), 1):
    record = json.loads(line)  # every line is valid JSON
    assert isinstance(record, dict), "line %d is not an object" % n
    (events if "event" in record else steps).append(record)
assert len(steps) == 30, "expected 30 step records, got %d" % len(steps)
for i, r in enumerate(steps, 1):
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "ms"):
        assert key in r, "step record %d lacks %r: %s" % (i, key, r)
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (i, key, r[key])
    assert r["step"] == i, "record %d has step %s" % (i, r["step"])
    assert r["lr"] >= 0 and r["grad_norm"] >= 0 and r["ms"] >= 0 and r["tokens_per_s"] >= 0, r
first = steps[0]["loss"]
last5 = sum(r["loss"] for r in steps[-5:]) / 5
print("loss: first %.3f, mean of the last 5 %.3f" % (first, last5))
assert 5.0 < first < 7.5, "first loss %.3f is not ~ln(512) = 6.24" % first
assert last5 < first - 1.0, "loss did not fall: first %.3f, last 5 %.3f" % (first, last5)
assert max(r["lr"] for r in steps) <= 3e-3 * (1 + 1e-6), "lr above --lr"
vals = [e for e in events if e.get("event") == "validation"]
assert vals, "no validation record"
assert vals[-1]["step"] == 30 and math.isfinite(vals[-1]["val_loss"]), vals[-1]
assert vals[-1]["val_loss"] < first - 0.5, "val loss %.3f vs first train loss %.3f" % (vals[-1]["val_loss"], first)
print("val loss %.3f" % vals[-1]["val_loss"])
EOF

# 5. The saved model loads.
$CONVERT --info "$TMP/m.bin" >"$TMP/info.out" 2>"$TMP/info.err" || fail "m.bin does not load: $(cat "$TMP/info.err")"
cat "$TMP/info.out"
grep -q qwen3 "$TMP/info.out" || fail "--info does not say qwen3"
echo "PASS train_on_shards"
