//! SQLite's one writer: a thread that owns the write connection and commits whatever
//! callers have queued in one transaction (group commit); see the module doc of `sqlite`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::db_err;
use crate::{Result, StoreError};

/// How many queued calls one transaction takes at most; bounds the latency of the first.
const MAX_BATCH: usize = 2048;

/// A queued write: runs its statements (perhaps twice, see the module doc), then answers.
pub(super) trait Work: Send {
    /// Runs the call on `c` inside the open transaction; false if it failed.
    fn run(&mut self, c: &Connection) -> bool;
    /// Answers the caller with the call's result, or with why the commit failed.
    fn answer(self: Box<Self>, committed: std::result::Result<(), StoreError>);
}

/// A closure and the reply channel of its caller.
pub(super) struct Call<F, T> {
    pub(super) f: F,
    pub(super) result: Option<Result<T>>,
    pub(super) tx: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> Work for Call<F, T>
where
    F: FnMut(&Connection) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, c: &Connection) -> bool {
        let r = (self.f)(c);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), StoreError>) {
        let Call { f, result, tx } = *self;
        // What the closure holds is released before the caller resumes.
        drop(f);
        let result = result.unwrap_or(Err(StoreError::Closed));
        let _ = tx.send(committed.and(result));
    }
}

/// A queued write. `durable` writes are what callers acknowledge to the outside world
/// (accepted messages, users, keys, inbound texts): their transaction is fsynced before any
/// answer. The dispatcher's own bookkeeping (claims, outcomes, receipts) is not: SQLite
/// commits it to the WAL without an fsync, which survives a crash of the process, and the
/// next durable commit syncs it too. A power cut can lose such a record; then the message's
/// lease runs out and it is sent again, which docs/architecture.md allows.
pub(super) struct Write {
    pub(super) durable: bool,
    pub(super) work: Box<dyn Work>,
}

fn drain(rx: &mpsc::Receiver<Write>, batch: &mut Vec<Write>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

pub(super) fn writer_loop(writer: Arc<Mutex<Writer>>, rx: mpsc::Receiver<Write>) {
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        drain(&rx, &mut batch);
        // A poisoned lock means a commit panicked half-way: end, and every write after this
        // one fails with `Closed`, as when the thread itself died.
        let Ok(mut w) = writer.lock() else { return };
        w.commit(&mut batch);
    }
}

/// The one connection that writes, shared by the writer thread and by
/// [`Sqlite::write_here`]; whoever holds the lock commits.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Whether `synchronous` is FULL (see [`Write`]).
    pub(super) synced: bool,
}

impl Writer {
    /// Runs `batch` in one transaction, commits it (fsynced if any job is durable) and
    /// answers every job.
    pub(super) fn commit(&mut self, batch: &mut Vec<Write>) {
        let durable = batch.iter().any(|j| j.durable);
        if durable != self.synced {
            let pragma = if durable {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            match self.conn.execute_batch(pragma) {
                Ok(()) => self.synced = durable,
                Err(e) => tracing::error!(error = %e, "sqlite: cannot set synchronous"),
            }
        }
        let mut committed = run_batch(&self.conn, batch, false);
        if matches!(committed, Err(Failed::Call)) {
            // One call failed after perhaps writing something: undo everything and run them
            // again, each in a savepoint, so that only the failing one is left out.
            committed = run_batch(&self.conn, batch, true);
        }
        let committed = match committed {
            Ok(()) => Ok(()),
            Err(Failed::Call) => Err(StoreError::backend("a call failed twice")),
            Err(Failed::Tx(e)) => Err(e),
        };
        for write in batch.drain(..) {
            write.work.answer(committed.clone());
        }
    }
}

/// Whether the current Tokio runtime has a worker besides this one.
pub(super) fn another_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| h.metrics().num_workers() > 1)
}

/// Why [`run_batch`] rolled back.
enum Failed {
    /// A call failed (without savepoints); the batch must run again with them.
    Call,
    /// The transaction itself failed; every caller gets this.
    Tx(StoreError),
}

/// Runs `batch` in one transaction and commits it. Without `savepoints`, the first failing
/// call rolls everything back; with them, a failing call's own writes are undone and the
/// rest is committed.
fn run_batch(
    conn: &Connection,
    batch: &mut [Write],
    savepoints: bool,
) -> std::result::Result<(), Failed> {
    let exec = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map_err(db_err)
    };
    if let Err(e) = exec("BEGIN IMMEDIATE") {
        // Nothing was written, so nothing is half-accepted: each caller gets the error. A
        // transaction left open by a failed rollback would refuse every later BEGIN: end it.
        tracing::error!(error = %e, "sqlite: cannot begin a transaction");
        let _ = conn.execute_batch("ROLLBACK");
        return Err(Failed::Tx(e));
    }
    for write in batch.iter_mut() {
        if !savepoints {
            if !write.work.run(conn) {
                let _ = exec("ROLLBACK");
                return Err(Failed::Call);
            }
            continue;
        }
        let sp = exec("SAVEPOINT job");
        let ok = write.work.run(conn);
        if sp.is_ok() {
            if !ok {
                let _ = exec("ROLLBACK TO job");
            }
            let _ = exec("RELEASE job");
        }
    }
    exec("COMMIT").map(|_| ()).map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        Failed::Tx(e)
    })
}
