#!/usr/bin/env bash
# Smoke test of the SMSC simulator: starts smsc.js, drives it over stdin and
# talks to it with a node-smpp CLIENT. Exits non-zero on any failure.
#   bash tests/peers/smsc/smoke.sh
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/smpp ]; then
  npm ci --no-audit --no-fund >&2
fi

tmp=$(mktemp -d)
smsc_pid=''
client_pid=''
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null || true
  [ -n "$smsc_pid" ] && kill "$smsc_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAIL: $*" >&2
  echo "--- smsc stdout" >&2; cat "$tmp/out" >&2 || true
  echo "--- smsc stderr" >&2; cat "$tmp/err" >&2 || true
  echo "--- client output" >&2; cat "$tmp/client" >&2 || true
  exit 1
}

# wait_for FILE PATTERN [SECONDS]: until a line of FILE matches PATTERN
wait_for() {
  local i
  for ((i = 0; i < ${3:-10} * 20; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

mkfifo "$tmp/in"
: >"$tmp/out"
node smsc.js --port 0 --system-id smoke --password pw5 --receipt-delay 100 \
  <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
smsc_pid=$!
exec 3>"$tmp/in"

wait_for "$tmp/out" '^SMSC listening on [0-9]\+$' || fail "smsc.js did not print its port"
port=$(sed -n 's/^SMSC listening on \([0-9]\+\)$/\1/p' "$tmp/out")
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "more than one line on stdout before any command"
echo "smoke: SMSC on port $port" >&2

# ask JSON: send one command, print its one-line answer
ask() {
  local before
  before=$(wc -l <"$tmp/out")
  echo "$1" >&3
  local i
  for ((i = 0; i < 200; i++)); do
    if [ "$(wc -l <"$tmp/out")" -gt "$before" ]; then
      sed -n "$((before + 1))p" "$tmp/out"
      return 0
    fi
    sleep 0.05
  done
  fail "no answer to $1"
}

# json_check JSON JS-EXPRESSION-ON-a: fail unless the expression is true
json_check() {
  node -e "const a = JSON.parse(process.argv[1]); if (!($2)) process.exit(1);" "$1" ||
    fail "check ($2) failed on $1"
}

# ---- the client (node-smpp in client mode)
: >"$tmp/client"
node - "$port" >"$tmp/client" 2>&1 <<'EOF' &
const smpp = require('smpp');
const port = Number(process.argv[2]);
const out = (s) => console.log(s);
const die = (s) => { out('CLIENT FAIL: ' + s); process.exit(1); };
setTimeout(() => die('timeout'), 20000);

// 1. a wrong password is refused with ESME_RINVPASWD
const bad = smpp.connect({ host: '127.0.0.1', port });
bad.on('error', () => {});
bad.bind_transceiver({ system_id: 'smoke', password: 'nope' }, (r) => {
  if (r.command_status !== smpp.ESME_RINVPASWD) die('bad bind status ' + r.command_status);
  out('BADBIND_OK');
  bad.destroy();
  main();
});

function main() {
  const s = smpp.connect({ host: '127.0.0.1', port });
  s.on('error', (e) => die('socket error ' + e.message));
  let messageId = null;
  let receipt = null;
  const mos = [];
  const expectedMo = 4;
  s.on('deliver_sm', (pdu) => {
    s.send(pdu.response());
    if (pdu.esm_class & 0x04) {
      receipt = pdu;
      checkReceipt();
    } else {
      mos.push(pdu);
      if (mos.length === expectedMo) checkMos();
    }
  });
  s.bind_transceiver({ system_id: 'smoke', password: 'pw5' }, (r) => {
    if (r.command_status !== 0) die('bind status ' + r.command_status);
    out('BIND_OK ' + r.system_id);
    s.enquire_link((r) => {
      if (r.command_status !== 0) die('enquire_link status');
      s.submit_sm({
        source_addr_ton: 5, source_addr_npi: 0, source_addr: 'TextGate',
        dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: '15551234567',
        registered_delivery: 1, data_coding: 0, short_message: 'Hello [smoke] 1', // node-smpp GSM-encodes it
      }, (r) => {
        if (r.command_status !== 0) die('submit status ' + r.command_status);
        if (!/^[0-9a-f]+$/.test(r.message_id)) die('message id not hex: ' + r.message_id);
        messageId = r.message_id;
        out('SUBMIT_OK ' + messageId);
        checkReceipt();
      });
    });
  });
  function checkReceipt() {
    if (!receipt || !messageId) return;
    const text = receipt.short_message.message;
    if (receipt.receipted_message_id !== messageId) die('receipted_message_id ' + receipt.receipted_message_id);
    if (receipt.message_state !== 2) die('message_state ' + receipt.message_state);
    if (!new RegExp('^id:' + messageId + ' sub:001 dlvrd:001 submit date:\\d{10} done date:\\d{10} stat:DELIVRD err:000 text:Hello .smoke. 1$').test(text)) die('receipt text ' + text);
    if (receipt.source_addr !== '15551234567' || receipt.destination_addr !== 'TextGate') die('receipt addresses');
    out('RECEIPT_OK ' + text);
    out('READY_FOR_MO');
  }
  function checkMos() {
    const [gsm, ucs, p1, p2] = mos;
    if (gsm.data_coding !== 0 || gsm.short_message.message !== 'Grüße {€} @home ^_^') die('gsm MO ' + JSON.stringify(gsm.short_message));
    if (gsm.source_addr !== '15550001' || gsm.source_addr_ton !== 1 || gsm.destination_addr !== '12345') die('gsm MO addresses');
    if (ucs.data_coding !== 8 || ucs.short_message.message !== 'Привет 👋') die('ucs2 MO ' + JSON.stringify(ucs.short_message));
    for (const [i, p] of [p1, p2].entries()) {
      if (!(p.esm_class & 0x40)) die('multipart part without UDHI');
      const udh = p.short_message.udh && p.short_message.udh[0];
      if (!udh || udh[0] !== 0x00 || udh[2] !== 0x2a || udh[3] !== 2 || udh[4] !== i + 1) die('multipart UDH ' + JSON.stringify(p.short_message));
    }
    if (p1.short_message.message + p2.short_message.message !== 'first half, second half') die('multipart text');
    out('MO_OK');
    s.submit_sm({ destination_addr: '15551234567', data_coding: 0, short_message: Buffer.from('x') }, (r) => {
      if (r.command_status !== smpp.ESME_RTHROTTLED) die('expected ESME_RTHROTTLED, got ' + r.command_status);
      if (r.message_id) die('throttled answer carries a message id');
      out('THROTTLE_OK');
      s.unbind(() => { out('UNBIND_OK'); s.close(); process.exit(0); });
    });
  }
}
EOF
client_pid=$!

wait_for "$tmp/client" '^READY_FOR_MO$' 15 || fail "client did not get its receipt"
ask '{"cmd":"set","throttle_every":1}' >/dev/null
a=$(ask '{"cmd":"mo","from":"+15550001","to":"12345","text":"Grüße {€} @home ^_^","coding":"gsm7"}')
json_check "$a" 'a.ok && a.deliver_sm === 1'
a=$(ask '{"cmd":"mo","from":"+15550001","to":"12345","text":"Привет 👋","coding":"ucs2","wait_ack":true}')
json_check "$a" 'a.ok && a.statuses.length === 1 && a.statuses[0] === 0'
a=$(ask '{"cmd":"mo_multipart","from":"+15550001","to":"12345","ref":42,"parts":["first half, ","second half"]}')
json_check "$a" 'a.ok && a.deliver_sm === 2 && a.ref === 42'

wait "$client_pid" || fail "client failed"
client_pid=''
grep -q '^UNBIND_OK$' "$tmp/client" || fail "client did not finish"

a=$(ask '{"cmd":"submits"}')
json_check "$a" 'a.ok && a.count === 2'
json_check "$a" 'a.submits[0].outcome === "ok" && a.submits[0].short_message_hex === "48656c6c6f201b3c736d6f6b651b3e2031" && a.submits[0].text === "Hello [smoke] 1" && a.submits[0].data_coding === 0'
json_check "$a" 'a.submits[0].source_addr === "TextGate" && a.submits[0].source_addr_ton === 5 && a.submits[0].registered_delivery === 1 && a.submits[0].receipt.stat === "DELIVRD"'
json_check "$a" 'a.submits[1].outcome === "throttled" && a.submits[1].command_status === 0x58 && a.submits[1].message_id === null'

a=$(ask '{"cmd":"stats"}')
json_check "$a" 'a.ok && a.stats.binds === 1 && a.stats.binds_transceiver === 1 && a.stats.bind_failures === 1'
json_check "$a" 'a.stats.submits === 2 && a.stats.submits_ok === 1 && a.stats.submits_throttled === 1'
json_check "$a" 'a.stats.receipts_sent === 1 && a.stats.mo_sent === 4 && a.stats.deliver_sm_acked === 5'
json_check "$a" 'a.stats.enquire_links_received === 1 && a.stats.unbinds_received === 1'

ask '{"cmd":"quit"}' >/dev/null
wait "$smsc_pid" || fail "smsc.js exited non-zero"
smsc_pid=''
cat "$tmp/client" >&2
echo "smoke: 1 passed, 0 failed"
