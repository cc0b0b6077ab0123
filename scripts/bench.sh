#!/usr/bin/env bash
# Launch benchmarks: toolcell (a compiled Plan, cold, and a Pool, warm) vs
# bubblewrap vs plain os/exec, interleaved in one run: back to back, after
# 200 ms of idle time, with a 256 MiB live heap, and 32 callers at once for
# TOOLCELL_BENCH_SECONDS (default 10) each (see sandbox/bench_test.go); the
# CLI as a one-shot process (scripts/bench-cli.sh); a soak of
# TOOLCELL_SOAK_RUNS (default 10000) runs; the seccomp compile cost.
# Prints markdown tables for BENCHMARKS.md.
#   scripts/bench.sh [ROUNDS]     (default 60; run as root on a quiet machine)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-60}
"$root/scripts/deps.sh" >/dev/null
export PATH=$PATH:/usr/local/go/bin
cd "$root"
out=$(go test -run '^$' -bench '^BenchmarkLaunch$' -benchtime "${rounds}x" -count 1 ./sandbox)
idle=$(go test -run '^$' -bench '^BenchmarkLaunchIdle$' -benchtime "$(( (rounds + 1) / 2 ))x" -count 1 ./sandbox)
hp=$(go test -run '^$' -bench '^BenchmarkLaunchHeap$' -benchtime "${rounds}x" -count 1 ./sandbox)
tp=$(TOOLCELL_BENCH_SECONDS=${TOOLCELL_BENCH_SECONDS:-10} go test -run '^$' -bench '^BenchmarkThroughput$' -benchtime 1x -count 1 -timeout 30m ./sandbox)
soak=$(TOOLCELL_SOAK_RUNS=${TOOLCELL_SOAK_RUNS:-10000} TOOLCELL_CI=1 go test -run '^TestSoak$' -count 1 -timeout 60m -v ./sandbox | grep -E -- '--- (PASS|FAIL)')
sc=$(go test -run '^$' -bench 'Compile' -benchtime 200x -count 1 ./seccomp)
ov=$(go test -run '^$' -bench 'SyscallOverhead' -benchtime 15x -count 1 ./seccomp)
dn=$(go test -run '^$' -bench 'DeniedSyscall' -benchtime 10000x -count 3 ./sandbox)
eg=$(go test -run '^$' -bench '^BenchmarkEgress$' -benchtime 5x -count 1 ./sandbox)
metric() { grep -oE "[0-9.]+ $1([[:space:]]|$)" <<<"${2:-$out}" | awk '{print $1}'; }
echo "| launcher (\`sh -c true\`, medians, interleaved) | back to back ($rounds rounds), ms | after 200 ms idle ($(( (rounds + 1) / 2 )) rounds), ms |"
echo "|---|---|---|"
for n in exec bwrap toolcell toolcell-pool; do
  echo "| $n | $(metric "ms-median/$n") | $(metric "ms-median/$n" "$idle") |"
done
echo
echo "| ratio | back to back | after idle |"
echo "|---|---|---|"
for r in toolcell:bwrap toolcell:exec pool:exec pool:bwrap; do
  echo "| $r | $(metric "ratio/$r") | $(metric "ratio/$r" "$idle") |"
done
echo
echo "256 MiB pointer-rich live heap ($rounds rounds each): toolcell:bwrap $(metric ratio/toolcell:bwrap-noheap "$hp")x without, $(metric ratio/toolcell:bwrap-heap256 "$hp")x with: heap256:noheap **$(metric ratio/heap256:noheap "$hp")x**"
echo
echo "32 callers, ${TOOLCELL_BENCH_SECONDS:-10} s each: bwrap $(metric runs/s/bwrap "$tp") runs/s, toolcell $(metric runs/s/toolcell "$tp") runs/s ($(metric ratio/toolcell:bwrap "$tp")x), pool $(metric runs/s/toolcell-pool "$tp") runs/s ($(metric ratio/pool:bwrap "$tp")x)"
echo
echo "soak, ${TOOLCELL_SOAK_RUNS:-10000} runs with 32 callers each (no error, nothing left behind):"
sed 's/^ */- /' <<<"$soak"
echo
echo "seccomp compile:"
grep -E '^Benchmark' <<<"$sc" | awk '{printf "- %s: %s %s\n", $1, $3, $4}'
echo
echo "syscall cost under the default filter (15 interleaved rounds, medians):"
for op in getppid read4k; do
  p=$(grep -oE "[0-9.]+ ns-plain/$op([[:space:]]|$)" <<<"$ov" | awk '{print $1}')
  f=$(grep -oE "[0-9.]+ ns-filtered/$op([[:space:]]|$)" <<<"$ov" | awk '{print $1}')
  r=$(grep -oE "[0-9.]+ ratio/$op([[:space:]]|$)" <<<"$ov" | awk '{print $1}')
  echo "- $op: $p ns plain, $f ns filtered, ${r}x"
done
echo
echo "denied syscall round trip through the supervisor (3 runs of 10000 calls):"
grep -oE "[0-9.]+ µs/denied-call" <<<"$dn" | sed 's/^/- /'
echo
em() { grep -oE "[0-9.]+ $1([[:space:]]|$)" <<<"$eg" | awk '{print $1}'; }
echo "egress (5 interleaved rounds, medians): connect + 1-byte echo $(em us-connect/relay) us through the relay vs $(em us-connect/direct) us direct ($(em ratio/connect)x);"
echo "1 GiB one way $(em MBps/relay) MB/s through the relay vs $(em MBps/direct) MB/s direct ($(em ratio/throughput)x)"
echo
echo "the CLI as a one-shot process (scripts/bench-cli.sh):"
echo
"$root/scripts/bench-cli.sh" "$rounds" | grep -v '^machine:'
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
