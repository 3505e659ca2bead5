#!/usr/bin/env bash
# OpenMP defaults (src/common/threads.h): with OMP_NUM_THREADS and
# OMP_WAIT_POLICY unset, a program re-executes itself once with the threads
# it may run on (here: taskset to one core) and passive waiting; libgomp's
# OMP_DISPLAY_ENV=VERBOSE shows what its runtime started with (GOMP_SPINCOUNT
# 0 is passive; the runtime's own default, 300000, spins). Values the user
# set are kept, and then the program runs once.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
require_built build/polaris_sample build/polaris_train
command -v taskset >/dev/null || fail "taskset not found (util-linux)"

# 1. Nothing set, one core allowed.
env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY OMP_DISPLAY_ENV=VERBOSE taskset -c 0 \
  build/polaris_sample --help >/dev/null 2>"$TMP/unset.err" || fail "polaris_sample --help failed"
[ "$(grep -c 'OPENMP DISPLAY ENVIRONMENT BEGIN' "$TMP/unset.err")" = 2 ] \
  || fail "expected one re-execution: $(grep -c BEGIN "$TMP/unset.err") runtime starts"
# The first start shows the runtime's own defaults (a negative control: the
# spinning default is what the second start no longer has).
first_spin=$(grep GOMP_SPINCOUNT "$TMP/unset.err" | head -1)
last_spin=$(grep GOMP_SPINCOUNT "$TMP/unset.err" | tail -1)
last_threads=$(grep "OMP_NUM_THREADS = " "$TMP/unset.err" | tail -1)
echo "$first_spin" | grep -q "'0'" && fail "the runtime already waited passively before the re-execution"
echo "$last_spin" | grep -q "GOMP_SPINCOUNT = '0'" || fail "not passive: $last_spin"
echo "$last_threads" | grep -q "OMP_NUM_THREADS = '1'" || fail "not the one allowed core: $last_threads"
echo "ok  unset: $(echo $last_threads), $(echo $last_spin) (before: $(echo $first_spin))"

# 2. The user's values win, and the program starts once.
OMP_NUM_THREADS=3 OMP_WAIT_POLICY=ACTIVE OMP_DISPLAY_ENV=VERBOSE taskset -c 0 \
  build/polaris_train --help >/dev/null 2>"$TMP/set.err" || fail "polaris_train --help failed"
[ "$(grep -c 'OPENMP DISPLAY ENVIRONMENT BEGIN' "$TMP/set.err")" = 1 ] || fail "re-executed although both were set"
grep -q "OMP_NUM_THREADS = '3'" "$TMP/set.err" || fail "OMP_NUM_THREADS=3 was not kept"
grep -q "OMP_WAIT_POLICY = 'ACTIVE'" "$TMP/set.err" || fail "OMP_WAIT_POLICY=ACTIVE was not kept"
echo "ok  set by the user: kept"
echo "PASS openmp_defaults"
