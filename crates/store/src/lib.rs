//! textgate's one data layer. Every read and write of data goes through [`Store`], which
//! has two backends with the same behaviour, checked by one conformance suite
//! (`tests/conformance.rs`):
//!
//! - [`sqlite`]: the embedded default. One writer thread owns the write connection and
//!   commits whatever callers have queued in one transaction (group commit), so many small
//!   writes cost one fsync; readers use their own connections (WAL). [`sqlite::backup`]:
//!   `textgate backup` and `restore`.
//! - [`postgres`]: for several nodes sharing one database; queue claims use
//!   `FOR UPDATE SKIP LOCKED`, new messages of concurrent requests are stored in one statement
//!   (group commit), and a recorder round's outcomes and receipts in a few set-based ones.
//! - [`model`]: the rows and requests both backends speak.
//! - [`jobs`]: the same for bulk jobs: batches of CSV rows stored with their resume point.
//!
//! Migrations are applied when a store is opened; `upgrades` (a test module) migrates a
//! database of every earlier schema version, with rows in it, on both backends.
#![forbid(unsafe_code)]

mod exec;
pub mod jobs;
pub mod model;
mod ops;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod upgrades;

pub use jobs::*;
pub use model::*;

use std::sync::Arc;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

/// Why a database at schema version `at` cannot be opened by a build that knows versions up
/// to `known`, if it cannot: a newer build has migrated it, and this one would write rows
/// that build does not expect (migrations are forward-only; see docs/operations.md).
fn refuse_newer(at: i64, known: i64) -> std::result::Result<(), String> {
    if at <= known {
        return Ok(());
    }
    Err(format!(
        "the database is at schema version {at}, newer than this textgate {} knows (up to \
         {known}): a newer textgate has upgraded it. Run that newer version (or later), or \
         restore a backup taken before the upgrade (docs/operations.md#upgrades)",
        env!("CARGO_PKG_VERSION")
    ))
}

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

/// Runs `$op` (an operation of [`ops`] over the executor `$e`) as a read: on a reader
/// connection (SQLite) or a pooled one (PostgreSQL).
macro_rules! read {
    ($self:ident, |$e:ident| $op:expr) => {
        match &$self.backend {
            Backend::Sqlite(db) => {
                db.read_op(move |c| {
                    let $e = &mut sqlite::Lite(c);
                    sqlite::now($op)
                })
                .await
            }
            Backend::Postgres(db) => {
                let mut c = db.conn().await?;
                let (client, prepared) = c.parts();
                let $e = &mut postgres::Pg::new(&*client, prepared);
                $op.await
            }
        }
    };
}

/// Runs `$op` in a transaction: on SQLite's writer, committed with others (group commit),
/// as `$commit` says (see `sqlite`); on PostgreSQL in a transaction
/// of its own. SQLite may run the operation twice (see `sqlite`), so what it captures is
/// borrowed, never moved.
macro_rules! write {
    ($self:ident, $commit:expr, |$e:ident| $op:expr) => {
        match &$self.backend {
            Backend::Sqlite(db) => {
                db.write_op($commit, move |c| {
                    let $e = &mut sqlite::Lite(c);
                    sqlite::now($op)
                })
                .await
            }
            Backend::Postgres(db) => {
                let mut c = db.conn().await?;
                let (client, prepared) = c.parts();
                let tx = client.transaction().await.map_err(postgres::db_err)?;
                let out = {
                    let $e = &mut postgres::Pg::new(&tx, prepared);
                    $op.await?
                };
                tx.commit().await.map_err(postgres::db_err)?;
                Ok(out)
            }
        }
    };
}

/// Fsynced before the answer (what the outside world is told was accepted).
const DURABLE: sqlite::Commit = sqlite::Commit::Durable;
/// The dispatcher's own bookkeeping: committed, fsynced with the next durable write.
const LAZY: sqlite::Commit = sqlite::Commit::Lazy;
/// Durable, and committed by the caller's thread when SQLite's writer is idle (see
/// [`Store::insert_inbound_many`]).
const DURABLE_HERE: sqlite::Commit = sqlite::Commit::DurableHere;

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
        write!(self, DURABLE, |e| ops::retention::purge(e, &batch))
    }

    /// API keys, newest first: one user's, or everyone's.
    pub async fn list_api_keys(&self, user_id: Option<Id>) -> Result<Vec<KeyInfo>> {
        read!(self, |e| ops::users::list_keys(e, user_id))
    }

    /// Revokes a key (of `owner`, unless `None`); the key as it now is, or `None` if there is
    /// no such key (of that owner). Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(
        &self,
        id: Id,
        owner: Option<Id>,
        now: Millis,
    ) -> Result<Option<KeyInfo>> {
        write!(self, DURABLE, |e| ops::users::revoke_key(e, id, owner, now))
    }

    /// Notes that a key was used.
    pub async fn touch_api_key(&self, id: Id, now: Millis) -> Result<()> {
        write!(self, LAZY, |e| ops::users::touch_key(e, id, now))
    }

    /// Keys revoked after `since`, with when: what nodes that cache verified keys forget.
    pub async fn revoked_api_keys_since(&self, since: Millis) -> Result<Vec<(Id, Millis)>> {
        read!(self, |e| ops::users::revoked_since(e, since))
    }

    /// Counts `n` more texts for a user in today's and this month's usage, unless that would
    /// pass `daily` or `monthly` (`None`: no limit): all or none. `Ok(None)` when counted;
    /// else which limit (`0` the day's, `1` the month's) and how many it counted already.
    pub async fn take_quota(
        &self,
        user_id: Id,
        n: i64,
        daily: Option<i64>,
        monthly: Option<i64>,
        now: Millis,
    ) -> Result<Option<(usize, i64)>> {
        let (day, month) = ops::users::quota_periods(now);
        let limits = [(day, daily), (month, monthly)];
        write!(self, DURABLE, |e| ops::users::take_quota(
            e, user_id, n, &limits
        ))
    }

    /// Gives back `n` texts counted by [`Store::take_quota`] at `now` whose request was not
    /// stored after all.
    pub async fn give_quota(&self, user_id: Id, n: i64, now: Millis) -> Result<()> {
        let (day, month) = ops::users::quota_periods(now);
        write!(self, DURABLE, |e| async {
            ops::users::give_quota(e, user_id, n, &day).await?;
            ops::users::give_quota(e, user_id, n, &month).await
        })
    }

    /// The texts counted for a user today and this month (UTC).
    pub async fn quota_used(&self, user_id: Id, now: Millis) -> Result<(i64, i64)> {
        let (day, month) = ops::users::quota_periods(now);
        let periods = [day, month];
        let used = read!(self, |e| ops::users::quota_used(e, user_id, &periods))?;
        Ok((used[0], used[1]))
    }

    /// Appends an entry to the audit log.
    pub async fn audit(&self, entry: NewAudit) -> Result<Id> {
        write!(self, DURABLE, |e| ops::audit::record(e, &entry))
    }

    /// Audit entries, newest first.
    pub async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>> {
        read!(self, |e| ops::audit::list(e, &filter))
    }

    /// The schema version of the database at `url`, read without opening it as a store (so
    /// without migrating it); `None` when textgate has never opened it.
    pub async fn schema_of(url: &str) -> Result<Option<i64>> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.to_string();
            tokio::task::spawn_blocking(move || sqlite::schema_of(&path))
                .await
                .map_err(|e| StoreError::Backend(crate::Cause::new(e)))?
        } else {
            postgres::schema_of(url).await
        }
    }

    /// The schema version this build migrates the databases at `url` to.
    pub fn schema_for(url: &str) -> i64 {
        if url.starts_with("sqlite://") {
            sqlite::SCHEMA
        } else {
            postgres::SCHEMA
        }
    }

    /// The schema version of the database: the last migration applied to it.
    pub async fn schema_version(&self) -> Result<i64> {
        read!(self, |e| ops::schema_version(e))
    }

    /// Succeeds when the database answers.
    pub async fn health(&self) -> Result<()> {
        dispatch!(self, b => b.health().await)
    }

    /// Creates a user; a taken name is [`StoreError::Conflict`].
    pub async fn create_user(&self, user: NewUser) -> Result<User> {
        write!(self, DURABLE, |e| ops::users::create(e, &user))
    }

    /// The user with this name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let name = name.to_string();
        read!(self, |e| ops::users::by_name(e, &name))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: Id) -> Result<Option<User>> {
        read!(self, |e| ops::users::by_id(e, id))
    }

    /// The user with this e-mail address (compared without regard to case); the oldest
    /// when several share it.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_string();
        read!(self, |e| ops::users::by_email(e, &email))
    }

    /// The number of users.
    pub async fn count_users(&self) -> Result<i64> {
        read!(self, |e| ops::users::count(e))
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
        let now = textgate_core::clock::now_ms();
        write!(self, DURABLE, |e| ops::users::create_key(
            e,
            user_id,
            &key_hash,
            &label,
            &webhook_secret,
            now
        ))
    }

    /// The owner of an API key that is not revoked, by the key's hash.
    pub async fn user_by_api_key(&self, key_hash: &str) -> Result<Option<User>> {
        Ok(self.api_key_by_hash(key_hash).await?.map(|k| k.user))
    }

    /// An API key that is not revoked, with its owner, by the key's hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let key_hash = key_hash.to_string();
        read!(self, |e| ops::users::key_by_hash(e, &key_hash))
    }

    /// The webhook secret of an API key.
    pub async fn api_key_secret(&self, key_id: Id) -> Result<Option<String>> {
        read!(self, |e| ops::users::key_secret(e, key_id))
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
        if let (Backend::Postgres(db), None) = (&self.backend, &idem) {
            let (msgs, ids) = db.store_messages(msgs).await;
            let ids = ids?;
            let response = render(&ids);
            let stored = msgs
                .into_iter()
                .zip(&ids)
                .map(|(m, id)| m.stored(*id))
                .collect();
            return Ok(Inserted::New {
                ids,
                response,
                stored,
            });
        }
        let now = textgate_core::clock::now_ms();
        write!(self, DURABLE, |e| ops::messages::insert(
            e, &msgs, &idem, &render, now
        ))
    }

    /// One message.
    pub async fn get_message(&self, id: Id) -> Result<Option<Message>> {
        read!(self, |e| ops::messages::get(e, id))
    }

    /// Messages newest first.
    pub async fn list_messages(&self, filter: MessageFilter) -> Result<Vec<Message>> {
        read!(self, |e| ops::messages::list(e, &filter))
    }

    /// Cancels a message that has not been handed to a device.
    pub async fn cancel_message(&self, id: Id, owner: Option<Id>, now: Millis) -> Result<Cancel> {
        write!(self, DURABLE, |e| ops::messages::cancel(e, id, owner, now))
    }

    /// Claims up to `limit` due queued messages for sending, with a lease until `lease_until`.
    pub async fn claim(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Message>> {
        write!(self, LAZY, |e| ops::messages::claim(
            e,
            now,
            lease_until,
            limit
        ))
    }

    /// Extends to `until` the claim lease of messages a node still holds, each at the attempt
    /// it holds (a message another node has since claimed again is left alone); how many.
    pub async fn renew_leases(&self, held: Vec<(Id, i64)>, until: Millis) -> Result<u64> {
        write!(self, LAZY, |e| ops::messages::renew_leases(e, &held, until))
    }

    /// Moves due scheduled messages to the queue and expired leases back to it.
    pub async fn maintain(&self, now: Millis) -> Result<Maintenance> {
        write!(self, LAZY, |e| ops::messages::maintain(e, now))
    }

    /// Records what devices did with claimed messages. Each outcome applies only if the
    /// message is still held by that attempt; the answer says which did.
    pub async fn record_outcomes(
        &self,
        outcomes: impl Into<Arc<Vec<Outcome>>>,
    ) -> Result<Vec<bool>> {
        let outcomes = outcomes.into();
        write!(self, LAZY, |e| ops::messages::record_outcomes(e, &outcomes))
    }

    /// Applies delivery receipts to message parts, and to their messages when every part has
    /// an answer.
    pub async fn apply_receipts(
        &self,
        receipts: impl Into<Arc<Vec<Receipt>>>,
    ) -> Result<Vec<ReceiptMatch>> {
        let receipts = receipts.into();
        write!(self, LAZY, |e| ops::messages::apply_receipts(e, &receipts))
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        read!(self, |e| ops::users::list(e))
    }

    /// Changes a user (disabling ends their web sessions); `None` when there is no such user.
    pub async fn update_user(&self, id: Id, update: UserUpdate) -> Result<Option<User>> {
        let now = textgate_core::clock::now_ms();
        write!(self, DURABLE, |e| ops::users::update(e, id, &update, now))
    }

    /// The latest time a user was disabled after `since`, if one was (a node's revocation
    /// watch forgets what it verified of users then).
    pub async fn users_disabled_since(&self, since: Millis) -> Result<Option<Millis>> {
        read!(self, |e| ops::users::disabled_since(e, since))
    }

    /// Administrators who are not disabled.
    pub async fn active_admins(&self) -> Result<i64> {
        read!(self, |e| ops::users::active_admins(e))
    }

    /// The contacts `viewer` sees (their own and the shared ones), by name.
    pub async fn list_contacts(
        &self,
        viewer: Id,
        search: Option<String>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Contact>> {
        read!(self, |e| ops::contacts::list(
            e,
            viewer,
            search.as_deref(),
            offset,
            limit
        ))
    }

    /// One contact, whoever's.
    pub async fn get_contact(&self, id: Id) -> Result<Option<Contact>> {
        read!(self, |e| ops::contacts::get(e, id))
    }

    /// Adds a contact, or updates the owner's contact of that number: `(id, added)`.
    pub async fn upsert_contact(&self, contact: NewContact) -> Result<(Id, bool)> {
        write!(self, DURABLE, |e| ops::contacts::upsert(e, &contact))
    }

    /// Adds or updates many contacts in one transaction: `(added, updated)`.
    pub async fn upsert_contacts(&self, list: Vec<NewContact>) -> Result<(u64, u64)> {
        write!(self, DURABLE, |e| ops::contacts::upsert_many(e, &list))
    }

    /// Changes a contact; `false` when there is none.
    pub async fn update_contact(
        &self,
        id: Id,
        name: String,
        number: String,
        fields: String,
    ) -> Result<bool> {
        write!(self, DURABLE, |e| ops::contacts::update(
            e, id, &name, &number, &fields
        ))
    }

    /// Deletes a contact (and its place in groups).
    pub async fn delete_contact(&self, id: Id) -> Result<bool> {
        write!(self, DURABLE, |e| ops::contacts::delete(e, id))
    }

    /// The groups `viewer` sees, by name.
    pub async fn list_groups(&self, viewer: Id) -> Result<Vec<Group>> {
        read!(self, |e| ops::contacts::groups(e, viewer))
    }

    /// One group, whoever's.
    pub async fn get_group(&self, id: Id) -> Result<Option<Group>> {
        read!(self, |e| ops::contacts::group(e, id))
    }

    /// A group `viewer` sees, by name (their own first).
    pub async fn group_named(&self, viewer: Id, name: &str) -> Result<Option<Group>> {
        let name = name.to_string();
        read!(self, |e| ops::contacts::group_named(e, viewer, &name))
    }

    /// A new group (`owner` `None` = shared); `Conflict` for a name the owner has.
    pub async fn create_group(&self, owner: Option<Id>, name: &str) -> Result<Id> {
        let (name, now) = (name.to_string(), textgate_core::clock::now_ms());
        write!(self, DURABLE, |e| ops::contacts::create_group(
            e, owner, &name, now
        ))
    }

    /// Deletes a group; its contacts stay.
    pub async fn delete_group(&self, id: Id) -> Result<bool> {
        write!(self, DURABLE, |e| ops::contacts::delete_group(e, id))
    }

    /// A group's contacts, by name.
    pub async fn group_members(&self, group: Id) -> Result<Vec<Contact>> {
        read!(self, |e| ops::contacts::members(e, group))
    }

    /// The ids of the groups a contact is in.
    pub async fn groups_of_contact(&self, contact: Id) -> Result<Vec<Id>> {
        read!(self, |e| ops::contacts::groups_of(e, contact))
    }

    /// Puts a contact in a group (`member`) or takes it out; whether anything changed.
    pub async fn set_group_member(&self, group: Id, contact: Id, member: bool) -> Result<bool> {
        write!(self, DURABLE, |e| ops::contacts::set_member(
            e, group, contact, member
        ))
    }

    /// Records that node `n` is alive now (registering it on its first beat).
    pub async fn node_beat(&self, n: &Node) -> Result<()> {
        let (n, now) = (n.clone(), textgate_core::clock::now_ms());
        write!(self, DURABLE, |e| ops::nodes::beat(e, &n, now))
    }

    /// Records that node `id` stopped cleanly, and gives up the leases it held.
    pub async fn node_stopped(&self, id: &str) -> Result<()> {
        let (id, now) = (id.to_string(), textgate_core::clock::now_ms());
        write!(self, DURABLE, |e| ops::nodes::stopped(e, &id, now))
    }

    /// The nodes seen since `since`, newest start first; rows of nodes gone before
    /// `forget_before` are deleted.
    pub async fn nodes(&self, since: Millis, forget_before: Millis) -> Result<Vec<Node>> {
        write!(self, LAZY, |e| ops::nodes::list(e, since, forget_before))
    }

    /// Takes (or renews) lease `name` for `holder` until `until`; whether it is `holder`'s.
    pub async fn take_lease(&self, name: &str, holder: &str, until: Millis) -> Result<bool> {
        let (name, holder, now) = (
            name.to_string(),
            holder.to_string(),
            textgate_core::clock::now_ms(),
        );
        write!(self, DURABLE, |e| ops::nodes::take_lease(
            e, &name, &holder, now, until
        ))
    }

    /// Gives lease `name` up, if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        write!(self, DURABLE, |e| ops::nodes::release_lease(
            e, &name, &holder
        ))
    }

    /// Every lease running now: `(name, holder, until)`.
    pub async fn leases(&self) -> Result<Vec<(String, String, Millis)>> {
        let now = textgate_core::clock::now_ms();
        read!(self, |e| ops::nodes::leases(e, now))
    }

    /// Disables a device by name (`by`: who did it), or enables it again.
    pub async fn set_device_disabled(&self, name: &str, disabled: bool, by: &str) -> Result<()> {
        let (name, by, now) = (
            name.to_string(),
            by.to_string(),
            textgate_core::clock::now_ms(),
        );
        write!(self, DURABLE, |e| ops::web::set_device_disabled(
            e, &name, disabled, &by, now
        ))
    }

    /// The devices administrators disabled: `(name, when, by whom)`.
    pub async fn disabled_devices(&self) -> Result<Vec<(String, Millis, String)>> {
        read!(self, |e| ops::web::disabled_devices(e))
    }

    /// Starts a web UI session.
    pub async fn create_session(&self, session: NewWebSession) -> Result<()> {
        write!(self, DURABLE, |e| ops::web::create_session(e, &session))
    }

    /// The session of the cookie token whose SHA-256 is `token_hash`, unless it has expired
    /// (unused for `idle`, or past its end).
    pub async fn session(
        &self,
        token_hash: &str,
        now: Millis,
        idle: Millis,
    ) -> Result<Option<WebSession>> {
        let token_hash = token_hash.to_string();
        read!(self, |e| ops::web::session(e, &token_hash, now, idle))
    }

    /// Marks a session used now.
    pub async fn touch_session(&self, token_hash: &str, now: Millis) -> Result<()> {
        let token_hash = token_hash.to_string();
        write!(self, LAZY, |e| ops::web::touch_session(e, &token_hash, now))
    }

    /// Ends a session (signing out).
    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_string();
        write!(self, DURABLE, |e| ops::web::end_session(e, &token_hash))
    }

    /// Sets a user's password (an argon2 PHC string) and ends all their sessions but `keep`;
    /// `false` when there is no such user.
    pub async fn set_password(
        &self,
        user_id: Id,
        password_hash: &str,
        keep: Option<&str>,
    ) -> Result<bool> {
        let (hash, keep) = (password_hash.to_string(), keep.map(str::to_string));
        write!(self, DURABLE, |e| ops::web::set_password(
            e,
            user_id,
            &hash,
            keep.as_deref()
        ))
    }

    /// A user's inbox, newest first.
    pub async fn inbox(&self, filter: InboxFilter) -> Result<Vec<InboxEntry>> {
        read!(self, |e| ops::web::inbox(e, &filter))
    }

    /// Unread texts in a user's inbox, counted up to `cap`.
    pub async fn unread(&self, user_id: Id, cap: i64) -> Result<i64> {
        read!(self, |e| ops::web::unread(e, user_id, cap))
    }

    /// Marks texts of an inbox read or archived; how many it marked. Committed with the next
    /// durable write (opening a conversation marks it read, and waits for no fsync).
    pub async fn mark_inbox(&self, mark: InboxMark, now: Millis) -> Result<u64> {
        write!(self, LAZY, |e| ops::web::mark_inbox(e, &mark, now))
    }

    /// The texts between a user and a number, both ways, oldest first.
    pub async fn conversation(
        &self,
        user_id: Id,
        number: &str,
        limit: usize,
    ) -> Result<Vec<ConversationItem>> {
        let number = number.to_string();
        read!(self, |e| ops::web::conversation(e, user_id, &number, limit))
    }

    /// Messages accepted since `since` (the owner's, or everyone's) by the hour they were
    /// accepted and their status now: `(hour, status, count)`.
    pub async fn hourly(
        &self,
        owner: Option<Id>,
        since: Millis,
    ) -> Result<Vec<(Millis, Status, i64)>> {
        read!(self, |e| ops::web::hourly(e, owner, since))
    }

    /// Inbound texts received since `since`: all, or those designated to `user`.
    pub async fn inbound_count(&self, user: Option<Id>, since: Millis) -> Result<i64> {
        read!(self, |e| ops::web::inbound_count(e, user, since))
    }

    /// Those of `numbers` (E.164) that are on the suppression list.
    pub async fn suppressed_among(&self, numbers: Vec<String>) -> Result<Vec<String>> {
        read!(self, |e| ops::web::suppressed_among(e, &numbers))
    }

    /// Parts that `device` took and that still wait for a receipt, of messages with ids above
    /// `after`, oldest first: `(message id, device's part id)`.
    pub async fn unreceipted_parts(
        &self,
        device: &str,
        after: Id,
        limit: usize,
    ) -> Result<Vec<(Id, String)>> {
        let device = device.to_string();
        read!(self, |e| ops::messages::unreceipted_parts(
            e, &device, after, limit
        ))
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
        write!(self, DURABLE_HERE, |e| ops::inbound::insert(e, &texts))
    }

    /// Inbound texts oldest first after the cursor: all of them, or those designated to a
    /// user. Ids become visible in order, so a reader that keeps its cursor misses none.
    pub async fn list_inbound(&self, filter: InboundFilter) -> Result<Vec<Inbound>> {
        read!(self, |e| ops::inbound::list(e, &filter))
    }

    /// One inbound text; with `user`, only if it is designated to that user.
    pub async fn get_inbound(&self, id: Id, user: Option<Id>) -> Result<Option<Inbound>> {
        read!(self, |e| ops::inbound::get(e, id, user))
    }

    /// Inbound texts by id (those that exist, in id order).
    pub async fn inbound_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Inbound>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        read!(self, |e| ops::inbound::by_ids(e, &ids))
    }

    /// Messages by id (those that exist, in id order).
    pub async fn messages_by_ids(&self, ids: Vec<Id>) -> Result<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        read!(self, |e| ops::messages::by_ids(e, &ids))
    }

    /// The names of the users an inbound text is designated to.
    pub async fn inbound_designees(&self, id: Id) -> Result<Vec<String>> {
        read!(self, |e| ops::inbound::designees(e, id))
    }

    /// Puts a number on the suppression list; `false` if it was there already.
    pub async fn add_suppression(&self, s: Suppression) -> Result<bool> {
        write!(self, DURABLE, |e| ops::inbound::add_suppression(e, &s))
    }

    /// Takes a number off the suppression list; `false` if it was not on it.
    pub async fn remove_suppression(&self, number: &str) -> Result<bool> {
        let number = number.to_string();
        write!(self, DURABLE, |e| ops::inbound::remove_suppression(
            e, &number
        ))
    }

    /// The suppression list in number order, after the cursor.
    pub async fn list_suppressions(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        read!(self, |e| ops::inbound::suppressions(e, &after, limit))
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
        let channel = channel.to_string();
        write!(self, LAZY, |e| ops::deliveries::claim(
            e,
            &channel,
            now,
            lease_until,
            limit
        ))
    }

    /// Records delivery attempts; each applies only if its claim still holds.
    pub async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        write!(self, LAZY, |e| ops::deliveries::finish(e, &results))
    }

    /// Every attempt of a delivery, in order.
    pub async fn delivery_attempts(&self, id: Id) -> Result<Vec<DeliveryAttempt>> {
        read!(self, |e| ops::deliveries::attempts(e, id))
    }

    /// Deliveries newest first.
    pub async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>> {
        read!(self, |e| ops::deliveries::list(e, &filter))
    }

    /// One delivery.
    pub async fn get_delivery(&self, id: Id) -> Result<Option<Delivery>> {
        read!(self, |e| ops::deliveries::get(e, id))
    }

    /// Makes a dead delivery pending again, retried until `give_up_at`; `None` if it is not
    /// dead (or does not exist).
    pub async fn replay_delivery(
        &self,
        id: Id,
        now: Millis,
        give_up_at: Millis,
    ) -> Result<Option<Delivery>> {
        write!(self, DURABLE, |e| ops::deliveries::replay(
            e, id, now, give_up_at
        ))
    }

    /// The parts of a message handed to devices.
    pub async fn message_parts(&self, id: Id) -> Result<Vec<Part>> {
        read!(self, |e| ops::messages::parts(e, id))
    }

    /// A message's attempts that did not end in a send (refused, failed, retried, lost with
    /// a stopped worker), oldest first.
    pub async fn message_attempts(&self, id: Id) -> Result<Vec<Attempt>> {
        read!(self, |e| ops::messages::attempts(e, id))
    }

    /// How many messages wait in each non-final, non-sent status (cheap: partial indexes).
    pub async fn queue_depth(&self) -> Result<Vec<(Status, i64)>> {
        read!(self, |e| ops::messages::queue_depth(e))
    }

    /// Creates a bulk job (state `running`, nothing imported yet).
    pub async fn create_job(&self, job: NewJob) -> Result<JobRecord> {
        write!(self, DURABLE, |e| ops::jobs::create(e, &job))
    }

    /// Stores one batch of a job's rows with its resume point, in one transaction; nothing
    /// is stored when the job is cancelled or failed or the batch does not start at the
    /// job's resume point.
    pub async fn append_job_batch(&self, batch: JobBatch) -> Result<BatchStored> {
        write!(self, DURABLE, |e| ops::jobs::append_batch(e, &batch))
    }

    /// Marks a job failed, with the reason.
    pub async fn fail_job(&self, id: Id, error: String, now: Millis) -> Result<()> {
        write!(self, DURABLE, |e| ops::jobs::fail(e, id, &error, now))
    }

    /// One job.
    pub async fn get_job(&self, id: Id) -> Result<Option<JobRecord>> {
        read!(self, |e| ops::jobs::get(e, id, false))
    }

    /// Jobs newest first: `owner`'s only, or everyone's; ids below `before`.
    pub async fn list_jobs(
        &self,
        owner: Option<Id>,
        before: Option<Id>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        read!(self, |e| ops::jobs::list(e, owner, before, limit))
    }

    /// Jobs whose import has not finished (to resume at start-up).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        read!(self, |e| ops::jobs::unfinished(e))
    }

    /// How many of a job's messages are in each status.
    pub async fn job_counts(&self, id: Id) -> Result<Vec<(Status, i64)>> {
        read!(self, |e| ops::jobs::counts(e, id))
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
        let before = write!(self, DURABLE, |e| ops::jobs::control_state(
            e, id, owner, action, now
        ))?;
        let (job, changed) = match before {
            Ok(x) => x,
            Err(answer) => return Ok(answer),
        };
        if changed {
            loop {
                let job = job.clone();
                let n = write!(self, DURABLE, |e| ops::jobs::control_chunk(
                    e, &job, action, now
                ))?;
                if n < CONTROL_CHUNK as u64 {
                    break;
                }
            }
        }
        let job = self
            .get_job(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a job vanished".into()))?;
        Ok(JobControl::Done(Box::new(job)))
    }

    /// A page of a job's messages in row order (ids above `after`).
    pub async fn job_results(&self, job: Id, after: Id, limit: usize) -> Result<Vec<JobResultRow>> {
        read!(self, |e| ops::jobs::results(e, job, after, limit))
    }

    /// A page of a job's refused rows (rows above `after_row`).
    pub async fn job_rejects(
        &self,
        job: Id,
        after_row: i64,
        limit: usize,
    ) -> Result<Vec<RowReject>> {
        read!(self, |e| ops::jobs::rejects(e, job, after_row, limit))
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
