#!/usr/bin/env bash
# The cross-core hop of flockd's engine (engine/src/mesh.rs), measured with the engine's
# `mesh_hop` example: a 2-core engine (CPUs 0 and 1, pinned) whose shard echoes every datagram,
# with every datagram answered where it arrives (`local`), every one handed to the other core
# (`forward`: the engine steers each datagram by its transaction id, the owner is the next core),
# or half of them (`half`, like keep-alives on 2 cores without steering). `flock-bench echo` (not
# pinned: both CPUs are the engine's) loads it at a fixed rate and then closed loop; the example
# reports the CPU time of its two core threads per answered datagram.
#
# Usage: benches/mesh-hop.sh [SECONDS] [RATE]   (defaults 3 s per run, 100000/s for the paced runs)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
rate=${2:-100000}
cargo build --release -q -p flock-engine --example mesh_hop
cargo build --release -q --bin flock-bench
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18470

for load in "--rate $rate" ""; do
  for route in local forward half; do
    echo "== $route, ${load:-closed loop}"
    $bin/examples/mesh_hop "$route" $((secs + 2)) "127.0.0.1:$port" 0,1 >"$work/$route.out" 2>"$work/$route.err" &
    pid=$!
    sleep 0.5
    # One datagram per message: the kernel steers a GSO train by its first datagram only, and
    # `forward` needs each one steered to the core before its owner.
    # shellcheck disable=SC2086
    $bin/flock-bench echo --target "127.0.0.1:$port" --duration "$secs" --warmup 1 --quiet --no-gso $load \
      | grep -E '^  (measure|[a-z-]+) ' | head -n 1 || true
    wait "$pid"
    grep -v '^{' "$work/$route.out" | tail -n 1
  done
done
