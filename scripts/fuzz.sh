#!/usr/bin/env bash
# Runs each fuzz target until it has used MINUTES of CPU time (counted by
# GNU time; a run cut short by other work on the machine is continued from
# its corpus), JOBS targets at a time, and prints one line per target:
# CPU minutes, executions, coverage, corpus size, findings. Inputs that
# crash, abort, time out (10 s) or pass 2 GB are kept in
# fuzz/artifacts/TARGET/; fix each with a regression test. The grown
# corpus stays in fuzz/corpus/TARGET/ (not committed); fuzz/seeds/ holds
# the committed seeds. Logs: fuzz/logs/TARGET.log.
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
# Build once; the runs below use the binaries, so editing the sources
# while they run changes nothing.
cargo fuzz build --sanitizer none >/dev/null
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p fuzz/logs

run_one() {
  local t="$1" need=$((minutes * 60)) used=0 execs=0 idle=0
  local log="fuzz/logs/$t.log" timing="fuzz/logs/$t.time"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  : >"$log"
  while [ "$used" -lt "$need" ]; do
    /usr/bin/time -o "$timing" -f "%U %S" \
      "$bin_dir/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
      -max_total_time=$((need - used)) -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
      >>"$log" 2>&1 || true
    local cpu
    cpu=$(awk 'END { printf "%d", $1 + $2 }' "$timing")
    used=$((used + cpu))
    local e
    e=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo 0)
    execs=$((execs + e))
    # stop at a finding, or when runs stop using the CPU
    if [ -n "$(find "fuzz/artifacts/$t" -type f)" ]; then break; fi
    if [ "$cpu" -lt 5 ]; then idle=$((idle + 1)); else idle=0; fi
    if [ "$idle" -ge 3 ]; then break; fi
  done
  local cov found
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || echo '?')
  found=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "$t: $((used / 60)) CPU min, $execs executions, $cov, findings $found"
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
