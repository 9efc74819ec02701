#!/usr/bin/env bash
# Runs the load-generator suite against relays it starts (release build) and
# prints one table: scenario, backend, metric, value. Each scenario is bounded
# (a few seconds); the whole suite takes about a minute.
#
# Environment: BENCH_DURATION (measured seconds per timed scenario, default 5),
# BENCH_WARMUP (default 2), BENCH_THREADS (load-generator threads, default 1),
# RELAY_SHARDS (default 2), BENCH_IDLE_CONNECTIONS (default 15000).
set -euo pipefail

cd "$(dirname "$0")/.."

duration="${BENCH_DURATION:-5}"
warmup="${BENCH_WARMUP:-2}"
threads="${BENCH_THREADS:-1}"
shards="${RELAY_SHARDS:-2}"
idle_connections="${BENCH_IDLE_CONNECTIONS:-15000}"

cargo build --release --quiet
cargo bench --bench loadgen --no-run --quiet

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

# run SCENARIO ARGS...: one loadgen run; its RESULT lines go to the table.
run() {
    echo "== $*" >&2
    if ! cargo bench --quiet --bench loadgen -- "$@" --shards "$shards" --threads "$threads" >>"$results"; then
        echo "!! failed: $*" >&2
    fi
}

value() { # value SCENARIO BACKEND METRIC
    awk -F'\t' -v s="$1" -v b="$2" -v m="$3" '$2 == s && $3 == b && $4 == m { v = $5 } END { print v }' "$results"
}

timed=(--duration "$duration" --warmup "$warmup")
for backend in memory sqlite; do
    run store --backend "$backend" --connections 100 --window 32 "${timed[@]}"
    peak="$(value store "$backend" stored_acks_per_sec)"
    if [[ -n "$peak" && "$peak" != 0 ]]; then
        # Open loop at half the closed-loop peak: latency without hidden queueing.
        run store --backend "$backend" --connections 100 --rate "$((peak / 2))" "${timed[@]}"
    fi
done
run live --backend memory --connections 100 --rate 10000 "${timed[@]}"
run drain --backend memory --backlog 10000 --window 64
run drain --backend sqlite --backlog 10000 --window 64
run idle --backend memory --connections "$idle_connections"
run churn --backend memory --connections 64 "${timed[@]}"

echo
echo "vauchi-relay load test: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+dirty'), $(nproc) CPUs, RELAY_SHARDS=$shards, loadgen threads $threads, $(date -u +%Y-%m-%dT%H:%MZ)"
{
    printf 'scenario\tbackend\tmetric\tvalue\n'
    awk -F'\t' '$1 == "RESULT" { print $2 "\t" $3 "\t" $4 "\t" $5 }' "$results"
} | column -t -s $'\t'
