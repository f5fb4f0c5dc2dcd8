#!/usr/bin/env bash
# Websocket side of flockd, on loopback: resident memory per idle websocket with 10 k sockets
# (flockd's 4 KiB read buffer beside tungstenite's 128 KiB default, then over wss, same run),
# log-ins per second end to end over ws and over wss (browsers → flockd → SDK appliances over
# UDP and back), and TLS handshakes per second (full and resumed). flockd runs on CPU 1, the
# load on CPU 0. Usage: benches/ws-bench.sh [COUNT] [SECONDS]
# (`flock-bench ws-idle`, `login` and `tls-handshakes`; `flock-ws-bench` is an old alias.)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
secs=${2:-10}
cargo build --release -q --bin flockd --bin flock-bench
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
(( $(ulimit -n) >= count + 1000 )) || ulimit -n $((count + 1000))

# A self-signed certificate for localhost (P-256), trusted by the load generator.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tls_section="[ws.tls]\ncert = \"$work/cert.pem\"\nkey = \"$work/key.pem\"\n"

start() { # name port read_buffer tls(0|1) [udp]
  printf '[ws]\nlisten = "127.0.0.1:%s"\nread_buffer = %s\n' "$2" "$3" > "$work/$1.toml"
  if [ "$4" = 1 ]; then printf "$tls_section" >> "$work/$1.toml"; fi
  $bin/flockd --config "$work/$1.toml" --udp "${5:-127.0.0.1:0}" --cpus 1 --data-dir "$work/$1" --log warn 2>"$work/$1.log" &
  pid=$!
  for _ in $(seq 50); do
    curl -fsk "$([ "$4" = 1 ] && echo https || echo http)://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "flockd did not start:"; cat "$work/$1.log"; exit 1
}
tls_flag() { [ "$1" = 1 ] && echo "--tls-ca $work/cert.pem" || true; }

for case in "4096 0 ws" "131072 0 ws" "4096 1 wss"; do
  set -- $case
  echo "== idle: $count websockets ($3), read_buffer = $1"
  start "idle$1$2" 18190 "$1" "$2"
  taskset -c 0 $bin/flock-bench ws-idle --target 127.0.0.1:18190 --pid "$pid" --count "$count" $(tls_flag "$2") | tail -n 2
  kill "$pid"; wait "$pid" || true
done

for tls in 0 1; do
  scheme=$([ "$tls" = 1 ] && echo wss || echo ws)
  echo "== log-ins over $scheme for ${secs}s: 32 browsers, 200 appliances"
  start "login$tls" 18191 4096 "$tls" 127.0.0.1:13479
  taskset -c 0 $bin/flock-bench login --target 127.0.0.1:18191 --udp 127.0.0.1:13479 --flock-key-dir "$work/login$tls" \
    --appliances 200 --concurrency 32 --warmup 1 --duration "$secs" --cpu 0 --target-pid "$pid" \
    --json "target/ws-bench-login-$scheme.json" $(tls_flag "$tls")
  cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat")
  echo "flockd CPU time over the whole run (all threads, registrations and warm-up included): ${cpu}s"
  kill "$pid"; wait "$pid" || true
done

echo "== TLS handshakes for ${secs}s (8 at once)"
start handshakes 18192 4096 1
for resume in "" --resume; do
  taskset -c 0 $bin/flock-bench tls-handshakes --target 127.0.0.1:18192 --target-pid "$pid" \
    --tls-ca "$work/cert.pem" --duration "$secs" --cpu 0 $resume | grep "^tls handshakes"
done
