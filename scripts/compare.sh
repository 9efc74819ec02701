#!/usr/bin/env bash
# Compares two relay binaries in interleaved runs of the load generator (this VM's
# speed drifts by up to ±15 % over minutes, so A and B alternate scenario by
# scenario) and prints every run and each scenario's median for A and B, with
# B/A. Throughput rows are Stored acks/s (higher is better), the rest are
# latencies or times (lower is better).
#
#   scripts/compare.sh OLD_BINARY NEW_BINARY [ROUNDS]     (default 4 rounds)
#
# Environment: COMPARE_DURATION (default 5 s per timed run), COMPARE_WARMUP (2),
# RELAY_SHARDS (2), COMPARE_ONLY (a regular expression: only the scenarios whose
# name matches, e.g. `^seq`). Nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

a="$1"
b="$2"
rounds="${3:-4}"
duration="${COMPARE_DURATION:-5}"
warmup="${COMPARE_WARMUP:-2}"
shards="${RELAY_SHARDS:-2}"

cargo bench --bench loadgen --no-run --quiet
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

# scenario label, then loadgen arguments; the metric to keep is the label's last word.
scenarios=(
    "store-memory stored_acks_per_sec|store --backend memory --connections 100 --window 32"
    "store-sqlite stored_acks_per_sec|store --backend sqlite --connections 100 --window 32"
    "seq-memory stored_acks_per_sec|store --backend memory --connections 1 --window 1"
    "seq-sqlite stored_acks_per_sec|store --backend sqlite --connections 1 --window 1"
    "live-memory deliver_p99_ms|live --backend memory --connections 100 --rate 10000"
    "drain-memory drain_ms|drain --backend memory --backlog 10000 --window 64"
    "drain-sqlite drain_ms|drain --backend sqlite --backlog 10000 --window 64"
)

for round in $(seq "$rounds"); do
    for entry in "${scenarios[@]}"; do
        label="${entry%%|*}"
        args="${entry#*|}"
        name="${label% *}"
        metric="${label#* }"
        [[ "$name" =~ ${COMPARE_ONLY:-.} ]] || continue
        # Alternate which binary goes first, so neither always runs on a warmer VM.
        order=("A $a" "B $b")
        if ((round % 2 == 0)); then order=("B $b" "A $a"); fi
        for pick in "${order[@]}"; do
            which="${pick%% *}"
            binary="${pick#* }"
            # shellcheck disable=SC2086 # `args` is a word list on purpose.
            line="$(cargo bench --quiet --bench loadgen -- $args --shards "$shards" \
                --duration "$duration" --warmup "$warmup" --relay-bin "$binary" |
                awk -F'\t' -v m="$metric" '$1 == "RESULT" && $4 == m { print $5 }' | tail -1)"
            printf '%s\t%s\t%s\t%s\n' "$name" "$round" "$which" "${line:-failed}" | tee -a "$results"
        done
    done
done

echo
echo "A = $a"
echo "B = $b"
echo "medians over $rounds interleaved rounds, $(nproc) CPUs, RELAY_SHARDS=$shards, $(date -u +%Y-%m-%dT%H:%MZ)"
awk -F'\t' '
    $4 != "failed" { v[$1 "\t" $3] = v[$1 "\t" $3] " " $4; names[$1] = 1 }
    function median(list,   n, x, i, j, t) {
        n = split(list, x, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }
    END {
        printf "%-14s %12s %12s %8s\n", "scenario", "A", "B", "B/A"
        for (s in names) {
            ma = median(v[s "\tA"]); mb = median(v[s "\tB"])
            printf "%-14s %12.2f %12.2f %8.3f\n", s, ma, mb, (ma > 0 ? mb / ma : 0)
        }
    }' "$results" | sort
