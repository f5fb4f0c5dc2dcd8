#!/usr/bin/env bash
# Side-by-side packet rates on loopback, one run:
#   (a) flock-bench echo-server --mode mmsg  --stun   (recvmmsg/sendmmsg, the kernel baseline)
#   (b) flock-bench echo-server --mode plain --stun   (recvfrom/sendto per datagram)
#   (c) flockd                                          (stun, and keepalive with $APPLIANCES appliances)
# Server pinned to CPU $SERVER_CPU, generator to CPU $GEN_CPU. One warm-up round (discarded), then
# $ROUNDS rounds, each running a, b, c in turn; every server is started fresh for its slot.
# Prints medians per server/mode and the ratios to (a) and (b); JSON per run lands in $OUT.
#
#   benches/quick-compare.sh                      # defaults: 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 benches/quick-compare.sh
#   EXTRA="--window 16" benches/quick-compare.sh  # extra flags for every flock-bench load run
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
APPLIANCES=${APPLIANCES:-10000}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
EXTRA=${EXTRA:-}
OUT=${OUT:-target/quick-compare}

cargo build --release --workspace --bins
BENCH=target/release/flock-bench
FLOCKD=target/release/flockd
rm -rf "$OUT" && mkdir -p "$OUT"
TMP=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# Starts server $1 (a|b|c) in the background; sets SERVER_PID and SERVER_ADDR from its ready line.
start_server() {
    local log="$TMP/server.log"
    : > "$log"
    case "$1" in
        a) "$BENCH" echo-server --addr 127.0.0.1:0 --mode mmsg --stun --cpu "$SERVER_CPU" --duration 600 2> "$log" & ;;
        b) "$BENCH" echo-server --addr 127.0.0.1:0 --mode plain --stun --cpu "$SERVER_CPU" --duration 600 2> "$log" & ;;
        c) rm -rf "$TMP/flock-data" && mkdir -p "$TMP/flock-data"
           "$FLOCKD" --cpus "$SERVER_CPU" --udp 127.0.0.1:0 --data-dir "$TMP/flock-data" 2> "$log" & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        SERVER_ADDR=$(grep -m1 -o 'ready udp=[0-9.:]*' "$log" | cut -d= -f2 || true)
        [ -n "$SERVER_ADDR" ] && return 0
        sleep 0.1
    done
    echo "server $1 did not start:" >&2; cat "$log" >&2; exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# load MODE ROUND SERVER [flags...]
load() {
    local mode=$1 round=$2 server=$3; shift 3
    # shellcheck disable=SC2086
    "$BENCH" "$mode" --target "$SERVER_ADDR" --cpu "$GEN_CPU" --duration "$DURATION" --warmup "$WARMUP" \
        --target-pid "$SERVER_PID" --quiet --json "$OUT/$server-$mode-$round.json" $EXTRA "$@" | sed "s/^/[$round] /"
}

for round in warmup $(seq "$ROUNDS"); do
    for server in a b c; do
        start_server "$server"
        load stun "$round" "$server"
        if [ "$server" = c ]; then
            load keepalive "$round" "$server" --appliances "$APPLIANCES"
        fi
        stop_server
    done
done

python3 - "$OUT" "$SERVER_CPU" "$GEN_CPU" <<'EOF'
import json, glob, os, statistics, sys
out, scpu, gcpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = {"a": "echo-server mmsg", "b": "echo-server plain", "c": "flockd"}
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    server, mode, rnd = os.path.basename(f)[:-5].split("-")
    if rnd == "warmup":
        continue
    phase = [p for p in json.load(open(f))["phases"] if p["phase"] == mode][0]
    runs.setdefault((server, mode), []).append(phase)
med = lambda ps, k: statistics.median(p[k] for p in ps)
base = {s: med(runs[(s, "stun")], "answered_per_s") for s in "ab" if (s, "stun") in runs}
print()
print(f"{'server':<18} {'mode':<10} {'answered/s':>11} {'vs a':>6} {'vs b':>6} {'loss%':>6} {'p99 µs':>8} "
      f"{'gen CPU':>8} {'srv CPU':>8} {'cpu'+str(gcpu):>6} {'cpu'+str(scpu):>6} {'srv rxq':>8}  rounds (answered/s)")
for (s, mode), ps in sorted(runs.items()):
    rate = med(ps, "answered_per_s")
    ratio = lambda b: f"{rate / base[b]:.2f}" if b in base else "-"
    busy = lambda c: statistics.median(p["cpu_busy_pct"][c] for p in ps)
    tgt = statistics.median(p["target_cpu_pct"] or 0 for p in ps)
    print(f"{names[s]:<18} {mode:<10} {rate:>11.0f} {ratio('a'):>6} {ratio('b'):>6} "
          f"{max(p['loss_pct'] for p in ps):>6.2f} {statistics.median(p['latency']['p99_us'] for p in ps):>8.0f} "
          f"{med(ps, 'gen_cpu_pct'):>7.0f}% {tgt:>7.0f}% {busy(gcpu):>5.0f}% {busy(scpu):>5.0f}% "
          f"{statistics.median(p['target_queue_bytes_mean'] or 0 for p in ps) / 1024:>5.0f}KiB  "
          + " ".join(f"{p['answered_per_s']:.0f}" for p in ps))
print("\nloss% is the worst round; the rest are medians. gen/srv CPU: % of one CPU (getrusage, /proc/PID/stat);")
print(f"cpu{gcpu}/cpu{scpu}: busy % from /proc/stat (softirq included). srv rxq: bytes (truesize) waiting in the")
print("server's socket receive queue, mean of 1 s samples: well above 0 means the server, not the generator, is the limit.")
EOF
