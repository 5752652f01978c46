//! textgate's one data layer. Every read and write of data goes through [`Store`], which
//! has two backends with the same behaviour, checked by one conformance suite
//! (`tests/conformance.rs`):
//!
//! - [`sqlite`]: the embedded default. One writer thread owns the write connection and
//!   commits whatever callers have queued in one transaction (group commit), so many small
//!   writes cost one fsync; readers use their own connections (WAL).
//! - [`postgres`]: for several nodes sharing one database; queue claims use
//!   `FOR UPDATE SKIP LOCKED`.
//! - [`model`]: the rows and requests both backends speak.
//! - [`jobs`]: the same for bulk jobs: batches of CSV rows stored with their resume point.
//!
//! Migrations are applied when a store is opened.
#![forbid(unsafe_code)]

pub mod jobs;
pub mod model;
pub mod postgres;
pub mod sqlite;

pub use jobs::*;
pub use model::*;

use std::sync::Arc;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}: {reason}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// A uniqueness rule was broken (for example a user name that exists).
    #[error("{0}")]
    Conflict(String),
    /// The database answered with an error, or could not be reached.
    #[error(transparent)]
    Backend(Cause),
    /// A stored value could not be read back (a value this version does not know, a row
    /// that vanished): never read as a default.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The store has shut down.
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// A backend failure described by us, with no error of the driver's behind it.
    pub fn backend(what: impl Into<String>) -> StoreError {
        StoreError::Backend(Cause::new(Described(what.into())))
    }
}

/// The driver's error behind a [`StoreError::Backend`], kept whole (and shared, so that the
/// one error of a group commit can be handed to every caller in it). Its message shows the
/// driver's error with its causes (PostgreSQL's says only "db error" by itself), and
/// [`std::error::Error::source`] gives the driver's error itself.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps a driver's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(e))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)?;
        let mut next = self.0.source();
        while let Some(s) = next {
            write!(f, ": {s}")?;
            next = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A failure the store describes itself.
#[derive(Debug)]
struct Described(String);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Described {}

/// Which rows of a scanned batch a retention pass takes, and where the next batch starts:
/// rows in id order as `(id, created, eligible)`. The pass stops at the first row created at
/// or after `before` (ids grow with time); rows not eligible (not final yet, or stripped
/// already) are passed over. Decided here once for both backends.
pub(crate) fn purge_plan(rows: &[(Id, Millis, bool)], batch: &PurgeBatch) -> (Vec<Id>, Option<Id>) {
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

/// The SQL that lists a batch for [`purge_plan`] (`?1` after, `?2` limit; PostgreSQL takes
/// `$1`, `$2`), and whether it is a delete or a strip that the backend then runs.
pub(crate) fn purge_scan(batch: &PurgeBatch) -> String {
    let finals: Vec<String> = Status::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    match (batch.what, batch.strip) {
        (Purge::Messages, false) => format!(
            "SELECT id, created_at, status IN ({}) FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            finals.join(", ")
        ),
        (Purge::Messages, true) => format!(
            "SELECT id, created_at, status IN ({}) AND body <> '' FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            finals.join(", ")
        ),
        (Purge::Inbound, false) => {
            "SELECT id, received_at, TRUE FROM inbound WHERE id > ?1 ORDER BY id LIMIT ?2".into()
        }
        (Purge::Inbound, true) => {
            "SELECT id, received_at, body <> '' FROM inbound WHERE id > ?1 ORDER BY id LIMIT ?2"
                .into()
        }
        (Purge::Deliveries, _) => {
            "SELECT id, created_at, state <> 'pending' FROM deliveries WHERE id > ?1 ORDER BY id LIMIT ?2"
                .into()
        }
    }
}

/// The result type of every store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The data layer, on whichever backend the URL named.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `url`: `sqlite://PATH` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Store> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            Backend::Sqlite(sqlite::Sqlite::open(path).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::Postgres::open(url).await?)
        } else {
            return Err(StoreError::Open {
                url: textgate_core::config::redact_url(url),
                reason: "unknown scheme: use sqlite://PATH or postgres://user@host/db".into(),
            });
        };
        Ok(Store { backend })
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// One batch of a retention pass (`[retention]`): deletes (or strips the text of) at
    /// most `limit` rows older than `before`, in id order, in one short transaction, so that
    /// sending is never held up for long. Ids grow with time, so the pass stops at the first
    /// row too young; rows not yet final are skipped.
    pub async fn purge(&self, batch: PurgeBatch) -> Result<Purged> {
        dispatch!(self, b => b.purge(batch).await)
    }

    /// API keys, newest first: one user's, or everyone's.
    pub async fn list_api_keys(&self, user_id: Option<Id>) -> Result<Vec<KeyInfo>> {
        dispatch!(self, b => b.list_api_keys(user_id).await)
    }

    /// Revokes a key (of `owner`, unless `None`); the key as it now is, or `None` if there is
    /// no such key (of that owner). Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Option<KeyInfo>> {
        dispatch!(self, b => b.revoke_api_key(id, owner, now).await)
    }

    /// Notes that a key was used.
    pub async fn touch_api_key(&self, id: Id, now: Millis) -> Result<()> {
        dispatch!(self, b => b.touch_api_key(id, now).await)
    }

    /// Keys revoked after `since`, with when: what nodes that cache verified keys forget.
    pub async fn revoked_api_keys_since(&self, since: Millis) -> Result<Vec<(Id, Millis)>> {
        dispatch!(self, b => b.revoked_api_keys_since(since).await)
    }

    /// Succeeds when the database answers.
    pub async fn health(&self) -> Result<()> {
        dispatch!(self, b => b.health().await)
    }

    /// Creates a user; a taken name is [`StoreError::Conflict`].
    pub async fn create_user(&self, user: NewUser) -> Result<User> {
        dispatch!(self, b => b.create_user(user).await)
    }

    /// The user with this name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        dispatch!(self, b => b.user_by_name(name.to_string()).await)
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: Id) -> Result<Option<User>> {
        dispatch!(self, b => b.user_by_id(id).await)
    }

    /// The user with this e-mail address (compared without regard to case); the oldest
    /// when several share it.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        dispatch!(self, b => b.user_by_email(email.to_string()).await)
    }

    /// The number of users.
    pub async fn count_users(&self) -> Result<i64> {
        dispatch!(self, b => b.count_users().await)
    }

    /// Stores an API key's hash for a user, with the secret that signs the status callbacks
    /// of messages sent with it (if any).
    pub async fn create_api_key(
        &self,
        user_id: Id,
        key_hash: String,
        label: String,
        webhook_secret: Option<String>,
    ) -> Result<Id> {
        dispatch!(self, b => b.create_api_key(user_id, key_hash, label, webhook_secret).await)
    }

    /// The owner of an API key that is not revoked, by the key's hash.
    pub async fn user_by_api_key(&self, key_hash: &str) -> Result<Option<User>> {
        Ok(self.api_key_by_hash(key_hash).await?.map(|k| k.user))
    }

    /// An API key that is not revoked, with its owner, by the key's hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        dispatch!(self, b => b.api_key_by_hash(key_hash.to_string()).await)
    }

    /// The webhook secret of an API key.
    pub async fn api_key_secret(&self, key_id: Id) -> Result<Option<String>> {
        dispatch!(self, b => b.api_key_secret(key_id).await)
    }

    /// Stores messages in one transaction, or replays the stored answer of an idempotency key.
    /// `render` builds the answer from the new ids inside the transaction, so the answer and
    /// the messages are committed together.
    pub async fn insert_messages(
        &self,
        msgs: Vec<NewMessage>,
        idem: Option<Idempotency>,
        render: RenderFn,
    ) -> Result<Inserted> {
        dispatch!(self, b => b.insert_messages(msgs, idem, render).await)
    }

    /// One message.
    pub async fn get_message(&self, id: Id) -> Result<Option<Message>> {
        dispatch!(self, b => b.get_message(id).await)
    }

    /// Messages newest first.
    pub async fn list_messages(&self, filter: MessageFilter) -> Result<Vec<Message>> {
        dispatch!(self, b => b.list_messages(filter).await)
    }

    /// Cancels a message that has not been handed to a device.
    pub async fn cancel_message(&self, id: Id, owner: Option<Id>, now: Millis) -> Result<Cancel> {
        dispatch!(self, b => b.cancel_message(id, owner, now).await)
    }

    /// Claims up to `limit` due queued messages for sending, with a lease until `lease_until`.
    pub async fn claim(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Message>> {
        dispatch!(self, b => b.claim(now, lease_until, limit).await)
    }

    /// Moves due scheduled messages to the queue and expired leases back to it.
    pub async fn maintain(&self, now: Millis) -> Result<Maintenance> {
        dispatch!(self, b => b.maintain(now).await)
    }

    /// Records what devices did with claimed messages. Each outcome applies only if the
    /// message is still held by that attempt; the answer says which did.
    pub async fn record_outcomes(
        &self,
        outcomes: impl Into<Arc<Vec<Outcome>>>,
    ) -> Result<Vec<bool>> {
        let outcomes = outcomes.into();
        dispatch!(self, b => b.record_outcomes(outcomes).await)
    }

    /// Applies delivery receipts to message parts, and to their messages when every part has
    /// an answer.
    pub async fn apply_receipts(
        &self,
        receipts: impl Into<Arc<Vec<Receipt>>>,
    ) -> Result<Vec<ReceiptMatch>> {
        let receipts = receipts.into();
        dispatch!(self, b => b.apply_receipts(receipts).await)
    }

    /// Parts that `device` took and that still wait for a receipt, of messages with ids above
    /// `after`, oldest first: `(message id, device's part id)`.
    pub async fn unreceipted_parts(
        &self,
        device: &str,
        after: Id,
        limit: usize,
    ) -> Result<Vec<(Id, String)>> {
        dispatch!(self, b => b.unreceipted_parts(device.to_string(), after, limit).await)
    }

    /// Stores an inbound text (committed before the device is acknowledged).
    pub async fn insert_inbound(&self, text: NewInbound) -> Result<InboundStored> {
        let mut out = self.insert_inbound_many(vec![text]).await?;
        out.pop()
            .ok_or_else(|| StoreError::backend("an insert answered nothing"))
    }

    /// Stores inbound texts in one transaction (one commit for all of them), each with its
    /// routing carried out: designations, deliveries, automatic replies, opt-out changes.
    /// On SQLite the calling thread may run the commit itself, fsync included (see
    /// `Sqlite::write_here`): call it only from a task that waits for it anyway.
    pub async fn insert_inbound_many(&self, texts: Vec<NewInbound>) -> Result<Vec<InboundStored>> {
        dispatch!(self, b => b.insert_inbound(texts).await)
    }

    /// Inbound texts oldest first after the cursor: all of them, or those designated to a
    /// user. Ids become visible in order, so a reader that keeps its cursor misses none.
    pub async fn list_inbound(&self, filter: InboundFilter) -> Result<Vec<Inbound>> {
        dispatch!(self, b => b.list_inbound(filter).await)
    }

    /// One inbound text; with `user`, only if it is designated to that user.
    pub async fn get_inbound(&self, id: Id, user: Option<Id>) -> Result<Option<Inbound>> {
        dispatch!(self, b => b.get_inbound(id, user).await)
    }

    /// Inbound texts by id (those that exist, in id order).
    pub async fn inbound_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Inbound>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, b => b.inbound_by_ids(ids).await)
    }

    /// Messages by id (those that exist, in id order).
    pub async fn messages_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, b => b.messages_by_ids(ids).await)
    }

    /// The names of the users an inbound text is designated to.
    pub async fn inbound_designees(&self, id: Id) -> Result<Vec<String>> {
        dispatch!(self, b => b.inbound_designees(id).await)
    }

    /// Puts a number on the suppression list; `false` if it was there already.
    pub async fn add_suppression(&self, s: Suppression) -> Result<bool> {
        dispatch!(self, b => b.add_suppression(s).await)
    }

    /// Takes a number off the suppression list; `false` if it was not on it.
    pub async fn remove_suppression(&self, number: &str) -> Result<bool> {
        dispatch!(self, b => b.remove_suppression(number.to_string()).await)
    }

    /// The suppression list in number order, after the cursor.
    pub async fn list_suppressions(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        dispatch!(self, b => b.list_suppressions(after, limit).await)
    }

    /// Claims up to `limit` due pending deliveries of a channel, under a lease until
    /// `lease_until` (a sender that dies lets them come due again then).
    pub async fn claim_deliveries(
        &self,
        channel: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        dispatch!(self, b => b.claim_deliveries(channel.to_string(), now, lease_until, limit).await)
    }

    /// Records delivery attempts; each applies only if its claim still holds.
    pub async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        dispatch!(self, b => b.finish_deliveries(results).await)
    }

    /// Every attempt of a delivery, in order.
    pub async fn delivery_attempts(&self, id: Id) -> Result<Vec<DeliveryAttempt>> {
        dispatch!(self, b => b.delivery_attempts(id).await)
    }

    /// Deliveries newest first.
    pub async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>> {
        dispatch!(self, b => b.list_deliveries(filter).await)
    }

    /// One delivery.
    pub async fn get_delivery(&self, id: Id) -> Result<Option<Delivery>> {
        dispatch!(self, b => b.get_delivery(id).await)
    }

    /// Makes a dead delivery pending again, retried until `give_up_at`; `None` if it is not
    /// dead (or does not exist).
    pub async fn replay_delivery(
        &self,
        id: Id,
        now: Millis,
        give_up_at: Millis,
    ) -> Result<Option<Delivery>> {
        dispatch!(self, b => b.replay_delivery(id, now, give_up_at).await)
    }

    /// The parts of a message handed to devices.
    pub async fn message_parts(&self, id: Id) -> Result<Vec<Part>> {
        dispatch!(self, b => b.message_parts(id).await)
    }

    /// How many messages wait in each non-final, non-sent status (cheap: partial indexes).
    pub async fn queue_depth(&self) -> Result<Vec<(Status, i64)>> {
        dispatch!(self, b => b.queue_depth().await)
    }

    /// Creates a bulk job (state `running`, nothing imported yet).
    pub async fn create_job(&self, job: NewJob) -> Result<JobRecord> {
        dispatch!(self, b => b.create_job(job).await)
    }

    /// Stores one batch of a job's rows with its resume point, in one transaction; nothing
    /// is stored when the job is cancelled or failed or the batch does not start at the
    /// job's resume point.
    pub async fn append_job_batch(&self, batch: JobBatch) -> Result<BatchStored> {
        dispatch!(self, b => b.append_job_batch(batch).await)
    }

    /// Marks a job failed, with the reason.
    pub async fn fail_job(&self, id: Id, error: String, now: Millis) -> Result<()> {
        dispatch!(self, b => b.fail_job(id, error, now).await)
    }

    /// One job.
    pub async fn get_job(&self, id: Id) -> Result<Option<JobRecord>> {
        dispatch!(self, b => b.get_job(id).await)
    }

    /// Jobs newest first: `owner`'s only, or everyone's; ids below `before`.
    pub async fn list_jobs(
        &self,
        owner: Option<Id>,
        before: Option<Id>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        dispatch!(self, b => b.list_jobs(owner, before, limit).await)
    }

    /// Jobs whose import has not finished (to resume at start-up).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        dispatch!(self, b => b.unfinished_jobs().await)
    }

    /// How many of a job's messages are in each status.
    pub async fn job_counts(&self, id: Id) -> Result<Vec<(Status, i64)>> {
        dispatch!(self, b => b.job_counts(id).await)
    }

    /// Pauses, resumes or cancels a job (`owner`'s only, unless `None`): the state first,
    /// then its waiting messages a chunk per transaction.
    pub async fn control_job(
        &self,
        id: Id,
        owner: Option<Id>,
        action: JobAction,
        now: Millis,
    ) -> Result<JobControl> {
        dispatch!(self, b => b.control_job(id, owner, action, now).await)
    }

    /// A page of a job's messages in row order (ids above `after`).
    pub async fn job_results(&self, job: Id, after: Id, limit: usize) -> Result<Vec<JobResultRow>> {
        dispatch!(self, b => b.job_results(job, after, limit).await)
    }

    /// A page of a job's refused rows (rows above `after_row`).
    pub async fn job_rejects(
        &self,
        job: Id,
        after_row: i64,
        limit: usize,
    ) -> Result<Vec<RowReject>> {
        dispatch!(self, b => b.job_rejects(job, after_row, limit).await)
    }

    /// Prepares the store for a long run under load: SQLite writes its log's full size in
    /// zeros once, so that commits overwrite it in place rather than grow it (see
    /// `docs/operations.md`); PostgreSQL manages its own. Failing is only logged. The server
    /// calls this at start; short-lived commands (`user add`) do not.
    pub async fn preallocate_log(&self) {
        if let Backend::Sqlite(b) = &self.backend {
            b.preallocate_log().await;
        }
    }

    /// Stops the writer after what is queued has been committed.
    pub async fn close(&self) {
        dispatch!(self, b => b.close().await)
    }
}
