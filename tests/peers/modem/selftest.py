#!/usr/bin/env python3
"""Self-test of the modem emulator: drives it through its pty with the standard library (os,
termios, select, socket) the way a driver would, and checks what comes back. PDUs for AT+CMGS are
built, and the PDUs the emulator sends are decoded, with python-gsmmodem-new (requirements.txt),
a third-party implementation, so the emulator's own PDU code is checked too.

    python3 tests/peers/modem/selftest.py [-v]

Exits non-zero on the first failed check; the last line is "selftest: N passed, 0 failed".
"""

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import termios
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import sms_pdu  # noqa: E402  (the emulator's codec: checked against real PDUs below)

try:
    from gsmmodem import pdu as gsmpdu
except ImportError:
    sys.exit("selftest needs python-gsmmodem-new: "
             "python3 -m pip install -r tests/peers/modem/requirements.txt")

VERBOSE = "-v" in sys.argv
PASSED = 0
FINALS = ("OK", "ERROR", "+CME ERROR:", "+CMS ERROR:")


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    global PASSED
    if not cond:
        raise Failure(f"{what}{': ' + str(detail) if detail else ''}")
    PASSED += 1
    if VERBOSE:
        print(f"  ok  {what}")


class Control:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.f = self.sock.makefile("rwb")

    def __call__(self, cmd, **kw):
        kw["cmd"] = cmd
        self.f.write(json.dumps(kw).encode() + b"\n")
        self.f.flush()
        resp = json.loads(self.f.readline())
        return resp

    def ok(self, cmd, **kw):
        r = self(cmd, **kw)
        check(r.get("ok"), f"control {cmd} ok", r)
        return r


class Port:
    """The driver side of the pty, with the standard library only."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[4] = attrs[5] = termios.B115200
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.buf = b""

    def close(self):
        os.close(self.fd)

    def write(self, data: bytes):
        os.write(self.fd, data)

    def read_some(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return b""
        data = os.read(self.fd, 4096)
        if not data:
            raise EOFError("pty hung up")
        self.buf += data
        return data

    def read_until(self, pred, timeout=3.0, what="data"):
        deadline = time.monotonic() + timeout
        while True:
            res = pred(self.buf)
            if res is not None and res is not False:
                return res
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"timeout waiting for {what}; got {self.buf!r}")
            self.read_some(left)

    def drain(self, quiet=0.15, most=2.0):
        """Reads until the line has been quiet for `quiet` seconds (at most `most` seconds);
        returns what came."""
        end = time.monotonic() + most
        while self.read_some(quiet) and time.monotonic() < end:
            pass
        data, self.buf = self.buf, b""
        return data

    def at(self, cmd, timeout=3.0, raw=False):
        """Sends one command line, returns (lines, final). Keeps URCs in the lines."""
        self.buf = b""
        self.write(cmd.encode("latin-1") + b"\r")

        def done(buf):
            lines = [x for x in buf.decode("latin-1").replace("\r\n", "\n").split("\n")]
            for i, x in enumerate(lines):
                x = x.strip("\r")
                if i < len(lines) - 1 and any(x.startswith(f) for f in FINALS):
                    return True
            return None
        self.read_until(done, timeout, f"final result of {cmd}")
        text = self.buf.decode("latin-1")
        self.buf = b""
        lines = [x.strip("\r") for x in text.replace("\r\n", "\n").split("\n")]
        lines = [x for x in lines if x]
        final = None
        for x in lines:
            if any(x.startswith(f) for f in FINALS):
                final = x
        body = [x for x in lines if x != final]
        if body and body[0].startswith(cmd[:2]) and body[0].rstrip("\r") == cmd:
            body = body[1:]    # the echo
        if raw:
            return text, final
        return body, final

    def ok(self, cmd, timeout=3.0):
        lines, final = self.at(cmd, timeout)
        check(final == "OK", f"{cmd} -> OK", (lines, final))
        return lines

    def wait_line(self, prefix, timeout=3.0):
        def find(buf):
            for x in buf.decode("latin-1").replace("\r\n", "\n").split("\n")[:-1]:
                if x.strip("\r").startswith(prefix):
                    return x.strip("\r")
            return None
        line = self.read_until(find, timeout, prefix)
        return line

    def send_pdu(self, pdu: str, length: int):
        """AT+CMGS=<length>, waits for the prompt, sends the PDU and Ctrl-Z."""
        self.buf = b""
        self.write(f"AT+CMGS={length}\r".encode())
        self.read_until(lambda b: b.endswith(b"> ") or b.endswith(b">\r\n") or None, 3,
                        "the > prompt")
        self.buf = b""
        self.write(pdu.encode() + b"\x1a")
        self.read_until(lambda b: any(f.encode() in b for f in FINALS) and b.endswith(b"\r\n")
                        or None, 5, "the +CMGS answer")
        text, self.buf = self.buf.decode("latin-1"), b""
        return [x for x in text.replace("\r\n", "\n").split("\n") if x]


def library_submit(to, text, reference=0, srr=True):
    pdus = gsmpdu.encodeSmsSubmitPdu(to, text, reference=reference, requestStatusReport=srr)
    return [(str(p), p.tpduLength) for p in pdus]


def test_codec_vectors():
    # Real PDUs from a modem trace in python-gsmmodem issue #44 (+CMGR, +CMGS=61, +CDS: 25).
    deliver = "0791198904100161240C911979099137640000511090718303220BC8B4421174CFD175D014"
    report = "079119890400202306400C91197909913764511090718384225110907183252200"
    submit = ("0021000C91197909913764000036D3E614242F8FCB697B99AC038964B058AD058BB5603950ECA"
              "69BE17433D80A56D3CD603A1032AD5004DD73741D341501")
    d = sms_pdu.decode_deliver(deliver)
    check(d["from"] == "+919790197346" and d["text"] == "Hi\n\nAnshu S", "codec: real DELIVER", d)
    import datetime as dt
    again, _ = sms_pdu.encode_deliver(d["from"], text=d["text"], sca=d["sca"], sri=True,
                                      scts=dt.datetime.fromisoformat(d["scts"]))
    check(again == deliver, "codec: DELIVER re-encodes byte for byte", again)
    r = sms_pdu.decode_status_report(report)
    check(r["mr"] == 64 and r["status"] == 0 and r["recipient"] == "+919790197346",
          "codec: real STATUS-REPORT", r)
    again, _ = sms_pdu.encode_status_report(
        r["mr"], r["recipient"], status=0, sca=r["sca"],
        scts=dt.datetime.fromisoformat(r["scts"]),
        discharge=dt.datetime.fromisoformat(r["discharge"]))
    check(again == report, "codec: STATUS-REPORT re-encodes byte for byte", again)
    s = sms_pdu.decode_submit(submit)
    check(s["tpdu_length"] == 61 and s["srr"] and s["to"] == "+919790197346",
          "codec: real SUBMIT (AT+CMGS=61)", s)
    # escapes at septet boundaries and fill bits: round trips through the library
    for text in ("€abcde", "[x]" * 60, "{}" * 100, "a" * 161, "@" * 7):
        for pdu, n in library_submit("+15551234567", text):
            dec = sms_pdu.decode_submit(pdu)
            check(dec["tpdu_length"] == n, f"codec: library SUBMIT length ({text[:8]!r})")
        joined = "".join(sms_pdu.decode_submit(p)["text"] for p, _ in
                         library_submit("+15551234567", text))
        check(joined == text, f"codec: library SUBMIT text ({text[:8]!r})", joined)
    # emulator DELIVERs decoded by the library
    for text, enc in (("Grüße [smoke] €", "gsm7"), ("Привет", "ucs2")):
        pdu, _ = sms_pdu.encode_deliver("ACME", encoding=enc, text=text)
        lib = gsmpdu.decodeSmsPdu(pdu)
        check(lib["text"] == text and lib["number"] == "ACME",
              f"codec: library decodes our {enc} DELIVER", lib)


def main():
    tmp = tempfile.mkdtemp(prefix="modem-selftest-")
    link = os.path.join(tmp, "ttyMODEM")
    errlog = open(os.path.join(tmp, "emulator.log"), "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "emulator.py"), "--link", link,
                             "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
    try:
        first = json.loads(proc.stdout.readline())
        check(set(first) >= {"tty", "control"} and first["tty"].startswith("/dev/pts/"),
              "start line", first)
        check(os.path.realpath(link) == first["tty"], "symlink points at the pts")
        run(first, link)
    except (Failure, EOFError, OSError, KeyError, ValueError) as e:
        errlog.flush()
        errlog.seek(0)
        sys.stderr.write(errlog.read()[-20000:])
        print(f"FAILED: {e}")
        print(f"selftest: {PASSED} passed, 1 failed")
        proc.kill()
        return 1
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    check(proc.returncode == 0, "emulator exited cleanly", proc.returncode)
    check(not os.path.lexists(link), "symlink removed on exit")
    print(f"selftest: {PASSED} passed, 0 failed")
    return 0


def run(first, link):
    test_codec_vectors()
    ctl = Control(first["control"])
    ctl.ok("ping")
    port = Port(link)

    # ---- init sequence
    text, final = port.at("AT", raw=True)
    check(text == "AT\r\r\nOK\r\n", "AT echoed (E1 at power-on) and OK", text)
    port.ok("ATE0")
    text, final = port.at("AT", raw=True)
    check(text == "\r\nOK\r\n", "no echo after ATE0", text)
    port.ok("AT+CMEE=1")
    check(port.ok("AT+CPIN?") == ["+CPIN: READY"], "+CPIN: READY")
    check(port.ok("AT+CMGF?") == ["+CMGF: 1"], "text mode at power-on")
    port.ok("AT+CMGF=0")
    check(port.ok("AT+CMGF?") == ["+CMGF: 0"], "PDU mode set")
    check(port.ok("AT+CSCA?") == ['+CSCA: "+15550000000",145'], "+CSCA?")
    port.ok("AT+CNMI=2,1,0,2,0")
    check(port.ok("AT+CNMI?") == ["+CNMI: 2,1,0,2,0"], "+CNMI?")
    check(port.ok('AT+CPMS="SM","SM","SM"') == ["+CPMS: 0,20,0,20,0,20"], "+CPMS set")
    check(port.ok("AT+CPMS?") == ['+CPMS: "SM",0,20,"SM",0,20,"SM",0,20'], "+CPMS?")
    check(port.ok("AT+CREG?") == ["+CREG: 0,1"], "+CREG?")
    check(port.ok("AT+CSQ") == ["+CSQ: 20,99"], "+CSQ")
    check(port.ok("AT+COPS?") == ['+COPS: 0,0,"Emulated Net"'], "+COPS? (SIM800: no AcT)")
    check(port.ok("ATI") == ["SIM800 R14.18"], "ATI")
    check(port.ok("AT+CGMI") == ["SIMCOM_Ltd"], "+CGMI")
    check(port.at("AT+NOSUCH")[1] == "ERROR", "unknown command -> ERROR")
    check(port.ok("AT+CMGF?;+CSQ") == ["+CMGF: 0", "+CSQ: 20,99"], "two commands on one line")
    port.buf = b""
    port.write(b"AT+C")
    time.sleep(0.2)
    port.write(b"SQ\r")
    port.wait_line("OK")
    check(b"+CSQ: 20,99" in port.buf, "a command in two writes", port.buf)
    port.buf = b""
    port.write(b"AT\rAT+CSQ\r\n")
    port.read_until(lambda b: b.count(b"OK\r\n") == 2 or None, 3, "two OKs")
    check(b"+CSQ: 20,99" in port.buf, "two command lines in one write (CR LF tolerated)")
    port.drain()
    ctl.ok("set", registered=5)
    check(port.ok("AT+CREG?") == ["+CREG: 0,5"], "roaming")
    ctl.ok("set", registered=1, signal=7, operator="Other")
    check(port.ok("AT+CSQ") == ["+CSQ: 7,99"], "signal setting")
    check(port.at("AT+CMGD=99")[1] == "+CMS ERROR: 321", "CMGD out of range -> 321")
    check(port.at("AT+CMGR=1")[1] == "+CMS ERROR: 321", "CMGR of an empty index -> 321")
    port.ok("AT+CMEE=2")
    check(port.at("AT+CMGR=1")[1] == "+CMS ERROR: invalid memory index", "verbose +CMEE=2")
    port.ok("AT+CMEE=0")
    check(port.at("AT+CMGR=1")[1] == "ERROR", "+CMEE=0: plain ERROR")
    port.ok("AT+CMEE=1")

    # ---- AT+CMGS with PDUs built by python-gsmmodem-new
    (pdu, n), = library_submit("+15551234567", "Hello from selftest [1]")
    lines = port.send_pdu(pdu, n)
    check("+CMGS: 1" in lines and lines[-1] == "OK", "CMGS -> +CMGS: 1", lines)
    sub = ctl.ok("submitted")["submitted"][-1]
    check(sub["outcome"] == "ok" and sub["mr"] == 1 and sub["to"] == "+15551234567"
          and sub["text"] == "Hello from selftest [1]" and sub["srr"] and sub["dcs"] == 0,
          "submitted record decoded", sub)
    check(sub["crosscheck"] and sub["crosscheck"]["agrees"], "library agrees", sub["crosscheck"])
    long_text = "Long message " + "0123456789" * 17
    parts = library_submit("+15551234567", long_text, reference=77)
    check(len(parts) == 2, "library made two parts")
    for pdu, n in parts:
        port.send_pdu(pdu, n)
    subs = ctl.ok("submitted", since=1)["submitted"]
    check([s["mr"] for s in subs] == [2, 3], "MRs increment", [s["mr"] for s in subs])
    check([(s["concat"]["ref"], s["concat"]["total"], s["concat"]["seq"]) for s in subs]
          == [(77, 2, 1), (77, 2, 2)], "UDH concat decoded", [s["concat"] for s in subs])
    check("".join(s["text"] for s in subs) == long_text, "concatenated text")
    (pdu, n), = library_submit("+15551234567", "Привет", srr=False)
    port.send_pdu(pdu, n)
    sub = ctl.ok("submitted")["submitted"][-1]
    check(sub["text"] == "Привет" and sub["encoding"] == "ucs2" and not sub["srr"], "UCS2", sub)
    (pdu, n), = library_submit("+15551234567", "wrong length")
    lines = port.send_pdu(pdu, n + 1)
    check(lines[-1] == "+CMS ERROR: 304", "wrong <length> -> +CMS ERROR: 304", lines)
    ctl.ok("set", cms_error=38)
    lines = port.send_pdu(pdu, n)
    check(lines[-1] == "+CMS ERROR: 38", "cms_error 38", lines)
    ctl.ok("set", next_mr=255)
    port.send_pdu(pdu, n)
    port.send_pdu(pdu, n)
    mrs = [s["mr"] for s in ctl.ok("submitted", ok_only=True)["submitted"][-2:]]
    check(mrs == [255, 0], "TP-MR wraps at 256", mrs)
    # the PDU sent together with the command line, before the prompt: aborted (V.250 5.6.1)
    port.buf = b""
    port.write(f"AT+CMGS={n}\r{pdu}\x1a".encode())
    port.wait_line("ERROR")
    port.drain()
    check(True, "PDU before the prompt -> ERROR")
    # ESC cancels
    port.buf = b""
    port.write(f"AT+CMGS={n}\r".encode())
    port.read_until(lambda b: b.endswith(b"> ") or None, 3, "prompt")
    port.write(pdu[:10].encode() + b"\x1b")
    port.wait_line("OK")
    port.drain()
    check(True, "ESC cancels the PDU entry")
    ctl.ok("set", prompt_style="gt_crlf")
    lines = port.send_pdu(pdu, n)
    check(lines[-1] == "OK", "prompt style \\r\\n>\\r\\n", lines)
    ctl.ok("set", prompt_style="crlf")

    # ---- +CMTI interleaved into the CMGS answer
    ctl.ok("interleave_next", **{"from": "+15550001111", "text": "sneaky"})
    port.buf = b""
    port.write(f"AT+CMGS={n}\r".encode())
    port.read_until(lambda b: b.endswith(b"> ") or None, 3, "prompt")
    port.buf = b""
    port.write(pdu.encode() + b"\x1a")
    raw = port.read_until(lambda b: b"OK\r\n" in b and b, 5, "CMGS answer").decode()
    port.buf = b""
    check(raw.index("+CMTI:") < raw.index("+CMGS:"), "+CMTI before +CMGS", raw)
    idx = int(raw.split("+CMTI: \"SM\",")[1].split("\r")[0])
    lines = port.ok(f"AT+CMGR={idx}")
    dec = gsmpdu.decodeSmsPdu(lines[1])
    check(dec["text"] == "sneaky" and lines[0] == f"+CMGR: 0,,{dec['tpdu_length']}",
          "interleaved message readable", lines)
    port.ok(f"AT+CMGD={idx}")

    # ---- inbound (+CMTI), read, delete
    r = ctl.ok("inbound", **{"from": "+15557654321", "text": "Grüße {€} @home", "mode": "cmti"})
    line = port.wait_line("+CMTI:")
    check(line.startswith('+CMTI: "SM",'), "+CMTI", line)
    idx = int(line.split(",")[1])
    lines = port.ok(f"AT+CMGR={idx}")
    check(lines[0].startswith("+CMGR: 0,,"), "+CMGR stat 0 (unread)", lines)
    lib = gsmpdu.decodeSmsPdu(lines[1])
    ours = sms_pdu.decode_deliver(lines[1])
    check(lib["text"] == "Grüße {€} @home" and lib["number"] == "+15557654321"
          and lib["type"] == "SMS-DELIVER", "library decodes the DELIVER", lib)
    check(int(lines[0].rsplit(",", 1)[1]) == lib["tpdu_length"] == ours["tpdu_length"],
          "+CMGR <length> is the TPDU length")
    check(port.ok(f"AT+CMGR={idx}")[0].startswith("+CMGR: 1,,"), "now REC READ")
    st = ctl.ok("storage")
    check(st["memories"]["SM"]["used"] == 1, "stored in SM", st["memories"]["SM"])
    port.ok(f"AT+CMGD={idx}")
    st = ctl.ok("storage")
    check(st["memories"]["SM"]["used"] == 0 and st["deleted"][-1]["read_before_delete"],
          "deleted after being read", st["deleted"][-1])

    # ---- a concatenated UCS2 inbound, listed with CMGL=4
    ctl.ok("inbound", **{"from": "ACME", "text": "Привет мир! " * 8, "encoding": "ucs2",
                         "ref": 9})
    port.wait_line('+CMTI: "SM",2', 3)
    port.drain()
    lines = port.ok("AT+CMGL=4")
    check(len(lines) == 4 and lines[0].startswith("+CMGL: 1,0,,"), "+CMGL listing", lines)
    got = [gsmpdu.decodeSmsPdu(lines[i]) for i in (1, 3)]
    cc = [[ie for ie in g["udh"] if hasattr(ie, "reference")][0] for g in got]
    check([(c.reference, c.parts, c.number) for c in cc] == [(9, 2, 1), (9, 2, 2)],
          "UDH of the parts (library)", [(c.reference, c.parts, c.number) for c in cc])
    check("".join(g["text"] for g in got) == "Привет мир! " * 8, "UCS2 parts join")
    check(port.ok("AT+CMGL=0") == [], "nothing unread after CMGL=4")
    port.ok("AT+CMGD=1,4")
    check(ctl.ok("storage")["memories"]["SM"]["used"] == 0, "CMGD=1,4 empties")

    # ---- +CMT with +CSMS=1: must be acknowledged
    check(port.ok("AT+CSMS=1") == ["+CSMS: 1,1,1"], "+CSMS=1")
    port.ok("AT+CNMI=2,2,0,1,0")
    ctl.ok("inbound", **{"from": "+15550002222", "text": "direct"})
    line = port.wait_line("+CMT:")
    port.read_until(lambda b: b.count(b"\r\n") >= 3 or None, 2, "the PDU line")
    pdu_line = [x for x in port.drain().decode().split("\r\n") if x and not x.startswith("+")][0]
    check(gsmpdu.decodeSmsPdu(pdu_line)["text"] == "direct"
          and line == f"+CMT: ,{gsmpdu.decodeSmsPdu(pdu_line)['tpdu_length']}", "+CMT", line)
    port.ok("AT+CNMA")
    ev = ctl.ok("events", kind="ack")["events"]
    check(len(ev) == 1, "ack recorded")
    check(port.at("AT+CNMA")[1] == "+CMS ERROR: 340", "second CNMA -> 340")
    # status report for MR 1 as +CDS, acknowledged too
    ctl.ok("report", mr=1, status=0)
    line = port.wait_line("+CDS:")
    port.read_until(lambda b: b.count(b"\r\n") >= 3 or None, 2, "the PDU line")
    pdu_line = [x for x in port.drain().decode().split("\r\n") if x and not x.startswith("+")][0]
    lib = gsmpdu.decodeSmsPdu(pdu_line)
    check(lib["type"] == "SMS-STATUS-REPORT" and lib["reference"] == 1 and lib["status"] == 0
          and lib["number"] == "+15551234567", "library decodes our +CDS report", lib)
    port.ok("AT+CNMA")
    # unacknowledged +CMT: 27.005 3.4.4 routing off, the network redelivers -> stored
    ctl.ok("set", cnma_timeout_ms=300, redeliver_ms=200)
    ctl.ok("inbound", **{"from": "+15550003333", "text": "never acked"})
    port.wait_line("+CMT:")
    ctl.ok("wait", event="ack_timeout", timeout_ms=3000)
    ctl.ok("wait", event="deliver", match={"delivered_as": "stored_silent"}, timeout_ms=3000)
    port.drain()
    check(port.ok("AT+CNMI?") == ["+CNMI: 2,0,0,0,0"], "CNMI mt/ds reset after the timeout")
    lines = port.ok("AT+CMGL=4")
    check(len(lines) == 2 and gsmpdu.decodeSmsPdu(lines[1])["text"] == "never acked",
          "unacked message found by the CMGL sweep", lines)
    port.ok("AT+CMGD=1,4")
    port.ok("AT+CSMS=0")
    port.ok("AT+CNMI=2,1,0,2,0")

    # ---- status report stored (+CDSI)
    ctl.ok("report", mr=2, status=0x46, mode="cdsi")
    line = port.wait_line("+CDSI:")
    idx = int(line.split(",")[1])
    lines = port.ok(f"AT+CMGR={idx}")
    lib = gsmpdu.decodeSmsPdu(lines[1])
    check(lib["reference"] == 2 and lib["status"] == 0x46, "+CDSI report readable", lib)
    port.ok(f"AT+CMGD={idx}")

    # ---- SIM full: the network keeps the message and retries once there is room
    ctl.ok("set", storage_size=1, retry_ms=100)
    ctl.ok("inbound", **{"from": "+15550004444", "text": "first"})
    first_idx = int(port.wait_line("+CMTI:").split(",")[1])
    port.drain()
    r = ctl.ok("inbound", **{"from": "+15550004444", "text": "second"})
    check(r["items"][0]["status"] == "queued", "second waits (SIM full)", r["items"][0])
    time.sleep(0.4)
    check(b"+CMTI" not in port.drain(), "no +CMTI while full")
    check(port.ok("AT+CPMS?") == ['+CPMS: "SM",1,1,"SM",1,1,"SM",1,1'], "CPMS shows full")
    port.ok(f"AT+CMGR={first_idx}")
    port.ok(f"AT+CMGD={first_idx}")
    line = port.wait_line("+CMTI:", 3)
    idx = int(line.split(",")[1])
    check(gsmpdu.decodeSmsPdu(port.ok(f"AT+CMGR={idx}")[1])["text"] == "second",
          "queued message delivered after the delete")
    port.ok(f"AT+CMGD={idx}")
    ctl.ok("set", storage_size=20)

    # ---- stored silently: only a CMGL sweep finds it
    ctl.ok("inbound", **{"from": "+15550005555", "text": "quiet", "mode": "stored_silent"})
    time.sleep(0.3)
    check(b"+CMTI" not in port.drain(), "stored_silent: no URC")
    lines = port.ok("AT+CMGL=4")
    check(len(lines) == 2 and gsmpdu.decodeSmsPdu(lines[1])["text"] == "quiet", "sweep finds it")
    port.ok("AT+CMGD=1,4")

    # ---- echo stuck on, silence
    ctl.ok("set", echo_stuck_on=True)
    port.ok("ATE0")
    text, _ = port.at("AT", raw=True)
    check(text.startswith("AT\r"), "echo goes on after ATE0 (echo_stuck_on)", text)
    ctl.ok("set", echo_stuck_on=False)
    port.ok("ATE0")
    ctl.ok("set", silent=True)
    port.buf = b""
    port.write(b"AT\r")
    time.sleep(0.5)
    check(port.drain() == b"", "silent modem answers nothing")
    ctl.ok("set", silent=False)
    port.ok("AT")

    # ---- reboot: state back to power-on defaults, SIMCom boot URCs
    ctl.ok("reboot")
    port.read_until(lambda b: b"SMS Ready" in b or None, 5, "boot URCs")
    boot = [x for x in port.drain().decode().split("\r\n") if x]
    check(boot == ["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"], "boot URCs",
          boot)
    text, _ = port.at("AT+CMGF?", raw=True)
    check(text.startswith("AT+CMGF?\r") and "+CMGF: 1" in text, "echo on, text mode again", text)
    check(port.ok("AT+CNMI?") == ["+CNMI: 0,0,0,0,0"], "CNMI off after reboot")
    # PIN
    ctl.ok("set", pin="1234")
    ctl.ok("reboot")
    port.read_until(lambda b: b"+CPIN: SIM PIN" in b or None, 5, "+CPIN: SIM PIN")
    port.drain()
    port.ok("ATE0")
    port.ok("AT+CMEE=1")
    check(port.ok("AT+CPIN?") == ["+CPIN: SIM PIN"], "SIM PIN needed")
    check(port.ok("AT+CREG?") == ["+CREG: 0,0"], "not registered while locked")
    check(port.at("AT+CMGL=4")[1] == "+CMS ERROR: 311", "SMS commands: 311 while locked")
    check(port.at('AT+CPIN="0000"')[1] == "+CME ERROR: 16", "wrong PIN -> +CME ERROR: 16")
    port.ok('AT+CPIN="1234"')
    port.wait_line("+CPIN: READY")
    port.read_until(lambda b: b"SMS Ready" in b or None, 3, "ready URCs")
    port.drain()
    time.sleep(0.3)
    check(port.ok("AT+CREG?") == ["+CREG: 0,1"], "registered after the PIN")
    ctl.ok("set", pin=None)
    port.ok("AT+CFUN=1,1")
    port.read_until(lambda b: b"SMS Ready" in b or None, 5, "boot URCs after AT+CFUN=1,1")
    port.drain()
    check(True, "AT+CFUN=1,1 reboots")

    # ---- vanish / reappear through the symlink
    ctl.ok("vanish")
    check(not os.path.lexists(link), "symlink gone while the port is away")
    hung = False
    try:
        port.write(b"AT\r")
        hung = port.read_some(1.0) == b""
    except (OSError, EOFError):
        hung = True
    check(hung, "the old fd hangs up")
    port.close()
    r = ctl.ok("reappear")
    check(os.path.realpath(link) == r["tty"], "symlink points at the new pts", r)
    time.sleep(0.6)
    port = Port(link)
    port.drain()
    text, _ = port.at("AT", raw=True)
    check(text == "AT\r\r\nOK\r\n", "new port answers, echo on (fresh boot)", text)
    check(port.ok("AT+CMGF?") == ["+CMGF: 1"], "fresh boot state after reappear")

    # ---- Huawei noise
    ctl.ok("set", profile="e3372", noise=True, noise_ms=60)
    time.sleep(0.6)
    noise = port.drain().decode()
    check("^RSSI:" in noise or "^MODE:" in noise or "^BOOT:" in noise, "Huawei noise", noise)
    port.ok("AT^CURC=0")
    port.drain()
    time.sleep(0.4)
    check(port.drain() == b"", "AT^CURC=0 stops it")

    # ---- more quirks
    quirks(ctl, port)
    port.close()
    ctl.ok("quit")


def quirks(ctl, port):
    ctl.ok("set", profile="ec25", noise=False)
    ctl.ok("reboot")
    port.read_until(lambda b: b"PB DONE" in b or None, 5, "Quectel boot URCs")
    boot = [x for x in port.drain().decode().split("\r\n") if x]
    check(boot == ["RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE",
                   "+QIND: PB DONE"], "Quectel boot URCs", boot)
    port.ok("ATE0")
    check(port.ok("AT+CPMS?") == ['+CPMS: "ME",0,50,"ME",0,50,"ME",0,50'], "Quectel: ME storage")
    check(port.ok("AT+CREG?") == ["+CREG: 0,2"], "still searching right after boot")
    deadline = time.monotonic() + 3
    while port.ok("AT+CREG?") != ["+CREG: 0,1"] and time.monotonic() < deadline:
        time.sleep(0.05)
    check(port.ok("AT+COPS?") == ['+COPS: 0,0,"Other",7'], "LTE AcT in +COPS")
    # the driver forgot AT+CMGF=0: in text mode AT+CMGS=<len> takes <len> as the number
    (pdu, n), = library_submit("+15551234567", "oops")
    port.buf = b""
    port.write(f"AT+CMGS={n}\r".encode())
    port.read_until(lambda b: b.endswith(b"> ") or None, 3, "prompt")
    port.write(pdu.encode() + b"\x1a")
    port.wait_line("OK")
    sub = ctl.ok("submitted")["submitted"][-1]
    check(sub["mode"] == "text" and sub["to"] == str(n) and sub["text"] == pdu,
          "text mode: the PDU goes out as text to <len>", sub)
    port.ok("AT+CMGF=0")
    # +CNMI <mode> 0 keeps URCs in the TA buffer, <mode> 2 with <bfr> 0 flushes them after OK
    port.ok("AT+CNMI=0,1,0,0,0")
    ctl.ok("inbound", **{"from": "+15550006666", "text": "buffered"})
    time.sleep(0.3)
    check(port.drain() == b"", "CNMI mode 0: no URC yet")
    text, _ = port.at("AT+CNMI=2,1,0,0,0", raw=True)
    if "+CMTI" not in text:
        text += port.drain().decode()
    check(text.startswith("\r\nOK\r\n") and '+CMTI: "ME",1' in text, "buffer flushed after OK",
          text)
    port.ok("AT+CMGD=1,4")
    # V0 numeric result codes, A/ repeat
    port.buf = b""
    port.write(b"ATV0\r")
    port.read_until(lambda b: b == b"0\r" or None, 2, "numeric OK")
    port.buf = b""
    port.write(b"AT+NOPE\r")
    port.read_until(lambda b: b == b"4\r" or None, 2, "numeric ERROR")
    port.buf = b""
    port.write(b"ATV1\r")
    port.wait_line("OK")
    port.ok("AT+CSQ")
    port.buf = b""
    port.write(b"A/")
    port.wait_line("OK")
    check(b"+CSQ: 7,99" in port.buf, "A/ repeats the last line", port.buf)
    port.drain()
    # bare prompt; a status report that overtakes +CMGS; storage numbered from 0
    ctl.ok("set", prompt_style="bare", index_base=0)
    port.ok("AT+CNMI=2,1,0,1,0")
    ctl.ok("interleave_next", what="report")
    port.buf = b""
    port.write(f"AT+CMGS={n}\r".encode())
    port.read_until(lambda b: b == b"> " or None, 3, "bare prompt")
    port.buf = b""
    port.write(pdu.encode() + b"\x1a")
    raw = port.read_until(lambda b: b"OK\r\n" in b and b, 5, "CMGS answer").decode()
    port.buf = b""
    mr = ctl.ok("submitted")["submitted"][-1]["mr"]
    check(raw.index("+CDS:") < raw.index(f"+CMGS: {mr}"), "report before +CMGS", raw)
    rep = [x for x in raw.split("\r\n") if x and not x.startswith("+") and x != "OK"][0]
    check(gsmpdu.decodeSmsPdu(rep)["reference"] == mr, "the report is for that MR")
    ctl.ok("inbound", **{"from": "+15550007777", "text": "zero"})
    check(port.wait_line("+CMTI:") == '+CMTI: "ME",0', "index 0 (index_base 0)")
    check(port.ok("AT+CMGR=0")[0].startswith("+CMGR: 0,,"), "CMGR=0 reads it")
    port.ok("AT+CMGD=0")


if __name__ == "__main__":
    sys.exit(main())
