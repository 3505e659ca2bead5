#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time, one after the other (make fuzz):
#   bash fuzz/run_fuzzers.sh BUILD_DIR SECONDS TARGET...
# Each starts from tests/fuzz_corpus/<target>/ (read only) plus the inputs
# earlier runs kept in BUILD_DIR/corpus/<target>/ (new coverage goes there).
# A crash, sanitizer report, hang (-timeout), large allocation or leak stops
# that target and leaves the input in BUILD_DIR/findings/<target>/; the script
# goes on with the others, prints one line per target and exits 1 if any found
# something. Logs: BUILD_DIR/fuzz_<target>.log.
set -u
build=$1 seconds=$2
shift 2
cd "$(dirname "$0")/.."
found=()
for target in "$@"; do
  binary=$build/fuzz_$target
  corpus=$build/corpus/$target
  findings=$build/findings/$target
  log=$build/fuzz_$target.log
  mkdir -p "$corpus" "$findings"
  echo "fuzz $target: ${seconds}s (log $log)"
  # -timeout: seconds one input may take (a hang); -malloc_limit_mb: the
  # largest single allocation a small input may ask for.
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=16384 -dict=fuzz/tokens.dict -artifact_prefix="$findings/" -print_final_stats=1 \
    "$corpus" "tests/fuzz_corpus/$target" >"$log" 2>&1
  status=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' | awk '{print $2}')
  if [ $status -eq 0 ]; then
    printf '  %-18s clean: %s runs, coverage %s edges, corpus %s files\n' "$target" "${runs:-?}" "${cov:-?}" \
      "$(ls "$corpus" | wc -l)"
  else
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | awk '{print $NF}')
    printf '  %-18s FOUND (exit %d): %s\n' "$target" $status "${artifact:-see the log}"
    grep -E "^==[0-9]+==ERROR|runtime error|FuzzFinding|what\(\)|ERROR: libFuzzer" "$log" | head -3 | sed 's/^/    /'
    found+=("$target")
  fi
done
if [ ${#found[@]} -gt 0 ]; then
  echo "findings in: ${found[*]}"
  echo "minimise one:  $build/fuzz_<target> -minimize_crash=1 -max_total_time=60 -exact_artifact_path=tests/fuzz_corpus/<target>/<name> <artifact>"
  echo "fix the parser, then keep the minimised input in tests/fuzz_corpus/<target>/ (make test replays it)"
  exit 1
fi
