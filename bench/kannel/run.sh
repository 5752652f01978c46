#!/usr/bin/env bash
# Kannel 1.4.5 (Debian's package) on the same SMPP load that textgate's SMPP benchmark uses:
# one SMPP transceiver bind to textgate-smsc (bench/smsc), N messages in through Kannel's
# sendsms HTTP interface from C keep-alive clients; and an inbound run where the simulator
# sends N MO texts.
#
#   bench/kannel/run.sh                       # all cases, N=20000 C=32 WINDOW=10
#   N=50000 C=64 WINDOW=64 bench/kannel/run.sh store-off dlr
#   cases: store-off  store-on  dlr  dlr-store-on  inbound  inbound-store-on
#   KEEP=1 keeps the work directory (configs, logs, simulator output) for inspection.
#
# Needs: apt-get install -y kannel (checked: 1.4.5), jq, python3 (free ports), cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20000}
C=${C:-32}
WINDOW=${WINDOW:-10}   # Kannel max-pending-submits = simulator deliver_sm window
WARM=${WARM:-1000}     # messages sent (and waited for) before the measured run
CASES=${*:-store-off store-on dlr inbound}
BEARERBOX=/usr/sbin/bearerbox
SMSBOX=/usr/sbin/smsbox
# Debian's /etc/init.d/kannel starts both boxes with `-v 4` (log level 4 = panic only)
# and the packaged kannel.conf sets no log-file, so that is what we do.
VERBOSITY=${VERBOSITY:-4}

command -v jq > /dev/null || { echo "needs jq" >&2; exit 1; }
[ -x $BEARERBOX ] || { echo "needs Debian's kannel package (apt-get install -y kannel)" >&2; exit 1; }
kannel_version=$(dpkg-query -W -f '${Version}' kannel 2>/dev/null || echo '?')
cargo build --release -q -p textgate-smsc
SMSC_BIN=$PWD/target/release/textgate-smsc
HZ=$(getconf CLK_TCK)

work=$(mktemp -d /tmp/kannel-bench.XXXXXX)
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# utime + stime in clock ticks
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
now() { date +%s.%N; }
# the simulator's latest counters (it prints one JSON line every 0.1 s)
sim() { tail -n 1 "$dir/smsc.out" | jq -r "$1"; }

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...
    local what=$1 limit=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        if [ $SECONDS -ge $end ]; then
            echo "timed out waiting for $what" >&2
            tail -n 1 "$dir/smsc.out" >&2 || true
            curl -s "$status_url" >&2 || true
            tail -n 20 "$dir"/*.err >&2 || true
            return 1
        fi
        sleep 0.05
    done
}
smsc_online() { curl -s "$status_url" | grep -q "(online"; }
smsbox_connected() { curl -s "$status_url" | grep -q "smsbox:"; }
count_ge() { [ "$(sim "$1")" -ge "$2" ] 2>/dev/null; }
# bearerbox's queues drained: "received N (0 queued)" for inbound, DLRs all matched
kannel_idle() {
    local s
    s=$(curl -s "$status_url")
    echo "$s" | grep -q "^SMS: received .*(0 queued), sent .*(0 queued)" &&
        echo "$s" | grep -q "^DLR: 0 queued"
}

start_case() { # start_case NAME STORE(off|spool) INBOUND(0|1)
    dir=$work/$1
    mkdir -p "$dir"
    local store=$2 inbound=$3
    admin_port=$(free_port)
    box_port=$(free_port)
    sendsms_port=$(free_port)
    status_url="http://127.0.0.1:$admin_port/status.txt?password=bench"
    local mo_args=()
    [ "$inbound" = 1 ] && mo_args=(--mo 0 --mo-count "$N" --mo-on-usr1)
    "$SMSC_BIN" --listen 127.0.0.1:0 --window "$WINDOW" --stats-interval 0.1 "${mo_args[@]}" \
        > "$dir/smsc.out" 2> "$dir/smsc.err" &
    smsc_pid=$!
    pids+=("$smsc_pid")
    wait_for "the simulator" 10 grep -q "^SMSC listening on" "$dir/smsc.out"
    smsc_port=$(sed -n 's/^SMSC listening on .*://p' "$dir/smsc.out")
    local store_conf=""
    if [ "$store" = spool ]; then
        mkdir -p "$dir/spool"
        store_conf="store-type = spool
store-location = \"$dir/spool\""
    fi
    cat > "$dir/kannel.conf" <<CONF
group = core
admin-port = $admin_port
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = $box_port
box-allow-ip = "127.0.0.1"
dlr-storage = internal
$store_conf

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = $smsc_port
transceiver-mode = true
smsc-username = bench
smsc-password = bench
system-type = ""
# textgate-smsc's message ids are hex in submit_sm_resp (bit 1) and deliver_sm (bit 2)
msg-id-type = 0x03
max-pending-submits = $WINDOW
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $box_port
sendsms-port = $sendsms_port
sendsms-interface = 127.0.0.1

group = sendsms-user
username = bench
password = bench
max-messages = 1

# Inbound: a static-text service with max-messages = 0 sends no reply at all, so smsbox
# does the least possible work per MO (no HTTP call-out, no reply MT).
group = sms-service
keyword = default
text = "ok"
max-messages = 0
CONF
    $BEARERBOX -v "$VERBOSITY" "$dir/kannel.conf" > "$dir/bearerbox.out" 2> "$dir/bearerbox.err" &
    bb_pid=$!
    pids+=("$bb_pid")
    wait_for "bearerbox's SMPP bind" 20 smsc_online
    $SMSBOX -v "$VERBOSITY" "$dir/kannel.conf" > "$dir/smsbox.out" 2> "$dir/smsbox.err" &
    sb_pid=$!
    pids+=("$sb_pid")
    wait_for "smsbox" 20 smsbox_connected
    wait_for "smsbox's sendsms port" 20 curl -s -o /dev/null "http://127.0.0.1:$sendsms_port/"
}

kannel_ticks() { echo $(($(ticks "$bb_pid") + $(ticks "$sb_pid"))); }

outbound() { # outbound NAME STORE DLR(0|1)
    local name=$1 store=$2 dlr=$3
    start_case "$name" "$store" 0
    local url="http://127.0.0.1:$sendsms_port/cgi-bin/sendsms?username=bench&password=bench&from=BENCH&to=1555{i}&text=Your+verification+code+is+123456"
    [ "$dlr" = 1 ] && url="$url&dlr-mask=1"
    local field=.submits
    [ "$dlr" = 1 ] && field=.receipt_resps
    # warm-up
    if [ "$WARM" -gt 0 ]; then
        "$SMSC_BIN" --http-load "$url" -n "$WARM" -c "$C" > "$dir/warm.json"
        wait_for "the warm-up" 120 count_ge "$field" "$WARM"
        wait_for "Kannel's queues" 60 kannel_idle
    fi
    local base
    base=$(sim "$field")
    local t0 cpu0 sim0 load t_last cpu1 sim1 accepted
    cpu0=$(kannel_ticks)
    sim0=$(ticks "$smsc_pid")
    load=$("$SMSC_BIN" --http-load "$url" -n "$N" -c "$C" 2> "$dir/load.err")
    echo "$load" > "$dir/load.json"
    accepted=$(jq -r .accepted <<< "$load")
    wait_for "$accepted messages at the simulator" 300 count_ge "$field" $((base + accepted))
    [ "$dlr" = 1 ] && wait_for "Kannel to match every receipt" 120 kannel_idle
    cpu1=$(kannel_ticks)
    sim1=$(ticks "$smsc_pid")
    if [ "$dlr" = 1 ]; then
        t_last=$(sim .last_receipt_resp_unix)
    else
        t_last=$(sim .last_submit_unix)
    fi
    local final
    final=$(tail -n 1 "$dir/smsc.out")
    awk -v name="$name" -v n="$N" -v c="$C" -v acc="$accepted" -v err="$(jq -r .errors <<< "$load")" \
        -v acc_rate="$(jq -r .accepted_per_s <<< "$load")" -v t0="$(jq -r .start_unix <<< "$load")" \
        -v t1="$t_last" -v tend="$(jq -r .end_unix <<< "$load")" -v cpu=$((cpu1 - cpu0)) -v sim=$((sim1 - sim0)) -v hz="$HZ" -v dlr="$dlr" \
        -v rerr="$(jq -r .receipt_resp_errors <<< "$final")" 'BEGIN {
        if (tend > t1) t1 = tend  # end to end includes the last HTTP reply
        printf "== Kannel %s (N=%d, C=%d) ==\n", name, n, c
        printf "messages          %d accepted, %d errors%s\n", acc, err, dlr ? sprintf(", receipts acked by Kannel with errors: %d", rerr) : ""
        printf "accepted          %.0f msg/s\n", acc_rate
        printf "end to end        %.0f msg/s (%s after %.2f s)\n", acc / (t1 - t0), dlr ? "all receipts matched" : "all submitted to the SMSC", t1 - t0
        printf "Kannel CPU        %.2f s total (bearerbox+smsbox), %.1f µs per message\n", cpu / hz, cpu / hz * 1e6 / acc
        printf "simulator CPU     %.2f s total, %.1f µs per message\n", sim / hz, sim / hz * 1e6 / acc
    }'
    [ -s "$dir/load.err" ] && cat "$dir/load.err"
    stop_all
}

inbound() { # inbound NAME STORE
    local name=$1 store=$2
    start_case "$name" "$store" 1
    local cpu0 cpu1 t_done
    cpu0=$(kannel_ticks)
    kill -USR1 "$smsc_pid"
    wait_for "$N MO texts acked by Kannel" 300 count_ge .mo_acked "$N"
    wait_for "smsbox to take every MO text" 120 kannel_idle
    t_done=$(now)
    cpu1=$(kannel_ticks)
    local final
    final=$(tail -n 1 "$dir/smsc.out")
    awk -v name="$name" -v n="$N" -v w="$WINDOW" -v t0="$(jq -r .first_mo_unix <<< "$final")" \
        -v t1="$(jq -r .last_mo_ack_unix <<< "$final")" -v t2="$t_done" -v errs="$(jq -r .mo_errors <<< "$final")" \
        -v cpu=$((cpu1 - cpu0)) -v hz="$HZ" 'BEGIN {
        printf "== Kannel %s (N=%d MO texts, window %d) ==\n", name, n, w
        printf "inbound           %.0f msg/s acked to the SMSC (deliver_sm_resp), %d errors\n", n / (t1 - t0), errs
        printf "inbound, drained  %.0f msg/s until bearerbox queues empty (±0.05 s)\n", n / (t2 - t0)
        printf "Kannel CPU        %.2f s total (bearerbox+smsbox), %.1f µs per message\n", cpu / hz, cpu / hz * 1e6 / n
    }'
    stop_all
}

echo "Kannel $kannel_version (Debian) on $(nproc) cores, SMPP transceiver to textgate-smsc, window $WINDOW, boxes at -v $VERBOSITY"
for c in $CASES; do
    case $c in
        store-off) outbound store-off off 0 ;;
        store-on) outbound store-on spool 0 ;;
        dlr) outbound "dlr (store off, dlr-mask=1)" off 1 ;;
        dlr-store-on) outbound "dlr (store-type=spool, dlr-mask=1)" spool 1 ;;
        inbound) inbound "inbound (store off)" off ;;
        inbound-store-on) inbound "inbound (store-type=spool)" spool ;;
        *) echo "unknown case $c" >&2; exit 2 ;;
    esac
done
