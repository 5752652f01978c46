//! Bulk jobs on SQLite. A batch is one closure on the writer thread, so it shares the group
//! commit with whatever else is queued and is fsynced before its caller hears of it.

use rusqlite::{params, Connection, OptionalExtension, Row};
use textgate_core::clock::Millis;
use textgate_core::status::Status;

use super::{db_err, Sqlite};
use crate::jobs::*;
use crate::model::Id;
use crate::{Result, StoreError};

fn job_from_row(r: &Row) -> rusqlite::Result<JobRecord> {
    let state: String = r.get(3)?;
    let state = JobState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown job state {state}").into(),
        )
    })?;
    Ok(JobRecord {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        name: r.get(2)?,
        state,
        source: r.get(4)?,
        params: r.get(5)?,
        file: r.get(6)?,
        total: r.get(7)?,
        accepted: r.get(8)?,
        rejected: r.get(9)?,
        segments: r.get(10)?,
        file_offset: r.get(11)?,
        file_line: r.get(12)?,
        next_row: r.get(13)?,
        error: r.get(14)?,
        paused_at: r.get(15)?,
        imported_at: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
    })
}

fn get_job_on(c: &Connection, id: Id) -> rusqlite::Result<Option<JobRecord>> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_from_row)
        .optional()
}

fn corrupt_status(s: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown status {s}").into(),
    )
}

impl Sqlite {
    pub(crate) async fn create_job(&self, j: NewJob) -> Result<JobRecord> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO jobs (owner_id, name, state, source, params, file, created_at, updated_at)
                 VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?6)",
                params![j.owner_id, j.name, j.source, j.params, j.file, j.created_at],
            )
            .map_err(db_err)?;
            get_job_on(c, c.last_insert_rowid())
                .map_err(db_err)?
                .ok_or_else(|| StoreError::Corrupt("a new job vanished".into()))
        })
        .await
    }

    pub(crate) async fn append_job_batch(&self, b: JobBatch) -> Result<BatchStored> {
        self.write(move |c| {
            let Some(job) = get_job_on(c, b.job_id).map_err(db_err)? else {
                return Ok(BatchStored::NotFound);
            };
            if matches!(job.state, JobState::Cancelled | JobState::Failed)
                || job.next_row != b.start_row
                || job.imported_at.is_some()
            {
                return Ok(BatchStored::Stopped);
            }
            // Rows of a paused job are stored held, exactly as pausing would have left them.
            let paused = job.state == JobState::Paused;
            {
                let mut ins = c
                    .prepare_cached(
                        "INSERT INTO messages (owner_id, job_id, job_row, recipient, sender, body, encoding, segments,
                           status, priority, due_at, expires_at, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(db_err)?;
                for m in &b.messages {
                    let (status, due_at) = if paused {
                        (Status::Scheduled, m.due_at + PAUSE_SHIFT)
                    } else if m.scheduled {
                        (Status::Scheduled, m.due_at)
                    } else {
                        (Status::Queued, m.due_at)
                    };
                    ins.execute(params![
                        b.owner_id,
                        b.job_id,
                        m.row,
                        m.to,
                        b.from,
                        m.body,
                        m.encoding,
                        m.segments,
                        status.as_str(),
                        JOB_PRIORITY,
                        due_at,
                        m.expires_at,
                        b.now
                    ])
                    .map_err(db_err)?;
                }
                let mut rej = c
                    .prepare_cached(
                        "INSERT INTO job_rejects (job_id, row, kind, number, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db_err)?;
                for r in &b.rejects {
                    let kind = if r.duplicate { "duplicate" } else { "rejected" };
                    rej.execute(params![b.job_id, r.row, kind, r.number, r.message])
                        .map_err(db_err)?;
                }
            }
            let (total, accepted, rejected, segments) = counts_of(&b);
            c.prepare_cached(
                "UPDATE jobs SET total = total + ?2, accepted = accepted + ?3, rejected = rejected + ?4,
                   segments = segments + ?5, file_offset = ?6, file_line = ?7, next_row = ?8,
                   imported_at = ?9, updated_at = ?10
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    b.job_id,
                    total,
                    accepted,
                    rejected,
                    segments,
                    b.resume.offset,
                    b.resume.line,
                    b.resume.row,
                    b.finished.then_some(b.now),
                    b.now
                ])
            })
            .map_err(db_err)?;
            Ok(BatchStored::Stored)
        })
        .await
    }

    pub(crate) async fn fail_job(&self, id: Id, error: String, now: Millis) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "UPDATE jobs SET state = 'failed', error = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, error, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn get_job(&self, id: Id) -> Result<Option<JobRecord>> {
        self.read(move |c| get_job_on(c, id)).await
    }

    pub(crate) async fn list_jobs(
        &self,
        owner: Option<Id>,
        before: Option<Id>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE (?1 IS NULL OR owner_id = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = s.query_map(params![owner, before, limit as i64], job_from_row)?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE imported_at IS NULL AND state IN ('running', 'paused') ORDER BY id"
            ))?;
            let rows = s.query_map([], job_from_row)?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn job_counts(&self, id: Id) -> Result<Vec<(Status, i64)>> {
        self.read(move |c| {
            // One pass with a sum per status: a GROUP BY here would sort every row of the
            // job in memory (temp_store = MEMORY), tens of MB for a million-row job.
            let sums: Vec<String> = Status::ALL
                .iter()
                .map(|st| format!("coalesce(sum(status = '{}'), 0)", st.as_str()))
                .collect();
            let sql = format!("SELECT {} FROM messages WHERE job_id = ?1", sums.join(", "));
            let counts = c.prepare_cached(&sql)?.query_row([id], |r| {
                Status::ALL
                    .iter()
                    .enumerate()
                    .map(|(i, st)| Ok((*st, r.get::<_, i64>(i)?)))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
        })
        .await
    }

    pub(crate) async fn control_job(
        &self,
        id: Id,
        owner: Option<Id>,
        action: JobAction,
        now: Millis,
    ) -> Result<JobControl> {
        // First the state, in its own commit: from then on the importer stores new rows the
        // way this action leaves them. Then the waiting messages, a chunk per commit.
        let before = self
            .write(move |c| {
                let Some(job) = get_job_on(c, id).map_err(db_err)? else {
                    return Ok(Err(JobControl::NotFound));
                };
                if owner.is_some_and(|o| o != job.owner_id) {
                    return Ok(Err(JobControl::NotFound));
                }
                let next = match (action, job.state) {
                    (JobAction::Pause, JobState::Running) => JobState::Paused,
                    (JobAction::Resume, JobState::Paused) => JobState::Running,
                    (JobAction::Cancel, JobState::Running | JobState::Paused) => {
                        JobState::Cancelled
                    }
                    // Repeating a pause or resume is harmless: answer with the job as it is.
                    (JobAction::Pause, JobState::Paused)
                    | (JobAction::Resume, JobState::Running) => return Ok(Ok((job, false))),
                    (_, st) => return Ok(Err(JobControl::Invalid(st))),
                };
                let paused_at = if next == JobState::Paused {
                    Some(now)
                } else {
                    None
                };
                c.execute(
                    "UPDATE jobs SET state = ?2, paused_at = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, next.as_str(), paused_at, now],
                )
                .map_err(db_err)?;
                Ok(Ok((job, true)))
            })
            .await?;
        let (job, changed) = match before {
            Ok(x) => x,
            Err(answer) => return Ok(answer),
        };
        if changed {
            let sql = match action {
                JobAction::Pause => {
                    "UPDATE messages SET status = 'scheduled', due_at = due_at + ?3
                     WHERE id IN (SELECT id FROM messages WHERE job_id = ?1 AND status IN ('queued', 'scheduled')
                                  AND due_at < ?3 LIMIT ?2)"
                }
                // A held message goes back to the queue with its place in the job's rate
                // schedule moved on by the time the job was paused.
                JobAction::Resume => {
                    "UPDATE messages SET due_at = due_at - ?3 + ?4,
                       status = CASE WHEN due_at - ?3 + ?4 <= ?5 THEN 'queued' ELSE 'scheduled' END
                     WHERE id IN (SELECT id FROM messages WHERE job_id = ?1 AND status = 'scheduled'
                                  AND due_at >= ?3 LIMIT ?2)"
                }
                JobAction::Cancel => {
                    "UPDATE messages SET status = 'cancelled', done_at = ?5, lease_until = NULL
                     WHERE id IN (SELECT id FROM messages WHERE job_id = ?1 AND status IN ('queued', 'scheduled')
                                  LIMIT ?2)
                     RETURNING id, callback_url IS NOT NULL OR email_from IS NOT NULL"
                }
            };
            let pause_len = now - job.paused_at.unwrap_or(now);
            loop {
                let n = self
                    .write(move |c| {
                        let mut s = c.prepare_cached(sql).map_err(db_err)?;
                        // SQLite counts parameters up to the highest number used, so the
                        // cancel binds placeholders for ?3 and ?4.
                        let n = match action {
                            JobAction::Pause => s.execute(params![id, CONTROL_CHUNK, PAUSE_SHIFT]),
                            JobAction::Resume => {
                                s.execute(params![id, CONTROL_CHUNK, PAUSE_SHIFT, pause_len, now])
                            }
                            JobAction::Cancel => s
                                .query_map(params![id, CONTROL_CHUNK, 0, 0, now], |r| {
                                    Ok((r.get::<_, Id>(0)?, r.get::<_, bool>(1)?))
                                })
                                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                                .and_then(|cancelled| {
                                    for &(message, notify) in &cancelled {
                                        if notify {
                                            super::queue_status_events(c, message, false)?;
                                        }
                                    }
                                    Ok(cancelled.len())
                                }),
                        }
                        .map_err(db_err)?;
                        Ok(n)
                    })
                    .await?;
                if (n as i64) < CONTROL_CHUNK {
                    break;
                }
            }
        }
        let job = self
            .get_job(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a job vanished".into()))?;
        Ok(JobControl::Done(Box::new(job)))
    }

    pub(crate) async fn job_results(
        &self,
        job_id: Id,
        after: Id,
        limit: usize,
    ) -> Result<Vec<JobResultRow>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, job_row, recipient, status, error FROM messages
                 WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = s.query_map(params![job_id, after, limit as i64], |r| {
                let st: String = r.get(3)?;
                Ok(JobResultRow {
                    id: r.get(0)?,
                    row: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    to: r.get(2)?,
                    status: Status::parse(&st).ok_or_else(|| corrupt_status(&st))?,
                    error: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn job_rejects(
        &self,
        job_id: Id,
        after_row: i64,
        limit: usize,
    ) -> Result<Vec<RowReject>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT row, kind, number, message FROM job_rejects
                 WHERE job_id = ?1 AND row > ?2 ORDER BY row LIMIT ?3",
            )?;
            let rows = s.query_map(params![job_id, after_row, limit as i64], |r| {
                Ok(RowReject {
                    row: r.get(0)?,
                    duplicate: r.get::<_, String>(1)? == "duplicate",
                    number: r.get(2)?,
                    message: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
