#!/usr/bin/env bash
# run/bench_train.sh [--quick] [--out DIR] [--shapes NAMES]
#
# Training speed of the engine (build/polaris_train --backend cuda) against
# the PyTorch reference (run/bench_train.py) on one GPU, same shapes:
#   gpt2-124M  B=32 T=1024   engine --recompute none
#   gpt2-1.5B  B=8  T=1024   engine --recompute none
#   qwen3-4B   B=2  T=2048   engine --recompute layer, PyTorch --checkpointing
# Both train a fresh random model of the preset: PyTorch on random tokens,
# the engine on a synthetic token shard written into DIR first
# (run/make_token_shard.py). Each side's tok/s and ms/step are means over
# the steps after the warm-up (the engine: the last records of its --log
# JSONL; PyTorch: its timed loop, after torch.compile).
# MFU = flops_per_token * tok/s / 989e12 with the formula of run/bench_train.py
# (6 * params without position embeddings + 12 * L * heads * head_dim * T; see
# there), the same function for both columns. Peak memory: the engine's
# "peak device memory: X GiB" stdout line when it prints one, PyTorch's
# torch.cuda.max_memory_allocated.
#
#   --quick        fewer steps and only gpt2-124M and qwen3-4B (GPT-2 1.5B's
#                  torch.compile alone takes minutes), for run/gpu_check.sh:
#                  about 3 minutes in all
#   --out DIR      logs, JSONL, the token shards and summary.txt (default: a
#                  new directory under /tmp)
#   --shapes LIST  comma-separated subset of gpt2-124M,gpt2-1.5B,qwen3-4B
#                  ("all" for the three)
# Without a GPU (nvidia-smi fails) it says so and exits 0. Exit status 1 when
# a run failed (its row says which side; the logs are in DIR).
set -u
cd "$(dirname "$0")/.."

quick=0
out=""
shapes=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --shapes) shapes=${2:?--shapes needs a list}; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_train.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! nvidia-smi > /dev/null 2>&1; then
  echo "bench_train.sh: skipped: no GPU here (nvidia-smi failed or is missing)"
  exit 0
fi

# name  preset  batch  seq  engine-recompute  pytorch-flags
all_shapes=(
  "gpt2-124M gpt2-124M 32 1024 none -"
  "gpt2-1.5B gpt2-1.5B 8 1024 none -"
  "qwen3-4B qwen3-4B 2 2048 layer --checkpointing"
)
if [ -z "$shapes" ]; then
  if [ $quick = 1 ]; then shapes=gpt2-124M,qwen3-4B; else shapes=all; fi
fi
[ "$shapes" = all ] && shapes=gpt2-124M,gpt2-1.5B,qwen3-4B

# Steps: the engine averages its last `avg` records of `steps`; PyTorch times
# `pt_steps` after `pt_warmup` untimed ones (torch.compile happens there).
if [ $quick = 1 ]; then
  steps=8; avg=5; pt_steps=5; pt_warmup=3; limit=240
else
  steps=30; avg=20; pt_steps=20; pt_warmup=10; limit=900
fi

out=${out:-$(mktemp -d /tmp/bench_train.XXXXXX)}
mkdir -p "$out" || exit 1
gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "bench_train.sh: $gpu; logs in $out"

if [ ! -x build/polaris_train ] && [ -f build/gpu_bundle.tar.gz ]; then
  tar -xzf build/gpu_bundle.tar.gz  # run/gpu_bundle.sh's prebuilt programs
fi
if [ ! -x build/polaris_train ]; then
  echo "building build/polaris_train (log: $out/build.log)"
  make -j"$(nproc)" CUDA_ARCHS=90a build/polaris_train > "$out/build.log" 2>&1 ||
    { echo "bench_train.sh: build failed, see $out/build.log"; exit 1; }
fi
[ -d build/lib ] && export LD_LIBRARY_PATH=$PWD/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# The engine's data: a synthetic token shard (run/make_token_shard.py:
# data/token_shards.h format, version 2) of 2^20 + 1 tokens, one per vocabulary.
write_shard() {  # PATH VOCAB TOKENS
  python3 run/make_token_shard.py "$1" --vocab "$2" --tokens "$3"
}

# mean tokens_per_s and ms of the last N step records of an engine JSONL log
engine_means() {  # LOG N
  python3 - "$@" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    if "event" not in r and "tokens_per_s" in r:
        rows.append(r)
rows = rows[-int(sys.argv[2]):]
if not rows:
    sys.exit(1)
print(sum(r["tokens_per_s"] for r in rows) / len(rows), sum(r["ms"] for r in rows) / len(rows))
PY
}

mfu() {  # MODEL SEQ TOKENS_PER_S
  python3 -c 'import sys; sys.path.insert(0, "run"); import bench_train as b; print("%.4f" % b.mfu(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))' "$@"
}

failed=0
declare -a rows=()
for spec in "${all_shapes[@]}"; do
  set -- $spec
  name=$1 preset=$2 batch=$3 seq=$4 recompute=$5 ptflags=$6
  [ "$ptflags" = - ] && ptflags=""
  case ",$shapes," in *",$name,"*) ;; *) continue ;; esac
  vocab=$(python3 -c 'import sys; sys.path.insert(0, "run"); import bench_train as b; print(b.MODELS[sys.argv[1]]["vocab"])' "$preset")
  shard=$out/tokens_$vocab.bin
  [ -f "$shard" ] || write_shard "$shard" "$vocab" 1048577

  # --- engine
  echo "== $name: engine (B=$batch T=$seq --recompute $recompute, $steps steps)"
  elog=$out/engine_$name.log ejson=$out/engine_$name.jsonl
  rm -f "$ejson"
  e_tps=n/a e_ms=n/a e_mfu=n/a e_mem=n/a
  if timeout "$limit" build/polaris_train --init "$preset" --data "$shard" --batch "$batch" \
       --seq "$seq" --steps "$steps" --backend cuda --recompute "$recompute" --seed 1 \
       --log "$ejson" > "$elog" 2>&1 && means=$(engine_means "$ejson" "$avg"); then
    set -- $means
    e_tps=$(printf '%.0f' "$1") e_ms=$(printf '%.1f' "$2")
    e_mfu=$(mfu "$preset" "$seq" "$1")
  else
    failed=1
    e_tps=FAIL
    echo "   engine failed (log $elog):"; tail -3 "$elog" | sed 's/^/   | /'
  fi
  e_mem=$(grep -oE 'peak device memory: [0-9.]+ GiB' "$elog" 2>/dev/null | tail -1 | grep -oE '[0-9.]+' || true)
  e_mem=${e_mem:-n/a}

  # --- PyTorch
  echo "== $name: pytorch (B=$batch T=$seq ${ptflags:-(no checkpointing)}, $pt_warmup + $pt_steps steps)"
  plog=$out/pytorch_$name.log pjson=$out/pytorch_$name.json
  p_tps=n/a p_ms=n/a p_mfu=n/a p_mem=n/a
  if timeout "$limit" python3 run/bench_train.py --model "$preset" --batch "$batch" --seq "$seq" \
       --steps "$pt_steps" --warmup "$pt_warmup" $ptflags > "$pjson.out" 2> "$plog" &&
     grep '^{"impl"' "$pjson.out" | tail -1 > "$pjson" && [ -s "$pjson" ]; then
    read -r p_tps_raw p_tps p_ms p_mfu p_mem < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["tokens_per_s"], "%.0f" % r["tokens_per_s"], "%.1f" % r["ms_per_step"], "%.4f" % r["mfu"], "%.2f" % r["peak_mem_gib"])' "$pjson")
  else
    failed=1
    p_tps=FAIL p_tps_raw=""
    echo "   pytorch failed (log $plog):"; tail -3 "$plog" | sed 's/^/   | /'
  fi

  ratio=n/a
  if [[ $e_tps =~ ^[0-9]+$ ]] && [ -n "${p_tps_raw:-}" ]; then
    ratio=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$e_tps" "$p_tps_raw")
  fi
  rows+=("$(printf '%-26s | %12s | %13s | %5s | %10s | %11s | %9s | %10s | %s / %s' \
    "$name B=$batch T=$seq" "$e_tps" "$p_tps" "$ratio" "$e_mfu" "$p_mfu" "$e_ms" "$p_ms" \
    "$e_mem" "$p_mem")")
done

{
  echo
  echo "== bench_train ($gpu; MFU against 989 TFLOP/s bf16; ratio = engine / pytorch tok/s;"
  echo "   peak memory GiB: engine's own report / torch max_memory_allocated)"
  printf '%-26s | %12s | %13s | %5s | %10s | %11s | %9s | %10s | %s\n' shape "engine tok/s" \
    "pytorch tok/s" ratio "engine MFU" "pytorch MFU" "engine ms" "pytorch ms" "peak mem engine / pytorch"
  printf '%s\n' "${rows[@]}"
} | tee "$out/summary.txt"
exit $failed
