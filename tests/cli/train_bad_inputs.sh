#!/usr/bin/env bash
# polaris_train on bad input: exit status 1, exactly one stderr line
# "error: ..." naming the file or flag, and no --out / --log file written
# (nothing half-written). Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/polaris_train
CONVERT=build/polaris_convert
require_built "$BIN" "$CONVERT"

# Inputs: token shards (256 int32 header: magic 20240520, version, count;
# then uint16 (v1) or uint32 (v2) tokens) and model.bin files.
python3 - "$TMP" <<'EOF'
import random, struct, sys
d = sys.argv[1]
def shard(path, tokens, version=1, magic=20240520, count=None, keep_bytes=None):
    header = [0] * 256
    header[0], header[1] = magic, version
    header[2] = len(tokens) if count is None else count
    fmt = "<%d%s" % (len(tokens), "H" if version == 1 else "I")
    data = struct.pack("<256i", *header) + struct.pack(fmt, *tokens)
    if keep_bytes is not None:
        data = data[:keep_bytes]
    open(path, "wb").write(data)
random.seed(7)
tokens = [random.randrange(512) for _ in range(3000)]
shard(d + "/good_000.bin", tokens)
shard(d + "/good_001.bin", tokens[:1000], version=2)
shard(d + "/trunc_000.bin", tokens, keep_bytes=256 * 4 + 1001)       # cut mid-token
shard(d + "/header_000.bin", tokens, keep_bytes=100)                  # cut inside the header
shard(d + "/magic_000.bin", tokens, magic=12345)
shard(d + "/version_000.bin", tokens, version=7)
shard(d + "/vocab_000.bin", tokens + [700], version=2)               # id 700 >= vocab 512
shard(d + "/short_000.bin", tokens[:10])                              # fewer than one row
EOF
[ -f "$TMP/good_000.bin" ] || fail "setup: shards not written"
$CONVERT --from-hf tests/fixtures/qwen3_tiny/hf_model --out "$TMP/model.bin" >/dev/null \
  || fail "setup: polaris_convert"
size=$(stat -c %s "$TMP/model.bin")
head -c $((size - 1000)) "$TMP/model.bin" >"$TMP/truncated.bin"
head -c 40 "$TMP/model.bin" >"$TMP/header_only.bin"
{ printf 'JUNK'; tail -c +5 "$TMP/model.bin"; } >"$TMP/magic.bin"

DATA="$TMP/good_*.bin"
RUN=(--steps 2 --batch 2 --seq 16 --out "$TMP/out.bin")
INIT=(--init qwen3-tiny)

# Sanity: the same command lines run when nothing is wrong.
timeout 120 "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" >"$TMP/stdout" 2>"$TMP/err" \
  || fail "good run (--init) failed: $(cat "$TMP/err")"
[ -s "$TMP/out.bin" ] || fail "good run wrote no --out"
rm -f "$TMP/out.bin"
timeout 120 "$BIN" "$TMP/model.bin" --data "$DATA" "${RUN[@]}" >"$TMP/stdout" 2>"$TMP/err" \
  || fail "good run (model.bin) failed: $(cat "$TMP/err")"
rm -f "$TMP/out.bin"
# Any shape from a Hugging Face config.json: 3 query heads over 1 KV head,
# head_dim 20 (not hidden / heads), untied LM head.
python3 - tests/fixtures/qwen3_tiny/hf_model/config.json "$TMP/odd_config.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
config.update(hidden_size=48, num_attention_heads=3, num_key_value_heads=1, head_dim=20,
              intermediate_size=80, num_hidden_layers=3, tie_word_embeddings=False)
json.dump(config, open(sys.argv[2], "w"))
EOF
timeout 120 "$BIN" --init "$TMP/odd_config.json" --data "$DATA" "${RUN[@]}" >"$TMP/stdout" 2>"$TMP/err" \
  || fail "good run (--init config.json) failed: $(cat "$TMP/err")"
grep -q "layers=3 hidden=48 heads=3/1 head_dim=20 mlp=80 vocab=512 untied" "$TMP/stdout" \
  || fail "--init config.json: not the config's shape: $(head -3 "$TMP/stdout")"
rm -f "$TMP/out.bin"
no_output_on_error "$TMP/out.bin"

# Flags.
expect_error "unknown flag" "--frobnicate" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --frobnicate 3
expect_error "unknown switch" "--no-such-switch" "$BIN" "${INIT[@]}" --data "$DATA" --no-such-switch "${RUN[@]}"
expect_error "--mode bogus" "--mode" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --mode bogus
expect_error "--comm nccl" "--comm nccl" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --comm nccl
expect_error "--recompute bogus" "--recompute" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --recompute some
expect_error "--attention bogus" "--attention" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --attention fast
expect_error "--profile with --resume" "--profile" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --profile --resume
expect_error "--backend bogus" "--backend" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --backend tpu
if ! nvidia-smi >/dev/null 2>&1; then  # no GPU: one line saying why, not a crash
  expect_error "--backend cuda without a GPU" "--backend cuda" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --backend cuda
fi
expect_error "--comm bogus" "--comm" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --comm gloo
expect_error "--zero 5" "--zero" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --zero 5
expect_error "--lr abc" "--lr" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --lr abc
expect_error "--lr without value" "--lr" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --lr
expect_error "--steps 0" "--steps" "$BIN" "${INIT[@]}" --data "$DATA" --batch 2 --seq 16 --steps 0 --out "$TMP/out.bin"
expect_error "--batch -1" "--batch" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --seq 16 --batch -1 --out "$TMP/out.bin"
expect_error "--seq x" "--seq" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --batch 2 --seq x --out "$TMP/out.bin"
expect_error "--seq beyond positions (--init)" "--seq 300" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --batch 2 --seq 300 --out "$TMP/out.bin"
expect_error "--seq beyond positions (model.bin)" "--seq 5000" "$BIN" "$TMP/model.bin" --data "$DATA" --steps 2 --batch 2 --seq 5000 --out "$TMP/out.bin"
expect_error "--backend bogus" "--backend" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --backend tpu
expect_error "--init unknown preset" "qwen9-tiny" "$BIN" --init qwen9-tiny --data "$DATA" "${RUN[@]}"
expect_error "--init missing config.json" "$TMP/none.json" "$BIN" --init "$TMP/none.json" --data "$DATA" "${RUN[@]}"
expect_error "model.bin and --init" "--init" "$BIN" "$TMP/model.bin" "${INIT[@]}" --data "$DATA" "${RUN[@]}"
expect_error "no --data" "--data" "$BIN" "${INIT[@]}" "${RUN[@]}"
expect_error "--grad-clip nan" "--grad-clip" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --grad-clip nan
expect_error "--grad-clip -1" "--grad-clip" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --grad-clip -1
expect_error "--beta2 1.5" "--beta2" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --beta2 1.5
expect_error "--lr inf" "--lr" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --lr inf
# A step that cannot fit in memory is refused before it starts (not killed
# by the kernel); --out that cannot be written is refused before step 1.
expect_error "model beyond memory" "--init qwen3-8B: 8190735360 parameters need" "$BIN" --init qwen3-8B --data "$DATA" "${RUN[@]}"
expect_error "--batch beyond memory" "--batch 100000000 --seq 16" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --seq 16 --batch 100000000 --out "$TMP/out.bin"
expect_error "--out in a missing directory" "$TMP/no_dir/out.bin" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --batch 2 --seq 16 --out "$TMP/no_dir/out.bin"
mkdir -p "$TMP/a_directory"
expect_error "--out is a directory" "is a directory" "$BIN" "${INIT[@]}" --data "$DATA" --steps 2 --batch 2 --seq 16 --out "$TMP/a_directory"
expect_error "--data is a directory" "is a directory" "$BIN" "${INIT[@]}" --data "$TMP" "${RUN[@]}"
expect_error "--val-every without --val-data" "--val-every applies only with --val-data" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --val-every 5
expect_error "--warmup-steps beyond int" "--warmup-steps" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --warmup-steps 4294967296
expect_error "--weight-decay 1e40" "--weight-decay" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --weight-decay 1e40
expect_error "--train-examples -5" "--train-examples" "$BIN" "${INIT[@]}" --mode sft --task addition --steps 2 --batch 2 --seq 16 --train-examples -5 --out "$TMP/out.bin"
expect_error "--checkpoint-dir unwritable" "--checkpoint-dir /proc/polaris" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --checkpoint-dir /proc/polaris --checkpoint-every 1
cp "$TMP/good_000.bin" "$TMP/keep_000.bin"
expect_error "--out is a data shard" "an input of this run (--data)" "$BIN" "${INIT[@]}" --data "$TMP/keep_000.bin" --steps 2 --batch 2 --seq 16 --out "$TMP/keep_000.bin"
cmp -s "$TMP/good_000.bin" "$TMP/keep_000.bin" || fail "--out overwrote the data shard"
expect_error "--log unwritable" "$TMP/no_dir/log.jsonl" "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --log "$TMP/no_dir/log.jsonl"

# Flags the chosen mode (or data source) would ignore: one flag set serves
# every mode, so each is rejected with a line naming it.
SFT=(--mode sft --task addition --steps 2 --batch 2 --seq 16 --out "$TMP/out.bin")
GRPO=(--mode grpo --task addition --steps 2 --batch 2 --out "$TMP/out.bin")
JSONL=(--data "$TMP/chat.jsonl" --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json)
expect_error "sft with GRPO flags" "--group-size does not apply to --mode sft" \
  "$BIN" "${INIT[@]}" "${SFT[@]}" --temperature 0.1 --group-size 99
expect_error "sft with --dynamic-sampling" "--dynamic-sampling does not apply to --mode sft" \
  "$BIN" "${INIT[@]}" "${SFT[@]}" --dynamic-sampling
expect_error "pretrain with --eval-every" "--eval-every does not apply to --mode pretrain" \
  "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --eval-every 5
expect_error "grpo with --seq" "--seq does not apply to --mode grpo" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --seq 16
expect_error "grpo with --grad-accum" "--grad-accum does not apply to --mode grpo" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --grad-accum 2
expect_error "grpo with --val-every" "--val-every does not apply to --mode grpo" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --val-every 5
expect_error "grpo with --task-slip-rate" "--task-slip-rate does not apply to --mode grpo" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --task-slip-rate 0.5
expect_error "pretrain with --task" "--task does not apply to --mode pretrain" \
  "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --task addition
# Pretraining takes --tokenizer to check the shards' record (tests/cli/shard_tokenizer.sh).
expect_error "pretrain with a missing --tokenizer" "$TMP/no_tokenizer.json" \
  "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --tokenizer "$TMP/no_tokenizer.json"
expect_error "pretrain with --skip-bad" "--skip-bad does not apply to --mode pretrain" \
  "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --skip-bad
expect_error "pretrain with --train-examples" "--train-examples does not apply to --mode pretrain" \
  "$BIN" "${INIT[@]}" --data "$DATA" "${RUN[@]}" --train-examples 10
expect_error "sft --task with --data" "--data does not apply with --task" \
  "$BIN" "${INIT[@]}" "${SFT[@]}" --data "$TMP/chat.jsonl"
expect_error "sft --task with --tokenizer" "--tokenizer does not apply with --task" \
  "$BIN" "${INIT[@]}" "${SFT[@]}" --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json
expect_error "sft --task with --val-data" "--val-data does not apply with --task" \
  "$BIN" "${INIT[@]}" "${SFT[@]}" --val-data "$TMP/chat.jsonl"
expect_error "grpo --task with --data" "--data does not apply with --task" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --data "$TMP/problems.jsonl"
expect_error "grpo --task with --eval-data" "--eval-data does not apply with --task" \
  "$BIN" "${INIT[@]}" "${GRPO[@]}" --eval-data "$TMP/problems.jsonl"
expect_error "sft JSONL with --train-examples" "--train-examples applies only with a built-in --task" \
  "$BIN" "${INIT[@]}" --mode sft "${JSONL[@]}" --steps 2 --train-examples 10
expect_error "grpo JSONL with --eval-problems" "--eval-problems applies only with a built-in --task" \
  "$BIN" "${INIT[@]}" --mode grpo "${JSONL[@]}" --steps 2 --eval-problems 10

# model.bin files.
expect_error "missing model.bin" "$TMP/missing.bin" "$BIN" "$TMP/missing.bin" --data "$DATA" "${RUN[@]}"
expect_error "truncated model.bin" "$TMP/truncated.bin" "$BIN" "$TMP/truncated.bin" --data "$DATA" "${RUN[@]}"
expect_error "header-only model.bin" "$TMP/header_only.bin" "$BIN" "$TMP/header_only.bin" --data "$DATA" "${RUN[@]}"
expect_error "wrong magic" "$TMP/magic.bin" "$BIN" "$TMP/magic.bin" --data "$DATA" "${RUN[@]}"
expect_error "model.bin is a shard" "$TMP/good_000.bin" "$BIN" "$TMP/good_000.bin" --data "$DATA" "${RUN[@]}"

# Token shards.
expect_error "--data matches nothing" "--data" "$BIN" "${INIT[@]}" --data "$TMP/nothing_*.bin" "${RUN[@]}"
expect_error "--val-data matches nothing" "--val-data" "$BIN" "${INIT[@]}" --data "$DATA" --val-data "$TMP/nothing_*.bin" "${RUN[@]}"
expect_error "truncated shard" "trunc_000.bin" "$BIN" "${INIT[@]}" --data "$TMP/trunc_*.bin" "${RUN[@]}"
expect_error "shard cut in its header" "header_000.bin" "$BIN" "${INIT[@]}" --data "$TMP/header_*.bin" "${RUN[@]}"
expect_error "truncated val shard" "trunc_000.bin" "$BIN" "${INIT[@]}" --data "$DATA" --val-data "$TMP/trunc_*.bin" "${RUN[@]}"
expect_error "shard magic" "magic_000.bin" "$BIN" "${INIT[@]}" --data "$TMP/magic_*.bin" "${RUN[@]}"
expect_error "shard version" "version_000.bin" "$BIN" "${INIT[@]}" --data "$TMP/version_*.bin" "${RUN[@]}"
expect_error "token beyond vocabulary" "vocab_000.bin" "$BIN" "${INIT[@]}" --data "$TMP/vocab_*.bin" "${RUN[@]}"
expect_error "shard shorter than a row" "--data" "$BIN" "${INIT[@]}" --data "$TMP/short_*.bin" "${RUN[@]}"

# SFT through a tokenizer whose ids run past the model's vocabulary (qwen3-tiny
# has 512): the line names the data, the model and the tokenizer.
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' \
  >"$TMP/chat_vocab.jsonl"
expect_error "sft tokenizer bigger than the model" \
  "--tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json is not this model's" \
  "$BIN" "${INIT[@]}" --mode sft --data "$TMP/chat_vocab.jsonl" \
  --tokenizer tests/fixtures/qwen3_tokenizer/tokenizer.json --steps 1 --batch 1 --seq 16
grep -qF -- "--data $TMP/chat_vocab.jsonl: token id" "$TMP/err" || fail "the data file is not named: $(cat "$TMP/err")"

echo "PASS train_bad_inputs"
