//! The SQLite backend, the embedded default.
//!
//! SQLite allows one writer at a time, so one thread owns the write connection. Callers
//! queue closures; the thread runs everything queued in one `BEGIN IMMEDIATE` … `COMMIT` and
//! answers each caller only after the commit. Under load this is group commit: a thousand
//! concurrent inserts share one fsync. One failing call must leave the others intact, so
//! when one fails the thread rolls the whole transaction back and runs the batch again, each
//! call in its own savepoint; the closures are `FnMut` for that. (Savepoints on every call
//! cost a tenth of the CPU per message: each copies every page it touches first.) Reads run on
//! a small pool of reader connections, which WAL lets proceed while the writer works.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Row};
use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::model::*;
use crate::{Result, StoreError};

mod inbound;
mod jobs;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_init.sql")),
    (2, include_str!("migrations/sqlite/0002_inbound.sql")),
    (3, include_str!("migrations/sqlite/0003_jobs.sql")),
    (4, include_str!("migrations/sqlite/0004_email.sql")),
    (5, include_str!("migrations/sqlite/0005_status_events.sql")),
    (6, include_str!("migrations/sqlite/0006_inbound_dedup.sql")),
    (7, include_str!("migrations/sqlite/0007_key_use.sql")),
];

/// How many queued calls one transaction takes at most; bounds the latency of the first.
const MAX_BATCH: usize = 2048;

/// A queued write: runs its statements (perhaps twice, see the module doc), then answers.
trait Work: Send {
    /// Runs the call on `c` inside the open transaction; false if it failed.
    fn run(&mut self, c: &Connection) -> bool;
    /// Answers the caller with the call's result, or with why the commit failed.
    fn answer(self: Box<Self>, committed: std::result::Result<(), StoreError>);
}

/// A closure and the reply channel of its caller.
struct Call<F, T> {
    f: F,
    result: Option<Result<T>>,
    tx: tokio::sync::oneshot::Sender<Result<T>>,
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
/// lease runs out and it is sent again, which DESIGN.md §1 allows.
struct Job {
    durable: bool,
    work: Box<dyn Work>,
}

/// The SQLite store.
#[derive(Clone)]
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
    writer_conn: Arc<Mutex<Writer>>,
    readers: Arc<Readers>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Reader connections: at most [`READERS`] at once, kept open between reads. Opening one
/// costs a schema parse, so a burst of concurrent reads waits for a connection rather than
/// opening (and then closing) more.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Reader connections at most.
const READERS: usize = 8;

impl Readers {
    fn take(&self) -> Result<Connection> {
        if let Some(c) = self.idle.lock().map_err(poisoned)?.pop() {
            return Ok(c);
        }
        open_conn(&self.path, true)
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::backend("a store lock was poisoned by a panic")
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        // A row mapper met a value this version does not know (see `corrupt`).
        rusqlite::Error::FromSqlConversionFailure(_, _, cause) => {
            StoreError::Corrupt(cause.to_string())
        }
        _ => StoreError::Backend(crate::Cause::new(e)),
    }
}

/// For a row mapper: a stored value this version cannot read, reported as
/// [`StoreError::Corrupt`] by [`db_err`] rather than read as a default.
fn corrupt(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        Box::new(std::io::Error::other(what)),
    )
}

fn open_conn(path: &Path, reader: bool) -> Result<Connection> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        url: format!("sqlite://{}", path.display()),
        reason: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on disk before any
    // caller hears "accepted", which is the promise of DESIGN.md §1. Foreign keys are
    // declared but not enforced here: checking them made SQLite keep a statement journal for
    // each insert and update, a fifth of the store's CPU per message (bench/store). Nothing
    // deletes a referenced row, and PostgreSQL enforces the same keys under the same
    // conformance suite, so a write that broke one would fail there.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 10000;
         PRAGMA cache_size = -32000;
         PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 4000;",
    )
    .map_err(open_err)?;
    if reader {
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(open_err)?;
    }
    Ok(conn)
}

/// Writes zeros to the write-ahead log up to the size it reaches between checkpoints, and
/// syncs them. While the log grows, every commit's fdatasync must also write the file's new
/// size and block map: on ext4 that is two more synchronous writes for each one. Measured
/// with `bench/smpp/run`, inbound texts committed one window at a time came in a third
/// faster with the log preallocated. SQLite deletes the log at a clean shutdown, so the
/// server does this at every start (20 MB, a tenth of a second here). It never touches what
/// the log already holds, and zeros past its last frame are not a frame to SQLite.
fn presize_wal(conn: &Connection, db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let pragma = |name: &str| -> std::io::Result<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
            .map_err(std::io::Error::other)
    };
    let frame = pragma("page_size")? + WAL_FRAME_HEADER;
    // The commit that crosses the checkpoint threshold ends past it: leave room for that.
    let target = WAL_HEADER + frame * pragma("wal_autocheckpoint")? * 5 / 4;
    let wal = std::fs::OpenOptions::new().write(true).open(wal_path(db))?;
    let mut at = wal.metadata()?.len();
    if at >= target {
        return Ok(());
    }
    // One page per write. The page cache keeps a write's pages together in one folio, and
    // every later write into a folio walks all of its blocks: zeros written a megabyte at a
    // time made each of SQLite's frame writes walk 256 (ext4_block_write_begin and
    // block_commit_write were 7.5 % of an inbound run's CPU; with pages, nothing).
    let zeros = vec![0u8; 4096];
    while at < target {
        let n = (target - at).min(zeros.len() as u64);
        wal.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    wal.sync_data()
}

/// Where SQLite keeps the write-ahead log of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Sizes in SQLite's write-ahead log format.
const WAL_HEADER: u64 = 32;
const WAL_FRAME_HEADER: u64 = 24;

fn migrate(conn: &Connection, migrations: &[(i64, &str)]) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in migrations {
        let done: Option<i64> = conn
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let applied = conn.execute_batch(sql).and_then(|_| {
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, textgate_core::clock::now_ms()],
                )
            });
            match applied {
                Ok(_) => conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn drain(rx: &mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

fn writer_loop(writer: Arc<Mutex<Writer>>, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
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
struct Writer {
    conn: Connection,
    /// Whether `synchronous` is FULL (see [`Job`]).
    synced: bool,
}

impl Writer {
    /// Runs `batch` in one transaction, commits it (fsynced if any job is durable) and
    /// answers every job.
    fn commit(&mut self, batch: &mut Vec<Job>) {
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
        for job in batch.drain(..) {
            job.work.answer(committed.clone());
        }
    }
}

/// Whether the current Tokio runtime has a worker besides this one.
fn another_worker() -> bool {
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
    batch: &mut [Job],
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
    for job in batch.iter_mut() {
        if !savepoints {
            if !job.work.run(conn) {
                let _ = exec("ROLLBACK");
                return Err(Failed::Call);
            }
            continue;
        }
        let sp = exec("SAVEPOINT job");
        let ok = job.work.run(conn);
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

/// A status UPDATE of one message in its two forms: for the common message, which has neither
/// a callback_url nor an e-mail sender and so no events, and for any message. See
/// [`set_status`].
macro_rules! status_update {
    ($sql:literal) => {
        (
            concat!($sql, " AND callback_url IS NULL AND email_from IS NULL"),
            $sql,
        )
    };
}

/// Runs a status UPDATE of message `id` (from [`status_update!`]) and queues the events of
/// the change, if it has any; `Ok(false)` when the UPDATE matched nothing. The common message
/// costs one UPDATE, as without events; one with a callback or an e-mail sender costs two.
/// (`RETURNING` would say which it was, but SQLite fills an ephemeral table for it, which
/// costs more than a second UPDATE of the few messages with events.)
fn set_status(
    c: &Connection,
    (plain, any): (&str, &str),
    params: &[&dyn rusqlite::ToSql],
    id: Id,
    from_sending: bool,
) -> rusqlite::Result<bool> {
    if c.prepare_cached(plain)?.execute(params)? > 0 {
        return Ok(true);
    }
    if c.prepare_cached(any)?.execute(params)? == 0 {
        return Ok(false);
    }
    queue_status_events(c, id, from_sending)?;
    Ok(true)
}

/// Queues the events of the status change just written to message `id`, as PostgreSQL's
/// triggers do there: its status callback when it has a callback_url (a 'sent' one first when
/// it went from `sending` straight to delivered or undelivered), and the failure notice to
/// the sender of a text from e-mail. (A trigger did this until schema version 5, but SQLite
/// runs a trigger's program on every row an UPDATE OF status touches, whatever its WHEN says:
/// a fifth of the writer's instructions per message, with no callbacks at all.)
pub(crate) fn queue_status_events(
    c: &Connection,
    id: Id,
    from_sending: bool,
) -> rusqlite::Result<()> {
    let now = textgate_core::clock::now_ms();
    if from_sending {
        c.prepare_cached(
            "INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, api_key_id, next_at, give_up_at, created_at)
             SELECT 'webhook', 'message.status', callback_url, id, 'sent', owner_id, api_key_id, ?2, 0, ?2
             FROM messages WHERE id = ?1 AND callback_url IS NOT NULL AND status IN ('delivered', 'undelivered')",
        )?
        .execute(params![id, now])?;
    }
    c.prepare_cached(
        "INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, api_key_id, next_at, give_up_at, created_at)
         SELECT 'webhook', 'message.status', callback_url, id, status, owner_id, api_key_id, ?2, 0, ?2
         FROM messages WHERE id = ?1 AND callback_url IS NOT NULL",
    )?
    .execute(params![id, now])?;
    c.prepare_cached(
        "INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, next_at, give_up_at, created_at)
         SELECT 'email', 'message.status', email_from, id, status, owner_id, ?2, 0, ?2
         FROM messages WHERE id = ?1 AND email_from IS NOT NULL AND status IN ('undelivered', 'failed', 'expired')",
    )?
    .execute(params![id, now])?;
    Ok(())
}

fn opt_i64(r: &Row, i: usize) -> rusqlite::Result<Option<i64>> {
    r.get(i)
}

fn message_from_row(r: &Row) -> rusqlite::Result<Message> {
    let status: String = r.get(8)?;
    let status = Status::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            8,
            rusqlite::types::Type::Text,
            format!("unknown status {status}").into(),
        )
    })?;
    Ok(Message {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        job_id: opt_i64(r, 2)?,
        to: r.get(3)?,
        from: r.get(4)?,
        body: r.get(5)?,
        encoding: r.get(6)?,
        segments: r.get(7)?,
        status,
        priority: r.get(9)?,
        due_at: r.get(10)?,
        expires_at: r.get(11)?,
        attempts: r.get(12)?,
        device: r.get(13)?,
        error_code: r.get(14)?,
        error: r.get(15)?,
        callback_url: r.get(16)?,
        reference: r.get(17)?,
        created_at: r.get(18)?,
        sent_at: opt_i64(r, 19)?,
        done_at: opt_i64(r, 20)?,
        origin: r.get(21)?,
        api_key_id: opt_i64(r, 22)?,
        email_from: r.get(23)?,
    })
}

const KEY_COLUMNS: &str = "k.id, k.user_id, u.name, k.label, k.webhook_secret IS NOT NULL, k.created_at, k.last_used_at, k.revoked_at";

fn key_from_row(r: &Row) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(0)?,
        user_id: r.get(1)?,
        user: r.get(2)?,
        label: r.get(3)?,
        webhook_secret: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

fn user_from_row(r: &Row) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role)
            .ok_or_else(|| corrupt(2, format!("user has the unknown role \"{role}\"")))?,
        email: r.get(3)?,
        password_hash: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const USER_COLUMNS: &str = "id, name, role, email, password_hash, created_at";

/// Inserts one message row; its id.
fn insert_message_row(c: &Connection, m: &NewMessage) -> rusqlite::Result<Id> {
    let status = m.initial_status();
    let claimed = status == Status::Sending;
    c.prepare_cached(
        "INSERT INTO messages (owner_id, job_id, recipient, sender, body, encoding, segments, status,
           priority, due_at, expires_at, callback_url, reference, created_at, lease_until, attempts,
           origin, api_key_id, email_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        m.owner_id,
        m.job_id,
        m.to,
        m.from,
        m.body,
        m.encoding,
        m.segments,
        status.as_str(),
        m.priority,
        m.schedule_at.unwrap_or(m.created_at),
        m.expires_at,
        m.callback_url,
        m.reference,
        m.created_at,
        m.claimed_until.filter(|_| claimed),
        i64::from(claimed),
        m.origin,
        m.api_key_id,
        m.email_from
    ])?;
    Ok(c.last_insert_rowid())
}

fn get_message_on(conn: &Connection, id: Id) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"
    ))?
    .query_row([id], message_from_row)
    .optional()
}

impl Sqlite {
    /// Opens or creates the database file (and its folder), and migrates it.
    pub async fn open(path: &str) -> Result<Sqlite> {
        let path = PathBuf::from(path);
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = p.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                        url: format!("sqlite://{}", p.display()),
                        reason: format!("cannot create the folder {}: {e}", dir.display()),
                    })?;
                }
            }
            let conn = open_conn(&p, false)?;
            migrate(&conn, MIGRATIONS).map_err(|e| StoreError::Open {
                url: format!("sqlite://{}", p.display()),
                reason: format!("migration failed: {e}"),
            })?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(crate::Cause::new(e)))??;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_conn = Arc::new(Mutex::new(Writer { conn, synced: true }));
        let w = writer_conn.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(w, rx))
            .map_err(|e| StoreError::backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            jobs: tx,
            writer_conn,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// A write whose commit is fsynced before the answer.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(true, f).await
    }

    /// See [`crate::Store::preallocate_log`]. Runs on the writer, before whatever is queued
    /// after it; the zeros go past the log's last frame, so an open transaction is no matter.
    pub(crate) async fn preallocate_log(&self) {
        let path = self.readers.path.clone();
        let done = self
            .write_lazy(move |c| {
                presize_wal(c, &path).map_err(|e| StoreError::Backend(crate::Cause::new(e)))
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "sqlite: could not preallocate the write-ahead log; commits will be slower until it has grown");
        }
    }

    /// A write of the dispatcher's bookkeeping (see [`Job`]).
    async fn write_lazy<T: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(false, f).await
    }

    /// A write that the calling thread commits itself when the writer is idle, and that is
    /// queued like any other when it is not.
    ///
    /// A queued write crosses threads twice: the writer must be woken, and then the caller.
    /// At SMPP window 10, an inbound text's deliver_sm_resp waits for its commit, the peer
    /// waits for the responses, and those two wake-ups were a third of each round (the
    /// inbound half of `bench/smpp/run`, alternating runs: 25,000–28,000 texts/s queued,
    /// 35,000–37,500 committed here; docs/benchmarks.md). The price is a
    /// Tokio worker busy for one commit, fsync included: so only the recorder, which waits
    /// for its commit anyway, calls this, and only when the runtime has another worker to
    /// go on serving everything else.
    async fn write_here<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let job = Job {
            durable,
            work: Box::new(Call {
                f,
                result: None,
                tx,
            }),
        };
        if another_worker() {
            if let Ok(mut w) = self.writer_conn.try_lock() {
                w.commit(&mut vec![job]);
                return rx.try_recv().map_err(|_| StoreError::Closed)?;
            }
        }
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn submit<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work = Box::new(Call {
            f,
            result: None,
            tx,
        });
        self.jobs
            .send(Job { durable, work })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let permit = readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = readers.take()?;
            let r = f(&conn).map_err(db_err);
            readers.give_back(conn);
            r
        })
        .await
        .map_err(|e| StoreError::Backend(crate::Cause::new(e)))?
    }

    pub(crate) async fn health(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    pub(crate) async fn close(&self) {
        // Dropping our sender is not enough (clones may live on): a sentinel-free way is to
        // wait for everything queued so far by writing a no-op.
        let _ = self.write(|_| Ok(())).await;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        drop(handle);
    }

    pub(crate) async fn create_user(&self, u: NewUser) -> Result<User> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO users (name, role, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![u.name, u.role.as_str(), u.email, u.password_hash, u.created_at]))
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a user named \"{}\" already exists", u.name)),
                other => other,
            })?;
            Ok(User {
                id: c.last_insert_rowid(),
                name: u.name.clone(),
                role: u.role,
                email: u.email.clone(),
                password_hash: u.password_hash.clone(),
                created_at: u.created_at,
            })
        })
        .await
    }

    pub(crate) async fn user_by_name(&self, name: String) -> Result<Option<User>> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"))?
                .query_row([name], user_from_row)
                .optional()
        })
        .await
    }

    pub(crate) async fn user_by_id(&self, id: Id) -> Result<Option<User>> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id], user_from_row)
                .optional()
        })
        .await
    }

    pub(crate) async fn user_by_email(&self, email: String) -> Result<Option<User>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(?1) ORDER BY id LIMIT 1"
            ))?
            .query_row([email], user_from_row)
            .optional()
        })
        .await
    }

    pub(crate) async fn count_users(&self) -> Result<i64> {
        self.read(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get(0)))
            .await
    }

    pub(crate) async fn create_api_key(
        &self,
        user_id: Id,
        key_hash: String,
        label: String,
        webhook_secret: Option<String>,
    ) -> Result<Id> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_keys (user_id, key_hash, label, created_at, webhook_secret) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user_id, key_hash, label, textgate_core::clock::now_ms(), webhook_secret],
            )
            .map_err(db_err)?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub(crate) async fn api_key_by_hash(&self, key_hash: String) -> Result<Option<ApiKey>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT u.id, u.name, u.role, u.email, u.password_hash, u.created_at, k.id, k.webhook_secret
                 FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
            )?
            .query_row([key_hash], |r| {
                Ok(ApiKey { user: user_from_row(r)?, id: r.get(6)?, webhook_secret: r.get(7)? })
            })
            .optional()
        })
        .await
    }

    pub(crate) async fn purge(&self, batch: PurgeBatch) -> Result<Purged> {
        let scan = crate::purge_scan(&batch);
        self.write(move |c| {
            let rows: Vec<(Id, Millis, bool)> = c
                .prepare_cached(&scan)
                .and_then(|mut s| {
                    s.query_map(params![batch.after, batch.limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(db_err)?;
            let (ids, next) = crate::purge_plan(&rows, &batch);
            if !ids.is_empty() {
                // Foreign keys are off (see `open_conn`): children go first, by hand.
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                let sql = match (batch.what, batch.strip) {
                    (Purge::Messages, true) => format!("UPDATE messages SET body = '' WHERE id IN ({list})"),
                    (Purge::Inbound, true) => format!("UPDATE inbound SET body = '' WHERE id IN ({list})"),
                    (Purge::Messages, false) => format!(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id IN ({list}));
                         DELETE FROM deliveries WHERE message_id IN ({list});
                         DELETE FROM message_parts WHERE message_id IN ({list});
                         DELETE FROM messages WHERE id IN ({list});"
                    ),
                    (Purge::Inbound, false) => format!(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE inbound_id IN ({list}));
                         DELETE FROM deliveries WHERE inbound_id IN ({list});
                         DELETE FROM inbound_designations WHERE inbound_id IN ({list});
                         DELETE FROM inbound WHERE id IN ({list});"
                    ),
                    (Purge::Deliveries, _) => format!(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN ({list});
                         DELETE FROM deliveries WHERE id IN ({list});"
                    ),
                };
                c.execute_batch(&sql).map_err(db_err)?;
            }
            Ok(Purged {
                rows: ids.len() as u64,
                next,
            })
        })
        .await
    }

    pub(crate) async fn list_api_keys(&self, user_id: Option<Id>) -> Result<Vec<KeyInfo>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE (?1 IS NULL OR k.user_id = ?1) ORDER BY k.id DESC"
            ))?;
            let rows = s.query_map([user_id], key_from_row)?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn revoke_api_key(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Option<KeyInfo>> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND revoked_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![id, owner, now]))
            .map_err(db_err)?;
            c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.id = ?1 AND (?2 IS NULL OR k.user_id = ?2)"
            ))
            .and_then(|mut s| s.query_row(params![id, owner], key_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    pub(crate) async fn touch_api_key(&self, id: Id, now: Millis) -> Result<()> {
        self.write_lazy(move |c| {
            c.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, now]))
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn revoked_api_keys_since(&self, since: Millis) -> Result<Vec<(Id, Millis)>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, revoked_at FROM api_keys WHERE revoked_at > ?1 ORDER BY revoked_at",
            )?;
            let rows = s.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn api_key_secret(&self, id: Id) -> Result<Option<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT webhook_secret FROM api_keys WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()
                .map(Option::flatten)
        })
        .await
    }

    pub(crate) async fn insert_messages(
        &self,
        msgs: Vec<NewMessage>,
        idem: Option<Idempotency>,
        render: RenderFn,
    ) -> Result<Inserted> {
        self.write(move |c| {
            if let Some(k) = &idem {
                let seen: Option<(String, String)> = c
                    .prepare_cached("SELECT fingerprint, response FROM idempotency WHERE user_id = ?1 AND key = ?2")
                    .and_then(|mut s| s.query_row(params![k.user_id, k.key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                    .map_err(db_err)?;
                if let Some((fp, response)) = seen {
                    return Ok(if fp == k.fingerprint { Inserted::Replay { response } } else { Inserted::KeyReused });
                }
            }
            let mut ids = Vec::with_capacity(msgs.len());
            for m in &msgs {
                ids.push(insert_message_row(c, m).map_err(db_err)?);
            }
            let response = render(&ids);
            if let Some(k) = &idem {
                c.prepare_cached(
                    "INSERT INTO idempotency (user_id, key, fingerprint, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![k.user_id, k.key, k.fingerprint, response, textgate_core::clock::now_ms()]))
                .map_err(db_err)?;
            }
            // Cloned, not moved: the writer may run this call a second time (see the module doc).
            let stored = msgs.iter().zip(&ids).map(|(m, id)| m.clone().stored(*id)).collect();
            Ok(Inserted::New { ids, response, stored })
        })
        .await
    }

    pub(crate) async fn get_message(&self, id: Id) -> Result<Option<Message>> {
        self.read(move |c| get_message_on(c, id)).await
    }

    pub(crate) async fn list_messages(&self, f: MessageFilter) -> Result<Vec<Message>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE (?1 IS NULL OR owner_id = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![f.owner_id, f.status.map(|s| s.as_str()), f.before, f.limit as i64],
                message_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn cancel_message(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Cancel> {
        self.write(move |c| {
            let Some(m) = get_message_on(c, id).map_err(db_err)? else { return Ok(Cancel::NotFound) };
            if owner.is_some_and(|o| o != m.owner_id) {
                return Ok(Cancel::NotFound);
            }
            if !matches!(m.status, Status::Queued | Status::Scheduled) {
                return Ok(Cancel::TooLate(m.status));
            }
            set_status(
                c,
                status_update!("UPDATE messages SET status = 'cancelled', done_at = ?2, lease_until = NULL WHERE id = ?1"),
                params![id, now],
                id,
                false,
            )
            .map_err(db_err)?;
            let m = get_message_on(c, id).map_err(db_err)?.ok_or(StoreError::Corrupt("cancelled message vanished".into()))?;
            Ok(Cancel::Cancelled(Box::new(m)))
        })
        .await
    }

    pub(crate) async fn claim(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.write_lazy(move |c| {
            let sql = format!(
                "UPDATE messages SET status = 'sending', lease_until = ?1, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND due_at <= ?2
                              ORDER BY priority, due_at, id LIMIT ?3)
                 RETURNING {MESSAGE_COLUMNS}"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(params![lease_until, now, limit as i64], message_from_row)
                .map_err(db_err)?;
            let mut out: Vec<Message> = rows.collect::<rusqlite::Result<_>>().map_err(db_err)?;
            out.sort_by_key(|m| (m.priority, m.due_at, m.id));
            Ok(out)
        })
        .await
    }

    pub(crate) async fn maintain(&self, now: Millis) -> Result<Maintenance> {
        self.write_lazy(move |c| {
            let promoted = c
                .execute("UPDATE messages SET status = 'queued' WHERE status = 'scheduled' AND due_at <= ?1", [now])
                .map_err(db_err)? as u64;
            let requeued = c
                .execute(
                    "UPDATE messages SET status = 'queued', lease_until = NULL, due_at = ?1
                     WHERE status = 'sending' AND lease_until < ?1",
                    [now],
                )
                .map_err(db_err)? as u64;
            // Those with events are found first: after the UPDATE nothing tells them apart.
            let with_events: Vec<Id> = c
                .prepare_cached(
                    "SELECT id FROM messages WHERE status = 'sent' AND expires_at < ?1
                       AND (callback_url IS NOT NULL OR email_from IS NOT NULL)",
                )
                .and_then(|mut s| s.query_map([now - RECEIPT_GRACE_MS], |r| r.get(0))?.collect())
                .map_err(db_err)?;
            let expired = c
                .execute(
                    "UPDATE messages SET status = 'expired', done_at = ?1, error = ?2
                     WHERE status = 'sent' AND expires_at < ?3",
                    params![now, NO_RECEIPT_ERROR, now - RECEIPT_GRACE_MS],
                )
                .map_err(db_err)? as u64;
            for id in with_events {
                queue_status_events(c, id, false).map_err(db_err)?;
            }
            Ok(Maintenance { promoted, requeued, expired })
        })
        .await
    }

    pub(crate) async fn record_outcomes(&self, outcomes: Arc<Vec<Outcome>>) -> Result<Vec<bool>> {
        self.write_lazy(move |c| {
            let mut applied = Vec::with_capacity(outcomes.len());
            for o in outcomes.iter() {
                let n = match o {
                    Outcome::Sent { id, attempt, device, part_ids, receipts, at } => {
                        let (status, done_at, code, error) = sent_with_receipts(receipts, part_ids.len(), *at);
                        let applied = set_status(
                            c,
                            status_update!(
                                "UPDATE messages SET status = ?5, device = ?3, sent_at = ?4, done_at = ?6, lease_until = NULL,
                                   error_code = ?7, error = ?8
                                 WHERE id = ?1 AND attempts = ?2 AND status = 'sending'"
                            ),
                            params![id, attempt, device, at, status.as_str(), done_at, code, error],
                            *id,
                            true,
                        )
                        .map_err(db_err)?;
                        if applied {
                            let mut ins = c
                                .prepare_cached(
                                    "INSERT INTO message_parts
                                       (message_id, part_no, device, device_msg_id, status, error_code, submitted_at, done_at)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                                     ON CONFLICT (message_id, part_no) DO UPDATE SET device = excluded.device,
                                       device_msg_id = excluded.device_msg_id, status = excluded.status,
                                       error_code = excluded.error_code, submitted_at = excluded.submitted_at,
                                       done_at = excluded.done_at",
                                )
                                .map_err(db_err)?;
                            for (i, pid) in part_ids.iter().enumerate() {
                                let r = receipts.get(i).and_then(Option::as_ref);
                                let state = r.map_or("sent", |r| if r.delivered { "delivered" } else { "undelivered" });
                                ins.execute(params![id, i as i64 + 1, device, pid, state, r.and_then(|r| r.code.clone()), at, r.map(|r| r.at.max(*at))])
                                    .map_err(db_err)?;
                            }
                        }
                        applied
                    }
                    Outcome::Retry { id, attempt, device, due_at, code, error, refund } => {
                        c.prepare_cached(
                            "UPDATE messages SET status = 'queued', due_at = ?3, lease_until = NULL,
                               device = coalesce(?4, device), error_code = ?5, error = ?6, attempts = attempts - ?7
                             WHERE id = ?1 AND attempts = ?2 AND status = 'sending'",
                        )
                        .and_then(|mut s| s.execute(params![id, attempt, due_at, device, code, error, i64::from(*refund)]))
                        .map_err(db_err)?
                            > 0
                    }
                    Outcome::Final { id, attempt, status, device, code, error, at } => set_status(
                        c,
                        status_update!(
                            "UPDATE messages SET status = ?3, done_at = ?4, lease_until = NULL,
                               device = coalesce(?5, device), error_code = ?6, error = ?7
                             WHERE id = ?1 AND attempts = ?2 AND status = 'sending'"
                        ),
                        params![id, attempt, status.as_str(), at, device, code, error],
                        *id,
                        true,
                    )
                    .map_err(db_err)?,
                };
                applied.push(n);
            }
            Ok(applied)
        })
        .await
    }

    pub(crate) async fn apply_receipts(
        &self,
        receipts: Arc<Vec<Receipt>>,
    ) -> Result<Vec<ReceiptMatch>> {
        self.write_lazy(move |c| {
            let mut out = Vec::with_capacity(receipts.len());
            for r in receipts.iter() {
                let state = if r.delivered { "delivered" } else { "undelivered" };
                // Found first, then updated by its key: `UPDATE … RETURNING` would cost SQLite an
                // ephemeral table per receipt. An id the SMSC has used before belongs to the
                // newest part that has it.
                let hit: Option<(Id, i64)> = c
                    .prepare_cached(
                        "SELECT message_id, part_no FROM message_parts WHERE device = ?1 AND device_msg_id = ?2
                         ORDER BY message_id DESC LIMIT 1",
                    )
                    .and_then(|mut s| s.query_row(params![r.device, r.device_msg_id], |row| Ok((row.get(0)?, row.get(1)?))).optional())
                    .map_err(db_err)?;
                let Some((message_id, part_no)) = hit else {
                    out.push(ReceiptMatch::Unknown);
                    continue;
                };
                // A receipt is never dated before its part's submit (it may be read first).
                c.prepare_cached("UPDATE message_parts SET status = ?3, error_code = ?4, done_at = max(?5, coalesce(submitted_at, ?5))
                                  WHERE message_id = ?1 AND part_no = ?2")
                    .and_then(|mut s| s.execute(params![message_id, part_no, state, r.code, r.at]))
                    .map_err(db_err)?;
                // The common case, a one-part message: its part's receipt is the message's.
                let st = if r.delivered { Status::Delivered } else { Status::Undelivered };
                let error = (!r.delivered).then(|| undelivered_error(r.code.as_deref()));
                let code = r.code.as_ref().filter(|_| !r.delivered);
                let single = set_status(
                    c,
                    status_update!(
                        "UPDATE messages SET status = ?2, done_at = max(?3, coalesce(sent_at, ?3)), error_code = coalesce(?4, error_code),
                           error = coalesce(?5, error)
                         WHERE id = ?1 AND status = 'sent' AND segments = 1"
                    ),
                    params![message_id, st.as_str(), r.at, code, error],
                    message_id,
                    false,
                )
                .map_err(db_err)?;
                if single {
                    out.push(ReceiptMatch::Part { message_id, status: Some(st) });
                    continue;
                }
                let (segments, delivered, undelivered): (i64, i64, i64) = c
                    .prepare_cached(
                        "SELECT m.segments,
                                coalesce(sum(p.status = 'delivered'), 0),
                                coalesce(sum(p.status = 'undelivered'), 0)
                         FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id
                         WHERE m.id = ?1 GROUP BY m.id",
                    )
                    .and_then(|mut s| s.query_row([message_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))))
                    .map_err(db_err)?;
                let mut changed = None;
                if let Some(st) = status_from_parts(segments, delivered, undelivered) {
                    let error = (st == Status::Undelivered).then(|| undelivered_error(r.code.as_deref()));
                    let applied = set_status(
                        c,
                        status_update!(
                            "UPDATE messages SET status = ?2, done_at = max(?3, coalesce(sent_at, ?3)), error_code = coalesce(?4, error_code),
                               error = coalesce(?5, error)
                             WHERE id = ?1 AND status = 'sent'"
                        ),
                        params![message_id, st.as_str(), r.at, code, error],
                        message_id,
                        false,
                    )
                    .map_err(db_err)?;
                    if applied {
                        changed = Some(st);
                    }
                }
                out.push(ReceiptMatch::Part { message_id, status: changed });
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn unreceipted_parts(
        &self,
        device: String,
        after: Id,
        limit: usize,
    ) -> Result<Vec<(Id, String)>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT p.message_id, p.device_msg_id FROM messages m JOIN message_parts p ON p.message_id = m.id
                 WHERE m.status = 'sent' AND m.id > ?2 AND p.device = ?1 AND p.status = 'sent'
                 ORDER BY m.id, p.part_no LIMIT ?3",
            )?;
            let rows = s.query_map(params![device, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn message_parts(&self, id: Id) -> Result<Vec<Part>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT part_no, device, device_msg_id, status, error_code, submitted_at, done_at
                 FROM message_parts WHERE message_id = ?1 ORDER BY part_no",
            )?;
            let rows = s.query_map([id], |r| {
                Ok(Part {
                    part_no: r.get(0)?,
                    device: r.get(1)?,
                    device_msg_id: r.get(2)?,
                    status: r.get(3)?,
                    error_code: r.get(4)?,
                    submitted_at: r.get(5)?,
                    done_at: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn queue_depth(&self) -> Result<Vec<(Status, i64)>> {
        self.read(|c| {
            let mut out = Vec::new();
            for st in [Status::Queued, Status::Scheduled, Status::Sending] {
                // Each count is answered from that status's partial index.
                let n: i64 = c.query_row(
                    &format!(
                        "SELECT count(*) FROM messages WHERE status = '{}'",
                        st.as_str()
                    ),
                    [],
                    |r| r.get(0),
                )?;
                out.push((st, n));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A role this version does not know is corruption, never a user with fewer rights by
    /// default; a driver's error keeps its cause.
    #[tokio::test]
    async fn unknown_stored_values_are_corruption_and_errors_keep_their_cause() {
        let dir = scratch_dir("corrupt");
        let db = Sqlite::open(&dir.join("t.db").to_string_lossy())
            .await
            .expect("open");
        // As a newer version (or a hand edit) might have left it: past the CHECK.
        db.write(|c| {
            c.execute_batch("PRAGMA ignore_check_constraints = ON")
                .map_err(db_err)?;
            let n = c
                .execute(
                    "INSERT INTO users (name, role, created_at) VALUES ('eve', 'superuser', 0)",
                    [],
                )
                .map_err(db_err);
            c.execute_batch("PRAGMA ignore_check_constraints = OFF")
                .map_err(db_err)?;
            n
        })
        .await
        .expect("insert");
        let e = db.user_by_name("eve".into()).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("superuser")),
            "{e:?}"
        );
        let e = db
            .read(|c| c.execute("SELECT * FROM no_such_table", []))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
        assert!(e.to_string().contains("no_such_table"), "{e}");
        let source = std::error::Error::source(&e).expect("the driver's error is kept");
        assert!(
            source.downcast_ref::<rusqlite::Error>().is_some(),
            "{source:?}"
        );
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A call that fails after writing, in the same transaction as calls that succeed: its
    /// writes are undone, theirs are committed, and each caller gets its own answer.
    #[tokio::test]
    async fn a_failing_call_leaves_the_rest_of_its_batch_intact() {
        let dir = scratch_dir("batch");
        let db = Sqlite::open(&dir.join("t.db").to_string_lossy())
            .await
            .expect("open");
        let insert = |name: &'static str, fail: bool| {
            db.write(move |c| {
                c.execute(
                    "INSERT INTO users (name, role, created_at) VALUES (?1, 'user', 0)",
                    [name],
                )
                .map_err(db_err)?;
                if fail {
                    return Err(StoreError::Conflict(format!("{name} refused")));
                }
                Ok(name)
            })
        };
        // The first call holds the writer so that the next three are queued as one batch.
        let hold = db.write(|_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            Ok("held")
        });
        let (held, a, b, c) = tokio::join!(
            hold,
            async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                insert("a", false).await
            },
            async {
                tokio::time::sleep(std::time::Duration::from_millis(60)).await;
                insert("b", true).await
            },
            async {
                tokio::time::sleep(std::time::Duration::from_millis(70)).await;
                insert("c", false).await
            },
        );
        assert_eq!(held.expect("held"), "held");
        assert_eq!(a.expect("a"), "a");
        assert!(matches!(b, Err(StoreError::Conflict(m)) if m == "b refused"));
        assert_eq!(c.expect("c"), "c");
        for (name, present) in [("a", true), ("b", false), ("c", true)] {
            let found = db.user_by_name(name.into()).await.expect("read");
            assert_eq!(found.is_some(), present, "user {name}");
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The log is preallocated to its full size, and a crash image of it (frames, then the
    /// zeros that follow them) recovers every commit: the zeros are not read as frames.
    #[tokio::test]
    async fn the_write_ahead_log_is_preallocated_and_recovers_past_its_zeros() {
        let dir = scratch_dir("wal");
        let path = dir.join("t.db");
        let db = Sqlite::open(&path.to_string_lossy()).await.expect("open");
        db.preallocate_log().await;
        let wal_len = std::fs::metadata(wal_path(&path))
            .map(|m| m.len())
            .unwrap_or(0);
        // 4,000 frames between checkpoints, a quarter more room, 4,096 + 24 bytes a frame.
        assert_eq!(wal_len, 32 + 5000 * 4120);
        for name in ["a", "b", "c"] {
            db.write(move |c| {
                c.execute(
                    "INSERT INTO users (name, role, created_at) VALUES (?1, 'user', 0)",
                    [name],
                )
                .map_err(db_err)
            })
            .await
            .expect("insert");
        }
        // What a killed process leaves: the database and its log as they are, no -shm.
        let crashed = dir.join("crashed");
        std::fs::create_dir_all(&crashed).expect("mkdir");
        for suffix in ["", "-wal"] {
            std::fs::copy(
                dir.join(format!("t.db{suffix}")),
                crashed.join(format!("t.db{suffix}")),
            )
            .expect("copy");
        }
        db.close().await;
        let copy = crashed.join("t.db");
        let reopened = Sqlite::open(&copy.to_string_lossy()).await.expect("reopen");
        for name in ["a", "b", "c"] {
            let found = reopened.user_by_name(name.into()).await.expect("read");
            assert!(
                found.is_some(),
                "user {name} was committed before the crash"
            );
        }
        reopened.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Where [`Sqlite::write_here`] commits: on the caller's own thread when the writer is
    /// idle; on the writer when it is busy, or when the runtime has no other worker to go on
    /// serving while the caller waits for the disk. Either way the row is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_lets_the_caller_commit_and_a_busy_one_queues_it() {
        let dir = scratch_dir("here");
        let db = Sqlite::open(&dir.join("t.db").to_string_lossy())
            .await
            .expect("open");
        let insert = |name: &'static str| {
            db.write_here(true, move |c| {
                c.execute(
                    "INSERT INTO users (name, role, created_at) VALUES (?1, 'user', 0)",
                    [name],
                )
                .map_err(db_err)?;
                Ok(std::thread::current().name().map(str::to_string))
            })
        };
        let idle = insert("idle").await.expect("idle");
        assert_ne!(
            idle.as_deref(),
            Some("sqlite-writer"),
            "committed by the caller"
        );

        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = started.clone();
        let hold = db.write(move |_| {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
            Ok(())
        });
        let (held, busy) = tokio::join!(hold, async {
            while !started.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            insert("busy").await
        });
        held.expect("held");
        assert_eq!(busy.expect("busy").as_deref(), Some("sqlite-writer"));
        for name in ["idle", "busy"] {
            let found = db.user_by_name(name.into()).await.expect("read");
            assert!(found.is_some(), "user {name}");
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_worker_never_commits_itself() {
        let dir = scratch_dir("lone");
        let db = Sqlite::open(&dir.join("t.db").to_string_lossy())
            .await
            .expect("open");
        let on = db
            .write_here(true, |_| {
                Ok(std::thread::current().name().map(str::to_string))
            })
            .await
            .expect("write");
        assert_eq!(on.as_deref(), Some("sqlite-writer"));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Migration 6 rebuilds the inbound table: a database made by an older textgate keeps
    /// its texts, their ids and who they were for, and a dedup key is still refused twice.
    #[tokio::test]
    async fn an_older_database_keeps_its_inbound_texts_through_the_rebuild() {
        let dir = scratch_dir("v5");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.db");
        {
            let c = open_conn(&path, false).expect("open");
            migrate(&c, &MIGRATIONS[..5]).expect("version 5");
            c.execute_batch(
                "INSERT INTO users (id, name, role, created_at) VALUES (1, 'ann', 'user', 0);
                 INSERT INTO inbound (id, device, sender, recipient, body, encoding, dedup_key, received_at)
                 VALUES (7, 'lb', '+15550000001', '+15550000000', 'keyed', 'gsm7', 'lb:k', 1),
                        (9, 'lb', '+15550000002', '+15550000000', 'plain', 'gsm7', NULL, 2);
                 INSERT INTO inbound_designations (user_id, inbound_id) VALUES (1, 9);",
            )
            .expect("version 5 rows");
        }
        let db = Sqlite::open(&path.to_string_lossy())
            .await
            .expect("migrate");
        let index: String = db
            .read(|c| {
                c.query_row(
                    "SELECT sql FROM sqlite_master WHERE name = 'inbound_dedup_key'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .expect("the new index");
        assert!(index.ends_with("WHERE dedup_key IS NOT NULL"), "{index}");
        let keyed = db
            .get_inbound(7, None)
            .await
            .expect("read")
            .expect("7 kept");
        assert_eq!(
            (keyed.body.as_str(), keyed.from.as_str()),
            ("keyed", "+15550000001")
        );
        let plain = db
            .get_inbound(9, Some(1))
            .await
            .expect("read")
            .expect("9 kept");
        assert_eq!(plain.body, "plain", "still in ann's inbox");
        let text = |key: Option<&str>| NewInbound {
            device: "lb".into(),
            dedup_key: key.map(str::to_string),
            from: "+15550000003".into(),
            to: "+15550000000".into(),
            body: "again".into(),
            encoding: "gsm7".into(),
            parts: 1,
            partial: false,
            received_at: 3,
            routing: Default::default(),
        };
        let stored = db
            .insert_inbound(vec![text(Some("lb:k")), text(None), text(None)])
            .await
            .expect("insert");
        assert_eq!(
            stored,
            vec![
                InboundStored::Duplicate,
                InboundStored::New(10),
                InboundStored::New(11)
            ]
        );
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A folder of its own for one test's database.
    fn scratch_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "tg-sqlite-{tag}-{}-{}",
            std::process::id(),
            now_nanos()
        ))
    }

    fn now_nanos() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }
}
