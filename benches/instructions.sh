#!/usr/bin/env bash
# Instructions per event of the hot path, counted by callgrind: decode + score
# (`Engine::process` on known incidents) and the baseline (`serde_json` `IgnoredAny` over the
# same bytes), each over the same number of events of the hot_path benchmark's mix. Unlike
# time, an instruction count does not move with the machine's load, so CI can guard it.
#
#   bash benches/instructions.sh            # measure, compare with benches/instructions.txt
#   bash benches/instructions.sh --update   # measure and write benches/instructions.txt
#
# Fails when decode + score needs more than 10 % more instructions per event than the
# committed figure (a gain is reported; commit it with --update). Needs valgrind. Builds the
# benchmark in the bench profile (release, fat LTO) unless BUILD=0.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${EVENTS:-20000}
limit=${LIMIT_PERCENT:-10}
figures=benches/instructions.txt
update=0
[[ ${1:-} == --update ]] && update=1

command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (Debian package valgrind)" >&2; exit 1; }

if [[ ${BUILD:-1} == 1 ]]; then
  cargo bench --bench hot_path --no-run --locked >&2
fi
target=${CARGO_TARGET_DIR:-target}
bin=$(ls -t "$target"/release/deps/hot_path-* 2>/dev/null | grep -v '\.d$' | head -1)
[[ -x $bin ]] || { echo "instructions.sh: no hot_path benchmark binary under $target/release/deps" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# count FUNCTION: instructions executed inside FUNCTION (and what it calls), one run.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/$1.out" \
    --toggle-collect="*$1*" "$bin" --count-instructions "$events" >"$tmp/$1.log" 2>&1 ||
    { cat "$tmp/$1.log" >&2; exit 1; }
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$tmp/$1.out" | head -1
}
base=$(count counted_baseline)
score=$(count counted_decode_score)
per_base=$((base / events))
per_score=$((score / events))
ratio=$(awk -v a="$per_score" -v b="$per_base" 'BEGIN { printf "%.2f", a / b }')
echo "instructions per event: baseline (serde_json IgnoredAny) $per_base, decode + score $per_score, ratio ${ratio}x ($events events each)"

if ((update)); then
  printf 'decode_score %s\nbaseline %s\n' "$per_score" "$per_base" >"$figures"
  echo "wrote $figures"
  exit 0
fi
[[ -f $figures ]] || { echo "instructions.sh: no $figures (run with --update)" >&2; exit 1; }
committed=$(awk '$1 == "decode_score" { print $2 }' "$figures")
growth=$(awk -v now="$per_score" -v was="$committed" 'BEGIN { printf "%.1f", (now - was) * 100 / was }')
echo "decode + score: $per_score instructions per event against $committed committed ($growth %)"
if awk -v g="$growth" -v l="$limit" 'BEGIN { exit !(g > l) }'; then
  echo "instructions.sh: decode + score grew by more than $limit % (see README Benchmarks)" >&2
  exit 1
fi
