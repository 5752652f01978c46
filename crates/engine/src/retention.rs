//! Retention (`[retention]`, docs/operations.md): message texts are personal data, and
//! records pile up. Every `interval`, what is older than its configured age is deleted (or,
//! with `strip_bodies`, its text emptied) in batches of `batch` rows, each its own short
//! transaction with a pause after it, so that sending is never held up for long; and old
//! files in the watched folder's `done/` and `failed/` are removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::RetentionConfig;
use textgate_store::{Purge, PurgeBatch, Store};

/// The pause after each batch: the writer takes whatever queued behind it first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Runs passes until `stop` is cancelled. `spool` is the watched folder, if there is one.
pub async fn run(
    store: Store,
    cfg: RetentionConfig,
    spool: Option<PathBuf>,
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    stop: tokio_util::sync::CancellationToken,
) {
    if !cfg.any() {
        return;
    }
    loop {
        // One node of several does each pass: the one holding the lease for this interval.
        if cluster.lease_for("retention", cfg.interval.0).await {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = pass(&store, &cfg, spool.as_deref()) => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval.0) => {}
        }
    }
}

/// One pass over everything configured.
pub async fn pass(store: &Store, cfg: &RetentionConfig, spool: Option<&Path>) {
    let now = now_ms();
    let age = |d: Duration| now - d.as_millis() as Millis;
    let tables = [
        (Purge::Messages, cfg.messages, cfg.strip_bodies),
        (Purge::Inbound, cfg.inbound, cfg.strip_bodies),
        (Purge::Deliveries, cfg.deliveries, false),
    ];
    for (what, keep, strip) in tables {
        let Some(keep) = keep else { continue };
        match table(store, what, age(keep.0), strip, cfg.batch).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(?what, rows = n, strip, "retention: old records removed"),
            Err(e) => {
                tracing::warn!(?what, error = %e, "retention: a pass failed; the next one goes on")
            }
        }
    }
    if let (Some(keep), Some(dir)) = (cfg.job_files, spool) {
        let before = SystemTime::now()
            .checked_sub(keep.0)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let n = ["done", "failed"]
            .iter()
            .map(|sub| old_files(&dir.join(sub), before))
            .sum::<usize>();
        if n > 0 {
            tracing::info!(
                files = n,
                "retention: old files of the watched folder removed"
            );
        }
    }
}

async fn table(
    store: &Store,
    what: Purge,
    before: Millis,
    strip: bool,
    limit: usize,
) -> textgate_store::Result<u64> {
    let (mut after, mut rows) = (0, 0);
    loop {
        let p = store
            .purge(PurgeBatch {
                what,
                before,
                after,
                limit,
                strip,
            })
            .await?;
        rows += p.rows;
        let Some(next) = p.next else { return Ok(rows) };
        after = next;
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

/// Removes the plain files in `dir` last changed before `before` (links are removed, never
/// followed); how many.
fn old_files(dir: &Path, before: SystemTime) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| !m.is_dir() && m.modified().is_ok_and(|t| t < before))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}
