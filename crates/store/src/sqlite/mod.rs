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

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, StoreError};

pub mod backup;
mod exec;
mod lock;
mod writer;

pub(crate) use exec::{now, Lite};
use writer::{another_worker, writer_loop, Call, Write, Writer};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_inbound.sql")),
    (3, include_str!("../migrations/sqlite/0003_jobs.sql")),
    (4, include_str!("../migrations/sqlite/0004_email.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_status_events.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_inbound_dedup.sql"),
    ),
    (7, include_str!("../migrations/sqlite/0007_key_use.sql")),
    (8, include_str!("../migrations/sqlite/0008_web.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_senders_attempts.sql"),
    ),
    (10, include_str!("../migrations/sqlite/0010_nodes.sql")),
    (
        11,
        include_str!("../migrations/sqlite/0011_inbound_seen.sql"),
    ),
    (12, include_str!("../migrations/sqlite/0012_audit.sql")),
    (13, include_str!("../migrations/sqlite/0013_quotas.sql")),
];

/// How a write is committed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Commit {
    /// On the writer, fsynced before the answer: what the outside world is told was accepted.
    Durable,
    /// On the writer, not fsynced: the dispatcher's own bookkeeping (see [`Write`]).
    Lazy,
    /// Durable, committed by the calling thread itself when the writer is idle (see
    /// [`Sqlite::write_here`]).
    DurableHere,
}

/// The SQLite store.
#[derive(Clone)]
pub struct Sqlite {
    writes: mpsc::Sender<Write>,
    writer_conn: Arc<Mutex<Writer>>,
    readers: Arc<Readers>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// The shared lock that keeps `textgate restore` from replacing the file while this store
    /// is open (see [`lock`]); released with the last clone.
    _in_use: Arc<lock::Held>,
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

/// For a row mapper: a stored value this version cannot read, reported
fn open_conn(path: &Path, reader: bool) -> Result<Connection> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        url: format!("sqlite://{}", path.display()),
        reason: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on disk before any
    // caller hears "accepted", which is the promise of docs/architecture.md. Foreign keys are
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

/// The schema version this build migrates SQLite stores to: its last migration.
pub const SCHEMA: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies the migrations the store has not had yet. A store some newer build has migrated
/// past [`SCHEMA`] is refused: this build would write rows that build does not expect.
fn migrate(conn: &Connection, migrations: &[(i64, &str)]) -> std::result::Result<(), String> {
    let e = |e: rusqlite::Error| format!("migration failed: {e}");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(e)?;
    let at: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(e)?;
    crate::refuse_newer(at.unwrap_or(0), SCHEMA)?;
    migrate_to(conn, migrations).map_err(e)
}

fn migrate_to(conn: &Connection, migrations: &[(i64, &str)]) -> rusqlite::Result<()> {
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

/// A connection to the database file at `path`, migrated to `version` only: a database as a
/// build of that version left it (the upgrade tests fill it and open it with this build).
#[cfg(test)]
pub(crate) fn create_at(path: &Path, version: i64) -> Result<Connection> {
    let conn = open_conn(path, false)?;
    migrate(&conn, &MIGRATIONS[..version as usize]).map_err(StoreError::backend)?;
    Ok(conn)
}

/// The schema version of the database file at `path` without migrating it (or creating
/// it); `None` when there is no such file or textgate has never opened it.
pub(crate) fn schema_of(path: &str) -> Result<Option<i64>> {
    let path = Path::new(path);
    if !path.exists() {
        return Ok(None);
    }
    let err = |e: rusqlite::Error| StoreError::Open {
        url: format!("sqlite://{}", path.display()),
        reason: e.to_string(),
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !exists {
        return Ok(None);
    }
    conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })
    .map_err(err)
}

impl Sqlite {
    /// Opens or creates the database file (and its folder), and migrates it.
    pub async fn open(path: &str) -> Result<Sqlite> {
        let path = PathBuf::from(path);
        let p = path.clone();
        let (conn, in_use) = tokio::task::spawn_blocking(move || -> Result<_> {
            let refused = |reason: String| StoreError::Open {
                url: format!("sqlite://{}", p.display()),
                reason,
            };
            if let Some(dir) = p.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        refused(format!("cannot create the folder {}: {e}", dir.display()))
                    })?;
                }
            }
            let in_use = lock::shared(&p).map_err(|r| {
                refused(match r {
                    lock::Refused::Busy(lock) => format!(
                        "it is being restored (`textgate restore` holds {}); start again once the restore has finished",
                        lock.display()
                    ),
                    lock::Refused::Io(lock, e) => format!("cannot lock {}: {e}", lock.display()),
                })
            })?;
            let conn = open_conn(&p, false)?;
            migrate(&conn, MIGRATIONS).map_err(refused)?;
            Ok((conn, in_use))
        })
        .await
        .map_err(|e| StoreError::Backend(crate::Cause::new(e)))??;
        let (tx, rx) = mpsc::channel::<Write>();
        let writer_conn = Arc::new(Mutex::new(Writer { conn, synced: true }));
        let w = writer_conn.clone();
        let in_use = Arc::new(in_use);
        // The writer's connection outlives the last clone of the store by a moment: the lock
        // goes with it.
        let held = in_use.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                writer_loop(w, rx);
                drop(held);
            })
            .map_err(|e| StoreError::backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            writes: tx,
            writer_conn,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
            writer: Arc::new(Mutex::new(Some(handle))),
            _in_use: in_use,
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

    /// A write of the dispatcher's bookkeeping (see [`Write`]).
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
        let job = Write {
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
        self.writes.send(job).map_err(|_| StoreError::Closed)?;
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
        self.writes
            .send(Write { durable, work })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.read_op(move |conn| f(conn).map_err(db_err)).await
    }

    /// Runs a read on a reader connection (at most [`READERS`] at once).
    pub(crate) async fn read_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
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
            let r = f(&conn);
            readers.give_back(conn);
            r
        })
        .await
        .map_err(|e| StoreError::Backend(crate::Cause::new(e)))?
    }

    /// Runs a write as `commit` says.
    pub(crate) async fn write_op<T: Send + 'static>(
        &self,
        commit: Commit,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        match commit {
            Commit::Durable => self.submit(true, f).await,
            Commit::Lazy => self.submit(false, f).await,
            Commit::DurableHere => self.write_here(true, f).await,
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

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
        let e = user_named(&db, "eve").await.unwrap_err();
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
            let found = user_named(&db, name).await.expect("read");
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
            let found = user_named(&reopened, name).await.expect("read");
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
            let found = user_named(&db, name).await.expect("read");
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

    /// A database a newer build has migrated is refused, not written with rows that build
    /// does not expect; `schema_of` reads the version without migrating anything.
    #[tokio::test]
    async fn a_database_newer_than_this_build_is_refused() {
        let dir = scratch_dir("newer");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.db");
        let url = path.to_string_lossy().into_owned();
        assert_eq!(schema_of(&url).expect("no file"), None);
        {
            let c = open_conn(&path, false).expect("open");
            migrate(&c, &MIGRATIONS[..3]).expect("version 3");
        }
        assert_eq!(schema_of(&url).expect("read"), Some(3));
        Sqlite::open(&url).await.expect("migrate").close().await;
        assert_eq!(schema_of(&url).expect("read"), Some(SCHEMA));
        {
            let c = open_conn(&path, false).expect("open");
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                [SCHEMA + 1],
            )
            .expect("a newer build's migration");
        }
        let Err(e) = Sqlite::open(&url).await else {
            panic!("a newer database was opened");
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!("schema version {}", SCHEMA + 1)) && e.contains("newer"),
            "{e}"
        );
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
            .read_op(|c| now(crate::ops::inbound::get(&mut Lite(c), 7, None)))
            .await
            .expect("read")
            .expect("7 kept");
        assert_eq!(
            (keyed.body.as_str(), keyed.from.as_str()),
            ("keyed", "+15550000001")
        );
        let plain = db
            .read_op(|c| now(crate::ops::inbound::get(&mut Lite(c), 9, Some(1))))
            .await
            .expect("read")
            .expect("9 kept");
        assert_eq!(plain.body, "plain", "still in ann's inbox");
        let text = |key: Option<&str>| NewInbound {
            device: "lb".into(),
            dedup_key: key.map(str::to_string),
            same_within: None,
            from: "+15550000003".into(),
            to: "+15550000000".into(),
            body: "again".into(),
            encoding: "gsm7".into(),
            parts: 1,
            partial: false,
            received_at: 3,
            routing: Default::default(),
        };
        let texts = vec![text(Some("lb:k")), text(None), text(None)];
        let stored = db
            .write_op(Commit::Durable, move |c| {
                now(crate::ops::inbound::insert(&mut Lite(c), &texts))
            })
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

    async fn user_named(db: &Sqlite, name: &str) -> Result<Option<User>> {
        let name = name.to_string();
        db.read_op(move |c| now(crate::ops::users::by_name(&mut Lite(c), &name)))
            .await
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
