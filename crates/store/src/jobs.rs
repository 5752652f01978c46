//! The rows and requests of bulk jobs (CSV files stored as messages in batches).
//!
//! A job's import is a series of [`JobBatch`]es. Each batch is one transaction that stores
//! its messages, its rejected rows and the job's resume point (the byte offset, line and row
//! number of the next CSV row), so an import interrupted by a crash continues from the last
//! committed batch and neither loses nor repeats a row.

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::model::Id;

/// The priority of job messages: after API texts (priority 0), which the queue's
/// `ORDER BY priority, due_at, id` then always takes first.
pub const JOB_PRIORITY: i64 = 10;

/// Added to the `due_at` of a paused job's waiting messages (stored `scheduled`), so that
/// neither the claim nor the promotion of scheduled messages takes them; resuming subtracts
/// it again. About 140,000 years: no real time comes near it.
pub const PAUSE_SHIFT: Millis = 1 << 52;

/// Rows changed per transaction when a job is paused, resumed or cancelled, so that a job of
/// millions of messages never holds the writer for long.
pub const CONTROL_CHUNK: i64 = 5000;

/// The stored state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Importing or sending.
    Running,
    /// Its waiting messages are held.
    Paused,
    /// Its waiting messages were cancelled.
    Cancelled,
    /// The import failed (see the job's `error`).
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// The state with this stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Running,
            JobState::Paused,
            JobState::Cancelled,
            JobState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its owner.
    pub owner_id: Id,
    /// A name the caller chose.
    pub name: Option<String>,
    /// `api` or `spool`.
    pub source: String,
    /// The job's parameters (JSON), kept so that a resumed import renders rows the same way.
    pub params: String,
    /// The file the rows are read from, for resuming after a restart.
    pub file: Option<String>,
    /// When.
    pub created_at: Millis,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Row id.
    pub id: Id,
    /// Owner.
    pub owner_id: Id,
    /// The caller's name for it.
    pub name: Option<String>,
    /// Stored state.
    pub state: JobState,
    /// `api` or `spool`.
    pub source: String,
    /// Parameters (JSON).
    pub params: String,
    /// The file being imported.
    pub file: Option<String>,
    /// Rows read so far (accepted, rejected and duplicates).
    pub total: i64,
    /// Rows stored as messages.
    pub accepted: i64,
    /// Rows refused, duplicates included.
    pub rejected: i64,
    /// SMS parts of the accepted rows.
    pub segments: i64,
    /// Byte offset of the next row to read.
    pub file_offset: i64,
    /// Line (1-based) of the next row to read.
    pub file_line: i64,
    /// Spreadsheet row number of the next row (the header is row 1).
    pub next_row: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was paused.
    pub paused_at: Option<Millis>,
    /// When its last row was stored; `None` while importing.
    pub imported_at: Option<Millis>,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
}

/// One accepted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    /// Spreadsheet row number.
    pub row: i64,
    /// E.164 with `+`, or a short code.
    pub to: String,
    /// The rendered text.
    pub body: String,
    /// `gsm7` or `ucs2`.
    pub encoding: &'static str,
    /// SMS parts.
    pub segments: i64,
    /// When it may be sent (the job's schedule, spread by its rate).
    pub due_at: Millis,
    /// Stored `scheduled` (held until `due_at` by the job's `schedule_at`) rather than
    /// `queued` (a queued message with a later `due_at` just waits in the queue).
    pub scheduled: bool,
    /// When it expires if not yet sent.
    pub expires_at: Millis,
}

/// A row that was not stored as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReject {
    /// Spreadsheet row number.
    pub row: i64,
    /// The number as written in the file (may be empty).
    pub number: String,
    /// Why.
    pub message: String,
    /// A duplicate number dropped by `dedupe`, rather than a bad row.
    pub duplicate: bool,
}

/// Where the next row of a job's file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// Byte offset.
    pub offset: i64,
    /// Line (1-based).
    pub line: i64,
    /// Spreadsheet row number.
    pub row: i64,
}

/// One transaction's worth of a job's rows.
#[derive(Debug, Clone)]
pub struct JobBatch {
    /// The job.
    pub job_id: Id,
    /// Its owner.
    pub owner_id: Id,
    /// The sender of every message.
    pub from: Option<String>,
    /// Accepted rows.
    pub messages: Vec<JobMessage>,
    /// Refused rows.
    pub rejects: Vec<RowReject>,
    /// The row number this batch starts at: it is stored only if the job's `next_row` is
    /// still this, which fences out a second importer of the same job.
    pub start_row: i64,
    /// Where the next batch starts.
    pub resume: ResumePoint,
    /// This is the last batch: the import is complete.
    pub finished: bool,
    /// When.
    pub now: Millis,
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStored {
    /// Stored.
    Stored,
    /// Nothing stored: the job is cancelled or failed, or its resume point is not where
    /// this batch starts (another importer got there first).
    Stopped,
    /// No such job.
    NotFound,
}

/// What to do with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Hold its waiting messages.
    Pause,
    /// Release them.
    Resume,
    /// Cancel them.
    Cancel,
}

/// What a [`JobAction`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobControl {
    /// Done; the job as it is now.
    Done(Box<JobRecord>),
    /// No such job (or not the caller's).
    NotFound,
    /// Not possible in the job's state.
    Invalid(JobState),
}

/// One row of a job's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResultRow {
    /// The message.
    pub id: Id,
    /// Spreadsheet row number.
    pub row: i64,
    /// The number.
    pub to: String,
    /// Its status.
    pub status: Status,
    /// Its error, if any.
    pub error: Option<String>,
}

/// The columns of `jobs` in the order both backends read them.
pub(crate) const JOB_COLUMNS: &str = "id, owner_id, name, state, source, params, file, total, accepted, rejected, segments, file_offset, file_line, next_row, error, paused_at, imported_at, created_at, updated_at";

/// A batch's rows, accepted rows, refused rows and SMS parts.
pub(crate) fn counts_of(batch: &JobBatch) -> (i64, i64, i64, i64) {
    let accepted = batch.messages.len() as i64;
    let rejected = batch.rejects.len() as i64;
    let segments: i64 = batch.messages.iter().map(|m| m.segments).sum();
    (accepted + rejected, accepted, rejected, segments)
}
