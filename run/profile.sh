#!/usr/bin/env bash
# run/profile.sh [nsys|ncu] [polaris_train flags...] — profile a short run.
#
# polaris_train --profile runs 3 warm-up steps, then 5 steps between
# cudaProfilerStart and cudaProfilerStop, with an NVTX range around every
# layer's forward and backward, the LM head + loss, the optimizer and the
# communication (cuda/profiling.cu). So:
#
#   nsys (timeline): only the 5 captured steps are recorded, named by layer.
#     nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop \
#       --trace=cuda,nvtx,cublas -o OUT build/polaris_train --profile FLAGS
#     nsys stats --report cuda_gpu_kern_sum,nvtx_sum OUT.nsys-rep
#
#   ncu (per kernel: achieved bandwidth / FLOP rate against the roofline):
#     ncu --profile-from-start off --nvtx --nvtx-include "layer 1 backward/" \
#       --set full -o OUT build/polaris_train --profile FLAGS
#   (--profile-from-start off honours the capture range; the NVTX filter
#   keeps one layer's kernels so the report stays small.)
#
# With no flags the run is GPT-2 124M on a synthetic shard at B=16, T=1024.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${1:-nsys}
shift || true
out=${PROFILE_OUT:-build/profile}
mkdir -p "$out"
if [ $# -eq 0 ]; then
  python3 run/make_token_shard.py "$out/shard.bin" --vocab 50257 --tokens 2000000
  set -- --init gpt2-124M --data "$out/shard.bin" --batch 16 --seq 1024 --backend cuda
fi
case "$tool" in
  nsys)
    nsys profile --force-overwrite true --capture-range=cudaProfilerApi --capture-range-end=stop \
      --trace=cuda,nvtx,cublas -o "$out/train" build/polaris_train --profile "$@"
    nsys stats --report cuda_gpu_kern_sum,nvtx_sum "$out/train.nsys-rep" | tee "$out/summary.txt"
    ;;
  ncu)
    ncu --profile-from-start off --nvtx --nvtx-include "layer 1 backward/" --set full \
      -f -o "$out/kernels" build/polaris_train --profile "$@"
    ncu --import "$out/kernels.ncu-rep" --page raw --csv > "$out/kernels.csv"
    echo "report: $out/kernels.ncu-rep (open in Nsight Compute), raw metrics: $out/kernels.csv"
    ;;
  *)
    echo "usage: run/profile.sh [nsys|ncu] [polaris_train flags...]" >&2
    exit 2
    ;;
esac
