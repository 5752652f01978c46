//! SMPP 3.4 framing and the handful of PDUs the simulator needs, written by hand.
//!
//! Why not `rusmpp` (0.4, already in the lockfile): its decoder builds an owned `Command`
//! per PDU (every C-octet string and the short message become their own heap buffers) and
//! its codec is built around `tokio_util::codec`, i.e. one PDU per frame. A benchmark SMSC
//! should be cheaper than the systems it measures, and we need just ten fixed-layout PDUs, so
//! here PDUs are parsed in place from the read buffer (borrowed slices, no allocation) and
//! encoded straight into one batched write buffer per wake-up. About 200 lines; the framing
//! is unit-tested below.

pub const RESP: u32 = 0x8000_0000;
pub const GENERIC_NACK: u32 = 0x8000_0000;
pub const BIND_RECEIVER: u32 = 0x0000_0001;
pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
pub const SUBMIT_SM: u32 = 0x0000_0004;
pub const DELIVER_SM: u32 = 0x0000_0005;
pub const UNBIND: u32 = 0x0000_0006;
pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
pub const ENQUIRE_LINK: u32 = 0x0000_0015;

pub const ESME_ROK: u32 = 0x00;
pub const ESME_RINVCMDLEN: u32 = 0x02;
pub const ESME_RINVCMDID: u32 = 0x03;
pub const ESME_RINVBNDSTS: u32 = 0x04;
pub const ESME_RALYBND: u32 = 0x05;
pub const ESME_RSYSERR: u32 = 0x08;
pub const ESME_RINVPASWD: u32 = 0x0E;
pub const ESME_RINVSYSID: u32 = 0x0F;

pub const TLV_RECEIPTED_MESSAGE_ID: u16 = 0x001E;
pub const TLV_MESSAGE_STATE: u16 = 0x0427;
pub const TLV_SC_INTERFACE_VERSION: u16 = 0x0210;

pub const HEADER_LEN: usize = 16;
/// Larger command_length values are treated as a broken stream.
pub const MAX_PDU_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub id: u32,
    pub status: u32,
    pub seq: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadLength(pub u32);

/// Looks at the start of `buf`: `Ok(Some(h))` when a whole PDU of `h.len` bytes is there,
/// `Ok(None)` when more bytes are needed, `Err` when command_length is impossible.
pub fn frame(buf: &[u8]) -> Result<Option<Header>, BadLength> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be32(&buf[0..4]);
    if (len as usize) < HEADER_LEN || len as usize > MAX_PDU_LEN {
        return Err(BadLength(len));
    }
    if buf.len() < len as usize || buf.len() < HEADER_LEN {
        return Ok(None);
    }
    Ok(Some(Header {
        len: len as usize,
        id: be32(&buf[4..8]),
        status: be32(&buf[8..12]),
        seq: be32(&buf[12..16]),
    }))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Cursor over a PDU body.
pub struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Rd { b }
    }
    pub fn u8(&mut self) -> Option<u8> {
        let (&v, rest) = self.b.split_first()?;
        self.b = rest;
        Some(v)
    }
    /// A C-octet string (without its NUL).
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let n = self.b.iter().position(|&c| c == 0)?;
        let s = &self.b[..n];
        self.b = &self.b[n + 1..];
        Some(s)
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (s, rest) = self.b.split_at(n);
        self.b = rest;
        Some(s)
    }
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }
}

pub struct Bind<'a> {
    pub system_id: &'a [u8],
    pub password: &'a [u8],
}

pub fn parse_bind(body: &[u8]) -> Option<Bind<'_>> {
    let mut r = Rd::new(body);
    let system_id = r.cstr()?;
    let password = r.cstr()?;
    // system_type, interface_version, addr_ton, addr_npi, address_range: not needed.
    Some(Bind {
        system_id,
        password,
    })
}

/// The fields of submit_sm / deliver_sm the simulator uses (the rest are read by the tests).
#[allow(dead_code)]
pub struct Sm<'a> {
    pub source_ton: u8,
    pub source_npi: u8,
    pub source_addr: &'a [u8],
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub dest_addr: &'a [u8],
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub short_message: &'a [u8],
    pub tlvs: &'a [u8],
}

pub fn parse_sm(body: &[u8]) -> Option<Sm<'_>> {
    let mut r = Rd::new(body);
    r.cstr()?; // service_type
    let source_ton = r.u8()?;
    let source_npi = r.u8()?;
    let source_addr = r.cstr()?;
    let dest_ton = r.u8()?;
    let dest_npi = r.u8()?;
    let dest_addr = r.cstr()?;
    let esm_class = r.u8()?;
    r.u8()?; // protocol_id
    r.u8()?; // priority_flag
    r.cstr()?; // schedule_delivery_time
    r.cstr()?; // validity_period
    let registered_delivery = r.u8()?;
    r.u8()?; // replace_if_present_flag
    let data_coding = r.u8()?;
    r.u8()?; // sm_default_msg_id
    let sm_length = r.u8()? as usize;
    let short_message = r.bytes(sm_length)?;
    Some(Sm {
        source_ton,
        source_npi,
        source_addr,
        dest_ton,
        dest_npi,
        dest_addr,
        esm_class,
        registered_delivery,
        data_coding,
        short_message,
        tlvs: r.rest(),
    })
}

/// Finds a TLV's value in a TLV area.
#[allow(dead_code)]
pub fn find_tlv(mut tlvs: &[u8], tag: u16) -> Option<&[u8]> {
    while tlvs.len() >= 4 {
        let t = u16::from_be_bytes([tlvs[0], tlvs[1]]);
        let l = u16::from_be_bytes([tlvs[2], tlvs[3]]) as usize;
        let v = tlvs.get(4..4 + l)?;
        if t == tag {
            return Some(v);
        }
        tlvs = &tlvs[4 + l..];
    }
    None
}

// ---- encoding: everything is appended to one output buffer ----

/// Starts a PDU; returns its offset for [`finish`].
pub fn begin(out: &mut Vec<u8>, id: u32, status: u32, seq: u32) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    at
}

/// Writes the command_length of the PDU started at `at`.
pub fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

pub fn put_tlv(out: &mut Vec<u8>, tag: u16, val: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&(val.len() as u16).to_be_bytes());
    out.extend_from_slice(val);
}

/// A PDU with an empty body (enquire_link, unbind, their resps, generic_nack).
pub fn header_only(out: &mut Vec<u8>, id: u32, status: u32, seq: u32) {
    let at = begin(out, id, status, seq);
    finish(out, at);
}

pub fn bind_resp(out: &mut Vec<u8>, bind_id: u32, status: u32, seq: u32, system_id: &[u8]) {
    let at = begin(out, bind_id | RESP, status, seq);
    if status == ESME_ROK {
        put_cstr(out, system_id);
        put_tlv(out, TLV_SC_INTERFACE_VERSION, &[0x34]);
    }
    finish(out, at);
}

/// submit_sm_resp / deliver_sm_resp with a message id.
pub fn sm_resp(out: &mut Vec<u8>, id: u32, status: u32, seq: u32, message_id: &[u8]) {
    let at = begin(out, id | RESP, status, seq);
    if status == ESME_ROK {
        put_cstr(out, message_id);
    }
    finish(out, at);
}

/// What an outgoing submit_sm / deliver_sm carries.
pub struct SmOut<'a> {
    pub source_ton: u8,
    pub source_npi: u8,
    pub source_addr: &'a [u8],
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub dest_addr: &'a [u8],
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub short_message: &'a [u8],
}

/// Encodes submit_sm or deliver_sm; TLVs, if any, are appended by the caller before
/// [`finish`]. Returns the PDU's offset.
pub fn sm(out: &mut Vec<u8>, id: u32, seq: u32, m: &SmOut<'_>) -> usize {
    let at = begin(out, id, 0, seq);
    out.push(0); // service_type ""
    out.push(m.source_ton);
    out.push(m.source_npi);
    put_cstr(out, m.source_addr);
    out.push(m.dest_ton);
    out.push(m.dest_npi);
    put_cstr(out, m.dest_addr);
    out.extend_from_slice(&[m.esm_class, 0, 0, 0, 0, m.registered_delivery, 0]);
    out.extend_from_slice(&[m.data_coding, 0, m.short_message.len() as u8]);
    out.extend_from_slice(m.short_message);
    at
}

/// Lower-case hex of `v` into `buf`; returns the digits.
pub fn hex(v: u64, buf: &mut [u8; 16]) -> &[u8] {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = D[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `YYMMDDhhmm` (UTC) for a receipt's submit/done date.
pub fn receipt_date(unix: u64, out: &mut Vec<u8>) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    for v in [y % 100, m, d, (secs / 3600) as i64, (secs / 60 % 60) as i64] {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut out = Vec::new();
        let m = SmOut {
            source_ton: 1,
            source_npi: 1,
            source_addr: b"15550001",
            dest_ton: 1,
            dest_npi: 1,
            dest_addr: b"15550002",
            esm_class: 0x04,
            registered_delivery: 1,
            data_coding: 0,
            short_message: b"hello",
        };
        let at = sm(&mut out, DELIVER_SM, 7, &m);
        put_tlv(&mut out, TLV_RECEIPTED_MESSAGE_ID, b"1f\0");
        put_tlv(&mut out, TLV_MESSAGE_STATE, &[2]);
        finish(&mut out, at);
        header_only(&mut out, ENQUIRE_LINK, 0, 8);
        let first = out.len() - HEADER_LEN;

        // Every prefix shorter than the first PDU is "need more".
        for n in 0..first {
            assert_eq!(frame(&out[..n]), Ok(None), "prefix {n}");
        }
        let h = frame(&out).unwrap().unwrap();
        assert_eq!((h.len, h.id, h.status, h.seq), (first, DELIVER_SM, 0, 7));
        let s = parse_sm(&out[HEADER_LEN..h.len]).unwrap();
        assert_eq!(s.source_addr, b"15550001");
        assert_eq!(s.dest_addr, b"15550002");
        assert_eq!((s.esm_class, s.registered_delivery), (0x04, 1));
        assert_eq!(s.short_message, b"hello");
        assert_eq!(
            find_tlv(s.tlvs, TLV_RECEIPTED_MESSAGE_ID),
            Some(&b"1f\0"[..])
        );
        assert_eq!(find_tlv(s.tlvs, TLV_MESSAGE_STATE), Some(&[2u8][..]));
        let h2 = frame(&out[h.len..]).unwrap().unwrap();
        assert_eq!((h2.len, h2.id, h2.seq), (HEADER_LEN, ENQUIRE_LINK, 8));
    }

    #[test]
    fn rejects_bad_lengths_and_truncated_bodies() {
        assert_eq!(frame(&[0, 0, 0, 15, 0, 0]), Err(BadLength(15)));
        assert_eq!(frame(&[0, 2, 0, 0]), Err(BadLength(0x20000)));
        assert!(parse_sm(b"\0\x01\x01123").is_none());
        let mut out = Vec::new();
        bind_resp(&mut out, BIND_TRANSCEIVER, ESME_ROK, 1, b"smsc");
        let h = frame(&out).unwrap().unwrap();
        assert_eq!(h.id, BIND_TRANSCEIVER | RESP);
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 5], b"smsc\0");
    }

    #[test]
    fn hex_and_dates() {
        let mut b = [0; 16];
        assert_eq!(hex(0, &mut b), b"0");
        assert_eq!(hex(0x1a2b, &mut b), b"1a2b");
        let mut d = Vec::new();
        receipt_date(1_709_251_199, &mut d); // 2024-02-29 23:59:59 UTC
        assert_eq!(d, b"2402292359");
    }
}
