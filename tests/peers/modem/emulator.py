#!/usr/bin/env python3
"""A GSM/LTE modem emulator on a pseudo-terminal, for textgate's modem-driver tests.

The AT side is the standard library only (pty, os, termios, fcntl, asyncio). PDUs are built and
decoded by sms_pdu.py beside this file (written from TS 23.040 / 23.038); each SMS-SUBMIT is also
decoded by python-gsmmodem-new when it is installed (requirements.txt), as a second opinion.

stdout: exactly one JSON line once the pty and the control port are ready,
    {"tty": "/dev/pts/N", "control": PORT, "link": PATH-or-null, "pid": PID}
and nothing else. Logs (every chunk in and out of the pty, every control request) go to stderr.
The control channel is TCP on 127.0.0.1: one JSON object per line in, one JSON line out.
README.md beside this file lists every command, option and modem behaviour with its source.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import fcntl
import json
import os
import pty
import random
import signal
import sys
import termios
import threading
import time
import tty

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sms_pdu as P  # noqa: E402

try:  # the pip requirement: a third-party decoder as a second opinion on every SMS-SUBMIT
    from gsmmodem import pdu as _gsmlib  # type: ignore
except Exception:  # pragma: no cover - optional
    _gsmlib = None

CTRL_Z, ESC = 0x1A, 0x1B

# ------------------------------------------------------------------------------------- profiles
# Identity strings, boot sequences and noise per modem family. Sources in README.md.
PROFILES = {
    "sim800": {
        "manufacturer": "SIMCOM_Ltd", "model": "SIMCOM_SIM800L",
        "revision": "Revision:1418B04SIM800L24", "ati": ["SIM800 R14.18"],
        "boot": ["RDY", "+CFUN: 1", "{cpin}"], "ready": ["Call Ready", "SMS Ready"],
        "act": None, "mem": "SM", "cscs": "IRA",
        "noise": ["+CSQN: {rssi},0"], "mem_full_urc": None,
    },
    "sim7600": {
        "manufacturer": "SIMCOM INCORPORATED", "model": "SIMCOM_SIM7600E-H",
        "revision": "+CGMR: LE20B04SIM7600M22", "ati": [
            "Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600E-H",
            "Revision: SIM7600M22_V2.0", "IMEI: {imei}", "+GCAP: +CGSM"],
        "boot": ["RDY", "{cpin}"], "ready": ["SMS DONE", "PB DONE"],
        "act": 7, "mem": "SM", "cscs": "IRA",
        "noise": [], "mem_full_urc": None,
    },
    "ec25": {
        "manufacturer": "Quectel", "model": "EC25", "revision": "EC25EFAR06A06M4G",
        "ati": ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"],
        "boot": ["RDY", "+CFUN: 1", "{cpin}"],
        "ready": ["+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"],
        "act": 7, "mem": "ME", "cscs": "GSM",
        "noise": ['+QIND: "csq",{rssi},99'], "mem_full_urc": '+QIND: "smsfull","{mem}"',
    },
    "e3372": {
        "manufacturer": "huawei", "model": "E3372", "revision": "21.200.07.00.00",
        "ati": ["Manufacturer: huawei", "Model: E3372", "Revision: 21.200.07.00.00",
                "IMEI: {imei}", "+GCAP: +CGSM,+DS,+ES"],
        "boot": [], "ready": [],
        "act": 7, "mem": "SM", "cscs": "IRA",
        "noise": ["^RSSI:{rssi}", "^MODE:5,4", "^BOOT:20952155,0,0,0,72",
                  "^DSFLOWRPT:0000003C,00000000,00000000,0000000000000000,0000000000000000,"
                  "0003E800,0003E800"],
        "mem_full_urc": '^SMMEMFULL: "{mem}"',
    },
}

DEFAULT_CFG = {
    "profile": "sim800",
    "pin": None,                 # PIN the SIM asks for ("1234"); None: no PIN lock
    "puk": "12345678",
    "echo_stuck_on": False,
    "cms_error": [],             # +CMS ERROR codes for the next AT+CMGS attempts, in order
    "slow_ms": 0,
    "silent": False,
    "registered": 1,             # +CREG <stat>: 0 not, 1 home, 2 searching, 3 denied, 5 roaming
    "signal": 20,                # +CSQ rssi 0..31, 99 unknown
    "operator": "Emulated Net",
    "storage_size": 20,          # capacity of "SM"
    "me_size": 50,               # capacity of "ME" (and "MT", an alias of it here)
    "sr_size": 20,               # capacity of "SR" (status reports, with report_storage "SR")
    "prompt_style": "crlf",      # crlf "\r\n> " | bare "> " | gt_crlf "\r\n>\r\n" | blank_line
    "prompt_delay_ms": 20,
    "early_input": "abort",      # bytes before the prompt: abort (V.250 5.6.1) | accept
    "noise": False,
    "noise_ms": 700,
    "cnma_timeout_ms": 3000,
    "ack_timeout_action": "spec",  # spec: 27.005 3.4.4 (CNMI mt=ds=0, redeliver) | redeliver
    "redeliver_ms": 1000,
    "retry_ms": 300,
    "send_delay_ms": 50,
    "boot_ms": 300,
    "ready_ms": 200,
    "reg_delay_ms": 200,
    "boot_cmgf": 1,              # the stored profile's +CMGF at power-on (27.005 default is 0)
    "index_base": 1,             # 0 for modems that number storage from 0 (Quectel BG96)
    "report_storage": "mem3",    # where <ds>=2 stores status reports: mem3 | SR
    "cdsi_label": None,          # memory name printed in +CDSI (None: the real one)
    "cmti_label": None,          # memory name printed in +CMTI (None: the real one)
    "eol": "crlf",               # crlf | lf (a naked LF in place of every CR LF of the framing)
    "cms_always": False,         # +CMS ERROR even with +CMEE=0 (otherwise plain ERROR)
    "mr_from_pdu": False,        # use the TE's TP-MR instead of the modem's counter
    "auto_report_ms": None,      # send a status report this long after each SRR submit
    "auto_report_status": 0,
    "smsc": "+15550000000",
    "mem_full_urc": None,        # None: the profile's; "" none; or a format with {mem}
    "noise_lines": None,         # None: the profile's noise URCs; or a list ({rssi} filled in)
    "tz_quarters": 0,            # time zone of SCTS/DT stamps, in quarter hours
}

CMS_TEXT = {
    21: "Short message transfer rejected", 38: "Network out of order",
    42: "Congestion", 300: "ME failure", 301: "SMS service of ME reserved",
    302: "operation not allowed", 303: "operation not supported",
    304: "invalid PDU mode parameter", 305: "invalid text mode parameter",
    310: "SIM not inserted", 311: "SIM PIN required", 313: "SIM failure", 314: "SIM busy",
    316: "SIM PUK required", 320: "memory failure", 321: "invalid memory index",
    322: "memory full", 330: "SMSC address unknown", 331: "no network service",
    332: "network timeout", 340: "no +CNMA acknowledgement expected", 500: "unknown error",
}
CME_TEXT = {
    0: "phone failure", 3: "operation not allowed", 4: "operation not supported",
    10: "SIM not inserted", 11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure",
    14: "SIM busy", 16: "incorrect password", 21: "invalid index", 30: "no network service",
    100: "unknown",
}
STAT_TEXT = {0: "REC UNREAD", 1: "REC READ", 2: "STO UNSENT", 3: "STO SENT", 4: "ALL"}
STAT_BY_TEXT = {v: k for k, v in STAT_TEXT.items()}

IMEI = "490154203237518"
IMSI = "001010123456789"
ICCID = "8901410321111851072"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def log(msg: str) -> None:
    t = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    sys.stderr.write(f"[modem {stamp}] {msg}\n")
    sys.stderr.flush()


class AtError(Exception):
    pass


class CmeError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class CmsError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Prompt:
    """A handler's way of saying: give the "> " prompt and collect a PDU / text."""

    def __init__(self, mode, length=None, da=None, toda=None):
        self.mode, self.length, self.da, self.toda = mode, length, da, toda


class Arg(str):
    quoted = False


def split_args(s: str) -> list:
    """'"SM","ME",3,,x' -> [Arg('SM'), Arg('ME'), Arg('3'), None, Arg('x')] (quotes removed)."""
    out, cur, inq, quoted, touched = [], [], False, False, False
    for ch in s:
        if ch == '"':
            inq = not inq
            quoted = touched = True
            continue
        if ch == "," and not inq:
            out.append(_mk_arg(cur, quoted, touched))
            cur, quoted, touched = [], False, False
            continue
        cur.append(ch)
        touched = True
    out.append(_mk_arg(cur, quoted, touched))
    return out


def _mk_arg(cur, quoted, touched):
    text = "".join(cur)
    if not quoted:
        text = text.strip()
        if not text:
            return None
    a = Arg(text)
    a.quoted = quoted
    return a


def int_arg(args, i, default=None, lo=None, hi=None):
    if i >= len(args) or args[i] is None:
        if default is None:
            raise AtError()
        return default
    try:
        v = int(args[i])
    except ValueError:
        raise AtError() from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise AtError()
    return v


def split_commands(body: str):
    """The commands of one command line after "AT" (V.250 5.2): basic commands run together
    (E0V1), extended ones (+CMGF=0) separated by ';'. None on a syntax error."""
    cmds = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c in " ;":
            i += 1
            continue
        if c in "+^$#%*!":
            j, inq = i + 1, False
            while j < n and (inq or body[j] != ";"):
                if body[j] == '"':
                    inq = not inq
                j += 1
            cmds.append(("ext", body[i:j].strip()))
            i = j
        elif c == "&":
            j = i + 2
            while j < n and body[j].isdigit():
                j += 1
            cmds.append(("basic", body[i:j]))
            i = j
        elif c in "Ss" and i + 1 < n and body[i + 1].isdigit():
            j = i + 1
            while j < n and body[j].isdigit():
                j += 1
            if j < n and body[j] == "?":
                j += 1
            elif j < n and body[j] == "=":
                j += 1
                while j < n and body[j].isdigit():
                    j += 1
            cmds.append(("basic", body[i:j]))
            i = j
        elif c in "Dd":
            cmds.append(("basic", body[i:]))
            break
        elif c.isalpha():
            j = i + 1
            while j < n and body[j].isdigit():
                j += 1
            cmds.append(("basic", body[i:j]))
            i = j
        else:
            return None
    return cmds


# ------------------------------------------------------------------------------------- storage

class Memory:
    def __init__(self, name: str, capacity: int, base: int):
        self.name, self.capacity, self.base = name, capacity, base
        self.slots: dict[int, dict] = {}

    def indices(self):
        return range(self.base, self.base + self.capacity)

    def used(self):
        return len(self.slots)

    def store(self, entry: dict):
        for i in self.indices():
            if i not in self.slots:
                entry["index"] = i
                entry["mem"] = self.name
                self.slots[i] = entry
                return i
        return None


# ------------------------------------------------------------------------------------- modem

class Modem:
    def __init__(self, args):
        self.args = args
        self.loop = asyncio.get_event_loop()
        self.cfg = dict(DEFAULT_CFG)
        self.cfg["profile"] = args.profile
        self.cfg["pin"] = args.pin
        if args.storage_size is not None:
            self.cfg["storage_size"] = args.storage_size
        self.cfg["noise"] = args.noise
        self.rng = random.Random(args.seed)
        self.link = args.link
        self.master = self.slave = None
        self.tty_name = None
        self.present = False
        self.mems = {"SM": Memory("SM", self.cfg["storage_size"], 1),
                     "ME": Memory("ME", self.cfg["me_size"], 1),
                     "SR": Memory("SR", self.cfg["sr_size"], 1)}
        self.deleted: list[dict] = []
        self.submits: list[dict] = []
        self.events: list[dict] = []
        self.transcript = collections.deque(maxlen=5000)
        self.net_items: list[dict] = []     # every inbound SMS / status report, in arrival order
        self.net_queue: list[dict] = []     # those the network has not delivered yet
        self.awaiting_ack = None
        self.interleave = None
        self.next_mr = 1
        self.concat_ref = self.rng.randrange(256)
        self.gen = 0
        self.rx = bytearray()
        self.rx_event = asyncio.Event()
        self.sim_state = "READY"
        self.pin_attempts = 3
        self.saved = {"echo": True, "verbose": True, "quiet": False, "cmee": 0,
                      "cmgf": None}   # AT&W profile; cmgf None: take boot_cmgf
        self.full_notified = set()
        self.echo_stuck = False
        self.echo_pending = bytearray()
        self.reset_state(boot=False)
        self.booting = False
        self.registering = False

    # ---------------------------------------------------------------- state

    @property
    def profile(self):
        return PROFILES[self.cfg["profile"]]

    def reset_state(self, boot=True):
        """Power-on defaults (what a reboot leaves): echo on, text mode, CNMI off, CMEE 0."""
        s = self.saved
        self.echo = s["echo"]
        self.verbose = s["verbose"]
        self.quiet = s["quiet"]
        self.cmee = s["cmee"]
        self.cmgf = s["cmgf"] if s["cmgf"] is not None else self.cfg["boot_cmgf"]
        self.cnmi = [0, 0, 0, 0, 0]
        self.urc_buffer: list[str] = []
        self.csms = 0
        self.cscs = self.profile["cscs"]
        self.csmp = [17, 167, 0, 0]
        self.csca = (self.cfg["smsc"], 145)
        mem = self.profile["mem"]
        self.cpms = [mem, mem, mem]
        self.creg_n = self.cgreg_n = self.cereg_n = 0
        self.cops_format = 0
        self.cfun = 1
        self.state = "cmd"          # cmd | pdu | text (after the prompt)
        self.line = bytearray()
        self.last_line = ""
        self.last_was_cr = False
        self.pdu_buf = bytearray()
        self.prompt = None
        self.busy = False
        if self.cfg["pin"]:
            self.sim_state = "SIM PIN"
            self.pin_attempts = 3
        else:
            self.sim_state = "READY"
        self.last_reg = None

    def sim_ready(self):
        return self.sim_state == "READY"

    def reg_stat(self):
        if not self.sim_ready() or self.cfun != 1 or not self.present:
            return 0
        if self.registering:
            return 2
        return int(self.cfg["registered"])

    def registered(self):
        return self.reg_stat() in (1, 5)

    def can_receive(self):
        return (self.present and not self.booting and not self.cfg["silent"]
                and self.registered())

    def mem(self, label: str) -> Memory:
        return self.mems["ME" if label == "MT" else label]

    def event(self, kind, **kw):
        e = {"n": len(self.events), "t": now_iso(), "kind": kind}
        e.update(kw)
        self.events.append(e)
        if len(self.events) > 50000:
            del self.events[:10000]
        return e

    # ---------------------------------------------------------------- pty

    def open_port(self):
        m, s = pty.openpty()
        tty.setraw(s)                      # raw: no echo, no line editing by the tty layer
        attrs = termios.tcgetattr(s)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG)
        termios.tcsetattr(s, termios.TCSANOW, attrs)
        os.set_blocking(m, False)
        self.master, self.slave = m, s
        self.tty_name = os.ttyname(s)
        self.present = True
        self.loop.add_reader(m, self.on_readable)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(self.tty_name, tmp)
            os.replace(tmp, self.link)
        log(f"port open: {self.tty_name}" + (f" (link {self.link})" if self.link else ""))

    def close_port(self):
        if self.master is None:
            return
        self.loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.slave = None
        self.present = False
        if self.link:
            try:
                if os.path.islink(self.link):
                    os.unlink(self.link)
            except OSError:
                pass
        log(f"port closed: {self.tty_name}")

    def clear_exclusive(self):
        # A serial library may set TIOCEXCL on the slave; as this process keeps the slave open,
        # the flag would outlive the driver's close and block its reopen (EBUSY for non-root).
        if self.slave is not None:
            try:
                fcntl.ioctl(self.slave, getattr(termios, "TIOCNXCL", 0x540D))
            except OSError:
                pass

    def on_readable(self):
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log(f"read error on master: {e}")
            return
        if not data:
            return
        self.transcript.append((now_iso(), "in", data.decode("latin-1")))
        if self.cfg["silent"]:
            log(f"<- {data!r} (silent: ignored)")
            return
        if self.booting:
            log(f"<- {data!r} (booting: ignored)")
            return
        log(f"<- {data!r}")
        self.rx += data
        self.rx_event.set()

    def flush_echo(self):
        if self.echo_pending:
            data = bytes(self.echo_pending)
            self.echo_pending.clear()
            self.raw_write(data, " [echo]")

    def raw_write(self, data: bytes, what="") -> None:
        if what != " [echo]":
            self.flush_echo()
        if not self.present or self.master is None:
            log(f"-> {data!r} dropped (port absent){what}")
            return
        self.transcript.append((now_iso(), "out", data.decode("latin-1")))
        log(f"-> {data!r}{what}")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                log(f"   {len(view)} bytes dropped: nobody is reading the tty")
                return
            except OSError as e:
                log(f"   write error: {e}")
                return
            view = view[n:]

    def nl(self):
        return "\n" if self.cfg["eol"] == "lf" else "\r\n"

    def frame_info(self, lines) -> str:
        nl = self.nl()
        if self.verbose:
            return nl + nl.join(lines) + nl
        return nl.join(lines) + nl

    def frame_final(self, code: str) -> str:
        nl = self.nl()
        if self.quiet:
            return ""
        if self.verbose:
            return nl + code + nl
        numeric = {"OK": "0", "ERROR": "4"}
        return (numeric[code] + "\r") if code in numeric else (code + nl)

    def write_str(self, s: str, what=""):
        if s:
            self.raw_write(s.encode("latin-1", errors="replace"), what)

    def urc(self, line: str, sms=False):
        """An unsolicited result code. SMS ones obey +CNMI <mode> 0 (kept in the TA buffer)."""
        if self.cfg["silent"] or self.booting or not self.present:
            log(f"URC {line!r} dropped (modem {'silent' if self.cfg['silent'] else 'off'})")
            return
        if sms and self.cnmi[0] == 0:
            self.urc_buffer.append(line)
            log(f"URC {line!r} buffered (+CNMI mode 0)")
            return
        self.event("urc", text=line)
        self.write_str(self.frame_info([line]), " [URC]")

    # ---------------------------------------------------------------- AT input

    async def at_loop(self):
        while True:
            await self.rx_event.wait()
            while self.rx:
                b = self.rx[0]
                del self.rx[0]
                try:
                    await self.feed(b)
                except Exception as e:  # keep the modem alive whatever happens
                    log(f"internal error: {e!r}")
                    import traceback
                    traceback.print_exc(file=sys.stderr)
            self.flush_echo()
            self.rx_event.clear()

    def do_echo(self, b: bytes):
        if self.echo or self.echo_stuck:
            self.echo_pending += b

    async def feed(self, b: int):
        if self.state == "cmd":
            if b == 0x0A and self.last_was_cr:
                self.last_was_cr = False
                return                       # LF after CR: tolerated, not echoed
            self.last_was_cr = False
            if b in (CTRL_Z, ESC):
                self.line.clear()            # a stray ^Z/ESC abandons the line
                return
            if b == 0x0D:
                self.do_echo(b"\r")
                self.last_was_cr = True
                line = self.line.decode("latin-1")
                self.line.clear()
                await self.execute_line(line)
                return
            if b in (0x08, 0x7F):
                self.do_echo(bytes([b]))
                if self.line:
                    self.line.pop()
                return
            if b == 0x0A:
                self.do_echo(b"\n")
                return
            self.do_echo(bytes([b]))
            self.line.append(b)
            if len(self.line) >= 2 and self.line[-2:].upper() == b"A/" \
                    and not self.line[:-2].strip():
                self.line.clear()
                if self.last_line:
                    await self.execute_line(self.last_line, repeat=True)
                return
            if len(self.line) > 600:
                self.line.clear()
                self.write_str(self.frame_final("ERROR"))
            return
        # pdu / text entry after the prompt
        if b == CTRL_Z:
            await self.finish_entry()
        elif b == ESC:
            self.state = "cmd"
            self.pdu_buf.clear()
            self.event("cmgs_cancelled")
            self.write_str(self.frame_final("OK"), " [ESC: sending cancelled]")
        elif self.state == "text" and b == 0x0D:
            self.do_echo(b"\r")
            self.pdu_buf.append(b)
            self.write_str(self.prompt_text(), " [prompt]")
        elif self.state == "text" and b in (0x08, 0x7F):
            self.do_echo(bytes([b]))
            if self.pdu_buf:
                self.pdu_buf.pop()
        else:
            self.do_echo(bytes([b]))
            self.pdu_buf.append(b)

    def prompt_text(self):
        return {"crlf": "\r\n> ", "bare": "> ", "gt_crlf": "\r\n>\r\n",
                "blank_line": "\r\n\r\n> "}[self.cfg["prompt_style"]]

    async def execute_line(self, line: str, repeat=False):
        self.flush_echo()
        gen = self.gen
        up = line.upper()
        k = up.find("AT")
        if k < 0:
            if line.strip():
                log(f"line {line!r} has no AT prefix: ignored")
            return
        line = line[k:]
        if not repeat:
            self.last_line = line
        body = line[2:]
        cmds = split_commands(body)
        self.busy = True
        try:
            out = []
            final = "OK"
            after = None
            prompt = None
            if cmds is None:
                final = "ERROR"
                cmds = []
            for kind, text in cmds:
                self.event("command", text="AT" + text)
                try:
                    res = self.run_command(kind, text)
                except AtError:
                    final = "ERROR"
                    break
                except CmeError as e:
                    final = self.cme_text(e.code)
                    break
                except CmsError as e:
                    final = self.cms_text(e.code)
                    break
                except Exception as e:  # a bug here: answer ERROR, keep going
                    log(f"internal error in AT{text}: {e!r}")
                    import traceback
                    traceback.print_exc(file=sys.stderr)
                    final = "ERROR"
                    break
                if isinstance(res, Prompt):
                    prompt = res
                    break
                if isinstance(res, tuple):
                    lines, after = res
                else:
                    lines = res
                if lines:
                    out.append(self.frame_info(lines))
            if self.cfg["slow_ms"]:
                await asyncio.sleep(self.cfg["slow_ms"] / 1000)
                if gen != self.gen:
                    return
            if prompt is not None:
                if out:
                    self.write_str("".join(out))
                await self.give_prompt(prompt, gen)
                return
            self.write_str("".join(out) + self.frame_final(final))
            if after:
                after()
        finally:
            if gen == self.gen and self.state == "cmd":
                self.busy = False

    def cme_text(self, code):
        if self.cmee == 0:
            return "ERROR"
        if self.cmee == 2:
            return f"+CME ERROR: {CME_TEXT.get(code, code)}"
        return f"+CME ERROR: {code}"

    def cms_text(self, code):
        if self.cmee == 0 and not self.cfg["cms_always"]:
            return "ERROR"
        if self.cmee == 2:
            return f"+CMS ERROR: {CMS_TEXT.get(code, code)}"
        return f"+CMS ERROR: {code}"

    async def give_prompt(self, prompt: Prompt, gen):
        self.prompt = prompt
        if self.cfg["prompt_delay_ms"]:
            await asyncio.sleep(self.cfg["prompt_delay_ms"] / 1000)
            if gen != self.gen:
                return
        if self.rx[:1] == b"\n" and self.last_was_cr:
            del self.rx[0]                   # the LF of a CR LF terminator
            self.last_was_cr = False
        if self.rx and self.cfg["early_input"] == "abort":
            # V.250 5.6.1: any character received before the prompt aborts the command.
            log(f"{len(self.rx)} byte(s) arrived before the prompt: AT+CMGS aborted")
            self.event("cmgs_aborted", reason="input before the prompt")
            self.write_str(self.frame_final("ERROR"))
            self.prompt = None
            return
        self.pdu_buf.clear()
        self.state = "text" if prompt.mode == "text" else "pdu"
        self.write_str(self.prompt_text(), " [prompt]")

    # ---------------------------------------------------------------- command dispatch

    def run_command(self, kind, text):
        if kind == "basic":
            return self.basic(text)
        name, op, argstr = text, "exec", ""
        for i, ch in enumerate(text):
            if ch in "=?":
                name = text[:i]
                rest = text[i:]
                if rest.startswith("=?"):
                    op = "test"
                elif rest.startswith("?"):
                    op = "read"
                else:
                    op, argstr = "set", rest[1:]
                break
        name = name.upper()
        handler = getattr(self, "c_" + name[1:].replace("&", "_"), None) \
            if name[0] == "+" else getattr(self, "h_" + name[1:], None) if name[0] == "^" \
            else None
        if handler is None:
            raise AtError()
        args = split_args(argstr) if op == "set" else []
        return handler(op, args)

    def basic(self, text):
        c = text[0].upper()
        rest = text[1:]
        if c == "&":
            c2 = rest[:1].upper()
            if c2 == "F":
                self.saved = {"echo": True, "verbose": True, "quiet": False, "cmee": 0,
                              "cmgf": 0}
                self.echo, self.verbose, self.quiet, self.cmee, self.cmgf = True, True, \
                    False, 0, 0
                return []
            if c2 == "W":
                self.saved = {"echo": self.echo, "verbose": self.verbose, "quiet": self.quiet,
                              "cmee": self.cmee, "cmgf": self.cmgf}
                return []
            if c2 == "V":
                return [f"E{int(self.echo)} Q{int(self.quiet)} V{int(self.verbose)} "
                        f"&C1 &D2 S0:0 S3:13 S4:10 S5:8"]
            if c2 in ("C", "D", "K", "S"):
                return []
            raise AtError()
        num = int(rest) if rest.isdigit() else 0
        if c == "E":
            if num not in (0, 1):
                raise AtError()
            if num == 0 and self.cfg["echo_stuck_on"]:
                self.echo_stuck = True       # accepted, but the echo goes on
            else:
                self.echo_stuck = False
            self.echo = bool(num)
            return []
        if c == "V":
            self.verbose = bool(num)
            return []
        if c == "Q":
            self.quiet = bool(num)
            return []
        if c == "Z":
            s = self.saved
            self.echo, self.verbose, self.quiet, self.cmee = s["echo"], s["verbose"], \
                s["quiet"], s["cmee"]
            self.echo_stuck = False
            return []
        if c == "I":
            return [x.format(imei=IMEI) for x in self.profile["ati"]]
        if c == "S":
            if "?" in rest:
                value = {0: 0, 3: 13, 4: 10, 5: 8}.get(int(rest[:-1]), 0)
                return [f"{value:03d}"]
            return []
        if c in ("X", "H", "L", "M"):
            return []
        raise AtError()   # ATD and the rest: not a data modem here

    # -- identity
    def _ident(self, op, value):
        if op == "test":
            return []
        if op != "exec":
            raise AtError()
        return [value]

    def c_CGMI(self, op, a):
        return self._ident(op, self.profile["manufacturer"])
    c_GMI = c_CGMI

    def c_CGMM(self, op, a):
        return self._ident(op, self.profile["model"])
    c_GMM = c_CGMM

    def c_CGMR(self, op, a):
        return self._ident(op, self.profile["revision"])
    c_GMR = c_CGMR

    def c_CGSN(self, op, a):
        return self._ident(op, IMEI)
    c_GSN = c_CGSN

    def c_GCAP(self, op, a):
        return self._ident(op, "+GCAP: +CGSM")

    def c_CIMI(self, op, a):
        self.need_sim_cme()
        return self._ident(op, IMSI)

    def c_CCID(self, op, a):
        self.need_sim_cme()
        return [f"+CCID: {ICCID}"] if op != "test" else []

    def c_CNUM(self, op, a):
        self.need_sim_cme()
        return ['+CNUM: "","+15550001111",145'] if op == "exec" else []

    def c_CPAS(self, op, a):
        return ["+CPAS: 0"] if op == "exec" else ["+CPAS: (0-5)"]

    def need_sim_cme(self):
        if self.sim_state == "SIM PIN":
            raise CmeError(11)
        if self.sim_state == "SIM PUK":
            raise CmeError(12)

    def need_sim_cms(self):
        if self.sim_state == "SIM PIN":
            raise CmsError(311)
        if self.sim_state == "SIM PUK":
            raise CmsError(316)

    # -- control
    def c_CMEE(self, op, a):
        if op == "read":
            return [f"+CMEE: {self.cmee}"]
        if op == "test":
            return ["+CMEE: (0-2)"]
        self.cmee = int_arg(a, 0, 0, 0, 2) if op == "set" else 0
        return []

    def c_CFUN(self, op, a):
        if op == "read":
            return [f"+CFUN: {self.cfun}"]
        if op == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        if op != "set":
            raise AtError()
        fun = int_arg(a, 0, None, 0, 4)
        rst = int_arg(a, 1, 0, 0, 1)
        if rst == 1:
            if fun != 1:
                raise CmeError(3)
            return [], lambda: self.loop.call_soon(self.reboot, "AT+CFUN=1,1")
        was = self.cfun
        self.cfun = 1 if fun == 1 else 0
        if was != 1 and self.cfun == 1:
            self.start_registration()
        self.check_reg_change()
        return []

    def c_CPIN(self, op, a):
        if op == "read":
            return [f"+CPIN: {self.sim_state}"]
        if op == "test":
            return []
        if op != "set":
            raise AtError()
        if self.sim_state == "READY":
            raise CmeError(3)
        code = a[0] if a and a[0] is not None else ""
        if self.sim_state == "SIM PIN":
            if code == self.cfg["pin"]:
                return [], self.sim_unlocked
            self.pin_attempts -= 1
            self.event("pin_wrong", attempts_left=self.pin_attempts)
            if self.pin_attempts <= 0:
                self.sim_state = "SIM PUK"
            raise CmeError(16)
        # SIM PUK: AT+CPIN="<puk>","<newpin>"
        if code == self.cfg["puk"] and len(a) > 1 and a[1]:
            self.cfg["pin"] = str(a[1])
            return [], self.sim_unlocked
        raise CmeError(16)

    def sim_unlocked(self):
        self.sim_state = "READY"
        self.pin_attempts = 3
        self.event("sim_ready")
        gen = self.gen

        def urcs():
            if gen != self.gen:
                return
            self.urc("+CPIN: READY")
            for line in self.profile["ready"]:
                self.urc(line)
            self.start_registration()
        self.loop.call_later(0.1, urcs)

    # -- SMS settings
    def c_CMGF(self, op, a):
        if op == "read":
            return [f"+CMGF: {self.cmgf}"]
        if op == "test":
            return ["+CMGF: (0,1)"]
        self.cmgf = int_arg(a, 0, 0, 0, 1) if op == "set" else 0
        return []

    def c_CSCS(self, op, a):
        if op == "read":
            return [f'+CSCS: "{self.cscs}"']
        if op == "test":
            return ['+CSCS: ("IRA","GSM","UCS2")']
        if op != "set" or not a or a[0] is None:
            raise AtError()
        v = str(a[0]).upper()
        if v not in ("IRA", "GSM", "UCS2", "8859-1", "PCCP437"):
            raise CmeError(4)
        self.cscs = v
        return []

    def c_CSMP(self, op, a):
        if op == "read":
            return ["+CSMP: " + ",".join(str(x) for x in self.csmp)]
        if op == "test":
            return []
        for i in range(4):
            if i < len(a) and a[i] is not None:
                self.csmp[i] = int_arg(a, i, 0, 0, 255)
        return []

    def c_CSDH(self, op, a):
        return ["+CSDH: 0"] if op == "read" else []

    def c_CSCA(self, op, a):
        self.need_sim_cms()
        if op == "read":
            return [f'+CSCA: "{self.csca[0]}",{self.csca[1]}']
        if op == "test":
            return []
        if op != "set" or not a or a[0] is None:
            raise AtError()
        self.csca = (str(a[0]), int_arg(a, 1, 145 if str(a[0]).startswith("+") else 129))
        return []

    def c_CSMS(self, op, a):
        if op == "read":
            return [f"+CSMS: {self.csms},1,1,1"]
        if op == "test":
            return ["+CSMS: (0,1)"]
        if op != "set":
            raise AtError()
        self.csms = int_arg(a, 0, None, 0, 1)
        return ["+CSMS: 1,1,1"]

    def c_CNMI(self, op, a):
        if op == "read":
            return ["+CNMI: " + ",".join(str(x) for x in self.cnmi)]
        if op == "test":
            return ["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"]
        if op != "set":
            raise AtError()
        ranges = [(0, 3), (0, 3), (0, 2), (0, 2), (0, 1)]
        new = list(self.cnmi)
        for i, (lo, hi) in enumerate(ranges):
            if i < len(a) and a[i] is not None:
                try:
                    v = int(a[i])
                except ValueError:
                    raise AtError() from None
                if not lo <= v <= hi or (i == 2 and v == 1):
                    raise CmsError(303)
                new[i] = v
        self.cnmi = new
        if new[0] in (1, 2, 3) and self.urc_buffer:
            buffered, self.urc_buffer = self.urc_buffer, []
            if new[4] == 0:   # <bfr> 0: flush after the OK
                def flush():
                    for line in buffered:
                        self.urc(line)
                return [], flush
        self.loop.call_soon(self.network_tick)
        return []

    def c_CPMS(self, op, a):
        self.need_sim_cms()
        if op == "test":
            return ['+CPMS: ("SM","ME","MT","SR"),("SM","ME","MT"),("SM","ME","MT")']
        if op == "read":
            parts = []
            for label in self.cpms:
                m = self.mem(label)
                parts.append(f'"{label}",{m.used()},{m.capacity}')
            return ["+CPMS: " + ",".join(parts)]
        if op != "set" or not a or a[0] is None:
            raise AtError()
        new = list(self.cpms)
        allowed = [("SM", "ME", "MT", "SR"), ("SM", "ME", "MT"), ("SM", "ME", "MT")]
        for i in range(3):
            if i < len(a) and a[i] is not None:
                v = str(a[i]).upper()
                if v not in allowed[i]:
                    raise CmsError(302)
                new[i] = v
        self.cpms = new
        nums = []
        for label in self.cpms:
            m = self.mem(label)
            nums += [m.used(), m.capacity]
        return ["+CPMS: " + ",".join(str(x) for x in nums)]

    # -- network
    def _reg_read(self, name, n, area_name):
        stat = self.reg_stat()
        line = f"+{name}: {n},{stat}"
        if n >= 2 and stat in (1, 5):
            line += ',"1A2B","01C3D4E5"'
            if self.profile["act"] is not None:
                line += f",{self.profile['act']}"
        return [line]

    def _reg_set(self, op, a, attr, name):
        if op == "read":
            return self._reg_read(name, getattr(self, attr), "lac")
        if op == "test":
            return [f"+{name}: (0-2)"]
        if op != "set":
            raise AtError()
        setattr(self, attr, int_arg(a, 0, 0, 0, 2))
        return []

    def c_CREG(self, op, a):
        return self._reg_set(op, a, "creg_n", "CREG")

    def c_CGREG(self, op, a):
        return self._reg_set(op, a, "cgreg_n", "CGREG")

    def c_CEREG(self, op, a):
        return self._reg_set(op, a, "cereg_n", "CEREG")

    def c_CSQ(self, op, a):
        if op == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if op != "exec":
            raise AtError()
        rssi = self.cfg["signal"] if self.cfun == 1 else 99
        return [f"+CSQ: {rssi},99"]

    def c_COPS(self, op, a):
        name = self.cfg["operator"]
        if op == "read":
            if not self.registered():
                return ["+COPS: 0"]
            oper = {0: name, 1: name[:8], 2: "00101"}[self.cops_format]
            line = f'+COPS: 0,{self.cops_format},"{oper}"'
            if self.profile["act"] is not None:
                line += f",{self.profile['act']}"
            return [line]
        if op == "test":
            act = f",{self.profile['act']}" if self.profile["act"] is not None else ""
            return [f'+COPS: (2,"{name}","{name[:8]}","00101"{act}),,(0-4),(0-2)']
        if op == "set":
            int_arg(a, 0, 0, 0, 4)
            if len(a) > 1 and a[1] is not None:
                self.cops_format = int_arg(a, 1, 0, 0, 2)
            return []
        raise AtError()

    # -- vendor
    def h_CURC(self, op, a):
        if self.cfg["profile"] != "e3372":
            raise AtError()
        if op == "read":
            return [f"^CURC: {int(bool(self.cfg['noise']))}"]
        if op == "set":
            self.cfg["noise"] = bool(int_arg(a, 0, 0, 0, 2))
        return []

    def c_QINDCFG(self, op, a):
        if self.cfg["profile"] != "ec25":
            raise AtError()
        if op == "set" and a and a[0] is not None and str(a[0]).lower() in ("csq", "all") \
                and len(a) > 1 and a[1] is not None:
            self.cfg["noise"] = bool(int_arg(a, 1, 0, 0, 1))
        return []

    def c_QURCCFG(self, op, a):
        if self.cfg["profile"] != "ec25":
            raise AtError()
        return ['+QURCCFG: "urcport","usbat"'] if op == "read" else []

    # -- SMS
    def c_CMGS(self, op, a):
        if op == "test":
            return []
        if op != "set" or not a or a[0] is None:
            raise AtError()
        self.need_sim_cms()
        if self.cmgf == 0:
            try:
                length = int(a[0])
            except ValueError:
                raise CmsError(304) from None
            if not 1 <= length <= 175:
                raise CmsError(304)
            return Prompt("pdu", length=length)
        toda = int_arg(a, 1, 145 if str(a[0]).startswith("+") else 129)
        return Prompt("text", da=str(a[0]), toda=toda)

    async def finish_entry(self):
        self.flush_echo()
        gen = self.gen
        prompt = self.prompt
        raw = bytes(self.pdu_buf)
        self.pdu_buf.clear()
        self.state = "cmd"
        self.prompt = None
        try:
            if prompt.mode == "pdu":
                final = await self.submit_pdu(raw, prompt.length, gen)
            else:
                final = await self.submit_text(raw, prompt, gen)
            if gen == self.gen and final is not None:
                self.write_str(final)
        finally:
            if gen == self.gen:
                self.busy = False

    def new_submit_record(self, mode, pdu_hex, length):
        rec = {"index": len(self.submits), "time": now_iso(), "mode": mode, "outcome": None,
               "error": None, "mr": None, "cmgs_length": length, "pdu": pdu_hex}
        self.submits.append(rec)
        return rec

    def reject(self, rec, code, reason):
        rec["outcome"] = "rejected"
        rec["error"] = code
        rec["reason"] = reason
        self.event("submit", index=rec["index"], outcome="rejected", error=code, reason=reason)
        log(f"SMS-SUBMIT rejected ({code}): {reason}")
        return self.frame_final(self.cms_text(code))

    async def submit_pdu(self, raw: bytes, length: int, gen):
        text = raw.decode("latin-1")
        hexstr = "".join(text.split()).upper()
        rec = self.new_submit_record("pdu", hexstr, length)
        try:
            bytes.fromhex(hexstr)
            if not hexstr or len(hexstr) % 2:
                raise ValueError("odd number of hex digits")
        except ValueError as e:
            return self.reject(rec, 304, f"not a hex PDU: {e}")
        try:
            d = P.decode_submit(hexstr)
        except P.PduError as e:
            return self.reject(rec, 304, str(e))
        rec.update({k: v for k, v in d.items() if k not in ("type", "mr")})
        rec["mr_in_pdu"] = d["mr"]
        rec["crosscheck"] = crosscheck(hexstr, d)
        if d["tpdu_length"] != length:
            return self.reject(rec, 304, f"AT+CMGS={length} but the TPDU has "
                                         f"{d['tpdu_length']} octets")
        if d["sca"] is None and not self.csca[0]:
            return self.reject(rec, 330, "no SMSC address in the PDU and none set")
        return await self.send_to_network(rec, gen)

    async def submit_text(self, raw: bytes, prompt: Prompt, gen):
        text = self.te_decode(raw)
        fo, vp, pid, dcs = self.csmp
        enc = P.dcs_info(dcs)["alphabet"]
        if enc != "gsm7" or not P.gsm7_encodable(text):
            enc = "gsm7"
            text = "".join(c if P.gsm7_encodable(c) else "?" for c in text)
        mr = self.next_mr
        try:
            pdu = P.encode_submit(prompt.da, text, mr=mr, srr=bool(fo & 0x20),
                                  vp=vp if fo & 0x10 else None)
        except ValueError as e:
            rec = self.new_submit_record("text", None, None)
            return self.reject(rec, 305, str(e))
        rec = self.new_submit_record("text", pdu, None)
        d = P.decode_submit(pdu)
        rec.update({k: v for k, v in d.items() if k not in ("type", "mr")})
        rec["mr_in_pdu"] = None
        rec["crosscheck"] = None
        return await self.send_to_network(rec, gen)

    async def send_to_network(self, rec, gen):
        delay = (self.cfg["send_delay_ms"] + self.cfg["slow_ms"]) / 1000
        if delay:
            await asyncio.sleep(delay)
        if gen != self.gen:
            rec["outcome"] = "lost"
            rec["reason"] = "modem reset or port gone during sending"
            self.event("submit", index=rec["index"], outcome="lost")
            return None
        if self.cfg["cms_error"]:
            codes = self.cfg["cms_error"]
            code = codes.pop(0)
            rec["mr"] = self.take_mr(rec)
            rec["outcome"] = "cms_error"
            rec["error"] = code
            self.event("submit", index=rec["index"], outcome="cms_error", error=code,
                       mr=rec["mr"])
            log(f"SMS-SUBMIT to {rec.get('to')} answered +CMS ERROR: {code} (set cms_error)")
            return self.frame_final(self.cms_text(code))
        if not self.registered():
            rec["outcome"] = "rejected"
            rec["error"] = 331
            rec["reason"] = f"not registered (+CREG stat {self.reg_stat()})"
            self.event("submit", index=rec["index"], outcome="rejected", error=331)
            return self.frame_final(self.cms_text(331))
        mr = self.take_mr(rec)
        rec["mr"] = mr
        rec["outcome"] = "ok"
        self.event("submit", index=rec["index"], outcome="ok", mr=mr, to=rec.get("to"),
                   text=rec.get("text"), concat=rec.get("concat"))
        log(f"SMS-SUBMIT accepted: mr={mr} to={rec.get('to')} text={rec.get('text')!r} "
            f"concat={rec.get('concat')} srr={rec.get('srr')}")
        if self.interleave is not None:
            il, self.interleave = self.interleave, None
            self.do_interleave(il, rec)
        if rec.get("srr") and self.cfg["auto_report_ms"] is not None:
            self.loop.call_later(self.cfg["auto_report_ms"] / 1000, self.queue_report,
                                 rec, self.cfg["auto_report_status"], None)
        return self.frame_info([f"+CMGS: {mr}"]) + self.frame_final("OK")

    def take_mr(self, rec):
        if self.cfg["mr_from_pdu"] and rec.get("mr_in_pdu") is not None:
            return rec["mr_in_pdu"]
        mr = self.next_mr
        self.next_mr = (self.next_mr + 1) % 256
        return mr

    def do_interleave(self, il, rec):
        log(f"interleaving a URC before +CMGS: {il}")
        if il.get("what") == "report":
            item = self.make_report_item(rec, il.get("status", 0), il.get("mode"))
        else:
            params = {"from": "+15550009999", "text": "interleaved", "mode": "cmti"}
            params.update({k: v for k, v in il.items() if k != "what"})
            items = self.make_inbound_items(params)
            item = items[0]
        # delivered right now, ahead of anything queued, so the URC precedes +CMGS
        res = self.try_deliver(item)
        if res != "done":
            self.net_queue.insert(0, item)

    def c_CMGR(self, op, a):
        if op == "test":
            return []
        if op != "set":
            raise AtError()
        self.need_sim_cms()
        idx = int_arg(a, 0)
        peek = int_arg(a, 1, 0, 0, 1) == 1    # SIMCom: <mode> 1 leaves the status alone
        m = self.mem(self.cpms[0])
        e = m.slots.get(idx)
        if e is None:
            raise CmsError(321)
        lines = self.entry_lines(e, "+CMGR: ")
        e["times_read"] += 1
        self.event("read", mem=m.name, index=idx, via="CMGR", stat=e["stat"])
        if e["stat"] == 0 and not peek:
            e["stat"] = 1
        return lines

    def entry_lines(self, e, prefix, with_index=False):
        idx = f"{e['index']}," if with_index else ""
        if self.cmgf == 0:
            return [f"{prefix}{idx}{e['stat']},,{e['tpdu_length']}", e["pdu"]]
        st = f'"{STAT_TEXT[e["stat"]]}"'
        meta = e["meta"]
        if e["type"] == "status-report":
            return [f'{prefix}{idx}{st},6,{meta["mr"]},"{meta["recipient"]}",'
                    f'{meta["recipient_toa"]},"{meta["scts_text"]}","{meta["dt_text"]}",'
                    f'{meta["status"]}']
        return [f'{prefix}{idx}{st},"{meta["from"]}",,"{meta["scts_text"]}"',
                self.te_data(meta)]

    def c_CMGL(self, op, a):
        if op == "test":
            return ["+CMGL: (0-4)"] if self.cmgf == 0 else \
                ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")']
        self.need_sim_cms()
        if op == "exec":
            stat = 0
        elif op == "set":
            if not a or a[0] is None:
                raise AtError()
            if self.cmgf == 0:
                if a[0].quoted:
                    raise AtError()
                stat = int_arg(a, 0, None, 0, 4)
            else:
                if not a[0].quoted or str(a[0]).upper() not in STAT_BY_TEXT:
                    raise AtError()
                stat = STAT_BY_TEXT[str(a[0]).upper()]
        else:
            raise AtError()
        peek = int_arg(a, 1, 0, 0, 1) == 1 if op == "set" else False
        m = self.mem(self.cpms[0])
        lines = []
        for idx in sorted(m.slots):
            e = m.slots[idx]
            if stat != 4 and e["stat"] != stat:
                continue
            lines += self.entry_lines(e, "+CMGL: ", with_index=True)
            e["times_read"] += 1
            self.event("read", mem=m.name, index=idx, via="CMGL", stat=e["stat"])
            if e["stat"] == 0 and not peek:
                e["stat"] = 1
        return lines

    def c_CMGD(self, op, a):
        self.need_sim_cms()
        m = self.mem(self.cpms[0])
        if op == "test":
            used = ",".join(str(i) for i in sorted(m.slots))
            return [f"+CMGD: ({used}),(0-4)"]
        if op != "set":
            raise AtError()
        idx = int_arg(a, 0, 0 if len(a) > 1 else None)
        flag = int_arg(a, 1, 0, 0, 4)
        if flag == 0:
            if idx not in m.indices():
                raise CmsError(321)
            if idx in m.slots:
                self.delete(m, idx, "AT+CMGD=%d" % idx)
        else:
            keep = {1: {0, 2, 3}, 2: {0, 2}, 3: {0}, 4: set()}[flag]
            for i in sorted(m.slots):
                if m.slots[i]["stat"] not in keep:
                    self.delete(m, i, f"AT+CMGD={idx},{flag}")
        return []

    def delete(self, m: Memory, idx: int, how: str):
        e = m.slots.pop(idx)
        rec = {"mem": m.name, "index": idx, "type": e["type"], "stat": e["stat"],
               "times_read": e["times_read"], "read_before_delete": e["times_read"] > 0,
               "pdu": e["pdu"], "stored_at": e["stored_at"], "deleted_at": now_iso(), "by": how,
               "meta": e["meta"]}
        self.deleted.append(rec)
        self.event("delete", mem=m.name, index=idx, read_before_delete=rec["read_before_delete"],
                   by=how)
        if not rec["read_before_delete"]:
            log(f"WARNING: {m.name} index {idx} deleted before it was ever read")
        self.full_notified.discard(m.name)
        # TS 24.011 RP-SMMA: the MS tells the network memory is available again; the network
        # then retries what it could not deliver.
        self.loop.call_later(self.cfg["retry_ms"] / 1000, self.network_tick)

    def c_CNMA(self, op, a):
        self.need_sim_cms()
        if op == "test":
            return ["+CNMA: (0-2)"] if self.cmgf == 0 else []
        n = int_arg(a, 0, 0, 0, 2) if op == "set" else 0
        if self.awaiting_ack is None or self.csms != 1:
            raise CmsError(340)
        item = self.awaiting_ack
        self.awaiting_ack = None
        item["ack_timer"].cancel()
        del item["ack_timer"]
        if n == 2:
            item["status"] = "nacked"
            self.event("nack", item=item["id"], item_kind=item["kind"])
            item["not_before"] = time.monotonic() + self.cfg["redeliver_ms"] / 1000
            item["mode"] = None
            item["status"] = "queued"
            self.net_queue.insert(0, item)
        else:
            item["status"] = "acked"
            self.event("ack", item=item["id"], item_kind=item["kind"])
        self.loop.call_soon(self.network_tick)
        return []

    # ---------------------------------------------------------------- TE charset (text mode)

    def te_data(self, meta):
        if meta["encoding"] == "gsm7" and not meta.get("udh_hex"):
            return self.te_encode(meta["text"])
        return (meta.get("udh_hex") or "") + meta["body_hex"]

    def te_encode(self, text: str) -> str:
        if self.cscs == "GSM":
            return "".join(chr(s) for s in P.gsm7_septets(
                "".join(c if P.gsm7_encodable(c) else "?" for c in text)))
        if self.cscs == "UCS2":
            return text.encode("utf-16-be").hex().upper()
        if self.cscs == "8859-1":
            return text.encode("latin-1", errors="replace").decode("latin-1")
        return text.encode("ascii", errors="replace").decode("ascii")

    def te_decode(self, raw: bytes) -> str:
        if self.cscs == "GSM":
            return P.gsm7_text([b & 0x7F for b in raw])
        if self.cscs == "UCS2":
            try:
                return bytes.fromhex(raw.decode("ascii")).decode("utf-16-be")
            except ValueError:
                return raw.decode("latin-1")
        return raw.decode("latin-1")

    # ---------------------------------------------------------------- network side

    def scts_now(self):
        tz = dt.timezone(dt.timedelta(minutes=15 * self.cfg["tz_quarters"]))
        return dt.datetime.now(tz).replace(microsecond=0)

    def make_inbound_items(self, p: dict) -> list[dict]:
        sender = p.get("from")
        if not sender:
            raise ValueError("'from' is required")
        encoding = p.get("encoding", "gsm7")
        if encoding not in ("gsm7", "ucs2", "8bit"):
            raise ValueError("encoding must be gsm7, ucs2 or 8bit")
        text = p.get("text", "")
        body = b""
        if encoding == "8bit":
            body = bytes.fromhex(p["hex"]) if "hex" in p else text.encode("utf-8")
        elif encoding == "gsm7" and not P.gsm7_encodable(text):
            raise ValueError("text has characters outside GSM 03.38; use encoding ucs2")
        ref16 = bool(p.get("udh16", False))
        payloads = P.split_message(encoding, text, body, p.get("parts"), ref16)
        total = len(payloads)
        if "ref" in p:
            ref = int(p["ref"])
        else:
            ref = self.concat_ref
            self.concat_ref = (self.concat_ref + 1) % (65536 if ref16 else 256)
        scts = dt.datetime.fromisoformat(p["scts"]) if p.get("scts") else self.scts_now()
        mode = p.get("mode")
        if mode not in (None, "cmti", "cmt", "stored_silent"):
            raise ValueError("mode must be cmti, cmt or stored_silent")
        items = []
        for i, payload in enumerate(payloads):
            udh = P.concat_udh(ref, total, i + 1, ref16) if total > 1 else None
            kw = {}
            if encoding == "gsm7":
                kw["septets"] = payload
            else:
                kw["body"] = bytes(payload)
            pdu, tlen = P.encode_deliver(
                sender, encoding=encoding, udh=udh, scts=scts,
                sca=p.get("smsc", self.cfg["smsc"]), pid=int(p.get("pid", 0)),
                dcs=p.get("dcs"), msg_class=p.get("class"), sender_toa=p.get("from_toa"), **kw)
            d = P.decode_deliver(pdu)
            meta = {"from": d["from"], "from_toa": d["from_toa"], "encoding": d["encoding"],
                    "text": d["text"], "body_hex": d["body_hex"],
                    "udh_hex": (d["udh"]["hex"] if d["udh"] else None), "concat": d["concat"],
                    "scts": d["scts"], "scts_text": P.text_mode_timestamp(scts),
                    "class": d["class"]}
            items.append(self.new_item("deliver", pdu, tlen, meta, mode))
        order = p.get("order")
        if order is not None:
            items = [items[i] for i in order]
        return items

    def new_item(self, kind, pdu, tlen, meta, mode):
        item = {"id": len(self.net_items), "kind": kind, "pdu": pdu, "tpdu_length": tlen,
                "meta": meta, "mode": mode, "requested_mode": mode, "status": "queued",
                "attempts": 0, "not_before": 0.0, "created": now_iso(), "history": []}
        self.net_items.append(item)
        return item

    def make_report_item(self, rec, status, mode):
        scts = dt.datetime.fromisoformat(rec["time"]).astimezone(self.scts_now().tzinfo)
        scts = scts.replace(microsecond=0)
        disch = self.scts_now()
        pdu, tlen = P.encode_status_report(rec["mr"], rec["to"], status=status, scts=scts,
                                           discharge=disch, sca=self.cfg["smsc"],
                                           recipient_toa=rec.get("to_toa"))
        meta = {"mr": rec["mr"], "recipient": rec["to"], "recipient_toa": rec.get("to_toa", 145),
                "status": status, "scts_text": P.text_mode_timestamp(scts),
                "dt_text": P.text_mode_timestamp(disch), "submit_index": rec["index"]}
        if mode not in (None, "cds", "cdsi"):
            raise ValueError("mode must be cds or cdsi")
        return self.new_item("report", pdu, tlen, meta, mode)

    def queue_report(self, rec, status, mode):
        item = self.make_report_item(rec, status, mode)
        self.net_queue.append(item)
        self.network_tick()
        return item

    def network_tick(self):
        if not self.net_queue or not self.can_receive():
            return
        nowm = time.monotonic()
        while self.net_queue:
            item = self.net_queue[0]
            if item["not_before"] > nowm:
                break
            res = self.try_deliver(item)
            if res == "done":
                self.net_queue.pop(0)
                continue
            if res == "full":
                item["not_before"] = nowm + self.cfg["retry_ms"] / 1000
            break   # the network hands an MS one message at a time, in order

    def route_for(self, item):
        if item["mode"]:
            return item["mode"]
        if item["kind"] == "deliver":
            mt = self.cnmi[1]
            if mt == 3:
                return "cmt" if item["meta"].get("class") == 3 else "cmti"
            return {0: "stored_silent", 1: "cmti", 2: "cmt"}[mt]
        return {0: "discard", 1: "cds", 2: "cdsi"}[self.cnmi[3]]

    def try_deliver(self, item) -> str:
        if self.awaiting_ack is not None:
            return "busy"             # TS 24.011: one MT transfer at a time, until RP-ACK
        route = self.route_for(item)
        item["attempts"] += 1
        if route in ("cmt", "cds"):
            if route == "cmt":
                if self.cmgf == 0:
                    line = f"+CMT: ,{item['tpdu_length']}{self.nl()}{item['pdu']}"
                else:
                    meta = item["meta"]
                    line = (f'+CMT: "{meta["from"]}",,"{meta["scts_text"]}"{self.nl()}'
                            f'{self.te_data(meta)}')
            else:
                if self.cmgf == 0:
                    line = f"+CDS: {item['tpdu_length']}{self.nl()}{item['pdu']}"
                else:
                    meta = item["meta"]
                    line = (f'+CDS: 6,{meta["mr"]},"{meta["recipient"]}",{meta["recipient_toa"]},'
                            f'"{meta["scts_text"]}","{meta["dt_text"]}",{meta["status"]}')
            self.urc(line, sms=True)
            if self.csms == 1:
                item["status"] = "awaiting_ack"
                self.awaiting_ack = item
                item["ack_timer"] = self.loop.call_later(self.cfg["cnma_timeout_ms"] / 1000,
                                                         self.ack_timeout, item, self.gen)
            else:
                item["status"] = "delivered"
            item["delivered_as"] = route
            item["history"].append({"t": now_iso(), "as": route})
            self.event("deliver" if item["kind"] == "deliver" else "report", item=item["id"],
                       delivered_as=route, awaiting_ack=self.csms == 1,
                       concat=item["meta"].get("concat"))
            return "done"
        if route == "discard":
            item["status"] = "discarded"
            item["delivered_as"] = "discard"
            self.event("report", item=item["id"], delivered_as="discard")
            log(f"status report mr={item['meta']['mr']} discarded (+CNMI <ds>=0)")
            return "done"
        # stored: cmti / stored_silent / cdsi
        if item["kind"] == "deliver":
            label = self.cpms[2]
        else:
            label = "SR" if self.cfg["report_storage"] == "SR" else self.cpms[2]
        m = self.mem(label)
        entry = {"stat": 0, "type": "deliver" if item["kind"] == "deliver" else "status-report",
                 "pdu": item["pdu"], "tpdu_length": item["tpdu_length"], "meta": item["meta"],
                 "times_read": 0, "stored_at": now_iso(), "item": item["id"]}
        idx = m.store(entry)
        if idx is None:
            if m.name not in self.full_notified:
                self.full_notified.add(m.name)
                fmt = self.cfg["mem_full_urc"]
                if fmt is None:
                    fmt = self.profile["mem_full_urc"]
                if fmt:
                    self.urc(fmt.format(mem=label))
                self.event("storage_full", mem=m.name, item=item["id"])
                log(f"{m.name} full: the network keeps item {item['id']} and retries")
            item["status"] = "queued"
            item["reason"] = f"{m.name} full"
            return "full"
        item["status"] = "stored"
        item["delivered_as"] = route
        item["mem"], item["index"] = m.name, idx
        item["history"].append({"t": now_iso(), "as": route, "mem": m.name, "index": idx})
        if route == "cmti":
            self.urc(f'+CMTI: "{self.cfg["cmti_label"] or label}",{idx}', sms=True)
        elif route == "cdsi":
            self.urc(f'+CDSI: "{self.cfg["cdsi_label"] or label}",{idx}', sms=True)
        self.event("deliver" if item["kind"] == "deliver" else "report", item=item["id"],
                   delivered_as=route, mem=m.name, index=idx,
                   concat=item["meta"].get("concat"))
        return "done"

    def ack_timeout(self, item, gen):
        if self.awaiting_ack is not item:
            return
        self.awaiting_ack = None
        item.pop("ack_timer", None)
        self.event("ack_timeout", item=item["id"], item_kind=item["kind"])
        if self.cfg["ack_timeout_action"] == "spec":
            # 27.005 3.4.4: no +CNMA in time -> RP-ERROR to the network, and the ME/TA turns
            # routing off: <mt> and <ds> of +CNMI become 0.
            self.cnmi[1] = 0
            self.cnmi[3] = 0
            log("no +CNMA in time: RP-ERROR sent, +CNMI <mt> and <ds> set to 0 (27.005 3.4.4)")
        self.requeue(item, "not acknowledged")

    def requeue(self, item, why):
        item["status"] = "queued"
        item["reason"] = why
        item["mode"] = None      # the redelivery follows the modem's settings of that time
        item["not_before"] = time.monotonic() + self.cfg["redeliver_ms"] / 1000
        self.net_queue.insert(0, item)
        self.event("redeliver_scheduled", item=item["id"], reason=why)

    # ---------------------------------------------------------------- lifecycle

    def start_registration(self):
        self.registering = True
        gen = self.gen

        def done():
            if gen != self.gen:
                return
            self.registering = False
            self.check_reg_change()
            self.network_tick()
        self.loop.call_later(self.cfg["reg_delay_ms"] / 1000, done)
        self.check_reg_change()

    def check_reg_change(self):
        stat = self.reg_stat()
        if stat == self.last_reg:
            return
        self.last_reg = stat
        for name, n in (("CREG", self.creg_n), ("CGREG", self.cgreg_n),
                        ("CEREG", self.cereg_n)):
            if n == 1:
                self.urc(f"+{name}: {stat}")
            elif n == 2:
                extra = ""
                if stat in (1, 5):
                    extra = ',"1A2B","01C3D4E5"'
                    if self.profile["act"] is not None:
                        extra += f",{self.profile['act']}"
                self.urc(f"+{name}: {stat}{extra}")
        if stat in (1, 5):
            self.loop.call_soon(self.network_tick)

    def drop_pending_ack(self, why):
        if self.awaiting_ack is not None:
            item = self.awaiting_ack
            self.awaiting_ack = None
            t = item.pop("ack_timer", None)
            if t:
                t.cancel()
            self.requeue(item, why)

    def reboot(self, why="reboot", boot_urcs=True):
        """The modem resets: state back to power-on defaults, boot URCs after boot_ms."""
        self.gen += 1
        gen = self.gen
        self.drop_pending_ack("modem reset before +CNMA")
        self.cfg["silent"] = False
        self.rx.clear()
        self.reset_state()
        self.echo_stuck = False
        self.booting = True
        self.registering = True
        self.last_reg = None
        self.event("reboot", why=why)
        log(f"reboot ({why})")

        def booted():
            if gen != self.gen:
                return
            self.booting = False
            if boot_urcs:
                cpin = f"+CPIN: {self.sim_state}"
                for line in self.profile["boot"]:
                    self.urc(line.format(cpin=cpin))
            self.event("booted")
            if self.sim_ready():
                def ready():
                    if gen != self.gen:
                        return
                    if boot_urcs:
                        for line in self.profile["ready"]:
                            self.urc(line)
                    self.start_registration()
                self.loop.call_later(self.cfg["ready_ms"] / 1000, ready)
        self.loop.call_later(self.cfg["boot_ms"] / 1000, booted)

    def vanish(self):
        self.gen += 1
        self.drop_pending_ack("port vanished before +CNMA")
        self.rx.clear()
        self.close_port()
        self.event("vanish")

    def reappear(self, boot_urcs=False):
        self.open_port()
        self.event("reappear", tty=self.tty_name)
        self.reboot("reappear (USB re-enumeration)", boot_urcs=boot_urcs)

    async def noise_loop(self):
        next_at = None
        while True:
            await asyncio.sleep(0.02)
            if not self.cfg["noise"] or not self.present or self.booting or self.cfg["silent"]:
                next_at = None
                continue
            nowm = time.monotonic()
            if next_at is None:
                base = max(20, int(self.cfg["noise_ms"]))
                next_at = nowm + self.rng.uniform(0.5, 1.5) * base / 1000
                continue
            if nowm < next_at:
                continue
            next_at = None
            choices = self.cfg["noise_lines"] or self.profile["noise"] \
                or PROFILES["e3372"]["noise"]
            self.urc(self.rng.choice(choices).format(rssi=self.cfg["signal"]))

    async def ticker(self):
        while True:
            await asyncio.sleep(0.1)
            self.network_tick()
            self.clear_exclusive()

    # ---------------------------------------------------------------- control API

    def public_state(self):
        return {
            "present": self.present, "tty": self.tty_name if self.present else None,
            "link": self.link, "booting": self.booting, "silent": self.cfg["silent"],
            "profile": self.cfg["profile"], "sim": self.sim_state, "cfun": self.cfun,
            "reg": self.reg_stat(), "echo": self.echo, "verbose": self.verbose,
            "cmee": self.cmee, "cmgf": self.cmgf, "cnmi": self.cnmi, "csms": self.csms,
            "cpms": self.cpms, "cscs": self.cscs, "csca": self.csca[0],
            "creg_n": self.creg_n, "cereg_n": self.cereg_n, "next_mr": self.next_mr,
            "state": self.state, "awaiting_ack": self.awaiting_ack["id"]
            if self.awaiting_ack else None,
            "network_queue": [i["id"] for i in self.net_queue],
            "buffered_urcs": list(self.urc_buffer),
        }

    def storage_view(self):
        mems = {}
        for name, m in self.mems.items():
            ents = []
            for idx in sorted(m.slots):
                e = m.slots[idx]
                ents.append({"index": idx, "stat": e["stat"], "stat_text": STAT_TEXT[e["stat"]],
                             "type": e["type"], "pdu": e["pdu"], "tpdu_length": e["tpdu_length"],
                             "times_read": e["times_read"], "stored_at": e["stored_at"],
                             "item": e["item"], **{k: v for k, v in e["meta"].items()}})
            mems[name] = {"capacity": m.capacity, "used": m.used(), "index_base": m.base,
                          "entries": ents}
        return {"memories": mems, "cpms": self.cpms, "deleted": self.deleted,
                "pending": [self.item_view(i) for i in self.net_queue]}

    @staticmethod
    def item_view(i):
        return {k: v for k, v in i.items() if k not in ("ack_timer",)}

    def apply_set(self, req):
        unknown = [k for k in req if k not in DEFAULT_CFG and k not in ("cmd", "id", "next_mr")]
        if unknown:
            raise ValueError(f"unknown settings: {unknown}")
        for k, v in req.items():
            if k in ("cmd", "id"):
                continue
            if k == "next_mr":
                self.next_mr = int(v) % 256
            elif k == "cms_error":
                self.cfg["cms_error"] = list(v) if isinstance(v, list) else \
                    ([] if v is None else [int(v)])
            elif k == "profile":
                if v not in PROFILES:
                    raise ValueError(f"profile must be one of {sorted(PROFILES)}")
                self.cfg["profile"] = v
            elif k == "pin":
                self.cfg["pin"] = None if v in (None, False, "") else \
                    ("1234" if v is True else str(v))
                if self.cfg["pin"]:
                    self.sim_state = "SIM PIN"     # the SIM locks now, and at every boot
                    self.pin_attempts = 3
                    self.drop_pending_ack("SIM locked")
                else:
                    self.sim_state = "READY"
                self.check_reg_change()
            elif k == "prompt_style":
                if v not in ("crlf", "bare", "gt_crlf", "blank_line"):
                    raise ValueError("prompt_style: crlf | bare | gt_crlf | blank_line")
                self.cfg[k] = v
            elif k == "silent":
                self.cfg["silent"] = bool(v)
                if v:
                    self.gen += 1
                    self.rx.clear()
                    self.state = "cmd"
                    self.line.clear()
                    self.busy = False
            elif k == "registered":
                if int(v) not in (0, 1, 2, 3, 4, 5):
                    raise ValueError("registered: 0..5")
                self.cfg[k] = int(v)
                self.check_reg_change()
            elif k in ("storage_size", "me_size", "sr_size"):
                self.cfg[k] = int(v)
                self.mems[{"storage_size": "SM", "me_size": "ME", "sr_size": "SR"}[k]] \
                    .capacity = int(v)
            elif k == "index_base":
                self.cfg[k] = int(v)
                for m in self.mems.values():
                    if not m.slots:
                        m.base = int(v)
            else:
                self.cfg[k] = v
        self.loop.call_soon(self.network_tick)
        return {k: v for k, v in self.cfg.items()} | {"next_mr": self.next_mr}

    async def control(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {}
        if cmd == "state":
            return {"state": self.public_state()}
        if cmd == "inbound":
            items = self.make_inbound_items(req)
            self.net_queue.extend(items)
            self.network_tick()
            return {"parts": len(items),
                    "ref": items[0]["meta"]["concat"]["ref"]
                    if items[0]["meta"]["concat"] else None,
                    "items": [self.item_view(i) for i in items]}
        if cmd == "submitted":
            since = int(req.get("since", 0))
            subs = self.submits[since:]
            if req.get("ok_only"):
                subs = [s for s in subs if s["outcome"] == "ok"]
            return {"count": len(self.submits), "submitted": subs}
        if cmd == "report":
            rec = None
            if "mr" in req:
                for s in reversed(self.submits):
                    if s["outcome"] == "ok" and s["mr"] == int(req["mr"]):
                        rec = s
                        break
            if rec is None and "to" in req:
                rec = {"mr": int(req.get("mr", 0)), "to": req["to"], "time": now_iso(),
                       "index": None, "to_toa": None}
            if rec is None:
                raise ValueError(f"no accepted SMS-SUBMIT with mr {req.get('mr')}; give 'to'")
            item = self.make_report_item(rec, int(req.get("status", 0)), req.get("mode"))
            self.net_queue.append(item)
            self.network_tick()
            return {"item": self.item_view(item)}
        if cmd == "storage":
            return self.storage_view()
        if cmd == "network":
            return {"items": [self.item_view(i) for i in self.net_items],
                    "queue": [i["id"] for i in self.net_queue]}
        if cmd == "set":
            return {"settings": self.apply_set(req)}
        if cmd == "interleave_next":
            il = {k: v for k, v in req.items() if k not in ("cmd", "id")}
            il.setdefault("what", "inbound")
            if il["what"] not in ("inbound", "report"):
                raise ValueError("what: inbound | report")
            self.interleave = il
            return {"armed": il}
        if cmd == "reboot":
            self.reboot("control: reboot")
            return {}
        if cmd == "vanish":
            if not self.present:
                raise ValueError("already vanished")
            self.vanish()
            if req.get("reappear_after_ms") is not None:
                self.loop.call_later(int(req["reappear_after_ms"]) / 1000, self.reappear,
                                     bool(req.get("boot_urcs", False)))
            return {}
        if cmd == "reappear":
            if self.present:
                raise ValueError("the port is present")
            self.reappear(bool(req.get("boot_urcs", False)))
            return {"tty": self.tty_name, "link": self.link}
        if cmd == "events":
            since = int(req.get("since", 0))
            evs = [e for e in self.events if e["n"] >= since]
            if req.get("kind"):
                evs = [e for e in evs if e["kind"] == req["kind"]]
            return {"events": evs, "next": len(self.events)}
        if cmd == "wait":
            kind = req["event"]
            count = int(req.get("count", 1))
            since = int(req.get("since", 0))
            match = req.get("match") or {}
            deadline = time.monotonic() + int(req.get("timeout_ms", 5000)) / 1000
            while True:
                evs = [e for e in self.events if e["n"] >= since and e["kind"] == kind
                       and all(e.get(k) == v for k, v in match.items())]
                if len(evs) >= count:
                    return {"events": evs}
                if time.monotonic() > deadline:
                    return {"ok": False, "error": f"timeout: {len(evs)} of {count} {kind}",
                            "events": evs}
                await asyncio.sleep(0.02)
        if cmd == "transcript":
            last = int(req.get("last", 200))
            return {"transcript": [{"t": t, "dir": d, "data": x}
                                   for t, d, x in list(self.transcript)[-last:]]}
        if cmd == "quit":
            self.loop.call_later(0.05, self.shutdown)
            return {}
        raise ValueError(f"unknown cmd {cmd!r}")

    async def serve_client(self, reader, writer):
        peer = writer.get_extra_info("peername")
        while True:
            try:
                raw = await reader.readline()
            except (ConnectionError, asyncio.IncompleteReadError):
                break
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            log(f"ctl {peer[1]} <- {line}")
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("a request is a JSON object")
            except ValueError as e:
                resp = {"ok": False, "error": f"invalid JSON: {e}"}
            else:
                try:
                    body = await self.control(req)
                    resp = {"cmd": req.get("cmd"), "ok": True}
                    resp.update(body)
                except Exception as e:  # report, keep serving
                    resp = {"cmd": req.get("cmd"), "ok": False, "error": str(e)}
                if "id" in req:
                    resp["id"] = req["id"]
            text = json.dumps(resp, default=str)
            log(f"ctl {peer[1]} -> {text[:2000]}{'…' if len(text) > 2000 else ''}")
            try:
                writer.write(text.encode() + b"\n")
                await writer.drain()
            except ConnectionError:
                break
        writer.close()

    def shutdown(self):
        log("quit")
        self.close_port()
        self.loop.stop()


def crosscheck(pdu_hex: str, ours: dict):
    """A second decoding of an SMS-SUBMIT by python-gsmmodem-new (if installed)."""
    if _gsmlib is None:
        return None
    res = {"library": "python-gsmmodem-new"}
    try:
        r = _gsmlib.decodeSmsPdu(pdu_hex)
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        res["agrees"] = False
        return res
    concat = None
    for ie in r.get("udh") or []:
        if hasattr(ie, "reference"):
            concat = {"ref": ie.reference, "total": ie.parts, "seq": ie.number}
    res.update({"to": r.get("number"), "text": r.get("text"), "mr": r.get("reference"),
                "concat": concat})
    mine = ours.get("concat")
    mine = {"ref": mine["ref"], "total": mine["total"], "seq": mine["seq"]} if mine else None
    res["agrees"] = (res["to"] == ours.get("to") and concat == mine
                     and (ours.get("encoding") == "8bit" or res["text"] == ours.get("text")))
    return res


async def main():
    ap = argparse.ArgumentParser(description="GSM/LTE modem emulator on a pty (see README.md)")
    ap.add_argument("--link", help="keep a symlink at this path pointing at the current pts")
    ap.add_argument("--control-port", type=int, default=0, help="TCP port (0: any free one)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="sim800")
    ap.add_argument("--pin", help="the SIM asks for this PIN at boot (e.g. 1234)")
    ap.add_argument("--storage-size", type=int, help="capacity of the SIM storage \"SM\"")
    ap.add_argument("--noise", action="store_true", help="vendor URC noise from the start")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="exit when stdin closes (spawn with a piped stdin)")
    args = ap.parse_args()

    modem = Modem(args)
    modem.open_port()
    server = await asyncio.start_server(modem.serve_client, "127.0.0.1", args.control_port)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal():
        log("signal: shutting down")
        modem.close_port()
        if not stop.done():
            stop.set_result(None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    modem.shutdown = lambda: (log("quit"), modem.close_port(),
                              stop.done() or stop.set_result(None))

    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            log("stdin closed: exiting")
            loop.call_soon_threadsafe(on_signal)
        threading.Thread(target=watch_stdin, daemon=True).start()

    tasks = [asyncio.create_task(modem.at_loop()), asyncio.create_task(modem.noise_loop()),
             asyncio.create_task(modem.ticker())]
    sys.stdout.write(json.dumps({"tty": modem.tty_name, "control": port, "link": args.link,
                                 "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    log(f"ready: tty {modem.tty_name}, control 127.0.0.1:{port}, profile {args.profile}")
    try:
        await stop
    finally:
        for t in tasks:
            t.cancel()
        server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
