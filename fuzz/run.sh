#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 30) on one core, one after the
# other; exits non-zero on the first crash (a panic, failed invariant, overflow, stack
# overflow, timeout of 10 s or more than 2 GiB for one input), whose input libFuzzer leaves in
# fuzz/artifacts/<target>/. Needs a nightly toolchain and cargo-fuzz (`cargo install
# cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Targets are built with optimizations, debug assertions and overflow checks, without a
# sanitizer (regwatch's code under fuzz is safe Rust: AddressSanitizer would halve the rate
# and find nothing a panic does not), in 16 codegen units (a build about a minute shorter on
# two cores, at the same rate). Each run starts from fuzz/corpus/<target>/ (the seed-*
# files and what earlier runs added) and adds what it finds there.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${1:-30}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(event_decoder config rules calendar state_record alert_reader history_record)
fi
flags=(--sanitizer none --debug-assertions --codegen-units 16)

dict_of() {
  case $1 in
    event_decoder | alert_reader) echo dict/event.dict ;;
    state_record) echo dict/state.dict ;;
    history_record) echo dict/history.dict ;;
    config | rules | calendar) echo dict/toml.dict ;;
  esac
}

cargo +nightly fuzz build "${flags[@]}"
for t in "${targets[@]}"; do
  printf '\n== fuzz %s (%ss)\n' "$t" "$seconds"
  mkdir -p "corpus/$t"
  # libFuzzer's progress lines (new coverage) are left out; the rest, a crash's report
  # included, is shown, and its exit status fails the script (pipefail).
  cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -dict="$(dict_of "$t")" -print_final_stats=1 2>&1 |
    grep -Ev '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)[[:space:]]'
done
