//! What a modem sends: `at::LineReader` fed the bytes in arbitrary pieces, every line it
//! gives classified with and without a command in progress, and its fields read; `cms_error`
//! and `rssi_dbm` on any number.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use textgate_drivers::modem::at::{self, LineReader, Said, MAX_LINE};

#[derive(Debug, Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    cuts: Vec<u8>,
    command: Option<String>,
    code: u32,
}

fuzz_target!(|input: Input| {
    let mut r = LineReader::default();
    let mut rest: &[u8] = &input.bytes;
    let mut cuts = input.cuts.iter().copied().cycle();
    while !rest.is_empty() {
        let n = usize::from(cuts.next().unwrap_or(255)).clamp(1, rest.len());
        r.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(s) = r.next_said() {
            if let Said::Line(l) = s {
                assert!(!l.is_empty(), "an empty line");
                assert!(l.len() <= 4 * MAX_LINE, "a line past the limit");
                let _ = at::classify(&l, None);
                let _ = at::classify(&l, input.command.as_deref());
                let _ = at::fields(&l);
            }
        }
    }
    let _ = at::cms_error(input.code);
    if let Some(dbm) = at::rssi_dbm(input.code) {
        assert!((-113..=-51).contains(&dbm));
    }
});
