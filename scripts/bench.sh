#!/usr/bin/env bash
# Runs the load-generator suite against relays it starts (release build) and
# prints one table: scenario, backend, metric, value. Each scenario is bounded
# (a few seconds); the whole suite takes about a minute. The startup benchmark
# (benches/startup.rs, 2 shards) adds its time-to-listening rows; with
# BENCH_MICRO=1 the criterion micro-benchmarks (benches/micro.rs, about two
# minutes) run too, their output on stderr and their median times in the table.
#
# Environment: BENCH_DURATION (measured seconds per timed scenario, default 5),
# BENCH_WARMUP (default 2), BENCH_THREADS (load-generator threads, default 1),
# BENCH_CHURN_THREADS (load-generator threads for churn, default 2: with one, the
# generator, not the relay, limits the handshake rate),
# RELAY_SHARDS (default 2), BENCH_IDLE_CONNECTIONS (default 15000),
# BENCH_STARTUP_BLOBS (blobs for the startup benchmark, default 1000000),
# BENCH_MICRO (1 to run the micro-benchmarks, default 0).
set -euo pipefail

cd "$(dirname "$0")/.."

duration="${BENCH_DURATION:-5}"
warmup="${BENCH_WARMUP:-2}"
threads="${BENCH_THREADS:-1}"
churn_threads="${BENCH_CHURN_THREADS:-2}"
shards="${RELAY_SHARDS:-2}"
idle_connections="${BENCH_IDLE_CONNECTIONS:-15000}"
startup_blobs="${BENCH_STARTUP_BLOBS:-1000000}"
micro="${BENCH_MICRO:-0}"

cargo build --release --quiet
cargo bench --bench loadgen --no-run --quiet
cargo bench --bench startup --no-run --quiet
if [[ "$micro" == 1 ]]; then
    cargo bench --bench micro --no-run --quiet
fi

results="$(mktemp)"
micro_log="$(mktemp)"
trap 'rm -f "$results" "$micro_log"' EXIT

# run SCENARIO ARGS...: one loadgen run; its RESULT lines go to the table.
run() {
    echo "== $*" >&2
    if ! cargo bench --quiet --bench loadgen -- "$@" --shards "$shards" --threads "${RUN_THREADS:-$threads}" >>"$results"; then
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
RUN_THREADS="$churn_threads" run churn --backend memory --connections 64 "${timed[@]}"

# Startup with a full data directory: always sqlite on 2 shards (see the bench).
echo "== startup --blobs $startup_blobs" >&2
if ! cargo bench --quiet --bench startup -- --blobs "$startup_blobs" >>"$results"; then
    echo "!! failed: startup" >&2
fi

if [[ "$micro" == 1 ]]; then
    # Criterion prints each bench's name, then `time: [low median high]`; the
    # median goes to the table as `micro - <group/bench> <value unit>`. A
    # `change:` block's `time: [+x% ...]` (against the last run) is skipped.
    echo "== micro" >&2
    if cargo bench --quiet --bench micro 2>&1 | tee "$micro_log" >&2; then
        awk '
            /^[^ ]/ && !/^(Benchmarking|Found|Gnuplot|WARNING)/ { name = $1 }
            /time: +\[[0-9]/ {
                sub(/.*time: *\[/, "")
                split($0, v, " ")
                printf "RESULT\tmicro\t-\t%s\t%s %s\n", name, v[3], v[4]
            }' "$micro_log" >>"$results"
    else
        echo "!! failed: micro" >&2
    fi
fi

echo
echo "vauchi-relay load test: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+dirty'), $(nproc) CPUs, RELAY_SHARDS=$shards, loadgen threads $threads (churn $churn_threads), $(date -u +%Y-%m-%dT%H:%MZ)"
{
    printf 'scenario\tbackend\tmetric\tvalue\n'
    awk -F'\t' '$1 == "RESULT" { print $2 "\t" $3 "\t" $4 "\t" $5 }' "$results"
} | column -t -s $'\t'
