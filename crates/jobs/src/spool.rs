//! The watched folder (`[spool]`, docs/configuration.md): files dropped into `incoming/` become jobs
//! owned by the configured user.
//!
//! - A file is taken only when complete: names starting with `.` or ending in `.tmp` or
//!   `.part` are never taken (write under such a name, then rename), and any other file only
//!   once its size and modification time have not changed for `settle`.
//! - A sidecar `NAME.json` (written before the file) may set the job's parameters
//!   (`template`, `from`, `name`, `schedule_at`, `rate`, `dedupe`, `all_or_nothing`,
//!   `to_column`); `[spool] template` and `from` are the defaults.
//! - A taken file is first renamed into `processing/`, then its job is created with that
//!   path, so a restart finds it: an unfinished import resumes from its last committed
//!   batch, a finished one is only moved on, and a file with no job yet goes back to
//!   `incoming/` (nothing of it was stored).
//! - The end: `done/NAME` with `done/NAME.report.csv` (the results CSV), or `failed/NAME`
//!   with `failed/NAME.reason`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use textgate_core::clock::now_ms;
use textgate_core::config::SpoolConfig;
use textgate_store::{Id, JobRecord, JobState};

use crate::import::{JobParams, Jobs};
use crate::results::Results;
use crate::JobError;

/// The watched folder's sub-folders.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Where files are dropped.
    pub incoming: PathBuf,
    /// Files being imported.
    pub processing: PathBuf,
    /// Imported files and their reports.
    pub done: PathBuf,
    /// Refused files and their reasons.
    pub failed: PathBuf,
}

impl Dirs {
    fn new(root: &Path) -> Dirs {
        Dirs {
            incoming: root.join("incoming"),
            processing: root.join("processing"),
            done: root.join("done"),
            failed: root.join("failed"),
        }
    }
}

/// Whether a name in `incoming/` is never a job file by itself.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with(".json")
}

/// Whether it is this node's turn to watch the folder (it holds its lease).
pub type Turn = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

/// The watcher.
pub struct Spool {
    jobs: Jobs,
    cfg: SpoolConfig,
    owner: Id,
    dirs: Dirs,
}

impl Spool {
    /// Checks the owner exists and creates the folders.
    pub async fn new(jobs: Jobs, cfg: SpoolConfig) -> Result<Spool, String> {
        let owner = jobs
            .store()
            .user_by_name(&cfg.user)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "[spool] user: there is no user \"{}\" (create it with `textgate user add {}`)",
                    cfg.user, cfg.user
                )
            })?
            .id;
        let dirs = Dirs::new(Path::new(&cfg.dir));
        for d in [&dirs.incoming, &dirs.processing, &dirs.done, &dirs.failed] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("[spool] dir: cannot create {}: {e}", d.display()))?;
        }
        Ok(Spool {
            jobs,
            cfg,
            owner,
            dirs,
        })
    }

    /// Finishes what a restart interrupted, then watches `incoming/` until `stop` fires.
    /// With several nodes sharing the folder, `turn` says whether this node's turn it is (it
    /// holds the folder's lease): only that node recovers and takes files, and another
    /// takes over, recovering first, when it dies.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken, turn: Option<Turn>) {
        let mut recovered = false;
        let mut seen: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)> = HashMap::new();
        loop {
            let mine = match &turn {
                Some(t) => t().await,
                None => true,
            };
            if !mine {
                recovered = false;
                seen.clear();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.cfg.poll_interval.0) => {}
                }
                continue;
            }
            if !recovered {
                self.recover().await;
                recovered = true;
            }
            for path in self.ready(&mut seen) {
                if stop.is_cancelled() {
                    return;
                }
                // A file being imported is not cut short: its import goes on in its own task
                // and, should the process end first, resumes from its last batch at the next
                // start.
                self.take(&path).await;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.poll_interval.0) => {}
            }
        }
    }

    /// Files in `incoming/` that have settled.
    fn ready(
        &self,
        seen: &mut HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
    ) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dirs.incoming) else {
            return Vec::new();
        };
        let mut present = Vec::new();
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if ignored(&name) || !meta.is_file() {
                continue;
            }
            let path = e.path();
            present.push(path.clone());
            let now = (meta.len(), meta.modified().ok());
            match seen.get(&path) {
                Some((len, mtime, since)) if (*len, *mtime) == now => {
                    if since.elapsed() >= self.cfg.settle.0 {
                        out.push(path.clone());
                    }
                }
                _ => {
                    seen.insert(path, (now.0, now.1, Instant::now()));
                }
            }
        }
        seen.retain(|p, _| present.contains(p) && !out.contains(p));
        out.sort();
        out
    }

    async fn take(&self, path: &Path) {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return;
        };
        // The job is created with the path in processing/, so a restart can tell a file
        // being imported from a new one.
        let work = self.dirs.processing.join(format!("{}-{name}", now_ms()));
        if let Err(e) = std::fs::rename(path, &work) {
            tracing::error!(file = %path.display(), error = %e, "spool: cannot move a file to processing/");
            return;
        }
        let sidecar = self.dirs.incoming.join(format!("{name}.json"));
        let work_sidecar = sidecar_of(&work);
        if sidecar.exists() {
            let _ = std::fs::rename(&sidecar, &work_sidecar);
        }
        tracing::info!(file = %name, "spool: taking a file");
        let result = self.start_job(&work).await;
        self.finish(&work, result).await;
    }

    /// The job's parameters: the sidecar's, with the config's defaults under them.
    fn params(&self, work: &Path) -> Result<JobParams, JobError> {
        let sidecar = sidecar_of(work);
        if std::fs::symlink_metadata(&sidecar).is_ok_and(|m| !m.is_file()) {
            return Err(JobError::Param(
                "invalid_sidecar",
                "the sidecar is not a plain file (a link is not followed): write the settings into the .json file itself".into(),
            ));
        }
        let mut p: JobParams = match std::fs::read_to_string(&sidecar) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                JobError::Param(
                    "invalid_sidecar",
                    format!("the sidecar file is not acceptable: {e}"),
                )
            })?,
            Err(_) => JobParams::default(),
        };
        if p.dry_run {
            return Err(JobError::Param(
                "invalid_sidecar",
                "dry_run is not available for the watched folder: use the API".into(),
            ));
        }
        if p.template.is_none() {
            p.template = self.cfg.template.clone();
        }
        if p.from.is_none() {
            p.from = self.cfg.from.clone();
        }
        if p.name.is_none() {
            p.name = Some(original_name(work));
        }
        Ok(p)
    }

    async fn start_job(&self, work: &Path) -> Result<JobRecord, JobError> {
        let mut params = self.params(work)?;
        let owner = self.jobs.store().user_by_id(self.owner).await?;
        let allowed = owner.map(|u| u.senders).unwrap_or_default();
        self.jobs.choose_sender(&mut params, &allowed)?;
        let prepared = self.jobs.prepare(params)?;
        // The whole file is read once first (numbers unchecked, which is quick), so a
        // file broken half-way is refused before any of its rows is stored.
        self.jobs
            .validate(work, &prepared, !prepared.params.all_or_nothing)
            .await
            .and_then(|r| {
                if prepared.params.all_or_nothing && r.rejected > r.duplicates {
                    Err(JobError::Rejected(Box::new(r)))
                } else {
                    Ok(())
                }
            })?;
        let job = self
            .jobs
            .create(self.owner, "spool", work, &prepared)
            .await?;
        self.jobs.import(&job, work, &prepared).await?;
        Ok(job)
    }

    /// Moves a file to `done/` with its report, or to `failed/` with the reason.
    async fn finish(&self, work: &Path, result: Result<JobRecord, JobError>) {
        let name = original_name(work);
        match result {
            Ok(job) => {
                let done = free_name(&self.dirs.done, &name);
                let report = PathBuf::from(format!("{}.report.csv", done.display()));
                if let Err(e) = self.write_report(job.id, &report).await {
                    tracing::error!(job = job.id, error = %e, "spool: cannot write the report");
                }
                let _ = std::fs::rename(work, &done);
                let _ = std::fs::remove_file(sidecar_of(work));
                tracing::info!(job = job.id, file = %name, "spool: file imported");
            }
            Err(e) => {
                let failed = free_name(&self.dirs.failed, &name);
                let mut reason = e.to_string();
                if let JobError::Rejected(r) = &e {
                    for err in &r.errors {
                        reason.push_str(&format!("\nrow {}: {}", err.row, err.message));
                    }
                }
                reason.push('\n');
                let reason_file = PathBuf::from(format!("{}.reason", failed.display()));
                if let Err(e) = write_new(&reason_file, reason.as_bytes()) {
                    tracing::error!(file = %name, error = %e, "spool: cannot write the reason file");
                }
                let _ = std::fs::rename(work, &failed);
                let _ = std::fs::remove_file(sidecar_of(work));
                tracing::warn!(file = %name, error = %e, "spool: file refused");
            }
        }
    }

    async fn write_report(&self, job: Id, path: &Path) -> Result<(), String> {
        let (mut file, tmp) = create_new_free(&PathBuf::from(format!("{}.tmp", path.display())))
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        let mut results = Results::new(job);
        while let Some(chunk) = results
            .next_chunk(self.jobs.store())
            .await
            .map_err(|e| e.to_string())?
        {
            text.clear();
            text.push_str(&chunk);
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| e.to_string())?;
        }
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }

    /// Files left in `processing/` by a restart.
    async fn recover(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dirs.processing) else {
            return;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return;
        }
        // This user's jobs, by file, newest first: the job of a file is the newest with it.
        let mut by_file: HashMap<String, JobRecord> = HashMap::new();
        let mut before = None;
        loop {
            let page = match self
                .jobs
                .store()
                .list_jobs(Some(self.owner), before, 500)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "spool: cannot list jobs to recover processing/");
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            for j in page {
                if let Some(f) = j.file.clone() {
                    by_file.entry(f).or_insert(j);
                }
            }
        }
        for work in files {
            let key = work.to_string_lossy().into_owned();
            match by_file.remove(&key) {
                None => {
                    // Taken but no job yet: nothing was stored, so it starts again.
                    let back = self.dirs.incoming.join(original_name(&work));
                    let _ = std::fs::rename(sidecar_of(&work), sidecar_of(&back));
                    let _ = std::fs::rename(&work, &back);
                }
                Some(job) if job.imported_at.is_some() => self.finish(&work, Ok(job)).await,
                Some(job) if matches!(job.state, JobState::Running | JobState::Paused) => {
                    tracing::info!(
                        job = job.id,
                        row = job.next_row,
                        "spool: resuming a file's import after a restart"
                    );
                    let result = match self.jobs.prepared_of(&job) {
                        Ok(p) => self.jobs.import(&job, &work, &p).await.map(|_| job),
                        Err(e) => Err(e),
                    };
                    self.finish(&work, result).await;
                }
                Some(job) => {
                    let why = job
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("the job was {}", job.state.as_str()));
                    self.finish(&work, Err(JobError::Broken(why))).await;
                }
            }
        }
    }
}

fn sidecar_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.json", p.display()))
}

/// The name a file had in `incoming/` (without the `processing/` time prefix).
fn original_name(work: &Path) -> String {
    let name = work
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once('-') {
        Some((ms, rest)) if ms.chars().all(|c| c.is_ascii_digit()) && !ms.is_empty() => {
            rest.to_string()
        }
        _ => name,
    }
}

/// `dir/name`, or `dir/name.N` if that is taken.
/// Creates a file that did not exist, never through a link: whoever can write into the
/// spool's folders cannot make textgate write somewhere else by leaving a symbolic link
/// where it will write (`O_CREAT | O_EXCL` fails on any existing name, links included).
/// When the name is taken, `NAME.1`, `NAME.2`, … are tried.
fn create_new_free(path: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    let mut candidate = path.to_path_buf();
    for n in 1..=100 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                candidate = PathBuf::from(format!("{}.{n}", path.display()));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free name for {}", path.display()),
    ))
}

/// Writes a new file (see [`create_new_free`]).
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let (mut f, p) = create_new_free(path)?;
    std::io::Write::write_all(&mut f, bytes)?;
    Ok(p)
}

fn free_name(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    (1..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_never_written_through_a_link() {
        let dir =
            std::env::temp_dir().join(format!("tg-spool-link-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let target = dir.join("list.csv.reason");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let written = write_new(&target, b"reason").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(written, dir.join("list.csv.reason.1"));
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "reason");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn names() {
        assert!(ignored(".orders.csv"));
        assert!(ignored("orders.csv.tmp"));
        assert!(ignored("orders.csv.json"));
        assert!(!ignored("orders.csv"));
        assert_eq!(
            original_name(Path::new("/s/processing/1700000000000-orders-1.csv")),
            "orders-1.csv"
        );
        assert_eq!(
            original_name(Path::new("/s/processing/orders.csv")),
            "orders.csv"
        );
    }
}
