//! PostgreSQL's set-based forms of the hottest writes: many messages stored, many outcomes
//! recorded, each in one statement over arrays (`unnest`), where the row-at-a-time forms of
//! [`super::messages`] cost a round trip and a statement's overhead per row. SQLite runs
//! those row-at-a-time forms inside its writer's one transaction, where a statement costs
//! microseconds and no round trip, so it has no use for these.
//!
//! Each does exactly what the row-at-a-time form does for the same input; the conformance
//! suite runs both backends over the same cases.

use std::collections::HashSet;
use std::sync::LazyLock;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::exec::{args, Arg, Exec};
use crate::model::*;
use crate::Result;

use super::messages::{
    apply_receipt, record_outcome, settle_from_parts, status_events, EVENT_COLUMNS,
};

/// Stores `msgs` in two statements: their ids, taken in one go from the table's sequence
/// (so that which id is whose never depends on the order `RETURNING` gives), then one
/// INSERT of every row. Run outside a transaction, the INSERT is one commit.
pub(crate) async fn insert_messages(e: &mut impl Exec, msgs: &[&NewMessage]) -> Result<Vec<Id>> {
    if msgs.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = e
        .rows(
            "SELECT nextval('messages_id_seq') FROM generate_series(1, $1)",
            args![msgs.len()],
            |r| r.int(0),
        )
        .await?;
    ids.sort_unstable();
    let col_i = |f: &dyn Fn(&NewMessage) -> Option<i64>| -> Vec<Option<i64>> {
        msgs.iter().map(|m| f(m)).collect()
    };
    let statuses: Vec<_> = msgs.iter().map(|m| m.initial_status()).collect();
    let id_col: Vec<Option<i64>> = ids.iter().copied().map(Some).collect();
    let owner = col_i(&|m| Some(m.owner_id));
    let job = col_i(&|m| m.job_id);
    let segments = col_i(&|m| Some(m.segments));
    let priority = col_i(&|m| Some(m.priority));
    let due = col_i(&|m| Some(m.schedule_at.unwrap_or(m.created_at)));
    let expires = col_i(&|m| Some(m.expires_at));
    let created = col_i(&|m| Some(m.created_at));
    let lease: Vec<Option<i64>> = msgs
        .iter()
        .zip(&statuses)
        .map(|(m, st)| m.claimed_until.filter(|_| *st == Status::Sending))
        .collect();
    let attempts: Vec<Option<i64>> = statuses
        .iter()
        .map(|st| Some(i64::from(*st == Status::Sending)))
        .collect();
    let api_key = col_i(&|m| m.api_key_id);
    let text = |f: &dyn for<'m> Fn(&'m NewMessage) -> Option<&'m str>| -> Vec<Option<&str>> {
        msgs.iter().map(|m| f(m)).collect()
    };
    let recipient = text(&|m| Some(&m.to));
    let sender = text(&|m| m.from.as_deref());
    let body = text(&|m| Some(&m.body));
    let encoding = text(&|m| Some(&m.encoding));
    let status: Vec<Option<&str>> = statuses.iter().map(|st| Some(st.as_str())).collect();
    let callback = text(&|m| m.callback_url.as_deref());
    let reference = text(&|m| m.reference.as_deref());
    let origin = text(&|m| m.origin.as_deref());
    let email_from = text(&|m| m.email_from.as_deref());
    e.run(
        "INSERT INTO messages (id, owner_id, job_id, recipient, sender, body, encoding, segments,
           status, priority, due_at, expires_at, callback_url, reference, created_at, lease_until,
           attempts, origin, api_key_id, email_from)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
           $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[],
           $12::bigint[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::bigint[],
           $18::text[], $19::bigint[], $20::text[])",
        &[
            Arg::Ints(&id_col),
            Arg::Ints(&owner),
            Arg::Ints(&job),
            Arg::Texts(&recipient),
            Arg::Texts(&sender),
            Arg::Texts(&body),
            Arg::Texts(&encoding),
            Arg::Ints(&segments),
            Arg::Texts(&status),
            Arg::Ints(&priority),
            Arg::Ints(&due),
            Arg::Ints(&expires),
            Arg::Texts(&callback),
            Arg::Texts(&reference),
            Arg::Ints(&created),
            Arg::Ints(&lease),
            Arg::Ints(&attempts),
            Arg::Texts(&origin),
            Arg::Ints(&api_key),
            Arg::Texts(&email_from),
        ],
    )
    .await?;
    Ok(ids)
}

/// Records outcomes as [`super::messages::record_outcomes`] does, in order: each run of
/// `Sent` outcomes of different messages in one statement, anything else row by row. (Two
/// outcomes of one message in a run would both match the UPDATE's one row, and only one
/// would be told apart; the second starts a new run and sees what the first did.)
pub(crate) async fn record_outcomes(e: &mut impl Exec, outcomes: &[Outcome]) -> Result<Vec<bool>> {
    let mut applied = Vec::with_capacity(outcomes.len());
    let mut run: Vec<&Outcome> = Vec::new();
    let mut ids = HashSet::new();
    for o in outcomes {
        match o {
            Outcome::Sent { id, .. } if ids.insert(*id) => run.push(o),
            Outcome::Sent { id, .. } => {
                applied.extend(record_sent(e, &run).await?);
                run.clear();
                ids.clear();
                ids.insert(*id);
                run.push(o);
            }
            _ => {
                applied.extend(record_sent(e, &run).await?);
                run.clear();
                ids.clear();
                applied.push(record_outcome(e, o).await?);
            }
        }
    }
    applied.extend(record_sent(e, &run).await?);
    Ok(applied)
}

/// `Sent` outcomes of different messages in one statement: the messages updated where the
/// attempt still holds them, their status events queued, their parts written; which applied.
///
/// `id = ANY($1)` beside the join has the messages read by their key whatever the table's
/// size: joined to the array alone, a small table's plan reads every row of it.
async fn record_sent(e: &mut impl Exec, sent: &[&Outcome]) -> Result<Vec<bool>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH v AS (
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                 $6::bigint[], $7::text[], $8::text[])
                 AS v(v_id, v_attempt, v_status, v_device, v_at, v_done_at, v_code, v_error)),
             m AS (
               UPDATE messages SET status = v_status, device = v_device, sent_at = v_at,
                 done_at = v_done_at, lease_until = NULL, error_code = v_code, error = v_error
               FROM v WHERE id = ANY($1::bigint[]) AND id = v_id
                 AND ((attempts = v_attempt AND status = 'sending')
                 OR (v_attempt = -1 AND status IN ('sending', 'queued')))
               RETURNING {EVENT_COLUMNS}),
             queued AS ({}),
             parts AS (
               INSERT INTO message_parts
                 (message_id, part_no, device, device_msg_id, status, error_code, submitted_at, done_at)
               SELECT * FROM unnest($10::bigint[], $11::bigint[], $12::text[], $13::text[],
                 $14::text[], $15::text[], $16::bigint[], $17::bigint[])
                 AS p(message_id, part_no, device, device_msg_id, status, error_code, submitted_at, done_at)
               WHERE message_id IN (SELECT id FROM m)
               ON CONFLICT (message_id, part_no) DO UPDATE SET device = excluded.device,
                 device_msg_id = excluded.device_msg_id, status = excluded.status,
                 error_code = excluded.error_code, submitted_at = excluded.submitted_at,
                 done_at = excluded.done_at)
             SELECT id FROM m",
            status_events("m", "$9", true)
        )
    });
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    let n = sent.len();
    let mut sorted = sent.to_vec();
    sorted.sort_by_key(|o| match o {
        Outcome::Sent { id, .. } => *id,
        _ => 0,
    });
    // One array per column, in id order: the messages' eight, then their parts' eight.
    let mut id = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut device = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut done_at = Vec::with_capacity(n);
    let mut code = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut p_msg = Vec::new();
    let mut p_no = Vec::new();
    let mut p_device = Vec::new();
    let mut p_id = Vec::new();
    let mut p_state = Vec::new();
    let mut p_code = Vec::new();
    let mut p_at = Vec::new();
    let mut p_done = Vec::new();
    for o in &sorted {
        let Outcome::Sent {
            id: mid,
            attempt: a,
            device: d,
            part_ids,
            receipts,
            at: t,
        } = o
        else {
            continue;
        };
        let (st, done, c, err) = sent_with_receipts(receipts, part_ids.len(), *t);
        id.push(Some(*mid));
        attempt.push(Some(*a));
        status.push(Some(st.as_str()));
        device.push(Some(d.as_str()));
        at.push(Some(*t));
        done_at.push(done);
        code.push(c);
        error.push(err);
        for (i, pid) in part_ids.iter().enumerate() {
            let r = receipts.get(i).and_then(Option::as_ref);
            p_msg.push(Some(*mid));
            p_no.push(Some(i as i64 + 1));
            p_device.push(Some(d.as_str()));
            p_id.push(Some(pid.as_str()));
            p_state.push(Some(r.map_or("sent", |r| {
                if r.delivered {
                    "delivered"
                } else {
                    "undelivered"
                }
            })));
            p_code.push(r.and_then(|r| r.code.as_deref()));
            p_at.push(Some(*t));
            p_done.push(r.map(|r| r.at.max(*t)));
        }
    }
    let code: Vec<Option<&str>> = code.iter().map(Option::as_deref).collect();
    let error: Vec<Option<&str>> = error.iter().map(Option::as_deref).collect();
    let now = textgate_core::clock::now_ms();
    let done: HashSet<Id> = e
        .rows(
            &SQL,
            &[
                Arg::Ints(&id),
                Arg::Ints(&attempt),
                Arg::Texts(&status),
                Arg::Texts(&device),
                Arg::Ints(&at),
                Arg::Ints(&done_at),
                Arg::Texts(&code),
                Arg::Texts(&error),
                Arg::Int(now),
                Arg::Ints(&p_msg),
                Arg::Ints(&p_no),
                Arg::Texts(&p_device),
                Arg::Texts(&p_id),
                Arg::Texts(&p_state),
                Arg::Texts(&p_code),
                Arg::Ints(&p_at),
                Arg::Ints(&p_done),
            ],
            |r| r.int(0),
        )
        .await?
        .into_iter()
        .collect();
    Ok(sent
        .iter()
        .map(|o| matches!(o, Outcome::Sent { id, .. } if done.contains(id)))
        .collect())
}

/// [`super::messages::renew_leases`] in one statement.
///
/// The statements here that change several rows of `messages` lock them in id order (their
/// arrays sorted by id, read through `id = ANY`), or skip locked rows, so that two of them
/// under way at once on two nodes never wait on each other in a circle.
pub(crate) async fn renew_leases(
    e: &mut impl Exec,
    held: &[(Id, i64)],
    until: Millis,
) -> Result<u64> {
    let ids: Vec<Option<i64>> = held.iter().map(|(id, _)| Some(*id)).collect();
    let attempts: Vec<Option<i64>> = held.iter().map(|(_, a)| Some(*a)).collect();
    // A row another transaction has locked (its outcome being recorded) is skipped, never
    // waited for: waiting here could deadlock with it.
    e.run(
        "UPDATE messages SET lease_until = $1 WHERE id IN (
           SELECT id FROM messages JOIN unnest($2::bigint[], $3::bigint[]) AS v(v_id, v_attempt)
             ON id = v_id AND attempts = v_attempt
           WHERE id = ANY($2::bigint[]) AND status = 'sending' AND lease_until < $1
           FOR UPDATE OF messages SKIP LOCKED)",
        &[Arg::Int(until), Arg::Ints(&ids), Arg::Ints(&attempts)],
    )
    .await
}

/// Applies receipts as [`super::messages::apply_receipts`] does, a run at a time (a run
/// ends before a receipt for a part already named in it): which part each receipt names in
/// one statement; then the parts and one-part messages of the receipts that name a message
/// no other receipt of the run names, in one statement; what is left row by row (a message
/// of several parts, whose parts' receipts settle it together).
pub(crate) async fn apply_receipts(
    e: &mut impl Exec,
    receipts: &[Receipt],
) -> Result<Vec<ReceiptMatch>> {
    let mut out = Vec::with_capacity(receipts.len());
    let mut start = 0;
    let mut keys = HashSet::new();
    for (i, r) in receipts.iter().enumerate() {
        if !keys.insert((r.device.as_str(), r.device_msg_id.as_str())) {
            out.extend(apply_run(e, &receipts[start..i]).await?);
            start = i;
            keys.clear();
            keys.insert((r.device.as_str(), r.device_msg_id.as_str()));
        }
    }
    out.extend(apply_run(e, &receipts[start..]).await?);
    Ok(out)
}

async fn apply_run(e: &mut impl Exec, run: &[Receipt]) -> Result<Vec<ReceiptMatch>> {
    static SETTLE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH v AS (
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                 $6::text[], $7::text[], $8::text[])
                 AS v(v_id, v_part, v_state, v_code, v_at, v_status, v_mcode, v_error)),
             parts AS (
               UPDATE message_parts SET status = v_state, error_code = v_code,
                 done_at = CASE WHEN submitted_at > v_at THEN submitted_at ELSE v_at END
               FROM v WHERE message_id = ANY($1::bigint[]) AND message_id = v_id AND part_no = v_part),
             m AS (
               UPDATE messages SET status = v_status,
                 done_at = CASE WHEN sent_at > v_at THEN sent_at ELSE v_at END,
                 error_code = coalesce(v_mcode, error_code), error = coalesce(v_error, error)
               FROM v WHERE id = ANY($1::bigint[]) AND id = v_id AND status = 'sent' AND segments = 1
               RETURNING {EVENT_COLUMNS}),
             queued AS ({})
             SELECT id, true FROM m
             UNION ALL SELECT id, false FROM messages WHERE id = ANY($1::bigint[]) AND segments > 1",
            status_events("m", "$9", false)
        )
    });
    if run.is_empty() {
        return Ok(Vec::new());
    }
    let devices: Vec<Option<&str>> = run.iter().map(|r| Some(r.device.as_str())).collect();
    let msg_ids: Vec<Option<&str>> = run.iter().map(|r| Some(r.device_msg_id.as_str())).collect();
    let mut hits: Vec<Option<(Id, i64)>> = vec![None; run.len()];
    // When each hit part was submitted, for the receipt's delay.
    let mut submitted: Vec<Millis> = vec![0; run.len()];
    for (n, message_id, part_no, submitted_at) in e
        .rows(
            "SELECT r.n, p.message_id, p.part_no, p.submitted_at
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(device, msg_id, n)
             CROSS JOIN LATERAL (
               SELECT message_id, part_no, submitted_at FROM message_parts
               WHERE device = r.device AND device_msg_id = r.msg_id
               ORDER BY message_id DESC LIMIT 1) p",
            &[Arg::Texts(&devices), Arg::Texts(&msg_ids)],
            |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?)),
        )
        .await?
    {
        if let Some(i) = usize::try_from(n - 1).ok().filter(|&i| i < hits.len()) {
            hits[i] = Some((message_id, part_no));
            submitted[i] = submitted_at;
        }
    }
    let mut named: std::collections::HashMap<Id, usize> = std::collections::HashMap::new();
    for (message_id, _) in hits.iter().flatten() {
        *named.entry(*message_id).or_default() += 1;
    }
    let alone = |h: &Option<(Id, i64)>| h.is_some_and(|(m, _)| named.get(&m) == Some(&1));
    // The receipts that name a message alone, in one statement.
    let (mut id, mut part, mut state, mut code, mut at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut status, mut mcode, mut error) = (Vec::new(), Vec::new(), Vec::new());
    let mut order: Vec<(&Receipt, &Option<(Id, i64)>)> = run.iter().zip(&hits).collect();
    order.sort_by_key(|(_, h)| h.map(|(m, _)| m));
    for (r, h) in order {
        let Some((message_id, part_no)) = h.filter(|_| alone(h)) else {
            continue;
        };
        id.push(Some(message_id));
        part.push(Some(part_no));
        state.push(Some(if r.delivered {
            "delivered"
        } else {
            "undelivered"
        }));
        code.push(r.code.as_deref());
        at.push(Some(r.at));
        status.push(Some(if r.delivered {
            "delivered"
        } else {
            "undelivered"
        }));
        mcode.push(r.code.as_deref().filter(|_| !r.delivered));
        error.push((!r.delivered).then(|| undelivered_error(r.code.as_deref())));
    }
    let mut settled = std::collections::HashMap::new();
    if !id.is_empty() {
        let error: Vec<Option<&str>> = error.iter().map(Option::as_deref).collect();
        let now = textgate_core::clock::now_ms();
        for (message_id, one_part) in e
            .rows(
                &SETTLE,
                &[
                    Arg::Ints(&id),
                    Arg::Ints(&part),
                    Arg::Texts(&state),
                    Arg::Texts(&code),
                    Arg::Ints(&at),
                    Arg::Texts(&status),
                    Arg::Texts(&mcode),
                    Arg::Texts(&error),
                    Arg::Int(now),
                ],
                |r| Ok((r.int(0)?, r.flag(1)?)),
            )
            .await?
        {
            settled.insert(message_id, one_part);
        }
    }
    let mut out = Vec::with_capacity(run.len());
    for ((r, h), &submitted_at) in run.iter().zip(&hits).zip(&submitted) {
        let Some((message_id, _)) = *h else {
            out.push(ReceiptMatch::Unknown);
            continue;
        };
        if !alone(h) {
            // Its message's other parts have receipts in this run too: in order, row by row.
            out.push(apply_receipt(e, r).await?);
            continue;
        }
        let status = match settled.get(&message_id) {
            // A one-part message settled by its receipt.
            Some(true) => Some(if r.delivered {
                Status::Delivered
            } else {
                Status::Undelivered
            }),
            // A message of several parts: settled if its parts now say so.
            Some(false) => settle_from_parts(e, message_id, r).await?,
            // A one-part message settled before.
            None => None,
        };
        out.push(ReceiptMatch::Part {
            message_id,
            status,
            submitted_at,
        });
    }
    Ok(out)
}

/// The queue's upkeep of lost claims ([`super::messages::maintain`]) in one statement: messages
/// whose lease ran out back to the queue, each with its lost attempt written to its history.
/// A row another transaction has locked is skipped (its outcome is being recorded), and
/// looked at again on the next pass.
pub(crate) async fn requeue_lost(e: &mut impl Exec, now: Millis, error: &str) -> Result<u64> {
    crate::exec::int(
        e,
        "WITH lost AS (
           SELECT id FROM messages WHERE status = 'sending' AND lease_until < $1
           ORDER BY id FOR UPDATE SKIP LOCKED),
         r AS (
           UPDATE messages SET status = 'queued', lease_until = NULL, due_at = $1
           WHERE id IN (SELECT id FROM lost) RETURNING id, attempts),
         a AS (
           INSERT INTO message_attempts (message_id, attempt, device, at, outcome, code, error)
           SELECT id, attempts, NULL, $1, 'lease', NULL, $2 FROM r)
         SELECT count(*) FROM r",
        &[Arg::Int(now), Arg::Text(error)],
    )
    .await
    .map(|n| u64::try_from(n).unwrap_or(0))
}
