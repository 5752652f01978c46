//! Who has a SQLite store open. Every textgate process that opens one (`serve`, the admin
//! commands, `backup`) holds a shared lock on `<database>-lock` beside it for as long as it
//! does; `textgate restore` takes the same lock alone, so it never replaces a store under a
//! running server, and nothing opens a store while it is being replaced.
//!
//! The lock is `flock(2)` (through std's [`File::try_lock`]): the kernel drops it when the
//! process ends however it ends, so a server killed with `kill -9` leaves no stale lock for an
//! administrator to delete, as a pid file would. Shared rather than exclusive for `serve`, so
//! that taking it changes nothing for what already opens a store beside a server (`textgate
//! user add` while it runs).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// A lock on a store, released when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Another process holds it in a way that excludes ours.
    Busy(PathBuf),
    /// The lock file could not be made or locked.
    Io(PathBuf, std::io::Error),
}

/// The lock file of the store at `db`: `textgate.db` has `textgate.db-lock`, named like
/// SQLite's `-wal` and `-shm` so that it sorts beside them.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

/// Takes the shared lock of an open store; refused while a restore holds it alone.
pub(crate) fn shared(db: &Path) -> Result<Held, Refused> {
    take(db, false)
}

/// Takes the lock alone, as a restore does; refused while anything has the store open.
pub(crate) fn exclusive(db: &Path) -> Result<Held, Refused> {
    take(db, true)
}

fn take(db: &Path, alone: bool) -> Result<Held, Refused> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Refused::Io(path.clone(), e))?;
    // Never waits: a server should not hang at start behind a restore, nor a restore behind a
    // server; each says what holds it instead.
    let taken = if alone {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(Held { _file: file }),
        Err(TryLockError::WouldBlock) => Err(Refused::Busy(path)),
        Err(TryLockError::Error(e)) => Err(Refused::Io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared locks go together; the exclusive one waits for all of them to go, and keeps
    /// shared ones out while it is held. (flock locks belong to the open file, so two opens in
    /// one process stand for two processes.)
    #[test]
    fn a_restore_excludes_every_opener_and_openers_exclude_a_restore() {
        let dir = std::env::temp_dir().join(format!("tg-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("t.db");
        let a = shared(&db).expect("first opener");
        let b = shared(&db).expect("a second opener beside it");
        assert!(matches!(exclusive(&db), Err(Refused::Busy(p)) if p == lock_path(&db)));
        drop(a);
        assert!(matches!(exclusive(&db), Err(Refused::Busy(_))));
        drop(b);
        let r = exclusive(&db).expect("nothing has it open");
        assert!(matches!(shared(&db), Err(Refused::Busy(_))));
        drop(r);
        shared(&db).expect("open again once the restore is done");
        let _ = std::fs::remove_dir_all(dir);
    }
}
