"""SMS TPDU encoding and decoding for the modem emulator, written from the specifications.

3GPP TS 23.040 (SMS-DELIVER §9.2.2.1, SMS-SUBMIT §9.2.2.2, SMS-STATUS-REPORT §9.2.2.3, addresses
§9.1.2.5, TP-VP §9.2.3.12, TP-SCTS §9.2.3.11, UDH §9.2.3.24) and TS 23.038 (GSM 7-bit default
alphabet and extension table §6.2.1, DCS §4). Standard library only.

This is textgate's independent check of its Rust encoder: nothing here is shared with, or derived
from, the Rust code. python-gsmmodem-new (the pip requirement) is a second, third-party opinion
that the emulator and selftest.py compare against; it can encode SMS-SUBMIT but not SMS-DELIVER or
SMS-STATUS-REPORT, and it mis-handles a few cases (see README.md), so the encoders live here.

PDUs are hex strings (upper case on output, either case on input) that start with the SMSC
(RP-SC) address as AT+CMGS / +CMGR / +CMT carry them (TS 27.005 §3.1 <pdu>).
"""

from __future__ import annotations

import datetime as _dt

# TS 23.038 §6.2.1: the GSM 7-bit default alphabet, index = septet value. 0x1B is the escape to
# the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC) == 128
# TS 23.038 §6.2.1.1: the default extension table (after 0x1B).
GSM7_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
            0x3E: "]", 0x40: "|", 0x65: "€"}
_BASIC_INV = {c: i for i, c in enumerate(GSM7_BASIC) if i != 0x1B}
_EXT_INV = {c: i for i, c in GSM7_EXT.items()}


class PduError(ValueError):
    """The PDU is malformed (a real modem answers +CMS ERROR: 304 to such a PDU)."""


# ---------------------------------------------------------------------------- GSM 7-bit

def gsm7_septets(text: str) -> list[int]:
    """Text -> septet values (escape sequences included). Raises ValueError if not encodable."""
    out = []
    for ch in text:
        if ch in _BASIC_INV:
            out.append(_BASIC_INV[ch])
        elif ch in _EXT_INV:
            out += [0x1B, _EXT_INV[ch]]
        else:
            raise ValueError(f"character {ch!r} is not in the GSM 7-bit default alphabet")
    return out


def gsm7_encodable(text: str) -> bool:
    return all(ch in _BASIC_INV or ch in _EXT_INV for ch in text)


def gsm7_text(septets, warnings: list | None = None) -> str:
    """Septet values -> text (TS 23.038 §6.2.1.1: an unknown extension code shows the basic
    table's character)."""
    out = []
    esc = False
    for s in septets:
        if esc:
            esc = False
            if s in GSM7_EXT:
                out.append(GSM7_EXT[s])
            else:
                if warnings is not None:
                    warnings.append(f"escape followed by 0x{s:02X}, not in the extension table")
                out.append(GSM7_BASIC[s] if s != 0x1B else " ")
        elif s == 0x1B:
            esc = True
        else:
            out.append(GSM7_BASIC[s])
    if esc and warnings is not None:
        warnings.append("text ends with a lone escape (0x1B)")
    return "".join(out)


def pack_septets(septets, fill_bits: int = 0) -> bytes:
    """Packs septets LSB first after `fill_bits` zero bits (TS 23.040 §9.2.3.24 fill bits)."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits > 0:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """Unpacks `count` septets that start `fill_bits` bits into `data`."""
    value = int.from_bytes(data, "little")
    total_bits = len(data) * 8
    if fill_bits + count * 7 > total_bits:
        raise PduError(f"user data too short: {count} septets need {fill_bits + count * 7} bits, "
                       f"have {total_bits}")
    return [(value >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


# ---------------------------------------------------------------------------- addresses

def _semi_octets(digits: str) -> bytes:
    """'12345' -> 21 43 F5 (TS 23.040 §9.1.2.3). Digits may include * # a b c."""
    table = {str(i): i for i in range(10)}
    table.update({"*": 0xA, "#": 0xB, "a": 0xC, "b": 0xD, "c": 0xE, "A": 0xC, "B": 0xD, "C": 0xE})
    vals = [table[d] for d in digits]
    if len(vals) % 2:
        vals.append(0xF)
    return bytes(vals[i] | (vals[i + 1] << 4) for i in range(0, len(vals), 2))


def _digits(data: bytes, count: int | None = None) -> str:
    chars = "0123456789*#abc"
    out = []
    for b in data:
        for nib in (b & 0x0F, b >> 4):
            if nib == 0xF:
                continue
            out.append(chars[nib] if nib < 15 else "?")
    s = "".join(out)
    return s[:count] if count is not None else s


def toa_for(address: str) -> int:
    """The type-of-address the emulator uses for an address given as a string:
    '+digits' -> 0x91 (international, ISDN), digits -> 0x81 (unknown, ISDN),
    anything else -> 0xD0 (alphanumeric, TS 23.040 §9.1.2.5)."""
    if address.startswith("+") and address[1:].isdigit() and len(address) > 1:
        return 0x91
    if address.isdigit():
        return 0x81
    return 0xD0


def encode_address(address: str, toa: int | None = None) -> bytes:
    """TP-OA / TP-DA / TP-RA (TS 23.040 §9.1.2.5): length in useful semi-octets, TOA, value."""
    toa = toa_for(address) if toa is None else toa
    if (toa & 0x70) == 0x50:  # alphanumeric, GSM 7-bit packed
        septets = gsm7_septets(address)
        value = pack_septets(septets)
        length = (len(septets) * 7 + 3) // 4
        if length > 20:
            raise ValueError("alphanumeric address longer than 11 characters")
        return bytes([length, toa]) + value
    digits = address[1:] if address.startswith("+") else address
    return bytes([len(digits), toa]) + _semi_octets(digits)


def encode_sca(address: str | None) -> bytes:
    """The RP SC address in front of the TPDU (TS 27.005 §3.1: length counts octets incl. TOA)."""
    if not address:
        return b"\x00"
    toa = 0x91 if address.startswith("+") else 0x81
    digits = address.lstrip("+")
    value = _semi_octets(digits)
    return bytes([len(value) + 1, toa]) + value


def _decode_address(buf: bytes, pos: int, what: str) -> tuple[dict, int]:
    if pos + 2 > len(buf):
        raise PduError(f"{what}: PDU ends inside the address")
    length, toa = buf[pos], buf[pos + 1]
    nbytes = (length + 1) // 2
    value = buf[pos + 2:pos + 2 + nbytes]
    if len(value) < nbytes:
        raise PduError(f"{what}: address needs {nbytes} octets, PDU ends first")
    ton, npi = (toa >> 4) & 0x07, toa & 0x0F
    if ton == 5:
        count = (length * 4) // 7
        text = gsm7_text(unpack_septets(value, count))
        addr = text
    else:
        addr = _digits(value, length)
        if ton == 1:
            addr = "+" + addr
    return ({"address": addr, "toa": toa, "ton": ton, "npi": npi, "length": length},
            pos + 2 + nbytes)


def _decode_sca(buf: bytes) -> tuple[str | None, int]:
    if not buf:
        raise PduError("empty PDU")
    n = buf[0]
    if n == 0:
        return None, 1
    if 1 + n > len(buf):
        raise PduError("SMSC address length runs past the PDU")
    toa = buf[1]
    digits = _digits(buf[2:1 + n])
    return ("+" + digits if (toa >> 4) & 7 == 1 else digits), 1 + n


# ---------------------------------------------------------------------------- timestamps

def encode_timestamp(when: _dt.datetime) -> bytes:
    """TP-SCTS / TP-DT (TS 23.040 §9.2.3.11): 7 swapped semi-octets, TZ in signed quarter hours."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    off = when.utcoffset() or _dt.timedelta(0)
    quarters = int(off.total_seconds() // 900)
    neg = quarters < 0
    quarters = abs(quarters)

    def bcd(v):
        return ((v % 10) << 4) | (v // 10)
    tz = ((quarters % 10) << 4) | (quarters // 10) | (0x08 if neg else 0)
    return bytes([bcd(when.year % 100), bcd(when.month), bcd(when.day), bcd(when.hour),
                  bcd(when.minute), bcd(when.second), tz])


def decode_timestamp(b: bytes) -> str:
    """-> ISO 8601 with offset, e.g. '2015-01-09T17:38:30+05:30'."""
    def val(x):
        return (x & 0x0F) * 10 + (x >> 4)
    yy, mo, dd, hh, mi, ss = (val(x) for x in b[:6])
    tzb = b[6]
    q = (tzb & 0x07) * 10 + (tzb >> 4)
    sign = "-" if tzb & 0x08 else "+"
    return (f"{2000 + yy:04d}-{mo:02d}-{dd:02d}T{hh:02d}:{mi:02d}:{ss:02d}"
            f"{sign}{q * 15 // 60:02d}:{q * 15 % 60:02d}")


def text_mode_timestamp(when: _dt.datetime) -> str:
    """TS 27.005 §3.3 <scts> in text mode: "yy/MM/dd,hh:mm:ss±zz" (zz in quarter hours)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    q = int((when.utcoffset() or _dt.timedelta(0)).total_seconds() // 900)
    return when.strftime("%y/%m/%d,%H:%M:%S") + ("-" if q < 0 else "+") + f"{abs(q):02d}"


# ---------------------------------------------------------------------------- DCS, UDH

def dcs_info(dcs: int) -> dict:
    """TS 23.038 §4: alphabet and message class of a TP-DCS octet."""
    group = dcs >> 4
    cls = None
    compressed = False
    if group <= 0x7:  # 00xx general, 01xx automatic deletion
        compressed = bool(dcs & 0x20)
        alphabet = {0: "gsm7", 1: "8bit", 2: "ucs2", 3: "reserved"}[(dcs >> 2) & 3]
        if dcs & 0x10:
            cls = dcs & 3
    elif group in (0xC, 0xD):
        alphabet = "gsm7"      # message waiting indication, discard / store
    elif group == 0xE:
        alphabet = "ucs2"      # message waiting indication, store, UCS2
    elif group == 0xF:
        alphabet = "8bit" if dcs & 0x04 else "gsm7"
        cls = dcs & 3
    else:
        alphabet = "reserved"  # 1000..1011 reserved coding groups
    return {"alphabet": alphabet, "class": cls, "compressed": compressed}


def dcs_for(encoding: str, msg_class: int | None = None) -> int:
    base = {"gsm7": 0x00, "8bit": 0x04, "ucs2": 0x08}[encoding]
    if msg_class is not None:
        base |= 0x10 | (msg_class & 3)
    return base


def parse_udh(udh: bytes) -> dict:
    """TS 23.040 §9.2.3.24: the information elements of a UDH (without its UDHL octet)."""
    ies, warnings = [], []
    i = 0
    concat = None
    while i < len(udh):
        if i + 2 > len(udh):
            warnings.append("UDH ends inside an IE header")
            break
        iei, ln = udh[i], udh[i + 1]
        data = udh[i + 2:i + 2 + ln]
        if len(data) < ln:
            warnings.append(f"IE 0x{iei:02X} runs past the UDH")
        ies.append({"iei": iei, "data": data.hex().upper()})
        if iei == 0x00 and ln == 3:
            concat = {"ref": data[0], "ref_bits": 8, "total": data[1], "seq": data[2]}
        elif iei == 0x08 and ln == 4:
            concat = {"ref": (data[0] << 8) | data[1], "ref_bits": 16, "total": data[2],
                      "seq": data[3]}
        i += 2 + ln
    if concat is not None and (concat["total"] == 0 or concat["seq"] == 0
                               or concat["seq"] > concat["total"]):
        warnings.append(f"concatenation IE out of range: {concat}")
    return {"hex": udh.hex().upper(), "ies": ies, "concat": concat, "warnings": warnings}


def concat_udh(ref: int, total: int, seq: int, ref16: bool = False) -> bytes:
    if ref16:
        return bytes([0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq])
    return bytes([0x00, 3, ref & 0xFF, total, seq])


def _user_data(alphabet: str, body, udh: bytes | None) -> tuple[int, bytes]:
    """-> (TP-UDL, TP-UD). body is septets (gsm7) or bytes."""
    head = b"" if udh is None else bytes([len(udh)]) + udh
    if alphabet == "gsm7":
        hdr_bits = len(head) * 8
        fill = (7 - hdr_bits % 7) % 7
        hdr_septets = (hdr_bits + fill) // 7
        packed = pack_septets(body, fill)
        # The fill bits sit in the first octet after the header; pack_septets started at bit
        # `fill` of a fresh octet, which is the same thing.
        return hdr_septets + len(body), head + packed
    return len(head) + len(body), head + bytes(body)


def _decode_user_data(buf: bytes, pos: int, udl: int, alphabet: str, udhi: bool) -> dict:
    rest = buf[pos:]
    res = {"udh": None, "concat": None, "text": None, "body_hex": None, "warnings": [],
           "ud_octets": None}
    warnings = res["warnings"]
    if alphabet == "gsm7":
        need = (udl * 7 + 7) // 8
    else:
        need = udl
    res["ud_octets"] = need
    if len(rest) < need:
        raise PduError(f"TP-UDL {udl} needs {need} octets of user data, PDU has {len(rest)}")
    if len(rest) > need:
        raise PduError(f"{len(rest) - need} octet(s) after the user data (TP-UDL {udl})")
    ud = rest[:need]
    hdr_len = 0
    if udhi:
        if not ud:
            raise PduError("TP-UDHI set but no user data")
        udhl = ud[0]
        if 1 + udhl > len(ud):
            raise PduError(f"UDHL {udhl} runs past the user data")
        udh = parse_udh(ud[1:1 + udhl])
        warnings += udh.pop("warnings")
        res["udh"] = udh
        res["concat"] = udh["concat"]
        hdr_len = 1 + udhl
    if alphabet == "gsm7":
        hdr_bits = hdr_len * 8
        fill = (7 - hdr_bits % 7) % 7
        hdr_septets = (hdr_bits + fill) // 7
        n = udl - hdr_septets
        if n < 0:
            raise PduError("TP-UDL smaller than the UDH")
        septets = unpack_septets(ud[hdr_len:], n, fill) if n else []
        res["septets"] = n
        res["body_hex"] = bytes(septets).hex().upper()
        res["text"] = gsm7_text(septets, warnings)
    else:
        body = ud[hdr_len:]
        res["body_hex"] = body.hex().upper()
        if alphabet == "ucs2":
            if len(body) % 2:
                warnings.append("UCS2 body has an odd number of octets")
                body = body[:-1]
            try:
                res["text"] = body.decode("utf-16-be")
            except UnicodeDecodeError:
                warnings.append("UCS2 body has an unpaired surrogate")
                res["text"] = body.decode("utf-16-be", errors="replace")
        elif alphabet == "8bit":
            res["text"] = None
    return res


# ---------------------------------------------------------------------------- VP

def vp_relative_minutes(vp: int) -> int:
    """TS 23.040 §9.2.3.12.1."""
    if vp <= 143:
        return (vp + 1) * 5
    if vp <= 167:
        return 12 * 60 + (vp - 143) * 30
    if vp <= 196:
        return (vp - 166) * 24 * 60
    return (vp - 192) * 7 * 24 * 60


# ---------------------------------------------------------------------------- SMS-SUBMIT

def decode_submit(pdu_hex: str) -> dict:
    """Decodes an SMS-SUBMIT as given to AT+CMGS in PDU mode (SCA first). Raises PduError."""
    s = pdu_hex.strip()
    try:
        buf = bytes.fromhex(s)
    except ValueError as e:
        raise PduError(f"not hex: {e}") from None
    sca, pos = _decode_sca(buf)
    tpdu_len = len(buf) - pos
    if tpdu_len < 7:
        raise PduError("TPDU too short for an SMS-SUBMIT")
    fo = buf[pos]
    mti = fo & 3
    if mti != 1:
        raise PduError(f"TP-MTI is {mti}, not SMS-SUBMIT (1)")
    vpf = (fo >> 3) & 3
    res = {
        "type": "SMS-SUBMIT", "sca": sca, "tpdu_length": tpdu_len, "first_octet": fo,
        "rd": bool(fo & 0x04), "vpf": ["none", "enhanced", "relative", "absolute"][vpf],
        "srr": bool(fo & 0x20), "udhi": bool(fo & 0x40), "rp": bool(fo & 0x80),
    }
    pos += 1
    res["mr"] = buf[pos]
    pos += 1
    da, pos = _decode_address(buf, pos, "TP-DA")
    res["to"] = da["address"]
    res["to_toa"] = da["toa"]
    res["to_ton"] = da["ton"]
    res["to_npi"] = da["npi"]
    if pos + 2 > len(buf):
        raise PduError("PDU ends before TP-PID/TP-DCS")
    res["pid"] = buf[pos]
    res["dcs"] = buf[pos + 1]
    pos += 2
    info = dcs_info(res["dcs"])
    res["encoding"] = info["alphabet"]
    res["class"] = info["class"]
    res["vp"] = None
    res["vp_minutes"] = None
    if vpf == 2:
        if pos >= len(buf):
            raise PduError("PDU ends before TP-VP")
        res["vp"] = buf[pos]
        res["vp_minutes"] = vp_relative_minutes(buf[pos])
        pos += 1
    elif vpf in (1, 3):
        if pos + 7 > len(buf):
            raise PduError("PDU ends inside TP-VP")
        raw = buf[pos:pos + 7]
        res["vp"] = raw.hex().upper()
        if vpf == 3:
            res["vp_absolute"] = decode_timestamp(raw)
        pos += 7
    if pos >= len(buf):
        raise PduError("PDU ends before TP-UDL")
    udl = buf[pos]
    pos += 1
    res["udl"] = udl
    if info["alphabet"] == "reserved" or info["compressed"]:
        warnings = [f"DCS 0x{res['dcs']:02X}: {'compressed' if info['compressed'] else 'reserved'}"
                    " alphabet, user data not decoded"]
        res.update({"udh": None, "concat": None, "text": None,
                    "body_hex": buf[pos:].hex().upper(), "warnings": warnings})
        return res
    res.update(_decode_user_data(buf, pos, udl, info["alphabet"], res["udhi"]))
    if res["udhi"] is False and res["udh"] is None:
        pass
    return res


def encode_submit(to: str, text: str | None = None, *, encoding: str = "gsm7", body: bytes = b"",
                  mr: int = 0, srr: bool = False, vp: int | None = None, udh: bytes | None = None,
                  sca: str | None = None, pid: int = 0) -> str:
    """An SMS-SUBMIT (used for text-mode AT+CMGS records and by tests)."""
    fo = 0x01 | (0x20 if srr else 0) | (0x40 if udh else 0) | (0x10 if vp is not None else 0)
    out = bytearray(encode_sca(sca))
    out += bytes([fo, mr & 0xFF]) + encode_address(to) + bytes([pid, dcs_for(encoding)])
    if vp is not None:
        out.append(vp)
    payload = gsm7_septets(text) if encoding == "gsm7" else (
        text.encode("utf-16-be") if encoding == "ucs2" else body)
    udl, ud = _user_data(encoding, payload, udh)
    out.append(udl)
    out += ud
    return out.hex().upper()


# ---------------------------------------------------------------------------- SMS-DELIVER

def encode_deliver(sender: str, *, encoding: str = "gsm7", text: str = "", body: bytes = b"",
                   septets: list[int] | None = None, udh: bytes | None = None,
                   scts: _dt.datetime | None = None, sca: str | None = None, pid: int = 0,
                   dcs: int | None = None, msg_class: int | None = None, mms: bool = False,
                   sri: bool = False, sender_toa: int | None = None) -> tuple[str, int]:
    """SMS-DELIVER (TS 23.040 §9.2.2.1). -> (PDU hex with SCA, TPDU length).

    `mms`: TP-More-Messages-to-Send; False sets the bit (bit value 1 = no more messages)."""
    fo = 0x00 | (0x00 if mms else 0x04) | (0x20 if sri else 0) | (0x40 if udh else 0)
    if dcs is None:
        dcs = dcs_for(encoding, msg_class)
    if encoding == "gsm7":
        payload = septets if septets is not None else gsm7_septets(text)
    elif encoding == "ucs2":
        payload = text.encode("utf-16-be") if text else body
    else:
        payload = body
    udl, ud = _user_data(encoding, payload, udh)
    if encoding == "gsm7" and udl > 160 or encoding != "gsm7" and udl > 140:
        raise ValueError(f"user data too long for one SMS (TP-UDL {udl})")
    tpdu = bytearray([fo]) + encode_address(sender, sender_toa) + bytes([pid, dcs])
    tpdu += encode_timestamp(scts or _dt.datetime.now(_dt.timezone.utc))
    tpdu += bytes([udl]) + ud
    return (encode_sca(sca) + bytes(tpdu)).hex().upper(), len(tpdu)


def decode_deliver(pdu_hex: str) -> dict:
    buf = bytes.fromhex(pdu_hex)
    sca, pos = _decode_sca(buf)
    fo = buf[pos]
    if fo & 3 != 0:
        raise PduError(f"TP-MTI is {fo & 3}, not SMS-DELIVER (0)")
    res = {"type": "SMS-DELIVER", "sca": sca, "tpdu_length": len(buf) - pos, "first_octet": fo,
           "mms": not bool(fo & 0x04), "sri": bool(fo & 0x20), "udhi": bool(fo & 0x40)}
    pos += 1
    oa, pos = _decode_address(buf, pos, "TP-OA")
    res["from"] = oa["address"]
    res["from_toa"] = oa["toa"]
    res["pid"], res["dcs"] = buf[pos], buf[pos + 1]
    pos += 2
    res["scts"] = decode_timestamp(buf[pos:pos + 7])
    pos += 7
    udl = buf[pos]
    pos += 1
    res["udl"] = udl
    info = dcs_info(res["dcs"])
    res["encoding"] = info["alphabet"]
    res["class"] = info["class"]
    res.update(_decode_user_data(buf, pos, udl, info["alphabet"], res["udhi"]))
    return res


# ---------------------------------------------------------------------------- SMS-STATUS-REPORT

def encode_status_report(mr: int, recipient: str, *, status: int = 0,
                         scts: _dt.datetime | None = None, discharge: _dt.datetime | None = None,
                         sca: str | None = None, recipient_toa: int | None = None,
                         mms: bool = False) -> tuple[str, int]:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3), result of an SMS-SUBMIT (TP-SRQ 0), without the
    optional TP-PI and later fields. -> (PDU hex with SCA, TPDU length)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    fo = 0x02 | (0x00 if mms else 0x04)
    tpdu = bytearray([fo, mr & 0xFF]) + encode_address(recipient, recipient_toa)
    tpdu += encode_timestamp(scts or now) + encode_timestamp(discharge or now)
    tpdu.append(status & 0xFF)
    return (encode_sca(sca) + bytes(tpdu)).hex().upper(), len(tpdu)


def decode_status_report(pdu_hex: str) -> dict:
    buf = bytes.fromhex(pdu_hex)
    sca, pos = _decode_sca(buf)
    fo = buf[pos]
    if fo & 3 != 2:
        raise PduError(f"TP-MTI is {fo & 3}, not SMS-STATUS-REPORT (2)")
    res = {"type": "SMS-STATUS-REPORT", "sca": sca, "tpdu_length": len(buf) - pos,
           "first_octet": fo, "mms": not bool(fo & 0x04), "srq": bool(fo & 0x20)}
    pos += 1
    res["mr"] = buf[pos]
    pos += 1
    ra, pos = _decode_address(buf, pos, "TP-RA")
    res["recipient"] = ra["address"]
    res["recipient_toa"] = ra["toa"]
    res["scts"] = decode_timestamp(buf[pos:pos + 7])
    res["discharge"] = decode_timestamp(buf[pos + 7:pos + 14])
    res["status"] = buf[pos + 14]
    return res


# ---------------------------------------------------------------------------- splitting

SINGLE_LIMIT = {"gsm7": 160, "ucs2": 140, "8bit": 140}   # septets / octets of one SMS


def split_message(encoding: str, text: str = "", body: bytes = b"", parts: int | None = None,
                  ref16: bool = False) -> list:
    """Splits a message into the payloads of its SMS (septet lists for gsm7, bytes otherwise).
    Concatenated parts leave room for a 6-octet (7 with 16-bit ref) UDH: 153/152 septets,
    134/133 octets, 67/66 UCS2 units. Never splits a GSM escape sequence or a UTF-16 surrogate
    pair. `parts` forces that many parts (split as evenly as the units allow)."""
    if encoding == "gsm7":
        units = []   # one entry per character: its septets
        for ch in text:
            units.append(gsm7_septets(ch))
        size = lambda u: len(u)  # noqa: E731
        per_part = 152 if ref16 else 153
        total = sum(len(u) for u in units)
        single = total <= 160
    elif encoding == "ucs2":
        units = [ch.encode("utf-16-be") for ch in text]
        size = lambda u: len(u)  # noqa: E731
        per_part = 132 if ref16 else 134
        total = sum(len(u) for u in units)
        single = total <= 140
    else:
        units = [bytes([b]) for b in body]
        size = lambda u: 1  # noqa: E731
        per_part = 133 if ref16 else 134
        total = len(units)
        single = total <= 140

    def join(chunk):
        if encoding == "gsm7":
            return [s for u in chunk for s in u]
        return b"".join(chunk)

    if parts is None:
        if single:
            return [join(units)]
        out, cur, cur_n = [], [], 0
        for u in units:
            if cur_n + size(u) > per_part:
                out.append(join(cur))
                cur, cur_n = [], 0
            cur.append(u)
            cur_n += size(u)
        if cur:
            out.append(join(cur))
        return out
    if parts < 1:
        raise ValueError("parts must be >= 1")
    if parts == 1:
        if not single:
            raise ValueError("text does not fit in one SMS")
        return [join(units)]
    if len(units) < parts:
        raise ValueError(f"cannot split {len(units)} characters into {parts} parts")
    out = []
    remaining_units = list(units)
    for i in range(parts, 0, -1):
        remaining = sum(size(u) for u in remaining_units)
        target = -(-remaining // i)
        chunk, n = [], 0
        while remaining_units and (n + size(remaining_units[0]) <= target or not chunk) \
                and len(remaining_units) > i - 1:
            u = remaining_units.pop(0)
            chunk.append(u)
            n += size(u)
        if n > per_part:
            raise ValueError(f"text too long for {parts} parts")
        out.append(join(chunk))
    if remaining_units:
        raise ValueError(f"text too long for {parts} parts")
    return out
