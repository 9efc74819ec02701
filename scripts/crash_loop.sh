#!/usr/bin/env bash
# Runs the SIGKILL crash test of tests/e2e_durability.rs ITERATIONS times (default
# 50) for each RELAY_SQLITE_SYNCHRONOUS mode (normal, full) and prints the lost,
# duplicated, unexpected and reordered totals. Exits 1 if any total is non-zero.
#
#   scripts/crash_loop.sh [ITERATIONS] [SEED]
set -euo pipefail

iterations="${1:-50}"
seed="${2:-$$}"
cd "$(dirname "$0")/.."
cargo build --release --quiet --test e2e_durability

status=0
for mode in normal full; do
    log="$(mktemp)"
    echo "== RELAY_SQLITE_SYNCHRONOUS=$mode, $iterations iterations, seed $seed"
    if ! CRASH_ITERATIONS="$iterations" CRASH_SYNCHRONOUS="$mode" CRASH_SEED="$seed" \
        cargo test --release --quiet --test e2e_durability crash_ -- --nocapture \
        >"$log" 2>&1; then
        status=1
    fi
    if grep -E '^CRASH-TOTAL' "$log"; then
        # Iterations with any loss, duplicate, unexpected or reordered blob.
        grep -E '^CRASH-RESULT' "$log" | grep -vE 'lost=0 duplicated=0 unexpected=0 reordered=0' || true
    else
        echo "no total: the test failed before the end"
        tail -n 40 "$log"
        status=1
    fi
    rm -f "$log"
done
exit "$status"
