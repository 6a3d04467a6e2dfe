#!/usr/bin/env bash
# Runs each fuzz target for MINUTES of CPU time (libFuzzer's
# -max_total_time), JOBS targets at a time, and prints each run's final
# statistics (executions, coverage, corpus) as one line. Inputs that crash,
# abort, time out or pass the memory limit are kept in fuzz/artifacts/TARGET/;
# fix each with a regression test. The grown corpus stays in
# fuzz/corpus/TARGET/ (not committed); fuzz/seeds/ holds the committed seeds.
#
# Usage: scripts/fuzz.sh [MINUTES] [JOBS] [TARGET ...]
#   (default 30 minutes, 2 at a time, every target). Needs cargo-fuzz:
#   tools/install-fuzz-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
jobs="${2:-2}"
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(audio png_exif checkpoints text_inputs)
fi
tools/install-fuzz-deps.sh
cargo fuzz build --sanitizer none >/dev/null
mkdir -p fuzz/logs
run_one() {
  local t="$1"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # -rss_limit_mb: an input that makes a decoder use more than 2 GB is a
  # finding; -timeout: so is one that takes over 10 s.
  cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
    >"fuzz/logs/$t.log" 2>&1 || true
  local execs cov
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "fuzz/logs/$t.log" | grep -oE '[0-9]+$' || echo '?')
  cov=$(grep -oE '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE).*cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "fuzz/logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || echo '?')
  local found
  found=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "$t: ${minutes} min, ${execs} executions, ${cov}, findings ${found}"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
