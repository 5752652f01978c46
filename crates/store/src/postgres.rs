//! The PostgreSQL backend, for several textgate nodes sharing one database.
//!
//! A small pool of connections; each call takes one, runs in its own transaction and gives
//! it back, except new messages: requests that arrive together are stored together by a group
//! committer ([`Postgres::store_messages`]), one statement and one commit for all of them.
//! The hottest writes are set-based statements over arrays (`ops/batch.rs`). Queue claims lock
//! rows with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different messages
//! without waiting on each other.

use std::collections::HashMap;
use std::sync::Arc;

use textgate_core::config::redact_url;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};
use tokio_postgres::types::{IsNull, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::exec::{Arg, Dialect, Exec, Row as ExecRow};
use crate::model::*;
use crate::{Result, StoreError};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres/0001_init.sql")),
    (2, include_str!("migrations/postgres/0002_inbound.sql")),
    (3, include_str!("migrations/postgres/0003_jobs.sql")),
    (4, include_str!("migrations/postgres/0004_email.sql")),
    (5, include_str!("migrations/postgres/0005_key_use.sql")),
    (
        6,
        include_str!("migrations/postgres/0006_status_events.sql"),
    ),
    (7, include_str!("migrations/postgres/0007_web.sql")),
    (
        8,
        include_str!("migrations/postgres/0008_senders_attempts.sql"),
    ),
    (9, include_str!("migrations/postgres/0009_nodes.sql")),
    (
        10,
        include_str!("migrations/postgres/0010_inbound_seen.sql"),
    ),
    (
        11,
        include_str!("migrations/postgres/0011_hot_path_keys.sql"),
    ),
    (12, include_str!("migrations/postgres/0012_audit.sql")),
    (13, include_str!("migrations/postgres/0013_quotas.sql")),
];
/// The schema version this build migrates PostgreSQL stores to: its last migration.
pub const SCHEMA: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;
const POOL_SIZE: usize = 8;
/// Any constant: it names the lock that serialises migrations between nodes starting at once.
const MIGRATION_LOCK: i64 = 0x7465_7874_6761_7465;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct Postgres {
    pool: Arc<Pool>,
    accepts: mpsc::Sender<Accept>,
}

/// A request to store messages, waiting to be stored with those that came with it (see
/// [`Postgres::store_messages`]).
struct Accept {
    msgs: Vec<NewMessage>,
    done: oneshot::Sender<(Vec<NewMessage>, Result<Vec<Id>>)>,
}

/// Requests to store messages waiting for the group committer; a full queue holds callers.
const ACCEPT_QUEUE: usize = 4096;
/// At most this many messages in one statement (a request with more goes alone).
const ACCEPT_BATCH: usize = 2048;
/// Batches being stored at once: while they commit, the next requests gather.
const ACCEPT_BATCHES: usize = 2;

struct Pool {
    url: String,
    idle: Mutex<Vec<Session>>,
    permits: Semaphore,
}

/// A connection and the statements prepared on it.
struct Session {
    client: Client,
    prepared: Prepared,
}

/// Statements prepared on one connection, by their SQL. A statement sent as text is parsed
/// and described in one round trip and then run in another; a prepared one runs in one. The
/// statements of [`crate::ops`] are a few dozen; those that write ids into their text are
/// not, so at [`PREPARED_MAX`] the cache starts again.
#[derive(Default)]
pub(crate) struct Prepared(HashMap<String, Statement>);

const PREPARED_MAX: usize = 256;

pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    session: Option<Session>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Conn<'_> {
    /// The connection and its prepared statements, apart, so that a transaction can borrow
    /// the one while its statements use the other.
    pub(crate) fn parts(&mut self) -> (&mut Client, &mut Prepared) {
        let s = self
            .session
            .as_mut()
            .expect("a pooled connection is present until dropped");
        (&mut s.client, &mut s.prepared)
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if !s.client.is_closed() {
                if let Ok(mut idle) = self.pool.idle.try_lock() {
                    idle.push(s);
                }
            }
        }
    }
}

/// The PostgreSQL side of [`Exec`]: statements on a pooled connection or in its
/// transaction, prepared once per connection.
pub(crate) struct Pg<'c, C> {
    client: &'c C,
    prepared: &'c mut Prepared,
}

impl<'c, C: tokio_postgres::GenericClient + Sync> Pg<'c, C> {
    pub(crate) fn new(client: &'c C, prepared: &'c mut Prepared) -> Self {
        Self { client, prepared }
    }

    /// `sql`'s statement on this connection, prepared now if it was not yet.
    async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.prepared.0.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql).await.map_err(db_err)?;
        if self.prepared.0.len() >= PREPARED_MAX {
            self.prepared.0.clear();
        }
        self.prepared.0.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Forgets `sql`'s statement after an error, in case the error was the statement's own
    /// (a schema changed under it by another node's migration): the next use prepares it
    /// again.
    fn forget(&mut self, sql: &str, e: tokio_postgres::Error) -> StoreError {
        self.prepared.0.remove(sql);
        db_err(e)
    }
}

impl tokio_postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            // Every integer column is BIGINT; a narrower parameter is one PostgreSQL inferred.
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Bool(v) => v.to_sql(ty, out),
            Arg::Ints(v) => v.to_sql(ty, out),
            Arg::Texts(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

struct PgRow<'a>(&'a Row);

impl PgRow<'_> {
    fn get<'r, T: tokio_postgres::types::FromSql<'r>>(&'r self, i: usize) -> Result<T> {
        self.0.try_get(i).map_err(db_err)
    }

    fn int_of(&self, i: usize) -> Result<Option<i64>> {
        let ty = self.0.columns().get(i).map(|c| c.type_().clone());
        match ty {
            Some(Type::INT4) => Ok(self.get::<Option<i32>>(i)?.map(i64::from)),
            Some(Type::INT2) => Ok(self.get::<Option<i16>>(i)?.map(i64::from)),
            _ => self.get(i),
        }
    }
}

impl ExecRow for PgRow<'_> {
    fn int(&self, i: usize) -> Result<i64> {
        self.int_of(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.int_of(i)
    }
    fn text(&self, i: usize) -> Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i)
    }
    fn flag(&self, i: usize) -> Result<bool> {
        match self.0.columns().get(i).map(|c| c.type_()) {
            Some(&Type::BOOL) | None => self.get(i),
            Some(_) => Ok(self.int(i)? != 0),
        }
    }
}

fn pg_args<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

impl<C: tokio_postgres::GenericClient + Sync> Exec for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let st = self.statement(sql).await?;
        match self.client.execute(&st, &pg_args(args)).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.forget(sql, e)),
        }
    }

    async fn insert(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Id>> {
        let sql = format!("{sql} RETURNING id");
        let st = self.statement(&sql).await?;
        match self.client.query_opt(&st, &pg_args(args)).await {
            Ok(row) => row.map(|r| PgRow(&r).int(0)).transpose(),
            Err(e) => Err(self.forget(&sql, e)),
        }
    }

    async fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut map: impl FnMut(&dyn ExecRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let st = self.statement(sql).await?;
        match self.client.query(&st, &pg_args(args)).await {
            Ok(rows) => rows.iter().map(|r| map(&PgRow(r))).collect(),
            Err(e) => Err(self.forget(sql, e)),
        }
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).await.map_err(db_err)
    }
}

pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
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

/// The schema version of the database at `url` without migrating it; `None` when textgate
/// has never opened it.
pub(crate) async fn schema_of(url: &str) -> Result<Option<i64>> {
    let client = connect(url).await?;
    let err = db_err;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(err)?;
    Ok(row.get(0))
}

/// Applies the migrations the database has not had yet, all in one transaction under a lock,
/// so that nodes starting together migrate once. A database some newer build has migrated
/// past [`SCHEMA`] is refused: this build would write rows that build does not expect.
async fn migrate(
    client: &mut Client,
    migrations: &[(i64, &str)],
) -> std::result::Result<(), String> {
    let e = |e: tokio_postgres::Error| format!("migration failed: {}", db_err(e));
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await
        .map_err(e)?;
    let at: Option<i64> = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(e)?
        .get(0);
    crate::refuse_newer(at.unwrap_or(0), SCHEMA)?;
    for (version, sql) in migrations {
        let done = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(e)?;
        if done.is_none() {
            tx.batch_execute(sql).await.map_err(e)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &textgate_core::clock::now_ms()],
            )
            .await
            .map_err(e)?;
        }
    }
    tx.commit().await.map_err(e)
}

/// A connection to the database at `url`, migrated to `version` only: a database as a build
/// of that version left it (the upgrade tests fill it and open it with this build).
#[cfg(test)]
pub(crate) async fn create_at(url: &str, version: i64) -> Result<Client> {
    let mut client = connect(url).await?;
    migrate(&mut client, &MIGRATIONS[..version as usize])
        .await
        .map_err(StoreError::backend)?;
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
        let session = match reused {
            Some(s) if !s.client.is_closed() => s,
            _ => Session {
                client: connect(&self.url).await?,
                prepared: Prepared::default(),
            },
        };
        Ok(Conn {
            pool: self,
            session: Some(session),
            _permit: permit,
        })
    }
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
        migrate(&mut client, MIGRATIONS)
            .await
            .map_err(|reason| StoreError::Open {
                url: redact_url(url),
                reason,
            })?;
        pool.idle.lock().await.push(Session {
            client,
            prepared: Prepared::default(),
        });
        let pool = Arc::new(pool);
        let (accepts, queue) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(group_commit(pool.clone(), queue));
        Ok(Postgres { pool, accepts })
    }

    /// Stores new messages (of a request without an idempotency key) together with those of
    /// the requests that arrive meanwhile: one statement and one commit for all of them,
    /// where a transaction each would cost every request three round trips and a commit.
    /// Gives the messages back with their ids once committed.
    pub(crate) async fn store_messages(
        &self,
        msgs: Vec<NewMessage>,
    ) -> (Vec<NewMessage>, Result<Vec<Id>>) {
        let (done, answer) = oneshot::channel();
        // Both errors mean the group committer has ended: the store is being dropped.
        let Err(e) = self.accepts.send(Accept { msgs, done }).await else {
            return answer
                .await
                .unwrap_or_else(|_| (Vec::new(), Err(StoreError::Closed)));
        };
        (e.0.msgs, Err(StoreError::Closed))
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<Conn<'_>> {
        self.pool.get().await
    }

    pub(crate) async fn health(&self) -> Result<()> {
        let mut conn = self.pool.get().await?;
        conn.parts()
            .0
            .simple_query("SELECT 1")
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {}
}

/// The group committer of [`Postgres::store_messages`]: takes what requests have queued (up
/// to [`ACCEPT_BATCH`] messages) and stores it in one statement, with up to
/// [`ACCEPT_BATCHES`] such statements under way. Ends when the store is dropped.
async fn group_commit(pool: Arc<Pool>, mut queue: mpsc::Receiver<Accept>) {
    let running = Arc::new(Semaphore::new(ACCEPT_BATCHES));
    loop {
        let Ok(permit) = running.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut n = first.msgs.len();
        let mut batch = vec![first];
        while n < ACCEPT_BATCH {
            match queue.try_recv() {
                Ok(a) => {
                    n += a.msgs.len();
                    batch.push(a);
                }
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            store_batch(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Stores the requests of one batch and answers each. When the batch fails, each request is
/// stored again on its own, so that one request's bad row fails that request only.
async fn store_batch(pool: &Pool, batch: Vec<Accept>) {
    let all: Vec<&NewMessage> = batch.iter().flat_map(|a| &a.msgs).collect();
    let stored = insert(pool, &all).await;
    drop(all);
    match stored {
        Ok(ids) => {
            let mut ids = ids.into_iter();
            for a in batch {
                let mine = ids.by_ref().take(a.msgs.len()).collect();
                let _ = a.done.send((a.msgs, Ok(mine)));
            }
        }
        Err(e) if batch.len() == 1 => {
            for a in batch {
                let _ = a.done.send((a.msgs, Err(e.clone())));
            }
        }
        Err(_) => {
            for a in batch {
                let own: Vec<&NewMessage> = a.msgs.iter().collect();
                let result = insert(pool, &own).await;
                drop(own);
                let _ = a.done.send((a.msgs, result));
            }
        }
    }
}

/// One INSERT of `msgs`, committed on its own.
async fn insert(pool: &Pool, msgs: &[&NewMessage]) -> Result<Vec<Id>> {
    let mut conn = pool.get().await?;
    let (client, prepared) = conn.parts();
    crate::ops::batch::insert_messages(&mut Pg::new(&*client, prepared), msgs).await
}
