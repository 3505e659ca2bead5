#!/usr/bin/env bash
# Every flag is declared once, in the program's flag table, and --help prints
# that table: README.md's flag tables for the program must list exactly the
# flags --help lists (a flag added without documentation, or documentation
# left behind for a removed flag, fails here). Negative controls: a README
# with a row dropped, and one with an extra flag, must both be caught.
# Run from the repository root after `make`.
source "$(dirname "$0")/../cli_lib.sh"
polaris_test_setup
PROGRAMS=(polaris_train polaris_eval polaris_sample polaris_check polaris_tokenize polaris_convert)
for program in "${PROGRAMS[@]}"; do require_built "build/$program"; done

# compare README HEADING HELP_FILE: the flags named in the first column of the
# tables under the README heading HEADING (up to the next heading of the same
# or a higher level) against the "  --flag" lines of HELP_FILE; prints what
# differs and exits 1 when anything does.
compare() {
  python3 - "$@" <<'PY'
import re, sys
readme, heading, help_file = sys.argv[1:4]
lines = open(readme, encoding="utf-8").read().split("\n")
start = lines.index(heading)
level = len(heading) - len(heading.lstrip("#"))
documented = set()
for line in lines[start + 1:]:
    m = re.match(r"(#+) ", line)
    if m and len(m.group(1)) <= level:
        break
    if line.startswith("| `"):
        first_cell = re.split(r"(?<!\\)\|", line)[1]
        documented |= set(re.findall(r"`(--[a-z0-9-]+)", first_cell))
helped = set(re.findall(r"^  (--[a-z0-9-]+)", open(help_file).read(), re.M))
missing, extra = sorted(helped - documented), sorted(documented - helped)
if missing: print("not in README:", " ".join(missing))
if extra: print("in README but not declared:", " ".join(extra))
if not helped: print("--help lists no flags")
sys.exit(1 if missing or extra or not helped else 0)
PY
}

for program in "${PROGRAMS[@]}"; do
  help="$TMP/$program.help"
  "build/$program" --help >"$help" || fail "$program --help failed"
  # --help lists each declared flag once.
  dupes=$(grep -oE '^  --[a-z0-9-]+' "$help" | sort | uniq -d)
  [ -z "$dupes" ] || fail "$program --help lists twice: $dupes"
  heading="#### $program"
  [ "$program" = polaris_train ] && heading="### polaris_train"
  compare README.md "$heading" "$help" || fail "README.md's $program table"
  echo "ok  $program: README lists exactly the $(grep -cE '^  --' "$help") flags of --help"
done

# Negative controls: drop the --seed row; add a flag no table declares.
grep -v '^| `--seed S`' README.md >"$TMP/dropped.md"
if compare "$TMP/dropped.md" "### polaris_train" "$TMP/polaris_train.help" >"$TMP/out"; then
  fail "a README without --seed passed"
fi
grep -q -- '--seed' "$TMP/out" || fail "the missing --seed is not named: $(cat "$TMP/out")"
sed 's/^| `--steps N` |/| `--steps N`, `--made-up-flag` |/' README.md >"$TMP/extra.md"
if compare "$TMP/extra.md" "### polaris_train" "$TMP/polaris_train.help" >"$TMP/out"; then
  fail "a README with --made-up-flag passed"
fi
grep -q -- '--made-up-flag' "$TMP/out" || fail "--made-up-flag is not named: $(cat "$TMP/out")"
echo "ok  negative controls: a dropped row and an undeclared flag are both caught"
