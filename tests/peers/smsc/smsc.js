#!/usr/bin/env node
'use strict';
const fs = require('fs');
// SMSC simulator for textgate's SMPP end-to-end tests.
//
// The SMPP side (PDU framing, decoding, encoding, sessions, the listening
// server) is the npm package `smpp` (node-smpp), an implementation textgate
// did not write. This file only adds SMSC behaviour on top of it: bind
// checks, message ids, delivery receipts, inbound texts, throttling answers
// and connection drops, driven by flags and by JSON commands on stdin.
// See README.md beside this file for every flag and command.
//
// stdout: exactly one line "SMSC listening on PORT", then exactly one JSON
// line per stdin command. Everything else goes to stderr.

const smpp = require('smpp');
const readline = require('readline');

// ---------------------------------------------------------------- options

const DEFAULTS = {
  port: 2775,
  host: '127.0.0.1',
  system_id: 'textgate',
  password: 'secret',
  smsc_id: 'NODESMPP',
  id_format: 'hex',
  receipt_delay: 200,
  receipt_before_resp: false,
  receipt_id_in_text: 'same',
  undeliverable_rate: 0,
  undeliverable_prefix: '',
  seed: 1,
  throttle_every: 0,
  queue_full_every: 0,
  drop_after: 0,
  resp_delay: 0,
  enquire_link_interval: 0,
  redeliver_delay: 1000,
  max_redeliveries: 3,
  exit_on_stdin_eof: true,
  verbose: false,
  tls_key: '',
  tls_cert: '',
};

const BOOL_FLAGS = new Set(['receipt_before_resp', 'verbose']);
const NUM_FLAGS = new Set(['port', 'receipt_delay', 'undeliverable_rate', 'seed', 'throttle_every',
  'queue_full_every', 'drop_after', 'resp_delay', 'enquire_link_interval', 'redeliver_delay',
  'max_redeliveries']);

function usage(msg) {
  if (msg) process.stderr.write('smsc: ' + msg + '\n');
  process.stderr.write('usage: node smsc.js [--port N] [--host ADDR] [--system-id ID] [--password PW]\n' +
    '  [--smsc-id ID] [--id-format hex|dec] [--receipt-delay MS] [--receipt-before-resp]\n' +
    '  [--receipt-id-in-text same|dec] [--undeliverable-rate F] [--undeliverable-prefix P] [--seed N]\n' +
    '  [--throttle-every N] [--queue-full-every N] [--drop-after N] [--resp-delay MS]\n' +
    '  [--enquire-link-interval MS] [--redeliver-delay MS] [--max-redeliveries N]\n' +
    '  [--no-exit-on-stdin-eof] [--verbose] [--tls-key FILE --tls-cert FILE]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const cfg = Object.assign({}, DEFAULTS);
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') usage();
    if (!a.startsWith('--')) usage('unexpected argument ' + a);
    a = a.slice(2);
    let val;
    const eq = a.indexOf('=');
    if (eq >= 0) { val = a.slice(eq + 1); a = a.slice(0, eq); }
    const key = a.replace(/-/g, '_');
    if (key === 'no_exit_on_stdin_eof') { cfg.exit_on_stdin_eof = false; continue; }
    if (!(key in DEFAULTS)) usage('unknown flag --' + a);
    if (BOOL_FLAGS.has(key)) { cfg[key] = val === undefined ? true : val !== 'false'; continue; }
    if (val === undefined) {
      if (i + 1 >= argv.length) usage('--' + a + ' needs a value');
      val = argv[++i];
    }
    cfg[key] = NUM_FLAGS.has(key) ? Number(val) : val;
    if (NUM_FLAGS.has(key) && !Number.isFinite(cfg[key])) usage('--' + a + ' needs a number');
  }
  if (!['hex', 'dec'].includes(cfg.id_format)) usage('--id-format is hex or dec');
  if (!['same', 'dec'].includes(cfg.receipt_id_in_text)) usage('--receipt-id-in-text is same or dec');
  return cfg;
}

const cfg = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- logging

function log(...args) {
  process.stderr.write(new Date().toISOString() + ' smsc: ' + args.join(' ') + '\n');
}
function vlog(...args) { if (cfg.verbose) log(...args); }

function answer(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ------------------------------------------------- raw PDU capture (bytes)
// node-smpp decodes short_message/message_payload into strings (lossy: its
// GSM decoder maps unknown bytes to ' ', its UCS-2 decoder goes through
// iconv) and does not keep the bytes. To record the exact octets the ESME
// sent, wrap PDU.fromStream (smpp.js calls it as PDU.fromStream on the same
// exported object) so that every decoded PDU also carries its raw buffer.
// The decoding itself is still node-smpp's.
(function captureRawPdus() {
  const PDU = smpp.PDU;
  PDU.fromStream = function (stream, commandLength) {
    const body = stream.read(commandLength - 4);
    if (!body) return false;
    const head = Buffer.alloc(4);
    head.writeUInt32BE(commandLength, 0);
    const raw = Buffer.concat([head, body]);
    const pdu = new PDU(raw);
    Object.defineProperty(pdu, '_raw', { value: raw, enumerable: false });
    return pdu;
  };
})();

// ---------------------------------------------------------------- GSM 03.38
// Written here (not node-smpp's gsmCoder) so unencodable characters are an
// error rather than a silent space, and so the bytes are exactly ours.
const GSM_BASIC = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = { '\f': 0x0a, '^': 0x14, '{': 0x28, '}': 0x29, '\\': 0x2f, '[': 0x3c, '~': 0x3d,
  ']': 0x3e, '|': 0x40, '€': 0x65 };
const GSM_ENC = new Map();
[...GSM_BASIC].forEach((ch, i) => { if (i !== 0x1b) GSM_ENC.set(ch, i); });
const GSM_EXT_DEC = new Map(Object.entries(GSM_EXT).map(([ch, b]) => [b, ch]));

// One septet per octet (unpacked), as SMPP carries data_coding 0.
function gsmEncode(text) {
  const out = [];
  for (const ch of text) {
    if (GSM_ENC.has(ch)) out.push(GSM_ENC.get(ch));
    else if (ch in GSM_EXT) out.push(0x1b, GSM_EXT[ch]);
    else throw new Error('character ' + JSON.stringify(ch) + ' (U+' +
      ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + ') is not in GSM 03.38');
  }
  return Buffer.from(out);
}

function gsmDecode(buf) {
  let s = '';
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === 0x1b && i + 1 < buf.length) {
      const e = GSM_EXT_DEC.get(buf[i + 1]);
      s += e === undefined ? '?' : e;
      i++;
    } else if (b < 0x80) s += b === 0x1b ? ' ' : GSM_BASIC[b];
    else s += '\ufffd';
  }
  return s;
}

function ucs2Encode(text) {
  const le = Buffer.from(text, 'utf16le');
  for (let i = 0; i + 1 < le.length; i += 2) { const t = le[i]; le[i] = le[i + 1]; le[i + 1] = t; }
  return le;
}

function ucs2Decode(buf) {
  const le = Buffer.from(buf.subarray(0, buf.length - (buf.length % 2)));
  for (let i = 0; i + 1 < le.length; i += 2) { const t = le[i]; le[i] = le[i + 1]; le[i + 1] = t; }
  return le.toString('utf16le');
}

function latin1Encode(text) {
  for (const ch of text) {
    if (ch.codePointAt(0) > 0xff) throw new Error('character ' + JSON.stringify(ch) + ' is not in Latin-1');
  }
  return Buffer.from(text, 'latin1');
}

const CODINGS = {
  gsm7: { dc: 0x00, encode: gsmEncode },
  ucs2: { dc: 0x08, encode: ucs2Encode },
  latin1: { dc: 0x03, encode: latin1Encode },
  binary: { dc: 0x04, encode: null },
};

function decodeText(dc, buf) {
  switch (dc) {
    case 0x00: return gsmDecode(buf);
    case 0x01: return buf.toString('latin1'); // IA5 / ASCII
    case 0x03: return buf.toString('latin1');
    case 0x08: return ucs2Decode(buf);
    default: return null;
  }
}

// ---------------------------------------------------------------- state

function freshStats() {
  return {
    connections: 0, sessions_open: 0,
    binds: 0, binds_transmitter: 0, binds_receiver: 0, binds_transceiver: 0, bind_failures: 0,
    unbinds_received: 0, enquire_links_received: 0, enquire_link_resps_received: 0,
    generic_nacks_sent: 0, unsupported_commands: 0,
    submits: 0, submits_ok: 0, submits_throttled: 0, submits_queue_full: 0, submits_dropped: 0,
    submits_rejected: 0,
    receipts_scheduled: 0, receipts_sent: 0, receipts_undeliverable: 0,
    mo_sent: 0, deliver_sm_sent: 0, deliver_sm_acked: 0, deliver_sm_nacked: 0,
    deliver_sm_redelivered: 0, deliver_sm_given_up: 0,
    drops: 0,
  };
}

let stats = freshStats();
let submits = [];          // recorded submit_sm, in arrival order
const sessions = new Set();
let sessionSeq = 0;
let pending = [];          // deliver_sm items waiting for a bound receiver
let rrIndex = 0;
// counters for the "every Nth" options, reset when the option is `set`
const counters = { throttle: 0, queue_full: 0, drop: 0 };

let nextId = 0x100000000 + Math.floor(Math.random() * 0xf000000000);
function newMessageId() {
  const n = nextId++;
  return cfg.id_format === 'hex' ? n.toString(16) : n.toString(10);
}

// deterministic PRNG (mulberry32) for --undeliverable-rate
let rngState = cfg.seed >>> 0;
function rand() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function smppDate(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function receiverSessions() {
  return [...sessions].filter((s) => !s.tg.dropped && s.socket.writable &&
    (s.tg.bound === 'receiver' || s.tg.bound === 'transceiver') && s.tg.systemId === cfg.system_id);
}

// ---------------------------------------------------------- raw submit_sm

function parseSubmitSm(raw) {
  let off = 16;
  const need = (n) => { if (off + n > raw.length) throw new Error('PDU too short'); };
  const u8 = () => { need(1); return raw[off++]; };
  const cstr = () => {
    const end = raw.indexOf(0, off);
    if (end < 0) throw new Error('unterminated C-string');
    const s = raw.toString('latin1', off, end);
    off = end + 1;
    return s;
  };
  const r = {};
  r.service_type = cstr();
  r.source_addr_ton = u8(); r.source_addr_npi = u8(); r.source_addr = cstr();
  r.dest_addr_ton = u8(); r.dest_addr_npi = u8(); r.destination_addr = cstr();
  r.esm_class = u8(); r.protocol_id = u8(); r.priority_flag = u8();
  r.schedule_delivery_time = cstr(); r.validity_period = cstr();
  r.registered_delivery = u8(); r.replace_if_present_flag = u8();
  r.data_coding = u8(); r.sm_default_msg_id = u8();
  const smLen = u8();
  need(smLen);
  const sm = raw.subarray(off, off + smLen);
  off += smLen;
  const tlvs = [];
  while (off + 4 <= raw.length) {
    const tag = raw.readUInt16BE(off);
    const len = raw.readUInt16BE(off + 2);
    off += 4;
    if (off + len > raw.length) throw new Error('TLV 0x' + tag.toString(16) + ' overruns the PDU');
    tlvs.push({ tag, value: raw.subarray(off, off + len) });
    off += len;
  }
  if (off !== raw.length) throw new Error('trailing bytes after TLVs');
  return { fields: r, sm, tlvs };
}

function parseUdh(buf) {
  // buf = UDHL + IEs (+ payload). Returns { udh, body } or throws.
  if (buf.length < 1) throw new Error('UDHI set but message is empty');
  const udhl = buf[0];
  if (udhl + 1 > buf.length) throw new Error('UDHL ' + udhl + ' exceeds message length');
  const ies = [];
  let concat = null;
  let i = 1;
  while (i < udhl + 1) {
    if (i + 2 > udhl + 1) throw new Error('truncated UDH IE');
    const iei = buf[i];
    const len = buf[i + 1];
    const data = buf.subarray(i + 2, i + 2 + len);
    if (i + 2 + len > udhl + 1) throw new Error('UDH IE overruns UDHL');
    ies.push({ iei, data: data.toString('hex') });
    if (iei === 0x00 && len === 3) concat = { ref: data[0], ref_bits: 8, total: data[1], seq: data[2] };
    if (iei === 0x08 && len === 4) concat = { ref: data.readUInt16BE(0), ref_bits: 16, total: data[2], seq: data[3] };
    i += 2 + len;
  }
  return {
    udh: { hex: buf.subarray(0, udhl + 1).toString('hex'), udhl, ies, concat },
    body: buf.subarray(udhl + 1),
  };
}

function recordSubmit(session, pdu) {
  const parsed = parseSubmitSm(pdu._raw);
  const f = parsed.fields;
  const tlv = (tag) => parsed.tlvs.find((t) => t.tag === tag);
  const rec = {
    index: submits.length,
    time: new Date().toISOString(),
    session: session.tg.id,
    system_id: session.tg.systemId,
    sequence_number: pdu.sequence_number,
    service_type: f.service_type,
    source_addr: f.source_addr, source_addr_ton: f.source_addr_ton, source_addr_npi: f.source_addr_npi,
    destination_addr: f.destination_addr, dest_addr_ton: f.dest_addr_ton, dest_addr_npi: f.dest_addr_npi,
    esm_class: f.esm_class, protocol_id: f.protocol_id, priority_flag: f.priority_flag,
    schedule_delivery_time: f.schedule_delivery_time, validity_period: f.validity_period,
    registered_delivery: f.registered_delivery, data_coding: f.data_coding,
    sm_length: parsed.sm.length,
    short_message_hex: parsed.sm.toString('hex'),
    udh: null,
    text: null,
    sar: null,
    message_payload_hex: null,
    tlvs: parsed.tlvs.map((t) => ({ tag: t.tag, hex: t.value.toString('hex') })),
    errors: [],
    outcome: null,       // ok | throttled | queue_full | dropped | rejected
    command_status: null,
    message_id: null,
    receipt: null,       // null | scheduled state
    resp_sent: null,     // whether submit_sm_resp was handed to the socket
  };
  const sarRef = tlv(0x020c), sarTotal = tlv(0x020e), sarSeq = tlv(0x020f);
  if (sarRef || sarTotal || sarSeq) {
    rec.sar = {
      msg_ref_num: sarRef && sarRef.value.length === 2 ? sarRef.value.readUInt16BE(0) : null,
      total_segments: sarTotal && sarTotal.value.length === 1 ? sarTotal.value[0] : null,
      segment_seqnum: sarSeq && sarSeq.value.length === 1 ? sarSeq.value[0] : null,
    };
  }
  const payload = tlv(0x0424);
  if (payload) rec.message_payload_hex = payload.value.toString('hex');
  if (payload && parsed.sm.length > 0) rec.errors.push('both short_message and message_payload present');
  let content = payload ? payload.value : parsed.sm;
  if (f.esm_class & 0x40) {
    try {
      const u = parseUdh(content);
      rec.udh = u.udh;
      content = u.body;
    } catch (e) { rec.errors.push(e.message); }
  }
  rec.text = decodeText(f.data_coding, content);
  rec.body_hex = content.toString('hex');
  return rec;
}

// ---------------------------------------------------------------- deliver_sm

// An item is one deliver_sm to hand to a bound receiver; it is redelivered
// when the session closes before the ESME answers, or after a nack.
function enqueue(item) {
  item.attempts = item.attempts || 0;
  pending.push(item);
  dispatch();
}

function dispatch() {
  if (!pending.length) return;
  const rx = receiverSessions();
  if (!rx.length) return;
  const batch = pending;
  pending = [];
  for (const item of batch) {
    const s = rx[rrIndex++ % rx.length];
    sendDeliver(s, item);
  }
}

function sendDeliver(session, item) {
  const pdu = new smpp.PDU('deliver_sm', Object.assign({}, item.opts));
  item.attempts++;
  const ok = session.send(pdu, (resp) => {
    session.tg.outstanding.delete(pdu.sequence_number);
    const status = resp.command_status;
    item.lastStatus = status;
    if (status === 0 && resp.command === 'deliver_sm_resp') {
      stats.deliver_sm_acked++;
      vlog('deliver_sm seq', pdu.sequence_number, 'acked by session', session.tg.id);
      if (item.onDone) item.onDone({ status: 0, attempts: item.attempts });
      return;
    }
    stats.deliver_sm_nacked++;
    log('deliver_sm seq', pdu.sequence_number, 'answered with', resp.command, 'status 0x' + status.toString(16));
    if (item.attempts <= cfg.max_redeliveries) {
      stats.deliver_sm_redelivered++;
      setTimeout(() => enqueue(item), cfg.redeliver_delay);
    } else {
      stats.deliver_sm_given_up++;
      if (item.onDone) item.onDone({ status, attempts: item.attempts });
    }
  });
  if (!ok) {
    item.attempts--;
    pending.push(item);
    return;
  }
  session.tg.outstanding.set(pdu.sequence_number, item);
  stats.deliver_sm_sent++;
  if (item.kind === 'receipt' && item.attempts === 1) stats.receipts_sent++;
  if (item.kind === 'mo' && item.attempts === 1) stats.mo_sent++;
  vlog('deliver_sm seq', pdu.sequence_number, item.kind, 'to session', session.tg.id);
  if (item.onSent) { const f = item.onSent; item.onSent = null; f(); }
}

function addressFields(addr, ton, npi) {
  addr = String(addr);
  if (ton === undefined || npi === undefined) {
    if (addr.startsWith('+')) { ton = ton ?? 1; npi = npi ?? 1; }
    else if (/^[0-9]*$/.test(addr)) { ton = ton ?? 0; npi = npi ?? 1; }
    else { ton = ton ?? 5; npi = npi ?? 0; }
  }
  if (addr.startsWith('+')) addr = addr.slice(1);
  return { addr, ton, npi };
}

// ---------------------------------------------------------------- receipts

function receiptTextSafe(text) {
  // characters whose GSM 03.38 code equals their ASCII code, so the receipt
  // bytes read the same whichever way an ESME decodes data_coding 0.
  let out = '';
  for (const ch of (text || '').slice(0, 20)) out += /[A-Za-z0-9 !"#%&'()*+,\-./:;<=>?]/.test(ch) ? ch : '.';
  return out;
}

function scheduleReceipt(rec, immediate) {
  const rd = rec.registered_delivery & 0x03;
  const undeliverable = (cfg.undeliverable_prefix && rec.destination_addr.startsWith(cfg.undeliverable_prefix)) ||
    (cfg.undeliverable_rate > 0 && rand() < cfg.undeliverable_rate);
  if (rd === 0 || (rd === 2 && !undeliverable)) return null;
  const submitDate = new Date(rec.time);
  const idText = cfg.receipt_id_in_text === 'dec' && cfg.id_format === 'hex'
    ? BigInt('0x' + rec.message_id).toString(10) : rec.message_id;
  const build = () => {
    const done = new Date();
    const text = 'id:' + idText + ' sub:001 dlvrd:' + (undeliverable ? '000' : '001') +
      ' submit date:' + smppDate(submitDate) + ' done date:' + smppDate(done) +
      ' stat:' + (undeliverable ? 'UNDELIV' : 'DELIVRD') + ' err:' + (undeliverable ? '001' : '000') +
      ' text:' + receiptTextSafe(rec.text);
    const opts = {
      source_addr_ton: rec.dest_addr_ton, source_addr_npi: rec.dest_addr_npi, source_addr: rec.destination_addr,
      dest_addr_ton: rec.source_addr_ton, dest_addr_npi: rec.source_addr_npi, destination_addr: rec.source_addr,
      esm_class: 0x04,
      data_coding: 0x00,
      short_message: Buffer.from(text, 'ascii'),
      receipted_message_id: rec.message_id,
      message_state: undeliverable ? 5 : 2,
    };
    if (undeliverable) opts.network_error_code = Buffer.from([0x03, 0x00, 0x01]);
    return opts;
  };
  stats.receipts_scheduled++;
  if (undeliverable) stats.receipts_undeliverable++;
  rec.receipt = { stat: undeliverable ? 'UNDELIV' : 'DELIVRD', message_state: undeliverable ? 5 : 2, text_id: idText };
  const item = { kind: 'receipt', message_id: rec.message_id };
  const go = (onSent) => { item.opts = build(); item.onSent = onSent; enqueue(item); };
  if (immediate) return go;
  setTimeout(() => go(null), cfg.receipt_delay);
  return null;
}

// ---------------------------------------------------------------- submit_sm

function handleSubmit(session, pdu) {
  stats.submits++;
  let rec;
  try {
    rec = recordSubmit(session, pdu);
  } catch (e) {
    stats.submits_rejected++;
    log('malformed submit_sm from session', session.tg.id + ':', e.message);
    submits.push({ index: submits.length, time: new Date().toISOString(), session: session.tg.id,
      sequence_number: pdu.sequence_number, raw_hex: pdu._raw.toString('hex'),
      errors: [e.message], outcome: 'rejected', command_status: 0x01, message_id: null });
    session.send(pdu.response({ command_status: smpp.ESME_RINVMSGLEN }));
    return;
  }
  submits.push(rec);

  counters.drop++; counters.throttle++; counters.queue_full++;
  if (cfg.drop_after > 0 && counters.drop === cfg.drop_after) {
    rec.outcome = 'dropped';
    rec.resp_sent = false;
    stats.submits_dropped++;
    log('dropping session', session.tg.id, 'on submit_sm #' + counters.drop, '(seq', pdu.sequence_number + ') without answering');
    dropSession(session);
    return;
  }
  let status = 0;
  if (cfg.throttle_every > 0 && counters.throttle % cfg.throttle_every === 0) {
    status = smpp.ESME_RTHROTTLED; rec.outcome = 'throttled'; stats.submits_throttled++;
  } else if (cfg.queue_full_every > 0 && counters.queue_full % cfg.queue_full_every === 0) {
    status = smpp.ESME_RMSGQFUL; rec.outcome = 'queue_full'; stats.submits_queue_full++;
  } else if (!rec.destination_addr) {
    status = smpp.ESME_RINVDSTADR; rec.outcome = 'rejected'; stats.submits_rejected++;
  }
  rec.command_status = status;
  if (status !== 0) {
    vlog('submit_sm seq', pdu.sequence_number, '-> status 0x' + status.toString(16));
    const send = () => { rec.resp_sent = !session.tg.dropped && session.send(pdu.response({ command_status: status })); };
    if (cfg.resp_delay > 0) setTimeout(send, cfg.resp_delay); else send();
    return;
  }
  rec.outcome = 'ok';
  rec.message_id = newMessageId();
  stats.submits_ok++;
  const respond = () => {
    if (session.tg.dropped) { rec.resp_sent = false; return; }
    rec.resp_sent = session.send(pdu.response({ message_id: rec.message_id }));
    vlog('submit_sm seq', pdu.sequence_number, '-> message_id', rec.message_id);
  };
  if (cfg.receipt_before_resp) {
    const go = scheduleReceipt(rec, true);
    if (go) {
      // the receipt is queued first; the resp follows once it is written to
      // a receiver (or at once if no receiver is bound).
      let done = false;
      const after = () => {
        if (done) return;
        done = true;
        if (cfg.resp_delay > 0) setTimeout(respond, cfg.resp_delay); else setImmediate(respond);
      };
      go(after);
      if (!receiverSessions().length) after();
      return;
    }
  } else {
    scheduleReceipt(rec, false);
  }
  if (cfg.resp_delay > 0) setTimeout(respond, cfg.resp_delay); else respond();
}

// ---------------------------------------------------------------- sessions

function dropSession(session) {
  if (session.tg.dropped) return;
  session.tg.dropped = true;
  stats.drops++;
  session.pause(); // node-smpp stops emitting PDUs already buffered
  session.socket.destroy();
}

function bindStatus(pdu) {
  if (pdu.system_id !== cfg.system_id) return smpp.ESME_RBINDFAIL;
  if (pdu.password !== cfg.password) return smpp.ESME_RINVPASWD;
  return 0;
}

function onSession(session) {
  const id = ++sessionSeq;
  session.tg = { id, bound: null, systemId: null, outstanding: new Map(), dropped: false, elTimer: null,
    remote: session.socket.remoteAddress + ':' + session.socket.remotePort };
  sessions.add(session);
  stats.connections++;
  stats.sessions_open++;
  log('session', id, 'connected from', session.tg.remote);

  session.on('error', (e) => {
    log('session', id, 'error:', e.message);
    // node-smpp stops reading a session after a decode error; close it.
    dropSession(session);
  });

  session.on('close', () => {
    sessions.delete(session);
    stats.sessions_open--;
    if (session.tg.elTimer) clearInterval(session.tg.elTimer);
    const unacked = [...session.tg.outstanding.values()];
    session.tg.outstanding.clear();
    if (unacked.length) {
      log('session', id, 'closed with', unacked.length, 'deliver_sm unanswered; will redeliver');
      stats.deliver_sm_redelivered += unacked.length;
      pending = unacked.concat(pending);
    }
    log('session', id, 'closed');
    dispatch();
  });

  session.on('pdu', (pdu) => {
    if (session.tg.dropped) return;
    vlog('session', id, 'got', pdu.command, 'seq', pdu.sequence_number, 'status', pdu.command_status);
    if (pdu.isResponse()) {
      if (pdu.command === 'enquire_link_resp') stats.enquire_link_resps_received++;
      return; // deliver_sm_resp etc. are handled by node-smpp's callbacks
    }
    switch (pdu.command) {
      case 'bind_transmitter':
      case 'bind_receiver':
      case 'bind_transceiver': {
        const kind = pdu.command.slice(5);
        if (session.tg.bound) {
          session.send(pdu.response({ command_status: smpp.ESME_RALYBND }));
          return;
        }
        const status = bindStatus(pdu);
        if (status) {
          stats.bind_failures++;
          log('session', id, pdu.command, 'as', JSON.stringify(pdu.system_id), 'refused, status 0x' + status.toString(16));
          session.send(pdu.response({ command_status: status }), () => session.close());
          return;
        }
        session.tg.bound = kind;
        session.tg.systemId = pdu.system_id;
        stats.binds++;
        stats['binds_' + kind]++;
        session.send(pdu.response({ system_id: cfg.smsc_id, sc_interface_version: 0x34 }));
        log('session', id, 'bound as', kind, 'system_id', pdu.system_id);
        if (cfg.enquire_link_interval > 0) {
          session.tg.elTimer = setInterval(() => session.enquire_link(), cfg.enquire_link_interval);
        }
        if (kind !== 'transmitter') setImmediate(dispatch);
        wakeBoundWaiters();
        return;
      }
      case 'enquire_link':
        stats.enquire_links_received++;
        session.send(pdu.response());
        return;
      case 'unbind':
        stats.unbinds_received++;
        session.tg.bound = null;
        session.send(pdu.response());
        log('session', id, 'unbound');
        return;
      case 'submit_sm':
        if (session.tg.bound !== 'transmitter' && session.tg.bound !== 'transceiver') {
          session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
          return;
        }
        handleSubmit(session, pdu);
        return;
      case 'unknown':
        stats.generic_nacks_sent++;
        log('session', id, 'unknown command_id 0x' + pdu.command_id.toString(16) + '; generic_nack');
        session.send(pdu.response()); // node-smpp: generic_nack, ESME_RINVCMDID
        return;
      default: {
        stats.unsupported_commands++;
        log('session', id, 'unsupported', pdu.command + '; answered ESME_RINVCMDID');
        if (smpp.commands[pdu.command + '_resp']) {
          session.send(pdu.response({ command_status: smpp.ESME_RINVCMDID }));
        } else {
          stats.generic_nacks_sent++;
          session.send(new smpp.PDU('generic_nack', { sequence_number: pdu.sequence_number,
            command_status: smpp.ESME_RINVCMDID }));
        }
      }
    }
  });
}

let boundWaiters = [];
function wakeBoundWaiters() {
  const n = receiverSessions().length;
  const tx = [...sessions].filter((s) => s.tg.bound && !s.tg.dropped).length;
  boundWaiters = boundWaiters.filter((w) => {
    if ((w.receiver ? n : tx) > 0) { w.resolve(); return false; }
    return true;
  });
}

// ---------------------------------------------------------------- MO texts

function encodePart(cmd, part) {
  const coding = cmd.coding || 'gsm7';
  const c = CODINGS[coding];
  if (!c) throw new Error('unknown coding ' + JSON.stringify(coding) + ' (gsm7|ucs2|latin1|binary)');
  let bytes;
  if (typeof part === 'object' && part !== null && part.hex !== undefined) bytes = Buffer.from(part.hex, 'hex');
  else if (typeof part === 'object' && part !== null && part.text !== undefined) part = part.text;
  if (!bytes) {
    if (typeof part !== 'string') throw new Error('a part is a string, {"text":..} or {"hex":..}');
    if (!c.encode) throw new Error('coding binary needs "hex"');
    bytes = c.encode(part);
  }
  return { bytes, dc: cmd.data_coding !== undefined ? cmd.data_coding : c.dc };
}

function splitText(cmd, text, udh16) {
  const coding = cmd.coding || 'gsm7';
  if (coding === 'gsm7') {
    const max = udh16 ? 152 : 153;
    const bytes = gsmEncode(text);
    const parts = [];
    let i = 0;
    while (i < bytes.length) {
      let end = Math.min(i + max, bytes.length);
      if (end < bytes.length && bytes[end - 1] === 0x1b) end--; // keep escape + char together
      parts.push({ hex: bytes.subarray(i, end).toString('hex') });
      i = end;
    }
    return parts;
  }
  if (coding === 'ucs2') {
    const max = udh16 ? 66 : 67;
    const parts = [];
    let i = 0;
    while (i < text.length) {
      let end = Math.min(i + max, text.length);
      const last = text.charCodeAt(end - 1);
      if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--; // never split a surrogate pair
      parts.push(text.slice(i, end));
      i = end;
    }
    return parts;
  }
  const max = udh16 ? 133 : 134;
  const bytes = coding === 'latin1' ? latin1Encode(text) : Buffer.from(text, 'hex');
  const parts = [];
  for (let i = 0; i < bytes.length; i += max) parts.push({ hex: bytes.subarray(i, i + max).toString('hex') });
  return parts;
}

let moRef = Math.floor(Math.random() * 200) + 20;

function moItems(cmd, multipart) {
  if (cmd.from === undefined || cmd.to === undefined) throw new Error('"from" and "to" are required');
  const src = addressFields(cmd.from, cmd.from_ton, cmd.from_npi);
  const dst = addressFields(cmd.to, cmd.to_ton, cmd.to_npi);
  const base = {
    service_type: cmd.service_type || '',
    source_addr_ton: src.ton, source_addr_npi: src.npi, source_addr: src.addr,
    dest_addr_ton: dst.ton, dest_addr_npi: dst.npi, destination_addr: dst.addr,
    protocol_id: cmd.protocol_id || 0,
  };
  const items = [];
  if (!multipart) {
    const { bytes, dc } = encodePart(cmd, cmd.hex !== undefined ? { hex: cmd.hex } : cmd.text);
    const opts = Object.assign({}, base, { esm_class: cmd.esm_class || 0, data_coding: dc });
    if (cmd.payload) { opts.short_message = Buffer.alloc(0); opts.message_payload = bytes; }
    else {
      if (bytes.length > 254) throw new Error('text is ' + bytes.length + ' octets; over 254 needs "payload":true or mo_multipart');
      opts.short_message = bytes;
    }
    items.push({ kind: 'mo', opts });
  } else {
    const udh16 = !!cmd.udh16;
    const sar = !!cmd.sar;
    let parts = cmd.parts;
    if (!parts) {
      if (typeof cmd.text !== 'string') throw new Error('mo_multipart needs "parts" or "text"');
      parts = splitText(cmd, cmd.text, udh16);
    }
    if (!Array.isArray(parts) || parts.length < 1) throw new Error('"parts" must be a non-empty array');
    const total = cmd.total !== undefined ? cmd.total : parts.length;
    const ref = cmd.ref !== undefined ? cmd.ref : (moRef++ & (udh16 ? 0xffff : 0xff));
    const built = parts.map((p, i) => {
      const { bytes, dc } = encodePart(cmd, p);
      const seq = i + 1;
      const opts = Object.assign({}, base, { data_coding: dc });
      if (sar) {
        opts.esm_class = 0;
        opts.short_message = bytes;
        opts.sar_msg_ref_num = ref & 0xffff;
        opts.sar_total_segments = total;
        opts.sar_segment_seqnum = seq;
      } else {
        const udh = udh16
          ? Buffer.from([0x06, 0x08, 0x04, (ref >> 8) & 0xff, ref & 0xff, total, seq])
          : Buffer.from([0x05, 0x00, 0x03, ref & 0xff, total, seq]);
        opts.esm_class = 0x40;
        opts.short_message = Buffer.concat([udh, bytes]);
      }
      if (opts.short_message.length > 254) throw new Error('part ' + seq + ' is ' + opts.short_message.length + ' octets (max 254)');
      return { kind: 'mo', opts, part: seq };
    });
    const order = cmd.order || built.map((_, i) => i);
    for (const i of order) {
      if (!built[i]) throw new Error('"order" index ' + i + ' out of range');
      items.push({ kind: 'mo', opts: built[i].opts, part: built[i].part });
    }
    items.ref = ref;
  }
  const repeat = cmd.repeat !== undefined ? cmd.repeat : 1;
  const out = [];
  for (let r = 0; r < repeat; r++) for (const it of items) out.push({ kind: 'mo', opts: it.opts, part: it.part });
  out.ref = items.ref;
  return out;
}

// ---------------------------------------------------------------- control

function statsSnapshot() {
  const bound = [...sessions].filter((s) => s.tg.bound && !s.tg.dropped);
  return Object.assign({}, stats, {
    bound_now: bound.length,
    receivers_bound_now: receiverSessions().length,
    deliver_pending: pending.length,
    deliver_outstanding: [...sessions].reduce((n, s) => n + s.tg.outstanding.size, 0),
  });
}

const SETTABLE = new Set(['throttle_every', 'queue_full_every', 'drop_after', 'receipt_delay',
  'receipt_before_resp', 'undeliverable_rate', 'undeliverable_prefix', 'resp_delay', 'id_format',
  'receipt_id_in_text', 'redeliver_delay', 'max_redeliveries', 'verbose']);

function handleCommand(line, reply) {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { reply({ ok: false, error: 'invalid JSON: ' + e.message }); return; }
  if (!cmd || typeof cmd !== 'object' || typeof cmd.cmd !== 'string') { reply({ ok: false, error: 'need {"cmd": ...}' }); return; }
  const r = (obj) => reply(Object.assign({ cmd: cmd.cmd }, cmd.id !== undefined ? { id: cmd.id } : {}, obj));
  try {
    switch (cmd.cmd) {
      case 'stats':
        r({ ok: true, stats: statsSnapshot() });
        return;
      case 'submits': {
        const since = cmd.since || 0;
        r({ ok: true, count: submits.length, submits: submits.slice(since) });
        return;
      }
      case 'sessions':
        r({ ok: true, sessions: [...sessions].map((s) => ({ id: s.tg.id, remote: s.tg.remote, bound: s.tg.bound,
          system_id: s.tg.systemId, outstanding: s.tg.outstanding.size })) });
        return;
      case 'mo':
      case 'mo_multipart': {
        const items = moItems(cmd, cmd.cmd === 'mo_multipart');
        const receivers = receiverSessions().length;
        const result = { ok: true, deliver_sm: items.length };
        if (items.ref !== undefined) result.ref = items.ref;
        if (!cmd.wait_ack) {
          items.forEach(enqueue);
          r(Object.assign(result, { receivers_bound: receivers, queued_for_later: receivers === 0 }));
          return;
        }
        const statuses = new Array(items.length).fill(null);
        let left = items.length;
        let finished = false;
        const timer = setTimeout(() => {
          if (finished) return;
          finished = true;
          r(Object.assign(result, { ok: false, error: 'timeout waiting for deliver_sm_resp', statuses }));
        }, cmd.timeout_ms || 10000);
        items.forEach((it, i) => {
          it.onDone = (d) => {
            statuses[i] = d.status;
            if (--left === 0 && !finished) {
              finished = true;
              clearTimeout(timer);
              r(Object.assign(result, { ok: statuses.every((s) => s === 0), statuses }));
            }
          };
          enqueue(it);
        });
        return;
      }
      case 'wait_bound': {
        const w = { receiver: cmd.receiver !== false };
        const timer = setTimeout(() => {
          boundWaiters = boundWaiters.filter((x) => x !== w);
          r({ ok: false, error: 'timeout waiting for a bind' });
        }, cmd.timeout_ms || 10000);
        w.resolve = () => { clearTimeout(timer); r({ ok: true, stats: statsSnapshot() }); };
        boundWaiters.push(w);
        wakeBoundWaiters();
        return;
      }
      case 'set': {
        const changed = {};
        for (const [k, v] of Object.entries(cmd)) {
          if (k === 'cmd' || k === 'id') continue;
          if (!SETTABLE.has(k)) throw new Error('cannot set ' + k);
          cfg[k] = v;
          changed[k] = v;
          if (k === 'throttle_every') counters.throttle = 0;
          if (k === 'queue_full_every') counters.queue_full = 0;
          if (k === 'drop_after') counters.drop = 0;
        }
        r({ ok: true, set: changed });
        return;
      }
      case 'drop': {
        const n = [...sessions].filter((s) => !s.tg.dropped).length;
        for (const s of [...sessions]) dropSession(s);
        r({ ok: true, dropped: n });
        return;
      }
      case 'unbind': {
        const bound = [...sessions].filter((s) => s.tg.bound && !s.tg.dropped);
        for (const s of bound) {
          s.unbind(() => { s.tg.bound = null; s.close(); });
        }
        r({ ok: true, unbound: bound.length });
        return;
      }
      case 'reset':
        stats = freshStats();
        stats.sessions_open = sessions.size;
        submits = [];
        r({ ok: true });
        return;
      case 'quit':
        r({ ok: true });
        shutdown(0);
        return;
      default:
        r({ ok: false, error: 'unknown command ' + JSON.stringify(cmd.cmd) });
    }
  } catch (e) {
    r({ ok: false, error: e.message });
  }
}

// ---------------------------------------------------------------- main

// With --tls-key and --tls-cert (PEM files) node-smpp serves SMPP over TLS.
const serverOptions = cfg.tls_key && cfg.tls_cert
  ? { key: fs.readFileSync(cfg.tls_key), cert: fs.readFileSync(cfg.tls_cert) }
  : {};
const server = smpp.createServer(serverOptions, onSession);
server.on('error', (e) => { log('server error:', e.message); process.exit(1); });

function shutdown(code) {
  for (const s of [...sessions]) s.socket.destroy();
  server.close();
  // let stdout drain before exiting
  process.stdout.write('', () => process.exit(code));
}

server.listen(cfg.port, cfg.host, () => {
  const port = server.address().port;
  log('listening on', cfg.host + ':' + port, 'system_id', JSON.stringify(cfg.system_id),
    'id format', cfg.id_format);
  process.stdout.write('SMSC listening on ' + port + '\n');
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    handleCommand(line, answer);
  });
  rl.on('close', () => {
    if (cfg.exit_on_stdin_eof) { log('stdin closed; exiting'); shutdown(0); }
  });
});

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
