#!/usr/bin/env bash
# Kernel steering on a multi-core flockd, A/B: `flockd --cores $CORES` with steering (the default)
# and with `--no-steering` (the kernel's flow hash; cores forward keep-alives they do not own),
# in alternating rounds. Each run: a fresh flockd, `flock-bench keepalive` with $APPLIANCES
# appliances, first paced at $RATE/s, then closed loop. Reports per run: answered/s, flockd CPU
# per keep-alive, the share of datagrams forwarded between cores (from flockd's stop line), p50
# and p99. flockd takes CPUs 0..CORES-1; the generator is unpinned (on a 2-core box it shares
# them: compare the two modes, not the absolute figures).
#
# The generator sends one datagram per message (`--no-gso`), as appliances do: the kernel picks
# the socket once for a whole UDP GSO train, by its first datagram, so trains of keep-alives for
# names on different cores would be steered as one.
#
#   benches/steering.sh                      # 3 rounds, 2 cores, 100 000/s then closed loop
#   ROUNDS=5 RATE=50000 benches/steering.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
RATE=${RATE:-100000}
CORES=${CORES:-2}
APPLIANCES=${APPLIANCES:-10000}
GEN_FLAGS=${GEN_FLAGS:---no-gso}
OUT=${OUT:-target/steering}

cargo build --release -p flockd -p flock-benches --bins
BENCH=target/release/flock-bench
FLOCKD=target/release/flockd
rm -rf "$OUT" && mkdir -p "$OUT"
TMP=$(mktemp -d)
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# run ROUND MODE: one flockd, a paced and a closed-loop keep-alive run; one result line each.
run() {
    local round=$1 mode=$2 flags=() addr="" stop
    [ "$mode" = hash ] && flags=(--no-steering)
    rm -rf "$TMP/data" && mkdir -p "$TMP/data"
    "$FLOCKD" --cpus "0-$((CORES - 1))" --udp 127.0.0.1:0 --no-ws --data-dir "$TMP/data" "${flags[@]}" \
        2> "$TMP/log" &
    PID=$!
    for _ in $(seq 100); do
        addr=$(grep -m1 -o 'ready udp=[0-9.:]*' "$TMP/log" | cut -d= -f2 || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$TMP/log" >&2; exit 1; }
    for load in paced max; do
        local rate=()
        [ "$load" = paced ] && rate=(--rate "$RATE")
        "$BENCH" keepalive --target "$addr" --appliances "$APPLIANCES" --duration "$DURATION" \
            --target-pid "$PID" --label "flockd $mode" --quiet "${rate[@]}" $GEN_FLAGS \
            --json "$OUT/$mode-$load-$round.json" > /dev/null
    done
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    stop=$(grep 'stopped' "$TMP/log" | tail -1)
    echo "$stop" > "$OUT/$mode-stop-$round.txt"
}

for round in $(seq "$ROUNDS"); do
    for mode in steered hash; do
        echo "round $round: $mode" >&2
        run "$round" "$mode"
    done
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def phase(path):
    doc = json.load(open(path))
    return next(p for p in doc["phases"] if p["phase"] == "keepalive")
print("| flockd | load | answered/s | flockd CPU % | CPU ns per keep-alive | p50 µs | p99 µs | forwarded between cores (whole run) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for mode in ("steered", "hash"):
    fwd = []
    for r in range(1, rounds + 1):
        stop = open(f"{out}/{mode}-stop-{r}.txt").read()
        f = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stop)}
        fwd.append(100.0 * f.get("forwarded", 0) / max(f.get("received", 1), 1))
    for load in ("paced", "max"):
        ps = [phase(f"{out}/{mode}-{load}-{r}.json") for r in range(1, rounds + 1)]
        med = lambda k: statistics.median(k(p) for p in ps)
        ns = med(lambda p: p["target_cpu_pct"] * 1e7 / max(p["answered_per_s"], 1))
        print(f"| {mode} | {load} | {med(lambda p: p['answered_per_s']):.0f} | {med(lambda p: p['target_cpu_pct']):.0f} "
              f"| {ns:.0f} | {med(lambda p: p['latency']['p50_us']):.0f} | {med(lambda p: p['latency']['p99_us']):.0f} "
              f"| {statistics.median(fwd):.1f} % |")
print(f"\nMedians over {rounds} alternating rounds; results in {out}/")
EOF
