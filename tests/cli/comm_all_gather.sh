#!/usr/bin/env bash
# Comm::all_gather (optim/comm.h), the byte all-gather ZeRO-1/2 gathers the
# weights with, over real MPI ranks: the gtests MpiComm.* (tests/test_zero.cpp)
# on 2, 3 and 4 ranks: AllGatherBytes, and StagedBf16ZeroMatchesOneProcess
# (bf16 weights beside a sharded master, all-gathered through the host as
# with --backend cuda --comm mpi). They skip themselves outside mpirun, so
# this script also checks that every rank ran them rather than skipped them.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
BIN=build/tests/test_zero
require_built "$BIN"
require_mpirun
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

for ranks in 2 3 4; do
  timeout 60 mpirun -np $ranks --oversubscribe "$BIN" --gtest_filter='MpiComm.*' --gtest_color=no \
    >"$TMP/np$ranks.log" 2>&1 || fail "np$ranks: $(grep -m5 -E 'Failure|error|Expected|Which' "$TMP/np$ranks.log")"
  passed=$(grep -c '^\[  PASSED  \] 2 tests' "$TMP/np$ranks.log")
  [ "$passed" -eq "$ranks" ] || fail "np$ranks: $passed of $ranks ranks passed: $(tail -5 "$TMP/np$ranks.log")"
  ! grep -q 'SKIPPED' "$TMP/np$ranks.log" || fail "np$ranks: the test skipped itself under mpirun"
  echo "ok  np$ranks: every rank holds every owner's bytes; staged bf16 ZeRO-1/2 equals one process"
done
echo "PASS"
