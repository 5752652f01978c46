//! The PostgreSQL backend, for several textgate nodes sharing one database.
//!
//! A small pool of connections; each call takes one, runs in its own transaction and gives
//! it back. Queue claims lock rows with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once
//! take different messages without waiting on each other.

use std::sync::Arc;

use textgate_core::clock::Millis;
use textgate_core::config::redact_url;
use textgate_core::status::Status;
use tokio::sync::{Mutex, Semaphore};
use tokio_postgres::{Client, NoTls, Row, Transaction};

use crate::model::*;
use crate::{Result, StoreError};

mod inbound;
mod jobs;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres/0001_init.sql")),
    (2, include_str!("migrations/postgres/0002_inbound.sql")),
    (3, include_str!("migrations/postgres/0003_jobs.sql")),
    (4, include_str!("migrations/postgres/0004_email.sql")),
    (5, include_str!("migrations/postgres/0005_key_use.sql")),
];
const POOL_SIZE: usize = 8;
/// Any constant: it names the lock that serialises migrations between nodes starting at once.
const MIGRATION_LOCK: i64 = 0x7465_7874_6761_7465;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct Postgres {
    pool: Arc<Pool>,
}

struct Pool {
    url: String,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.try_lock() {
                    idle.push(c);
                }
            }
        }
    }
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_string());
        }
    }
    StoreError::Backend(crate::Cause::new(e))
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| StoreError::Open {
                url: redact_url(url),
                reason: e.to_string(),
            })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

impl Pool {
    async fn get(&self) -> Result<Conn<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let reused = self.idle.lock().await.pop();
        let client = match reused {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url).await?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

fn message_from_row(r: &Row) -> Result<Message> {
    let status: String = r.try_get(8).map_err(db_err)?;
    let status = Status::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
    let g = |e: tokio_postgres::Error| db_err(e);
    Ok(Message {
        id: r.try_get(0).map_err(g)?,
        owner_id: r.try_get(1).map_err(g)?,
        job_id: r.try_get(2).map_err(g)?,
        to: r.try_get(3).map_err(g)?,
        from: r.try_get(4).map_err(g)?,
        body: r.try_get(5).map_err(g)?,
        encoding: r.try_get(6).map_err(g)?,
        segments: r.try_get(7).map_err(g)?,
        status,
        priority: r.try_get(9).map_err(g)?,
        due_at: r.try_get(10).map_err(g)?,
        expires_at: r.try_get(11).map_err(g)?,
        attempts: r.try_get(12).map_err(g)?,
        device: r.try_get(13).map_err(g)?,
        error_code: r.try_get(14).map_err(g)?,
        error: r.try_get(15).map_err(g)?,
        callback_url: r.try_get(16).map_err(g)?,
        reference: r.try_get(17).map_err(g)?,
        created_at: r.try_get(18).map_err(g)?,
        sent_at: r.try_get(19).map_err(g)?,
        done_at: r.try_get(20).map_err(g)?,
        origin: r.try_get(21).map_err(g)?,
        api_key_id: r.try_get(22).map_err(g)?,
        email_from: r.try_get(23).map_err(g)?,
    })
}

/// Inserts one message row in a transaction; its id.
async fn insert_message_row(tx: &Transaction<'_>, m: &NewMessage) -> Result<Id> {
    let stmt = tx
        .prepare(
            "INSERT INTO messages (owner_id, job_id, recipient, sender, body, encoding, segments, status,
               priority, due_at, expires_at, callback_url, reference, created_at, lease_until, attempts,
               origin, api_key_id, email_from)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING id",
        )
        .await
        .map_err(db_err)?;
    let status = m.initial_status();
    let claimed = status == Status::Sending;
    let row = tx
        .query_one(
            &stmt,
            &[
                &m.owner_id,
                &m.job_id,
                &m.to,
                &m.from,
                &m.body,
                &m.encoding,
                &m.segments,
                &status.as_str(),
                &m.priority,
                &m.schedule_at.unwrap_or(m.created_at),
                &m.expires_at,
                &m.callback_url,
                &m.reference,
                &m.created_at,
                &m.claimed_until.filter(|_| claimed),
                &i64::from(claimed),
                &m.origin,
                &m.api_key_id,
                &m.email_from,
            ],
        )
        .await
        .map_err(db_err)?;
    row.try_get(0).map_err(db_err)
}

const KEY_COLUMNS: &str = "k.id, k.user_id, u.name, k.label, k.webhook_secret IS NOT NULL, k.created_at, k.last_used_at, k.revoked_at";

fn key_from_row(r: &Row) -> Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.try_get(0).map_err(db_err)?,
        user_id: r.try_get(1).map_err(db_err)?,
        user: r.try_get(2).map_err(db_err)?,
        label: r.try_get(3).map_err(db_err)?,
        webhook_secret: r.try_get(4).map_err(db_err)?,
        created_at: r.try_get(5).map_err(db_err)?,
        last_used_at: r.try_get(6).map_err(db_err)?,
        revoked_at: r.try_get(7).map_err(db_err)?,
    })
}

fn user_from_row(r: &Row) -> Result<User> {
    let role: String = r.try_get(2).map_err(db_err)?;
    Ok(User {
        id: r.try_get(0).map_err(db_err)?,
        name: r.try_get(1).map_err(db_err)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("user has the unknown role \"{role}\"")))?,
        email: r.try_get(3).map_err(db_err)?,
        password_hash: r.try_get(4).map_err(db_err)?,
        created_at: r.try_get(5).map_err(db_err)?,
    })
}

const USER_COLUMNS: &str = "id, name, role, email, password_hash, created_at";

async fn get_message_on(c: &impl tokio_postgres::GenericClient, id: Id) -> Result<Option<Message>> {
    let row = c
        .query_opt(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db_err)?;
    row.as_ref().map(message_from_row).transpose()
}

impl Postgres {
    /// Connects and migrates.
    pub async fn open(url: &str) -> Result<Postgres> {
        let pool = Pool {
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        };
        let mut client = connect(url).await?;
        let open_err = |e: tokio_postgres::Error| StoreError::Open {
            url: redact_url(url),
            reason: format!("migration failed: {}", db_err(e)),
        };
        let tx = client.transaction().await.map_err(open_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(open_err)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await
            .map_err(open_err)?;
        for (version, sql) in MIGRATIONS {
            let done = tx
                .query_opt(
                    "SELECT version FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await
                .map_err(open_err)?;
            if done.is_none() {
                tx.batch_execute(sql).await.map_err(open_err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &textgate_core::clock::now_ms()],
                )
                .await
                .map_err(open_err)?;
            }
        }
        tx.commit().await.map_err(open_err)?;
        pool.idle.lock().await.push(client);
        Ok(Postgres {
            pool: Arc::new(pool),
        })
    }

    pub(crate) async fn health(&self) -> Result<()> {
        self.pool
            .get()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {}

    pub(crate) async fn create_user(&self, u: NewUser) -> Result<User> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                "INSERT INTO users (name, role, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&u.name, &u.role.as_str(), &u.email, &u.password_hash, &u.created_at],
            )
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a user named \"{}\" already exists", u.name)),
                other => other,
            })?;
        Ok(User {
            id: row.try_get(0).map_err(db_err)?,
            name: u.name,
            role: u.role,
            email: u.email,
            password_hash: u.password_hash,
            created_at: u.created_at,
        })
    }

    pub(crate) async fn user_by_name(&self, name: String) -> Result<Option<User>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn user_by_id(&self, id: Id) -> Result<Option<User>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn user_by_email(&self, email: String) -> Result<Option<User>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1) ORDER BY id LIMIT 1"
                ),
                &[&email],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn count_users(&self) -> Result<i64> {
        let c = self.pool.get().await?;
        c.query_one("SELECT count(*) FROM users", &[])
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)
    }

    pub(crate) async fn create_api_key(
        &self,
        user_id: Id,
        key_hash: String,
        label: String,
        webhook_secret: Option<String>,
    ) -> Result<Id> {
        let c = self.pool.get().await?;
        c.query_one(
            "INSERT INTO api_keys (user_id, key_hash, label, created_at, webhook_secret) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&user_id, &key_hash, &label, &textgate_core::clock::now_ms(), &webhook_secret],
        )
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)
    }

    pub(crate) async fn api_key_by_hash(&self, key_hash: String) -> Result<Option<ApiKey>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT u.id, u.name, u.role, u.email, u.password_hash, u.created_at, k.id, k.webhook_secret
                 FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                &[&key_hash],
            )
            .await
            .map_err(db_err)?;
        row.as_ref()
            .map(|r| {
                Ok(ApiKey {
                    user: user_from_row(r)?,
                    id: r.try_get(6).map_err(db_err)?,
                    webhook_secret: r.try_get(7).map_err(db_err)?,
                })
            })
            .transpose()
    }

    pub(crate) async fn purge(&self, batch: PurgeBatch) -> Result<Purged> {
        let scan = crate::purge_scan(&batch)
            .replace("?1", "$1")
            .replace("?2", "$2");
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let rows = tx
            .query(&scan, &[&batch.after, &(batch.limit as i64)])
            .await
            .map_err(db_err)?;
        let rows: Vec<(Id, Millis, bool)> = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(db_err)?,
                    r.try_get(1).map_err(db_err)?,
                    r.try_get(2).map_err(db_err)?,
                ))
            })
            .collect::<Result<_>>()?;
        let (ids, next) = crate::purge_plan(&rows, &batch);
        if !ids.is_empty() {
            // Parts, deliveries, their attempts and inbox entries go with their rows
            // (ON DELETE CASCADE).
            let sql = match (batch.what, batch.strip) {
                (Purge::Messages, true) => "UPDATE messages SET body = '' WHERE id = ANY($1)",
                (Purge::Inbound, true) => "UPDATE inbound SET body = '' WHERE id = ANY($1)",
                (Purge::Messages, false) => "DELETE FROM messages WHERE id = ANY($1)",
                (Purge::Inbound, false) => "DELETE FROM inbound WHERE id = ANY($1)",
                (Purge::Deliveries, _) => "DELETE FROM deliveries WHERE id = ANY($1)",
            };
            tx.execute(sql, &[&ids]).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Purged {
            rows: ids.len() as u64,
            next,
        })
    }

    pub(crate) async fn list_api_keys(&self, user_id: Option<Id>) -> Result<Vec<KeyInfo>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
                     WHERE ($1::BIGINT IS NULL OR k.user_id = $1) ORDER BY k.id DESC"
                ),
                &[&user_id],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Option<KeyInfo>> {
        let c = self.pool.get().await?;
        c.execute(
            "UPDATE api_keys SET revoked_at = $3
             WHERE id = $1 AND ($2::BIGINT IS NULL OR user_id = $2) AND revoked_at IS NULL",
            &[&id, &owner, &now],
        )
        .await
        .map_err(db_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
                     WHERE k.id = $1 AND ($2::BIGINT IS NULL OR k.user_id = $2)"
                ),
                &[&id, &owner],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn touch_api_key(&self, id: Id, now: Millis) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn revoked_api_keys_since(&self, since: Millis) -> Result<Vec<(Id, Millis)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, revoked_at FROM api_keys WHERE revoked_at > $1 ORDER BY revoked_at",
                &[&since],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
            .collect()
    }

    pub(crate) async fn api_key_secret(&self, id: Id) -> Result<Option<String>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt("SELECT webhook_secret FROM api_keys WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?;
        Ok(row
            .map(|r| r.try_get::<_, Option<String>>(0))
            .transpose()
            .map_err(db_err)?
            .flatten())
    }

    pub(crate) async fn insert_messages(
        &self,
        msgs: Vec<NewMessage>,
        idem: Option<Idempotency>,
        render: RenderFn,
    ) -> Result<Inserted> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        if let Some(k) = &idem {
            // Claim the key first: a concurrent request with the same key waits here on the
            // row lock, then sees the committed answer.
            let fresh = tx
                .execute(
                    "INSERT INTO idempotency (user_id, key, fingerprint, response, created_at) VALUES ($1, $2, $3, '', $4)
                     ON CONFLICT (user_id, key) DO NOTHING",
                    &[&k.user_id, &k.key, &k.fingerprint, &textgate_core::clock::now_ms()],
                )
                .await
                .map_err(db_err)?;
            if fresh == 0 {
                let row = tx
                    .query_one("SELECT fingerprint, response FROM idempotency WHERE user_id = $1 AND key = $2", &[&k.user_id, &k.key])
                    .await
                    .map_err(db_err)?;
                let fp: String = row.try_get(0).map_err(db_err)?;
                let response: String = row.try_get(1).map_err(db_err)?;
                return Ok(if fp == k.fingerprint {
                    Inserted::Replay { response }
                } else {
                    Inserted::KeyReused
                });
            }
        }
        let mut ids = Vec::with_capacity(msgs.len());
        for m in &msgs {
            ids.push(insert_message_row(&tx, m).await?);
        }
        let response = render(&ids);
        if let Some(k) = &idem {
            tx.execute(
                "UPDATE idempotency SET response = $3 WHERE user_id = $1 AND key = $2",
                &[&k.user_id, &k.key, &response],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        let stored = msgs
            .into_iter()
            .zip(&ids)
            .map(|(m, id)| m.stored(*id))
            .collect();
        Ok(Inserted::New {
            ids,
            response,
            stored,
        })
    }

    pub(crate) async fn get_message(&self, id: Id) -> Result<Option<Message>> {
        let c = self.pool.get().await?;
        get_message_on(&*c, id).await
    }

    pub(crate) async fn list_messages(&self, f: MessageFilter) -> Result<Vec<Message>> {
        let c = self.pool.get().await?;
        let status = f.status.map(|s| s.as_str());
        let rows = c
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE ($1::BIGINT IS NULL OR owner_id = $1) AND ($2::TEXT IS NULL OR status = $2)
                       AND ($3::BIGINT IS NULL OR id < $3)
                     ORDER BY id DESC LIMIT $4"
                ),
                &[&f.owner_id, &status, &f.before, &(f.limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(message_from_row).collect()
    }

    pub(crate) async fn cancel_message(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Cancel> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let row = tx
            .query_opt(
                "SELECT owner_id, status FROM messages WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(Cancel::NotFound);
        };
        let owner_id: Id = row.try_get(0).map_err(db_err)?;
        let status: String = row.try_get(1).map_err(db_err)?;
        if owner.is_some_and(|o| o != owner_id) {
            return Ok(Cancel::NotFound);
        }
        let status = Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
        if !matches!(status, Status::Queued | Status::Scheduled) {
            return Ok(Cancel::TooLate(status));
        }
        tx.execute(
            "UPDATE messages SET status = 'cancelled', done_at = $2, lease_until = NULL WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(db_err)?;
        let m = get_message_on(&tx, id)
            .await?
            .ok_or(StoreError::Corrupt("cancelled message vanished".into()))?;
        tx.commit().await.map_err(db_err)?;
        Ok(Cancel::Cancelled(Box::new(m)))
    }

    pub(crate) async fn claim(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE messages SET status = 'sending', lease_until = $1, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND due_at <= $2
                                  ORDER BY priority, due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING {MESSAGE_COLUMNS}"
                ),
                &[&lease_until, &now, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|m| (m.priority, m.due_at, m.id));
        Ok(out)
    }

    pub(crate) async fn maintain(&self, now: Millis) -> Result<Maintenance> {
        let c = self.pool.get().await?;
        let promoted = c
            .execute(
                "UPDATE messages SET status = 'queued' WHERE status = 'scheduled' AND due_at <= $1",
                &[&now],
            )
            .await
            .map_err(db_err)?;
        let requeued = c
            .execute(
                "UPDATE messages SET status = 'queued', lease_until = NULL, due_at = $1 WHERE status = 'sending' AND lease_until < $1",
                &[&now],
            )
            .await
            .map_err(db_err)?;
        let expired = c
            .execute(
                "UPDATE messages SET status = 'expired', done_at = $1, error = $2 WHERE status = 'sent' AND expires_at < $3",
                &[&now, &NO_RECEIPT_ERROR, &(now - RECEIPT_GRACE_MS)],
            )
            .await
            .map_err(db_err)?;
        Ok(Maintenance {
            promoted,
            requeued,
            expired,
        })
    }

    pub(crate) async fn record_outcomes(&self, outcomes: Arc<Vec<Outcome>>) -> Result<Vec<bool>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let mut applied = Vec::with_capacity(outcomes.len());
        for o in outcomes.iter() {
            let n = match o {
                Outcome::Sent {
                    id,
                    attempt,
                    device,
                    part_ids,
                    receipts,
                    at,
                } => {
                    let (status, done_at, code, error) =
                        sent_with_receipts(receipts, part_ids.len(), *at);
                    let n = tx
                        .execute(
                            "UPDATE messages SET status = $5, device = $3, sent_at = $4, done_at = $6, lease_until = NULL,
                               error_code = $7, error = $8
                             WHERE id = $1 AND attempts = $2 AND status = 'sending'",
                            &[&id, &attempt, &device, &at, &status.as_str(), &done_at, &code, &error],
                        )
                        .await
                        .map_err(db_err)?;
                    if n > 0 {
                        for (i, pid) in part_ids.iter().enumerate() {
                            let r = receipts.get(i).and_then(Option::as_ref);
                            let state = r.map_or("sent", |r| {
                                if r.delivered {
                                    "delivered"
                                } else {
                                    "undelivered"
                                }
                            });
                            tx.execute(
                                "INSERT INTO message_parts
                                   (message_id, part_no, device, device_msg_id, status, error_code, submitted_at, done_at)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                                 ON CONFLICT (message_id, part_no) DO UPDATE SET device = $3, device_msg_id = $4,
                                   status = $5, error_code = $6, submitted_at = $7, done_at = $8",
                                &[&id, &(i as i64 + 1), &device, pid, &state, &r.and_then(|r| r.code.clone()), &at, &r.map(|r| r.at.max(*at))],
                            )
                            .await
                            .map_err(db_err)?;
                        }
                    }
                    n
                }
                Outcome::Retry {
                    id,
                    attempt,
                    device,
                    due_at,
                    code,
                    error,
                    refund,
                } => tx
                    .execute(
                        "UPDATE messages SET status = 'queued', due_at = $3, lease_until = NULL,
                           device = coalesce($4, device), error_code = $5, error = $6, attempts = attempts - $7
                         WHERE id = $1 AND attempts = $2 AND status = 'sending'",
                        &[&id, &attempt, &due_at, &device, &code, &error, &i64::from(*refund)],
                    )
                    .await
                    .map_err(db_err)?,
                Outcome::Final {
                    id,
                    attempt,
                    status,
                    device,
                    code,
                    error,
                    at,
                } => tx
                    .execute(
                        "UPDATE messages SET status = $3, done_at = $4, lease_until = NULL,
                           device = coalesce($5, device), error_code = $6, error = $7
                         WHERE id = $1 AND attempts = $2 AND status = 'sending'",
                        &[&id, &attempt, &status.as_str(), &at, &device, &code, &error],
                    )
                    .await
                    .map_err(db_err)?,
            };
            applied.push(n > 0);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(applied)
    }

    pub(crate) async fn apply_receipts(
        &self,
        receipts: Arc<Vec<Receipt>>,
    ) -> Result<Vec<ReceiptMatch>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts.iter() {
            out.push(apply_receipt(&tx, r).await?);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    pub(crate) async fn unreceipted_parts(
        &self,
        device: String,
        after: Id,
        limit: usize,
    ) -> Result<Vec<(Id, String)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT p.message_id, p.device_msg_id FROM messages m JOIN message_parts p ON p.message_id = m.id
                 WHERE m.status = 'sent' AND m.id > $2 AND p.device = $1 AND p.status = 'sent'
                 ORDER BY m.id, p.part_no LIMIT $3",
                &[&device, &after, &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
            .collect()
    }

    pub(crate) async fn message_parts(&self, id: Id) -> Result<Vec<Part>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT part_no, device, device_msg_id, status, error_code, submitted_at, done_at
                 FROM message_parts WHERE message_id = $1 ORDER BY part_no",
                &[&id],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Part {
                    part_no: r.try_get(0).map_err(db_err)?,
                    device: r.try_get(1).map_err(db_err)?,
                    device_msg_id: r.try_get(2).map_err(db_err)?,
                    status: r.try_get(3).map_err(db_err)?,
                    error_code: r.try_get(4).map_err(db_err)?,
                    submitted_at: r.try_get(5).map_err(db_err)?,
                    done_at: r.try_get(6).map_err(db_err)?,
                })
            })
            .collect()
    }

    pub(crate) async fn queue_depth(&self) -> Result<Vec<(Status, i64)>> {
        let c = self.pool.get().await?;
        let mut out = Vec::new();
        for st in [Status::Queued, Status::Scheduled, Status::Sending] {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM messages WHERE status = $1",
                    &[&st.as_str()],
                )
                .await
                .map_err(db_err)?
                .try_get(0)
                .map_err(db_err)?;
            out.push((st, n));
        }
        Ok(out)
    }
}

async fn apply_receipt(tx: &Transaction<'_>, r: &Receipt) -> Result<ReceiptMatch> {
    let state = if r.delivered {
        "delivered"
    } else {
        "undelivered"
    };
    let hit = tx
        .query_opt(
            // An id the SMSC has used before belongs to the newest part that has it.
            // A receipt is never dated before its part's submit (it may be read first).
            "UPDATE message_parts SET status = $3, error_code = $4, done_at = GREATEST($5, submitted_at)
             WHERE (message_id, part_no) = (SELECT message_id, part_no FROM message_parts
                                            WHERE device = $1 AND device_msg_id = $2
                                            ORDER BY message_id DESC LIMIT 1)
             RETURNING message_id",
            &[&r.device, &r.device_msg_id, &state, &r.code, &r.at],
        )
        .await
        .map_err(db_err)?;
    let Some(hit) = hit else {
        return Ok(ReceiptMatch::Unknown);
    };
    let message_id: Id = hit.try_get(0).map_err(db_err)?;
    let row = tx
        .query_one(
            "SELECT m.segments,
                    count(*) FILTER (WHERE p.status = 'delivered'),
                    count(*) FILTER (WHERE p.status = 'undelivered')
             FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id
             WHERE m.id = $1 GROUP BY m.id",
            &[&message_id],
        )
        .await
        .map_err(db_err)?;
    let segments: i64 = row.try_get(0).map_err(db_err)?;
    let delivered: i64 = row.try_get(1).map_err(db_err)?;
    let undelivered: i64 = row.try_get(2).map_err(db_err)?;
    let mut changed = None;
    if let Some(st) = status_from_parts(segments, delivered, undelivered) {
        let code = r.code.clone().filter(|_| !r.delivered);
        let error = (st == Status::Undelivered).then(|| undelivered_error(r.code.as_deref()));
        let n = tx
            .execute(
                "UPDATE messages SET status = $2, done_at = GREATEST($3, sent_at), error_code = coalesce($4, error_code),
                   error = coalesce($5, error)
                 WHERE id = $1 AND status = 'sent'",
                &[&message_id, &st.as_str(), &r.at, &code, &error],
            )
            .await
            .map_err(db_err)?;
        if n > 0 {
            changed = Some(st);
        }
    }
    Ok(ReceiptMatch::Part {
        message_id,
        status: changed,
    })
}
