#!/usr/bin/env bash
# run/gpu_check.sh OUTDIR — everything that needs a GPU, in one run (< 8 min on
# one H100): build for sm_90a, every GPU op test (CudaOps against the CPU
# reference), the decode step through CUDA graphs and the generation tests,
# compute-sanitizer memcheck + racecheck on the op tests, the
# fixture checks with --backend cuda, a 50-step tiny-model run whose loss
# curve must track the CPU backend's, the same run data-parallel (ZeRO-1 and
# 2 over NCCL on one rank, over MPI on two ranks sharing the GPU), the kernel
# benchmark, the training benchmark beside PyTorch (run/bench_train.sh
# --quick) and the generation benchmark beside transformers
# (run/bench_generate.sh --quick).
# Full logs go to OUTDIR; a short table is printed last.
#
# On the lent machine (no network), carry the four missing Debian packages as
# .deb files in deps/ (apt-get download nlohmann-json3-dev libpcre2-dev
# libutf8proc-dev libutf8proc2); they are unpacked into /tmp/deps here.
set -u
OUT=${1:?usage: run/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
declare -a rows=()
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "${3:-}")"); }

if [ -d deps ] && ls deps/*.deb >/dev/null 2>&1; then
  for f in deps/*.deb; do dpkg -x "$f" /tmp/deps; done
  export CPATH=/tmp/deps/usr/include:/usr/lib/x86_64-linux-gnu/openmpi/include:/usr/include/hdf5/serial${CPATH:+:$CPATH}
  export LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/hdf5/serial${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
echo "GPU: $(cat "$OUT/gpu.txt")"

start=$(date +%s)
if [ -f build/gpu_bundle.tar.gz ]; then  # made by run/gpu_bundle.sh on a CPU machine
  tar -xzf build/gpu_bundle.tar.gz
  export LD_LIBRARY_PATH=$PWD/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  row "build (bundle)" ok "$(( $(date +%s) - start ))s"
elif make -j"$(nproc)" CUDA_ARCHS=90a tests-build build/bench_kernels build/bench_attention build/bench_generate > "$OUT/build.log" 2>&1; then
  row build ok "$(( $(date +%s) - start ))s"
else
  row build FAIL "see build.log"; tail -30 "$OUT/build.log"
  printf '%s\n' "${rows[@]}"; exit 1
fi

# Every GPU op test (CudaOps against the CPU reference).
for t in build/tests/test_ops_*; do
  name=$(basename "$t")
  if POLARIS_CUDA_SYNC=1 timeout 300 "$t" --gtest_color=no > "$OUT/$name.log" 2>&1; then
    row "$name" ok "$(grep -E '^\[  PASSED  \]' "$OUT/$name.log" | head -1 | sed 's/\[  PASSED  \] //')"
  else
    row "$name" FAIL "$(grep -c '^\[  FAILED  \]' "$OUT/$name.log") failed lines, see $name.log"
  fi
done

# Generation on the GPU: the decode step replayed from CUDA graphs against
# the same step op by op (bitwise), with and without graphs
# (tests/test_decode_graph.cpp), and the engine's log-probs against a
# teacher-forced forward (tests/test_generation.cpp); not under
# POLARIS_CUDA_SYNC, so the graphs run as in production.
for t in build/tests/test_decode_graph build/tests/test_generation; do
  name=$(basename "$t")
  if timeout 300 "$t" --gtest_color=no > "$OUT/$name.log" 2>&1; then
    row "$name" ok "$(grep -E '^\[  PASSED  \]' "$OUT/$name.log" | head -1 | sed 's/\[  PASSED  \] //')"
  else
    row "$name" FAIL "$(grep -c '^\[  FAILED  \]' "$OUT/$name.log") failed lines, see $name.log"
  fi
done

# compute-sanitizer on the op tests. racecheck slows kernels ~100x, so each
# binary gets a time cap; a capped run counts as "timeout", not as clean.
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    bad=0 capped=0
    for t in build/tests/test_ops_*; do
      name=$(basename "$t")
      log="$OUT/sanitizer_${tool}_$name.log"
      timeout 45 compute-sanitizer --tool "$tool" --error-exitcode 9 "$t" --gtest_color=no > "$log" 2>&1
      case $? in
        0) ;;
        124) capped=$((capped + 1)) ;;
        *) bad=$((bad + 1)) ;;
      esac
    done
    if [ $bad = 0 ]; then row "compute-sanitizer $tool" ok "$capped binaries capped at 45 s"
    else row "compute-sanitizer $tool" FAIL "$bad binaries, see sanitizer_${tool}_*.log"; fi
  done
else
  row compute-sanitizer SKIP "not installed"
fi

# The whole model against transformers' fixtures, in bf16, with each
# attention implementation.
for fx in tests/fixtures/qwen3_tiny tests/fixtures/gpt2_tiny; do
  for attn in flash cudnn simple; do
    name=check_$(basename "$fx")_$attn
    if timeout 120 build/polaris_check "$fx" --backend cuda --attention "$attn" > "$OUT/$name.log" 2>&1; then
      row "polaris_check $(basename "$fx") $attn" ok "$(grep -E 'logits' "$OUT/$name.log" | head -1 | sed 's/^ *//')"
    else
      row "polaris_check $(basename "$fx") $attn" FAIL "see $name.log"
    fi
  done
done

# 50 steps of the tiny preset on both backends: the curves must agree.
python3 run/make_token_shard.py "$OUT/tiny_shard.bin" --vocab 512 --tokens 400000
for b in cpu cuda; do
  timeout 300 build/polaris_train --init qwen3-tiny --data "$OUT/tiny_shard.bin" --steps 50 \
    --batch 8 --seq 64 --lr 1e-3 --seed 1 --backend "$b" --log "$OUT/curve_$b.jsonl" \
    > "$OUT/curve_$b.log" 2>&1
done
# compare_curves ROW A.jsonl B.jsonl: the 50 losses agree within bf16 noise
# (5% relative at worst) and B's loss falls.
compare_curves() {
  if python3 - "$2" "$3" > "$OUT/compare_$(basename "$3" .jsonl).txt" 2>&1 <<'PY'
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if l.strip()]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 50, (len(a), len(b))
worst = max(abs(x - y) / max(abs(x), 1e-6) for x, y in zip(a, b))
print(f"first {a[0]:.4f}/{b[0]:.4f} last {a[-1]:.4f}/{b[-1]:.4f} worst relative gap {worst:.3f}")
sys.exit(0 if worst < 0.05 and b[-1] < b[0] else 1)
PY
  then row "$1" ok "$(cat "$OUT/compare_$(basename "$3" .jsonl).txt")"
  else row "$1" FAIL "$(tail -1 "$OUT/compare_$(basename "$3" .jsonl).txt")"; fi
}
compare_curves "50-step curve cpu vs cuda" "$OUT/curve_cpu.jsonl" "$OUT/curve_cuda.jsonl"

# Data parallel on the GPU against the one-process curve above: ZeRO-1 and
# ZeRO-2 over NCCL on one rank (mpirun's default --comm for --backend cuda),
# and over MPI with two ranks sharing the GPU (NCCL refuses that; each rank
# takes half of the global batch of 8 rows).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for run in "1 nccl 1" "1 nccl 2" "2 mpi 1" "2 mpi 2"; do
  read -r ranks comm zero <<<"$run"
  name=dp_np${ranks}_${comm}_zero$zero
  timeout 300 mpirun -np "$ranks" --oversubscribe build/polaris_train --init qwen3-tiny \
    --data "$OUT/tiny_shard.bin" --steps 50 --batch $((8 / ranks)) --seq 64 --lr 1e-3 --seed 1 \
    --backend cuda --comm "$comm" --zero "$zero" --log "$OUT/$name.jsonl" > "$OUT/$name.log" 2>&1
  if grep -q "over $comm" "$OUT/$name.log"; then
    compare_curves "$ranks rank(s) --comm $comm --zero $zero" "$OUT/curve_cuda.jsonl" "$OUT/$name.jsonl"
  else
    row "$ranks rank(s) --comm $comm --zero $zero" FAIL "see $name.log: $(tail -1 "$OUT/$name.log")"
  fi
done

# Speed: every kernel against the H100 roofline, then training beside
# PyTorch/transformers on the same shapes (run/bench_train.sh --quick).
if timeout 120 build/bench_attention > "$OUT/bench_attention.txt" 2>&1; then
  row bench_attention ok "see bench_attention.txt"
else
  row bench_attention FAIL "see bench_attention.txt"
fi
python3 run/bench_attention.py > "$OUT/bench_attention_pytorch.txt" 2>&1 || true
if timeout 180 build/bench_kernels > "$OUT/bench_kernels.txt" 2>&1; then
  row bench_kernels ok "$(grep -c . "$OUT/bench_kernels.txt") lines, see bench_kernels.txt"
else
  row bench_kernels FAIL "see bench_kernels.txt"
fi
if timeout 330 bash run/bench_train.sh --quick --out "$OUT/bench_train" > "$OUT/bench_train.txt" 2>&1; then
  row bench_train ok "see below"
else
  row bench_train FAIL "see bench_train.txt"
fi

if timeout 420 bash run/bench_generate.sh --quick --out "$OUT/bench_generate" > "$OUT/bench_generate.txt" 2>&1; then
  row bench_generate ok "see below"
else
  row bench_generate FAIL "see bench_generate.txt"
fi

echo
echo "== gpu_check summary ($(cat "$OUT/gpu.txt"))"
printf '%s\n' "${rows[@]}" | tee "$OUT/summary.txt"
[ -f "$OUT/bench_train/summary.txt" ] && { echo; cat "$OUT/bench_train/summary.txt"; }
[ -f "$OUT/bench_generate/summary.txt" ] && { echo; cat "$OUT/bench_generate/summary.txt"; }
! grep -q " FAIL " "$OUT/summary.txt"
