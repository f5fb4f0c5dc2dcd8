#!/usr/bin/env bash
# Packet rates on loopback, servers side by side (see docs/BENCHMARKS.md for the method):
#   (a) flock-bench echo-server --mode mmsg  --stun   (recvmmsg/sendmmsg: the kernel baseline)
#   (b) flock-bench echo-server --mode plain --stun   (recvfrom/sendto per datagram)
#   (c) flockd                                          (stun, then keepalive with $APPLIANCES appliances)
#   (d) coturn --stun-only, one relay thread            (stun; installed with apt-get if missing)
# Every server is pinned to CPU $SERVER_CPU, the generator to CPU $GEN_CPU. One warm-up round of
# $WARMUP_DURATION s per run (discarded), then $ROUNDS rounds, each running a, b, c, d in turn;
# every server is started fresh for its slot. Then the latency at 50 % load: $ROUNDS more rounds
# at a fixed rate R = half the median keepalive peak (--rate), each running (a) stun and flockd
# keepalive. Before and after, `flock-bench stalls` measures how often the machine pauses a busy
# thread on both CPUs: the floor under every server's tail latency.
# Writes into $OUT: rounds/*.json (measured), warmup/*.json, half/*.json, table.md, chart.svg,
# env.txt (versions and flags), stalls-{before,after}.{txt,json}, flockd-kernel-drops.txt.
#
#   benches/compare.sh                            # defaults: 3 rounds of 5 s, about 3 minutes
#   ROUNDS=5 DURATION=10 benches/compare.sh
#   EXTRA="--window 16" benches/compare.sh        # extra flags for every flock-bench load run
#   SERVERS="a c" benches/compare.sh              # a subset of the slots
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
WARMUP_DURATION=${WARMUP_DURATION:-2}
APPLIANCES=${APPLIANCES:-10000}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
EXTRA=${EXTRA:-}
SERVERS=${SERVERS:-a b c d}
HALF=${HALF:-1}
OUT=${OUT:-target/compare}

cargo build --release --workspace --bins
BENCH=target/release/flock-bench
FLOCKD=target/release/flockd

if [[ " $SERVERS " == *" d "* ]] && ! command -v turnserver > /dev/null; then
    echo "installing coturn (for slot d)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn > /dev/null
fi
# coturn as a STUN-only server: no config file (-n), UDP on loopback only, one relay thread (with
# the default network engine that is one listener socket and thread), no CLI/TLS/DTLS/TCP, no
# RFC 5780 (it needs a second address), log to stdout.
COTURN_FLAGS=(-n --stun-only --listening-ip 127.0.0.1 --relay-threads 1 --no-cli --no-tls --no-dtls
    --no-tcp --no-rfc5780 --simple-log --log-file stdout)

rm -rf "$OUT" && mkdir -p "$OUT/rounds" "$OUT/warmup" "$OUT/half"
TMP=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo -)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
    echo "server cpu: $SERVER_CPU, generator cpu: $GEN_CPU"
    echo "rounds: $ROUNDS x $DURATION s (+$WARMUP s warm-up each), warm-up round: $WARMUP_DURATION s per run"
    echo "flock-bench extra flags: ${EXTRA:-none}; keepalive appliances: $APPLIANCES"
    if command -v turnserver > /dev/null; then
        echo "coturn: $(turnserver --version 2>&1 | head -1) ($(dpkg-query -W -f '${Version}' coturn 2>/dev/null || echo '?'))"
        echo "coturn flags: taskset -c $SERVER_CPU turnserver ${COTURN_FLAGS[*]} --listening-port PORT"
    fi
} > "$OUT/env.txt"
cat "$OUT/env.txt"

# stalls WHEN: pauses of a spinning thread on the generator's and the server's CPU, 5 s.
stalls() {
    "$BENCH" stalls --cpu "$GEN_CPU,$SERVER_CPU" --duration 5 --json "$OUT/stalls-$1.json" \
        | tee "$OUT/stalls-$1.txt" | sed "s/^/[stalls $1] /"
}
stalls before

free_udp_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

label() {
    case "$1" in
        a) echo "echo-server mmsg" ;; b) echo "echo-server plain" ;; c) echo "flockd" ;; d) echo "coturn" ;;
    esac
}

# Starts server $1 (a|b|c|d) in the background; sets SERVER_PID and SERVER_ADDR.
start_server() {
    local log="$TMP/server.log" port
    : > "$log"
    SERVER_ADDR=""
    case "$1" in
        a) "$BENCH" echo-server --addr 127.0.0.1:0 --mode mmsg --stun --cpu "$SERVER_CPU" --duration 600 2> "$log" & ;;
        b) "$BENCH" echo-server --addr 127.0.0.1:0 --mode plain --stun --cpu "$SERVER_CPU" --duration 600 2> "$log" & ;;
        c) rm -rf "$TMP/flock-data" && mkdir -p "$TMP/flock-data"
           "$FLOCKD" --cpus "$SERVER_CPU" --udp 127.0.0.1:0 --no-ws --data-dir "$TMP/flock-data" 2> "$log" & ;;
        d) port=$(free_udp_port)
           taskset -c "$SERVER_CPU" turnserver "${COTURN_FLAGS[@]}" --listening-port "$port" > "$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        if [ "$1" = d ]; then
            # Ready once its UDP socket is bound.
            if ss -Hlun "sport = :$port" | grep -q .; then SERVER_ADDR=127.0.0.1:$port; fi
        else
            SERVER_ADDR=$(grep -m1 -o 'ready udp=[0-9.:]*' "$log" | cut -d= -f2 || true)
        fi
        [ -n "$SERVER_ADDR" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $1 did not start:" >&2; cat "$log" >&2; exit 1
}

# Stops the server; for flockd, keeps the kernel_drops of its stop line ($1: what ran).
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    local drops
    drops=$(grep -o 'kernel_drops=[0-9]*' "$TMP/server.log" | tail -1 || true)
    [ -n "$drops" ] && echo "$1 $drops" >> "$OUT/flockd-kernel-drops.txt"
    return 0
}

# load DIR MODE ROUND SERVER [flags...]
load() {
    local dir=$1 mode=$2 round=$3 server=$4 secs=$DURATION; shift 4
    [ "$round" = warmup ] && secs=$WARMUP_DURATION
    # shellcheck disable=SC2086
    "$BENCH" "$mode" --target "$SERVER_ADDR" --cpu "$GEN_CPU" --duration "$secs" --warmup "$WARMUP" \
        --target-pid "$SERVER_PID" --label "$(label "$server")" --quiet \
        --json "$OUT/$dir/$server-$mode-$round.json" $EXTRA "$@" | sed "s/^/[$round $server] /"
}

for round in warmup $(seq "$ROUNDS"); do
    dir=rounds
    [ "$round" = warmup ] && dir=warmup
    for server in $SERVERS; do
        start_server "$server"
        load "$dir" stun "$round" "$server"
        if [ "$server" = c ]; then
            load "$dir" keepalive "$round" "$server" --appliances "$APPLIANCES"
        fi
        stop_server "$server-$round"
    done
done

# Latency at half the measured keep-alive peak: the kernel baseline and flockd at the same rate.
if [ "$HALF" = 1 ] && [[ " $SERVERS " == *" c "* ]]; then
    peak=$(python3 -c 'import json, statistics, sys
print(round(statistics.median(
    [p["answered_per_s"] for f in sys.argv[1:] for p in json.load(open(f))["phases"] if p["phase"] == "keepalive"]) / 2))' \
        "$OUT"/rounds/c-keepalive-*.json)
    for round in $(seq "$ROUNDS"); do
        if [[ " $SERVERS " == *" a "* ]]; then
            start_server a
            load half stun "half$round" a --rate "$peak"
            stop_server "a-half$round"
        fi
        start_server c
        load half keepalive "half$round" c --appliances "$APPLIANCES" --rate "$peak"
        stop_server "c-half$round"
    done
fi
stalls after

"$BENCH" chart --input "$OUT/rounds" "$OUT/half" --table "$OUT/table.md" \
    --baseline "echo-server mmsg" --baseline "echo-server plain" > /dev/null
"$BENCH" chart --input "$OUT/rounds" --output "$OUT/chart.svg" > /dev/null
echo
cat "$OUT/table.md"
echo
echo "Medians over $ROUNDS rounds (loss: worst round; kernel drops: sum over rounds, from /proc/net/udp)."
echo "flockd kernel_drops at stop: $(cut -d' ' -f2 "$OUT/flockd-kernel-drops.txt" 2>/dev/null | sort | uniq -c | xargs || echo -)"
echo "Machine pauses of a spinning thread (before, after):"
cat "$OUT/stalls-before.txt" "$OUT/stalls-after.txt"
echo "Results in $OUT: table.md chart.svg env.txt stalls-*.txt rounds/ warmup/ half/"
