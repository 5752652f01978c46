//! Reading a job's CSV file and checking each row: the pure part of a job.
//!
//! The file is streamed with the `csv` crate (one reused record buffer, so memory does not
//! grow with the file) and each row is numbered as a spreadsheet shows it: the header is
//! row 1, blank lines count, and a quoted field that spans lines is still one row. The
//! position of the next row (byte offset, line, row) is what an import records with each
//! batch, and [`CsvRows::open`] can start from it again.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use textgate_core::address::{Country, Recipient};
use textgate_core::encoding::{Body, BodyError};
use textgate_store::ResumePoint;

use crate::template::{Bound, Template};
use crate::JobError;

/// A row longer than this is taken for a broken file (an unclosed quote swallowing the rest
/// of it); the import stops there rather than reading the whole file into one field.
pub const MAX_ROW_BYTES: u64 = 1 << 20;

/// The column names taken as the number column when the request names none, in order.
pub const DEFAULT_TO_ALIASES: &[&str] = &["to", "phone", "mobile", "msisdn", "number"];

/// What a job needs to check and render its rows.
#[derive(Debug, Clone)]
pub struct Spec {
    /// For numbers written without `+country`.
    pub country: Option<Country>,
    /// The most SMS parts one text may take.
    pub max_parts: u16,
    /// The number column: this name, or else the first alias the header has.
    pub to_column: Option<String>,
    /// Names taken for the number column (lower case).
    pub to_aliases: Vec<String>,
    /// The text: this template, or else the `body` column.
    pub template: Option<Template>,
    /// Drop rows whose number came earlier in the file.
    pub dedupe: bool,
}

enum Text {
    Column(usize),
    Template(Bound),
}

/// Where the number and the text of a row come from.
pub struct Layout {
    header: Vec<String>,
    to: usize,
    text: Text,
}

impl Layout {
    /// Works out the columns from the header row; a missing column is an error before any
    /// row is read.
    pub fn new(spec: &Spec, header: Vec<String>) -> Result<Layout, JobError> {
        if header.iter().all(|h| h.is_empty()) {
            return Err(JobError::Header(
                "the file has no header row: the first line must name the columns (for example to,body)".into(),
            ));
        }
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let to = match &spec.to_column {
            Some(c) => find(c).ok_or_else(|| {
                JobError::Header(format!(
                    "the file has no column \"{c}\" (its columns: {})",
                    header.join(", ")
                ))
            })?,
            None => spec
                .to_aliases
                .iter()
                .find_map(|a| find(a))
                .ok_or_else(|| {
                    JobError::Header(format!(
                        "the file has no number column: name one of {} (its columns: {})",
                        spec.to_aliases.join(", "),
                        header.join(", ")
                    ))
                })?,
        };
        let text = match &spec.template {
            Some(t) => Text::Template(t.bind(&header).map_err(|e| JobError::Header(e.to_string()))?),
            None => Text::Column(find("body").ok_or_else(|| {
                JobError::Header(format!(
                    "the file has no \"body\" column and no template was given: add a body column or pass template=... (its columns: {})",
                    header.join(", ")
                ))
            })?),
        };
        Ok(Layout { header, to, text })
    }

    /// The header's columns.
    pub fn header(&self) -> &[String] {
        &self.header
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A message to store.
    Accepted {
        /// Normalised number.
        to: String,
        /// The checked text.
        body: Body,
    },
    /// A bad row.
    Rejected {
        /// The number as written.
        number: String,
        /// Why.
        message: String,
    },
    /// `dedupe`: the number came earlier.
    Duplicate {
        /// The number.
        number: String,
        /// The row where it first came.
        first_row: i64,
    },
}

/// Checks rows one by one (keeping the numbers seen, for `dedupe`).
pub struct Checker {
    spec: Spec,
    layout: Layout,
    /// Numbers seen, packed in a u64 each (E.164 has at most 15 digits), with their first
    /// row: about 16 bytes a number instead of a `String` each.
    seen: Option<HashMap<u64, u32>>,
}

/// A number as a u64 key: its digits, with the top bit set for a short code (which has no
/// `+`), so "+1234" and "1234" differ.
fn number_key(n: &str) -> Option<u64> {
    let (digits, short) = match n.strip_prefix('+') {
        Some(d) => (d, 0),
        None => (n, 1u64 << 63),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.parse::<u64>().ok().map(|v| v | short)
}

impl Checker {
    /// A checker for rows laid out as `layout`.
    pub fn new(spec: Spec, layout: Layout) -> Checker {
        let seen = spec.dedupe.then(HashMap::new);
        Checker { spec, layout, seen }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Records a number stored before (a resumed import), for `dedupe`.
    pub fn seen_before(&mut self, number: &str, row: i64) {
        if let (Some(seen), Some(k)) = (self.seen.as_mut(), number_key(number)) {
            seen.entry(k)
                .or_insert(u32::try_from(row).unwrap_or(u32::MAX));
        }
    }

    /// Checks one row.
    pub fn check(&mut self, row: i64, rec: &csv::ByteRecord) -> Checked {
        let raw_number = rec
            .get(self.layout.to)
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .unwrap_or_default();
        let reject = |message: String| Checked::Rejected {
            number: raw_number.clone(),
            message,
        };
        let width = self.layout.header.len();
        if rec.len() != width {
            return reject(format!(
                "broken CSV line: {} field(s) where the header has {width}",
                rec.len()
            ));
        }
        let mut fields: Vec<&str> = Vec::with_capacity(width);
        for (i, f) in rec.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s),
                Err(_) => {
                    return reject(format!(
                        "column \"{}\" is not UTF-8 text: save the file as UTF-8",
                        self.layout.header[i]
                    ))
                }
            }
        }
        if raw_number.is_empty() {
            return reject("no number".into());
        }
        let to = match Recipient::parse(&raw_number, self.spec.country) {
            Ok(r) => r.as_str().to_string(),
            Err(e) => return reject(format!("invalid number: {e}")),
        };
        // No text of more bytes than the most parts allowed can carry is built, however
        // long the columns or the template (4 bytes is the most a character takes in UTF-8).
        let max_bytes = usize::from(self.spec.max_parts.max(1)) * 160 * 4;
        let too_long = || {
            reject(format!(
                "text too long: more than {max_bytes} bytes, which is more than {} SMS parts can carry ([server] max_parts)",
                self.spec.max_parts
            ))
        };
        let text = match &self.layout.text {
            Text::Column(i) if fields[*i].len() > max_bytes => return too_long(),
            Text::Column(i) => fields[*i].to_string(),
            Text::Template(b) => match b.render(|i| fields.get(i).copied(), max_bytes) {
                Some(t) => t,
                None => return too_long(),
            },
        };
        let body = match Body::new(&text, self.spec.max_parts) {
            Ok(b) => b,
            Err(BodyError::Empty) => return reject("empty text".into()),
            Err(e @ BodyError::Nul) => return reject(e.to_string()),
            Err(e) => return reject(format!("text too long: {e}")),
        };
        if let (Some(seen), Some(k)) = (self.seen.as_mut(), number_key(&to)) {
            let this = u32::try_from(row).unwrap_or(u32::MAX);
            let first = *seen.entry(k).or_insert(this);
            if first != this {
                return Checked::Duplicate {
                    number: to,
                    first_row: i64::from(first),
                };
            }
        }
        Checked::Accepted { to, body }
    }
}

/// Where the line breaks of the file are, as the reader passes them: rows are numbered from
/// these, not from the CSV reader's own line count, which lags after a CRLF it has read only
/// half of and counts an unclosed quote's last break twice.
#[derive(Debug, Default)]
struct Breaks {
    /// Offsets of line breaks read but not yet counted (in order).
    pending: std::collections::VecDeque<u64>,
    /// Line breaks before `upto`.
    counted: u64,
    /// The offset of the last break counted.
    last: Option<u64>,
}

impl Breaks {
    /// The line breaks before byte `p` (`p` never goes back).
    fn before(&mut self, p: u64) -> u64 {
        while let Some(&b) = self.pending.front() {
            if b >= p {
                break;
            }
            self.pending.pop_front();
            self.counted += 1;
            self.last = Some(b);
        }
        self.counted
    }

    /// Starts again at a position with `counted` breaks before it (a resumed import).
    fn reset(&mut self, counted: u64) {
        *self = Breaks {
            counted,
            ..Breaks::default()
        };
    }
}

/// Counts bytes read, and refuses to go further than [`MAX_ROW_BYTES`] past the start of
/// the row being read; notes where the line breaks are ([`Breaks`]).
///
/// It also hands a lone CR (the line end of classic Mac files, still written by some
/// spreadsheets) to the CSV reader as LF, so that one break is one LF whatever the file's
/// line ends. Byte for byte, so offsets hold.
struct Guard<R> {
    inner: R,
    read: u64,
    row_start: Rc<Cell<u64>>,
    breaks: Rc<std::cell::RefCell<Breaks>>,
}

impl<R: BufRead> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read.saturating_sub(self.row_start.get()) > MAX_ROW_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "row too long",
            ));
        }
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for i in 0..n {
            if buf[i] == b'\r' {
                let next = match buf[..n].get(i + 1) {
                    Some(&b) => Some(b),
                    None => self.inner.fill_buf()?.first().copied(),
                };
                if next != Some(b'\n') {
                    buf[i] = b'\n';
                }
            }
            if buf[i] == b'\n' {
                breaks.pending.push_back(self.read + i as u64);
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Guard<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let p = self.inner.seek(pos)?;
        self.read = p;
        self.row_start.set(p);
        Ok(p)
    }
}

/// A job's file, row by row.
pub struct CsvRows {
    rdr: csv::Reader<Guard<BufReader<File>>>,
    rec: csv::ByteRecord,
    row_start: Rc<Cell<u64>>,
    breaks: Rc<std::cell::RefCell<Breaks>>,
    /// Line breaks inside quoted fields so far: a row's number is one more than the breaks
    /// before it, less these.
    embedded: i64,
    /// The file, and its length (for the last row's line end).
    path: std::path::PathBuf,
    len: u64,
    next: ResumePoint,
}

fn io_err(e: std::io::Error) -> JobError {
    JobError::Io(e.to_string())
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl CsvRows {
    /// Opens a file and reads its header (trimmed; a UTF-8 byte order mark is dropped);
    /// with `start`, continues at that row (a position an earlier import recorded).
    pub fn open(
        path: &Path,
        start: Option<ResumePoint>,
    ) -> Result<(CsvRows, Vec<String>), JobError> {
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let row_start = Rc::new(Cell::new(0));
        let breaks = Rc::new(std::cell::RefCell::new(Breaks::default()));
        let guard = Guard {
            inner: BufReader::with_capacity(64 * 1024, file),
            read: 0,
            row_start: row_start.clone(),
            breaks: breaks.clone(),
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(guard);
        let header_rec = rdr.byte_headers().map_err(|e| csv_err(e, 1))?.clone();
        let header: Vec<String> = header_rec
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let s = String::from_utf8_lossy(h);
                let s = if i == 0 {
                    s.trim_start_matches('\u{feff}')
                } else {
                    &s
                };
                s.trim().to_string()
            })
            .collect();
        let mut rows = CsvRows {
            rdr,
            rec: csv::ByteRecord::new(),
            row_start,
            breaks,
            embedded: newlines(&header_rec),
            path: path.to_path_buf(),
            len,
            next: ResumePoint::default(),
        };
        let end = rows.rdr.position().byte();
        rows.next = rows.point_after(end);
        if let Some(start) = start {
            let mut p = csv::Position::new();
            p.set_byte(start.offset as u64).set_line(start.line as u64);
            rows.rdr.seek(p).map_err(|e| csv_err(e, start.row))?;
            rows.row_start.set(start.offset as u64);
            rows.breaks
                .borrow_mut()
                .reset(u64::try_from(start.line - 1).unwrap_or(0));
            rows.next = start;
            rows.embedded = start.line - start.row;
        }
        Ok((rows, header))
    }

    /// Where the next row starts.
    pub fn resume_point(&self) -> ResumePoint {
        self.next
    }

    /// The resume point at byte `end` (the end of a row): `line - row` is the line breaks
    /// inside quoted fields so far, which is what a resumed reader needs.
    fn point_after(&mut self, end: u64) -> ResumePoint {
        let before = self.breaks.borrow_mut().before(end) as i64;
        ResumePoint {
            offset: end as i64,
            line: before + 1,
            row: before + 1 - self.embedded,
        }
    }

    /// The next row and its number, or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<(i64, &csv::ByteRecord)>, JobError> {
        let mut began = self.next.offset.max(0) as u64;
        loop {
            let more = self
                .rdr
                .read_byte_record(&mut self.rec)
                .map_err(|e| csv_err(e, self.next.row))?;
            if !more {
                return Ok(None);
            }
            // The reader drops a byte order mark only at the very start of what it reads, so
            // a row that begins with one after a resumed read would differ from a straight
            // one; and a line that is nothing else is then blank, and skipped.
            if !self.rec.get(0).is_some_and(|f| f.starts_with(BOM)) {
                break;
            }
            let mut fixed = csv::ByteRecord::new();
            for (i, f) in self.rec.iter().enumerate() {
                fixed.push_field(if i == 0 { &f[BOM.len()..] } else { f });
            }
            fixed.set_position(self.rec.position().cloned());
            self.rec = fixed;
            if self.rec.len() > 1 || self.rec.get(0).is_some_and(|f| !f.is_empty()) {
                break;
            }
            began = self.rdr.position().byte();
            self.row_start.set(began);
        }
        let end = self.rdr.position().byte();
        self.row_start.set(end);
        self.embedded += newlines(&self.rec);
        let ended_by_break = self.ended_by_break(began, end)?;
        self.next = self.point_after(end);
        // The breaks before the row's end are those before it, its own, and the one that
        // ended it (if one did, and the reader took it: it may stop between CR and LF).
        let row = self.next.row - i64::from(ended_by_break);
        Ok(Some((row, &self.rec)))
    }

    /// Whether the row read from `began` (after the row before it) to `end` was ended by a
    /// line break before `end`.
    fn ended_by_break(&mut self, began: u64, end: u64) -> Result<bool, JobError> {
        let last_is_break = {
            let mut breaks = self.breaks.borrow_mut();
            breaks.before(end);
            end > 0 && breaks.last == Some(end - 1)
        };
        if end < self.len || !last_is_break {
            // Inside the file, a row can only end with its terminator (or stop between the
            // CR and LF of one, which leaves the LF after `end`).
            return Ok(last_is_break);
        }
        // At the end of the file the last break may be the row's own or inside its last
        // field, swallowed by a quote left open: the row's bytes (at most MAX_ROW_BYTES past
        // blank lines) say which.
        let mut f = File::open(&self.path).map_err(io_err)?;
        f.seek(SeekFrom::Start(began)).map_err(io_err)?;
        let mut raw = Vec::new();
        f.take(MAX_ROW_BYTES * 2)
            .read_to_end(&mut raw)
            .map_err(io_err)?;
        Ok(!ends_inside_quote(&raw))
    }
}

/// Whether CSV text ends inside a quoted field (RFC 4180 quoting, `""` for a quote inside
/// one; a quote elsewhere than at a field's start is a plain character, as the reader takes
/// it).
fn ends_inside_quote(raw: &[u8]) -> bool {
    let (mut quoted, mut field_start) = (false, true);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if quoted {
            if b == b'"' {
                if raw.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else {
            match b {
                b'"' if field_start => quoted = true,
                b',' | b'\n' | b'\r' => {
                    field_start = true;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            field_start = false;
        }
        i += 1;
    }
    quoted
}

/// The line breaks inside a record's fields (quoted fields may span lines).
fn newlines(rec: &csv::ByteRecord) -> i64 {
    rec.iter()
        .map(|f| f.iter().filter(|b| **b == b'\n').count() as i64)
        .sum()
}

fn csv_err(e: csv::Error, row: i64) -> JobError {
    match e.kind() {
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            JobError::Broken(format!(
            "row {row} is longer than {} MiB: the file is broken from there (an unclosed quote?)",
            MAX_ROW_BYTES >> 20
        ))
        }
        csv::ErrorKind::Io(io) => JobError::Io(io.to_string()),
        _ => JobError::Broken(format!("row {row}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            country: "US".parse().ok(),
            max_parts: 2,
            to_column: None,
            to_aliases: DEFAULT_TO_ALIASES.iter().map(|s| s.to_string()).collect(),
            template: None,
            dedupe: false,
        }
    }

    fn tmp(text: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "tg-rows-{}-{}.csv",
            std::process::id(),
            textgate_core::clock::now_ms() as u64
                ^ (text.len() as u64).rotate_left(17)
                ^ text.iter().map(|b| *b as u64).sum::<u64>()
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every row of a file as (row, outcome), and the resume point after each.
    fn check_all(text: &[u8], spec: Spec) -> Result<Vec<(i64, Checked, ResumePoint)>, JobError> {
        let p = tmp(text);
        let (mut rows, header) = CsvRows::open(&p, None)?;
        let mut c = Checker::new(spec.clone(), Layout::new(&spec, header)?);
        let mut out = Vec::new();
        while let Some((row, rec)) = rows.next_row()? {
            let rec = rec.clone();
            out.push((row, c.check(row, &rec), rows.resume_point()));
        }
        let _ = std::fs::remove_file(p);
        Ok(out)
    }

    fn summary(v: &[(i64, Checked, ResumePoint)]) -> Vec<(i64, String)> {
        v.iter()
            .map(|(r, c, _)| {
                (
                    *r,
                    match c {
                        Checked::Accepted { to, body } => format!("ok {to} {}", body.text()),
                        Checked::Rejected { message, .. } => format!("bad {message}"),
                        Checked::Duplicate { first_row, .. } => format!("dup {first_row}"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rows_are_numbered_like_a_spreadsheet() {
        let text = "to,body\n555-000-0001,one\n\n+15550000002,\"two\nlines\"\nnot-a-number,three\n+15550000004,four";
        let out = check_all(text.as_bytes(), spec()).unwrap();
        let s = summary(&out);
        assert_eq!(s[0], (2, "ok +15550000001 one".into()));
        // A blank line is a row of its own in a spreadsheet; a quoted line break is not.
        assert_eq!(s[1], (4, "ok +15550000002 two\nlines".into()));
        assert_eq!(s[2].0, 5);
        assert!(s[2].1.starts_with("bad invalid number"), "{s:?}");
        // The last row has no line break after it.
        assert_eq!(s[3], (6, "ok +15550000004 four".into()));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn bad_rows_say_why() {
        let long = "x".repeat(400);
        let text = format!("Phone,Body,extra\n+15550000001,,a\n+15550000002,hi\n+15550000003,{long},b\n,hi,c\n+15550000005,\"ok, fine\",d\n");
        let s = summary(&check_all(text.as_bytes(), spec()).unwrap());
        assert_eq!(s[0], (2, "bad empty text".into()));
        assert_eq!(
            s[1],
            (
                3,
                "bad broken CSV line: 2 field(s) where the header has 3".into()
            )
        );
        assert!(s[2].1.starts_with("bad text too long"), "{s:?}");
        assert_eq!(s[3], (5, "bad no number".into()));
        assert_eq!(s[4], (6, "ok +15550000005 ok, fine".into()));
        let bad_utf8 = b"to,body\n+15550000001,caf\xe9\n";
        let s = summary(&check_all(bad_utf8, spec()).unwrap());
        assert!(s[0].1.contains("not UTF-8"), "{s:?}");
    }

    #[test]
    fn templates_aliases_and_duplicates() {
        let mut sp = spec();
        sp.template = Some(Template::parse("Hi {{name}}").unwrap());
        sp.dedupe = true;
        let text = "\u{feff}Name , MOBILE\nAnn,5550000001\nBob,+1 555 000 0001\nCy,5550000003\n";
        let s = summary(&check_all(text.as_bytes(), sp.clone()).unwrap());
        assert_eq!(
            s,
            vec![
                (2, "ok +15550000001 Hi Ann".into()),
                (3, "dup 2".into()),
                (4, "ok +15550000003 Hi Cy".into())
            ]
        );
        let mut missing = sp.clone();
        missing.template = Some(Template::parse("Hi {{surname}}").unwrap());
        let e = check_all(text.as_bytes(), missing).err().unwrap();
        assert!(
            matches!(&e, JobError::Header(m) if m.contains("surname")),
            "{e}"
        );
        let e = check_all(b"name,body\nAnn,hi\n", spec()).err().unwrap();
        assert!(
            matches!(&e, JobError::Header(m) if m.contains("number column")),
            "{e}"
        );
        let e = check_all(b"to,text\n+15550000001,hi\n", spec())
            .err()
            .unwrap();
        assert!(
            matches!(&e, JobError::Header(m) if m.contains("body")),
            "{e}"
        );
    }

    /// Rows as numbered straight through, and as numbered when resumed after each row: the
    /// two must agree, whatever the line ends.
    fn rows_straight_and_resumed(text: &[u8]) -> Vec<i64> {
        let mut sp = spec();
        sp.dedupe = true;
        let all = check_all(text, sp).unwrap();
        let rows: Vec<i64> = all.iter().map(|r| r.0).collect();
        let p = tmp(text);
        for (i, (_, _, point)) in all.iter().enumerate() {
            let (mut resumed, _) = CsvRows::open(&p, Some(*point)).unwrap();
            let mut rest = Vec::new();
            while let Some((row, _)) = resumed.next_row().unwrap() {
                rest.push(row);
            }
            assert_eq!(rest, rows[i + 1..], "resumed after row {}", rows[i]);
        }
        let _ = std::fs::remove_file(p);
        rows
    }

    #[test]
    fn crlf_and_mixed_line_ends_number_rows_like_a_spreadsheet() {
        // Found by fuzzing: after a CRLF the reader's own line count lagged, so rows were
        // numbered 2, 2, 4 and `dedupe` took the repeated number twice.
        let text = b"to,body\n+15550000001,a\n+15550000001,b\r\n+15550000003,c\n";
        assert_eq!(rows_straight_and_resumed(text), vec![2, 3, 4]);
        let mut sp = spec();
        sp.dedupe = true;
        let all = check_all(text, sp).unwrap();
        assert_eq!(summary(&all)[1], (3, "dup 2".into()));
        assert_eq!(
            rows_straight_and_resumed(b"to,body\r\n+15550000001,a\r\n+15550000002,b"),
            vec![2, 3]
        );
        assert_eq!(
            rows_straight_and_resumed(b"to,body\n+15550000001,a\r\n+15550000002,b\n"),
            vec![2, 3]
        );
        // Blank lines count as rows, in any line end.
        assert_eq!(
            rows_straight_and_resumed(b"to,body\r\n\r\n+15550000001,a\r\n\n\r+15550000002,b\r\n"),
            vec![3, 6]
        );
        // A quoted field spanning lines is one row.
        assert_eq!(
            rows_straight_and_resumed(b"to,body\r\n+15550000001,\"a\r\nb\"\r\n+15550000002,c\r\n"),
            vec![2, 3]
        );
    }

    #[test]
    fn an_unclosed_quote_at_the_end_counts_its_line_break_once() {
        // Found by fuzzing: numbered 2, 2.
        let text = b"to,body\n+15550000001,a\n+15550000002,\"b\n";
        assert_eq!(rows_straight_and_resumed(text), vec![2, 3]);
        // A closed quote ending in a line break, then the row's own.
        assert_eq!(
            rows_straight_and_resumed(b"to,body\n+15550000001,\"b\n\"\n+15550000002,c\n"),
            vec![2, 3]
        );
        assert_eq!(
            rows_straight_and_resumed(b"to,body\n+15550000001,\"b\n\"\n"),
            vec![2]
        );
    }

    #[test]
    fn an_opening_quote_right_before_the_last_break_leaves_it_inside() {
        // Found by fuzzing the fix above: `,"` then the final LF is a quote opened, not closed.
        let text = b"to,body\n+15550000001,b\r\x03bad,\"\n";
        assert_eq!(rows_straight_and_resumed(text), vec![2, 3]);
        assert!(ends_inside_quote(b"a,\"\n"));
        assert!(!ends_inside_quote(b"a,\"x\n\"\n"));
        assert!(ends_inside_quote(b"a,\"x\"\"\n"));
        assert!(!ends_inside_quote(b"a,x\"\n"));
    }

    #[test]
    fn a_byte_order_mark_before_a_row_is_dropped_whether_resumed_or_not() {
        // Found by fuzzing: the reader drops a BOM only at the start of what it reads.
        let text = b"to,body\n+15550000001,a\n\xef\xbb\xbf+15550000002,b\n";
        let all = check_all(text, spec()).unwrap();
        assert_eq!(summary(&all)[1], (3, "ok +15550000002 b".into()));
        assert_eq!(rows_straight_and_resumed(text), vec![2, 3]);
        // A line that is only a mark is blank, as the reader finds it after a resume.
        let text = b"to,body\n+15550000001,a\n\xef\xbb\xbf\n+15550000002,b\n";
        assert_eq!(rows_straight_and_resumed(text), vec![2, 4]);
    }

    #[test]
    fn lone_cr_line_ends_number_rows_and_find_duplicates() {
        // Classic Mac line ends: every row used to be numbered 1, so `dedupe` found nothing.
        let mut sp = spec();
        sp.dedupe = true;
        let text = "to,body\r+15550000001,\"a\rb\"\r\r+15550000001,c\r+15550000003,d";
        let all = check_all(text.as_bytes(), sp).unwrap();
        assert_eq!(
            summary(&all),
            vec![
                (2, "ok +15550000001 a\nb".into()),
                (4, "dup 2".into()),
                (5, "ok +15550000003 d".into())
            ]
        );
        let p = tmp(text.as_bytes());
        let (mut rows, _) = CsvRows::open(&p, Some(all[0].2)).unwrap();
        let mut rest = Vec::new();
        while let Some((row, rec)) = rows.next_row().unwrap() {
            rest.push((row, String::from_utf8_lossy(&rec[1]).to_string()));
        }
        let _ = std::fs::remove_file(p);
        assert_eq!(rest, vec![(4, "c".to_string()), (5, "d".to_string())]);
    }

    #[test]
    fn resuming_at_a_recorded_point_gives_the_same_rows() {
        let text = "to,body\n+15550000001,\"a\nb\"\n\n+15550000002,c\n+15550000003,d\n";
        let all = check_all(text.as_bytes(), spec()).unwrap();
        let p = tmp(text.as_bytes());
        // Resume after the first row.
        let (mut rows, _) = CsvRows::open(&p, Some(all[0].2)).unwrap();
        let mut rest = Vec::new();
        while let Some((row, rec)) = rows.next_row().unwrap() {
            rest.push((row, String::from_utf8_lossy(&rec[1]).to_string()));
        }
        let _ = std::fs::remove_file(p);
        // Lines 2-3 are row 2, line 4 (blank) is row 3.
        assert_eq!(rest, vec![(4, "c".to_string()), (5, "d".to_string())]);
        assert_eq!(all[1].0, 4);
    }

    #[test]
    fn an_unclosed_quote_stops_the_file_not_the_memory() {
        let mut text = b"to,body\n+15550000001,\"never closed\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', (MAX_ROW_BYTES as usize) * 2));
        let e = check_all(&text, spec()).err().unwrap();
        assert!(
            matches!(&e, JobError::Broken(m) if m.contains("row 2")),
            "{e}"
        );
    }

    #[test]
    fn number_keys_tell_short_codes_from_numbers() {
        assert_ne!(number_key("+1234"), number_key("1234"));
        assert_eq!(number_key("+15551234567"), Some(15551234567));
        assert_eq!(number_key("abc"), None);
    }
}
