#!/usr/bin/env bash
# Runs every test: the GoogleTest binaries in build/tests/ and the shell tests
# in tests/cli/ (each script is one test; exit 0 = pass). Ends with the line
#   N passed, N failed, N skipped
# and exits non-zero when anything failed. Run from the repository root
# after `make tests-build` (make test does both).
set -u
# Threads that wait passively: on a machine with more runnable threads than
# cores, spinning OpenMP threads slow small test shapes a hundredfold.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0
failures=()
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

count() {  # count KIND FILE: the N of gtest's "[  KIND  ] N test" summary line
  grep -E "^\[ +$1 +\] [0-9]+ test" "$2" | head -1 | sed -E 's/^\[[^]]*\] ([0-9]+).*/\1/'
}

for binary in build/tests/test_*; do
  [ -x "$binary" ] || continue
  name=$(basename "$binary")
  log="$log_dir/$name.log"
  start=$(date +%s)
  "$binary" --gtest_color=no >"$log" 2>&1
  status=$?
  p=$(count PASSED "$log"); f=$(count FAILED "$log"); s=$(count SKIPPED "$log")
  p=${p:-0}; f=${f:-0}; s=${s:-0}
  if [ $status -ne 0 ] && [ "$f" = 0 ]; then f=1; fi  # crashed before its summary
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-32s %4d passed %3d failed %3d skipped  %3ds\n' "$name" "$p" "$f" "$s" $(( $(date +%s) - start ))
  if [ "$f" != 0 ]; then
    failures+=("$name")
    grep -E "^\[  FAILED  \]|Failure|error" "$log" | head -20
    tail -5 "$log"
  fi
done

for script in tests/cli/*.sh; do
  [ -f "$script" ] || continue
  name=$(basename "$script" .sh)
  log="$log_dir/$name.log"
  start=$(date +%s)
  if bash "$script" >"$log" 2>&1; then
    passed=$((passed + 1)); result=passed
  else
    failed=$((failed + 1)); result=FAILED; failures+=("cli/$name")
  fi
  printf '%-32s %s  %3ds\n' "cli/$name" "$result" $(( $(date +%s) - start ))
  [ "$result" = FAILED ] && tail -15 "$log"
done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
