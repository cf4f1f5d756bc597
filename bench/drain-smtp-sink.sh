#!/usr/bin/env bash
# The issue's drain measurement, against Postfix's smtp-sink as the relay
# host (as in ../shared/anchors): a fresh node accepts COUNT messages of
# SIZE bytes with its primary down (mxbench load), then smtp-sink comes up
# on the primary's port and the clock runs until the admin API reports the
# queue empty. Builds are run A B A B ... interleaved, so that they share
# the machine's load. Prints, per run: drain msg/s (messages / (empty -
# first delivery)), the time from the sink coming up to the first delivery
# and to the empty queue (API polled every 50 ms), and the node's CPU time
# (utime+stime from /proc/PID/stat) over the drain per message, and
# smtp-sink's.
#
# Usage: bench/drain-smtp-sink.sh BIN [BIN...]
# Env: SIZES ("4096 65536"), COUNTS ("20000 5000"), ROUNDS (2), POOL (the
#      node's relay_pool_size; default: the node's default), SMTP_PORT
#      (25611), HTTP_PORT (25612), RELAY_PORT (25613), MXBENCH (mxbench next
#      to the first BIN), WORK (a new /var/tmp dir)
# Loopback only; every process started here is stopped on exit.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
BINS=("$@")
SIZES=(${SIZES:-4096 65536})
COUNTS=(${COUNTS:-20000 5000})
ROUNDS=${ROUNDS:-2}
SMTP_PORT=${SMTP_PORT:-25611}
HTTP_PORT=${HTTP_PORT:-25612}
RELAY_PORT=${RELAY_PORT:-25613}
MXB=${MXBENCH:-$(dirname "$1")/mxbench}
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-drain-sink.XXXXXX)}
PASS=drain-smtp-sink
export MXCONT_ADMIN_PASSWORD=$PASS PATH=$PATH:/usr/sbin
command -v smtp-sink >/dev/null || { echo "smtp-sink (package postfix) is not installed" >&2; exit 1; }

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
for p in "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"; do
  port_free "$p" || { log "port $p is in use"; exit 1; }
done

PID= SINK=
cleanup() {
  [ -n "$SINK" ] && { kill -TERM "$SINK" 2>/dev/null || true; wait "$SINK" 2>/dev/null || true; }
  [ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$WORK/mxcont.yaml" <<EOF
data_dir: $WORK/data
smtp_addr: 127.0.0.1:$SMTP_PORT
http_addr: 127.0.0.1:$HTTP_PORT
probe_interval: 10s
max_connections_per_ip: 1000
log_level: info
${POOL:+relay_pool_size: $POOL}
domains:
  - name: example.test
    mode: relay
    relay_host: 127.0.0.1:$RELAY_PORT
    monitoring: false
EOF

now() { date +%s.%N; }
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime+stime, clock ticks
TCK=$(getconf CLK_TCK)
queued() { curl -fsS -b "$WORK/jar" "http://127.0.0.1:$HTTP_PORT/api/v1/domains/example.test" | jq -r .status.queued_messages; }

run() { # run LABEL BIN SIZE COUNT
  local label=$1 bin=$2 size=$3 count=$4 i n t0 t1 tfirst c0 c1 q s1
  rm -rf "$WORK/data"
  "$bin" serve --config "$WORK/mxcont.yaml" >> "$WORK/$label.log" 2>&1 &
  PID=$!
  for i in $(seq 100); do ss -Hltn "sport = :$HTTP_PORT" | grep -q . && break; sleep 0.1; done
  curl -fsS -c "$WORK/jar" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PASS\"}" "http://127.0.0.1:$HTTP_PORT/api/v1/login" > /dev/null
  "$MXB" load --addr "127.0.0.1:$SMTP_PORT" --sessions 20 --per-conn 10 --size "$size" --count "$count" \
    --quiet --json > "$WORK/load-$label-$size.json"
  n=$(jq -r .accepted "$WORK/load-$label-$size.json")
  c0=$(cpu "$PID")
  t0=$(now)
  smtp-sink -4 -u nobody "127.0.0.1:$RELAY_PORT" 1000 &
  SINK=$!
  tfirst=
  while :; do
    q=$(queued)
    [ -z "$tfirst" ] && [ "$q" -lt "$n" ] && tfirst=$(now)
    [ "$q" -eq 0 ] && break
    if awk -v a="$(now)" -v b="$t0" 'BEGIN { exit !(a - b > 600) }'; then log "$label: drain timed out ($q left)"; break; fi
    sleep 0.05
  done
  t1=$(now)
  c1=$(cpu "$PID")
  s1=$(cpu "$SINK")
  kill -TERM "$SINK"; wait "$SINK" 2>/dev/null || true
  SINK=
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
  PID=
  awk -v l="$label" -v s="$size" -v n="$n" -v t0="$t0" -v tf="$tfirst" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v s1="$s1" -v hz="$TCK" \
    'BEGIN { printf "%s\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.3f\t%.3f\n", l, s, n, n / (t1 - tf), tf - t0, t1 - t0, (c1 - c0) / hz * 1000 / n, s1 / hz * 1000 / n }'
}

printf 'build\tsize\tmsgs\tdrain_msg/s\tfirst_s\tempty_s\tnode_cpu_ms/msg\tsink_cpu_ms/msg\n'
for r in $(seq "$ROUNDS"); do
  for k in "${!SIZES[@]}"; do
    for b in "${!BINS[@]}"; do
      run "$(printf "\\x$(printf %x $((65 + b)))")" "${BINS[$b]}" "${SIZES[$k]}" "${COUNTS[$k]}"
    done
  done
  log "round $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
log "results: $WORK"
