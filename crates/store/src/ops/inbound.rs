//! Inbound texts: stored, routed to whoever they are for (inboxes, webhooks, e-mail,
//! automatic replies, opt-outs), and read back; the suppression list.

use std::sync::LazyLock;

use textgate_core::clock::Millis;
use textgate_core::inbound::OptChange;

use crate::exec::{args, id_list, row, Dialect, Exec, Row};
use crate::model::*;
use crate::Result;

pub(crate) fn inbound_from_row(r: &dyn Row) -> Result<Inbound> {
    Ok(Inbound {
        id: r.int(0)?,
        device: r.text(1)?,
        from: r.text(2)?,
        to: r.text(3)?,
        body: r.text(4)?,
        encoding: r.text(5)?,
        parts: r.int(6)?,
        partial: r.flag(7)?,
        received_at: r.int(8)?,
    })
}

/// How long content keys are kept beyond the window that needs them.
const SEEN_KEPT: i64 = 3_600_000;

/// Stores texts, each with its routing carried out; a text whose dedup key was seen
/// before, or whose content key was seen within its window, is not stored again.
pub(crate) async fn insert(e: &mut impl Exec, texts: &[NewInbound]) -> Result<Vec<InboundStored>> {
    let first = first_ids(e, texts.len()).await?;
    let mut out = Vec::with_capacity(texts.len());
    if texts.iter().any(|t| t.same_within.is_some()) {
        // Keys older than any window in use are of no more use.
        let oldest = texts
            .iter()
            .filter_map(|t| t.same_within.as_ref().map(|(_, w)| t.received_at - w))
            .min()
            .unwrap_or(0);
        e.run(
            "DELETE FROM inbound_seen WHERE at < $1",
            args![oldest - SEEN_KEPT],
        )
        .await?;
    }
    for (i, t) in texts.iter().enumerate() {
        if let Some((key, window)) = &t.same_within {
            // Taken only if unseen, or seen before the window: race-free between nodes (the
            // second waits on the first's row, then finds it within the window).
            let fresh = e
                .run(
                    "INSERT INTO inbound_seen (key, at) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE inbound_seen.at < $3",
                    args![key, t.received_at, t.received_at - window],
                )
                .await?
                > 0;
            if !fresh {
                out.push(InboundStored::Duplicate);
                continue;
            }
        }
        let id = first.map(|f| f + i as i64);
        let stored = e
            .insert(
                "INSERT INTO inbound (id, device, sender, recipient, body, encoding, parts, partial, dedup_key, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
                args![id, &t.device, &t.from, &t.to, &t.body, &t.encoding, t.parts, t.partial, &t.dedup_key, t.received_at],
            )
            .await?;
        match stored {
            Some(id) => {
                route(e, id, t).await?;
                out.push(InboundStored::New(id));
            }
            None => out.push(InboundStored::Duplicate),
        }
    }
    Ok(out)
}

/// The ids `n` texts take, when the database does not hand them out in commit order itself.
///
/// A reader that keeps its cursor must miss no text, so ids must become visible in order.
/// SQLite commits one transaction at a time, so its own ids do (`None`: a NULL id is the next
/// rowid). On PostgreSQL a sequence would not promise it: ids come from a counter row held
/// locked until commit (see its migration 2).
async fn first_ids(e: &mut impl Exec, n: usize) -> Result<Option<Id>> {
    match e.dialect() {
        Dialect::Sqlite => Ok(None),
        Dialect::Postgres => {
            let last = crate::exec::int(
                e,
                "UPDATE id_counters SET last = last + $1 WHERE name = 'inbound' RETURNING last",
                args![n],
            )
            .await?;
            Ok(Some(last - n as i64 + 1))
        }
    }
}

/// Designates a text to the users with these names; how many that reached.
async fn designate(e: &mut impl Exec, inbound: Id, users: &[String]) -> Result<u64> {
    let mut n = 0;
    for u in users {
        n += e
            .run(
                "INSERT INTO inbound_designations (user_id, inbound_id)
                 SELECT id, CAST($1 AS BIGINT) FROM users WHERE name = $2 ON CONFLICT DO NOTHING",
                args![inbound, u],
            )
            .await?;
    }
    Ok(n)
}

/// The user a system message is sent as: `name` if it exists, else the first admin.
async fn owner_for(e: &mut impl Exec, name: Option<&str>) -> Result<Option<Id>> {
    if let Some(n) = name {
        let id = row(e, "SELECT id FROM users WHERE name = $1", args![n], |r| {
            r.int(0)
        })
        .await?;
        if id.is_some() {
            return Ok(id);
        }
    }
    row(
        e,
        "SELECT id FROM users WHERE role = 'admin' ORDER BY id LIMIT 1",
        args![],
        |r| r.int(0),
    )
    .await
}

async fn insert_delivery(
    e: &mut impl Exec,
    channel: &str,
    target: &str,
    inbound: Id,
    at: Millis,
    give_up_at: Millis,
) -> Result<()> {
    e.run(
        "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
         VALUES ($1, 'message.inbound', $2, $3, $4, $5, $4)",
        args![channel, target, inbound, at, give_up_at],
    )
    .await?;
    Ok(())
}

/// Carries out a text's routing (see [`InboundRouting`]) in its transaction.
async fn route(e: &mut impl Exec, id: Id, t: &NewInbound) -> Result<()> {
    let r = &t.routing;
    let mut reached = designate(e, id, &r.users).await?;
    if let Some(since) = r.conversation_since {
        // Conversations: whoever texted this number lately sees the answer. System
        // messages (automatic replies, confirmations) start no conversation. An owner's
        // second message conflicts and is passed over (cheaper in SQLite than DISTINCT,
        // which builds a temporary B-tree per text).
        reached += e
            .run(
                "INSERT INTO inbound_designations (user_id, inbound_id)
                 SELECT owner_id, CAST($1 AS BIGINT) FROM messages
                 WHERE recipient = $2 AND job_id IS NULL AND created_at >= $3
                   AND (origin IS NULL OR origin NOT IN ('reply', 'optout'))
                 ON CONFLICT DO NOTHING",
                args![id, &t.from, since],
            )
            .await?;
    }
    if let (true, Some(since)) = (r.email_answers, r.conversation_since) {
        // An answer to a text that came from e-mail goes back to whoever wrote that e-mail.
        e.run(
            "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
             SELECT 'email', 'message.inbound', email_from, CAST($1 AS BIGINT), CAST($2 AS BIGINT),
                    CAST($3 AS BIGINT), CAST($2 AS BIGINT)
             FROM messages
             WHERE recipient = $4 AND job_id IS NULL AND created_at >= $5 AND origin = 'email' AND email_from IS NOT NULL
             ORDER BY created_at DESC LIMIT 1",
            args![id, t.received_at, r.give_up_at, &t.from, since],
        )
        .await?;
    }
    for w in &r.webhooks {
        insert_delivery(e, "webhook", w, id, t.received_at, r.give_up_at).await?;
    }
    if !r.emails.is_empty() {
        let to = r.emails.join(",");
        insert_delivery(e, "email", &to, id, t.received_at, r.give_up_at).await?;
    }
    let elsewhere = !r.webhooks.is_empty() || !r.emails.is_empty();
    // Never nowhere: a text that reached no one goes to the catch-all users, and to the
    // admins if none of those exists.
    if reached == 0 && !(r.matched && elsewhere) && designate(e, id, &r.catch_all).await? == 0 {
        e.run(
            "INSERT INTO inbound_designations (user_id, inbound_id)
             SELECT id, CAST($1 AS BIGINT) FROM users WHERE role = 'admin' ON CONFLICT DO NOTHING",
            args![id],
        )
        .await?;
    }
    opt_change(e, t).await?;
    if let Some(m) = &r.opt_reply {
        if let Some(owner) = owner_for(e, None).await? {
            let m = NewMessage {
                owner_id: owner,
                ..m.clone()
            };
            super::messages::insert_row(e, &m).await?;
        }
    }
    if r.opt != Some(OptChange::Out) && !r.replies.is_empty() {
        automatic_replies(e, t).await?;
    }
    Ok(())
}

/// A STOP puts the sender on the suppression list; a START takes them off.
async fn opt_change(e: &mut impl Exec, t: &NewInbound) -> Result<()> {
    match t.routing.opt {
        Some(OptChange::Out) => {
            let word = textgate_core::inbound::first_word(&t.body).to_uppercase();
            e.run(
                "INSERT INTO suppressions (number, source, note, created_at)
                 VALUES ($1, 'keyword', $2, $3) ON CONFLICT (number) DO NOTHING",
                args![
                    &t.from,
                    format!("texted \"{word}\"").as_str(),
                    t.received_at
                ],
            )
            .await?;
        }
        Some(OptChange::In) => {
            e.run("DELETE FROM suppressions WHERE number = $1", args![&t.from])
                .await?;
        }
        None => {}
    }
    Ok(())
}

/// The rules' automatic replies: never to a suppressed number, and at most one per number
/// within the reply interval.
async fn automatic_replies(e: &mut impl Exec, t: &NewInbound) -> Result<()> {
    let r = &t.routing;
    let suppressed = row(
        e,
        "SELECT EXISTS (SELECT 1 FROM suppressions WHERE number = $1)",
        args![&t.from],
        |row| row.flag(0),
    )
    .await?
    .unwrap_or(false);
    if suppressed {
        return Ok(());
    }
    for (owner, m) in &r.replies {
        let recent = row(
            e,
            "SELECT EXISTS (SELECT 1 FROM messages
             WHERE recipient = $1 AND job_id IS NULL AND created_at >= $2 AND origin = 'reply')",
            args![&m.to, r.reply_since],
            |row| row.flag(0),
        )
        .await?
        .unwrap_or(false);
        if recent {
            continue;
        }
        if let Some(owner) = owner_for(e, owner.as_deref()).await? {
            let m = NewMessage {
                owner_id: owner,
                ..m.clone()
            };
            super::messages::insert_row(e, &m).await?;
        }
    }
    Ok(())
}

/// Oldest first after the cursor: all texts, or those designated to a user.
pub(crate) async fn list(e: &mut impl Exec, f: &InboundFilter) -> Result<Vec<Inbound>> {
    static FOR_USER: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM inbound_designations d JOIN inbound i ON i.id = d.inbound_id
             WHERE d.user_id = $1 AND d.inbound_id > $2 ORDER BY d.inbound_id LIMIT $3",
            prefixed("i", INBOUND_COLUMNS)
        )
    });
    static ALL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {INBOUND_COLUMNS} FROM inbound WHERE id > $1 ORDER BY id LIMIT $2")
    });
    let after = f.after.unwrap_or(0);
    match f.user_id {
        Some(user) => {
            e.rows(&FOR_USER, args![user, after, f.limit], inbound_from_row)
                .await
        }
        None => e.rows(&ALL, args![after, f.limit], inbound_from_row).await,
    }
}

/// One text; with `user`, only if it is designated to that user.
pub(crate) async fn get(e: &mut impl Exec, id: Id, user: Option<Id>) -> Result<Option<Inbound>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {INBOUND_COLUMNS} FROM inbound i WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR EXISTS
               (SELECT 1 FROM inbound_designations d WHERE d.inbound_id = i.id AND d.user_id = $2))"
        )
    });
    row(e, &SQL, args![id, user], inbound_from_row).await
}

/// Those that exist, in id order.
pub(crate) async fn by_ids(e: &mut impl Exec, ids: &[Id]) -> Result<Vec<Inbound>> {
    let sql = format!(
        "SELECT {INBOUND_COLUMNS} FROM inbound WHERE id IN ({}) ORDER BY id",
        id_list(ids)
    );
    e.rows(&sql, args![], inbound_from_row).await
}

/// The names of the users a text is designated to.
pub(crate) async fn designees(e: &mut impl Exec, id: Id) -> Result<Vec<String>> {
    e.rows(
        "SELECT u.name FROM inbound_designations d JOIN users u ON u.id = d.user_id
         WHERE d.inbound_id = $1 ORDER BY u.name",
        args![id],
        |r| r.text(0),
    )
    .await
}

pub(crate) async fn add_suppression(e: &mut impl Exec, s: &Suppression) -> Result<bool> {
    let n = e
        .run(
            "INSERT INTO suppressions (number, source, note, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (number) DO NOTHING",
            args![&s.number, &s.source, &s.note, s.created_at],
        )
        .await?;
    Ok(n > 0)
}

pub(crate) async fn remove_suppression(e: &mut impl Exec, number: &str) -> Result<bool> {
    let n = e
        .run("DELETE FROM suppressions WHERE number = $1", args![number])
        .await?;
    Ok(n > 0)
}

/// In number order, after the cursor.
pub(crate) async fn suppressions(
    e: &mut impl Exec,
    after: &Option<String>,
    limit: usize,
) -> Result<Vec<Suppression>> {
    e.rows(
        "SELECT number, source, note, created_at FROM suppressions
         WHERE CAST($1 AS TEXT) IS NULL OR number > $1 ORDER BY number LIMIT $2",
        args![after, limit],
        |r| {
            Ok(Suppression {
                number: r.text(0)?,
                source: r.text(1)?,
                note: r.opt_text(2)?,
                created_at: r.int(3)?,
            })
        },
    )
    .await
}
