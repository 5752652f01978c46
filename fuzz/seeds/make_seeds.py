#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/seeds/TARGET/ (run from anywhere; rerun after
changing an input format). The seeds are committed; fuzz/run passes them to every run next
to the corpus, which libFuzzer grows and `cargo fuzz cmin` shrinks."""

import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- SMPP 3.4 PDUs -------------------------------------------------------------------------

def pdu(command_id, body=b"", status=0, seq=1):
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def cstr(s):
    return s.encode() + b"\0"


def tlv(tag, value):
    return struct.pack(">HH", tag, len(value)) + value


def deliver_sm(src, dst, short_message, esm=0, dc=0, tlvs=b"", seq=1, src_ton=1, dst_ton=0):
    body = (
        cstr("")  # service_type
        + bytes([src_ton, 1]) + cstr(src)
        + bytes([dst_ton, 0]) + cstr(dst)
        + bytes([esm, 0, 0])  # esm_class, protocol_id, priority_flag
        + cstr("") + cstr("")  # schedule_delivery_time, validity_period
        + bytes([0, 0, dc, 0, len(short_message)])  # registered_delivery .. sm_length
        + short_message
        + tlvs
    )
    return pdu(0x00000005, body, seq=seq)


RECEIPT = "id:123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:Hello from textga"

# The first byte of an smpp_frame input picks the frame limit (even: 64 KiB).
frames = {
    "deliver_sm_text": deliver_sm("15551234567", "12345", b"Hello world"),
    "deliver_sm_receipt": deliver_sm("15551234567", "ACME", RECEIPT.encode(), esm=0x04),
    "deliver_sm_receipt_tlvs": deliver_sm(
        "15551234567", "ACME", RECEIPT.encode(), esm=0x04,
        tlvs=tlv(0x001E, cstr("0A1B2C")) + tlv(0x0427, b"\x02") + tlv(0x0423, b"\x03\x00\x1b"),
    ),
    "deliver_sm_udh_part": deliver_sm(
        "15551234567", "12345", bytes([5, 0, 3, 0x2A, 2, 1]) + b"first half ", esm=0x40,
    )
    + deliver_sm("15551234567", "12345", bytes([6, 8, 4, 0x01, 0x2A, 2, 2]) + b"second", esm=0x40, seq=2),
    "deliver_sm_sar": deliver_sm(
        "15551234567", "12345", b"part one",
        tlvs=tlv(0x020C, b"\x00\x07") + tlv(0x020E, b"\x02") + tlv(0x020F, b"\x01"),
    ),
    "deliver_sm_ucs2": deliver_sm("15551234567", "12345", "Привет 👋".encode("utf-16-be"), dc=0x08),
    "deliver_sm_payload": deliver_sm(
        "15551234567", "12345", b"", tlvs=tlv(0x0424, b"a message_payload longer than 160? no, but it is a payload"),
    ),
    "session_stream": pdu(0x00000015, seq=7)  # enquire_link
    + pdu(0x80000004, cstr("msg-0001"), seq=2)  # submit_sm_resp
    + pdu(0x80000000, status=0x58, seq=3)  # generic_nack, throttled
    + pdu(0x00000006, seq=9),  # unbind
    "malformed_then_good": pdu(0x00000199, seq=3)
    + struct.pack(">IIII", 19, 4, 0, 4) + b"xyz"
    + pdu(0x00000015, seq=5),
}
for name, data in frames.items():
    put("smpp_frame", name, b"\x00" + data)

# ---- receipts (arbitrary-derived: receipted_message_id, message_state, network_error_code:
# each a 0 byte for None; two id-format bytes; then the text, taking the rest) --------------

put("smpp_receipt", "appendix_b", b"\x00\x00\x00\x00\x00" + RECEIPT.encode())
put("smpp_receipt", "appendix_b_state_tlv", b"\x00\x01\x05\x00\x02\x03" + RECEIPT.encode())
put("smpp_receipt", "odd_vendor",
    b"\x00\x00\x00\x01\x02" + b"ID:0000012345,Submit_Date:2401011200;STAT:undeliv ERR:0x1B Text:hi id:x stat:x")
put("smpp_receipt", "hex_id", b"\x00\x00\x00\x02\x01id:0x00ff3a stat:EXPIRED")

# ---- short_message decoding: data_coding, alphabet selector, bytes -------------------------

put("smpp_text", "gsm7_escape", bytes([0x00, 0]) + b"Hi \x1b\x28\x1b\x65\x1b\x29")
put("smpp_text", "latin1", bytes([0x03, 1]) + "café".encode("latin-1"))
put("smpp_text", "ucs2_surrogates", bytes([0x08, 0]) + "Привет 👋".encode("utf-16-be"))
put("smpp_text", "udh8_gsm", bytes([0x00, 0, 5, 0, 3, 0x2A, 2, 1]) + b"first half ")
put("smpp_text", "udh16_ucs2", bytes([0x08, 0, 6, 8, 4, 0x01, 0x2A, 2, 2]) + "second".encode("utf-16-be"))
put("smpp_text", "dcs_class", bytes([0xF1, 2]) + b"flash")

# ---- reassembly (arbitrary-derived): timeout u16, max_pending u8, then ops ------------------

put("reassembly", "two_sets", bytes([0x60, 0xEA, 3]) + bytes(range(0, 64)))

# ---- SMTP: config bytes (max_message_bytes u16-ish, max_recipients, truncate, max_parts,
# tls_available, loopback), then chunks (a length byte, the bytes), and answer bytes where the
# session asks for something --------------------------------------------------------------

def chunks(*lines):
    out = b""
    for line in lines:
        line = line.encode() if isinstance(line, str) else line
        for i in range(0, len(line), 64):
            part = line[i:i + 64]
            out += bytes([len(part)]) + part
    return out


OWNER = b"\x00\x01" + b"\x07" + b"\x00" * 7  # the right answer, Some(owner id 7)
DELIVER = b"\x00\x01"  # the right answer, Stored(one id per text)
HEAD = bytes([0x10, 0x00, 3, 0, 2, 1, 1])  # 4096 bytes, 3 recipients, no truncate, 2 parts, TLS, loopback

put("smtp_session", "ehlo_mail_rcpt_data",
    HEAD
    + chunks("EHLO client.example.com\r\n", "MAIL FROM:<bob@example.com>\r\n")
    + OWNER
    + chunks("RCPT TO:<+15551234567@sms.example.com>\r\n", "DATA\r\n",
             "From: bob@example.com\r\nSubject: hi\r\n\r\nHello there\r\n.\r\n")
    + DELIVER
    + chunks("QUIT\r\n"))
put("smtp_session", "auth_plain_subject_mode",
    HEAD
    + chunks("EHLO c\r\n", "AUTH PLAIN AGJvYgBwdw==\r\n")
    + OWNER
    + chunks("MAIL FROM:<x@y.z> SIZE=100\r\nRCPT TO:<textmsg@example.com>\r\nDATA\r\n",
             "Subject: +15551234567, 5551234568\r\n\r\nBody\r\n-- \r\nsig\r\n.\r\n")
    + DELIVER
    + chunks("RSET\r\nNOOP\r\nQUIT\r\n"))
put("smtp_session", "auth_login_starttls",
    HEAD
    + chunks("EHLO c\r\nSTARTTLS\r\n")
    + b"\x01"  # TLS comes up
    + chunks("EHLO c\r\nAUTH LOGIN\r\n", "Ym9i\r\n", "cHc=\r\n")
    + OWNER
    + chunks("HELO c\r\nVRFY x\r\nBDAT 10 LAST\r\n"))

# ---- mail ------------------------------------------------------------------------------------

MULTIPART = """From: Bob <bob@example.com>
To: +15551234567@sms.example.com
Subject: =?UTF-8?B?SGVsbG8g8J+Riw==?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 at 10?

On Mon, 1 Jan 2024 at 10:00, Alice <alice@example.com> wrote:
> earlier
--=20
Bob
--alt
Content-Type: text/html; charset=UTF-8

<p>Caf&eacute; at 10?</p><blockquote>earlier</blockquote>
--alt--
--outer
Content-Type: application/pdf; name="a.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
""".replace("\n", "\r\n")
put("mime_text", "multipart", MULTIPART)
put("mime_text", "html_only",
    "Subject: html\r\nContent-Type: text/html\r\n\r\n<div>one</div><ul><li>two</li></ul><script>x()</script>&amp;&#x263A;")
put("mime_text", "base64_shift_jis",
    "Subject: =?Shift_JIS?B?grGC8YLJgr+CzQ==?=\r\nContent-Type: text/plain; charset=Shift_JIS\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\ngrGC8YLJgr+CzQ==\r\n")

# ---- CSV jobs: flags (1 dedupe, 2 template, 4 to_column=phone, 8 country US), max_parts,
# resume row, the template up to a NUL, then the file -------------------------------------------

put("csv_rows", "to_name_template",
    b"\x0b\x02\x00Hi {{name}}, see you {{ when }}\x00"
    b"to,name,when\n555-000-0001,Bob,today\n\n+15550000002,\"Ann\nLee\",\"Mon, 9am\"\n+15550000002,dup,x\n")
put("csv_rows", "body_column_crlf_bom",
    b"\x08\x01\x01\x00\xef\xbb\xbfphone, body \r\n+447700900123,hello\r\nbad,\"unclosed\r\n")
put("csv_rows", "phone_column", b"\x0c\x03\x02\x00phone,body,extra\n5551230000,x\n5551230001,y,z,w\n")
# Classic Mac line ends (a lone CR), with dedupe: every row used to be numbered 1.
put("csv_rows", "lone_cr_dedupe",
    b"\x09\x02\x01\x00to,body\r+15550000001,\"a\rb\"\r\r+15550000001,c\r+15550000003,d")

# ---- configuration: every TOML example in the docs ------------------------------------------

# Retry delays near Duration::MAX: backoff()'s jitter used to overflow and panic.
put("config", "huge_retry_backoff.toml",
    '[server]\nretry_backoff = "500000000000y"\nretry_backoff_max = "500000000000y"\n\n'
    '[[device]]\nname = "a"\nkind = "loopback"\n')

docs = os.path.join(ROOT, "docs")
for fname in sorted(os.listdir(docs)):
    if not fname.endswith(".md"):
        continue
    with open(os.path.join(docs, fname)) as f:
        text = f.read()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", text, re.S)):
        put("config", "%s_%d.toml" % (fname[:-3], i), block)
