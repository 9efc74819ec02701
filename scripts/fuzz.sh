#!/usr/bin/env bash
# Long fuzzing run of the property tests in tests/fuzz_parsers.rs (HTTP head and
# routing, WebSocket frame reader, envelope/Handshake/request decoders, federation
# message decoder and encoder, RELAY_* configuration), one test binary process per
# property, each bounded in time.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_PROPERTY]      (default 60)
# Environment: FUZZ_CASES (default 100000) cases per property; FUZZ_SEED (default
# `random`, or a u64 to replay a run).
#
# A property stops running new cases after its budget (FUZZ_SECONDS, checked inside
# the test); `timeout` is only the backstop for a hang. Any failure proptest finds is
# shrunk and its seed persisted in tests/fuzz_parsers.proptest-regressions, which is
# replayed first on every later `cargo test`: commit that file as the regression test.
set -u
cd "$(dirname "$0")/.."

budget="${1:-60}"
export FUZZ_CASES="${FUZZ_CASES:-100000}"
export FUZZ_SEED="${FUZZ_SEED:-random}"
export FUZZ_SECONDS="$budget"

cargo test --release --test fuzz_parsers --no-run --quiet || exit 2
names=$(cargo test --release --test fuzz_parsers --quiet -- --list 2>/dev/null |
    sed -n 's/: test$//p')

pass=0
fail=0
failed=()
start=$SECONDS
for name in $names; do
    t0=$SECONDS
    # Shrinking may take up to a minute after the budget.
    timeout --kill-after=10 "$((budget + 90))" \
        cargo test --release --test fuzz_parsers --quiet -- --exact "$name" \
        >"target/fuzz-$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
        status=ok
    else
        fail=$((fail + 1))
        failed+=("$name")
        [ "$rc" -eq 124 ] && status="TIMEOUT (hang?)" || status=FAILED
    fi
    printf '%-48s %-16s %4ss\n' "$name" "$status" "$((SECONDS - t0))"
done

echo "----"
echo "fuzz: $pass passed, $fail failed in $((SECONDS - start))s" \
    "(FUZZ_CASES=$FUZZ_CASES, FUZZ_SEED=$FUZZ_SEED, ${budget}s per property)"
for name in "${failed[@]}"; do
    echo "  $name: see target/fuzz-$name.log (minimal failing input)"
done
if [ -f tests/fuzz_parsers.proptest-regressions ]; then
    echo "regressions: tests/fuzz_parsers.proptest-regressions (commit it)"
fi
[ "$fail" -eq 0 ]
