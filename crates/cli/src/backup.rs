//! `textgate backup FILE` and `textgate restore FILE` (docs/backup.md): a consistent copy of a
//! SQLite store taken while servers go on sending, and one put back while none runs. The
//! copying and checking is the store's ([`textgate_store::sqlite::backup`]); here are the
//! config, the progress and what is said. A PostgreSQL store is PostgreSQL's to copy, with
//! its own tools.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use textgate_core::config::{redact_url, Config};
use textgate_store::sqlite::backup::{self as copy, Progress};
use textgate_store::sqlite::SCHEMA;

/// `textgate backup FILE [--force]`.
pub fn backup(cfg: &Config, file: &Path, force: bool) -> anyhow::Result<()> {
    let db = sqlite_path(
        cfg,
        "back it up with PostgreSQL's own tools: `pg_dump --format=custom --file=textgate.dump DATABASE_URL`, or pg_basebackup with WAL archiving for point-in-time recovery",
    )?;
    let mut shown = Shown::new();
    let copied = copy::backup(&db, file, force, &mut |p| shown.progress(p));
    shown.end();
    let copied = copied?;
    println!(
        "backed up {} to {}: schema version {}, {} messages, {}, checked with PRAGMA quick_check",
        db.display(),
        file.display(),
        copied.schema,
        copied.messages,
        size(copied.bytes)
    );
    Ok(())
}

/// `textgate restore FILE`.
pub fn restore(cfg: &Config, config: Option<&Path>, file: &Path) -> anyhow::Result<()> {
    let db = sqlite_path(
        cfg,
        "restore it with PostgreSQL's own tools: pg_restore for a pg_dump archive, or PostgreSQL's recovery for a base backup",
    )?;
    let r = copy::restore(file, &db)?;
    println!(
        "restored {} to {}: schema version {}, {} messages, {}",
        file.display(),
        db.display(),
        r.copied.schema,
        r.copied.messages,
        size(r.copied.bytes)
    );
    match r.kept.split_first() {
        None => println!("there was no store at {} before", db.display()),
        Some((store, log)) => {
            println!("the store it replaced is kept as {}", store.display());
            for l in log {
                println!("  with its log, {}", l.display());
            }
        }
    }
    if r.copied.schema < SCHEMA {
        println!(
            "textgate serve brings it from schema version {} to {SCHEMA} when it starts",
            r.copied.schema
        );
    }
    let config = config
        .map(|c| format!(" --config {}", c.display()))
        .unwrap_or_default();
    println!("start the server on it: textgate serve{config}");
    Ok(())
}

/// The file of the config's SQLite store; for a PostgreSQL store, why not and `advice`.
fn sqlite_path(cfg: &Config, advice: &str) -> anyhow::Result<PathBuf> {
    let url = &cfg.server.database_url;
    match url.strip_prefix("sqlite://") {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!(
            "the store is on PostgreSQL ({}), and textgate copies only SQLite stores: {advice} (see docs/backup.md)",
            redact_url(url)
        ),
    }
}

/// A backup's progress on standard error, once it has run for a second (a small store's
/// backup prints only its result): redrawn in place on a terminal, a line every 5 seconds
/// otherwise, as `textgate job submit` does.
struct Shown {
    started: Instant,
    tty: bool,
    last: Option<Instant>,
}

impl Shown {
    fn new() -> Shown {
        Shown {
            started: Instant::now(),
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            last: None,
        }
    }

    fn progress(&mut self, p: Progress) {
        let now = Instant::now();
        if now - self.started < Duration::from_secs(1) {
            return;
        }
        let every = Duration::from_millis(if self.tty { 300 } else { 5000 });
        if self.last.is_some_and(|l| now - l < every) && p.done < p.total {
            return;
        }
        self.last = Some(now);
        let mib = |b: u64| (b >> 20) as i64;
        let line = crate::client::progress_line(mib(p.done), mib(p.total), "MiB copied");
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{}", line.trim_end());
        }
    }

    /// Ends the line redrawn in place, if there is one.
    fn end(&self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}

/// `812 KiB`, `48.3 MiB`, `2.1 GiB`.
fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB * KIB {
        format!("{:.0} KiB", (b / KIB).ceil())
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 KiB");
        assert_eq!(size(4096 * 200), "800 KiB");
        assert_eq!(size(48 << 20), "48.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}
