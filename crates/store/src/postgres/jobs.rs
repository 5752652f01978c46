//! Bulk jobs on PostgreSQL. A batch is one transaction that first locks the job's row, so two
//! importers of the same job (two nodes resuming it at once) take turns and the second finds
//! the resume point moved on.

use textgate_core::clock::Millis;
use textgate_core::status::Status;
use tokio_postgres::Row;

use super::{db_err, Postgres};
use crate::jobs::*;
use crate::model::Id;
use crate::{Result, StoreError};

fn job_from_row(r: &Row) -> Result<JobRecord> {
    let state: String = r.try_get(3).map_err(db_err)?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {state}")))?;
    let g = db_err;
    Ok(JobRecord {
        id: r.try_get(0).map_err(g)?,
        owner_id: r.try_get(1).map_err(g)?,
        name: r.try_get(2).map_err(g)?,
        state,
        source: r.try_get(4).map_err(g)?,
        params: r.try_get(5).map_err(g)?,
        file: r.try_get(6).map_err(g)?,
        total: r.try_get(7).map_err(g)?,
        accepted: r.try_get(8).map_err(g)?,
        rejected: r.try_get(9).map_err(g)?,
        segments: r.try_get(10).map_err(g)?,
        file_offset: r.try_get(11).map_err(g)?,
        file_line: r.try_get(12).map_err(g)?,
        next_row: r.try_get(13).map_err(g)?,
        error: r.try_get(14).map_err(g)?,
        paused_at: r.try_get(15).map_err(g)?,
        imported_at: r.try_get(16).map_err(g)?,
        created_at: r.try_get(17).map_err(g)?,
        updated_at: r.try_get(18).map_err(g)?,
    })
}

fn status_of(s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))
}

async fn get_job_on(
    c: &impl tokio_postgres::GenericClient,
    id: Id,
    lock: bool,
) -> Result<Option<JobRecord>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = c.query_opt(&sql, &[&id]).await.map_err(db_err)?;
    row.as_ref().map(job_from_row).transpose()
}

impl Postgres {
    pub(crate) async fn create_job(&self, j: NewJob) -> Result<JobRecord> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO jobs (owner_id, name, state, source, params, file, created_at, updated_at)
                     VALUES ($1, $2, 'running', $3, $4, $5, $6, $6) RETURNING {JOB_COLUMNS}"
                ),
                &[&j.owner_id, &j.name, &j.source, &j.params, &j.file, &j.created_at],
            )
            .await
            .map_err(db_err)?;
        job_from_row(&row)
    }

    pub(crate) async fn append_job_batch(&self, b: JobBatch) -> Result<BatchStored> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let Some(job) = get_job_on(&tx, b.job_id, true).await? else {
            return Ok(BatchStored::NotFound);
        };
        if matches!(job.state, JobState::Cancelled | JobState::Failed)
            || job.next_row != b.start_row
            || job.imported_at.is_some()
        {
            return Ok(BatchStored::Stopped);
        }
        let paused = job.state == JobState::Paused;
        let ins = tx
            .prepare(
                "INSERT INTO messages (owner_id, job_id, job_row, recipient, sender, body, encoding, segments,
                   status, priority, due_at, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .await
            .map_err(db_err)?;
        for m in &b.messages {
            let (status, due_at) = if paused {
                (Status::Scheduled, m.due_at + PAUSE_SHIFT)
            } else if m.scheduled {
                (Status::Scheduled, m.due_at)
            } else {
                (Status::Queued, m.due_at)
            };
            tx.execute(
                &ins,
                &[
                    &b.owner_id,
                    &b.job_id,
                    &m.row,
                    &m.to,
                    &b.from,
                    &m.body,
                    &m.encoding,
                    &m.segments,
                    &status.as_str(),
                    &JOB_PRIORITY,
                    &due_at,
                    &m.expires_at,
                    &b.now,
                ],
            )
            .await
            .map_err(db_err)?;
        }
        if !b.rejects.is_empty() {
            let rej = tx
                .prepare("INSERT INTO job_rejects (job_id, row, kind, number, message) VALUES ($1, $2, $3, $4, $5)")
                .await
                .map_err(db_err)?;
            for r in &b.rejects {
                let kind = if r.duplicate { "duplicate" } else { "rejected" };
                tx.execute(&rej, &[&b.job_id, &r.row, &kind, &r.number, &r.message])
                    .await
                    .map_err(db_err)?;
            }
        }
        let (total, accepted, rejected, segments) = counts_of(&b);
        tx.execute(
            "UPDATE jobs SET total = total + $2, accepted = accepted + $3, rejected = rejected + $4,
               segments = segments + $5, file_offset = $6, file_line = $7, next_row = $8,
               imported_at = $9, updated_at = $10
             WHERE id = $1",
            &[
                &b.job_id,
                &total,
                &accepted,
                &rejected,
                &segments,
                &b.resume.offset,
                &b.resume.line,
                &b.resume.row,
                &b.finished.then_some(b.now),
                &b.now,
            ],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(BatchStored::Stored)
    }

    pub(crate) async fn fail_job(&self, id: Id, error: String, now: Millis) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "UPDATE jobs SET state = 'failed', error = $2, updated_at = $3 WHERE id = $1",
            &[&id, &error, &now],
        )
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn get_job(&self, id: Id) -> Result<Option<JobRecord>> {
        let c = self.pool.get().await?;
        get_job_on(&*c, id, false).await
    }

    pub(crate) async fn list_jobs(
        &self,
        owner: Option<Id>,
        before: Option<Id>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE ($1::BIGINT IS NULL OR owner_id = $1) AND ($2::BIGINT IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&owner, &before, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    pub(crate) async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE imported_at IS NULL AND state IN ('running', 'paused') ORDER BY id"),
                &[],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    pub(crate) async fn job_counts(&self, id: Id) -> Result<Vec<(Status, i64)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT status, count(*) FROM messages WHERE job_id = $1 GROUP BY status",
                &[&id],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let st: String = r.try_get(0).map_err(db_err)?;
                Ok((status_of(&st)?, r.try_get(1).map_err(db_err)?))
            })
            .collect()
    }

    pub(crate) async fn control_job(
        &self,
        id: Id,
        owner: Option<Id>,
        action: JobAction,
        now: Millis,
    ) -> Result<JobControl> {
        let job = {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await.map_err(db_err)?;
            let Some(job) = get_job_on(&tx, id, true).await? else {
                return Ok(JobControl::NotFound);
            };
            if owner.is_some_and(|o| o != job.owner_id) {
                return Ok(JobControl::NotFound);
            }
            let next = match (action, job.state) {
                (JobAction::Pause, JobState::Running) => JobState::Paused,
                (JobAction::Resume, JobState::Paused) => JobState::Running,
                (JobAction::Cancel, JobState::Running | JobState::Paused) => JobState::Cancelled,
                (JobAction::Pause, JobState::Paused) | (JobAction::Resume, JobState::Running) => {
                    return Ok(JobControl::Done(Box::new(job)))
                }
                (_, st) => return Ok(JobControl::Invalid(st)),
            };
            let paused_at = (next == JobState::Paused).then_some(now);
            tx.execute(
                "UPDATE jobs SET state = $2, paused_at = $3, updated_at = $4 WHERE id = $1",
                &[&id, &next.as_str(), &paused_at, &now],
            )
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            job
        };
        let pause_len = now - job.paused_at.unwrap_or(now);
        let c = self.pool.get().await?;
        loop {
            let n = match action {
                JobAction::Pause => c
                    .execute(
                        "UPDATE messages SET status = 'scheduled', due_at = due_at + $3
                         WHERE id IN (SELECT id FROM messages WHERE job_id = $1 AND status IN ('queued', 'scheduled')
                                      AND due_at < $3 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        &[&id, &CONTROL_CHUNK, &PAUSE_SHIFT],
                    )
                    .await,
                JobAction::Resume => c
                    .execute(
                        "UPDATE messages SET due_at = due_at - $3 + $4,
                           status = CASE WHEN due_at - $3 + $4 <= $5 THEN 'queued' ELSE 'scheduled' END
                         WHERE id IN (SELECT id FROM messages WHERE job_id = $1 AND status = 'scheduled'
                                      AND due_at >= $3 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        &[&id, &CONTROL_CHUNK, &PAUSE_SHIFT, &pause_len, &now],
                    )
                    .await,
                JobAction::Cancel => c
                    .execute(
                        "UPDATE messages SET status = 'cancelled', done_at = $3, lease_until = NULL
                         WHERE id IN (SELECT id FROM messages WHERE job_id = $1 AND status IN ('queued', 'scheduled')
                                      LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        &[&id, &CONTROL_CHUNK, &now],
                    )
                    .await,
            }
            .map_err(db_err)?;
            if (n as i64) < CONTROL_CHUNK {
                break;
            }
        }
        drop(c);
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
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, job_row, recipient, status, error FROM messages
                 WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&job_id, &after, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let st: String = r.try_get(3).map_err(db_err)?;
                Ok(JobResultRow {
                    id: r.try_get(0).map_err(db_err)?,
                    row: r.try_get::<_, Option<i64>>(1).map_err(db_err)?.unwrap_or(0),
                    to: r.try_get(2).map_err(db_err)?,
                    status: status_of(&st)?,
                    error: r.try_get(4).map_err(db_err)?,
                })
            })
            .collect()
    }

    pub(crate) async fn job_rejects(
        &self,
        job_id: Id,
        after_row: i64,
        limit: usize,
    ) -> Result<Vec<RowReject>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT row, kind, number, message FROM job_rejects
                 WHERE job_id = $1 AND row > $2 ORDER BY row LIMIT $3",
                &[&job_id, &after_row, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(RowReject {
                    row: r.try_get(0).map_err(db_err)?,
                    duplicate: r.try_get::<_, String>(1).map_err(db_err)? == "duplicate",
                    number: r.try_get(2).map_err(db_err)?,
                    message: r.try_get(3).map_err(db_err)?,
                })
            })
            .collect()
    }
}
