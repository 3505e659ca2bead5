#!/usr/bin/env bash
# run/gpu_check.sh OUTDIR — everything that needs a GPU, in one run on one
# H100: build for sm_90a, every GPU test (CudaOps against the CPU reference,
# GPU generation), the fixture checks with --backend cuda, a 50-step
# tiny-model run whose loss curve must track the CPU backend's, the same run
# data-parallel (ZeRO-1 and 2 over NCCL on one rank, over MPI on two ranks
# sharing the GPU), compute-sanitizer memcheck + racecheck on the GPU tests,
# the attention and kernel benchmarks, the training benchmark beside PyTorch
# (run/bench_train.sh --quick) and the generation benchmark beside
# transformers (run/bench_generate.sh --quick).
# Full logs go to OUTDIR; a short table is printed last.
#
# Time budget: the lent machine's minutes are few, so the whole script keeps
# to GPU_CHECK_SECONDS (default 420, the build included). Steps run in the
# order of what they prove (correctness, the sanitizers, then speed), each
# capped by what is left; a step that cannot start in time shows
# "SKIP (time budget)" in the table instead of running late.
#
# GPU tests, in any test binary, are those named by the convention of
# tests/README.md: suites Ops* (CudaOps against the CPU reference), Cuda* and
# Cudnn*, and tests whose name contains Gpu or Cuda (Generation.GpuLogprobs...).
# The CPU tests already ran in CI and are filtered out here.
#
# On the lent machine (no network), carry the four missing Debian packages as
# .deb files in deps/ (apt-get download nlohmann-json3-dev libpcre2-dev
# libutf8proc-dev libutf8proc2); they are unpacked into /tmp/deps here. Or
# carry build/gpu_bundle.tar.gz (run/gpu_bundle.sh) and skip the build.
set -u
OUT=${1:?usage: run/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
start=$(date +%s)
deadline=$((start + ${GPU_CHECK_SECONDS:-420}))
GPU_TESTS='Ops*:Cuda*:Cudnn*:*.*Gpu*:*.*Cuda*'
declare -a rows=()
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "${3:-}")"); }
# cap SECONDS: SECONDS, or what is left of the budget when that is less.
cap() {
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt "$1" ]; then echo $((left > 0 ? left : 0)); else echo "$1"; fi
}
# in_time NAME NEED: true when NEED seconds are left, else a SKIP row for NAME.
in_time() {
  [ "$(cap "$2")" -ge "$2" ] && return 0
  row "$1" SKIP "(time budget: ${2}s needed, $(cap 100000)s left)"
  return 1
}

if [ -d deps ] && ls deps/*.deb >/dev/null 2>&1; then
  for f in deps/*.deb; do dpkg -x "$f" /tmp/deps; done
  export CPATH=/tmp/deps/usr/include:/usr/lib/x86_64-linux-gnu/openmpi/include:/usr/include/hdf5/serial${CPATH:+:$CPATH}
  export LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/hdf5/serial${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
echo "GPU: $(cat "$OUT/gpu.txt")"

if [ -f build/gpu_bundle.tar.gz ]; then  # made by run/gpu_bundle.sh on a CPU machine
  tar -xzf build/gpu_bundle.tar.gz
  export LD_LIBRARY_PATH=$PWD/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  row "build (bundle)" ok "$(( $(date +%s) - start ))s"
elif make -j"$(nproc)" CUDA_ARCHS=90a all tests-build > "$OUT/build.log" 2>&1; then
  row build ok "$(( $(date +%s) - start ))s"
else
  row build FAIL "see build.log"; tail -30 "$OUT/build.log"
  printf '%s\n' "${rows[@]}"; exit 1
fi

# ---- correctness ----
# Every GPU test, in every test binary that has one.
gpu_test_binaries=()
for t in build/tests/test_*; do
  [ -x "$t" ] || continue
  "$t" --gtest_list_tests --gtest_filter="$GPU_TESTS" 2>/dev/null | grep -q '^  ' || continue
  gpu_test_binaries+=("$t")
  name=$(basename "$t")
  in_time "$name" 10 || continue
  if POLARIS_CUDA_SYNC=1 timeout "$(cap 240)" "$t" --gtest_filter="$GPU_TESTS" --gtest_color=no \
      > "$OUT/$name.log" 2>&1; then
    row "$name" ok "$(grep -E '^\[  (PASSED|SKIPPED) \] [0-9]+ test' "$OUT/$name.log" | sed 's/\[  PASSED  \] /passed /; s/\[  SKIPPED \] /skipped /; s/, listed below://' | tr '\n' ' ')"
  else
    row "$name" FAIL "$(grep -c '^\[  FAILED  \]' "$OUT/$name.log") failed lines, see $name.log"
  fi
done
[ ${#gpu_test_binaries[@]} -gt 0 ] || row "GPU tests" FAIL "no test binary lists a GPU test"

# The whole model against transformers' fixtures, in bf16, with each
# attention implementation.
for fx in tests/fixtures/qwen3_tiny tests/fixtures/gpt2_tiny; do
  for attn in flash cudnn simple; do
    name=check_$(basename "$fx")_$attn
    in_time "polaris_check $(basename "$fx") $attn" 15 || continue
    if timeout "$(cap 120)" build/polaris_check "$fx" --backend cuda --attention "$attn" \
        > "$OUT/$name.log" 2>&1; then
      row "polaris_check $(basename "$fx") $attn" ok "$(grep -E 'logits' "$OUT/$name.log" | head -1 | sed 's/^ *//')"
    else
      row "polaris_check $(basename "$fx") $attn" FAIL "see $name.log"
    fi
  done
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

# 50 steps of the tiny preset on both backends: the curves must agree.
if in_time "50-step curve cpu vs cuda" 40; then
  python3 run/make_token_shard.py "$OUT/tiny_shard.bin" --vocab 512 --tokens 400000
  for b in cpu cuda; do
    timeout "$(cap 120)" build/polaris_train --init qwen3-tiny --data "$OUT/tiny_shard.bin" \
      --steps 50 --batch 8 --seq 64 --lr 1e-3 --seed 1 --backend "$b" \
      --log "$OUT/curve_$b.jsonl" > "$OUT/curve_$b.log" 2>&1
  done
  compare_curves "50-step curve cpu vs cuda" "$OUT/curve_cpu.jsonl" "$OUT/curve_cuda.jsonl"
fi

# Data parallel on the GPU against the one-process curve above: ZeRO-1 and
# ZeRO-2 over NCCL on one rank (mpirun's default --comm for --backend cuda),
# and over MPI with two ranks sharing the GPU (NCCL refuses that; each rank
# takes half of the global batch of 8 rows). Each rank holds the fp32 master
# of its shard only and all-gathers the bf16 weights (staged through the
# host over MPI): the report at start must say bf16 weights beside the
# master shard.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for run in "1 nccl 1" "1 nccl 2" "2 mpi 1" "2 mpi 2"; do
  read -r ranks comm zero <<<"$run"
  name=dp_np${ranks}_${comm}_zero$zero
  label="$ranks rank(s) --comm $comm --zero $zero"
  [ -f "$OUT/curve_cuda.jsonl" ] || { row "$label" SKIP "no one-process curve"; continue; }
  in_time "$label" 20 || continue
  timeout "$(cap 120)" mpirun -np "$ranks" --oversubscribe build/polaris_train --init qwen3-tiny \
    --data "$OUT/tiny_shard.bin" --steps 50 --batch $((8 / ranks)) --seq 64 --lr 1e-3 --seed 1 \
    --backend cuda --comm "$comm" --zero "$zero" --log "$OUT/$name.jsonl" > "$OUT/$name.log" 2>&1
  if grep -q "over $comm .*(bf16), fp32 master" "$OUT/$name.log"; then
    compare_curves "$label" "$OUT/curve_cuda.jsonl" "$OUT/$name.jsonl"
  else
    row "$label" FAIL "see $name.log: $(tail -1 "$OUT/$name.log")"
  fi
done

# compute-sanitizer on the GPU tests: memcheck on every binary, racecheck on
# the attention kernels' (their shared-memory tiles). racecheck slows kernels
# ~100x: each run is capped, and a capped run counts as capped, not clean.
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    bad=0 capped=0 clean=0
    for t in "${gpu_test_binaries[@]}"; do
      name=$(basename "$t")
      [ $tool = racecheck ] && [[ $name != *attention* ]] && continue
      if [ "$(cap 20)" -lt 20 ]; then capped=$((capped + 1)); continue; fi
      log="$OUT/sanitizer_${tool}_$name.log"
      timeout "$(cap 40)" compute-sanitizer --tool "$tool" --error-exitcode 9 "$t" \
        --gtest_filter="$GPU_TESTS" --gtest_color=no > "$log" 2>&1
      case $? in
        0) clean=$((clean + 1)) ;;
        124) capped=$((capped + 1)) ;;
        *) bad=$((bad + 1)) ;;
      esac
    done
    if [ $bad = 0 ]; then row "compute-sanitizer $tool" ok "$clean binaries clean, $capped capped"
    else row "compute-sanitizer $tool" FAIL "$bad binaries, see sanitizer_${tool}_*.log"; fi
  done
else
  row compute-sanitizer SKIP "not installed"
fi

# ---- speed ----
# bench_step NAME NEED CAP OUTFILE CMD...: runs CMD into OUTFILE within the budget.
bench_step() {
  local name=$1 need=$2 limit=$3 file=$4
  shift 4
  in_time "$name" "$need" || return 0
  if timeout "$(cap "$limit")" "$@" > "$file" 2>&1; then row "$name" ok "see $(basename "$file")"
  else row "$name" FAIL "see $(basename "$file")"; fi
}
bench_step bench_attention 30 90 "$OUT/bench_attention.txt" build/bench_attention
bench_step "bench_attention (PyTorch)" 30 60 "$OUT/bench_attention_pytorch.txt" python3 run/bench_attention.py
bench_step bench_kernels 30 90 "$OUT/bench_kernels.txt" build/bench_kernels
bench_step bench_generate 60 150 "$OUT/bench_generate.txt" \
  bash run/bench_generate.sh --quick --out "$OUT/bench_generate"
bench_step bench_train 60 180 "$OUT/bench_train.txt" \
  bash run/bench_train.sh --quick --out "$OUT/bench_train"

echo
echo "== gpu_check summary ($(cat "$OUT/gpu.txt")), $(( $(date +%s) - start ))s"
printf '%s\n' "${rows[@]}" | tee "$OUT/summary.txt"
[ -f "$OUT/bench_train/summary.txt" ] && { echo; cat "$OUT/bench_train/summary.txt"; }
[ -f "$OUT/bench_generate/summary.txt" ] && { echo; cat "$OUT/bench_generate/summary.txt"; }
! grep -q " FAIL " "$OUT/summary.txt"
