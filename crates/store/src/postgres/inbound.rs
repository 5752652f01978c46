//! PostgreSQL: inbound texts and their routing, the suppression list, and deliveries
//! (webhook POSTs and e-mail forwards). The same behaviour as the SQLite backend, checked by
//! the same conformance suite.

use textgate_core::clock::Millis;
use textgate_core::inbound::OptChange;
use tokio_postgres::{Row, Transaction};

use super::{db_err, insert_message_row, Postgres};
use crate::model::*;
use crate::Result;

fn inbound_from_row(r: &Row) -> Result<Inbound> {
    let g = db_err;
    Ok(Inbound {
        id: r.try_get(0).map_err(g)?,
        device: r.try_get(1).map_err(g)?,
        from: r.try_get(2).map_err(g)?,
        to: r.try_get(3).map_err(g)?,
        body: r.try_get(4).map_err(g)?,
        encoding: r.try_get(5).map_err(g)?,
        parts: r.try_get(6).map_err(g)?,
        partial: r.try_get(7).map_err(g)?,
        received_at: r.try_get(8).map_err(g)?,
    })
}

fn delivery_from_row(r: &Row) -> Result<Delivery> {
    let g = db_err;
    Ok(Delivery {
        id: r.try_get(0).map_err(g)?,
        channel: r.try_get(1).map_err(g)?,
        event: r.try_get(2).map_err(g)?,
        target: r.try_get(3).map_err(g)?,
        inbound_id: r.try_get(4).map_err(g)?,
        message_id: r.try_get(5).map_err(g)?,
        status: r.try_get(6).map_err(g)?,
        owner_id: r.try_get(7).map_err(g)?,
        api_key_id: r.try_get(8).map_err(g)?,
        state: r.try_get(9).map_err(g)?,
        attempts: r.try_get(10).map_err(g)?,
        next_at: r.try_get(11).map_err(g)?,
        give_up_at: r.try_get(12).map_err(g)?,
        last_code: r.try_get(13).map_err(g)?,
        last_error: r.try_get(14).map_err(g)?,
        created_at: r.try_get(15).map_err(g)?,
        done_at: r.try_get(16).map_err(g)?,
    })
}

async fn designate(tx: &Transaction<'_>, inbound: Id, users: &[String]) -> Result<u64> {
    let mut n = 0;
    for u in users {
        n += tx
            .execute(
                "INSERT INTO inbound_designations (user_id, inbound_id)
                 SELECT id, $2 FROM users WHERE name = $1 ON CONFLICT DO NOTHING",
                &[u, &inbound],
            )
            .await
            .map_err(db_err)?;
    }
    Ok(n)
}

/// The user a system message is sent as: `name` if it exists, else the first admin.
async fn owner_for(tx: &Transaction<'_>, name: Option<&str>) -> Result<Option<Id>> {
    if let Some(n) = name {
        if let Some(r) = tx
            .query_opt("SELECT id FROM users WHERE name = $1", &[&n])
            .await
            .map_err(db_err)?
        {
            return r.try_get(0).map(Some).map_err(db_err);
        }
    }
    tx.query_opt(
        "SELECT id FROM users WHERE role = 'admin' ORDER BY id LIMIT 1",
        &[],
    )
    .await
    .map_err(db_err)?
    .map(|r| r.try_get(0))
    .transpose()
    .map_err(db_err)
}

async fn insert_delivery(
    tx: &Transaction<'_>,
    channel: &str,
    target: &str,
    inbound: Id,
    at: Millis,
    give_up_at: Millis,
) -> Result<()> {
    tx.execute(
        "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
         VALUES ($1, 'message.inbound', $2, $3, $4, $5, $4)",
        &[&channel, &target, &inbound, &at, &give_up_at],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Carries out a text's routing (see [`InboundRouting`]) in its transaction.
async fn route(tx: &Transaction<'_>, id: Id, t: &NewInbound) -> Result<()> {
    let r = &t.routing;
    let mut reached = designate(tx, id, &r.users).await?;
    if let Some(since) = r.conversation_since {
        reached += tx
            .execute(
                "INSERT INTO inbound_designations (user_id, inbound_id)
                 SELECT DISTINCT owner_id, $3::BIGINT FROM messages
                 WHERE recipient = $1 AND job_id IS NULL AND created_at >= $2 AND (origin IS NULL OR origin NOT IN ('reply', 'optout'))
                 ON CONFLICT DO NOTHING",
                &[&t.from, &since, &id],
            )
            .await
            .map_err(db_err)?;
    }
    if let (true, Some(since)) = (r.email_answers, r.conversation_since) {
        // An answer to a text that came from e-mail goes back to whoever wrote that e-mail.
        tx.execute(
            "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at, created_at)
             SELECT 'email', 'message.inbound', email_from, $3::BIGINT, $4::BIGINT, $5::BIGINT, $4::BIGINT FROM messages
             WHERE recipient = $1 AND job_id IS NULL AND created_at >= $2 AND origin = 'email' AND email_from IS NOT NULL
             ORDER BY created_at DESC LIMIT 1",
            &[&t.from, &since, &id, &t.received_at, &r.give_up_at],
        )
        .await
        .map_err(db_err)?;
    }
    for w in &r.webhooks {
        insert_delivery(tx, "webhook", w, id, t.received_at, r.give_up_at).await?;
    }
    if !r.emails.is_empty() {
        insert_delivery(
            tx,
            "email",
            &r.emails.join(","),
            id,
            t.received_at,
            r.give_up_at,
        )
        .await?;
    }
    let elsewhere = !r.webhooks.is_empty() || !r.emails.is_empty();
    if reached == 0 && !(r.matched && elsewhere) && designate(tx, id, &r.catch_all).await? == 0 {
        tx.execute(
            "INSERT INTO inbound_designations (user_id, inbound_id)
             SELECT id, $1 FROM users WHERE role = 'admin' ON CONFLICT DO NOTHING",
            &[&id],
        )
        .await
        .map_err(db_err)?;
    }
    match r.opt {
        Some(OptChange::Out) => {
            let note = format!(
                "texted \"{}\"",
                textgate_core::inbound::first_word(&t.body).to_uppercase()
            );
            tx.execute(
                "INSERT INTO suppressions (number, source, note, created_at)
                 VALUES ($1, 'keyword', $2, $3) ON CONFLICT (number) DO NOTHING",
                &[&t.from, &note, &t.received_at],
            )
            .await
            .map_err(db_err)?;
        }
        Some(OptChange::In) => {
            tx.execute("DELETE FROM suppressions WHERE number = $1", &[&t.from])
                .await
                .map_err(db_err)?;
        }
        None => {}
    }
    if let Some(m) = &r.opt_reply {
        if let Some(owner) = owner_for(tx, None).await? {
            insert_message_row(
                tx,
                &NewMessage {
                    owner_id: owner,
                    ..m.clone()
                },
            )
            .await?;
        }
    }
    if r.opt != Some(OptChange::Out) && !r.replies.is_empty() {
        let suppressed = tx
            .query_opt("SELECT 1 FROM suppressions WHERE number = $1", &[&t.from])
            .await
            .map_err(db_err)?
            .is_some();
        for (owner, m) in r.replies.iter().filter(|_| !suppressed) {
            let recent = tx
                .query_opt(
                    "SELECT 1 FROM messages WHERE recipient = $1 AND job_id IS NULL AND created_at >= $2 AND origin = 'reply' LIMIT 1",
                    &[&m.to, &r.reply_since],
                )
                .await
                .map_err(db_err)?
                .is_some();
            if recent {
                continue;
            }
            if let Some(owner) = owner_for(tx, owner.as_deref()).await? {
                insert_message_row(
                    tx,
                    &NewMessage {
                        owner_id: owner,
                        ..m.clone()
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

impl Postgres {
    pub(crate) async fn insert_inbound(
        &self,
        texts: Vec<NewInbound>,
    ) -> Result<Vec<InboundStored>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // Ids come from a counter row held locked until commit, so texts become visible in
        // id order (see the migration); a sequence would not promise that.
        let n = texts.len() as i64;
        let last: i64 = tx
            .query_one(
                "UPDATE id_counters SET last = last + $1 WHERE name = 'inbound' RETURNING last",
                &[&n],
            )
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)?;
        let stmt = tx
            .prepare(
                "INSERT INTO inbound (id, device, sender, recipient, body, encoding, parts, partial, dedup_key, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (dedup_key) DO NOTHING",
            )
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let id = last - n + 1 + i as i64;
            let inserted = tx
                .execute(
                    &stmt,
                    &[
                        &id,
                        &t.device,
                        &t.from,
                        &t.to,
                        &t.body,
                        &t.encoding,
                        &t.parts,
                        &t.partial,
                        &t.dedup_key,
                        &t.received_at,
                    ],
                )
                .await
                .map_err(db_err)?;
            if inserted == 0 {
                out.push(InboundStored::Duplicate);
                continue;
            }
            route(&tx, id, t).await?;
            out.push(InboundStored::New(id));
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    pub(crate) async fn list_inbound(&self, f: InboundFilter) -> Result<Vec<Inbound>> {
        let c = self.pool.get().await?;
        let after = f.after.unwrap_or(0);
        let limit = f.limit as i64;
        let rows = match f.user_id {
            Some(user) => c
                .query(
                    &format!(
                        "SELECT {} FROM inbound_designations d JOIN inbound i ON i.id = d.inbound_id
                         WHERE d.user_id = $1 AND d.inbound_id > $2 ORDER BY d.inbound_id LIMIT $3",
                        prefixed("i", INBOUND_COLUMNS)
                    ),
                    &[&user, &after, &limit],
                )
                .await
                .map_err(db_err)?,
            None => c
                .query(
                    &format!(
                        "SELECT {INBOUND_COLUMNS} FROM inbound WHERE id > $1 ORDER BY id LIMIT $2"
                    ),
                    &[&after, &limit],
                )
                .await
                .map_err(db_err)?,
        };
        rows.iter().map(inbound_from_row).collect()
    }

    pub(crate) async fn get_inbound(&self, id: Id, user: Option<Id>) -> Result<Option<Inbound>> {
        let c = self.pool.get().await?;
        c.query_opt(
            &format!(
                "SELECT {INBOUND_COLUMNS} FROM inbound i WHERE id = $1 AND ($2::BIGINT IS NULL OR EXISTS
                   (SELECT 1 FROM inbound_designations d WHERE d.inbound_id = i.id AND d.user_id = $2))"
            ),
            &[&id, &user],
        )
        .await
        .map_err(db_err)?
        .as_ref()
        .map(inbound_from_row)
        .transpose()
    }

    pub(crate) async fn inbound_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Inbound>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("SELECT {INBOUND_COLUMNS} FROM inbound WHERE id = ANY($1) ORDER BY id"),
                &[&ids],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(inbound_from_row).collect()
    }

    pub(crate) async fn messages_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Message>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1) ORDER BY id"),
                &[&ids],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(super::message_from_row).collect()
    }

    pub(crate) async fn inbound_designees(&self, id: Id) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT u.name FROM inbound_designations d JOIN users u ON u.id = d.user_id
                 WHERE d.inbound_id = $1 ORDER BY u.name",
                &[&id],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get(0).map_err(db_err)).collect()
    }

    pub(crate) async fn add_suppression(&self, s: Suppression) -> Result<bool> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "INSERT INTO suppressions (number, source, note, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (number) DO NOTHING",
                &[&s.number, &s.source, &s.note, &s.created_at],
            )
            .await
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub(crate) async fn remove_suppression(&self, number: String) -> Result<bool> {
        let c = self.pool.get().await?;
        let n = c
            .execute("DELETE FROM suppressions WHERE number = $1", &[&number])
            .await
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub(crate) async fn list_suppressions(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT number, source, note, created_at FROM suppressions
                 WHERE $1::TEXT IS NULL OR number > $1 ORDER BY number LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Suppression {
                    number: r.try_get(0).map_err(db_err)?,
                    source: r.try_get(1).map_err(db_err)?,
                    note: r.try_get(2).map_err(db_err)?,
                    created_at: r.try_get(3).map_err(db_err)?,
                })
            })
            .collect()
    }

    pub(crate) async fn claim_deliveries(
        &self,
        channel: String,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE deliveries SET next_at = $3, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND channel = $1
                                  AND next_at <= $2 ORDER BY next_at, id LIMIT $4
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&channel, &now, &lease_until, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    pub(crate) async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        for r in &results {
            let applied = match r {
                DeliveryResult::Delivered { id, attempt, code, at } => {
                    tx.execute(
                        "UPDATE deliveries SET state = 'delivered', last_code = $3, last_error = NULL, done_at = $4
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                        &[id, attempt, code, at],
                    )
                    .await
                }
                DeliveryResult::Retry { id, attempt, code, error, next_at, .. } => {
                    tx.execute(
                        "UPDATE deliveries SET next_at = $3, last_code = $4, last_error = $5
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                        &[id, attempt, next_at, code, error],
                    )
                    .await
                }
                DeliveryResult::Dead { id, attempt, code, error, at } => {
                    tx.execute(
                        "UPDATE deliveries SET state = 'dead', last_code = $3, last_error = $4, done_at = $5
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                        &[id, attempt, code, error, at],
                    )
                    .await
                }
                DeliveryResult::Deferred { id, attempt, next_at } => {
                    tx.execute(
                        "UPDATE deliveries SET next_at = $3, attempts = attempts - 1
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                        &[id, attempt, next_at],
                    )
                    .await
                }
            }
            .map_err(db_err)?;
            if let (true, Some((id, attempt, at, code, error))) = (applied > 0, r.log_entry()) {
                tx.execute(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, at, code, error)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[&id, &attempt, &at, &code, &error],
                )
                .await
                .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn delivery_attempts(&self, id: Id) -> Result<Vec<DeliveryAttempt>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT attempt, at, code, error FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
                &[&id],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    attempt: r.try_get(0).map_err(db_err)?,
                    at: r.try_get(1).map_err(db_err)?,
                    code: r.try_get(2).map_err(db_err)?,
                    error: r.try_get(3).map_err(db_err)?,
                })
            })
            .collect()
    }

    pub(crate) async fn list_deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries
                     WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::BIGINT IS NULL OR owner_id = $2)
                       AND ($3::BIGINT IS NULL OR id < $3)
                     ORDER BY id DESC LIMIT $4"
                ),
                &[&f.state, &f.owner_id, &f.before, &(f.limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub(crate) async fn get_delivery(&self, id: Id) -> Result<Option<Delivery>> {
        let c = self.pool.get().await?;
        c.query_opt(
            &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db_err)?
        .as_ref()
        .map(delivery_from_row)
        .transpose()
    }

    pub(crate) async fn replay_delivery(
        &self,
        id: Id,
        now: Millis,
        give_up_at: Millis,
    ) -> Result<Option<Delivery>> {
        let c = self.pool.get().await?;
        c.query_opt(
            &format!(
                "UPDATE deliveries SET state = 'pending', next_at = $2, give_up_at = $3, done_at = NULL
                 WHERE id = $1 AND state = 'dead' RETURNING {DELIVERY_COLUMNS}"
            ),
            &[&id, &now, &give_up_at],
        )
        .await
        .map_err(db_err)?
        .as_ref()
        .map(delivery_from_row)
        .transpose()
    }
}
