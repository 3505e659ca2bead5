# Shared pieces of the shell tests in tests/cli/ (sourced, never run: it lives
# outside tests/cli/ because run_tests.sh runs every .sh there as a test).
# Each test starts with
#   source "$(dirname "$0")/../cli_lib.sh"
#   polaris_test_setup
#   require_built build/polaris_train ...
# Safe under `set -euo pipefail` as well as plain `set -u`.

# polaris_test_setup: set -u, a fresh temporary directory in $TMP, removed on exit.
polaris_test_setup() {
  set -u
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
}

# fail MSG...: print "FAIL: MSG" and end the test with exit status 1.
fail() { echo "FAIL: $*"; exit 1; }

# require_built BIN...: fail unless every BIN is an executable (built by make).
require_built() {
  local b
  for b in "$@"; do
    [ -x "$b" ] || fail "$b not built (run make)"
  done
}

# have_mpirun: true when mpirun is on the PATH; then, as for every run of
# these tests, one OpenMP thread per process (ranks share the cores), mpirun
# allowed as root (containers), and MPIRUN the launcher to start ranks with:
# more ranks than cores, OMP_NUM_THREADS passed on ("${MPIRUN[@]}" -np 2 BIN
# ARGS; a test appends its own -x VAR).
have_mpirun() {
  command -v mpirun >/dev/null || return 1
  export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  MPIRUN=(mpirun --oversubscribe -x OMP_NUM_THREADS)
}

# require_mpirun: have_mpirun, or fail.
require_mpirun() {
  have_mpirun || fail "mpirun not found (make deps installs openmpi-bin)"
}

# write_token_shard PATH SEED COUNT: a version-1 token shard (256 int32 header:
# magic 20240520, version 1 = uint16, count) of COUNT random tokens < 512.
write_token_shard() {
  python3 - "$1" "$2" "$3" <<'PY' || fail "could not write the shard"
import random, struct, sys
random.seed(int(sys.argv[2]))
n = int(sys.argv[3])
header = [0] * 256
header[0], header[1], header[2] = 20240520, 1, n
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *[random.randrange(512) for _ in range(n)]))
PY
}

# sft_slipping_adder OUT STEPS LR: the demo model fine-tuned (seed 1) on
# column-by-column addition whose demonstrations slip on half the carries, so
# it solves about three problems in four: the starting point of the GRPO
# tests (run/demo_rl.sh's first stage). Its log is OUT.log.
sft_slipping_adder() {
  build/polaris_train --mode sft --task addition-trace --task-slip-rate 0.5 --init qwen3-demo \
    --steps "$2" --batch 16 --seq 64 --lr "$3" --seed 1 --out "$1" --print-every 100 \
    >"$1.log" 2>&1 || { cat "$1.log"; fail "sft run"; }
}

# no_output_on_error PATH...: paths that no failing command may create;
# expect_error checks every one after each call (default: none).
ERROR_OUTPUTS=()
no_output_on_error() { ERROR_OUTPUTS=("$@"); }

# expect_error NAME WORD PROGRAM ARGS...: PROGRAM ARGS (under a 120 s timeout,
# stdin inherited, stdout to $TMP/stdout) exits with status 1 and writes exactly
# one stderr line, to $TMP/err, that starts with "error: " and contains WORD
# (a fixed string); nothing half-written: no *.tmp file under $TMP and none of the
# no_output_on_error paths left behind.
expect_error() {
  local name=$1 word=$2 rc=0 path leftover; shift 2
  timeout 120 "$@" >"$TMP/stdout" 2>"$TMP/err" || rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1 (stderr: $(cat "$TMP/err"))"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$TMP/err")"
  grep -q '^error: ' "$TMP/err" || fail "$name: no 'error: ' line: $(cat "$TMP/err")"
  grep -qF -- "$word" "$TMP/err" || fail "$name: '$word' not in: $(cat "$TMP/err")"
  for path in "${ERROR_OUTPUTS[@]}"; do
    if [ -e "$path" ]; then fail "$name: wrote $path despite the error"; fi
  done
  leftover=$(find "$TMP" -name '*.tmp' | head -3)
  [ -z "$leftover" ] || fail "$name: left .tmp files behind: $leftover"
  echo "ok  $name: $(cat "$TMP/err")"
}
