//! Outbound messages: accepted, claimed by the dispatcher, settled by what devices answer
//! and by delivery receipts; and the events a change of status queues.

use std::sync::{LazyLock, OnceLock};

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::exec::{args, id_list, row, Arg, Claim, Dialect, Exec, Row};
use crate::model::*;
use crate::{Result, StoreError};

/// A status UPDATE of one message, ending in its WHERE clause, in the forms [`set_status`]
/// chooses from: on SQLite, for the common message, which has neither a callback_url nor an
/// e-mail sender and so no events, and for any message; on PostgreSQL, one statement that
/// updates the message and queues its events, built on first use.
pub(crate) struct StatusUpdate {
    any: &'static str,
    plain: &'static str,
    /// The statement moves messages from `sending`: one that goes straight to delivered or
    /// undelivered also reports `sent` first.
    from_sending: bool,
    postgres: OnceLock<String>,
}

impl StatusUpdate {
    /// PostgreSQL's form: the UPDATE, its events queued from the rows it returns, the number
    /// of rows it changed. Node time is bound after the UPDATE's own parameters.
    fn postgres(&self) -> &str {
        self.postgres.get_or_init(|| {
            let now = format!("${}", placeholders(self.any) + 1);
            format!(
                "WITH m AS ({} RETURNING {EVENT_COLUMNS}), queued AS ({}) SELECT count(*) FROM m",
                self.any,
                status_events("m", &now, self.from_sending)
            )
        })
    }
}

/// A `&'static` [`StatusUpdate`]; `from_sending` as it says.
macro_rules! status_update {
    ($sql:literal, from_sending: $from_sending:literal) => {{
        static UPDATE: $crate::ops::messages::StatusUpdate = $crate::ops::messages::StatusUpdate {
            any: $sql,
            plain: concat!($sql, " AND callback_url IS NULL AND email_from IS NULL"),
            from_sending: $from_sending,
            postgres: OnceLock::new(),
        };
        &UPDATE
    }};
}

/// The highest `$N` in `sql`.
fn placeholders(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            rest[..digits].parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The columns of a message that its status events are made of.
pub(super) const EVENT_COLUMNS: &str = "id, status, callback_url, email_from, owner_id, api_key_id";

/// The rule of status events, as one `INSERT INTO deliveries … SELECT` from `source`, rows of
/// [`EVENT_COLUMNS`] after the change, at time `now`: the status callback when a message has
/// a callback_url (a `sent` one first when it went from `sending` straight to delivered or
/// undelivered), and the failure notice to the sender of a text from e-mail.
pub(super) fn status_events(source: &str, now: &str, from_sending: bool) -> String {
    let sent = if from_sending {
        format!(
            "SELECT 'webhook', 'message.status', callback_url, id, 'sent', owner_id, api_key_id, CAST({now} AS BIGINT), 0, CAST({now} AS BIGINT)
             FROM {source} WHERE callback_url IS NOT NULL AND status IN ('delivered', 'undelivered')
             UNION ALL "
        )
    } else {
        String::new()
    };
    format!(
        "INSERT INTO deliveries (channel, event, target, message_id, status, owner_id, api_key_id, next_at, give_up_at, created_at)
         {sent}SELECT 'webhook', 'message.status', callback_url, id, status, owner_id, api_key_id, CAST({now} AS BIGINT), 0, CAST({now} AS BIGINT)
         FROM {source} WHERE callback_url IS NOT NULL
         UNION ALL
         SELECT 'email', 'message.status', email_from, id, status, owner_id, NULL, CAST({now} AS BIGINT), 0, CAST({now} AS BIGINT)
         FROM {source} WHERE email_from IS NOT NULL AND status IN ('undelivered', 'failed', 'expired')"
    )
}

pub(crate) fn message_from_row(r: &dyn Row) -> Result<Message> {
    let status = r.text(8)?;
    let status = Status::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("a message has the unknown status {status}")))?;
    Ok(Message {
        id: r.int(0)?,
        owner_id: r.int(1)?,
        job_id: r.opt_int(2)?,
        to: r.text(3)?,
        from: r.opt_text(4)?,
        body: r.text(5)?,
        encoding: r.text(6)?,
        segments: r.int(7)?,
        status,
        priority: r.int(9)?,
        due_at: r.int(10)?,
        expires_at: r.int(11)?,
        attempts: r.int(12)?,
        device: r.opt_text(13)?,
        error_code: r.opt_text(14)?,
        error: r.opt_text(15)?,
        callback_url: r.opt_text(16)?,
        reference: r.opt_text(17)?,
        created_at: r.int(18)?,
        sent_at: r.opt_int(19)?,
        done_at: r.opt_int(20)?,
        origin: r.opt_text(21)?,
        api_key_id: r.opt_int(22)?,
        email_from: r.opt_text(23)?,
    })
}

/// Inserts one message row; its id.
pub(crate) async fn insert_row(e: &mut impl Exec, m: &NewMessage) -> Result<Id> {
    let status = m.initial_status();
    let claimed = status == Status::Sending;
    crate::exec::insert(
        e,
        "INSERT INTO messages (owner_id, job_id, recipient, sender, body, encoding, segments, status,
           priority, due_at, expires_at, callback_url, reference, created_at, lease_until, attempts,
           origin, api_key_id, email_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        args![
            m.owner_id,
            m.job_id,
            &m.to,
            &m.from,
            &m.body,
            &m.encoding,
            m.segments,
            status.as_str(),
            m.priority,
            m.schedule_at.unwrap_or(m.created_at),
            m.expires_at,
            &m.callback_url,
            &m.reference,
            m.created_at,
            m.claimed_until.filter(|_| claimed),
            i64::from(claimed),
            &m.origin,
            m.api_key_id,
            &m.email_from,
        ],
    )
    .await
}

/// Stores messages, or answers with the stored answer of an idempotency key.
pub(crate) async fn insert(
    e: &mut impl Exec,
    msgs: &[NewMessage],
    idem: &Option<Idempotency>,
    render: &RenderFn,
    now: Millis,
) -> Result<Inserted> {
    if let Some(k) = idem {
        // The key is claimed first: a concurrent request with the same key (another node's)
        // waits on it, then sees the committed answer.
        let fresh = e
            .run(
                "INSERT INTO idempotency (user_id, key, fingerprint, response, created_at)
                 VALUES ($1, $2, $3, '', $4) ON CONFLICT (user_id, key) DO NOTHING",
                args![k.user_id, &k.key, &k.fingerprint, now],
            )
            .await?;
        if fresh == 0 {
            let seen = row(
                e,
                "SELECT fingerprint, response FROM idempotency WHERE user_id = $1 AND key = $2",
                args![k.user_id, &k.key],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )
            .await?
            .ok_or_else(|| StoreError::backend("an idempotency key vanished"))?;
            return Ok(if seen.0 == k.fingerprint {
                Inserted::Replay { response: seen.1 }
            } else {
                Inserted::KeyReused
            });
        }
    }
    let mut ids = Vec::with_capacity(msgs.len());
    for m in msgs {
        ids.push(insert_row(e, m).await?);
    }
    let response = render(&ids);
    if let Some(k) = idem {
        e.run(
            "UPDATE idempotency SET response = $1 WHERE user_id = $2 AND key = $3",
            args![&response, k.user_id, &k.key],
        )
        .await?;
    }
    // Cloned, not moved: SQLite's writer may run this a second time (see `sqlite`).
    let stored = msgs
        .iter()
        .zip(&ids)
        .map(|(m, id)| m.clone().stored(*id))
        .collect();
    Ok(Inserted::New {
        ids,
        response,
        stored,
    })
}

pub(crate) async fn get(e: &mut impl Exec, id: Id) -> Result<Option<Message>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"));
    row(e, &SQL, args![id], message_from_row).await
}

/// Those that exist, in id order.
pub(crate) async fn by_ids(e: &mut impl Exec, ids: &[Id]) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({}) ORDER BY id",
        id_list(ids)
    );
    e.rows(&sql, args![], message_from_row).await
}

/// Newest first. Only the filter's conditions are in the statement, so that each shape gets
/// its own plan: an owner's messages are read from their index, everyone's from the primary
/// key. Times become id bounds (ids grow with acceptance time, see
/// [`super::web::first_message_since`]); a search reads the rows of the period until it
/// has a page.
pub(crate) async fn list(e: &mut impl Exec, f: &MessageFilter) -> Result<Vec<Message>> {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE 1 = 1");
    let mut args: Vec<Arg<'_>> = Vec::new();
    let since = match f.since {
        Some(t) => Some(super::web::first_message_since(e, t).await?),
        None => None,
    };
    let until = match f.until {
        Some(t) => Some(super::web::first_message_since(e, t).await?),
        None => None,
    };
    let search = f.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let (digits, text) = match search {
        Some(s)
            if s.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c)) =>
        {
            let d: String = s.chars().filter(char::is_ascii_digit).collect();
            (Some(format!("%{d}%")), None)
        }
        Some(s) => (None, Some(format!("%{}%", like_escape(&s.to_lowercase())))),
        None => (None, None),
    };
    // (The borrow of `digits` and `text` lives as long as `args`.)
    let (digits, text) = (digits.as_deref(), text.as_deref());
    if let Some(o) = f.owner_id {
        cond(&mut sql, &mut args, " AND owner_id = ?", Arg::Int(o));
    }
    if let Some(st) = f.status {
        // Written into the statement (a closed set of names): the partial indexes of the
        // failure statuses are used only for a status the planner can see.
        sql.push_str(&format!(" AND status = '{}'", st.as_str()));
    }
    if let Some(b) = f.before {
        cond(&mut sql, &mut args, " AND id < ?", Arg::Int(b));
    }
    if let Some(s) = since {
        cond(&mut sql, &mut args, " AND id >= ?", Arg::Int(s));
    }
    if let Some(u) = until {
        cond(&mut sql, &mut args, " AND id < ?", Arg::Int(u));
    }
    if let Some(d) = f.device.as_deref() {
        cond(&mut sql, &mut args, " AND device = ?", Arg::Text(d));
    }
    if let Some(d) = digits {
        cond(&mut sql, &mut args, " AND recipient LIKE ?", Arg::Text(d));
    }
    if let Some(t) = text {
        cond(
            &mut sql,
            &mut args,
            " AND lower(body) LIKE ? ESCAPE '\\'",
            Arg::Text(t),
        );
    }
    cond(
        &mut sql,
        &mut args,
        " ORDER BY id DESC LIMIT ?",
        Arg::Int(f.limit as i64),
    );
    e.rows(&sql, &args, message_from_row).await
}

/// Adds a condition whose one `?` is `value`, numbered after those already there.
fn cond<'a>(sql: &mut String, args: &mut Vec<Arg<'a>>, text: &str, value: Arg<'a>) {
    args.push(value);
    sql.push_str(&text.replace('?', &format!("${}", args.len())));
}

/// `s` with LIKE's wildcards (and the escape character) escaped by `\`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Cancels a message (`owner`'s, unless `None`) that no device has taken yet.
pub(crate) async fn cancel(
    e: &mut impl Exec,
    id: Id,
    owner: Option<Id>,
    now: Millis,
) -> Result<Cancel> {
    let Some(m) = get(e, id).await? else {
        return Ok(Cancel::NotFound);
    };
    if owner.is_some_and(|o| o != m.owner_id) {
        return Ok(Cancel::NotFound);
    }
    if !matches!(m.status, Status::Queued | Status::Scheduled) {
        return Ok(Cancel::TooLate(m.status));
    }
    // Only from where it was: a dispatcher on another node may have claimed it meanwhile.
    let applied = set_status(
        e,
        status_update!(
            "UPDATE messages SET status = 'cancelled', done_at = $1, lease_until = NULL
             WHERE id = $2 AND status IN ('queued', 'scheduled')",
            from_sending: false
        ),
        args![now, id],
        id,
    )
    .await?;
    let m = get(e, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a cancelled message vanished".into()))?;
    Ok(if applied {
        Cancel::Cancelled(Box::new(m))
    } else {
        Cancel::TooLate(m.status)
    })
}

/// Claims up to `limit` due queued messages, in priority order, under a lease.
pub(crate) async fn claim(
    e: &mut impl Exec,
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<Message>> {
    static CLAIM: Claim = Claim::new(|lock| {
        format!(
            "UPDATE messages SET status = 'sending', lease_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND due_at <= $2
                          ORDER BY priority, due_at, id LIMIT $3{lock})
             RETURNING {MESSAGE_COLUMNS}"
        )
    });
    let sql = CLAIM.sql(e.dialect());
    let mut out = e
        .rows(sql, args![lease_until, now, limit], message_from_row)
        .await?;
    out.sort_by_key(|m| (m.priority, m.due_at, m.id));
    Ok(out)
}

/// Extends the leases of messages still held at these attempts.
pub(crate) async fn renew_leases(
    e: &mut impl Exec,
    held: &[(Id, i64)],
    until: Millis,
) -> Result<u64> {
    if e.dialect() == Dialect::Postgres {
        return super::batch::renew_leases(e, held, until).await;
    }
    let mut n = 0;
    for (id, attempt) in held {
        n += e
            .run(
                "UPDATE messages SET lease_until = $1
                 WHERE id = $2 AND attempts = $3 AND status = 'sending' AND lease_until < $1",
                args![until, *id, *attempt],
            )
            .await?;
    }
    Ok(n)
}

/// Promotes due scheduled messages, requeues expired leases, and gives up on sent messages
/// whose receipt never came.
pub(crate) async fn maintain(e: &mut impl Exec, now: Millis) -> Result<Maintenance> {
    let promoted = e
        .run(
            "UPDATE messages SET status = 'queued' WHERE status = 'scheduled' AND due_at <= $1",
            args![now],
        )
        .await?;
    let requeued = if e.dialect() == Dialect::Postgres {
        super::batch::requeue_lost(e, now, LEASE_LOST).await?
    } else {
        // A claim whose worker stopped (a node died) is history too, written before the
        // UPDATE that would hide it; at most as many as the claims lost.
        e.run(
            "INSERT INTO message_attempts (message_id, attempt, device, at, outcome, code, error)
             SELECT id, attempts, NULL, $1, 'lease', NULL, $2 FROM messages
             WHERE status = 'sending' AND lease_until < $1",
            args![now, LEASE_LOST],
        )
        .await?;
        e.run(
            "UPDATE messages SET status = 'queued', lease_until = NULL, due_at = $1
             WHERE status = 'sending' AND lease_until < $1",
            args![now],
        )
        .await?
    };
    // Those with events are found first: after the UPDATE nothing tells them apart.
    let with_events: Vec<Id> = e
        .rows(
            "SELECT id FROM messages WHERE status = 'sent' AND expires_at < $1
               AND (callback_url IS NOT NULL OR email_from IS NOT NULL)",
            args![now - RECEIPT_GRACE_MS],
            |r| r.int(0),
        )
        .await?;
    let expired = e
        .run(
            "UPDATE messages SET status = 'expired', done_at = $1, error = $2
             WHERE status = 'sent' AND expires_at < $3",
            args![now, NO_RECEIPT_ERROR, now - RECEIPT_GRACE_MS],
        )
        .await?;
    for id in with_events {
        queue_status_events(e, id, false, now).await?;
    }
    Ok(Maintenance {
        promoted,
        requeued,
        expired,
    })
}

/// Records what devices did with claimed messages; each applies only if the message is
/// still held by that attempt.
pub(crate) async fn record_outcomes(e: &mut impl Exec, outcomes: &[Outcome]) -> Result<Vec<bool>> {
    if e.dialect() == Dialect::Postgres {
        return super::batch::record_outcomes(e, outcomes).await;
    }
    let mut applied = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        applied.push(record_outcome(e, o).await?);
    }
    Ok(applied)
}

pub(super) async fn record_outcome(e: &mut impl Exec, o: &Outcome) -> Result<bool> {
    match o {
        Outcome::Sent {
            id,
            attempt,
            device,
            part_ids,
            receipts,
            at,
        } => {
            let (status, done_at, code, error) = sent_with_receipts(receipts, part_ids.len(), *at);
            let applied = set_status(
                e,
                status_update!(
                    "UPDATE messages SET status = $1, device = $2, sent_at = $3, done_at = $4, lease_until = NULL,
                       error_code = $5, error = $6
                     WHERE id = $7 AND ((attempts = $8 AND status = 'sending')
                       OR ($8 = -1 AND status IN ('sending', 'queued')))",
                    from_sending: true
                ),
                args![status.as_str(), device, *at, done_at, &code, &error, *id, *attempt],
                *id,
            )
            .await?;
            if applied {
                for (i, pid) in part_ids.iter().enumerate() {
                    let r = receipts.get(i).and_then(Option::as_ref);
                    let state = r.map_or("sent", |r| {
                        if r.delivered {
                            "delivered"
                        } else {
                            "undelivered"
                        }
                    });
                    e.run(
                        "INSERT INTO message_parts
                           (message_id, part_no, device, device_msg_id, status, error_code, submitted_at, done_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (message_id, part_no) DO UPDATE SET device = excluded.device,
                           device_msg_id = excluded.device_msg_id, status = excluded.status,
                           error_code = excluded.error_code, submitted_at = excluded.submitted_at,
                           done_at = excluded.done_at",
                        args![
                            *id,
                            i as i64 + 1,
                            device,
                            pid,
                            state,
                            r.and_then(|r| r.code.as_deref()),
                            *at,
                            r.map(|r| r.at.max(*at)),
                        ],
                    )
                    .await?;
                }
            }
            Ok(applied)
        }
        Outcome::Retry {
            id,
            attempt,
            device,
            due_at,
            code,
            error,
            refund,
            ..
        } => {
            let applied = e
                .run(
                    "UPDATE messages SET status = 'queued', due_at = $1, lease_until = NULL,
                       device = coalesce($2, device), error_code = $3, error = $4, attempts = attempts - $5
                     WHERE id = $6 AND attempts = $7 AND status = 'sending'",
                    args![*due_at, device, code, error.as_str(), i64::from(*refund), *id, *attempt],
                )
                .await?
                > 0;
            // Only what a device did is history: a text waiting for a disabled device, or
            // put back unsent, is not an attempt.
            if applied && device.is_some() {
                record_attempt(e, o).await?;
            }
            Ok(applied)
        }
        Outcome::Final {
            id,
            attempt,
            status,
            device,
            code,
            error,
            at,
        } => {
            let applied = set_status(
                e,
                status_update!(
                    "UPDATE messages SET status = $1, done_at = $2, lease_until = NULL,
                       device = coalesce($3, device), error_code = $4, error = $5
                     WHERE id = $6 AND ((attempts = $7 AND status = 'sending')
                       OR ($7 = -1 AND status IN ('sending', 'queued')))",
                    from_sending: true
                ),
                args![
                    status.as_str(),
                    *at,
                    device,
                    code,
                    error.as_str(),
                    *id,
                    *attempt
                ],
                *id,
            )
            .await?;
            if applied {
                record_attempt(e, o).await?;
            }
            Ok(applied)
        }
    }
}

/// Keeps an attempt that did not end in a send (a retry or the end), for the message's
/// timeline.
async fn record_attempt(e: &mut impl Exec, o: &Outcome) -> Result<()> {
    let (id, attempt, device, at, outcome, code, error) = match o {
        Outcome::Sent { .. } => return Ok(()),
        // A late report names no attempt of the message's; its error is on the message.
        Outcome::Final { attempt, .. } if *attempt == crate::LATE => return Ok(()),
        Outcome::Retry {
            id,
            attempt,
            device,
            at,
            code,
            error,
            refund,
            ..
        } => {
            let outcome = if *refund { "throttled" } else { "retry" };
            (id, attempt, device, at, outcome, code, error)
        }
        Outcome::Final {
            id,
            attempt,
            status,
            device,
            code,
            error,
            at,
        } => (id, attempt, device, at, status.as_str(), code, error),
    };
    e.run(
        "INSERT INTO message_attempts (message_id, attempt, device, at, outcome, code, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![*id, *attempt, device, *at, outcome, code, error.as_str()],
    )
    .await?;
    Ok(())
}

/// A message's attempts that did not end in a send, oldest first (at most 100).
pub(crate) async fn attempts(e: &mut impl Exec, id: Id) -> Result<Vec<Attempt>> {
    e.rows(
        "SELECT attempt, device, at, outcome, code, error FROM message_attempts
         WHERE message_id = $1 ORDER BY at, attempt LIMIT 100",
        args![id],
        |r| {
            Ok(Attempt {
                attempt: r.int(0)?,
                device: r.opt_text(1)?,
                at: r.int(2)?,
                outcome: r.text(3)?,
                code: r.opt_text(4)?,
                error: r.opt_text(5)?,
            })
        },
    )
    .await
}

/// Applies delivery receipts to message parts, and to their messages when every part has
/// an answer.
pub(crate) async fn apply_receipts(
    e: &mut impl Exec,
    receipts: &[Receipt],
) -> Result<Vec<ReceiptMatch>> {
    if e.dialect() == Dialect::Postgres {
        return super::batch::apply_receipts(e, receipts).await;
    }
    let mut out = Vec::with_capacity(receipts.len());
    for r in receipts {
        out.push(apply_receipt(e, r).await?);
    }
    Ok(out)
}

pub(super) async fn apply_receipt(e: &mut impl Exec, r: &Receipt) -> Result<ReceiptMatch> {
    // Found first, then updated by its key: `UPDATE … RETURNING` would cost SQLite an
    // ephemeral table per receipt. An id the SMSC has used before belongs to the newest
    // part that has it.
    let hit = row(
        e,
        "SELECT message_id, part_no, submitted_at FROM message_parts
         WHERE device = $1 AND device_msg_id = $2 ORDER BY message_id DESC LIMIT 1",
        args![&r.device, &r.device_msg_id],
        |row| Ok((row.int(0)?, row.int(1)?, row.int(2)?)),
    )
    .await?;
    let Some((message_id, part_no, submitted_at)) = hit else {
        return Ok(ReceiptMatch::Unknown);
    };
    let state = if r.delivered {
        "delivered"
    } else {
        "undelivered"
    };
    // A receipt is never dated before its part's submit (it may be read first).
    e.run(
        "UPDATE message_parts SET status = $1, error_code = $2,
           done_at = CASE WHEN submitted_at > $3 THEN submitted_at ELSE $3 END
         WHERE message_id = $4 AND part_no = $5",
        args![state, &r.code, r.at, message_id, part_no],
    )
    .await?;
    // The common case, a one-part message: its part's receipt is the message's.
    let st = if r.delivered {
        Status::Delivered
    } else {
        Status::Undelivered
    };
    let error = (!r.delivered).then(|| undelivered_error(r.code.as_deref()));
    let code = r.code.as_deref().filter(|_| !r.delivered);
    let single = set_status(
        e,
        status_update!(
            "UPDATE messages SET status = $1, done_at = CASE WHEN sent_at > $2 THEN sent_at ELSE $2 END,
               error_code = coalesce($3, error_code), error = coalesce($4, error)
             WHERE id = $5 AND status = 'sent' AND segments = 1",
            from_sending: false
        ),
        args![st.as_str(), r.at, code, &error, message_id],
        message_id,
    )
    .await?;
    if single {
        return Ok(ReceiptMatch::Part {
            message_id,
            status: Some(st),
            submitted_at,
        });
    }
    Ok(ReceiptMatch::Part {
        message_id,
        status: settle_from_parts(e, message_id, r).await?,
        submitted_at,
    })
}

/// After receipt `r` was written to a part of message `message_id` (other than a one-part
/// message just settled): settles the message if its parts now say how it ended; the status
/// it changed to, if any.
pub(super) async fn settle_from_parts(
    e: &mut impl Exec,
    message_id: Id,
    r: &Receipt,
) -> Result<Option<Status>> {
    let code = r.code.as_deref().filter(|_| !r.delivered);
    let (segments, delivered, undelivered) = row(
        e,
        "SELECT m.segments,
                count(*) FILTER (WHERE p.status = 'delivered'),
                count(*) FILTER (WHERE p.status = 'undelivered')
         FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id
         WHERE m.id = $1 GROUP BY m.id",
        args![message_id],
        |row| Ok((row.int(0)?, row.int(1)?, row.int(2)?)),
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("a message with a part vanished".into()))?;
    let mut changed = None;
    if let Some(st) = status_from_parts(segments, delivered, undelivered) {
        let error = (st == Status::Undelivered).then(|| undelivered_error(r.code.as_deref()));
        let applied = set_status(
            e,
            status_update!(
                "UPDATE messages SET status = $1, done_at = CASE WHEN sent_at > $2 THEN sent_at ELSE $2 END,
                   error_code = coalesce($3, error_code), error = coalesce($4, error)
                 WHERE id = $5 AND status = 'sent'",
                from_sending: false
            ),
            args![st.as_str(), r.at, code, &error, message_id],
            message_id,
        )
        .await?;
        if applied {
            changed = Some(st);
        }
    }
    Ok(changed)
}

/// Parts `device` took that still wait for a receipt, of messages above `after`.
pub(crate) async fn unreceipted_parts(
    e: &mut impl Exec,
    device: &str,
    after: Id,
    limit: usize,
) -> Result<Vec<(Id, String)>> {
    e.rows(
        "SELECT p.message_id, p.device_msg_id FROM messages m JOIN message_parts p ON p.message_id = m.id
         WHERE p.device = $1 AND m.status = 'sent' AND m.id > $2 AND p.status = 'sent'
         ORDER BY m.id, p.part_no LIMIT $3",
        args![device, after, limit],
        |r| Ok((r.int(0)?, r.text(1)?)),
    )
    .await
}

pub(crate) async fn parts(e: &mut impl Exec, id: Id) -> Result<Vec<Part>> {
    e.rows(
        "SELECT part_no, device, device_msg_id, status, error_code, submitted_at, done_at
         FROM message_parts WHERE message_id = $1 ORDER BY part_no",
        args![id],
        |r| {
            Ok(Part {
                part_no: r.int(0)?,
                device: r.text(1)?,
                device_msg_id: r.text(2)?,
                status: r.text(3)?,
                error_code: r.opt_text(4)?,
                submitted_at: r.int(5)?,
                done_at: r.opt_int(6)?,
            })
        },
    )
    .await
}

/// How many messages wait in each non-final, non-sent status.
pub(crate) async fn queue_depth(e: &mut impl Exec) -> Result<Vec<(Status, i64)>> {
    let mut out = Vec::new();
    for st in [Status::Queued, Status::Scheduled, Status::Sending] {
        // The status is written into the statement, not bound: SQLite answers each count
        // from that status's partial index only when it can see the value.
        let sql = format!(
            "SELECT count(*) FROM messages WHERE status = '{}'",
            st.as_str()
        );
        out.push((st, crate::exec::int(e, &sql, args![]).await?));
    }
    Ok(out)
}

/// Runs a status UPDATE of message `id` and queues the events of the change, if it has
/// any; `false` when the UPDATE matched nothing.
///
/// SQLite runs the plain form first, so the common message costs one UPDATE, and a message
/// with events two and the statement that queues them (`RETURNING` would say which it was,
/// but SQLite fills an ephemeral table for it, which costs more than a second UPDATE of the
/// few messages with events). PostgreSQL runs one statement for all of it: each statement
/// is a round trip.
pub(crate) async fn set_status(
    e: &mut impl Exec,
    update: &'static StatusUpdate,
    args: &[Arg<'_>],
    id: Id,
) -> Result<bool> {
    let now = textgate_core::clock::now_ms();
    match e.dialect() {
        Dialect::Sqlite => {
            if e.run(update.plain, args).await? > 0 {
                return Ok(true);
            }
            if e.run(update.any, args).await? == 0 {
                return Ok(false);
            }
            queue_status_events(e, id, update.from_sending, now).await?;
            Ok(true)
        }
        Dialect::Postgres => {
            let mut all = Vec::with_capacity(args.len() + 1);
            all.extend_from_slice(args);
            all.push(Arg::Int(now));
            Ok(crate::exec::int(e, update.postgres(), &all).await? > 0)
        }
    }
}

/// Queues the events of the status change just written to message `id`: its status
/// callback when it has a callback_url (a `sent` one first when it went from `sending`
/// straight to delivered or undelivered), and the failure notice to the sender of a text
/// from e-mail.
///
/// Every statement that changes a status calls this (through [`set_status`], or itself
/// for several rows at once). Triggers did it until SQLite's schema version 5 and
/// PostgreSQL's 6, but SQLite runs a trigger's program on every row an UPDATE OF status
/// touches, whatever its WHEN says: a fifth of the writer's instructions per message, with
/// no callbacks at all; and one place for the rule serves both databases.
pub(crate) async fn queue_status_events(
    e: &mut impl Exec,
    id: Id,
    from_sending: bool,
    now: Millis,
) -> Result<()> {
    fn sql(from_sending: bool) -> String {
        status_events(
            &format!("(SELECT {EVENT_COLUMNS} FROM messages WHERE id = $2) m"),
            "$1",
            from_sending,
        )
    }
    static FROM_SENDING: LazyLock<String> = LazyLock::new(|| sql(true));
    static OTHER: LazyLock<String> = LazyLock::new(|| sql(false));
    let sql = if from_sending { &FROM_SENDING } else { &OTHER };
    e.run(sql, args![now, id]).await?;
    Ok(())
}
