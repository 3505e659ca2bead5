#!/usr/bin/env bash
# run/gpu_bundle.sh [OUT.tar.gz] — on a CPU machine with the CUDA toolkit,
# build every program, benchmark and test for the H100 only (sm_90a),
# stripped, into one small bundle (default build/gpu_bundle.tar.gz, < 60 MB)
# that run/gpu_check.sh unpacks instead of building, for a GPU machine that
# lacks the build dependencies. libutf8proc.so.2 travels beside the programs
# (the one runtime library such a machine may miss); the runpath finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/gpu_bundle.tar.gz}
dir=build_bundle
make -j"$(nproc)" BUILD=$dir CUDA_ARCHS=90a CXXFLAGS=-O2 tests-build $dir/bench_kernels $dir/bench_attention $dir/bench_generate $dir/bench_sampling >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/tests" "$stage/build/lib"
cp $dir/polaris_* $dir/bench_* "$stage/build/"
cp $dir/tests/test_* "$stage/build/tests/"
rm -f "$stage"/build/*.d "$stage"/build/tests/*.d
strip --strip-debug "$stage"/build/polaris_* "$stage"/build/bench_* "$stage"/build/tests/test_*
lib=$(ldconfig -p | awk '/libutf8proc.so.2 /{print $NF; exit}')
[ -n "$lib" ] && cp -L "$lib" "$stage/build/lib/"
tar -C "$stage" -czf "$out" build
size=$(du -m "$out" | cut -f1)
echo "bundle: $out (${size} MB)"
[ "$size" -lt 60 ] || { echo "bundle is over 60 MB" >&2; exit 1; }
