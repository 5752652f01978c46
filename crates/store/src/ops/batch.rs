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

use textgate_core::status::Status;

use crate::exec::{args, Arg, Exec};
use crate::model::*;
use crate::Result;

use super::messages::{record_outcome, status_events, EVENT_COLUMNS};

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
    let (mut id, mut attempt, mut status, mut device) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut at, mut done_at, mut code, mut error) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut p_msg = Vec::new();
    let mut p_no = Vec::new();
    let mut p_device = Vec::new();
    let mut p_id = Vec::new();
    let mut p_state = Vec::new();
    let mut p_code = Vec::new();
    let mut p_at = Vec::new();
    let mut p_done = Vec::new();
    for o in sent {
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
    Ok(id
        .iter()
        .map(|i| i.is_some_and(|i| done.contains(&i)))
        .collect())
}
