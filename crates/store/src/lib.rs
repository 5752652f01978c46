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
//!
//! Migrations are applied when a store is opened.
#![forbid(unsafe_code)]

pub mod model;
pub mod postgres;
pub mod sqlite;

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
    /// The database answered with an error.
    #[error("database error: {0}")]
    Backend(String),
    /// A stored value could not be read back.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The store has shut down.
    #[error("the store is shut down")]
    Closed,
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

    /// Stores an API key's hash for a user.
    pub async fn create_api_key(&self, user_id: Id, key_hash: String, label: String) -> Result<Id> {
        dispatch!(self, b => b.create_api_key(user_id, key_hash, label).await)
    }

    /// The owner of an API key that is not revoked, by the key's hash.
    pub async fn user_by_api_key(&self, key_hash: &str) -> Result<Option<User>> {
        dispatch!(self, b => b.user_by_api_key(key_hash.to_string()).await)
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
            .ok_or_else(|| StoreError::Backend("an insert answered nothing".into()))
    }

    /// Stores inbound texts in one transaction (one commit for all of them).
    pub async fn insert_inbound_many(&self, texts: Vec<NewInbound>) -> Result<Vec<InboundStored>> {
        dispatch!(self, b => b.insert_inbound(texts).await)
    }

    /// The parts of a message handed to devices.
    pub async fn message_parts(&self, id: Id) -> Result<Vec<Part>> {
        dispatch!(self, b => b.message_parts(id).await)
    }

    /// How many messages wait in each non-final, non-sent status (cheap: partial indexes).
    pub async fn queue_depth(&self) -> Result<Vec<(Status, i64)>> {
        dispatch!(self, b => b.queue_depth().await)
    }

    /// Stops the writer after what is queued has been committed.
    pub async fn close(&self) {
        dispatch!(self, b => b.close().await)
    }
}
