#!/usr/bin/env bash
# Side by side: mxcont and Postfix doing the continuity-queue job on this
# machine, with the same scenarios, in one run.
#
# For every scenario, each MTA is started fresh (empty queue) and
#   1. accepts MSGS messages for example.test while its primary
#      (127.0.0.1:$RELAY_PORT) is down: mxbench load (and Postfix's own
#      smtp-source for the 20-session 4 KiB cases), with the MTA's process
#      tree sampled for CPU time and peak RSS/PSS;
#   2. drains them once the primary comes back: mxbench sink plays the
#      primary, checks every acknowledged message arrived exactly once with
#      an intact body, and measures the time to the first delivery and the
#      drain rate. Postfix is left alone for FIRST_WAIT seconds in the first
#      scenario (its queue_run_delay is 300 s), then, like in every later
#      scenario, kicked with `postqueue -f` (labelled so in the table);
#      mxcont is never kicked.
# Then it prints the comparison table (ratios mxcont ÷ Postfix).
#
# Postfix runs as a private instance (own config and queue under $WORK) with
# the anchors' configuration (../shared/anchors/postfix/setup.sh); the
# system's Postfix and other tests are not touched. Loopback only. Every
# process started here is stopped on exit.
#
# Usage (as root): scripts/compare-postfix.sh
# Env: MSGS (3000 per scenario), SMTP_PORT (2525, used by one MTA at a time),
#      HTTP_PORT (8080, mxcont admin), RELAY_PORT (2626, the primary),
#      FIRST_WAIT (60 s), DRAIN_TIMEOUT (600 s), WORK (a new /var/tmp dir),
#      SCENARIOS ("name size sessions per_conn tool;..."), MTAS ("postfix mxcont")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

MSGS=${MSGS:-3000}
SMTP_PORT=${SMTP_PORT:-2525}
HTTP_PORT=${HTTP_PORT:-8080}
RELAY_PORT=${RELAY_PORT:-2626}
FIRST_WAIT=${FIRST_WAIT:-60}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
MTAS=${MTAS:-"postfix mxcont"}
# name | body bytes | sessions | messages per connection | load tool
SCENARIOS=${SCENARIOS:-"s20 4KiB 1/conn|4096|20|1|mxbench;\
s20 4KiB 10/conn|4096|20|10|mxbench;\
s100 4KiB 1/conn|4096|100|1|mxbench;\
s100 4KiB 10/conn|4096|100|10|mxbench;\
s20 64KiB 1/conn|65536|20|1|mxbench;\
s20 64KiB 10/conn|65536|20|10|mxbench;\
s100 64KiB 1/conn|65536|100|1|mxbench;\
s100 64KiB 10/conn|65536|100|10|mxbench;\
s20 4KiB 1/conn, smtp-source|4096|20|1|smtp-source;\
s20 4KiB 10/conn, smtp-source|4096|20|10|smtp-source"}

[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance needs it)"
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-compare.XXXXXX)}
RES=$WORK/results
mkdir -p "$RES" "$WORK/records"

CHILD=
cleanup() {
  local rc=$?
  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
  mx_stop
  pf_stop
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Postfix from Debian, if missing (as in the anchors' setup.sh) ------------
if ! command -v postfix >/dev/null || ! command -v smtp-source >/dev/null; then
  log "installing postfix"
  export DEBIAN_FRONTEND=noninteractive
  debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string anchor.localdomain
EOF
  apt-get update -q
  apt-get install -y -q postfix
fi
export PATH=$PATH:/usr/sbin

for p in "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"; do
  port_free "$p" || die "port $p is in use (set SMTP_PORT, HTTP_PORT or RELAY_PORT)"
done

log "building mxcont and mxbench into $WORK/bin"
(cd "$ROOT" && GOFLAGS=-buildvcs=false go build -o "$WORK/bin/" ./cmd/mxcont ./cmd/mxbench)
MXB=$WORK/bin/mxbench

machine_info "$WORK" | tee "$WORK/machine.txt"
pf_setup "$WORK/postfix" "$SMTP_PORT" "$RELAY_PORT"
mx_setup "$WORK/mxcont" "$WORK/bin/mxcont" "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"

# run_bg OUT CMD...: run CMD in the background, so that the trap can stop
# it, wait for it, then show its output.
run_bg() {
  local out=$1 rc=0
  shift
  "$@" > "$out" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  sed 's/^/    /' "$out"
  return $rc
}

start_mta() {
  case $1 in
    postfix) pf_start; MTA_PID=$(pf_pid) ;;
    mxcont) mx_start; MTA_PID=$MX_PID ;;
  esac
}
stop_mta() {
  case $1 in
    postfix) pf_stop ;;
    mxcont) mx_stop ;;
  esac
  wait_port_free "$SMTP_PORT" 30
}

first_postfix=1
run_case() {
  local mta=$1 name=$2 size=$3 sessions=$4 perconn=$5 tool=$6
  local label="$mta/$name" base rec t0
  base=$RES/$(echo "$mta-$name" | tr -c 'A-Za-z0-9\n' '_')
  rec=$WORK/records/$(basename "$base").jsonl
  t0=$(now)
  port_free "$RELAY_PORT" || die "something listens on the primary's port $RELAY_PORT"
  start_mta "$mta"
  log "$label: acceptance, $MSGS messages, primary down (MTA pid $MTA_PID)"
  if [ "$tool" = mxbench ]; then
    run_bg "$base-accept.txt" "$MXB" load --addr "127.0.0.1:$SMTP_PORT" --sessions "$sessions" --per-conn "$perconn" \
      --size "$size" --count "$MSGS" --pid "$MTA_PID" --record "$rec" --label "$label" --out "$base-accept.json" --quiet ||
      log "$label: load FAILED"
  else
    local cmd
    if [ "$perconn" = 1 ]; then
      cmd="smtp-source -4 -N -s $sessions -l $size -m $MSGS -f sender@source.test -t user@example.test 127.0.0.1:$SMTP_PORT"
    else # smtp-source has no "N per connection": runs of -d -m N, $sessions at a time (as the anchors)
      cmd="seq $((MSGS / perconn)) | xargs -P $sessions -I{} smtp-source -4 -N -d -m $perconn -l $size -f sender@source.test -t user@example.test 127.0.0.1:$SMTP_PORT"
    fi
    run_bg "$base-accept.txt" "$MXB" run --count "$MSGS" --pid "$MTA_PID" --label "$label" --out "$base-accept.json" \
      -- sh -c "$cmd" || log "$label: $tool FAILED"
  fi
  if [ "$mta" = postfix ]; then
    # Let qmgr try each message once and defer it, as it would in an outage.
    local i
    for i in $(seq 600); do [ "$(pf_inflight)" -eq 0 ] && break; sleep 0.2; done
    log "$label: $(pf_queued) messages in the Postfix queue"
  fi

  local sargs=(--addr "127.0.0.1:$RELAY_PORT" --pid "$MTA_PID" --timeout "${DRAIN_TIMEOUT}s" --settle 2s
    --label "$label" --out "$base-drain.json" --quiet)
  if [ "$tool" = mxbench ]; then sargs+=(--check "$rec" --until-done); else sargs+=(--expect "$MSGS"); fi
  if [ "$mta" = postfix ]; then
    local wait=0.05
    if [ "$first_postfix" = 1 ]; then wait=$FIRST_WAIT; first_postfix=0; fi
    sargs+=(--flush-after "${wait}s" --flush-cmd "$(pf_flush_cmd)")
    log "$label: primary up; postqueue -f after ${wait}s if nothing arrives"
  else
    log "$label: primary up; no flush"
  fi
  run_bg "$base-drain.txt" "$MXB" sink "${sargs[@]}" || log "$label: drain check FAILED"
  FILES+=("$base-accept.json" "$base-drain.json")
  stop_mta "$mta"
  log "$label: done in $(fsub "$(now)" "$t0") s"
}

T0=$(now)
FILES=()
IFS=';' read -r -a SC <<< "$SCENARIOS"
for sc in "${SC[@]}"; do
  IFS='|' read -r name size sessions perconn tool <<< "$sc"
  name=$(echo "$name" | sed 's/^ *//')
  for mta in $MTAS; do   # interleaved, so each ratio compares runs minutes apart at most
    run_case "$mta" "$name" "$size" "$sessions" "$perconn" "$tool"
  done
done
log "all scenarios done in $(fsub "$(now)" "$T0") s"

{
  echo "## Side by side: $MSGS messages per scenario"
  echo
  sed 's/^/    /' "$WORK/machine.txt"
  echo
  "$MXB" report --mtas postfix,mxcont "${FILES[@]}"
} | tee "$WORK/table.md"
log "results: $WORK (table.md, results/*.json, records/, postfix/maillog, mxcont/mxcont.log)"
