//! A job's CSV file: arbitrary bytes written to a file and read with `CsvRows`, every row
//! checked with `Checker`, the text from an arbitrary template (`Template::parse`) or the
//! body column. Never panics; also checks that row numbers go up, that a printed template
//! parses again, and that reopening the file at a row's resume point yields the same rows
//! after it (what an interrupted import relies on).
//!
//! Input: 3 control bytes (flags, max_parts, which row to resume after), then the template
//! text up to the first NUL byte, then the file.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use textgate_jobs::rows::{Checked, Checker, CsvRows, Layout, Spec, DEFAULT_TO_ALIASES};
use textgate_jobs::template::Template;
use textgate_jobs::JobError;
use textgate_store::ResumePoint;

fn path() -> PathBuf {
    std::env::temp_dir().join(format!("textgate-fuzz-csv-{}.csv", std::process::id()))
}

type Row = (i64, csv::ByteRecord, ResumePoint);

/// Every row from `start` on; the error, if reading stopped at one.
fn read_all(rows: &mut CsvRows) -> (Vec<Row>, Option<String>) {
    let mut out = Vec::new();
    loop {
        match rows.next_row() {
            Ok(Some((row, rec))) => {
                let rec = rec.clone();
                out.push((row, rec, rows.resume_point()));
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}


fuzz_target!(|data: &[u8]| {
    let [flags, max_parts, resume_at, rest @ ..] = data else {
        return;
    };
    let (template_text, file) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let template = if flags & 2 != 0 {
        let text = String::from_utf8_lossy(template_text);
        match Template::parse(&text) {
            Ok(t) => {
                // What it prints parses again. Not always to the same template: a name that
                // ends in "}" ("{{a} }}" is the column "a}") prints as "{{a}}}", which is the
                // column "a" and the text "}"; Display is only used in messages.
                assert!(Template::parse(&t.to_string()).is_ok());
                let _ = t.columns();
                Some(t)
            }
            Err(_) => return,
        }
    } else {
        None
    };
    let spec = Spec {
        country: if flags & 8 != 0 {
            "US".parse().ok()
        } else {
            None
        },
        max_parts: u16::from(*max_parts % 8),
        to_column: (flags & 4 != 0).then(|| "phone".to_string()),
        to_aliases: DEFAULT_TO_ALIASES.iter().map(|s| s.to_string()).collect(),
        template,
        dedupe: flags & 1 != 0,
    };
    let p = path();
    std::fs::write(&p, file).expect("write the temp file");
    let Ok((mut rows, header)) = CsvRows::open(&p, None) else {
        return;
    };
    let layout = match Layout::new(&spec, header) {
        Ok(l) => Some(l),
        Err(JobError::Header(_)) => None,
        Err(e) => panic!("Layout::new failed other than on the header: {e}"),
    };
    let (all, error) = read_all(&mut rows);
    // Row numbers go up, whatever the line ends (LF, CRLF, lone CR, mixed; blank lines and
    // quoted fields spanning lines; a quote left open at the end).
    let mut last = 1;
    for (row, _, point) in &all {
        assert!(*row > last, "row numbers go up: {row} after {last}");
        // The resume point's row is the next row's, or this one's when the reader stopped
        // between the CR and the LF of this row's CRLF.
        assert!(point.row == row + 1 || point.row == *row, "{point:?} after row {row}");
        last = *row;
    }
    if let Some(layout) = layout {
        let mut checker = Checker::new(spec.clone(), layout);
        for (row, rec, _) in &all {
            match checker.check(*row, rec) {
                Checked::Accepted { to, body } => {
                    assert!(body.segments() <= spec.max_parts, "a body over max_parts");
                    assert!(!to.is_empty());
                }
                Checked::Duplicate { first_row, .. } => {
                    assert!(
                        spec.dedupe && first_row < *row,
                        "a duplicate of a later row"
                    )
                }
                Checked::Rejected { .. } => {}
            }
        }
    }
    // Resume after one of the rows: the same rows (numbers and fields) follow.
    if !all.is_empty() {
        let k = usize::from(*resume_at) % all.len();
        let (mut again, _) =
            CsvRows::open(&p, Some(all[k].2)).expect("reopening at a resume point");
        let (rest_rows, rest_error) = read_all(&mut again);
        let comparable = |rows: &[Row]| -> Vec<(i64, Vec<Vec<u8>>)> {
            rows.iter()
                .map(|(r, rec, _)| (*r, rec.iter().map(<[u8]>::to_vec).collect()))
                .collect()
        };
        let expected = comparable(&all[k + 1..]);
        let got = comparable(&rest_rows);
        assert_eq!(got, expected, "rows after resuming at {:?}", all[k].2);
        assert_eq!(
            rest_error.is_some(),
            error.is_some(),
            "{rest_error:?} vs {error:?}"
        );
    }
});
