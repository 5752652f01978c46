//! SQLite: inbound texts and their routing, the suppression list, and deliveries (webhook
//! POSTs and e-mail forwards).

use rusqlite::{params, Connection, OptionalExtension, Row};
use textgate_core::clock::Millis;
use textgate_core::inbound::OptChange;

use super::{db_err, insert_message_row, Sqlite};
use crate::model::*;
use crate::Result;

fn inbound_from_row(r: &Row) -> rusqlite::Result<Inbound> {
    Ok(Inbound {
        id: r.get(0)?,
        device: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        body: r.get(4)?,
        encoding: r.get(5)?,
        parts: r.get(6)?,
        partial: r.get(7)?,
        received_at: r.get(8)?,
    })
}

fn delivery_from_row(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        channel: r.get(1)?,
        event: r.get(2)?,
        target: r.get(3)?,
        inbound_id: r.get(4)?,
        message_id: r.get(5)?,
        status: r.get(6)?,
        owner_id: r.get(7)?,
        api_key_id: r.get(8)?,
        state: r.get(9)?,
        attempts: r.get(10)?,
        next_at: r.get(11)?,
        give_up_at: r.get(12)?,
        last_code: r.get(13)?,
        last_error: r.get(14)?,
        created_at: r.get(15)?,
        done_at: r.get(16)?,
    })
}

fn designate(c: &Connection, inbound: Id, users: &[String]) -> rusqlite::Result<usize> {
    if users.is_empty() {
        return Ok(0);
    }
    let mut s = c.prepare_cached(
        "INSERT OR IGNORE INTO inbound_designations (user_id, inbound_id)
         SELECT id, ?2 FROM users WHERE name = ?1",
    )?;
    let mut n = 0;
    for u in users {
        n += s.execute(params![u, inbound])?;
    }
    Ok(n)
}

fn designate_admins(c: &Connection, inbound: Id) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO inbound_designations (user_id, inbound_id)
         SELECT id, ?1 FROM users WHERE role = 'admin'",
    )?
    .execute([inbound])
}

/// The user a system message is sent as: `name` if it exists, else the first admin.
fn owner_for(c: &Connection, name: Option<&str>) -> rusqlite::Result<Option<Id>> {
    if let Some(n) = name {
        let id = c
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row([n], |r| r.get(0))
            .optional()?;
        if id.is_some() {
            return Ok(id);
        }
    }
    c.prepare_cached("SELECT id FROM users WHERE role = 'admin' ORDER BY id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()
}

fn insert_delivery(
    c: &Connection,
    channel: &str,
    target: &str,
    inbound: Id,
    at: Millis,
    give_up_at: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
         VALUES (?1, 'message.inbound', ?2, ?3, ?4, ?5, ?4)",
    )?
    .execute(params![channel, target, inbound, at, give_up_at])?;
    Ok(())
}

/// Carries out a text's routing (see [`InboundRouting`]) in its transaction.
fn route(c: &Connection, id: Id, t: &NewInbound) -> rusqlite::Result<()> {
    let r = &t.routing;
    let mut reached = designate(c, id, &r.users)?;
    if let Some(since) = r.conversation_since {
        // Conversations: whoever texted this number lately sees the answer. System
        // messages (automatic replies, confirmations) start no conversation. OR IGNORE
        // drops an owner's second message, and is cheaper than DISTINCT: that builds a
        // temporary B-tree per text.
        reached += c
            .prepare_cached(
                "INSERT OR IGNORE INTO inbound_designations (user_id, inbound_id)
                 SELECT owner_id, ?3 FROM messages
                 WHERE recipient = ?1 AND job_id IS NULL AND created_at >= ?2 AND (origin IS NULL OR origin NOT IN ('reply', 'optout'))",
            )?
            .execute(params![t.from, since, id])?;
    }
    if let (true, Some(since)) = (r.email_answers, r.conversation_since) {
        // An answer to a text that came from e-mail goes back to whoever wrote that e-mail.
        c.prepare_cached(
            "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
             SELECT 'email', 'message.inbound', email_from, ?3, ?4, ?5, ?4 FROM messages
             WHERE recipient = ?1 AND job_id IS NULL AND created_at >= ?2 AND origin = 'email' AND email_from IS NOT NULL
             ORDER BY created_at DESC LIMIT 1",
        )?
        .execute(params![t.from, since, id, t.received_at, r.give_up_at])?;
    }
    for w in &r.webhooks {
        insert_delivery(c, "webhook", w, id, t.received_at, r.give_up_at)?;
    }
    if !r.emails.is_empty() {
        insert_delivery(
            c,
            "email",
            &r.emails.join(","),
            id,
            t.received_at,
            r.give_up_at,
        )?;
    }
    let elsewhere = !r.webhooks.is_empty() || !r.emails.is_empty();
    // Never nowhere: a text that reached no one goes to the catch-all users, and to the
    // admins if none of those exists.
    if reached == 0 && !(r.matched && elsewhere) && designate(c, id, &r.catch_all)? == 0 {
        designate_admins(c, id)?;
    }
    match r.opt {
        Some(OptChange::Out) => {
            c.prepare_cached(
                "INSERT INTO suppressions (number, source, note, created_at)
                 VALUES (?1, 'keyword', ?2, ?3) ON CONFLICT (number) DO NOTHING",
            )?
            .execute(params![
                t.from,
                format!("texted \"{}\"", first_word(&t.body)),
                t.received_at
            ])?;
        }
        Some(OptChange::In) => {
            c.prepare_cached("DELETE FROM suppressions WHERE number = ?1")?
                .execute([&t.from])?;
        }
        None => {}
    }
    if let Some(m) = &r.opt_reply {
        if let Some(owner) = owner_for(c, None)? {
            insert_message_row(
                c,
                &NewMessage {
                    owner_id: owner,
                    ..m.clone()
                },
            )?;
        }
    }
    if r.opt != Some(OptChange::Out) && !r.replies.is_empty() {
        let suppressed: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM suppressions WHERE number = ?1)")?
            .query_row([&t.from], |row| row.get(0))?;
        for (owner, m) in r.replies.iter().filter(|_| !suppressed) {
            let recent: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM messages
                     WHERE recipient = ?1 AND job_id IS NULL AND created_at >= ?2 AND origin = 'reply')",
                )?
                .query_row(params![m.to, r.reply_since], |row| row.get(0))?;
            if recent {
                continue;
            }
            if let Some(owner) = owner_for(c, owner.as_deref())? {
                insert_message_row(
                    c,
                    &NewMessage {
                        owner_id: owner,
                        ..m.clone()
                    },
                )?;
            }
        }
    }
    Ok(())
}

fn first_word(body: &str) -> String {
    textgate_core::inbound::first_word(body).to_uppercase()
}

impl Sqlite {
    pub(crate) async fn insert_inbound(
        &self,
        texts: Vec<NewInbound>,
    ) -> Result<Vec<InboundStored>> {
        self.write_here(true, move |c| {
            let mut out = Vec::with_capacity(texts.len());
            for t in &texts {
                let n = c
                    .prepare_cached(
                        "INSERT INTO inbound (device, sender, recipient, body, encoding, parts, partial, dedup_key, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![t.device, t.from, t.to, t.body, t.encoding, t.parts, t.partial, t.dedup_key, t.received_at])
                    })
                    .map_err(db_err)?;
                if n == 0 {
                    out.push(InboundStored::Duplicate);
                    continue;
                }
                let id = c.last_insert_rowid();
                route(c, id, t).map_err(db_err)?;
                out.push(InboundStored::New(id));
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn list_inbound(&self, f: InboundFilter) -> Result<Vec<Inbound>> {
        self.read(move |c| {
            let after = f.after.unwrap_or(0);
            let limit = f.limit as i64;
            match f.user_id {
                Some(user) => {
                    let mut s = c.prepare_cached(&format!(
                        "SELECT {} FROM inbound_designations d JOIN inbound i ON i.id = d.inbound_id
                         WHERE d.user_id = ?1 AND d.inbound_id > ?2 ORDER BY d.inbound_id LIMIT ?3",
                        prefixed("i", INBOUND_COLUMNS)
                    ))?;
                    let rows = s.query_map(params![user, after, limit], inbound_from_row)?;
                    rows.collect()
                }
                None => {
                    let mut s = c.prepare_cached(&format!(
                        "SELECT {INBOUND_COLUMNS} FROM inbound WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ))?;
                    let rows = s.query_map(params![after, limit], inbound_from_row)?;
                    rows.collect()
                }
            }
        })
        .await
    }

    pub(crate) async fn get_inbound(&self, id: Id, user: Option<Id>) -> Result<Option<Inbound>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {INBOUND_COLUMNS} FROM inbound i WHERE id = ?1 AND (?2 IS NULL OR EXISTS
                   (SELECT 1 FROM inbound_designations d WHERE d.inbound_id = i.id AND d.user_id = ?2))"
            ))?
            .query_row(params![id, user], inbound_from_row)
            .optional()
        })
        .await
    }

    pub(crate) async fn inbound_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Inbound>> {
        self.read(move |c| {
            let mut s = c.prepare(&format!(
                "SELECT {INBOUND_COLUMNS} FROM inbound WHERE id IN ({}) ORDER BY id",
                placeholders(ids.len())
            ))?;
            let rows = s.query_map(rusqlite::params_from_iter(ids.iter()), inbound_from_row)?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn messages_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Message>> {
        self.read(move |c| {
            let mut s = c.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({}) ORDER BY id",
                placeholders(ids.len())
            ))?;
            let rows = s.query_map(
                rusqlite::params_from_iter(ids.iter()),
                super::message_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn inbound_designees(&self, id: Id) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT u.name FROM inbound_designations d JOIN users u ON u.id = d.user_id
                 WHERE d.inbound_id = ?1 ORDER BY u.name",
            )?;
            let rows = s.query_map([id], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn add_suppression(&self, s: Suppression) -> Result<bool> {
        self.write(move |c| {
            let n = c
                .execute(
                    "INSERT INTO suppressions (number, source, note, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (number) DO NOTHING",
                    params![s.number, s.source, s.note, s.created_at],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn remove_suppression(&self, number: String) -> Result<bool> {
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM suppressions WHERE number = ?1", [&number])
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn list_suppressions(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT number, source, note, created_at FROM suppressions
                 WHERE ?1 IS NULL OR number > ?1 ORDER BY number LIMIT ?2",
            )?;
            let rows = s.query_map(params![after, limit as i64], |r| {
                Ok(Suppression {
                    number: r.get(0)?,
                    source: r.get(1)?,
                    note: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn claim_deliveries(
        &self,
        channel: String,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        self.write_lazy(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "UPDATE deliveries SET next_at = ?3, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND channel = ?1
                                  AND next_at <= ?2 ORDER BY next_at, id LIMIT ?4)
                     RETURNING {DELIVERY_COLUMNS}"
                ))
                .map_err(db_err)?;
            let rows = s
                .query_map(
                    params![channel, now, lease_until, limit as i64],
                    delivery_from_row,
                )
                .map_err(db_err)?;
            let mut out: Vec<Delivery> = rows.collect::<rusqlite::Result<_>>().map_err(db_err)?;
            out.sort_by_key(|d| d.id);
            Ok(out)
        })
        .await
    }

    pub(crate) async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        self.write_lazy(move |c| {
            for r in &results {
                let applied = match r {
                    DeliveryResult::Delivered { id, attempt, code, at } => c
                        .prepare_cached(
                            "UPDATE deliveries SET state = 'delivered', last_code = ?3, last_error = NULL, done_at = ?4
                             WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                        )
                        .and_then(|mut s| s.execute(params![id, attempt, code, at])),
                    DeliveryResult::Retry { id, attempt, code, error, next_at, .. } => c
                        .prepare_cached(
                            "UPDATE deliveries SET next_at = ?3, last_code = ?4, last_error = ?5
                             WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                        )
                        .and_then(|mut s| s.execute(params![id, attempt, next_at, code, error])),
                    DeliveryResult::Dead { id, attempt, code, error, at } => c
                        .prepare_cached(
                            "UPDATE deliveries SET state = 'dead', last_code = ?3, last_error = ?4, done_at = ?5
                             WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                        )
                        .and_then(|mut s| s.execute(params![id, attempt, code, error, at])),
                    DeliveryResult::Deferred { id, attempt, next_at } => c
                        .prepare_cached(
                            "UPDATE deliveries SET next_at = ?3, attempts = attempts - 1
                             WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                        )
                        .and_then(|mut s| s.execute(params![id, attempt, next_at])),
                }
                .map_err(db_err)?;
                if let (true, Some((id, attempt, at, code, error))) = (applied > 0, r.log_entry()) {
                    c.prepare_cached(
                        "INSERT OR IGNORE INTO delivery_attempts (delivery_id, attempt, at, code, error)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| s.execute(params![id, attempt, at, code, error]))
                    .map_err(db_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn delivery_attempts(&self, id: Id) -> Result<Vec<DeliveryAttempt>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT attempt, at, code, error FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt",
            )?;
            let rows = s.query_map([id], |r| {
                Ok(DeliveryAttempt { attempt: r.get(0)?, at: r.get(1)?, code: r.get(2)?, error: r.get(3)? })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn list_deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR owner_id = ?2) AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = s.query_map(
                params![f.state, f.owner_id, f.before, f.limit as i64],
                delivery_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn get_delivery(&self, id: Id) -> Result<Option<Delivery>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"
            ))?
            .query_row([id], delivery_from_row)
            .optional()
        })
        .await
    }

    pub(crate) async fn replay_delivery(
        &self,
        id: Id,
        now: Millis,
        give_up_at: Millis,
    ) -> Result<Option<Delivery>> {
        self.write(move |c| {
            c.prepare_cached(&format!(
                "UPDATE deliveries SET state = 'pending', next_at = ?2, give_up_at = ?3, done_at = NULL
                 WHERE id = ?1 AND state = 'dead' RETURNING {DELIVERY_COLUMNS}"
            ))
            .and_then(|mut s| s.query_row(params![id, now, give_up_at], delivery_from_row).optional())
            .map_err(db_err)
        })
        .await
    }
}

/// `?, ?, ?` for `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
