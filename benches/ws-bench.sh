#!/usr/bin/env bash
# Websocket side of flockd, on loopback: resident memory per idle websocket with 10 k sockets
# (flockd's 4 KiB read buffer beside tungstenite's 128 KiB default, same run), then log-ins per
# second end to end (browsers over websockets → flockd → SDK appliances over UDP and back).
# flockd runs on CPU 1, the load on CPU 0. Usage: benches/ws-bench.sh [COUNT] [SECONDS]
# (`flock-bench ws-idle` and `flock-bench login`; `flock-ws-bench` is their old alias.)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
secs=${2:-10}
cargo build --release -q --bin flockd --bin flock-bench
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
(( $(ulimit -n) >= count + 1000 )) || ulimit -n $((count + 1000))

start() { # name port read_buffer
  printf '[ws]\nlisten = "127.0.0.1:%s"\nread_buffer = %s\n' "$2" "$3" > "$work/$1.toml"
  $bin/flockd --config "$work/$1.toml" --udp 127.0.0.1:0 --cpus 1 --data-dir "$work/$1" --log warn 2>"$work/$1.log" &
  pid=$!
  for _ in $(seq 50); do curl -fs "127.0.0.1:$2/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "flockd did not start:"; cat "$work/$1.log"; exit 1
}

for rb in 4096 131072; do
  echo "== idle: $count websockets, read_buffer = $rb"
  start "idle$rb" 18190 "$rb"
  taskset -c 0 $bin/flock-bench ws-idle --target 127.0.0.1:18190 --pid "$pid" --count "$count" | tail -n 2
  kill "$pid"; wait "$pid" || true
done

echo "== log-ins for ${secs}s: 32 browsers, 200 appliances"
printf '[ws]\nlisten = "127.0.0.1:18191"\n' > "$work/login.toml"
$bin/flockd --config "$work/login.toml" --udp 127.0.0.1:13479 --cpus 1 --data-dir "$work/login" --log warn 2>"$work/login.log" &
pid=$!
sleep 1
taskset -c 0 $bin/flock-bench login --target 127.0.0.1:18191 --udp 127.0.0.1:13479 --flock-key-dir "$work/login" \
  --appliances 200 --concurrency 32 --warmup 1 --duration "$secs" --cpu 0 --target-pid "$pid" --json target/ws-bench-login.json
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat")
echo "flockd CPU time over the whole run (all threads, registrations and warm-up included): ${cpu}s"
