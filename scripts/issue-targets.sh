#!/usr/bin/env bash
# The performance targets of two issues, measured in one run, interleaved,
# with exactly the issues' tools (Postfix's smtp-source and smtp-sink):
#
#   Issue 3, acceptance: smtp-source -s 20 -m MSGS -l 4096, one message per
#     connection, and 10 messages per connection (runs of smtp-source -d -m 10,
#     20 at a time, as the anchors do it), into each MTA with its primary down
#     so the mail is queued. Rate = MSGS / wall time of the load command.
#     Target: mxcont >= 10x Postfix.
#   Issue 4, drain: DRAIN_MSGS queued 4 KiB messages (primary down), then
#     smtp-sink comes up as the relay host; time from the sink coming up to
#     the queue being empty. Rate = DRAIN_MSGS / that time. Targets: mxcont
#     >= 10x Postfix's drain rate, and mxcont's first delivery within one
#     probe interval. Postfix is kicked with `postqueue -f` as soon as the
#     sink is up (left alone it waits up to queue_run_delay = 300 s).
#
# MTAs, in this order within every scenario of every round:
#   null     Postfix's smtp-sink, which stores nothing, in the MTA's place. It
#            is the ceiling that any MTA could reach with this load tool on
#            this machine: if null is only a few times faster than Postfix, a
#            10x target cannot be shown with this tool here, whatever the MTA.
#            In the drain part, null is smtp-source sending straight into
#            smtp-sink: how fast the sink takes mail from the fastest client.
#   postfix  a private Postfix instance (scripts/bench-lib.sh: own config and
#            queue under $WORK, the anchors' settings), started fresh.
#   mxcont   mxcont, started fresh (empty data dir).
#
# Per run it records the wall time, the MTA's CPU time, the load tool's CPU
# time (accept; /usr/bin/time, children included) or smtp-sink's (drain), and
# checks the result: the load tool's exit status, and for postfix and mxcont
# the number of messages really queued (Postfix: files in its queue dirs once
# every message was tried once; mxcont: the admin API's queued_messages).
#
# Usage (as root): scripts/issue-targets.sh
# Env: MSGS (20000, acceptance messages per run), DRAIN_MSGS (20000),
#      ROUNDS (2), MTAS ("null postfix mxcont"), PARTS ("accept drain"),
#      SMTP_PORT (2661, one MTA at a time), HTTP_PORT (2662, mxcont admin),
#      RELAY_PORT (2663, the primary / relay host), MXCONT_BIN (default: built
#      from this tree into $WORK/bin), MXCONT_ADMIN_PASSWORD (compare-postfix),
#      SETTLE_TIMEOUT (300 s, for Postfix to try every message once),
#      DRAIN_TIMEOUT (600 s), WORK (a new /var/tmp/mxcont-targets.* dir)
# Output: machine info and one markdown table per target on stdout, also in
# $WORK/table.md; raw rows in $WORK/results.tsv. Loopback (127.0.0.1) only;
# every process started here is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
export PATH=$PATH:/usr/sbin

MSGS=${MSGS:-20000}
DRAIN_MSGS=${DRAIN_MSGS:-20000}
ROUNDS=${ROUNDS:-2}
MTAS=${MTAS:-"null postfix mxcont"}
PARTS=${PARTS:-"accept drain"}
SMTP_PORT=${SMTP_PORT:-2661}
HTTP_PORT=${HTTP_PORT:-2662}
RELAY_PORT=${RELAY_PORT:-2663}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-300}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
export MXCONT_ADMIN_PASSWORD=${MXCONT_ADMIN_PASSWORD:-compare-postfix}
FROM=sender@source.test RCPT=user@example.test

[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance and smtp-sink -u postfix need it)"
for t in smtp-source smtp-sink postfix postqueue jq curl /usr/bin/time; do
  command -v "$t" >/dev/null || die "$t is not installed"
done
[ $((MSGS % 10)) = 0 ] || die "MSGS must be a multiple of 10 (10 messages per connection)"
for p in "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"; do
  port_free "$p" || die "port $p is in use (set SMTP_PORT, HTTP_PORT or RELAY_PORT)"
done
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-targets.XXXXXX)}
mkdir -p "$WORK/runs"
chmod 755 "$WORK" # mktemp makes it 0700; Postfix's daemons (user postfix) must get through it
TSV=$WORK/results.tsv
HZ=$(getconf CLK_TCK)

LOAD='' SINK=''
cleanup() {
  local rc=$?
  [ "$rc" = 0 ] || log "stopping early (exit status $rc); partial results in $WORK"
  if [ -n "$LOAD" ]; then # its own process group (setsid): time, sh, xargs, smtp-source
    kill -TERM -- "-$LOAD" 2>/dev/null || kill -TERM "$LOAD" 2>/dev/null || true
    wait "$LOAD" 2>/dev/null || true
  fi
  stop_sink
  mx_stop
  pf_stop
  exit $rc
}
stop_sink() {
  [ -n "$SINK" ] || return 0
  kill -TERM "$SINK" 2>/dev/null || true
  wait "$SINK" 2>/dev/null || true
  SINK=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${MXCONT_BIN:-}" ]; then
  MXB=$MXCONT_BIN
else
  log "building mxcont into $WORK/bin"
  (cd "$ROOT" && GOFLAGS=-buildvcs=false go build -o "$WORK/bin/" ./cmd/mxcont)
  MXB=$WORK/bin/mxcont
fi

machine_info "$WORK" > "$WORK/machine.txt"
echo "mxcont: $MXB" >> "$WORK/machine.txt"
cat "$WORK/machine.txt"
pf_setup "$WORK/postfix" "$SMTP_PORT" "$RELAY_PORT" >/dev/null
mx_setup "$WORK/mxcont" "$MXB" "$SMTP_PORT" "$HTTP_PORT" "$RELAY_PORT"
PROBE=$(awk '$1 == "probe_interval:" { print $2 }' "$WORK/mxcont/mxcont.yaml")

# tree_cpu PID: CPU clock ticks of PID and all its live descendants, each
# utime+stime+cutime+cstime (/proc/PID/stat fields 14-17). A child that
# exited and was reaped is in its parent's cutime/cstime, so the difference
# of two samples is the tree's CPU time in between, short-lived Postfix
# smtpd/cleanup/smtp processes included, without sampling all the time.
# Approximate: a child that exits between the reads of its own stat and its
# parent's is missed or counted twice, and one that is a zombie not yet
# reaped by the master still counts as live (same total). Postfix forks all
# its daemons from the master, so the master's tree is the whole of Postfix;
# mxcont and smtp-sink are single processes (threads included in 14,15).
tree_cpu() {
  # A process can exit between the glob and the read (Postfix's daemons
  # come and go): cat then fails, which must not end the run (pipefail).
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; s = $0; sub(/^.*\) /, "", s); n = split(s, f, " ")
      if (n < 15) next
      ppid[pid] = f[2]; cpu[pid] = f[12] + f[13] + f[14] + f[15] }
    END {
      tree[root] = 1
      for (more = 1; more; ) {
        more = 0
        for (p in ppid) if (!(p in tree) && (ppid[p] in tree)) { tree[p] = 1; more = 1 }
      }
      for (p in tree) t += cpu[p]
      print t + 0 }'
}
# ticks_ms_per T0 T1 N: CPU ms per message from two tree_cpu samples.
ticks_ms_per() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) * 1000 / hz / n }'; }
older_than() { awk -v a="$(now)" -v b="$1" -v s="$2" 'BEGIN { exit !(a - b > s) }'; }

start_sink() { # start_sink PORT LOG
  smtp-sink -u postfix -4 "127.0.0.1:$1" 1000 > "$2" 2>&1 &
  SINK=$!
}

# ---- mxcont admin API ------------------------------------------------------------
MX_JAR=$WORK/mxcont/jar
mx_login() {
  local _
  wait_port "$HTTP_PORT" 30
  for _ in $(seq 50); do
    curl -fsS -c "$MX_JAR" -H 'Content-Type: application/json' \
      -d "{\"username\":\"admin\",\"password\":\"$MXCONT_ADMIN_PASSWORD\"}" \
      "http://127.0.0.1:$HTTP_PORT/api/v1/login" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "mxcont admin login failed (see $WORK/mxcont/mxcont.log)"
}
mx_queued() { # prints -1 if the API does not answer
  curl -fsS -b "$MX_JAR" "http://127.0.0.1:$HTTP_PORT/api/v1/domains/example.test" 2>/dev/null |
    jq -r '.status.queued_messages // -1' 2>/dev/null || echo -1
}

# ---- MTAs --------------------------------------------------------------------------
# start_mta MTA: on $SMTP_PORT, primary down; sets MTA_PID.
start_mta() {
  port_free "$RELAY_PORT" || die "something listens on the primary's port $RELAY_PORT"
  case $1 in
    null) start_sink "$SMTP_PORT" "$WORK/runs/null-sink.log"; MTA_PID=$SINK; wait_port "$SMTP_PORT" 10 ;;
    postfix) pf_start; MTA_PID=$(pf_pid) ;;
    mxcont) mx_start; MTA_PID=$MX_PID; mx_login ;;
    *) die "unknown MTA $1" ;;
  esac
}
stop_mta() {
  case $1 in
    null) stop_sink ;;
    postfix) pf_stop ;;
    mxcont) mx_stop ;;
  esac
  wait_port_free "$SMTP_PORT" 30
  # The next run must not pay for this one's dirty pages (Postfix leaves
  # 20,000 queue files behind): write them back now, and let stragglers
  # (Postfix's exiting daemons) go.
  sync
  sleep 2
}
# queued MTA: messages the MTA holds now ("-" for null, which stores nothing).
queued() {
  case $1 in
    null) echo - ;;
    postfix) pf_queued ;;
    mxcont) mx_queued ;;
  esac
}
# settle MTA N: Postfix: until every message was tried once and deferred
# (nothing in incoming/active/maildrop); mxcont: until the API shows N (it
# queues before it answers 250, so at once). Prints the queued count.
settle() {
  local mta=$1 n=$2 t0 q
  t0=$(now)
  case $mta in
    null) echo -; return ;;
    postfix)
      until [ "$(pf_inflight)" -eq 0 ]; do
        older_than "$t0" "$SETTLE_TIMEOUT" && { log "postfix: queue not settled after ${SETTLE_TIMEOUT}s"; break; }
        sleep 0.2
      done ;;
    mxcont)
      until [ "$(mx_queued)" -ge "$n" ]; do
        older_than "$t0" 10 && break
        sleep 0.1
      done ;;
  esac
  q=$(queued "$mta")
  [ "$q" = "$n" ] || log "$mta: $q messages queued, expected $n"
  echo "$q"
}

# run_load OUT CMD: CMD under /usr/bin/time in its own process group (so
# that the trap can stop all of it); sets LOAD_RC, LOAD_WALL, LOAD_CPU (s).
run_load() {
  local out=$1 cmd=$2 t0
  LOAD_RC=0
  t0=$(now)
  setsid /usr/bin/time -o "$out.time" -f '%U %S' sh -c "$cmd" > "$out" 2>&1 &
  LOAD=$!
  wait "$LOAD" || LOAD_RC=$?
  LOAD_WALL=$(fsub "$(now)" "$t0")
  LOAD=
  LOAD_CPU=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { s = $1 + $2 } END { printf "%.2f", s + 0 }' "$out.time" 2>/dev/null || echo 0)
  if [ "$LOAD_RC" != 0 ]; then
    log "load command FAILED (exit $LOAD_RC): $cmd"
    sed 's/^/    /' "$out" | tail -5 >&2
  fi
}

# row PART SCENARIO ROUND MTA MSGS WALL RATE MTA_CPU TOOL_CPU COUNT FIRST STATUS
row() { local IFS=$'\t'; echo "$*" >> "$TSV"; }
printf 'part\tscenario\tround\tmta\tmsgs\twall_s\tmsg_per_s\tmta_cpu_ms_per_msg\ttool_cpu_ms_per_msg\tcount\tfirst_delivery_s\tstatus\n' > "$TSV"

# ---- issue 3: acceptance -------------------------------------------------------------
accept_cmd() {
  case $1 in
    1/conn) echo "smtp-source -4 -N -s 20 -l 4096 -m $MSGS -f $FROM -t $RCPT 127.0.0.1:$SMTP_PORT" ;;
    # smtp-source has no "N per connection": runs of -d -m 10, 20 at a time (as the anchors)
    10/conn) echo "seq $((MSGS / 10)) | xargs -P 20 -I{} smtp-source -4 -N -d -m 10 -l 4096 -f $FROM -t $RCPT 127.0.0.1:$SMTP_PORT" ;;
  esac
}
run_accept() { # run_accept SCENARIO ROUND MTA
  local sc=$1 r=$2 mta=$3 out c0 c1 count status=ok rate
  out=$WORK/runs/accept-${sc%/conn}-r$r-$mta.out
  start_mta "$mta"
  log "accept $sc round $r $mta: $MSGS messages (MTA pid $MTA_PID)"
  c0=$(tree_cpu "$MTA_PID")
  run_load "$out" "$(accept_cmd "$sc")"
  c1=$(tree_cpu "$MTA_PID") # over the load only: Postfix goes on deferring afterwards
  [ "$LOAD_RC" = 0 ] || status="FAILED(exit $LOAD_RC)"
  count=$(settle "$mta" "$MSGS")
  [ "$count" = - ] || [ "$count" = "$MSGS" ] || status="$status,queued $count != $MSGS"
  stop_mta "$mta"
  rate=$(awk -v n="$MSGS" -v w="$LOAD_WALL" 'BEGIN { printf "%.0f", n / w }')
  row accept "$sc" "$r" "$mta" "$MSGS" "$LOAD_WALL" "$rate" "$(ticks_ms_per "$c0" "$c1" "$MSGS")" \
    "$(awk -v c="$LOAD_CPU" -v n="$MSGS" 'BEGIN { printf "%.3f", c * 1000 / n }')" "$count" - "${status#ok,}"
  log "accept $sc round $r $mta: $rate msg/s in $LOAD_WALL s, queued $count, $status"
}

# ---- issue 4: drain --------------------------------------------------------------------
DRAIN_SRC="smtp-source -4 -N -s 20 -d -l 4096 -m $DRAIN_MSGS -f $FROM -t $RCPT"
run_drain() { # run_drain ROUND MTA
  local r=$1 mta=$2 n=$DRAIN_MSGS base q count status=ok c0 c1 s1 t0 t1 tfirst='' off=0 rate
  base=$WORK/runs/drain-r$r-$mta
  if [ "$mta" = null ]; then
    # The ceiling: the fastest client here straight into the sink.
    port_free "$RELAY_PORT" || die "something listens on port $RELAY_PORT"
    start_sink "$RELAY_PORT" "$base-sink.log"
    wait_port "$RELAY_PORT" 10
    log "drain round $r null: smtp-source -> smtp-sink, $n messages"
    c0=$(tree_cpu "$SINK")
    run_load "$base.out" "$DRAIN_SRC 127.0.0.1:$RELAY_PORT"
    s1=$(tree_cpu "$SINK")
    stop_sink
    [ "$LOAD_RC" = 0 ] || status="FAILED(exit $LOAD_RC)"
    rate=$(awk -v n="$n" -v w="$LOAD_WALL" 'BEGIN { printf "%.0f", n / w }')
    row drain 4KiB "$r" null "$n" "$LOAD_WALL" "$rate" \
      "$(awk -v c="$LOAD_CPU" -v n="$n" 'BEGIN { printf "%.3f", c * 1000 / n }')" \
      "$(ticks_ms_per "$c0" "$s1" "$n")" - - "$status"
    log "drain round $r null: $rate msg/s in $LOAD_WALL s, $status"
    return
  fi

  start_mta "$mta"
  log "drain round $r $mta: queueing $n messages, primary down"
  run_load "$base-fill.out" "$DRAIN_SRC 127.0.0.1:$SMTP_PORT"
  [ "$LOAD_RC" = 0 ] || status="FAILED(fill exit $LOAD_RC)"
  count=$(settle "$mta" "$n")
  log "drain round $r $mta: $count queued (filled in $LOAD_WALL s); sink up on $RELAY_PORT"
  if [ "$mta" = postfix ]; then off=$(stat -c %s "$PF_DIR/maillog" 2>/dev/null || echo 0); fi
  c0=$(tree_cpu "$MTA_PID")
  port_free "$RELAY_PORT" || die "something listens on port $RELAY_PORT"
  start_sink "$RELAY_PORT" "$base-sink.log"
  t0=$(now)
  # Postfix waits for its queue_run_delay (300 s) by itself: kick it.
  if [ "$mta" = postfix ]; then postqueue -c "$PF_CONF" -f || log "postqueue -f failed"; fi
  # Poll every 50 ms (the poller's own CPU is on the machine for both MTAs).
  # First delivery: mxcont: the API's count drops below n; Postfix: the first
  # "status=sent" in its log since t0 (its file count is unreliable while qmgr
  # moves files from deferred to active). Empty: read twice, since a file
  # being renamed can be missed by one scan.
  while :; do
    q=$(queued "$mta")
    if [ -z "$tfirst" ]; then
      if [ "$mta" = postfix ]; then
        tail -c +$((off + 1)) "$PF_DIR/maillog" 2>/dev/null | grep -q 'status=sent' && tfirst=$(now)
      elif [ "$q" -ge 0 ] && [ "$q" -lt "$n" ]; then
        tfirst=$(now)
      fi
    fi
    if [ "$q" = 0 ]; then
      t1=$(now)
      [ "$(queued "$mta")" = 0 ] && break
    fi
    if older_than "$t0" "$DRAIN_TIMEOUT"; then
      log "drain round $r $mta: timed out after ${DRAIN_TIMEOUT}s, $q left"
      status="$status,timeout($q left)"
      t1=$(now)
      break
    fi
    sleep 0.05
  done
  c1=$(tree_cpu "$MTA_PID")
  s1=$(tree_cpu "$SINK")
  stop_sink
  stop_mta "$mta"
  [ "$count" = "$n" ] || status="$status,queued $count != $n"
  rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  row drain 4KiB "$r" "$mta" "$n" "$(fsub "$t1" "$t0")" "$rate" "$(ticks_ms_per "$c0" "$c1" "$n")" \
    "$(ticks_ms_per 0 "$s1" "$n")" "$count" "$( [ -n "$tfirst" ] && fsub "$tfirst" "$t0" || echo -)" "${status#ok,}"
  log "drain round $r $mta: $rate msg/s, empty after $(fsub "$t1" "$t0") s, ${status#ok,}"
}

# ---- the rounds: every MTA once per scenario, interleaved -----------------------------
T0=$(now)
for r in $(seq "$ROUNDS"); do
  for part in $PARTS; do
    case $part in
      accept) for sc in 1/conn 10/conn; do for mta in $MTAS; do run_accept "$sc" "$r" "$mta"; done; done ;;
      drain) for mta in $MTAS; do run_drain "$r" "$mta"; done ;;
      *) die "unknown part $part (accept, drain)" ;;
    esac
  done
  log "round $r done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
log "all done in $(fsub "$(now)" "$T0") s"

# ---- tables ----------------------------------------------------------------------------
# table PART: the part's rows with "÷ postfix" = msg/s over Postfix's msg/s in
# the same scenario and round (mxcont: the target, >= 10; null: the ceiling).
table() {
  awk -F'\t' -v part="$1" '
    FNR == 1 { next }
    NR == FNR { if ($1 == part && $4 == "postfix") pf[$2 SUBSEP $3] = $7; next }
    $1 == part {
      k = $2 SUBSEP $3
      ratio = (k in pf && pf[k] > 0) ? sprintf("%.2f", $7 / pf[k]) : "-"
      if (part == "accept")
        printf "| %s | %s | %s | %d | %s | %s | %s | %s | %s |\n", $2, $3, $4, $7, $8, $9, $10, ratio, $12
      else
        printf "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", $3, $4, $7, $6, $11, $8, $9, $10, ratio, $12
    }' "$TSV" "$TSV"
}
{
  echo "## Issue targets on this machine"
  echo
  sed 's/^/    /' "$WORK/machine.txt"
  echo
  if [[ " $PARTS " == *" accept "* ]]; then
    echo "### Issue 3: acceptance, $MSGS x 4 KiB messages, 20 sessions, primary down (target: mxcont >= 10x postfix)"
    echo
    echo "| scenario | round | MTA | msg/s | MTA CPU ms/msg | smtp-source CPU ms/msg | queued | ÷ postfix | status |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    table accept
    echo
    echo "null = smtp-sink in the MTA's place (stores nothing): the most this load tool gets through on this machine."
    echo "msg/s = messages / wall time of the load command; CPU over the load command (Postfix's whole process tree);"
    echo "queued = messages the MTA holds afterwards (Postfix: queue files once each was tried and deferred; mxcont: admin API)."
    echo
  fi
  if [[ " $PARTS " == *" drain "* ]]; then
    echo "### Issue 4: drain of $DRAIN_MSGS x 4 KiB queued messages into smtp-sink (target: mxcont >= 10x postfix; first delivery <= probe interval, mxcont's is $PROBE)"
    echo
    echo "| round | MTA | msg/s | empty after s | first delivery s | MTA CPU ms/msg | smtp-sink CPU ms/msg | queued before | ÷ postfix | status |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    table drain
    echo
    echo "msg/s = messages / (queue empty - sink up), queue polled every 50 ms. Postfix is kicked with \`postqueue -f\` right"
    echo "after the sink comes up; by itself it would wait up to 300 s (queue_run_delay) before the first retry."
    echo "null = smtp-source -s 20 -d straight into smtp-sink (its MTA CPU column is smtp-source's CPU): the sink's ceiling."
  fi
} | tee "$WORK/table.md"
log "results: $WORK (results.tsv, table.md, runs/, postfix/maillog, mxcont/mxcont.log)"
