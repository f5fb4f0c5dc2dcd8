#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 10), starting from a scratch
# copy of its seed corpus (fuzz/corpus/<target>, left untouched). Quiet on success: one line
# per target with its executions. On a crash: the tail of libFuzzer's log, the input saved in
# fuzz/artifacts/<target>/, and exit status 1.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, …); the one stable toolchain here
# accepts them with RUSTC_BOOTSTRAP=1, set for the cargo-fuzz commands only.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail

secs=${1:-10}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (once)" >&2
    cargo install cargo-fuzz --locked --quiet
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }

if ! fuzz build -O >"$scratch/build.log" 2>&1; then
    tail -n 60 "$scratch/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

status=0
for target in $(fuzz list); do
    corpus="$scratch/corpus-$target"
    mkdir -p "$corpus"
    if [ -d "corpus/$target" ]; then cp -R "corpus/$target/." "$corpus/"; fi
    log="$scratch/$target.log"
    # -timeout: one input taking over 10 s is a hang; the outer timeout bounds the whole run.
    if timeout $((secs + 120)) env RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        echo "fuzz $target: ok, ${runs:-?} executions in ${secs}s, no crash"
    else
        status=1
        tail -n 50 "$log" >&2
        echo "fuzz $target: FAILED (input saved under fuzz/artifacts/$target/)" >&2
    fi
done
exit $status
