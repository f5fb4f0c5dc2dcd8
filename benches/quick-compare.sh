#!/usr/bin/env bash
# A shorter benches/compare.sh: one round of 3 s per server (echo-server mmsg / plain, flockd,
# coturn), results in target/quick-compare. Every variable of compare.sh can be overridden.
#
#   benches/quick-compare.sh
#   SERVERS="a c" EXTRA="--window 16" benches/quick-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-3} OUT=${OUT:-target/quick-compare} exec benches/compare.sh
