#!/usr/bin/env bash
# Flood of record: 1 M junk datagrams and 1 M spoofed-name REGISTERs (plus bad signatures, new
# names past the table bound, thefts of held names and address changes from one IP) from 64
# source ports against a release flockd, while 3 real appliances (flock-appliance) keep alive
# every 300 ms. Prints flockd's RSS before/after (and the highest seen), the send rates, the
# answers, the server's counters and the appliances' keep-alive success during the flood.
# The bounded CI version is tests/tests/flood.rs (same generator: benches/src/bin/flock-flood.rs).
#
#   benches/flood.sh
#   JUNK=2000000 SPOOFED=2000000 RATE=600000 MAX_REG=5000 CORES=2 benches/flood.sh
#   SKIP_BUILD=1 benches/flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."

JUNK=${JUNK:-1000000}
SPOOFED=${SPOOFED:-1000000}
BADSIG=${BADSIG:-20000}
RATE=${RATE:-400000}          # datagrams/s, paced in bursts of 512
DEADLINE=${DEADLINE:-120}     # s, the flood stops there whatever is left
MAX_REG=${MAX_REG:-5000}      # [limits] max_registrations
CORES=${CORES:-2}
PORT=${PORT:-34791}
WS_PORT=${WS_PORT:-38091}
KEEPALIVE_MS=300

if [[ -z ${SKIP_BUILD:-} ]]; then
  cargo build --release -q -p flockd -p flock-appliance -p flock-benches --features flock-appliance/webrtc --bin flockd --bin flock-appliance --bin flock-flood
fi
BIN=target/release
TMP=$(mktemp -d /tmp/flock-flood.XXXXXX)
FLOCKD_PID= APPL_PID= SAMPLER_PID=
cleanup() {
  for p in $SAMPLER_PID $APPL_PID $FLOCKD_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/flockd.toml" <<EOF
[limits]
max_registrations = $MAX_REG

[timers]
keepalive_interval = "${KEEPALIVE_MS}ms"
EOF

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
metric() { # sum of a metric's samples whose line contains $2 (optional)
  curl -s "http://127.0.0.1:$WS_PORT/metrics" | awk -v m="$1" -v w="${2:-}" \
    'index($0, m) == 1 && (substr($0, length(m) + 1, 1) == "{" || substr($0, length(m) + 1, 1) == " ") && index($0, w) {s += $NF} END {printf "%d\n", s}'
}

"$BIN/flockd" --config "$TMP/flockd.toml" --udp "127.0.0.1:$PORT" --ws "127.0.0.1:$WS_PORT" --cores "$CORES" \
  --no-pin --log warn,flockd=info --data-dir "$TMP/data" 2>"$TMP/flockd.log" &
FLOCKD_PID=$!
for _ in $(seq 100); do grep -q "flockd ready" "$TMP/flockd.log" && break; sleep 0.1; done
grep -q "flockd ready" "$TMP/flockd.log" || { cat "$TMP/flockd.log"; echo "flockd did not start" >&2; exit 1; }

"$BIN/flock-appliance" --server "127.0.0.1:$PORT" --name flood-real --count 3 --key-dir "$TMP/keys" \
  --flock-key "@$TMP/data/flock.pub" --json >"$TMP/appliances.jsonl" 2>"$TMP/appliances.log" &
APPL_PID=$!
for _ in $(seq 100); do (( $(grep -c '"kept_alive"' "$TMP/appliances.jsonl" || true) >= 3 )) && break; sleep 0.1; done
(( $(grep -c '"registered"' "$TMP/appliances.jsonl" || true) == 3 )) || { echo "the 3 appliances did not register" >&2; exit 1; }

sleep 1.5 # per-core gauges are published once a second
RSS_BEFORE=$(rss_kib "$FLOCKD_PID")
TABLE_BEFORE=$(metric flock_server_registrations)
echo "flockd pid $FLOCKD_PID, $CORES cores, max_registrations $MAX_REG; table $TABLE_BEFORE; RSS before: $RSS_BEFORE KiB"

# RSS and table occupancy every 200 ms while the flood runs.
( while :; do echo "$(rss_kib "$FLOCKD_PID") $(metric flock_server_registrations)"; sleep 0.2; done ) >"$TMP/samples" &
SAMPLER_PID=$!

LINES_BEFORE=$(wc -l <"$TMP/appliances.jsonl")
"$BIN/flock-flood" --target "127.0.0.1:$PORT" --junk "$JUNK" --spoofed "$SPOOFED" --badsig "$BADSIG" --rate "$RATE" \
  --deadline "$DEADLINE" --max-registrations "$MAX_REG" --real flood-real-0,flood-real-1,flood-real-2 | tee "$TMP/flood.txt"
LINES_AFTER=$(wc -l <"$TMP/appliances.jsonl")
sleep 1.5
kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
RSS_AFTER=$(rss_kib "$FLOCKD_PID")
RSS_MAX=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$TMP/samples")
TABLE_MAX=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$TMP/samples")

START=$(awk '/^flood_start_unix_ms/ {print $2}' "$TMP/flood.txt")
END=$(awk '/^flood_end_unix_ms/ {print $2}' "$TMP/flood.txt")
SECS=$(awk -v s="$START" -v e="$END" 'BEGIN {printf "%.2f", (e - s) / 1000}')
DURING=$(sed -n "$((LINES_BEFORE + 1)),${LINES_AFTER}p" "$TMP/appliances.jsonl")
echo
echo "== flockd"
echo "RSS before $RSS_BEFORE KiB, highest during $RSS_MAX KiB, after $RSS_AFTER KiB (+$((RSS_AFTER - RSS_BEFORE)) KiB)"
echo "table: before $TABLE_BEFORE, highest $TABLE_MAX, after $(metric flock_server_registrations) (bound $MAX_REG)"
echo "malformed drops $(metric flock_server_drops_total 'reason="malformed"'), kernel drops $(metric flock_core_drops_total 'reason="kernel"')," \
  "nonces issued $(metric flock_server_nonces_issued_total), capacity refusals $(metric flock_server_registrations_refused_total 'reason="capacity"')," \
  "bad signatures $(metric flock_server_registrations_refused_total 'reason="bad_signature"'), name taken $(metric flock_server_registrations_refused_total 'reason="name_taken"')"
echo "checks started $(metric flock_server_checks_started_total), refused rate_limited $(metric flock_server_checks_refused_total 'reason="rate_limited"')," \
  "refused full $(metric flock_server_checks_refused_total 'reason="full"')"
echo
echo "== real appliances during the flood ($SECS s of flood, keep-alive every ${KEEPALIVE_MS} ms ±10 %)"
for n in 0 1 2; do
  k=$(grep -c "\"kept_alive\",\"name\":\"flood-real-$n\"" <<<"$DURING" || true)
  echo "flood-real-$n: $k keep-alives answered (~$(awk -v s="$SECS" -v i="$KEEPALIVE_MS" 'BEGIN {printf "%.0f", s * 1000 / i}') expected)"
done
BAD=$(grep -cE '"(gave_up|token_refused|refused|mapped_address_changed)"' <<<"$DURING" || true)
echo "gave_up / token_refused / refused / address changes: $BAD"
