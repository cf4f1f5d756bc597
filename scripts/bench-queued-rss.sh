#!/usr/bin/env bash
# Memory of an mxcont node holding a large backlog: a fresh node takes N
# messages (default 1,000,000 x 4 KiB) with its primary down, then its RSS
# is read while it holds them, and again after a restart (the index is
# rebuilt from the spool). The queue size is checked through the admin API.
#
# Usage (as root): scripts/bench-queued-rss.sh
# Env: N (1000000), SIZE (4096), SESSIONS (50), SMTP_PORT (2525),
#      HTTP_PORT (8080), RELAY_PORT (2626), WORK (a new /var/tmp dir),
#      KEEP=1 to keep the spool afterwards (it is several GB)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

N=${N:-1000000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-50}
SMTP_PORT=${SMTP_PORT:-2525}
HTTP_PORT=${HTTP_PORT:-8080}
RELAY_PORT=${RELAY_PORT:-2626}
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-rss.XXXXXX)}

CHILD=
cleanup() {
  local rc=$?
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null || true
  mx_stop
  [ "${KEEP:-0}" = 1 ] || rm -rf "${MX_DIR:?}/data"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"; do
  port_free "$p" || die "port $p is in use (set SMTP_PORT, HTTP_PORT or RELAY_PORT)"
done
(cd "$ROOT" && GOFLAGS=-buildvcs=false go build -o "$WORK/bin/" ./cmd/mxcont ./cmd/mxbench)
machine_info "$WORK" | tee "$WORK/machine.txt"
mx_setup "$WORK/mxcont" "$WORK/bin/mxcont" "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"
export MXCONT_ADMIN_PASSWORD=bench-rss
mx_start

rss() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
queued() {
  local jar=$WORK/cookies
  curl -fsS -c "$jar" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$MXCONT_ADMIN_PASSWORD\"}" "http://127.0.0.1:$HTTP_PORT/api/v1/login" >/dev/null
  curl -fsS -b "$jar" "http://127.0.0.1:$HTTP_PORT/api/v1/domains/example.test" | jq -r .status.queued_messages
}

log "loading $N x $SIZE B into node $MX_PID (primary down)"
"$WORK/bin/mxbench" load --addr "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" --per-conn 0 --size "$SIZE" \
  --count "$N" --pid "$MX_PID" --label "mxcont/queued-$N" --out "$WORK/load.json" &
CHILD=$!
wait "$CHILD"
CHILD=
sleep 10
{
  echo "messages offered / accepted: $(jq -r '"\(.offered) / \(.accepted)"' "$WORK/load.json") at $(jq -r '.msgs_per_s|floor' "$WORK/load.json") msg/s"
  echo "queued (API): $(queued)"
  echo "spool on disk: $(du -sh "$MX_DIR/data/spool" | cut -f1)"
  echo "RSS while loading, peak (sampled): $(jq -r '.mta_proc.peak_rss_mib|floor' "$WORK/load.json") MiB; VmHWM $(hwm "$MX_PID") MiB"
  echo "RSS holding the backlog, 10 s after the load: $(rss "$MX_PID") MiB"
} | tee "$WORK/rss.txt"

log "restarting the node (index rebuilt from the spool)"
mx_stop
t0=$(now)
MXCONT_ADMIN_PASSWORD=$MXCONT_ADMIN_PASSWORD "$WORK/bin/mxcont" serve --config "$MX_DIR/mxcont.yaml" >> "$MX_DIR/mxcont.log" 2>&1 &
MX_PID=$!
wait_port "$SMTP_PORT" 600
ready=$(fsub "$(now)" "$t0")
sleep 10
{
  echo "restart: SMTP listening after $ready s"
  echo "queued after restart (API): $(queued)"
  echo "RSS after restart: $(rss "$MX_PID") MiB (VmHWM $(hwm "$MX_PID") MiB)"
} | tee -a "$WORK/rss.txt"
log "results: $WORK/rss.txt"
