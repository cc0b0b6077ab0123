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
ov=$(go test -run '^$' -bench 'SyscallOverhead' -benchtime 15x -count 1 ./seccomp)
dn=$(go test -run '^$' -bench 'DeniedSyscall' -benchtime 10000x -count 3 ./sandbox)
eg=$(go test -run '^$' -bench '^BenchmarkEgress$' -benchtime 5x -count 1 ./sandbox)
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
