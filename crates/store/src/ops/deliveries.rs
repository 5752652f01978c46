//! Deliveries: webhook POSTs and e-mails queued by inbound texts and status changes, claimed
//! by their senders, settled, kept as dead letters and replayed.

use std::sync::LazyLock;

use textgate_core::clock::Millis;

use crate::exec::{args, row, Claim, Exec, Row};
use crate::model::*;
use crate::Result;

fn delivery_from_row(r: &dyn Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.int(0)?,
        channel: r.text(1)?,
        event: r.text(2)?,
        target: r.text(3)?,
        inbound_id: r.opt_int(4)?,
        message_id: r.opt_int(5)?,
        status: r.opt_text(6)?,
        owner_id: r.opt_int(7)?,
        api_key_id: r.opt_int(8)?,
        state: r.text(9)?,
        attempts: r.int(10)?,
        next_at: r.int(11)?,
        give_up_at: r.int(12)?,
        last_code: r.opt_int(13)?,
        last_error: r.opt_text(14)?,
        created_at: r.int(15)?,
        done_at: r.opt_int(16)?,
    })
}

/// Claims up to `limit` due pending deliveries of a channel, under a lease.
pub(crate) async fn claim(
    e: &mut impl Exec,
    channel: &str,
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<Delivery>> {
    static CLAIM: Claim = Claim::new(|lock| {
        format!(
            "UPDATE deliveries SET next_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND channel = $2
                          AND next_at <= $3 ORDER BY next_at, id LIMIT $4{lock})
             RETURNING {DELIVERY_COLUMNS}"
        )
    });
    let sql = CLAIM.sql(e.dialect());
    let mut out = e
        .rows(
            sql,
            args![lease_until, channel, now, limit],
            delivery_from_row,
        )
        .await?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}

/// Records attempts; each applies only if its claim still holds, and goes in the log.
pub(crate) async fn finish(e: &mut impl Exec, results: &[DeliveryResult]) -> Result<()> {
    for r in results {
        let applied = match r {
            DeliveryResult::Delivered {
                id,
                attempt,
                code,
                at,
            } => {
                e.run(
                    "UPDATE deliveries SET state = 'delivered', last_code = $1, last_error = NULL, done_at = $2
                     WHERE id = $3 AND attempts = $4 AND state = 'pending'",
                    args![*code, *at, *id, *attempt],
                )
                .await?
            }
            DeliveryResult::Retry {
                id,
                attempt,
                code,
                error,
                next_at,
                ..
            } => {
                e.run(
                    "UPDATE deliveries SET next_at = $1, last_code = $2, last_error = $3
                     WHERE id = $4 AND attempts = $5 AND state = 'pending'",
                    args![*next_at, *code, error, *id, *attempt],
                )
                .await?
            }
            DeliveryResult::Dead {
                id,
                attempt,
                code,
                error,
                at,
            } => {
                e.run(
                    "UPDATE deliveries SET state = 'dead', last_code = $1, last_error = $2, done_at = $3
                     WHERE id = $4 AND attempts = $5 AND state = 'pending'",
                    args![*code, error, *at, *id, *attempt],
                )
                .await?
            }
            DeliveryResult::Deferred {
                id,
                attempt,
                next_at,
            } => {
                e.run(
                    "UPDATE deliveries SET next_at = $1, attempts = attempts - 1
                     WHERE id = $2 AND attempts = $3 AND state = 'pending'",
                    args![*next_at, *id, *attempt],
                )
                .await?
            }
        };
        if let (true, Some((id, attempt, at, code, error))) = (applied > 0, r.log_entry()) {
            e.run(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, code, error)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                args![id, attempt, at, code, error],
            )
            .await?;
        }
    }
    Ok(())
}

/// Every attempt of a delivery, in order.
pub(crate) async fn attempts(e: &mut impl Exec, id: Id) -> Result<Vec<DeliveryAttempt>> {
    e.rows(
        "SELECT attempt, at, code, error FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        args![id],
        |r| {
            Ok(DeliveryAttempt {
                attempt: r.int(0)?,
                at: r.int(1)?,
                code: r.opt_int(2)?,
                error: r.opt_text(3)?,
            })
        },
    )
    .await
}

/// Newest first.
pub(crate) async fn list(e: &mut impl Exec, f: &DeliveryFilter) -> Result<Vec<Delivery>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) AND (CAST($2 AS BIGINT) IS NULL OR owner_id = $2)
               AND (CAST($3 AS BIGINT) IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        )
    });
    e.rows(
        &SQL,
        args![&f.state, f.owner_id, f.before, f.limit],
        delivery_from_row,
    )
    .await
}

pub(crate) async fn get(e: &mut impl Exec, id: Id) -> Result<Option<Delivery>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"));
    row(e, &SQL, args![id], delivery_from_row).await
}

/// Makes a dead delivery pending again, retried until `give_up_at`.
pub(crate) async fn replay(
    e: &mut impl Exec,
    id: Id,
    now: Millis,
    give_up_at: Millis,
) -> Result<Option<Delivery>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE deliveries SET state = 'pending', next_at = $1, give_up_at = $2, done_at = NULL
             WHERE id = $3 AND state = 'dead' RETURNING {DELIVERY_COLUMNS}"
        )
    });
    row(e, &SQL, args![now, give_up_at, id], delivery_from_row).await
}
