//! Bulk jobs: created, filled a batch of CSV rows per transaction with the resume point,
//! paused, resumed and cancelled, and read back with their results.

use std::sync::LazyLock;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::exec::{args, row, Dialect, Exec, Row};
use crate::jobs::*;
use crate::model::Id;
use crate::{Result, StoreError};

fn job_from_row(r: &dyn Row) -> Result<JobRecord> {
    let state = r.text(3)?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("a job has the unknown state {state}")))?;
    Ok(JobRecord {
        id: r.int(0)?,
        owner_id: r.int(1)?,
        name: r.opt_text(2)?,
        state,
        source: r.text(4)?,
        params: r.text(5)?,
        file: r.opt_text(6)?,
        total: r.int(7)?,
        accepted: r.int(8)?,
        rejected: r.int(9)?,
        segments: r.int(10)?,
        file_offset: r.int(11)?,
        file_line: r.int(12)?,
        next_row: r.int(13)?,
        error: r.opt_text(14)?,
        paused_at: r.opt_int(15)?,
        imported_at: r.opt_int(16)?,
        created_at: r.int(17)?,
        updated_at: r.int(18)?,
    })
}

fn status_of(s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))
}

/// `" FOR UPDATE"` where rows can be locked (PostgreSQL; SQLite's one writer needs none).
fn lock(e: &impl Exec, how: &'static str) -> &'static str {
    match e.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => how,
    }
}

/// One job; `locked` holds its row until the transaction ends, so that two importers of the
/// same job (two nodes resuming it at once) take turns.
pub(crate) async fn get(e: &mut impl Exec, id: Id, locked: bool) -> Result<Option<JobRecord>> {
    let lock = if locked { lock(e, " FOR UPDATE") } else { "" };
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1{lock}");
    row(e, &sql, args![id], job_from_row).await
}

/// A new job, `running` with nothing imported yet.
pub(crate) async fn create(e: &mut impl Exec, j: &NewJob) -> Result<JobRecord> {
    let id = crate::exec::insert(
        e,
        "INSERT INTO jobs (owner_id, name, state, source, params, file, created_at, updated_at)
         VALUES ($1, $2, 'running', $3, $4, $5, $6, $6)",
        args![
            j.owner_id,
            &j.name,
            &j.source,
            &j.params,
            &j.file,
            j.created_at
        ],
    )
    .await?;
    get(e, id, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a new job vanished".into()))
}

/// Stores one batch of a job's rows with its resume point; nothing when the job is cancelled
/// or failed or the batch does not start at the job's resume point.
pub(crate) async fn append_batch(e: &mut impl Exec, b: &JobBatch) -> Result<BatchStored> {
    let Some(job) = get(e, b.job_id, true).await? else {
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
    for m in &b.messages {
        let (status, due_at) = if paused {
            (Status::Scheduled, m.due_at + PAUSE_SHIFT)
        } else if m.scheduled {
            (Status::Scheduled, m.due_at)
        } else {
            (Status::Queued, m.due_at)
        };
        e.run(
            "INSERT INTO messages (owner_id, job_id, job_row, recipient, sender, body, encoding, segments,
               status, priority, due_at, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            args![
                b.owner_id,
                b.job_id,
                m.row,
                &m.to,
                &b.from,
                &m.body,
                m.encoding,
                m.segments,
                status.as_str(),
                JOB_PRIORITY,
                due_at,
                m.expires_at,
                b.now,
            ],
        )
        .await?;
    }
    for r in &b.rejects {
        let kind = if r.duplicate { "duplicate" } else { "rejected" };
        e.run(
            "INSERT INTO job_rejects (job_id, row, kind, number, message) VALUES ($1, $2, $3, $4, $5)",
            args![b.job_id, r.row, kind, &r.number, &r.message],
        )
        .await?;
    }
    let (total, accepted, rejected, segments) = counts_of(b);
    e.run(
        "UPDATE jobs SET total = total + $1, accepted = accepted + $2, rejected = rejected + $3,
           segments = segments + $4, file_offset = $5, file_line = $6, next_row = $7,
           imported_at = $8, updated_at = $9
         WHERE id = $10",
        args![
            total,
            accepted,
            rejected,
            segments,
            b.resume.offset,
            b.resume.line,
            b.resume.row,
            b.finished.then_some(b.now),
            b.now,
            b.job_id,
        ],
    )
    .await?;
    Ok(BatchStored::Stored)
}

pub(crate) async fn fail(e: &mut impl Exec, id: Id, error: &str, now: Millis) -> Result<()> {
    e.run(
        "UPDATE jobs SET state = 'failed', error = $1, updated_at = $2 WHERE id = $3",
        args![error, now, id],
    )
    .await?;
    Ok(())
}

/// Newest first: `owner`'s only, or everyone's; ids below `before`.
pub(crate) async fn list(
    e: &mut impl Exec,
    owner: Option<Id>,
    before: Option<Id>,
    limit: usize,
) -> Result<Vec<JobRecord>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE (CAST($1 AS BIGINT) IS NULL OR owner_id = $1) AND (CAST($2 AS BIGINT) IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        )
    });
    e.rows(&SQL, args![owner, before, limit], job_from_row)
        .await
}

/// Jobs whose import has not finished.
pub(crate) async fn unfinished(e: &mut impl Exec) -> Result<Vec<JobRecord>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE imported_at IS NULL AND state IN ('running', 'paused') ORDER BY id"
        )
    });
    e.rows(&SQL, args![], job_from_row).await
}

/// How many of a job's messages are in each status (those with any).
pub(crate) async fn counts(e: &mut impl Exec, id: Id) -> Result<Vec<(Status, i64)>> {
    // One pass with a count per status: a GROUP BY would make SQLite sort every row of the
    // job in memory (temp_store = MEMORY), tens of MB for a million-row job.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let counts: Vec<String> = Status::ALL
            .iter()
            .map(|st| format!("count(*) FILTER (WHERE status = '{}')", st.as_str()))
            .collect();
        format!(
            "SELECT {} FROM messages WHERE job_id = $1",
            counts.join(", ")
        )
    });
    let counts = row(e, &SQL, args![id], |r| {
        Status::ALL
            .iter()
            .enumerate()
            .map(|(i, st)| Ok((*st, r.int(i)?)))
            .collect::<Result<Vec<_>>>()
    })
    .await?
    .unwrap_or_default();
    Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
}

/// The first step of a pause, resume or cancel: the job's new state, in its own commit, so
/// that from then on the importer stores new rows the way the action leaves them. The job as
/// it was and whether the state changed; or the answer, when there is nothing to do.
pub(crate) async fn control_state(
    e: &mut impl Exec,
    id: Id,
    owner: Option<Id>,
    action: JobAction,
    now: Millis,
) -> Result<std::result::Result<(JobRecord, bool), JobControl>> {
    let Some(job) = get(e, id, true).await? else {
        return Ok(Err(JobControl::NotFound));
    };
    if owner.is_some_and(|o| o != job.owner_id) {
        return Ok(Err(JobControl::NotFound));
    }
    let next = match (action, job.state) {
        (JobAction::Pause, JobState::Running) => JobState::Paused,
        (JobAction::Resume, JobState::Paused) => JobState::Running,
        (JobAction::Cancel, JobState::Running | JobState::Paused) => JobState::Cancelled,
        // Repeating a pause or resume is harmless: answer with the job as it is.
        (JobAction::Pause, JobState::Paused) | (JobAction::Resume, JobState::Running) => {
            return Ok(Ok((job, false)))
        }
        (_, st) => return Ok(Err(JobControl::Invalid(st))),
    };
    let paused_at = (next == JobState::Paused).then_some(now);
    e.run(
        "UPDATE jobs SET state = $1, paused_at = $2, updated_at = $3 WHERE id = $4",
        args![next.as_str(), paused_at, now, id],
    )
    .await?;
    Ok(Ok((job, true)))
}

/// The next step: up to [`CONTROL_CHUNK`] of the job's waiting messages held, released or
/// cancelled; how many. `job` is the job as it was before [`control_state`].
pub(crate) async fn control_chunk(
    e: &mut impl Exec,
    job: &JobRecord,
    action: JobAction,
    now: Millis,
) -> Result<u64> {
    // Rows another node is changing are left to it.
    let skip = lock(e, " FOR UPDATE SKIP LOCKED");
    match action {
        JobAction::Pause => {
            let sql = format!(
                "UPDATE messages SET status = 'scheduled', due_at = due_at + $1
                 WHERE id IN (SELECT id FROM messages WHERE job_id = $2 AND status IN ('queued', 'scheduled')
                              AND due_at < $1 LIMIT $3{skip})"
            );
            e.run(&sql, args![PAUSE_SHIFT, job.id, CONTROL_CHUNK]).await
        }
        // A held message goes back to the queue with its place in the job's rate schedule
        // moved on by the time the job was paused.
        JobAction::Resume => {
            let pause_len = now - job.paused_at.unwrap_or(now);
            let sql = format!(
                "UPDATE messages SET due_at = due_at - $1 + $2,
                   status = CASE WHEN due_at - $1 + $2 <= $3 THEN 'queued' ELSE 'scheduled' END
                 WHERE id IN (SELECT id FROM messages WHERE job_id = $4 AND status = 'scheduled'
                              AND due_at >= $1 LIMIT $5{skip})"
            );
            e.run(
                &sql,
                args![PAUSE_SHIFT, pause_len, now, job.id, CONTROL_CHUNK],
            )
            .await
        }
        JobAction::Cancel => {
            let sql = format!(
                "UPDATE messages SET status = 'cancelled', done_at = $1, lease_until = NULL
                 WHERE id IN (SELECT id FROM messages WHERE job_id = $2 AND status IN ('queued', 'scheduled')
                              LIMIT $3{skip})
                 RETURNING id, callback_url IS NOT NULL OR email_from IS NOT NULL"
            );
            let cancelled = e
                .rows(&sql, args![now, job.id, CONTROL_CHUNK], |r| {
                    Ok((r.int(0)?, r.flag(1)?))
                })
                .await?;
            for &(message, events) in &cancelled {
                if events {
                    super::messages::queue_status_events(e, message, false, now).await?;
                }
            }
            Ok(cancelled.len() as u64)
        }
    }
}

/// A page of a job's messages in row order (ids above `after`).
pub(crate) async fn results(
    e: &mut impl Exec,
    job: Id,
    after: Id,
    limit: usize,
) -> Result<Vec<JobResultRow>> {
    e.rows(
        "SELECT id, job_row, recipient, status, error FROM messages
         WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        args![job, after, limit],
        |r| {
            Ok(JobResultRow {
                id: r.int(0)?,
                row: r.opt_int(1)?.unwrap_or(0),
                to: r.text(2)?,
                status: status_of(&r.text(3)?)?,
                error: r.opt_text(4)?,
            })
        },
    )
    .await
}

/// A page of a job's refused rows (rows above `after_row`).
pub(crate) async fn rejects(
    e: &mut impl Exec,
    job: Id,
    after_row: i64,
    limit: usize,
) -> Result<Vec<RowReject>> {
    e.rows(
        "SELECT row, kind, number, message FROM job_rejects
         WHERE job_id = $1 AND row > $2 ORDER BY row LIMIT $3",
        args![job, after_row, limit],
        |r| {
            Ok(RowReject {
                row: r.int(0)?,
                duplicate: r.text(1)? == "duplicate",
                number: r.text(2)?,
                message: r.text(3)?,
            })
        },
    )
    .await
}
