#!/usr/bin/env bash
# Launch benchmark: toolcell vs bubblewrap vs plain os/exec, interleaved in
# one run (see BenchmarkLaunch in sandbox/bench_test.go), plus the seccomp
# compile cost. Prints a markdown table for BENCHMARKS.md.
#   scripts/bench.sh [ROUNDS]     (default 60; run as root on a quiet machine)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-60}
"$root/scripts/deps.sh" >/dev/null
export PATH=$PATH:/usr/local/go/bin
cd "$root"
out=$(go test -run '^$' -bench '^BenchmarkLaunch$' -benchtime "${rounds}x" -count 1 ./sandbox)
sc=$(go test -run '^$' -bench 'Compile' -benchtime 200x -count 1 ./seccomp)
metric() { grep -oE "[0-9.]+ $1([[:space:]]|$)" <<<"$out" | awk '{print $1}'; }
echo "| launcher (\`sh -c true\`, median of $rounds interleaved rounds) | ms |"
echo "|---|---|"
for n in exec bwrap toolcell toolcell-heap256; do
  echo "| $n | $(metric "ms-median/$n") |"
done
echo
echo "| ratio | value |"
echo "|---|---|"
for r in toolcell:bwrap toolcell:exec heap256:noheap; do
  echo "| $r | $(metric "ratio/$r") |"
done
echo
echo "seccomp compile:"
grep -E '^Benchmark' <<<"$sc" | awk '{printf "- %s: %s %s\n", $1, $3, $4}'
echo
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
