#!/usr/bin/env bash
# Where mxcont's time goes: a fresh node takes MSGS messages from mxbench
# load (primary down) while `perf record` samples the node (user and kernel
# stacks), and the node's /metrics give the group-commit figures (fsyncs,
# their latency, records per fsync). Then the primary (mxbench sink) comes
# up and the drain is profiled the same way.
#
# Usage (as root): scripts/bench-profile.sh
# Env: MSGS (20000), SESSIONS (20), PER_CONN (10), SIZE (4096), SMTP_PORT (2525),
#      HTTP_PORT (8080), RELAY_PORT (2626), WORK (a new /var/tmp dir)
# Output: $WORK/perf.data, profile-*.txt (acceptance), perf-drain.data,
#         profile-drain-*.txt, metrics-{before,after}.txt, load.txt, drain.txt
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-20}
PER_CONN=${PER_CONN:-10}
SIZE=${SIZE:-4096}
SMTP_PORT=${SMTP_PORT:-2525}
HTTP_PORT=${HTTP_PORT:-8080}
RELAY_PORT=${RELAY_PORT:-2626}
WORK=${WORK:-$(mktemp -d /var/tmp/mxcont-profile.XXXXXX)}
command -v perf >/dev/null || die "perf is not installed"

PERF_PID= CHILD=
cleanup() {
  local rc=$?
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null || true
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null || true
  mx_stop
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
export MXCONT_ADMIN_PASSWORD=bench-profile
mx_start

jar=$WORK/cookies
curl -fsS -c "$jar" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$MXCONT_ADMIN_PASSWORD\"}" "http://127.0.0.1:$HTTP_PORT/api/v1/login" >/dev/null
metrics() { curl -fsS -b "$jar" "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^mxcont_(spool|smtp)_' ; }
metrics > "$WORK/metrics-before.txt"

log "perf record on node $MX_PID; mxbench load: $MSGS x $SIZE B, $SESSIONS sessions, $PER_CONN/conn"
perf record -e cpu-clock -F 999 -g -p "$MX_PID" -o "$WORK/perf.data" 2> "$WORK/perf-record.txt" &
PERF_PID=$!
sleep 0.5
"$WORK/bin/mxbench" load --addr "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" --per-conn "$PER_CONN" --size "$SIZE" \
  --count "$MSGS" --pid "$MX_PID" --label "mxcont/profile" --out "$WORK/load.json" --quiet --record "$WORK/record.jsonl" \
  --cpuprofile "$WORK/mxbench.pprof" > "$WORK/load.txt" &
CHILD=$!
wait "$CHILD"
CHILD=
kill -INT "$PERF_PID"; wait "$PERF_PID" || true
PERF_PID=
metrics > "$WORK/metrics-after.txt"
cat "$WORK/load.txt"

# Group commit over the run, from the histograms' _sum and _count.
delta() { # delta METRIC
  awk -v m="$1" '$1 == m { if (FILENAME ~ /before/) b = $2; else a = $2 } END { printf "%.6f", a - b }' \
    "$WORK/metrics-before.txt" "$WORK/metrics-after.txt"
}
fs_n=$(delta mxcont_spool_fsync_seconds_count) fs_s=$(delta mxcont_spool_fsync_seconds_sum)
b_n=$(delta mxcont_spool_commit_batch_records_count) b_s=$(delta mxcont_spool_commit_batch_records_sum)
el=$(jq -r .elapsed_s "$WORK/load.json")
awk -v n="$fs_n" -v s="$fs_s" -v bn="$b_n" -v bs="$b_s" -v el="$el" 'BEGIN {
  printf "group commit: %d fsyncs in %.1f s (%.0f fsync/s), mean fsync %.2f ms, %.1f records per commit, fsync busy %.0f%% of the run\n",
    n, el, n / el, 1000 * s / n, bs / bn, 100 * s / el }' | tee "$WORK/groupcommit.txt"

log "drain: mxbench sink on :$RELAY_PORT, perf record on node $MX_PID"
perf record -e cpu-clock -F 999 -g -p "$MX_PID" -o "$WORK/perf-drain.data" 2>> "$WORK/perf-record.txt" &
PERF_PID=$!
sleep 0.5
"$WORK/bin/mxbench" sink --addr "127.0.0.1:$RELAY_PORT" --check "$WORK/record.jsonl" --until-done --timeout 10m \
  --pid "$MX_PID" --label "mxcont/profile" --out "$WORK/drain.json" --quiet > "$WORK/drain.txt" &
CHILD=$!
wait "$CHILD" || true
CHILD=
kill -INT "$PERF_PID"; wait "$PERF_PID" || true
PERF_PID=
cat "$WORK/drain.txt"

report() { # report PERFDATA PREFIX
  perf report -i "$1" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep . | head -15 > "$2-dso.txt" || true
  perf report -i "$1" --no-children --sort sym --stdio -g none --percent-limit 0.8 2>/dev/null |
    grep -v '^#' | grep . > "$2-self.txt" || true
  perf report -i "$1" --children --sort sym --stdio -g none --percent-limit 2 2>/dev/null |
    grep -v '^#' | grep . > "$2-children.txt" || true
  echo "== node CPU by object (self)"; cat "$2-dso.txt"
  echo "== top symbols (self)"; head -30 "$2-self.txt"
  echo "== top symbols (with callees)"; head -60 "$2-children.txt"
}
echo "######## acceptance"
report "$WORK/perf.data" "$WORK/profile"
echo "######## drain"
report "$WORK/perf-drain.data" "$WORK/profile-drain"
log "profile: $WORK (perf.data, profile-*.txt; mxbench's own profile: go tool pprof $WORK/bin/mxbench $WORK/mxbench.pprof)"
