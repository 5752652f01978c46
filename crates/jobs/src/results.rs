//! A job's results as CSV: one line per row of its file, in row order, with the message id,
//! status and error of each stored row and the reason of each refused one.
//!
//! Read a page at a time from the job's messages (whose ids follow row order, since a job
//! is imported in order) and its refused rows, merged by row number, so a job of millions
//! of rows is written with flat memory.

use std::collections::VecDeque;

use textgate_store::{Id, JobResultRow, RowReject, Store, StoreError};

const PAGE: usize = 5000;

/// The header line.
pub const HEADER: &str = "row,number,message_id,status,error\n";

/// Quotes a field when it needs it (RFC 4180), and defuses a value a spreadsheet would run
/// as a formula: the file echoes what uploads contained (a rejected row's "number"), and
/// `=HYPERLINK(…)` or `+cmd|…` in a cell runs when someone opens the results (CSV injection).
/// A leading `'` makes it text; plain numbers such as `+15551234567` are left alone.
pub fn field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && !s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.'));
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Walks a job's results a chunk at a time.
pub struct Results {
    job: Id,
    after_id: Id,
    after_row: i64,
    msgs: VecDeque<JobResultRow>,
    rejects: VecDeque<RowReject>,
    msgs_done: bool,
    rejects_done: bool,
    header_sent: bool,
}

impl Results {
    /// The results of `job`.
    pub fn new(job: Id) -> Results {
        Results {
            job,
            after_id: 0,
            after_row: 0,
            msgs: VecDeque::new(),
            rejects: VecDeque::new(),
            msgs_done: false,
            rejects_done: false,
            header_sent: false,
        }
    }

    /// The next chunk of CSV text, or `None` at the end.
    pub async fn next_chunk(&mut self, store: &Store) -> Result<Option<String>, StoreError> {
        let mut out = String::new();
        if !self.header_sent {
            self.header_sent = true;
            out.push_str(HEADER);
        }
        let mut lines = 0;
        while lines < PAGE {
            if self.msgs.is_empty() && !self.msgs_done {
                let page = store.job_results(self.job, self.after_id, PAGE).await?;
                self.msgs_done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    self.after_id = last.id;
                }
                self.msgs.extend(page);
            }
            if self.rejects.is_empty() && !self.rejects_done {
                let page = store.job_rejects(self.job, self.after_row, PAGE).await?;
                self.rejects_done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    self.after_row = last.row;
                }
                self.rejects.extend(page);
            }
            let take_msg = match (self.msgs.front(), self.rejects.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(m), Some(r)) => m.row < r.row,
            };
            if take_msg {
                if let Some(m) = self.msgs.pop_front() {
                    out.push_str(&format!(
                        "{},{},{},{},{}\n",
                        m.row,
                        field(&m.to),
                        m.id,
                        m.status.as_str(),
                        field(m.error.as_deref().unwrap_or(""))
                    ));
                }
            } else if let Some(r) = self.rejects.pop_front() {
                let status = if r.duplicate { "duplicate" } else { "rejected" };
                out.push_str(&format!(
                    "{},{},,{status},{}\n",
                    r.row,
                    field(&r.number),
                    field(&r.message)
                ));
            }
            lines += 1;
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("+15551234567"), "+15551234567");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn formulas_are_defused_and_numbers_are_not() {
        assert_eq!(
            field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(field("+cmd|' /C calc'!A0"), "'+cmd|' /C calc'!A0");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("-2+3+cmd"), "'-2+3+cmd");
        assert_eq!(field("+1 (555) 123-4567"), "+1 (555) 123-4567");
        assert_eq!(field("-"), "-");
    }
}
