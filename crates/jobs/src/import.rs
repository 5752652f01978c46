//! The jobs service: checks a job's parameters, validates its file (dry runs and
//! all-or-nothing jobs), and imports it as messages.
//!
//! An import reads the file on a blocking thread (CSV parsing and number checks are CPU
//! work) and hands batches of rows through a small bounded channel to the task that stores
//! them, so reading the next batch overlaps committing the last one and at most a few
//! batches are ever in memory. Each batch commits its messages together with the job's
//! resume point; [`Jobs::import`] started again on the same job continues after the last
//! committed batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use textgate_core::address::{Country, Sender};
use textgate_core::clock::{now_ms, parse_rfc3339, Millis};
use textgate_core::config::Config;
use textgate_store::{
    BatchStored, Id, JobAction, JobBatch, JobMessage, JobRecord, ResumePoint, RowReject, Store,
};
use tokio::sync::mpsc;

use crate::rows::{Checked, Checker, CsvRows, Layout, Spec};
use crate::template::Template;
use crate::JobError;

/// Rows per transaction: large enough that a commit's cost is shared by many rows, small
/// enough that one batch holds the SQLite writer for only milliseconds, so API texts queued
/// behind it are not held up.
const BATCH_ROWS: usize = 1000;
/// Errors listed in an answer; the results CSV has them all.
pub const MAX_ERRORS_SHOWN: usize = 100;
/// Rendered texts shown by a dry run.
const PREVIEW: usize = 5;
/// The highest per-job rate accepted, messages a second.
const MAX_RATE: f64 = 100_000.0;

/// A job's parameters as the caller gives them (query string, form fields or a spool
/// sidecar file); stored with the job as JSON so a resumed import works the same way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobParams {
    /// The text, with `{{column}}` placeholders; without it the `body` column.
    pub template: Option<String>,
    /// Sender id.
    pub from: Option<String>,
    /// RFC 3339: send no earlier.
    pub schedule_at: Option<String>,
    /// A name for the job.
    pub name: Option<String>,
    /// Messages a second at most for this job.
    pub rate: Option<f64>,
    /// Drop rows whose number came earlier in the file.
    pub dedupe: bool,
    /// Store nothing if any row is bad.
    pub all_or_nothing: bool,
    /// Only validate and report.
    pub dry_run: bool,
    /// The number column's name (default: the first of `[server] job_number_columns`).
    pub to_column: Option<String>,
}

/// Parameters checked and ready.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// As given.
    pub params: JobParams,
    /// How rows are checked.
    pub spec: Spec,
    /// The sender.
    pub from: Option<String>,
    /// The schedule.
    pub schedule_at: Option<Millis>,
}

/// One bad row, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// Spreadsheet row number (header = 1).
    pub row: i64,
    /// Why.
    pub message: String,
}

/// A rendered text shown by a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// Row.
    pub row: i64,
    /// Number.
    pub to: String,
    /// Text.
    pub body: String,
    /// SMS parts.
    pub segments: u16,
    /// `gsm7` or `ucs2`.
    pub encoding: &'static str,
}

/// What a validation or an import found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Rows read.
    pub total: i64,
    /// Rows that are (or would be) messages.
    pub accepted: i64,
    /// Bad rows plus dropped duplicates.
    pub rejected: i64,
    /// Dropped duplicates (counted in `rejected` too).
    pub duplicates: i64,
    /// SMS parts of the accepted rows.
    pub segments: i64,
    /// The first bad rows.
    pub errors: Vec<RowError>,
    /// More bad rows than `errors` lists (the results CSV has them all).
    pub errors_truncated: bool,
    /// A dry run's first rendered texts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Preview>,
}

impl Report {
    fn note_error(&mut self, row: i64, message: String) {
        if self.errors.len() < MAX_ERRORS_SHOWN {
            self.errors.push(RowError { row, message });
        } else {
            self.errors_truncated = true;
        }
    }
}

/// The jobs service.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    cfg: Arc<Config>,
    country: Option<Country>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

fn param(msg: impl Into<String>) -> JobError {
    JobError::Param("invalid_parameter", msg.into())
}

impl Jobs {
    /// The service on this store; `wake` tells the dispatcher that messages are waiting.
    pub fn new(store: Store, cfg: Arc<Config>, wake: Arc<dyn Fn() + Send + Sync>) -> Jobs {
        Jobs {
            country: cfg.default_country(),
            store,
            cfg,
            wake,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where uploads are kept while they are imported.
    pub fn upload_dir(&self) -> PathBuf {
        self.cfg.server.upload_dir()
    }

    /// Puts the job's sender in `params`: the one asked for if the owner may send as it
    /// (`allowed`, the owner's senders; empty: any), else the owner's default sender.
    pub fn choose_sender(
        &self,
        params: &mut JobParams,
        allowed: &[String],
    ) -> Result<(), JobError> {
        let asked = self.sender_of(params)?;
        params.from = textgate_core::address::choose_sender(allowed, asked, self.country)
            .map_err(|e| JobError::Param("sender_not_allowed", e.to_string()))?
            .map(|s| s.as_str().to_string());
        Ok(())
    }

    /// The job's `from`, read as a sender; `None` when it names none.
    fn sender_of(&self, params: &JobParams) -> Result<Option<Sender>, JobError> {
        params
            .from
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(|f| {
                Sender::parse(f, self.country)
                    .map_err(|e| JobError::Param("invalid_sender", format!("from: {e}")))
            })
            .transpose()
    }

    /// Checks parameters (sender, time, rate, template syntax).
    pub fn prepare(&self, params: JobParams) -> Result<Prepared, JobError> {
        let from = self.sender_of(&params)?.map(|s| s.as_str().to_string());
        let schedule_at = params
            .schedule_at
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_rfc3339(s)
                    .map_err(|e| JobError::Param("invalid_time", format!("schedule_at: {e}")))
            })
            .transpose()?;
        if let Some(r) = params.rate {
            if !(r > 0.0 && r <= MAX_RATE) {
                return Err(param(format!(
                    "rate must be a number of messages a second above 0 and at most {MAX_RATE}"
                )));
            }
        }
        if params.name.as_ref().is_some_and(|n| n.len() > 200) {
            return Err(param("name is longer than 200 bytes"));
        }
        if params.to_column.as_ref().is_some_and(|n| n.len() > 200) {
            return Err(param("to_column is longer than 200 bytes"));
        }
        let template = params
            .template
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                Template::parse(t).map_err(|e| JobError::Param("invalid_template", e.to_string()))
            })
            .transpose()?;
        let spec = Spec {
            country: self.country,
            max_parts: self.cfg.server.max_parts,
            to_column: params.to_column.clone().filter(|c| !c.is_empty()),
            to_aliases: self
                .cfg
                .server
                .job_number_columns
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            template,
            dedupe: params.dedupe,
        };
        Ok(Prepared {
            params,
            spec,
            from,
            schedule_at,
        })
    }

    /// Reads the whole file without storing anything: a dry run, the first pass of an
    /// all-or-nothing job, and (with `structure_only`) the check that the file can be read
    /// to its end, so that a broken file is refused before any row is stored.
    pub async fn validate(
        &self,
        path: &Path,
        p: &Prepared,
        structure_only: bool,
    ) -> Result<Report, JobError> {
        let path = path.to_path_buf();
        let spec = p.spec.clone();
        tokio::task::spawn_blocking(move || validate_blocking(&path, spec, structure_only))
            .await
            .map_err(|e| JobError::Io(format!("the validating thread failed: {e}")))?
    }

    /// Creates a job for a file whose parameters are checked.
    pub async fn create(
        &self,
        owner: Id,
        source: &str,
        file: &Path,
        p: &Prepared,
    ) -> Result<JobRecord, JobError> {
        let params = serde_json::to_string(&p.params).map_err(|e| JobError::Io(e.to_string()))?;
        Ok(self
            .store
            .create_job(textgate_store::NewJob {
                owner_id: owner,
                name: p.params.name.clone().filter(|n| !n.is_empty()),
                source: source.to_string(),
                params,
                file: Some(file.to_string_lossy().into_owned()),
                created_at: now_ms(),
            })
            .await?)
    }

    /// The parameters a job was created with.
    pub fn prepared_of(&self, job: &JobRecord) -> Result<Prepared, JobError> {
        let params: JobParams = serde_json::from_str(&job.params)
            .map_err(|e| JobError::Io(format!("job {} has unreadable parameters: {e}", job.id)))?;
        self.prepare(params)
    }

    /// Stores a job's rows from its file, from where the job's last committed batch left
    /// off. Returns what this run found (errors of rows stored by an earlier run are in the
    /// results CSV, not here); the job's own counts cover the whole file.
    ///
    /// The import runs in a task of its own ([`contained`]): a caller that goes away (a
    /// client that hangs up) does not stop it half-way, and if it fails in any way, a panic
    /// included, the job ends `failed` with the reason rather than being taken up again at
    /// every start.
    pub async fn import(
        &self,
        job: &JobRecord,
        path: &Path,
        p: &Prepared,
    ) -> Result<Report, JobError> {
        let (this, job, path, p) = (self.clone(), job.clone(), path.to_path_buf(), p.clone());
        let id = job.id;
        let run = async move { this.import_here(&job, &path, &p).await };
        contained(self.store.clone(), id, run).await
    }

    async fn import_here(
        &self,
        job: &JobRecord,
        path: &Path,
        p: &Prepared,
    ) -> Result<Report, JobError> {
        let start = (job.next_row > 2 || job.file_offset > 0).then_some(ResumePoint {
            offset: job.file_offset,
            line: job.file_line,
            row: job.next_row,
        });
        // A resumed dedupe job must know the numbers it stored before the restart.
        let mut seen = Vec::new();
        if p.spec.dedupe && start.is_some() {
            let mut after = 0;
            loop {
                let page = self.store.job_results(job.id, after, 10_000).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                seen.extend(page.into_iter().map(|r| (r.to, r.row)));
            }
        }
        let (tx, mut rx) = mpsc::channel::<Result<Parsed, JobError>>(2);
        let path = path.to_path_buf();
        let spec = p.spec.clone();
        let plan = Plan {
            start: p.schedule_at.unwrap_or(job.created_at),
            scheduled: p.schedule_at.is_some(),
            rate: p.params.rate,
            validity: self.cfg.server.default_validity.0.as_millis() as Millis,
            accepted_before: job.accepted,
        };
        let reader =
            tokio::task::spawn_blocking(move || read_batches(&path, spec, start, seen, plan, tx));
        let mut report = Report::default();
        let mut result = Ok(());
        let mut next_start = job.next_row;
        while let Some(parsed) = rx.recv().await {
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let start_row = next_start;
            next_start = parsed.resume.row;
            let stored = self
                .store
                .append_job_batch(JobBatch {
                    job_id: job.id,
                    owner_id: job.owner_id,
                    from: p.from.clone(),
                    messages: parsed.messages,
                    rejects: parsed.rejects,
                    start_row,
                    resume: parsed.resume,
                    finished: parsed.finished,
                    now: now_ms(),
                })
                .await;
            match stored {
                Ok(BatchStored::Stored) => {}
                // Cancelled (or another importer has it): stop reading.
                Ok(BatchStored::Stopped | BatchStored::NotFound) => break,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
            report.merge(parsed.report);
            // Sending starts while the rest of the file is still being read.
            (self.wake)();
        }
        drop(rx);
        if let Err(e) = reader.await {
            if result.is_ok() {
                result = Err(JobError::Io(format!(
                    "reading the file stopped on an internal error: {e}"
                )));
            }
        }
        if let Err(e) = result {
            // A file that cannot be read to its end: what is stored is cancelled, so the
            // job is not half-sent, and the job says why.
            tracing::error!(job = job.id, error = %e, "a job's import failed");
            let now = now_ms();
            let _ = self
                .store
                .control_job(job.id, None, JobAction::Cancel, now)
                .await;
            self.store.fail_job(job.id, e.to_string(), now).await?;
            return Err(e);
        }
        Ok(report)
    }

    /// Imports the API uploads whose import a restart interrupted, each from its last
    /// committed batch; an upload whose file is gone fails its job.
    pub async fn resume_uploads(&self) {
        let jobs = match self.store.unfinished_jobs().await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "cannot list unfinished jobs");
                return;
            }
        };
        // Uploads no unfinished job needs (a restart during the check before the job was
        // created, or after its import ended) are removed.
        let keep: std::collections::HashSet<PathBuf> = jobs
            .iter()
            .filter_map(|j| j.file.as_ref().map(PathBuf::from))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.upload_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                let upload = e.file_name().to_string_lossy().starts_with("upload-");
                if upload && !keep.contains(&p) {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        for job in jobs.into_iter().filter(|j| j.source == "api") {
            let this = self.clone();
            tokio::spawn(async move {
                let Some(file) = job.file.clone().map(PathBuf::from).filter(|f| f.exists()) else {
                    let _ = this
                        .store
                        .control_job(job.id, None, JobAction::Cancel, now_ms())
                        .await;
                    let _ = this
                        .store
                        .fail_job(job.id, "the server stopped while importing this job and its upload is gone: the rows stored were cancelled".into(), now_ms())
                        .await;
                    return;
                };
                tracing::info!(
                    job = job.id,
                    row = job.next_row,
                    "resuming a job's import after a restart"
                );
                let result = match this.prepared_of(&job) {
                    Ok(p) => this.import(&job, &file, &p).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::error!(job = job.id, error = %e, "resuming a job failed");
                }
                let _ = std::fs::remove_file(&file);
            });
        }
    }
}

/// Runs `import` as a task of its own and waits for it. Should the task panic, the job's
/// stored rows are cancelled and the job is failed with the reason, as for a file that
/// cannot be read; the server goes on, and does not take the job up again.
pub async fn contained(
    store: Store,
    job_id: Id,
    import: impl std::future::Future<Output = Result<Report, JobError>> + Send + 'static,
) -> Result<Report, JobError> {
    let e = match tokio::spawn(import).await {
        Ok(result) => return result,
        Err(e) => e,
    };
    let reason = if e.is_panic() {
        "the import stopped on an internal error (a bug; the server log has it): the rows stored were cancelled"
    } else {
        "the import was stopped: the rows stored were cancelled"
    };
    tracing::error!(job = job_id, error = %e, "a job's import stopped");
    let now = now_ms();
    let _ = store
        .control_job(job_id, None, JobAction::Cancel, now)
        .await;
    store.fail_job(job_id, reason.to_string(), now).await?;
    Err(JobError::Io(reason.to_string()))
}

impl Report {
    fn merge(&mut self, o: Report) {
        self.total += o.total;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
        self.segments += o.segments;
        for e in o.errors {
            self.note_error(e.row, e.message);
        }
        self.errors_truncated |= o.errors_truncated;
    }
}

/// How accepted rows are timed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// The job's schedule, or its creation.
    start: Millis,
    /// `start` is a `schedule_at`.
    scheduled: bool,
    /// Messages a second.
    rate: Option<f64>,
    /// How long a message may wait to be sent.
    validity: Millis,
    /// Rows stored by earlier runs of this import.
    accepted_before: i64,
}

struct Parsed {
    messages: Vec<JobMessage>,
    rejects: Vec<RowReject>,
    resume: ResumePoint,
    finished: bool,
    report: Report,
}

fn open_checked(
    path: &Path,
    spec: Spec,
    start: Option<ResumePoint>,
) -> Result<(CsvRows, Checker), JobError> {
    let (rows, header) = CsvRows::open(path, start)?;
    let layout = Layout::new(&spec, header)?;
    Ok((rows, Checker::new(spec, layout)))
}

fn validate_blocking(path: &Path, spec: Spec, structure_only: bool) -> Result<Report, JobError> {
    let (mut rows, mut checker) = open_checked(path, spec, None)?;
    let mut report = Report::default();
    while let Some((row, rec)) = rows.next_row()? {
        report.total += 1;
        if structure_only {
            continue;
        }
        match checker.check(row, rec) {
            Checked::Accepted { to, body } => {
                report.accepted += 1;
                report.segments += i64::from(body.segments());
                if report.preview.len() < PREVIEW {
                    report.preview.push(Preview {
                        row,
                        to,
                        segments: body.segments(),
                        encoding: body.encoding().as_str(),
                        body: body.text().to_string(),
                    });
                }
            }
            Checked::Rejected { message, .. } => {
                report.rejected += 1;
                report.note_error(row, message);
            }
            Checked::Duplicate { .. } => {
                report.rejected += 1;
                report.duplicates += 1;
            }
        }
    }
    Ok(report)
}

fn read_batches(
    path: &Path,
    spec: Spec,
    start: Option<ResumePoint>,
    seen: Vec<(String, i64)>,
    plan: Plan,
    tx: mpsc::Sender<Result<Parsed, JobError>>,
) {
    let result = (|| -> Result<(), JobError> {
        let (mut rows, mut checker) = open_checked(path, spec, start)?;
        for (n, row) in seen {
            checker.seen_before(&n, row);
        }
        let mut accepted = plan.accepted_before;
        loop {
            let mut batch = Parsed {
                messages: Vec::with_capacity(BATCH_ROWS),
                rejects: Vec::new(),
                resume: rows.resume_point(),
                finished: false,
                report: Report::default(),
            };
            let now = now_ms();
            while batch.messages.len() + batch.rejects.len() < BATCH_ROWS {
                let Some((row, rec)) = rows.next_row()? else {
                    batch.finished = true;
                    break;
                };
                batch.report.total += 1;
                match checker.check(row, rec) {
                    Checked::Accepted { to, body } => {
                        // The job's rate spreads its messages over time: the k-th waits in
                        // the queue until start + k/rate.
                        let offset = plan
                            .rate
                            .map_or(0, |r| ((accepted as f64) * 1000.0 / r) as Millis);
                        let due_at = plan.start + offset;
                        accepted += 1;
                        batch.report.accepted += 1;
                        batch.report.segments += i64::from(body.segments());
                        batch.messages.push(JobMessage {
                            row,
                            to,
                            encoding: body.encoding().as_str(),
                            segments: i64::from(body.segments()),
                            scheduled: plan.scheduled && due_at > now,
                            expires_at: due_at.max(now) + plan.validity,
                            due_at,
                            body: body.text().to_string(),
                        });
                    }
                    Checked::Rejected { number, message } => {
                        batch.report.rejected += 1;
                        batch.report.note_error(row, message.clone());
                        batch.rejects.push(RowReject {
                            row,
                            number,
                            message,
                            duplicate: false,
                        });
                    }
                    Checked::Duplicate { number, first_row } => {
                        batch.report.rejected += 1;
                        batch.report.duplicates += 1;
                        batch.rejects.push(RowReject {
                            row,
                            number,
                            message: format!("duplicate number (first in row {first_row})"),
                            duplicate: true,
                        });
                    }
                }
            }
            batch.resume = rows.resume_point();
            let finished = batch.finished;
            if tx.blocking_send(Ok(batch)).is_err() || finished {
                return Ok(());
            }
        }
    })();
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use textgate_store::{JobState, NewJob, NewUser, Role};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_that_panics_fails_its_job_and_nothing_else() {
        let dir =
            std::env::temp_dir().join(format!("tg-contained-{}-{}", std::process::id(), now_ms()));
        let store = Store::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        let owner = store
            .create_user(NewUser {
                name: "batch".into(),
                role: Role::User,
                email: None,
                password_hash: None,
                created_at: now_ms(),
            })
            .await
            .unwrap();
        let job = store
            .create_job(NewJob {
                owner_id: owner.id,
                name: None,
                source: "api".into(),
                params: "{}".into(),
                file: None,
                created_at: now_ms(),
            })
            .await
            .unwrap();
        let r = contained(store.clone(), job.id, async {
            panic!("a bug in an import");
        })
        .await;
        assert!(
            matches!(r, Err(JobError::Io(ref m)) if m.contains("internal error")),
            "{r:?}"
        );
        let job = store.get_job(job.id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(job
            .error
            .as_deref()
            .unwrap_or("")
            .contains("internal error"));
        // Not taken up again at the next start.
        assert!(store.unfinished_jobs().await.unwrap().is_empty());
        // And an import that ends is passed through as it is.
        let ok = contained(store.clone(), job.id, async { Ok(Report::default()) }).await;
        assert_eq!(ok.unwrap(), Report::default());
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
