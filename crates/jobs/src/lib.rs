//! Bulk jobs: a CSV file becomes many messages (docs/api.md `POST /api/v1/jobs`,
//! docs/configuration.md `[spool]`); and the address book's rules and CSV.
//!
//! - [`template`]: `{{column}}` templates, parsed once and bound to the header.
//! - [`rows`]: the file streamed row by row, each row numbered as a spreadsheet shows it and
//!   checked (number, text, parts, duplicates); pure, no store.
//! - [`import`]: the service that validates files (dry runs, all-or-nothing) and stores them
//!   as messages in batched transactions, each with the job's resume point, so an import
//!   interrupted by a crash continues where its last commit left it.
//! - [`results`]: a job's results CSV, paged from the store with flat memory.
//! - [`spool`]: the watched folder: files dropped into `incoming/` become jobs.
//! - [`contacts`]: what a contact may hold, who may change it, contacts as CSV.
#![forbid(unsafe_code)]

pub mod contacts;
pub mod import;
pub mod results;
pub mod rows;
pub mod spool;
pub mod template;

pub use import::{JobParams, Jobs, Prepared, Report, RowError};

/// What went wrong with a job as a whole (a bad row is not an error: it is reported).
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// A parameter is not acceptable.
    #[error("{1}")]
    Param(&'static str, String),
    /// The header does not give what the job needs (a number column, the text's columns).
    #[error("{0}")]
    Header(String),
    /// The file is not readable as CSV from some row on.
    #[error("{0}")]
    Broken(String),
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// `all_or_nothing`: some rows are bad, so nothing was stored.
    #[error("{} row(s) are not acceptable and all_or_nothing was asked for: nothing was stored", .0.rejected)]
    Rejected(Box<Report>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] textgate_store::StoreError),
}
