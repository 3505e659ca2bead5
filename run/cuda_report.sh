#!/usr/bin/env bash
# run/cuda_report.sh NVCC "NVCCFLAGS" FILE.cu... — what ptxas reports for every
# kernel, one line each: arch, registers, shared memory, spills, name
# (demangled, namespaces dropped). `make cuda-report` calls it.
set -euo pipefail
nvcc=$1 flags=$2
shift 2
printf '%-6s %5s %8s %7s  %s\n' arch regs smem spills kernel
for f in "$@"; do
  # ptxas -v prints, per kernel: "Compiling entry function 'NAME' for 'sm_XX'",
  # "N bytes stack frame, S bytes spill stores, L bytes spill loads",
  # "Used R registers, ... B bytes smem, ...".
  # shellcheck disable=SC2086
  $nvcc $flags -Xptxas -v -c "$f" -o /dev/null 2>&1 | awk '
    /Compiling entry function/ {
      match($0, /function .[^'"'"']*/); name = substr($0, RSTART + 10, RLENGTH - 10)
      match($0, /sm_[0-9a]+/); arch = substr($0, RSTART, RLENGTH); spills = 0; next }
    /spill stores/ { split($0, w, " "); for (i = 1; i <= NF; i++) if ($i == "spill" && $(i+1) == "stores,") spills = $(i-2) }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      print arch "\t" regs "\t" smem "\t" spills "\t" name }'
done | while IFS=$'\t' read -r arch regs smem spills name; do
  pretty=$(echo "$name" | c++filt | sed -E 's/polaris::(\(anonymous namespace\)::)?//g; s/\(.*//')
  printf '%-6s %5s %8s %7s  %s\n' "$arch" "$regs" "$smem" "$spills" "$pretty"
done
