//! What the web UI reads and writes beyond the API's: sign-in sessions, the personal inbox
//! (read and archived marks, conversations with a number), passwords, and the dashboard's
//! counts.

use std::sync::LazyLock;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use super::inbound::inbound_from_row;
use super::messages::message_from_row;
use super::users::{user_from, USER_COLUMNS};
use crate::exec::{args, row, Exec, Row};
use crate::model::*;
use crate::{Result, StoreError};

/// Starts a session, and ends the expired ones (there are few: one a sign-in).
pub(crate) async fn create_session(e: &mut impl Exec, s: &NewWebSession) -> Result<()> {
    e.run(
        "DELETE FROM web_sessions WHERE expires_at <= $1",
        args![s.created_at],
    )
    .await?;
    e.run(
        "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
        args![
            &s.token_hash,
            s.user_id,
            &s.csrf,
            s.created_at,
            s.expires_at
        ],
    )
    .await?;
    Ok(())
}

/// The session of this token, if it has not expired: used within `idle` and before its
/// absolute end.
pub(crate) async fn session(
    e: &mut impl Exec,
    token_hash: &str,
    now: Millis,
    idle: Millis,
) -> Result<Option<WebSession>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT s.csrf, s.created_at, s.seen_at, s.expires_at, {}
             FROM web_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.seen_at > $3
               AND u.disabled_at IS NULL",
            super::super::model::prefixed("u", USER_COLUMNS)
        )
    });
    row(e, &SQL, args![token_hash, now, now - idle], |r| {
        Ok(WebSession {
            csrf: r.text(0)?,
            created_at: r.int(1)?,
            seen_at: r.int(2)?,
            expires_at: r.int(3)?,
            user: user_from(r, 4)?,
        })
    })
    .await
}

/// Marks a session used now.
pub(crate) async fn touch_session(e: &mut impl Exec, token_hash: &str, now: Millis) -> Result<()> {
    e.run(
        "UPDATE web_sessions SET seen_at = $1 WHERE token_hash = $2",
        args![now, token_hash],
    )
    .await?;
    Ok(())
}

/// Ends one session.
pub(crate) async fn end_session(e: &mut impl Exec, token_hash: &str) -> Result<()> {
    e.run(
        "DELETE FROM web_sessions WHERE token_hash = $1",
        args![token_hash],
    )
    .await?;
    Ok(())
}

/// Sets a user's password hash and ends their sessions, all but `keep` (the one that changed
/// it); `false` when there is no such user.
pub(crate) async fn set_password(
    e: &mut impl Exec,
    user_id: Id,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<bool> {
    let n = e
        .run(
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            args![password_hash, user_id],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    e.run(
        "DELETE FROM web_sessions WHERE user_id = $1 AND token_hash <> coalesce($2, '')",
        args![user_id, keep],
    )
    .await?;
    Ok(true)
}

/// A user's inbox, newest first: archived texts or the others, optionally only those from one
/// number, with ids below `before`.
pub(crate) async fn inbox(e: &mut impl Exec, f: &InboxFilter) -> Result<Vec<InboxEntry>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {}, d.read_at, d.archived_at
             FROM inbound_designations d JOIN inbound i ON i.id = d.inbound_id
             WHERE d.user_id = $1 AND d.inbound_id < $2
               AND (d.archived_at IS NOT NULL) = $3
               AND (CAST($4 AS TEXT) IS NULL OR i.sender = $4)
             ORDER BY d.inbound_id DESC LIMIT $5",
            super::super::model::prefixed("i", INBOUND_COLUMNS)
        )
    });
    e.rows(
        &SQL,
        args![
            f.user_id,
            f.before.unwrap_or(Id::MAX),
            f.archived,
            &f.from,
            f.limit
        ],
        inbox_entry,
    )
    .await
}

fn inbox_entry(r: &dyn Row) -> Result<InboxEntry> {
    Ok(InboxEntry {
        text: inbound_from_row(r)?,
        read_at: r.opt_int(9)?,
        archived_at: r.opt_int(10)?,
    })
}

/// How many texts in the user's inbox are unread (archived ones not counted), up to `cap`:
/// every page shows it, so it counts no further than it shows.
pub(crate) async fn unread(e: &mut impl Exec, user_id: Id, cap: i64) -> Result<i64> {
    crate::exec::int(
        e,
        "SELECT count(*) FROM (SELECT 1 FROM inbound_designations
         WHERE user_id = $1 AND read_at IS NULL AND archived_at IS NULL LIMIT $2) t",
        args![user_id, cap],
    )
    .await
}

/// Marks texts of the user's inbox: read (all texts from `from`, or the one `id`), or
/// archived. Returns how many it marked.
pub(crate) async fn mark_inbox(e: &mut impl Exec, m: &InboxMark, now: Millis) -> Result<u64> {
    let (column, keep) = match m.what {
        InboxMarkKind::Read => ("read_at", "read_at IS NULL"),
        InboxMarkKind::Archived => ("archived_at", "archived_at IS NULL"),
        InboxMarkKind::Unarchived => ("archived_at", "archived_at IS NOT NULL"),
    };
    let value = if matches!(m.what, InboxMarkKind::Unarchived) {
        None
    } else {
        Some(now)
    };
    // Only the conditions given, so that the primary key (user, text) is read, not the
    // user's whole inbox.
    let mut sql =
        format!("UPDATE inbound_designations SET {column} = $1 WHERE user_id = $2 AND {keep}");
    let mut args = vec![
        value.map_or(crate::exec::Arg::Null, crate::exec::Arg::Int),
        crate::exec::Arg::Int(m.user_id),
    ];
    if let Some(id) = m.id {
        args.push(crate::exec::Arg::Int(id));
        sql.push_str(&format!(" AND inbound_id = ${}", args.len()));
    }
    if let Some(from) = &m.from {
        args.push(crate::exec::Arg::Text(from));
        sql.push_str(&format!(
            " AND inbound_id IN (SELECT id FROM inbound WHERE sender = ${})",
            args.len()
        ));
    }
    e.run(&sql, &args).await
}

/// The texts between a user and a number, both ways, oldest first: the inbound texts
/// designated to the user from that number, and the user's own messages to it (bulk-job rows
/// left out, as conversations leave them out). The last `limit` of each.
pub(crate) async fn conversation(
    e: &mut impl Exec,
    user_id: Id,
    number: &str,
    limit: usize,
) -> Result<Vec<ConversationItem>> {
    static IN: LazyLock<String> = LazyLock::new(|| {
        format!(
            // From the number's texts (an index), newest first, those in the user's inbox.
            "SELECT {}, d.read_at, d.archived_at
             FROM inbound i JOIN inbound_designations d ON d.inbound_id = i.id AND d.user_id = $1
             WHERE i.sender = $2
             ORDER BY i.id DESC LIMIT $3",
            super::super::model::prefixed("i", INBOUND_COLUMNS)
        )
    });
    static OUT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE recipient = $1 AND job_id IS NULL AND owner_id = $2
             ORDER BY created_at DESC LIMIT $3"
        )
    });
    let mut items: Vec<ConversationItem> = e
        .rows(&IN, args![user_id, number, limit], inbox_entry)
        .await?
        .into_iter()
        .map(ConversationItem::In)
        .collect();
    items.extend(
        e.rows(&OUT, args![number, user_id, limit], message_from_row)
            .await?
            .into_iter()
            .map(|m| ConversationItem::Out(Box::new(m))),
    );
    items.sort_by_key(|i| (i.at(), i.id_for_order()));
    Ok(items)
}

/// Messages accepted at or after `since` (the owner's, or everyone's), by the hour they were
/// accepted and their status now: `(hour start, status, count)`, oldest hour first. One read
/// of the period's rows serves the dashboard's counts and its chart.
pub(crate) async fn hourly(
    e: &mut impl Exec,
    owner: Option<Id>,
    since: Millis,
) -> Result<Vec<(Millis, Status, i64)>> {
    let first = first_message_since(e, since).await?;
    // The owner's condition only when there is one, so that their index is read.
    let sql = format!(
        "SELECT (created_at / 3600000) * 3600000 AS hour, status, count(*) FROM messages
         WHERE id >= $1{} GROUP BY hour, status ORDER BY hour",
        if owner.is_some() {
            " AND owner_id = $2"
        } else {
            ""
        }
    );
    let args = match owner {
        Some(o) => vec![crate::exec::Arg::Int(first), crate::exec::Arg::Int(o)],
        None => vec![crate::exec::Arg::Int(first)],
    };
    e.rows(&sql, &args, |r| {
        let s = r.text(1)?;
        let st =
            Status::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))?;
        Ok((r.int(0)?, st, r.int(2)?))
    })
    .await
}

/// Inbound texts received at or after `since`: all, or those designated to `user`.
pub(crate) async fn inbound_count(
    e: &mut impl Exec,
    user: Option<Id>,
    since: Millis,
) -> Result<i64> {
    match user {
        None => {
            crate::exec::int(
                e,
                "SELECT count(*) FROM inbound WHERE received_at >= $1",
                args![since],
            )
            .await
        }
        Some(u) => {
            crate::exec::int(
                e,
                "SELECT count(*) FROM inbound_designations d JOIN inbound i ON i.id = d.inbound_id
                 WHERE d.user_id = $1 AND i.received_at >= $2",
                args![u, since],
            )
            .await
        }
    }
}

/// The lowest id of a message created at or after `since`, found by bisecting ids (which
/// grow with `created_at`) with lookups by primary key, so that the counts above read only
/// the rows of their period and need no index on `created_at`. Messages are inserted with
/// the clock of the node that accepted them, so near the boundary the answer can be a few
/// messages off; the dashboard shows counts, not accounts.
pub(crate) async fn first_message_since(e: &mut impl Exec, since: Millis) -> Result<Id> {
    let bounds = row(
        e,
        "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM messages",
        args![],
        |r| Ok((r.int(0)?, r.int(1)?)),
    )
    .await?
    .unwrap_or((0, 0));
    let (mut lo, mut hi) = (bounds.0, bounds.1 + 1);
    // Invariant: messages below `lo` are older than `since`; from `hi` on, none is.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // The first message at or after `mid` (ids have gaps where rows were purged).
        let at = row(
            e,
            "SELECT id, created_at FROM messages WHERE id >= $1 ORDER BY id LIMIT 1",
            args![mid],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )
        .await?;
        match at {
            Some((id, created)) if created < since => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Those of `numbers` that are on the suppression list.
pub(crate) async fn suppressed_among(e: &mut impl Exec, numbers: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for chunk in numbers.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT number FROM suppressions WHERE number IN ({}) ORDER BY number",
            marks.join(", ")
        );
        let args: Vec<crate::exec::Arg<'_>> = chunk
            .iter()
            .map(|n| crate::exec::Arg::Text(n.as_str()))
            .collect();
        out.extend(e.rows(&sql, &args, |r| r.text(0)).await?);
    }
    Ok(out)
}

/// Disables a device by name (`by`: who), or enables it again.
pub(crate) async fn set_device_disabled(
    e: &mut impl Exec,
    name: &str,
    disabled: bool,
    by: &str,
    now: Millis,
) -> Result<()> {
    e.run("DELETE FROM device_controls WHERE name = $1", args![name])
        .await?;
    if disabled {
        e.run(
            "INSERT INTO device_controls (name, disabled_at, disabled_by) VALUES ($1, $2, $3)",
            args![name, now, by],
        )
        .await?;
    }
    Ok(())
}

/// The devices administrators disabled: `(name, when, by whom)`.
pub(crate) async fn disabled_devices(e: &mut impl Exec) -> Result<Vec<(String, Millis, String)>> {
    e.rows(
        "SELECT name, disabled_at, disabled_by FROM device_controls ORDER BY name",
        args![],
        |r| Ok((r.text(0)?, r.int(1)?, r.text(2)?)),
    )
    .await
}
