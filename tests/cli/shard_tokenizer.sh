#!/usr/bin/env bash
# Token shards and model.bin record the tokenizer that made their ids
# (data/tokenizer_id.h), and polaris_train refuses to mix tokenizers:
#   1. polaris_tokenize shards writes the record (header words 3..11: the
#      vocabulary size and tokenizer.json's SHA-256, checked here in Python);
#   2. training on them with the same --tokenizer runs, and --out records it;
#   3. another --tokenizer (same vocabulary size, one merge changed) is named;
#   4. a model that records one tokenizer (trained with it, or converted from
#      a Hugging Face directory holding it) refuses shards made with another,
#      and refuses another --tokenizer;
#   5. a shard recording more ids than the model's vocabulary is refused even
#      when the model records no tokenizer; an old shard (no record) still trains;
#   6. checkpoints record the run's tokenizer (state.json "tokenizer"), and
#      --resume refuses a run whose --data or --tokenizer records another
#      (same paths, other contents: the flag values alone agree), naming the
#      flag and the checkpoint; polaris_convert --from-checkpoint writes the
#      record into model.bin, as --out does (from the shards' record when
#      there is no --tokenizer); a checkpoint without one (an older build's)
#      still resumes. Controls: the same inputs resume.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
TRAIN=build/polaris_train
TOKENIZE=build/polaris_tokenize
CONVERT=build/polaris_convert
require_built "$TRAIN" "$TOKENIZE" "$CONVERT"
export OMP_NUM_THREADS=1

# Two byte-level tokenizers of 258 ids that differ in one merge, and a corpus.
python3 - "$TMP" <<'PY' || fail "setup: tokenizers"
import json, sys
d = sys.argv[1]
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_map = dict(zip(bs, map(chr, cs)))
for name, merge in (("a", ("t", "h")), ("b", ("h", "e"))):
    vocab = {byte_map[b]: b for b in range(256)}
    vocab[merge[0] + merge[1]] = 256
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 257, "content": "<|endoftext|>", "single_word": False,
                             "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": [merge[0] + " " + merge[1]]}}
    json.dump(tok, open("%s/tok_%s.json" % (d, name), "w"))
with open(d + "/corpus.jsonl", "w") as f:
    for i in range(60):
        f.write(json.dumps({"text": "the heron %d watches the other herons near the shore." % i}) + "\n")
PY
for t in a b; do
  $TOKENIZE shards --tokenizer "$TMP/tok_$t.json" --out "$TMP/$t" --val-fraction 0 \
    "$TMP/corpus.jsonl" >/dev/null 2>"$TMP/tok.err" || fail "polaris_tokenize shards $t: $(cat "$TMP/tok.err")"
done

# 1. The record in the header.
python3 - "$TMP/a_train_000000.bin" "$TMP/tok_a.json" <<'PY' || fail "the shard header does not record tokenizer a"
import hashlib, struct, sys
header = struct.unpack("<256i", open(sys.argv[1], "rb").read(1024))
assert header[3] == 258, header[3]
digest = hashlib.sha256(open(sys.argv[2], "rb").read()).digest()
assert struct.pack("<8i", *header[4:12]) == digest, "checksum"
assert all(w == 0 for w in header[12:]), "reserved words"
PY
echo "ok  shards record the tokenizer (258 ids, SHA-256 of tok_a.json)"

RUN=(--steps 2 --batch 2 --seq 16)
# 2. The same tokenizer trains; --out records it.
timeout 60 "$TRAIN" --init qwen3-tiny --data "$TMP/a_train_*.bin" --tokenizer "$TMP/tok_a.json" \
  "${RUN[@]}" --out "$TMP/model_a.bin" >"$TMP/a.log" 2>&1 || fail "training with tokenizer a: $(tail -3 "$TMP/a.log")"
$CONVERT --info "$TMP/model_a.bin" | grep -q "tokenizer: a tokenizer of 258 ids" \
  || fail "--out does not record the tokenizer: $($CONVERT --info "$TMP/model_a.bin")"
echo "ok  the same --tokenizer trains, and --out records it"

# 3. Another --tokenizer.
expect_error "--tokenizer b on shards of a" "a_train_000000.bin was made with a tokenizer of 258 ids" \
  "$TRAIN" --init qwen3-tiny --data "$TMP/a_train_*.bin" --tokenizer "$TMP/tok_b.json" "${RUN[@]}"
grep -qF -- "but --tokenizer $TMP/tok_b.json is" "$TMP/err" || fail "the error does not name --tokenizer"

# 4. A model that records tokenizer a: trained with it, or converted with it.
expect_error "model of a on shards of b" "--data: $TMP/b_train_000000.bin was made with" \
  "$TRAIN" "$TMP/model_a.bin" --data "$TMP/b_train_*.bin" "${RUN[@]}"
grep -qF "the model file $TMP/model_a.bin's tokenizer" "$TMP/err" || fail "the error does not name the model file"
expect_error "model of a with --tokenizer b" "--tokenizer $TMP/tok_b.json is a tokenizer of 258 ids" \
  "$TRAIN" "$TMP/model_a.bin" --data "$TMP/a_train_*.bin" --tokenizer "$TMP/tok_b.json" "${RUN[@]}"
mkdir "$TMP/hf" && cp tests/fixtures/qwen3_tiny/hf_model/* "$TMP/hf/" && cp "$TMP/tok_b.json" "$TMP/hf/tokenizer.json"
$CONVERT --from-hf "$TMP/hf" --out "$TMP/converted_b.bin" >"$TMP/convert.log" 2>&1 \
  || fail "convert: $(cat "$TMP/convert.log")"
grep -q "recorded .*tokenizer.json: a tokenizer of 258 ids" "$TMP/convert.log" || fail "convert did not record the tokenizer"
expect_error "converted model of b on shards of a" "a_train_000000.bin was made with" \
  "$TRAIN" "$TMP/converted_b.bin" --data "$TMP/a_train_*.bin" "${RUN[@]}"
timeout 60 "$TRAIN" "$TMP/converted_b.bin" --data "$TMP/b_train_*.bin" "${RUN[@]}" >"$TMP/b.log" 2>&1 \
  || fail "converted model of b on shards of b: $(tail -3 "$TMP/b.log")"
echo "ok  a converted model trains on shards of its own tokenizer"

# 5. The vocabulary size alone (no recorded tokenizer in the model), and an old shard.
python3 - "$TMP/a_train_000000.bin" "$TMP/wide.bin" <<'PY' || fail "setup: wide shard"
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
b[12:16] = struct.pack("<i", 600)
open(sys.argv[2], "wb").write(b)
PY
expect_error "a tokenizer larger than the model" "more than the model's vocabulary of 512" \
  "$TRAIN" --init qwen3-tiny --data "$TMP/wide.bin" "${RUN[@]}"
write_token_shard "$TMP/old.bin" 3 2000
timeout 60 "$TRAIN" --init qwen3-tiny --data "$TMP/old.bin" --tokenizer "$TMP/tok_a.json" "${RUN[@]}" \
  >"$TMP/old.log" 2>&1 || fail "an old shard without a record: $(tail -3 "$TMP/old.log")"
echo "ok  an old shard (no record) still trains"

# 6. Checkpoints. --data: shards of a (no --tokenizer), later replaced by b's.
mkdir "$TMP/d"
cp "$TMP/a_train_000000.bin" "$TMP/d/shard.bin"
CKPT=(--init qwen3-tiny --data "$TMP/d/shard.bin" --batch 2 --seq 16 --checkpoint-dir "$TMP/ck")
timeout 60 "$TRAIN" "${CKPT[@]}" --steps 2 >"$TMP/ck.log" 2>&1 || fail "checkpointed run: $(tail -3 "$TMP/ck.log")"
python3 - "$TMP/ck/step_00000002/state.json" "$TMP/tok_a.json" <<'PY' || fail "state.json does not record tokenizer a"
import hashlib, json, sys
record = json.load(open(sys.argv[1]))["tokenizer"]
assert record == {"vocab_size": 258, "sha256": hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()}, record
PY
cp -r "$TMP/ck" "$TMP/ck_copy"
cp "$TMP/b_train_000000.bin" "$TMP/d/shard.bin"
expect_error "--resume on shards of another tokenizer" "--resume: $TMP/ck/step_00000002 was made with a tokenizer of 258 ids" \
  "$TRAIN" "${CKPT[@]}" --steps 4 --resume
grep -qF "but --data $TMP/d/shard.bin's tokenizer is a tokenizer of 258 ids" "$TMP/err" \
  || fail "the error does not name --data"
cp "$TMP/a_train_000000.bin" "$TMP/d/shard.bin"
timeout 60 "$TRAIN" "${CKPT[@]}" --steps 4 --resume --out "$TMP/ck_out.bin" >"$TMP/resumed.log" 2>&1 \
  || fail "control: resuming on the same shards: $(tail -3 "$TMP/resumed.log")"
grep -q "resumed from $TMP/ck/step_00000002" "$TMP/resumed.log" || fail "control: did not resume"
[ "$($CONVERT --info "$TMP/ck_out.bin" | grep '^tokenizer:')" = "$($CONVERT --info "$TMP/model_a.bin" | grep '^tokenizer:')" ] \
  || fail "--out of a run on recorded shards (no --tokenizer) does not record their tokenizer"
$CONVERT --from-checkpoint "$TMP/ck" --out "$TMP/from_ck.bin" >"$TMP/from_ck.log" 2>&1 \
  || fail "convert --from-checkpoint: $(cat "$TMP/from_ck.log")"
[ "$($CONVERT --info "$TMP/from_ck.bin" | grep '^tokenizer:')" = "$($CONVERT --info "$TMP/model_a.bin" | grep '^tokenizer:')" ] \
  || fail "--from-checkpoint does not carry the record: $($CONVERT --info "$TMP/from_ck.bin" | grep '^tokenizer:')"
echo "ok  checkpoints record the shards' tokenizer; --resume refuses another's shards; --from-checkpoint carries it"
# An older build's checkpoint: no record (and no manifest, as before manifests).
python3 - "$TMP/ck_copy/step_00000002" <<'PY' || fail "setup: old checkpoint"
import json, os, sys
path = sys.argv[1] + "/state.json"
state = json.load(open(path)); del state["tokenizer"]; json.dump(state, open(path, "w"))
os.remove(sys.argv[1] + "/manifest.json")
PY
cp "$TMP/b_train_000000.bin" "$TMP/d/shard.bin"
timeout 60 "$TRAIN" "${CKPT[@]}" --checkpoint-dir "$TMP/ck_copy" --steps 3 --resume >"$TMP/old_ck.log" 2>&1 \
  || fail "a checkpoint without a record: $(tail -3 "$TMP/old_ck.log")"
grep -q "resumed from $TMP/ck_copy/step_00000002" "$TMP/old_ck.log" || fail "the old checkpoint did not resume"
echo "ok  a checkpoint without a record still resumes"
# --tokenizer: an old shard (no record) with --tokenizer FILE, whose contents change.
cp "$TMP/tok_a.json" "$TMP/tok.json"
TOKCKPT=(--init qwen3-tiny --data "$TMP/old.bin" --tokenizer "$TMP/tok.json" --batch 2 --seq 16
         --checkpoint-dir "$TMP/ck_tok")
timeout 60 "$TRAIN" "${TOKCKPT[@]}" --steps 2 >"$TMP/ck_tok.log" 2>&1 || fail "run with --tokenizer: $(tail -3 "$TMP/ck_tok.log")"
cp "$TMP/tok_b.json" "$TMP/tok.json"
expect_error "--resume with another --tokenizer" "--resume: $TMP/ck_tok/step_00000002 was made with" \
  "$TRAIN" "${TOKCKPT[@]}" --steps 4 --resume
grep -qF "but --tokenizer $TMP/tok.json is a tokenizer of 258 ids" "$TMP/err" || fail "the error does not name --tokenizer"
cp "$TMP/tok_a.json" "$TMP/tok.json"
timeout 60 "$TRAIN" "${TOKCKPT[@]}" --steps 3 --resume >"$TMP/tok_resumed.log" 2>&1 \
  || fail "control: the same --tokenizer: $(tail -3 "$TMP/tok_resumed.log")"
echo "ok  --resume refuses another --tokenizer's contents under the same path"
echo "PASS shard_tokenizer"
