//! The AT command layer of a modem, without I/O: the bytes a modem sends split into lines
//! and prompts ([`LineReader`]), each line told apart as a command's answer or an
//! unsolicited result code ([`classify`]), and `+CMS ERROR` codes sorted into those worth
//! trying again and those that are not ([`cms_error`]).
//!
//! Modems answer as ITU-T V.250 §5.7 says (`<CR><LF>text<CR><LF>`, a final result code such
//! as `OK`), but not only: some end lines with a bare `<LF>`, some echo commands even after
//! `ATE0`, the SMS prompt (TS 27.005 §3.5.1, `<CR><LF>> `) comes without a line end, and
//! unsolicited codes (`+CMTI`, `^RSSI`, `RDY`) arrive at any time, in the middle of a
//! command's answer too. Everything here is untrusted input: lines are capped at
//! [`MAX_LINE`] bytes, and a longer run without a line end is dropped, not buffered.

/// The longest line kept, in bytes: a PDU line is at most 2 × 176 hex digits; vendors'
/// information lines are shorter.
pub const MAX_LINE: usize = 1024;

/// What the modem said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A line, without its line end; never empty.
    Line(String),
    /// The `> ` prompt for a message's PDU (TS 27.005 §3.5.1).
    Prompt,
    /// More than [`MAX_LINE`] bytes without a line end (dropped).
    Overlong,
}

/// Splits the modem's bytes into what it said.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Set while an overlong line is being skipped up to its end.
    skipping: bool,
}

impl LineReader {
    /// Adds bytes read from the port.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next thing said, if a whole one is buffered.
    pub fn next_said(&mut self) -> Option<Said> {
        loop {
            // Line ends before anything: V.250's <CR><LF>, a bare <LF> or <CR>.
            let start = self
                .buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(self.buf.len());
            if start > 0 {
                self.buf.drain(..start);
                self.skipping = false;
            }
            match self.buf.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(end) => {
                    let line: Vec<u8> = self.buf.drain(..end).collect();
                    if std::mem::take(&mut self.skipping) {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    if text.is_empty() {
                        continue;
                    }
                    // A prompt followed by a line end (some modems send "> \r\n").
                    if text == ">" {
                        return Some(Said::Prompt);
                    }
                    return Some(Said::Line(text));
                }
                None => {
                    // The prompt is the one thing said without a line end.
                    if self.buf == b"> " || self.buf == b">" {
                        self.buf.clear();
                        return Some(Said::Prompt);
                    }
                    if self.buf.len() > MAX_LINE {
                        self.buf.clear();
                        let first = !self.skipping;
                        self.skipping = true;
                        return first.then_some(Said::Overlong);
                    }
                    return None;
                }
            }
        }
    }
}

/// A final result code (V.250 §5.7.2; TS 27.007 §9.2, TS 27.005 §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// `OK`.
    Ok,
    /// `ERROR`, or another failure code (`NO CARRIER`, `COMMAND NOT SUPPORT`).
    Error(String),
    /// `+CME ERROR: <err>`: a mobile equipment error (a code, or its text with `+CMEE=2`).
    Cme(String),
    /// `+CMS ERROR: <err>`: a message service failure.
    Cms(String),
}

impl std::fmt::Display for Final {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Final::Ok => f.write_str("OK"),
            Final::Error(e) => f.write_str(e),
            Final::Cme(c) => write!(f, "+CME ERROR: {c}"),
            Final::Cms(c) => write!(f, "+CMS ERROR: {c}"),
        }
    }
}

/// What a line is, for a command in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The command's end.
    Final(Final),
    /// Unsolicited, whatever the command; for [`Urc::NeedsPdu`] codes, the next line is
    /// the PDU.
    Urc(Urc),
    /// Part of the command's answer.
    Answer,
    /// The command echoed back.
    Echo,
}

/// An unsolicited result code the driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: a text was stored (TS 27.005 §3.4.1).
    Stored {
        /// The storage.
        mem: String,
        /// Its index there.
        index: u32,
    },
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    ReportStored {
        /// The storage.
        mem: String,
        /// Its index there.
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>` or `+CDS: <length>`: a text or status report delivered
    /// directly; its PDU is the next line.
    NeedsPdu {
        /// `+CMT` (a text) or `+CDS` (a status report).
        report: bool,
    },
    /// The modem's storage is full (Huawei `^SMMEMFULL`, Quectel `+QIND: "smsfull"`,
    /// `+CIEV: "SMSFULL"`): what is stored should be read and deleted now.
    StorageFull,
    /// `RDY` or an unsolicited `+CFUN: 1`, start-up codes after a reset the driver did not
    /// ask for: the modem must be set up again.
    Restarted,
    /// Anything else unsolicited (signal, network, vendor noise): ignored.
    Other,
}

/// What `line` is while `command` runs (`None`: no command).
pub fn classify(line: &str, command: Option<&str>) -> Kind {
    if let Some(f) = final_code(line) {
        return Kind::Final(f);
    }
    let cmd = command.map(|c| c.trim().to_ascii_uppercase());
    if let Some(c) = &cmd {
        // Echo: the command itself, also when echo is stuck on after ATE0.
        if line.eq_ignore_ascii_case(c) {
            return Kind::Echo;
        }
    }
    let prefix = line.split(':').next().unwrap_or("").trim();
    let answers = |p: &str| {
        cmd.as_deref().is_some_and(|c| {
            let name = c.trim_start_matches("AT");
            let name = name.split(['=', '?']).next().unwrap_or("");
            !name.is_empty() && p.eq_ignore_ascii_case(name)
        })
    };
    if line.contains(':') && answers(prefix) {
        return Kind::Answer;
    }
    match prefix.to_ascii_uppercase().as_str() {
        "+CMTI" => {
            return stored(line).map_or(Kind::Urc(Urc::Other), |(mem, index)| {
                Kind::Urc(Urc::Stored { mem, index })
            })
        }
        "+CDSI" => {
            return stored(line).map_or(Kind::Urc(Urc::Other), |(mem, index)| {
                Kind::Urc(Urc::ReportStored { mem, index })
            })
        }
        "+CMT" => return Kind::Urc(Urc::NeedsPdu { report: false }),
        "+CDS" => return Kind::Urc(Urc::NeedsPdu { report: true }),
        _ => {}
    }
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("^SMMEMFULL") || upper.contains("SMSFULL") && !answers(prefix) {
        return Kind::Urc(Urc::StorageFull);
    }
    // Huawei's `^BOOT:` comes every few seconds and is noise, not a restart (as
    // ModemManager's Huawei plugin reads it).
    if upper == "RDY" || upper == "+CFUN: 1" && !answers("+CFUN") {
        return Kind::Urc(Urc::Restarted);
    }
    if line.starts_with('+')
        || line.starts_with('^')
        || matches!(
            upper.as_str(),
            "RING" | "CALL READY" | "SMS READY" | "PB DONE"
        )
    {
        return Kind::Urc(Urc::Other);
    }
    Kind::Answer
}

fn final_code(line: &str) -> Option<Final> {
    let upper = line.to_ascii_uppercase();
    if upper == "OK" {
        return Some(Final::Ok);
    }
    if matches!(
        upper.as_str(),
        "ERROR" | "NO CARRIER" | "COMMAND NOT SUPPORT" | "TOO MANY PARAMETERS"
    ) {
        return Some(Final::Error(line.to_string()));
    }
    if upper.starts_with("+CME ERROR:") {
        return Some(Final::Cme(line[11..].trim().to_string()));
    }
    if upper.starts_with("+CMS ERROR:") {
        return Some(Final::Cms(line[11..].trim().to_string()));
    }
    None
}

/// `<mem>,<index>` of `+CMTI`/`+CDSI`.
fn stored(line: &str) -> Option<(String, u32)> {
    let (_, rest) = line.split_once(':')?;
    let (mem, index) = rest.rsplit_once(',')?;
    let mem = mem.trim().trim_matches('"').to_string();
    let index = index.trim().parse().ok()?;
    (!mem.is_empty() && mem.len() <= 4).then_some((mem, index))
}

/// The fields after `NAME:` of an answer line, unquoted: `+CREG: 0,1` → `["0", "1"]`.
pub fn fields(line: &str) -> Vec<String> {
    let rest = line.split_once(':').map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// What a `+CMS ERROR` to a send means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again, maybe on another device.
    Transient,
    /// The network is congested: slow down, and try again.
    Throttled,
    /// This message will not go this way.
    Permanent,
}

/// Sorts a `+CMS ERROR` code (TS 27.005 §3.2.5): 0–127 are the network's RP-cause (TS 24.011
/// Annex E.2), 128–255 the TP-FCS (TS 23.040 §9.2.3.22), 300–511 the modem's own, 512 on
/// the manufacturer's. Only what says the message or its recipient is wrong is permanent;
/// whatever is unknown is tried again (the retry limit ends it).
pub fn cms_error(code: u32) -> Verdict {
    match code {
        42 => Verdict::Throttled,
        // Unassigned number, barring, rejected, unidentified or unknown subscriber,
        // facility rejected / not subscribed / not implemented, invalid message.
        1 | 8 | 10 | 21 | 28 | 29 | 30 | 50 | 69 | 95..=99 => Verdict::Permanent,
        // TP-PID and TP-DCS errors; no SC subscription; invalid or barred destination;
        // validity period format or value not supported.
        0x80..=0x9F | 0xC1 | 0xC3 | 0xC4 | 0xC6 | 0xC7 => Verdict::Permanent,
        // Invalid PDU mode parameter: the modem cannot send this PDU.
        304 => Verdict::Permanent,
        _ => Verdict::Transient,
    }
}

/// The dBm of `+CSQ`'s `<rssi>` (TS 27.007 §8.5): 0 is −113 dBm or less, 31 is −51 or
/// more, 99 is unknown.
pub fn rssi_dbm(rssi: u32) -> Option<i64> {
    (rssi <= 31).then(|| -113 + 2 * i64::from(rssi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(r: &mut LineReader) -> Vec<Said> {
        std::iter::from_fn(|| r.next_said()).collect()
    }

    #[test]
    fn lines_prompts_and_odd_line_ends() {
        let mut r = LineReader::default();
        r.push(b"AT+CMGS=23\r\r\n> ");
        assert_eq!(all(&mut r), [Said::Line("AT+CMGS=23".into()), Said::Prompt]);
        r.push(b"\r\n+CMGS: 12\r\n\r\nOK\r\n\n+CMTI: \"SM\",3\nOK");
        assert_eq!(
            all(&mut r),
            [
                Said::Line("+CMGS: 12".into()),
                Said::Line("OK".into()),
                Said::Line("+CMTI: \"SM\",3".into())
            ]
        );
        // A line arrives in pieces.
        r.push(b"\r");
        assert_eq!(all(&mut r), [Said::Line("OK".into())]);
        r.push(b"\r\n>\r\n");
        assert_eq!(all(&mut r), [Said::Prompt]);
    }

    #[test]
    fn an_endless_line_is_dropped_once_and_reading_goes_on() {
        let mut r = LineReader::default();
        r.push(&vec![b'A'; MAX_LINE + 10]);
        assert_eq!(all(&mut r), [Said::Overlong]);
        r.push(&vec![b'B'; MAX_LINE + 10]);
        assert_eq!(all(&mut r), []);
        r.push(b"tail\r\nOK\r\n");
        assert_eq!(all(&mut r), [Said::Line("OK".into())]);
    }

    #[test]
    fn answers_urcs_and_echoes_are_told_apart() {
        let c = Some("AT+CMGR=3");
        assert_eq!(classify("AT+CMGR=3", c), Kind::Echo);
        assert_eq!(classify("+CMGR: 0,,23", c), Kind::Answer);
        assert_eq!(classify("0791447758100650040C9144", c), Kind::Answer);
        assert_eq!(
            classify("+CMTI: \"ME\",12", c),
            Kind::Urc(Urc::Stored {
                mem: "ME".into(),
                index: 12
            })
        );
        assert_eq!(
            classify("+CDSI: \"SR\",0", None),
            Kind::Urc(Urc::ReportStored {
                mem: "SR".into(),
                index: 0
            })
        );
        assert_eq!(
            classify("+CMT: ,24", c),
            Kind::Urc(Urc::NeedsPdu { report: false })
        );
        assert_eq!(
            classify("+CDS: 25", None),
            Kind::Urc(Urc::NeedsPdu { report: true })
        );
        assert_eq!(classify("^RSSI: 17", c), Kind::Urc(Urc::Other));
        assert_eq!(
            classify("^BOOT:20952155,0,0,0,72", None),
            Kind::Urc(Urc::Other)
        );
        assert_eq!(classify("+QIND: \"csq\",20,99", c), Kind::Urc(Urc::Other));
        assert_eq!(classify("RDY", c), Kind::Urc(Urc::Restarted));
        assert_eq!(
            classify("^SMMEMFULL: \"SM\"", c),
            Kind::Urc(Urc::StorageFull)
        );
        assert_eq!(
            classify("+QIND: \"smsfull\",\"SM\"", None),
            Kind::Urc(Urc::StorageFull)
        );
        assert_eq!(classify("+CPIN: READY", Some("AT+CPIN?")), Kind::Answer);
        assert_eq!(classify("+CPIN: READY", c), Kind::Urc(Urc::Other));
        assert_eq!(classify("OK", c), Kind::Final(Final::Ok));
        assert_eq!(
            classify("+CMS ERROR: 38", c),
            Kind::Final(Final::Cms("38".into()))
        );
        assert_eq!(
            classify("+CME ERROR: SIM PIN required", c),
            Kind::Final(Final::Cme("SIM PIN required".into()))
        );
        assert_eq!(classify("SIMCOM_SIM800", Some("ATI")), Kind::Answer);
    }

    #[test]
    fn fields_and_errors() {
        assert_eq!(
            fields("+COPS: 0,0,\"Tele, Two\",7"),
            ["0", "0", "Tele, Two", "7"]
        );
        assert_eq!(fields("+CSQ: 17,99"), ["17", "99"]);
        assert_eq!(cms_error(38), Verdict::Transient);
        assert_eq!(cms_error(42), Verdict::Throttled);
        assert_eq!(cms_error(21), Verdict::Permanent);
        assert_eq!(cms_error(0xC3), Verdict::Permanent);
        assert_eq!(cms_error(500), Verdict::Transient);
        assert_eq!(rssi_dbm(17), Some(-79));
        assert_eq!(rssi_dbm(99), None);
    }
}
