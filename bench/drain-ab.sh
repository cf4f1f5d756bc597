#!/usr/bin/env bash
# Drain after an outage, builds of mxcont side by side: A B A B ...
# interleaved in one session, so that they see the same machine load.
# Each run starts a fresh node (empty spool) from its binary, loads COUNT
# messages of SIZE bytes with `mxbench outage` while the primary is down,
# then the outage's sink comes up and the drain is measured until every
# acknowledged message has arrived exactly once. Prints one line per run:
# drain msg/s, first delivery, and the node's CPU during the drain
# (utime+stime from /proc, sampled by mxbench) per message.
#
# Usage: bench/drain-ab.sh A_BIN B_BIN [C_BIN...]
# Env: SIZES ("4096 65536"), COUNTS ("20000 5000", one per size), ROUNDS (2),
#      POOL_A, POOL_B, ... (relay_pool_size of each build; default: the node's default),
#      SMTP_PORT (25601), HTTP_PORT (25602), RELAY_PORT (25603),
#      MXBENCH (mxbench next to A_BIN), WORK (a new /var/tmp dir)
# Loopback only. Every node started here is stopped on exit.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 A_BIN B_BIN [C_BIN...]" >&2; exit 2; }
BINS=("$@")
LABELS=(A B C D E F G H)
SIZES=(${SIZES:-4096 65536})
COUNTS=(${COUNTS:-20000 5000})
ROUNDS=${ROUNDS:-2}
SMTP_PORT=${SMTP_PORT:-25601}
HTTP_PORT=${HTTP_PORT:-25602}
RELAY_PORT=${RELAY_PORT:-25603}
MXB=${MXBENCH:-$(dirname "$1")/mxbench}
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-drain-ab.XXXXXX)}
export MXCONT_ADMIN_PASSWORD=drain-ab

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
for p in "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"; do
  port_free "$p" || { log "port $p is in use"; exit 1; }
done

PID=
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

conf() { # conf LABEL POOL: the node's configuration file
  cat > "$WORK/$1.yaml" <<EOF
data_dir: $WORK/data
smtp_addr: 127.0.0.1:$SMTP_PORT
http_addr: 127.0.0.1:$HTTP_PORT
probe_interval: 10s
max_connections_per_ip: 1000
log_level: info
${2:+relay_pool_size: $2}
domains:
  - name: example.test
    mode: relay
    relay_host: 127.0.0.1:$RELAY_PORT
    monitoring: false
EOF
}
for b in "${!BINS[@]}"; do
  pool=POOL_${LABELS[$b]}
  conf "${LABELS[$b]}" "${!pool:-}"
done

run() { # run LABEL BIN SIZE COUNT
  local label=$1 bin=$2 size=$3 count=$4 out i
  out=$WORK/$label-$size-$(date +%s%N).json
  rm -rf "$WORK/data"
  "$bin" serve --config "$WORK/$label.yaml" >> "$WORK/$label.log" 2>&1 &
  PID=$!
  for i in $(seq 100); do ss -Hltn "sport = :$HTTP_PORT" | grep -q . && break; sleep 0.1; done
  "$MXB" outage --addr "127.0.0.1:$SMTP_PORT" --api "http://127.0.0.1:$HTTP_PORT" --sink-addr "127.0.0.1:$RELAY_PORT" \
    --count "$count" --size "$size" --sessions 20 --per-conn 10 --pid "$PID" --quiet --json --out "$out" > /dev/null ||
    log "$label: outage run failed (see $out)"
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
  PID=
  jq -r --arg l "$label" --arg s "$size" '[$l, $s, .load.accepted, (.drain_msgs_per_s|floor),
      (.first_delivery_s*100|round/100), (.sink.mta_proc.cpu_s*1000/.load.accepted*1000|round/1000),
      (if .ok then "OK" else "FAIL" end)] | @tsv' "$out"
}

printf 'build\tsize\tmsgs\tdrain_msg/s\tfirst_s\tnode_cpu_ms/msg\tcheck\n'
for r in $(seq "$ROUNDS"); do
  for k in "${!SIZES[@]}"; do
    for b in "${!BINS[@]}"; do
      run "${LABELS[$b]}" "${BINS[$b]}" "${SIZES[$k]}" "${COUNTS[$k]}"
    done
  done
  log "round $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
log "results: $WORK"
