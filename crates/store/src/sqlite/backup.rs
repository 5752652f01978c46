//! `textgate backup` and `textgate restore` of a SQLite store (docs/backup.md).
//!
//! [`backup`] copies the store's pages with SQLite's online backup, inside one read
//! transaction on the store: the copy is the store as it was when that transaction began,
//! whatever the server commits meanwhile. The store is in WAL mode, where a reader never
//! blocks the writer, so sends go on at their pace during the copy; what the server commits
//! meanwhile waits in the write-ahead log, which cannot be checkpointed past the backup's
//! snapshot and so grows until the backup ends. (Without the one transaction, each step would
//! see the server's latest commit, and SQLite starts a backup over when the store changes
//! between its steps: under steady sends it would never finish.)
//!
//! Why the online backup and not `VACUUM INTO`: both copy one snapshot without blocking the
//! writer, but `VACUUM INTO` rebuilds every table and index row by row, which costs the CPU the
//! server's sends need, and gives no measure of how far it is. The backup copies pages as they
//! are, a step of [`PAGES_PER_STEP`] at a time, and says after each step how many are left.
//!
//! Both commands write beside their target first (`FILE.partial`, `textgate.db.restoring`),
//! check what they wrote (`PRAGMA quick_check`, the schema version, the messages), fsync it,
//! and only then rename it into place: a copy cut short by a crash or a full disk never looks
//! finished. A restore keeps the store it replaces as `textgate.db.before-restore-TIME`, and
//! refuses while any textgate process has the store open (see [`super::lock`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{lock, SCHEMA};

/// Pages a backup step copies: 4 MiB at SQLite's 4 KiB page, which takes some tens of
/// milliseconds, so the progress moves often without the steps' overhead showing.
const PAGES_PER_STEP: i32 = 1024;

/// What went wrong in a backup or a restore; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store to back up does not exist.
    #[error("there is no store at {}: check [server] database_url in the config (a relative path is relative to the working directory)", .0.display())]
    NoStore(PathBuf),
    /// The backup's file exists already.
    #[error("{} exists already: name another file, or add --force to replace it", .0.display())]
    Exists(PathBuf),
    /// The file named is the store itself.
    #[error("{} is the store itself: name a file elsewhere", .0.display())]
    IsTheStore(PathBuf),
    /// A restore was asked for while a process has the store open.
    #[error("the store {} is open in another textgate process ({} is locked): stop `textgate serve` (and any backup or admin command on it), then run the restore again", .db.display(), .lock.display())]
    InUse {
        /// The store.
        db: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A backup was asked for while the store is being restored.
    #[error("the store {} is being restored ({} is locked): run the backup once the restore has finished", .db.display(), .lock.display())]
    Restoring {
        /// The store.
        db: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The file is not a SQLite database at all.
    #[error("{} is not a SQLite database: name a file made by `textgate backup`", .0.display())]
    NotSqlite(PathBuf),
    /// A SQLite database, but not textgate's.
    #[error("{} is a SQLite database but not a textgate store (it has no schema_migrations and messages tables): name a file made by `textgate backup`", .0.display())]
    NotTextgate(PathBuf),
    /// A store of a schema newer than this build's.
    #[error("{} was made by a newer textgate (schema version {found}; this textgate knows versions up to {known}): restore it with that textgate or a newer one", .path.display())]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows ([`SCHEMA`]).
        known: i64,
    },
    /// SQLite's check found damage.
    #[error("{what} failed SQLite's check ({report}): {advice}")]
    Damaged {
        /// What was checked.
        what: String,
        /// The first lines of `PRAGMA quick_check`.
        report: String,
        /// What to do.
        advice: String,
    },
    /// A file could not be read, written or moved.
    #[error("{what} {}", .path.display())]
    Io {
        /// What was being done, e.g. "cannot write".
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("{what} {}", .path.display())]
    Sqlite {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

type Result<T> = std::result::Result<T, BackupError>;

/// What a backup or a restore wrote, as read back from the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Its schema version.
    pub schema: i64,
    /// The messages in it.
    pub messages: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// How far a backup is, in bytes of the store's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Copied so far.
    pub done: u64,
    /// In all.
    pub total: u64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The store now in place.
    pub copied: Copied,
    /// Where the store it replaced went (its file, and its write-ahead log if it had one);
    /// empty when there was none.
    pub kept: Vec<PathBuf>,
}

/// Copies the store at `db` to `to` while servers go on using it; `progress` hears after each
/// step. Refuses to replace an existing `to` unless `replace`.
pub fn backup(
    db: &Path,
    to: &Path,
    replace: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    if !db.is_file() {
        return Err(BackupError::NoStore(db.into()));
    }
    if same_file(db, to) {
        return Err(BackupError::IsTheStore(to.into()));
    }
    if !replace && to.exists() {
        return Err(BackupError::Exists(to.into()));
    }
    // Held to the end, so that no restore replaces the store under the copy.
    let _open = lock::shared(db).map_err(|r| {
        lock_refused(r, |lock| BackupError::Restoring {
            db: db.into(),
            lock,
        })
    })?;
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("cannot open", db))?;
    // The read transaction begins at the first read, in `is_textgate`: from there on, every
    // step copies that instant's pages.
    src.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON; BEGIN")
        .map_err(sqlite("cannot read", db))?;
    is_textgate(&src, db)?;
    let partial = with_suffix(to, ".partial");
    remove_with_sidecars(&partial);
    let copied = copy_pages(&src, &partial, progress);
    // Ends the read transaction: the server's log can be checkpointed again.
    drop(src);
    let advice = format!(
        "the store itself may be damaged: stop the server and run `sqlite3 {} 'PRAGMA integrity_check'`",
        db.display()
    );
    let copied =
        copied.and_then(|()| check(&partial, &format!("the copy of {}", db.display()), &advice));
    let done = copied.and_then(|copied| {
        sync_file(&partial)?;
        // Asked again: the file may have appeared during the copy.
        if !replace && to.exists() {
            return Err(BackupError::Exists(to.into()));
        }
        rename(&partial, to)?;
        sync_dir(to)?;
        Ok(copied)
    });
    if done.is_err() {
        remove_with_sidecars(&partial);
    }
    done
}

/// Puts the backup `from` in place of the store at `db`, keeping the store it replaces.
/// Refuses while any textgate process has the store open, and refuses a file that is not a
/// textgate store or is of a newer schema than this build's. `from` itself is only read.
pub fn restore(from: &Path, db: &Path) -> Result<Restored> {
    if !is_sqlite_file(from)? {
        return Err(BackupError::NotSqlite(from.into()));
    }
    if same_file(from, db) {
        return Err(BackupError::IsTheStore(from.into()));
    }
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("cannot create the folder", dir))?;
    }
    let _alone = lock::exclusive(db).map_err(|r| {
        lock_refused(r, |lock| BackupError::InUse {
            db: db.into(),
            lock,
        })
    })?;
    let restoring = with_suffix(db, ".restoring");
    remove_with_sidecars(&restoring);
    let done = (|| {
        std::fs::copy(from, &restoring).map_err(io("cannot copy", from))?;
        // A file with its log beside it (a store copied whole, rather than a backup): the
        // log holds commits the file does not, and checking the copy folds them in.
        let from_wal = with_suffix(from, "-wal");
        if from_wal.is_file() {
            std::fs::copy(&from_wal, with_suffix(&restoring, "-wal"))
                .map_err(io("cannot copy", &from_wal))?;
        }
        let copied = check(
            &restoring,
            &from.display().to_string(),
            "restore another backup",
        )
        .map_err(|e| match e {
            BackupError::NotSqlite(_) => BackupError::NotSqlite(from.into()),
            BackupError::NotTextgate(_) => BackupError::NotTextgate(from.into()),
            e => e,
        })?;
        if copied.schema > SCHEMA {
            return Err(BackupError::Newer {
                path: from.into(),
                found: copied.schema,
                known: SCHEMA,
            });
        }
        sync_file(&restoring)?;
        let kept = keep_replaced(db)?;
        rename(&restoring, db)?;
        sync_dir(db)?;
        Ok(Restored { copied, kept })
    })();
    if done.is_err() {
        remove_with_sidecars(&restoring);
    }
    done
}

/// Copies every page of `src` (in its read transaction) into a new database at `to`.
fn copy_pages(src: &Connection, to: &Path, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let mut dst = Connection::open(to).map_err(sqlite("cannot create", to))?;
    // A copy that fails is deleted, so it needs no journal, and SQLite need not sync it: it is
    // synced here after each step instead. The server's commits fsync on the same disk, and
    // one sync of a whole copy at the end held them up: with a 575 MiB store and 4 clients
    // sending (debug build, this 2-core machine), sends during the backup had a p99 of 50 to
    // 95 ms and stalls of up to 280 ms; synced a step at a time, a p99 of 20 ms and at most
    // 28 ms (14 and 21 ms without a backup).
    dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
        .map_err(sqlite("cannot write", to))?;
    let page_size: i64 = src
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(sqlite("cannot read", to))?;
    let page_size = page_size.max(0) as u64;
    let written = std::fs::File::open(to).map_err(io("cannot open", to))?;
    {
        let backup = Backup::new(src, &mut dst).map_err(sqlite("cannot start copying to", to))?;
        let mut waits = 0;
        loop {
            let step = backup
                .step(PAGES_PER_STEP)
                .map_err(sqlite("cannot copy to", to))?;
            let p = backup.progress();
            let (total, left) = (p.pagecount.max(0) as u64, p.remaining.max(0) as u64);
            progress(Progress {
                done: (total - left.min(total)) * page_size,
                total: total * page_size,
            });
            match step {
                StepResult::Done => break,
                StepResult::More => {
                    waits = 0;
                    written.sync_data().map_err(io("cannot sync", to))?;
                }
                // Busy or locked. Neither should happen (the store is read in our own
                // transaction, the copy is ours alone); give anything else a while to let go.
                _ => {
                    waits += 1;
                    if waits > 1000 {
                        return Err(BackupError::Io {
                            what: "cannot copy to",
                            path: to.into(),
                            source: std::io::Error::other("SQLite stayed busy for 10 seconds"),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    dst.close().map_err(|(_, e)| BackupError::Sqlite {
        what: "cannot finish",
        path: to.into(),
        source: e,
    })
}

/// Checks a copy and reads what it holds. It becomes one self-contained file on the way: its
/// header says WAL, like the store's, and a copied log is folded in; in rollback mode it is one
/// file that `sqlite3` or a restore reads with nothing beside it (a server sets WAL again when
/// it opens it). `what` names the copy in errors; `advice` says what to do if it is damaged.
fn check(path: &Path, what: &str, advice: &str) -> Result<Copied> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("cannot open", path))?;
    c.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(|e| not_a_database(e, path).unwrap_or_else(|e| sqlite("cannot write", path)(e)))?;
    // quick_check and not integrity_check: what a copy can get wrong is a page torn or
    // missing, which quick_check finds in one pass; integrity_check also matches every index
    // against its table, which takes far longer on a large store and finds nothing a page
    // copy could have caused.
    let report = {
        let mut st = c
            .prepare("PRAGMA quick_check(5)")
            .map_err(sqlite("cannot check", path))?;
        st.query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sqlite("cannot check", path))?
    };
    if report != ["ok"] {
        return Err(BackupError::Damaged {
            what: what.into(),
            report: report.join("; "),
            advice: advice.into(),
        });
    }
    let schema = is_textgate(&c, path)?;
    let messages: i64 = c
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .map_err(sqlite("cannot count the messages in", path))?;
    c.close().map_err(|(_, e)| BackupError::Sqlite {
        what: "cannot close",
        path: path.into(),
        source: e,
    })?;
    let bytes = std::fs::metadata(path)
        .map_err(io("cannot read", path))?
        .len();
    Ok(Copied {
        schema,
        messages,
        bytes,
    })
}

/// The schema version of a textgate store; [`BackupError::NotTextgate`] for any other
/// database.
fn is_textgate(c: &Connection, path: &Path) -> Result<i64> {
    let tables: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('schema_migrations', 'messages')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_a_database(e, path).unwrap_or_else(|e| sqlite("cannot read", path)(e)))?;
    if tables != 2 {
        return Err(BackupError::NotTextgate(path.into()));
    }
    let version: Option<i64> = c
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(sqlite("cannot read the schema version of", path))?;
    version.ok_or_else(|| BackupError::NotTextgate(path.into()))
}

/// SQLite's "file is not a database" as [`BackupError::NotSqlite`]; any other error back.
fn not_a_database(
    e: rusqlite::Error,
    path: &Path,
) -> std::result::Result<BackupError, rusqlite::Error> {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase => {
            Ok(BackupError::NotSqlite(path.into()))
        }
        _ => Err(e),
    }
}

/// Whether the file starts as every SQLite database does ("SQLite format 3", SQLite's file
/// format §1.3.1).
fn is_sqlite_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(io("cannot read", path))?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == b"SQLite format 3\0"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(BackupError::Io {
            what: "cannot read",
            path: path.into(),
            source: e,
        }),
    }
}

/// Moves the store at `db` aside as `db.before-restore-TIME`, with its log under the name
/// SQLite looks for beside it; its `-shm` is only an index of the log, rebuilt on open, and is
/// removed. Returns where the files went.
fn keep_replaced(db: &Path) -> Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    if db.exists() {
        let stamp: String =
            textgate_core::clock::format_rfc3339(textgate_core::clock::now_ms() / 1000 * 1000)
                .chars()
                .filter(|c| !matches!(c, '-' | ':'))
                .collect();
        let mut aside = with_suffix(db, &format!(".before-restore-{stamp}"));
        let mut n = 1;
        while aside.exists() {
            n += 1;
            aside = with_suffix(db, &format!(".before-restore-{stamp}-{n}"));
        }
        for side in ["-wal", "-journal"] {
            let from = with_suffix(db, side);
            if from.exists() {
                let to = with_suffix(&aside, side);
                rename(&from, &to)?;
                kept.push(to);
            }
        }
        rename(db, &aside)?;
        kept.insert(0, aside);
    }
    let shm = with_suffix(db, "-shm");
    if shm.exists() {
        std::fs::remove_file(&shm).map_err(io("cannot remove", &shm))?;
    }
    Ok(kept)
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a file this module made and SQLite's files beside it, if there are any.
fn remove_with_sidecars(path: &Path) {
    for side in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, side));
    }
}

/// Whether `a` and `b` are one file (by device and inode; false if either is missing).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync", path))
}

/// Syncs the folder of `path`, so that a rename into it survives a crash.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync the folder", dir))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| BackupError::Io {
        what: "cannot move into place",
        path: to.into(),
        source,
    })
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

fn sqlite(what: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Sqlite { what, path, source }
}

/// A lock not taken: `busy` names who holds it; an I/O error is one.
fn lock_refused(r: lock::Refused, busy: impl FnOnce(PathBuf) -> BackupError) -> BackupError {
    match r {
        lock::Refused::Busy(lock) => busy(lock),
        lock::Refused::Io(path, source) => BackupError::Io {
            what: "cannot lock",
            path,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{open_conn, Sqlite};

    fn users(path: &Path, like: &str) -> i64 {
        let c = Connection::open(path).expect("open");
        c.query_row(
            "SELECT count(*) FROM users WHERE name LIKE ?1",
            [like],
            |r| r.get(0),
        )
        .expect("count")
    }

    /// A backup taken while another connection commits between every one of its steps is the
    /// store as it was when the backup began: it finishes (SQLite does not start it over), it
    /// has nothing committed during the copy, and the store has all of it. Then the backup
    /// is restored in place of the store, which is kept aside.
    #[tokio::test]
    async fn a_backup_is_the_store_at_one_instant_while_writes_go_on() {
        let dir = scratch_dir("instant");
        let db = dir.join("t.db");
        let store = Sqlite::open(&db.to_string_lossy()).await.expect("open");
        let w = open_conn(&db, false).expect("a writer of the test's own");
        // Enough pages for several steps.
        w.execute_batch(
            "CREATE TABLE filler (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
             INSERT INTO filler SELECT zeroblob(1000000) FROM n;
             INSERT INTO users (name, role, created_at) VALUES ('before', 'user', 0);",
        )
        .expect("fill");
        let to = dir.join("copy.db");
        let mut seen = Vec::new();
        let copied = backup(&db, &to, false, &mut |p| {
            seen.push(p);
            w.execute(
                "INSERT INTO users (name, role, created_at) VALUES (?1, 'user', 0)",
                [format!("during-{}", seen.len())],
            )
            .expect("a commit during the copy");
        })
        .expect("backup");
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].done <= w[1].done), "{seen:?}");
        let last = seen.last().expect("progress");
        assert_eq!(last.done, last.total);
        assert_eq!(copied.schema, crate::sqlite::SCHEMA);
        assert_eq!(copied.messages, 0);
        assert_eq!(users(&to, "before"), 1);
        assert_eq!(
            users(&to, "during-%"),
            0,
            "nothing committed after it began"
        );
        assert_eq!(users(&db, "during-%"), seen.len() as i64);
        assert!(!with_suffix(&to, ".partial").exists());
        for side in ["-wal", "-shm", "-journal"] {
            assert!(!with_suffix(&to, side).exists(), "one file, no {side}");
        }

        let again = backup(&db, &to, false, &mut |_| {});
        assert!(matches!(again, Err(BackupError::Exists(p)) if p == to));
        backup(&db, &to, true, &mut |_| {}).expect("--force replaces it");
        assert_eq!(users(&to, "during-%"), seen.len() as i64);

        // The store is open: a restore is refused and changes nothing.
        let refused = restore(&to, &db);
        assert!(
            matches!(&refused, Err(BackupError::InUse { db: d, .. }) if *d == db),
            "{refused:?}"
        );
        store.close().await;
        drop(store);
        drop(w);

        let old = dir.join("old.db");
        backup(&db, &old, false, &mut |_| {}).expect("the store as it is");
        let restored = restore(&dir.join("copy.db"), &db).expect("restore");
        assert_eq!(restored.copied.schema, crate::sqlite::SCHEMA);
        assert_eq!(restored.kept.len(), 1, "{:?}", restored.kept);
        let kept = &restored.kept[0];
        assert!(kept.to_string_lossy().contains("t.db.before-restore-"));
        assert_eq!(users(kept, "during-%"), seen.len() as i64, "kept whole");
        assert_eq!(users(&db, "during-%"), seen.len() as i64);
        restore(&old, &db).expect("restore again");
        assert!(!with_suffix(&db, "-shm").exists());
        let reopened = Sqlite::open(&db.to_string_lossy()).await.expect("open");
        reopened.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Files that are not a textgate store of a version this build knows are refused with
    /// the reason, and the store is left as it was.
    #[test]
    fn a_restore_refuses_what_is_not_a_store_it_knows() {
        let dir = scratch_dir("refuse");
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("data").join("t.db");

        let text = dir.join("notes.txt");
        std::fs::write(&text, "not a database, but long enough to have a header").expect("w");
        let e = restore(&text, &db).unwrap_err();
        assert!(
            matches!(&e, BackupError::NotSqlite(p) if *p == text),
            "{e:?}"
        );
        assert!(e.to_string().contains("textgate backup"), "{e}");

        let other = dir.join("other.db");
        Connection::open(&other)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("another database");
        let e = restore(&other, &db).unwrap_err();
        assert!(
            matches!(&e, BackupError::NotTextgate(p) if *p == other),
            "{e:?}"
        );

        let newer = dir.join("newer.db");
        {
            let c = Connection::open(&newer).expect("open");
            super::super::migrate(&c, super::super::MIGRATIONS).expect("migrate");
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                [SCHEMA + 1],
            )
            .expect("a newer version");
        }
        let e = restore(&newer, &db).unwrap_err();
        assert!(
            matches!(&e, BackupError::Newer { found, known, .. } if *found == SCHEMA + 1 && *known == SCHEMA),
            "{e:?}"
        );
        assert!(!db.exists(), "nothing put in place");
        assert!(
            !with_suffix(&db, ".restoring").exists(),
            "nothing left behind"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "tg-backup-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ))
    }
}
