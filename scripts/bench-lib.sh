# Helpers for scripts/compare-postfix.sh and the other bench-* scripts
# (bash; source this file). Everything listens on 127.0.0.1 only.
#
# A private Postfix instance (own config and queue directories, never the
# system's /etc/postfix instance) is configured like the anchors in
# ../shared/anchors/postfix/setup.sh: a store-and-forward queue for
# example.test relayed to the primary at 127.0.0.1:$RELAY_PORT.

now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# port_free PORT: nothing listens on it.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# wait_port PORT [SECONDS]: until something listens on it.
wait_port() {
  local i
  for i in $(seq $((${2:-10} * 10))); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

# wait_port_free PORT [SECONDS]
wait_port_free() {
  local i
  for i in $(seq $((${2:-10} * 10))); do
    port_free "$1" && return 0
    sleep 0.1
  done
  die "port $1 still in use"
}

# fsync_probe DIR: 4 KiB O_DSYNC writes per second, like the anchors.
fsync_probe() {
  local dir=$1 f out secs
  f="$dir/.fsync_probe.$$"
  out=$(dd if=/dev/zero of="$f" bs=4k count=2000 oflag=dsync 2>&1 | tail -1)
  rm -f "$f"
  secs=$(echo "$out" | awk '{ for (i=1;i<=NF;i++) if ($i ~ /^s,?$/) print $(i-1) }')
  awk -v s="$secs" 'BEGIN { printf "fsync probe: 2000 x 4 KiB O_DSYNC writes in %.2f s = %.0f writes/s\n", s, 2000/s }'
}

# machine_info DIR: what the numbers were measured on.
machine_info() {
  local dir=$1
  echo "date: $(date -Is)"
  echo "kernel: $(uname -sr)"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(free -g | awk '/^Mem:/ { print $2 " GiB total, " $7 " GiB available" }')"
  echo "disk: $(df -hT "$dir" | awk 'NR==2 { print $1 " (" $2 "), " $3 " size, " $5 " used" }')"
  fsync_probe "$dir"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "busiest other processes: $(ps -eo pcpu=,comm= --sort=-pcpu | head -5 | awk '{ printf "%s %s%%; ", $2, $1 }')"
  echo "go: $(go version | cut -d' ' -f3-)"
  echo "postfix: $(postconf -d -h mail_version 2>/dev/null || echo '?')"
}

# ---- Postfix: a private instance under $PF_DIR --------------------------------
# pf_setup DIR SMTP_PORT RELAY_PORT
pf_setup() {
  PF_DIR=$1
  local port=$2 relay=$3
  PF_CONF=$PF_DIR/conf PF_QUEUE=$PF_DIR/queue PF_PORT=$port
  mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DIR/data"
  chmod 755 "$PF_DIR"
  chown postfix "$PF_DIR/data"
  cat > "$PF_CONF/main.cf" <<EOF
# mxcont compare-postfix.sh: the anchors' configuration (shared/anchors/postfix/setup.sh)
# in a private instance, so that the system Postfix and other tests are untouched.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = anchor.localdomain
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relay_recipient_maps =
default_transport = smtp
relay_transport = smtp
transport_maps = hash:$PF_CONF/transport
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_recipient_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_helo_required = no
biff = no
append_dot_mydomain = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
message_size_limit = 20480000
maillog_file_prefixes = /var, /tmp
maillog_file = $PF_DIR/maillog
# left at their defaults on purpose, as in the anchors: in_flow_delay (1s),
# queue_run_delay (300s), minimal_backoff_time (300s), maximal_backoff_time (4000s)
EOF
  printf 'example.test    smtp:[127.0.0.1]:%s\n' "$relay" > "$PF_CONF/transport"
  postmap -c "$PF_CONF" "$PF_CONF/transport"
  # Debian's master.cf, no chroot, no smtpd on port 25, ours on $port.
  awk -v l="127.0.0.1:$port inet n - n - - smtpd" '
    /^#/ || /^[ \t]/ || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { next }
    { $5 = "n"; print }
    END { print l }' /etc/postfix/master.cf > "$PF_CONF/master.cf"
  postfix -c "$PF_CONF" check
}

pf_start() {
  rm -rf "${PF_QUEUE:?}"/* "$PF_DIR/data"/*
  postfix -c "$PF_CONF" start >/dev/null 2>&1 || die "postfix start failed (see $PF_DIR/maillog)"
  PF_RUNNING=1
  wait_port "$PF_PORT" 30
}
pf_stop() {
  [ -n "${PF_RUNNING:-}" ] || return 0
  PF_RUNNING=
  postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
  local i
  for i in $(seq 100); do [ -f "$PF_QUEUE/pid/master.pid" ] && kill -0 "$(tr -d ' ' < "$PF_QUEUE/pid/master.pid")" 2>/dev/null || break; sleep 0.1; done
}
pf_pid() { tr -d ' ' < "$PF_QUEUE/pid/master.pid"; }
# Postfix moves queue files while find walks the directories, so find can
# fail on a file that vanished: that must not fail the caller (set -e with
# pipefail ended a run silently in an assignment like q=$(pf_queued)).
pf_queued() { { find "$PF_QUEUE"/{incoming,active,deferred,maildrop,hold} -type f 2>/dev/null || true; } | wc -l; }
pf_inflight() { { find "$PF_QUEUE"/{incoming,active,maildrop} -type f 2>/dev/null || true; } | wc -l; }
pf_flush_cmd() { echo "postqueue -c $PF_CONF -f"; }

# ---- mxcont ---------------------------------------------------------------------
# mx_setup DIR BIN SMTP_PORT HTTP_PORT RELAY_PORT
mx_setup() {
  MX_DIR=$1 MX_BIN=$2
  local port=$3 http=$4 relay=$5
  mkdir -p "$MX_DIR"
  cat > "$MX_DIR/mxcont.yaml" <<EOF
# mxcont compare-postfix.sh: defaults, except the per-IP connection cap
# (Postfix runs with smtpd_client_connection_count_limit = 0, and every
# test client is 127.0.0.1).
data_dir: $MX_DIR/data
smtp_addr: 127.0.0.1:$port
http_addr: 127.0.0.1:$http
probe_interval: 10s
max_connections_per_ip: 1000
log_level: info
domains:
  - name: example.test
    mode: relay
    relay_host: 127.0.0.1:$relay
    monitoring: false
EOF
  MX_PORT=$port
}
mx_start() {
  rm -rf "${MX_DIR:?}/data"
  MXCONT_ADMIN_PASSWORD=${MXCONT_ADMIN_PASSWORD:-compare-postfix} \
    "$MX_BIN" serve --config "$MX_DIR/mxcont.yaml" >> "$MX_DIR/mxcont.log" 2>&1 &
  MX_PID=$!
  wait_port "$MX_PORT" 30
}
mx_stop() {
  [ -n "${MX_PID:-}" ] || return 0
  kill -TERM "$MX_PID" 2>/dev/null || true
  wait "$MX_PID" 2>/dev/null || true
  MX_PID=
}
