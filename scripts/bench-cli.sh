#!/usr/bin/env bash
# The CLI as a one-shot process: `toolcell run --base -- sh -c true` against
# bubblewrap and a plain fork/exec of `sh -c true`, interleaved rounds,
# medians of wall time and of CPU time (user+sys of the launcher and of all
# it left behind). See BenchmarkCLIOneShot in cmd/toolcell/bench_test.go.
#   scripts/bench-cli.sh [ROUNDS]      (default 60)
#   TOOLCELL_BENCH_BINS=old=/path/a,new=/path/b scripts/bench-cli.sh
#                                      (A/B other builds in the same rounds)
# Prints a markdown table for BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-60}
"$root/scripts/deps.sh" >/dev/null
export PATH=$PATH:/usr/local/go/bin
cd "$root"
out=$(go test -run '^$' -bench '^BenchmarkCLIOneShot$' -benchtime "${rounds}x" -count 1 ./cmd/toolcell)
metric() { grep -oE "[0-9.]+ $1([[:space:]]|$)" <<<"$out" | awk '{print $1}' || true; }
names=(exec bwrap)
for n in $(grep -oE 'ms-wall/[^[:space:]]+' <<<"$out" | sed 's|ms-wall/||' | sort -u); do
  case $n in exec|bwrap) ;; *) names+=("$n") ;; esac
done
echo "| one-shot launcher (\`sh -c true\`, median of $rounds interleaved rounds) | wall ms | CPU ms | wall : bwrap | CPU : bwrap |"
echo "|---|---|---|---|---|"
for n in "${names[@]}"; do
  rw=$(metric "ratio-wall/$n:bwrap"); rc=$(metric "ratio-cpu/$n:bwrap")
  echo "| $n | $(metric "ms-wall/$n") | $(metric "ms-cpu/$n") | ${rw:--} | ${rc:--} |"
done
echo
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d), as $( [ "$(id -u)" = 0 ] && echo root || echo "uid $(id -u)")"
