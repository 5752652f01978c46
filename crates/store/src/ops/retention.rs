//! Retention: batches of old rows deleted, or their text stripped (`[retention]`).

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::exec::{args, id_list, Exec};
use crate::model::*;
use crate::Result;

/// One batch of a retention pass: see [`crate::Store::purge`].
pub(crate) async fn purge(e: &mut impl Exec, batch: &PurgeBatch) -> Result<Purged> {
    let scan = purge_scan(batch);
    let rows = e
        .rows(&scan, args![batch.after, batch.limit], |r| {
            Ok((r.int(0)?, r.int(1)?, r.flag(2)?))
        })
        .await?;
    let (ids, next) = purge_plan(&rows, batch);
    if !ids.is_empty() {
        // Children first, by hand: SQLite does not enforce foreign keys (see `sqlite`), and
        // on PostgreSQL the cascades then find nothing left to do.
        let list = id_list(&ids);
        let sql = match (batch.what, batch.strip) {
            (Purge::Messages, true) => format!("UPDATE messages SET body = '' WHERE id IN ({list})"),
            (Purge::Inbound, true) => format!("UPDATE inbound SET body = '' WHERE id IN ({list})"),
            (Purge::Messages, false) => format!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id IN ({list}));
                 DELETE FROM deliveries WHERE message_id IN ({list});
                 DELETE FROM message_parts WHERE message_id IN ({list});
                 DELETE FROM message_attempts WHERE message_id IN ({list});
                 DELETE FROM messages WHERE id IN ({list});"
            ),
            (Purge::Inbound, false) => format!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE inbound_id IN ({list}));
                 DELETE FROM deliveries WHERE inbound_id IN ({list});
                 DELETE FROM inbound_designations WHERE inbound_id IN ({list});
                 DELETE FROM inbound WHERE id IN ({list});"
            ),
            (Purge::Deliveries, _) => format!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN ({list});
                 DELETE FROM deliveries WHERE id IN ({list});"
            ),
        };
        e.batch(&sql).await?;
    }
    Ok(Purged {
        rows: ids.len() as u64,
        next,
    })
}

/// Which rows of a scanned batch a retention pass takes, and where the next batch starts:
/// rows in id order as `(id, created, eligible)`. The pass stops at the first row created at
/// or after `before` (ids grow with time); rows not eligible (not final yet, or stripped
/// already) are passed over. Decided here once for both backends.
fn purge_plan(rows: &[(Id, Millis, bool)], batch: &PurgeBatch) -> (Vec<Id>, Option<Id>) {
    let mut take = Vec::new();
    for &(id, at, eligible) in rows {
        if at >= batch.before {
            return (take, None);
        }
        if eligible {
            take.push(id);
        }
    }
    let next = if rows.len() < batch.limit {
        None
    } else {
        rows.last().map(|r| r.0)
    };
    (take, next)
}

/// The SQL that lists a batch for [`purge_plan`] (`$1` after, `$2` limit), and whether it is a delete or a strip that the backend then runs.
fn purge_scan(batch: &PurgeBatch) -> String {
    let finals: Vec<String> = Status::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    match (batch.what, batch.strip) {
        (Purge::Messages, false) => format!(
            "SELECT id, created_at, status IN ({}) FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            finals.join(", ")
        ),
        (Purge::Messages, true) => format!(
            "SELECT id, created_at, status IN ({}) AND body <> '' FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            finals.join(", ")
        ),
        (Purge::Inbound, false) => {
            "SELECT id, received_at, TRUE FROM inbound WHERE id > $1 ORDER BY id LIMIT $2".into()
        }
        (Purge::Inbound, true) => {
            "SELECT id, received_at, body <> '' FROM inbound WHERE id > $1 ORDER BY id LIMIT $2"
                .into()
        }
        (Purge::Deliveries, _) => {
            "SELECT id, created_at, state <> 'pending' FROM deliveries WHERE id > $1 ORDER BY id LIMIT $2"
                .into()
        }
    }
}
