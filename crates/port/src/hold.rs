//! The port server's own store (SQLite, in its `data_dir`): the messages it took and what
//! became of them, and the reports the central server has not yet acknowledged.
//!
//! One thread owns the connection and commits whatever is waiting in one transaction
//! (`synchronous = FULL`, so a commit survives a power cut), so a busy link shares its
//! commits: each caller hears back only once its write is durable. That is the order
//! everything hangs on: a submit is answered `taken` only after it is committed here, a
//! device acknowledges a receipt or an inbound text to its peer only after the report is
//! committed here, and a report is forgotten only after the central server said it
//! committed it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::link::{Frame, Report, SendResult};

/// A message the central server handed over, as kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// The central server's id.
    pub message_id: i64,
    /// The latest attempt it was handed over with.
    pub attempt: i64,
    /// The device asked for (`None`: any).
    pub device: Option<String>,
    /// Destination.
    pub to: String,
    /// Sender id.
    pub from: Option<String>,
    /// Text.
    pub body: String,
    /// Parts.
    pub segments: u16,
}

/// What came of a submit handed to [`Hold::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// New here: committed, to be sent.
    New(HeldMessage),
    /// Held already and not yet sent (a resend): its attempt is updated, nothing else.
    Held,
    /// Sent, or refused for good, already: its outcome is reported again under the new
    /// attempt (a message that failed only for now is [`Taken::New`] again).
    Answered(Frame),
}

enum Op {
    Take(Vec<HeldMessage>, oneshot::Sender<Vec<Taken>>),
    Finish {
        message_id: i64,
        device: String,
        result: SendResult,
        at: i64,
        reply: oneshot::Sender<Option<Frame>>,
    },
    Report(Report, oneshot::Sender<Frame>),
    Ack(Vec<u64>),
    Unacked {
        after: u64,
        limit: usize,
        reply: oneshot::Sender<Vec<Frame>>,
    },
    Purge(i64),
    HeldIds(oneshot::Sender<Vec<i64>>),
}

/// Counts shown in the port server's status and sent to the central server.
#[derive(Debug, Default)]
pub struct HoldCounts {
    /// Messages taken and not yet finished.
    pub held: AtomicU64,
    /// Reports not yet acknowledged by the central server.
    pub unacked: AtomicU64,
}

/// The handle to the store's thread; cheap to clone.
#[derive(Clone)]
pub struct Hold {
    tx: mpsc::UnboundedSender<Op>,
    /// Live counts.
    pub counts: Arc<HoldCounts>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// SQLite said no.
    #[error("the port server's store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store's thread is gone (the process is stopping).
    #[error("the port server's store is closed")]
    Closed,
    /// Its folder or its thread could not be made.
    #[error("the port server's store: {0}")]
    Io(#[from] std::io::Error),
    /// Written by a newer build.
    #[error("{0}")]
    Newer(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS held (
    message_id  INTEGER PRIMARY KEY,
    attempt     INTEGER NOT NULL,
    device      TEXT,
    to_addr     TEXT NOT NULL,
    from_addr   TEXT,
    body        TEXT NOT NULL,
    segments    INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    result      TEXT,
    sent_device TEXT,
    taken_at    INTEGER NOT NULL,
    done_at     INTEGER
);
CREATE INDEX IF NOT EXISTS held_open ON held (done, message_id);
CREATE INDEX IF NOT EXISTS held_done_at ON held (done_at) WHERE done = 1;
CREATE TABLE IF NOT EXISTS items (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    report TEXT NOT NULL
);
PRAGMA user_version = 1;
";

impl Hold {
    /// Opens (creating) the store in `dir`; the messages taken and not yet finished by an
    /// earlier run, to be sent now.
    pub fn open(dir: &Path) -> Result<(Hold, Vec<HeldMessage>), HoldError> {
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join("port.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > 1 {
            return Err(HoldError::Newer(format!(
                "{} was written by a newer textgate (schema {version}); run that version or a newer one",
                dir.join("port.db").display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        let open = {
            let mut st = conn.prepare(
                "SELECT message_id, attempt, device, to_addr, from_addr, body, segments
                   FROM held WHERE done = 0 ORDER BY message_id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(HeldMessage {
                    message_id: r.get(0)?,
                    attempt: r.get(1)?,
                    device: r.get(2)?,
                    to: r.get(3)?,
                    from: r.get(4)?,
                    body: r.get(5)?,
                    segments: r.get::<_, i64>(6)?.clamp(1, 255) as u16,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let unacked: i64 = conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
        let counts = Arc::new(HoldCounts {
            held: AtomicU64::new(open.len() as u64),
            unacked: AtomicU64::new(unacked.max(0) as u64),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let c = counts.clone();
        std::thread::Builder::new()
            .name("port-store".into())
            .spawn(move || writer(conn, rx, c))?;
        Ok((Hold { tx, counts }, open))
    }

    /// Commits submits; what each one is.
    ///
    /// The write is queued when this is called (so calls made one after another share a
    /// commit); the future says when it is durable.
    pub fn take(
        &self,
        submits: Vec<HeldMessage>,
    ) -> impl std::future::Future<Output = Result<Vec<Taken>, HoldError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Op::Take(submits, reply));
        async move { rx.await.map_err(|_| HoldError::Closed) }
    }

    /// Commits a message's outcome; the report frame (under the attempt the message holds
    /// now), `None` if the message is not held.
    pub fn finish(
        &self,
        message_id: i64,
        device: String,
        result: SendResult,
        at: i64,
    ) -> impl std::future::Future<Output = Result<Option<Frame>, HoldError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Op::Finish {
            message_id,
            device,
            result,
            at,
            reply,
        });
        async move { rx.await.map_err(|_| HoldError::Closed) }
    }

    /// Commits a report (a receipt, an inbound text); its frame.
    pub fn report(
        &self,
        report: Report,
    ) -> impl std::future::Future<Output = Result<Frame, HoldError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Op::Report(report, reply));
        async move { rx.await.map_err(|_| HoldError::Closed) }
    }

    /// Forgets reports the central server committed.
    pub fn ack(&self, ids: Vec<u64>) {
        let _ = self.tx.send(Op::Ack(ids));
    }

    /// Unacknowledged reports with ids above `after`, oldest first, at most `limit`.
    pub async fn unacked(&self, after: u64, limit: usize) -> Result<Vec<Frame>, HoldError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Op::Unacked {
                after,
                limit,
                reply,
            })
            .map_err(|_| HoldError::Closed)?;
        rx.await.map_err(|_| HoldError::Closed)
    }

    /// The messages taken and not yet finished.
    pub async fn held_ids(&self) -> Result<Vec<i64>, HoldError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Op::HeldIds(reply))
            .map_err(|_| HoldError::Closed)?;
        rx.await.map_err(|_| HoldError::Closed)
    }

    /// Forgets finished messages older than `before` (ms).
    pub fn purge(&self, before: i64) {
        let _ = self.tx.send(Op::Purge(before));
    }
}

fn writer(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Op>, counts: Arc<HoldCounts>) {
    let mut ops = Vec::with_capacity(1024);
    while let Some(op) = rx.blocking_recv() {
        ops.push(op);
        while ops.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(ops.len());
        let done = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for op in ops.drain(..) {
                replies.push(apply(&tx, op, &counts)?);
            }
            tx.commit()
        })();
        match done {
            Ok(()) => {
                for r in replies.drain(..) {
                    r.send();
                }
            }
            Err(e) => {
                // Every caller hears "not committed" (its reply is dropped): a take is not
                // answered, a report not acknowledged to its device, and each is tried again.
                tracing::error!(error = %e, "the port server's store could not commit; nothing of this round is acknowledged");
                replies.clear();
                ops.clear();
                if let Ok(n) =
                    conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
                {
                    counts.unacked.store(n.max(0) as u64, Ordering::Relaxed);
                }
                if let Ok(n) = conn.query_row("SELECT count(*) FROM held WHERE done = 0", [], |r| {
                    r.get::<_, i64>(0)
                }) {
                    counts.held.store(n.max(0) as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A held message's attempt, whether it is done, its result, device and when it finished.
type Known = (i64, bool, Option<String>, Option<String>, Option<i64>);

/// A reply to send once the round is committed.
enum Reply {
    Taken(oneshot::Sender<Vec<Taken>>, Vec<Taken>),
    Frame(oneshot::Sender<Frame>, Frame),
    Finished(oneshot::Sender<Option<Frame>>, Option<Frame>),
    Frames(oneshot::Sender<Vec<Frame>>, Vec<Frame>),
    Ids(oneshot::Sender<Vec<i64>>, Vec<i64>),
    None,
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Taken(tx, v) => drop(tx.send(v)),
            Reply::Frame(tx, v) => drop(tx.send(v)),
            Reply::Finished(tx, v) => drop(tx.send(v)),
            Reply::Frames(tx, v) => drop(tx.send(v)),
            Reply::Ids(tx, v) => drop(tx.send(v)),
            Reply::None => {}
        }
    }
}

fn insert_item(
    tx: &rusqlite::Transaction<'_>,
    report: Report,
    counts: &HoldCounts,
) -> rusqlite::Result<Frame> {
    let text = serde_json::to_string(&report).unwrap_or_default();
    tx.prepare_cached("INSERT INTO items (report) VALUES (?1)")?
        .execute([&text])?;
    counts.unacked.fetch_add(1, Ordering::Relaxed);
    Ok(Frame::Item {
        id: tx.last_insert_rowid().max(0) as u64,
        report,
    })
}

fn apply(tx: &rusqlite::Transaction<'_>, op: Op, counts: &HoldCounts) -> rusqlite::Result<Reply> {
    let now = textgate_core::clock::now_ms();
    Ok(match op {
        Op::Take(submits, reply) => {
            let mut out = Vec::with_capacity(submits.len());
            for m in submits {
                let known: Option<Known> = tx
                    .prepare_cached(
                        "SELECT attempt, done, result, sent_device, done_at FROM held WHERE message_id = ?1",
                    )?
                    .query_row([m.message_id], |r| {
                        Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?;
                match known {
                    None => {
                        tx.prepare_cached(
                            "INSERT INTO held (message_id, attempt, device, to_addr, from_addr, body, segments, taken_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        )?
                        .execute(params![
                            m.message_id,
                            m.attempt,
                            m.device,
                            m.to,
                            m.from,
                            m.body,
                            i64::from(m.segments),
                            now
                        ])?;
                        counts.held.fetch_add(1, Ordering::Relaxed);
                        out.push(Taken::New(m));
                    }
                    Some((attempt, done, result, sent_device, done_at)) => {
                        let attempt = attempt.max(m.attempt);
                        tx.prepare_cached("UPDATE held SET attempt = ?2 WHERE message_id = ?1")?
                            .execute([m.message_id, attempt])?;
                        let result =
                            result.and_then(|r| serde_json::from_str::<SendResult>(&r).ok());
                        match (done, result) {
                            // A later attempt after one that failed for now: sent again.
                            (
                                true,
                                Some(SendResult::Transient { .. } | SendResult::Throttled { .. })
                                | None,
                            ) => {
                                tx.prepare_cached(
                                    "UPDATE held SET done = 0, result = NULL, sent_device = NULL, done_at = NULL,
                                            device = ?2 WHERE message_id = ?1",
                                )?
                                .execute(params![m.message_id, m.device])?;
                                counts.held.fetch_add(1, Ordering::Relaxed);
                                out.push(Taken::New(HeldMessage { attempt, ..m }));
                            }
                            (true, Some(result)) => {
                                let frame = insert_item(
                                    tx,
                                    Report::Outcome {
                                        message_id: m.message_id,
                                        attempt,
                                        device: sent_device.unwrap_or_default(),
                                        result,
                                        at: done_at.unwrap_or(now),
                                    },
                                    counts,
                                )?;
                                out.push(Taken::Answered(frame));
                            }
                            _ => out.push(Taken::Held),
                        }
                    }
                }
            }
            Reply::Taken(reply, out)
        }
        Op::Finish {
            message_id,
            device,
            result,
            at,
            reply,
        } => {
            let text = serde_json::to_string(&result).unwrap_or_default();
            let attempt: Option<i64> = tx
                .prepare_cached(
                    "UPDATE held SET done = 1, result = ?2, sent_device = ?3, done_at = ?4
                      WHERE message_id = ?1 AND done = 0 RETURNING attempt",
                )?
                .query_row(params![message_id, text, device, at], |r| r.get(0))
                .optional()?;
            let frame = match attempt {
                Some(attempt) => {
                    counts.held.fetch_sub(1, Ordering::Relaxed);
                    Some(insert_item(
                        tx,
                        Report::Outcome {
                            message_id,
                            attempt,
                            device,
                            result,
                            at,
                        },
                        counts,
                    )?)
                }
                None => None,
            };
            Reply::Finished(reply, frame)
        }
        Op::Report(report, reply) => Reply::Frame(reply, insert_item(tx, report, counts)?),
        Op::Ack(ids) => {
            let mut st = tx.prepare_cached("DELETE FROM items WHERE id = ?1")?;
            let mut n = 0u64;
            for id in ids {
                n += st.execute([id as i64])? as u64;
            }
            counts.unacked.fetch_sub(
                n.min(counts.unacked.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            Reply::None
        }
        Op::Unacked {
            after,
            limit,
            reply,
        } => {
            let mut st = tx.prepare_cached(
                "SELECT id, report FROM items WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after as i64, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut frames = Vec::new();
            for row in rows {
                let (id, text) = row?;
                match serde_json::from_str::<Report>(&text) {
                    Ok(report) => frames.push(Frame::Item {
                        id: id.max(0) as u64,
                        report,
                    }),
                    Err(e) => {
                        tracing::error!(id, error = %e, "a kept report cannot be read back; it stays in the store")
                    }
                }
            }
            Reply::Frames(reply, frames)
        }
        Op::HeldIds(reply) => {
            let mut st = tx.prepare_cached(
                "SELECT message_id FROM held WHERE done = 0 ORDER BY message_id LIMIT 100000",
            )?;
            let ids = st
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            Reply::Ids(reply, ids)
        }
        Op::Purge(before) => {
            tx.prepare_cached("DELETE FROM held WHERE done = 1 AND done_at < ?1")?
                .execute([before])?;
            Reply::None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64, attempt: i64) -> HeldMessage {
        HeldMessage {
            message_id: id,
            attempt,
            device: None,
            to: "+15550001".into(),
            from: None,
            body: "hi".into(),
            segments: 1,
        }
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "textgate-hold-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn a_resend_is_recognised_and_what_was_held_survives_a_restart() {
        let d = dir("resend");
        let (hold, open) = Hold::open(&d).unwrap();
        assert!(open.is_empty());
        let t = hold.take(vec![msg(1, 1), msg(2, 1)]).await.unwrap();
        assert!(matches!(&t[..], [Taken::New(_), Taken::New(_)]));
        // A resend of a held message, under a later attempt: held, not new.
        assert_eq!(hold.take(vec![msg(1, 2)]).await.unwrap(), vec![Taken::Held]);
        let sent = SendResult::Sent {
            part_ids: vec!["a".into()],
        };
        let f = hold
            .finish(1, "lb".into(), sent.clone(), 5)
            .await
            .unwrap()
            .unwrap();
        let Frame::Item {
            id,
            report: Report::Outcome { attempt, .. },
        } = f
        else {
            panic!("{f:?}")
        };
        assert_eq!(attempt, 2, "reported under the latest attempt");
        // Sent: a resend is answered from the store, under its own attempt.
        let again = hold.take(vec![msg(1, 3)]).await.unwrap();
        let [Taken::Answered(Frame::Item {
            id: id2,
            report: Report::Outcome {
                attempt: 3, result, ..
            },
        })] = &again[..]
        else {
            panic!("{again:?}")
        };
        assert!(*id2 > id);
        assert_eq!(result, &sent);
        assert_eq!(hold.counts.unacked.load(Ordering::Relaxed), 2);
        // Failed for now: the next attempt sends it again.
        let busy = SendResult::Transient {
            code: None,
            reason: "not bound".into(),
        };
        hold.finish(2, "lb".into(), busy, 6).await.unwrap().unwrap();
        let again = hold.take(vec![msg(2, 2)]).await.unwrap();
        assert_eq!(again, vec![Taken::New(msg(2, 2))]);
        hold.ack(vec![id]);
        let left = hold.unacked(0, 10).await.unwrap();
        assert_eq!(left.len(), 2, "the answer again and the transient outcome");
        drop(hold);
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Message 2 was taken and never finished: the next run sends it.
        let (hold, open) = Hold::open(&d).unwrap();
        assert_eq!(open, vec![msg(2, 2)]);
        assert_eq!(hold.unacked(0, 10).await.unwrap().len(), 2);
        assert_eq!(hold.counts.held.load(Ordering::Relaxed), 1);
        // Ids go on after the highest ever used, even once acknowledged.
        let f = hold
            .report(Report::Receipt {
                device: "lb".into(),
                device_msg_id: "a".into(),
                delivered: true,
                code: None,
                at: 1,
            })
            .await
            .unwrap();
        let Frame::Item { id: id3, .. } = f else {
            panic!()
        };
        assert!(id3 > *id2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
