#!/usr/bin/env bash
# Compares two relay binaries, or one binary over plain WebSocket and over TLS,
# in interleaved runs of the load generator (this VM's speed drifts by up to
# ±15 % over minutes, so A and B alternate scenario by scenario) and prints every
# run and each scenario's medians for A and B, with B/A. Throughput rows are
# Stored acks/s (higher is better), the rest are latencies, times or CPU shares
# (lower is better).
#
#   scripts/compare.sh OLD_BINARY NEW_BINARY [ROUNDS]     (default 4 rounds)
#   scripts/compare.sh --tls BINARY [ROUNDS]              A = ws://, B = wss:// (--tls)
#   scripts/compare.sh --noise BINARY [ROUNDS]            A = plain, B = Noise NK (--noise)
#
# With --tls only the memory `store` scenarios run unless COMPARE_ONLY says
# otherwise; the target (issue 17) is B/A >= 0.70 for store-memory's acks/s.
# With --noise the memory `store`, `seq` (1x1 round trip) and `live` scenarios
# run; the target (issue 16) is B/A >= 0.75 for store-memory's acks/s and at most
# 20 us more for seq-memory's ack_p50_ms.
# Environment: COMPARE_DURATION (default 5 s per timed run), COMPARE_WARMUP (2),
# RELAY_SHARDS (2), COMPARE_ONLY (a regular expression: only the scenarios whose
# name matches, e.g. `^seq`). Nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == --tls ]]; then
    a="$2"
    b="$2"
    a_args=""
    b_args="--tls"
    a_name="$2 over ws://"
    b_name="$2 over wss:// (loadgen --tls)"
    rounds="${3:-4}"
    only="${COMPARE_ONLY:-^(store|seq)-memory$}"
    target="target (issue 17): store-memory stored_acks_per_sec B/A >= 0.70"
elif [[ "${1:-}" == --noise ]]; then
    a="$2"
    b="$2"
    a_args=""
    b_args="--noise"
    a_name="$2, plain sessions"
    b_name="$2, Noise NK sessions (loadgen --noise)"
    rounds="${3:-4}"
    only="${COMPARE_ONLY:-^(store|seq|live)-memory$}"
    target="target (issue 16): store-memory stored_acks_per_sec B/A >= 0.75; seq-memory ack_p50_ms B - A <= 0.020"
else
    a="$1"
    b="$2"
    a_args=""
    b_args=""
    a_name="$a"
    b_name="$b"
    rounds="${3:-4}"
    only="${COMPARE_ONLY:-.}"
    target=""
fi
duration="${COMPARE_DURATION:-5}"
warmup="${COMPARE_WARMUP:-2}"
shards="${RELAY_SHARDS:-2}"

cargo bench --bench loadgen --no-run --quiet
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

# scenario name and the metrics to keep from its run, then loadgen arguments.
scenarios=(
    "store-memory stored_acks_per_sec loadgen_cpu_pct relay_cpu_pct|store --backend memory --connections 100 --window 32"
    "store-sqlite stored_acks_per_sec loadgen_cpu_pct relay_cpu_pct|store --backend sqlite --connections 100 --window 32"
    "seq-memory stored_acks_per_sec ack_p50_ms ack_p99_ms loadgen_cpu_pct relay_cpu_pct|store --backend memory --connections 1 --window 1"
    "seq-sqlite stored_acks_per_sec ack_p50_ms ack_p99_ms|store --backend sqlite --connections 1 --window 1"
    "live-memory deliver_p50_ms deliver_p99_ms loadgen_cpu_pct relay_cpu_pct|live --backend memory --connections 100 --rate 10000"
    "drain-memory drain_ms|drain --backend memory --backlog 10000 --window 64"
    "drain-sqlite drain_ms|drain --backend sqlite --backlog 10000 --window 64"
)

for round in $(seq "$rounds"); do
    for entry in "${scenarios[@]}"; do
        label="${entry%%|*}"
        args="${entry#*|}"
        name="${label%% *}"
        metrics="${label#* }"
        [[ "$name" =~ $only ]] || continue
        # Alternate which side goes first, so neither always runs on a warmer VM.
        order=("A" "B")
        if ((round % 2 == 0)); then order=("B" "A"); fi
        for which in "${order[@]}"; do
            if [[ "$which" == A ]]; then binary="$a" extra="$a_args"; else binary="$b" extra="$b_args"; fi
            # shellcheck disable=SC2086 # `args` and `extra` are word lists on purpose.
            run="$(cargo bench --quiet --bench loadgen -- $args $extra --shards "$shards" \
                --duration "$duration" --warmup "$warmup" --relay-bin "$binary" || true)"
            figures=""
            for metric in $metrics; do
                value="$(awk -F'\t' -v m="$metric" '$1 == "RESULT" && $4 == m { print $5 }' <<<"$run" | tail -1)"
                printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$metric" "$round" "$which" "${value:-failed}" >>"$results"
                figures="$figures  $metric ${value:-failed}"
            done
            printf '%s\tround %s\t%s\t%s\n' "$name" "$round" "$which" "${figures#  }"
        done
    done
done

echo
echo "A = $a_name"
echo "B = $b_name"
echo "medians over $rounds interleaved rounds, $(nproc) CPUs, RELAY_SHARDS=$shards, $(date -u +%Y-%m-%dT%H:%MZ)"
[[ -z "$target" ]] || echo "$target"
printf '%-14s %-20s %12s %12s %8s\n' "scenario" "metric" "A" "B" "B/A"
awk -F'\t' '
    $5 != "failed" { v[$1 "\t" $2 "\t" $4] = v[$1 "\t" $2 "\t" $4] " " $5; rows[$1 "\t" $2] = 1 }
    function median(list,   n, x, i, j, t) {
        n = split(list, x, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }
    END {
        for (r in rows) {
            split(r, key, "\t")
            ma = median(v[r "\tA"]); mb = median(v[r "\tB"])
            printf "%-14s %-20s %12.3f %12.3f %8.3f\n", key[1], key[2], ma, mb, (ma > 0 ? mb / ma : 0)
        }
    }' "$results" | sort
