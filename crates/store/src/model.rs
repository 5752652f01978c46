//! The rows and requests that both backends speak.

use textgate_core::clock::Millis;
use textgate_core::status::Status;

/// A row id.
pub type Id = i64;

/// A user's role: admins see and manage everything, users their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees all messages and manages users.
    Admin,
    /// Sees their own.
    User,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// The role with this name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Unique login name.
    pub name: String,
    /// Admin or user.
    pub role: Role,
    /// Where e-mail for them goes.
    pub email: Option<String>,
    /// argon2 PHC string, if they may log in with a password.
    pub password_hash: Option<String>,
    /// When.
    pub created_at: Millis,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: Id,
    /// Login name.
    pub name: String,
    /// Admin or user.
    pub role: Role,
    /// E-mail address.
    pub email: Option<String>,
    /// argon2 PHC string.
    pub password_hash: Option<String>,
    /// When created.
    pub created_at: Millis,
    /// When disabled: a disabled user cannot sign in or send, and their keys do not work.
    pub disabled_at: Option<Millis>,
    /// The sender ids they may send as, the first being their default; empty: any.
    pub senders: Vec<String>,
    /// Their own limits.
    pub quota: Quota,
}

/// A user's own limits on the texts they send (`docs/operations.md#quotas`): `None` = the
/// `[quotas]` default, `Some(0)` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Texts per UTC day.
    pub daily: Option<i64>,
    /// Texts per UTC month.
    pub monthly: Option<i64>,
    /// Texts per second.
    pub rate: Option<i64>,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// A new role.
    pub role: Option<Role>,
    /// A new e-mail address; `Some(None)` removes it.
    pub email: Option<Option<String>>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
    /// The sender ids they may send as (already checked), the first their default; empty: any.
    pub senders: Option<Vec<String>>,
    /// Their own limits, all three at once.
    pub quota: Option<Quota>,
}

/// An outbound message to store, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The user who sent it.
    pub owner_id: Id,
    /// The bulk job it belongs to.
    pub job_id: Option<Id>,
    /// E.164 with `+`, or a short code.
    pub to: String,
    /// Sender id, if chosen.
    pub from: Option<String>,
    /// The text.
    pub body: String,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    /// SMS parts.
    pub segments: i64,
    /// When to send it; `None` = now.
    pub schedule_at: Option<Millis>,
    /// When it expires if not yet sent.
    pub expires_at: Millis,
    /// Where status changes are POSTed.
    pub callback_url: Option<String>,
    /// The caller's own reference.
    pub reference: Option<String>,
    /// Lower goes first (API texts 0, bulk jobs higher).
    pub priority: i64,
    /// When accepted.
    pub created_at: Millis,
    /// Store it already claimed by the dispatcher, under a lease until then (ignored for a
    /// message scheduled later).
    pub claimed_until: Option<Millis>,
    /// Where it came from: `None` = the HTTP API; see [`origin`].
    pub origin: Option<String>,
    /// The API key it was sent with (its webhook secret signs the status callbacks).
    pub api_key_id: Option<Id>,
    /// For a text that came from e-mail: the sender's address (answers and failure notices
    /// go there).
    pub email_from: Option<String>,
}

/// Names for [`NewMessage::origin`].
pub mod origin {
    /// An inbound rule's automatic reply.
    pub const REPLY: &str = "reply";
    /// An opt-out or opt-in confirmation: sent even to a number on the suppression list.
    pub const OPT_CONFIRMATION: &str = "optout";
    /// An e-mail to the SMTP gateway.
    pub const EMAIL: &str = "email";
}

impl NewMessage {
    /// The status it is stored with.
    pub fn initial_status(&self) -> Status {
        if self.schedule_at.is_some_and(|t| t > self.created_at) {
            Status::Scheduled
        } else if self.claimed_until.is_some() {
            Status::Sending
        } else {
            Status::Queued
        }
    }

    /// The message as stored with `id`.
    pub fn stored(self, id: Id) -> Message {
        let status = self.initial_status();
        Message {
            id,
            owner_id: self.owner_id,
            job_id: self.job_id,
            to: self.to,
            from: self.from,
            body: self.body,
            encoding: self.encoding,
            segments: self.segments,
            status,
            priority: self.priority,
            due_at: self.schedule_at.unwrap_or(self.created_at),
            expires_at: self.expires_at,
            attempts: i64::from(status == Status::Sending),
            device: None,
            error_code: None,
            error: None,
            callback_url: self.callback_url,
            reference: self.reference,
            created_at: self.created_at,
            sent_at: None,
            done_at: None,
            origin: self.origin,
            api_key_id: self.api_key_id,
            email_from: self.email_from,
        }
    }
}

/// A stored outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Row id.
    pub id: Id,
    /// Owner.
    pub owner_id: Id,
    /// Bulk job.
    pub job_id: Option<Id>,
    /// Destination.
    pub to: String,
    /// Sender id.
    pub from: Option<String>,
    /// Text.
    pub body: String,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    /// SMS parts.
    pub segments: i64,
    /// Where it is.
    pub status: Status,
    /// Lower goes first.
    pub priority: i64,
    /// When it may next be handed to a device.
    pub due_at: Millis,
    /// When it expires.
    pub expires_at: Millis,
    /// Attempts made (the current one included while `sending`).
    pub attempts: i64,
    /// The device that took it.
    pub device: Option<String>,
    /// The device's error code.
    pub error_code: Option<String>,
    /// A readable reason for the last error.
    pub error: Option<String>,
    /// Status callback URL.
    pub callback_url: Option<String>,
    /// Caller's reference.
    pub reference: Option<String>,
    /// Accepted.
    pub created_at: Millis,
    /// Taken by a device.
    pub sent_at: Option<Millis>,
    /// Reached a final status.
    pub done_at: Option<Millis>,
    /// Where it came from (see [`origin`]).
    pub origin: Option<String>,
    /// The API key it was sent with.
    pub api_key_id: Option<Id>,
    /// The e-mail sender of a text that came from e-mail.
    pub email_from: Option<String>,
}

impl Message {
    /// When it was delivered, if it was.
    pub fn delivered_at(&self) -> Option<Millis> {
        if self.status == Status::Delivered {
            self.done_at
        } else {
            None
        }
    }
}

/// Stores a request's answer under a key, so a repeated request gets the same answer.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The caller.
    pub user_id: Id,
    /// The `Idempotency-Key` header.
    pub key: String,
    /// A hash of the request, to tell a replay from a different request under the same key.
    pub fingerprint: String,
}

/// Builds a stored answer from the new message ids (called inside the transaction).
pub type RenderFn = Box<dyn Fn(&[Id]) -> String + Send + Sync>;

/// What [`crate::Store::insert_messages`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored; the answer that was stored with them.
    New {
        /// The new ids, in request order.
        ids: Vec<Id>,
        /// The rendered answer.
        response: String,
        /// The messages as stored, in request order.
        stored: Vec<Message>,
    },
    /// The key was seen before with the same request: its first answer.
    Replay {
        /// The stored answer.
        response: String,
    },
    /// The key was seen before with a different request.
    KeyReused,
}

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only this owner's; `None` = everyone's.
    pub owner_id: Option<Id>,
    /// Only in this status.
    pub status: Option<Status>,
    /// Only ids below this one (the cursor).
    pub before: Option<Id>,
    /// At most this many.
    pub limit: usize,
    /// Only those a device took, by its name.
    pub device: Option<String>,
    /// Only those accepted at or after this time.
    pub since: Option<Millis>,
    /// Only those accepted before this time.
    pub until: Option<Millis>,
    /// Only those whose number contains these digits (when it is digits, with `+`, spaces
    /// or dashes), or else whose text contains it, ignoring ASCII case.
    pub search: Option<String>,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Cancelled.
    Cancelled(Box<Message>),
    /// No such message (or not the caller's).
    NotFound,
    /// Too late: it is already in this status.
    TooLate(Status),
}

/// What [`crate::Store::maintain`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Scheduled messages now due.
    pub promoted: u64,
    /// Messages whose lease expired, back in the queue.
    pub requeued: u64,
    /// Sent messages whose receipt never came, an hour past their validity: `expired`.
    pub expired: u64,
}

/// How long after its validity a sent message may still get its receipt before it is
/// given up as `expired` (SMSCs report expiry shortly after the validity period ends).
pub const RECEIPT_GRACE_MS: i64 = 3_600_000;

/// The error recorded on a sent message whose receipt never came.
pub const NO_RECEIPT_ERROR: &str = "no delivery receipt came before the message's validity ran out";

/// Why an attempt whose worker stopped ended (kept in the message's history).
pub const LEASE_LOST: &str =
    "the worker that held it stopped (its node went away) before it was sent; it went back to the queue";

/// An attempt that did not end in a send, as a message's timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt number.
    pub attempt: i64,
    /// The device that tried, if one did.
    pub device: Option<String>,
    /// When.
    pub at: Millis,
    /// `retry`, `throttled`, `failed`, `expired` or `lease` (its worker stopped).
    pub outcome: String,
    /// The device's code.
    pub code: Option<String>,
    /// Why.
    pub error: Option<String>,
}

/// The `attempt` of an outcome a device reports late for a message it holds (a port server
/// that sent it while the message waited for another attempt): it is recorded if the
/// message is queued or being sent, whatever its attempt now, since no other device is
/// given a message its holder has not reported on (a [`Outcome::Sent`] or
/// [`Outcome::Final`]; a late retry means nothing).
pub const LATE: i64 = -1;

/// What a device did with a claimed message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A device took it.
    Sent {
        /// Message.
        id: Id,
        /// The attempt number from the claim (fences out a stale worker).
        attempt: i64,
        /// Device name.
        device: String,
        /// The device's id of each part, in part order.
        part_ids: Vec<String>,
        /// Receipts for parts that arrived before this was recorded, by part (empty or one
        /// entry per part): written with the parts, saving a second write of each row.
        receipts: Vec<Option<PartReceipt>>,
        /// When.
        at: Millis,
    },
    /// A transient error: back to the queue until `due_at`.
    Retry {
        /// Message.
        id: Id,
        /// Attempt number.
        attempt: i64,
        /// The device that failed, if any.
        device: Option<String>,
        /// When to try again.
        due_at: Millis,
        /// The device's code.
        code: Option<String>,
        /// Why.
        error: String,
        /// The device asked us to slow down (throttling): this attempt does not count.
        refund: bool,
        /// When.
        at: Millis,
    },
    /// The end: `failed` or `expired`.
    Final {
        /// Message.
        id: Id,
        /// Attempt number.
        attempt: i64,
        /// `Failed` or `Expired`.
        status: Status,
        /// The device that refused it.
        device: Option<String>,
        /// The device's code.
        code: Option<String>,
        /// Why.
        error: String,
        /// When.
        at: Millis,
    },
}

/// A receipt already known when a part's submit is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    /// Delivered, or not.
    pub delivered: bool,
    /// The network's error code.
    pub code: Option<String>,
    /// When.
    pub at: Millis,
}

/// What recording a sent message with receipts already known comes to: the message's
/// status, when it ended, and its error code and text if it was not delivered.
pub fn sent_with_receipts(
    receipts: &[Option<PartReceipt>],
    parts: usize,
    sent_at: Millis,
) -> (Status, Option<Millis>, Option<String>, Option<String>) {
    let known: Vec<&PartReceipt> = receipts.iter().flatten().collect();
    let delivered = known.iter().filter(|r| r.delivered).count() as i64;
    let failed: Vec<&&PartReceipt> = known.iter().filter(|r| !r.delivered).collect();
    let complete = known.len() == parts && parts > 0;
    match status_from_parts(parts as i64, delivered, failed.len() as i64) {
        Some(st) if complete || st == Status::Undelivered => {
            // A receipt read before the submit's answer is not dated before the send.
            let done = known.iter().map(|r| r.at.max(sent_at)).max();
            let code = failed.first().and_then(|r| r.code.clone());
            let error = (st == Status::Undelivered).then(|| undelivered_error(code.as_deref()));
            (st, done, code, error)
        }
        _ => (Status::Sent, None, None, None),
    }
}

/// The error recorded on a message the network did not deliver.
pub(crate) fn undelivered_error(code: Option<&str>) -> String {
    format!(
        "the network could not deliver it (error code {})",
        code.unwrap_or("none")
    )
}

/// A delivery receipt for one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The device that sent the part.
    pub device: String,
    /// The device's id for the part, normalised by the driver.
    pub device_msg_id: String,
    /// Delivered, or not.
    pub delivered: bool,
    /// The network's error code.
    pub code: Option<String>,
    /// When.
    pub at: Millis,
}

/// What a receipt matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// No part has that id (yet).
    Unknown,
    /// A part of this message; `status` is the message's new status if it changed.
    Part {
        /// The message.
        message_id: Id,
        /// Its new status, if the receipt ended it.
        status: Option<Status>,
        /// When the part was handed to its device (what a receipt's delay is counted from).
        submitted_at: Millis,
    },
}

/// One part as handed to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub part_no: i64,
    /// Device name.
    pub device: String,
    /// The device's id.
    pub device_msg_id: String,
    /// `sent`, `delivered` or `undelivered`.
    pub status: String,
    /// The network's error code.
    pub error_code: Option<String>,
    /// When handed over.
    pub submitted_at: Millis,
    /// When its receipt came.
    pub done_at: Option<Millis>,
}

/// The columns of `messages` in the order both backends read them.
pub(crate) const MESSAGE_COLUMNS: &str = "id, owner_id, job_id, recipient, sender, body, encoding, segments, status, priority, due_at, expires_at, attempts, device, error_code, error, callback_url, reference, created_at, sent_at, done_at, origin, api_key_id, email_from";

/// The `messages` row for a message, with its final status worked out from its parts:
/// any undelivered part makes it undelivered, all parts delivered make it delivered.
pub(crate) fn status_from_parts(segments: i64, delivered: i64, undelivered: i64) -> Option<Status> {
    if undelivered > 0 {
        Some(Status::Undelivered)
    } else if delivered >= segments {
        Some(Status::Delivered)
    } else {
        None
    }
}

/// An inbound text as a device received it (already reassembled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInbound {
    /// The device that received it.
    pub device: String,
    /// The sender: E.164 with `+`, or an alphanumeric id as received.
    pub from: String,
    /// The number it was sent to.
    pub to: String,
    /// The text.
    pub body: String,
    /// `gsm7`, `ucs2`, `latin1` or `binary`.
    pub encoding: String,
    /// How many parts it came in.
    pub parts: i64,
    /// Whether some parts never arrived.
    pub partial: bool,
    /// A key that is the same for a repeated delivery of the same text (device-specific);
    /// a second text with the same key is not stored again.
    pub dedup_key: Option<String>,
    /// A key of the text's content and a window (ms): a text whose key was stored within the
    /// window before is not stored again.
    pub same_within: Option<(String, Millis)>,
    /// When.
    pub received_at: Millis,
    /// Where it goes: carried out in the transaction that stores it.
    pub routing: Box<InboundRouting>,
}

/// What to do with an inbound text as it is stored (worked out by the inbound rules).
/// The default routes it to the catch-all: every admin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundRouting {
    /// Whether a rule matched; if none did and no conversation claims the text, it goes to
    /// the catch-all users.
    pub matched: bool,
    /// Users whose inboxes it goes to, by name (unknown names are skipped).
    pub users: Vec<String>,
    /// Users for texts nothing else claims; empty = every admin.
    pub catch_all: Vec<String>,
    /// Also designate it to everyone who texted the sender since then (conversations).
    pub conversation_since: Option<Millis>,
    /// Webhook URLs for `message.inbound` deliveries.
    pub webhooks: Vec<String>,
    /// E-mail addresses it is forwarded to (one delivery for all of them).
    pub emails: Vec<String>,
    /// Forward it by e-mail to the sender of the latest text from e-mail to this number
    /// within the conversation window (an answer to an e-mail-originated text).
    pub email_answers: bool,
    /// Automatic replies: `(owner name, message)`; the owner `None` or unknown = the first
    /// admin. Skipped when a reply went to the same number since `reply_since`.
    pub replies: Vec<(Option<String>, NewMessage)>,
    /// See `replies`.
    pub reply_since: Millis,
    /// Put the sender on (`Out`) or take it off (`In`) the suppression list.
    pub opt: Option<textgate_core::inbound::OptChange>,
    /// The confirmation of `opt`, sent as the first admin.
    pub opt_reply: Option<NewMessage>,
    /// Deliveries are retried until then.
    pub give_up_at: Millis,
}

impl InboundRouting {
    /// Whether storing the text may queue a delivery (a webhook, an e-mail forward, an
    /// answer to an e-mail), so that the delivery loops have something to look for.
    pub fn may_deliver(&self) -> bool {
        !self.webhooks.is_empty() || !self.emails.is_empty() || self.email_answers
    }
}

/// A stored inbound text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Row id; ids grow in the order texts become visible.
    pub id: Id,
    /// The device that received it.
    pub device: String,
    /// Sender.
    pub from: String,
    /// The number it was sent to.
    pub to: String,
    /// Text (hex for binary).
    pub body: String,
    /// `gsm7`, `ucs2`, `latin1` or `binary`.
    pub encoding: String,
    /// Parts it came in.
    pub parts: i64,
    /// Some parts never arrived.
    pub partial: bool,
    /// When.
    pub received_at: Millis,
}

/// Which inbound texts to list, oldest first.
#[derive(Debug, Clone, Default)]
pub struct InboundFilter {
    /// Only texts designated to this user; `None` = all.
    pub user_id: Option<Id>,
    /// Only ids above this one (the cursor).
    pub after: Option<Id>,
    /// At most this many.
    pub limit: usize,
}

/// An API key and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's row id.
    pub id: Id,
    /// Its owner.
    pub user: User,
    /// Signs the status callbacks of messages sent with it.
    pub webhook_secret: Option<String>,
}

/// What a retention pass works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Messages that reached a final status, with their parts and deliveries.
    Messages,
    /// Inbound texts, with their inbox entries and deliveries.
    Inbound,
    /// Webhook and e-mail deliveries that are done (delivered or dead), with their attempts.
    Deliveries,
}

/// One batch of a retention pass: rows after `after` (by id), older than `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeBatch {
    /// What.
    pub what: Purge,
    /// Rows created (received) before this go.
    pub before: Millis,
    /// Only rows with an id above this (the last batch's `next`).
    pub after: Id,
    /// Rows looked at, at most.
    pub limit: usize,
    /// Keep the rows, with their text emptied (messages and inbound texts only).
    pub strip: bool,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Rows deleted (or stripped).
    pub rows: u64,
    /// Where the next batch starts; `None` when the pass is done (it reached rows too young,
    /// or the end).
    pub next: Option<Id>,
}

/// An API key as it is listed (never the key itself, which is not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's id.
    pub id: Id,
    /// Its owner's id.
    pub user_id: Id,
    /// Its owner's name.
    pub user: String,
    /// Its label: the key's first characters, to recognise it by.
    pub label: String,
    /// Whether it has a webhook secret of its own.
    pub webhook_secret: bool,
    /// When it was made.
    pub created_at: Millis,
    /// When a node last verified it (at most once a minute per node).
    pub last_used_at: Option<Millis>,
    /// When it was revoked.
    pub revoked_at: Option<Millis>,
}

/// A number on the suppression list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// E.164.
    pub number: String,
    /// `keyword` (they texted STOP) or `api`.
    pub source: String,
    /// Why, for people.
    pub note: Option<String>,
    /// Since when.
    pub created_at: Millis,
}

/// A webhook POST or an e-mail forward: pending, delivered, or dead (given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Row id.
    pub id: Id,
    /// `webhook` or `email`.
    pub channel: String,
    /// `message.inbound` or `message.status`.
    pub event: String,
    /// The URL or the addresses.
    pub target: String,
    /// The inbound text (`message.inbound`).
    pub inbound_id: Option<Id>,
    /// The message (`message.status`).
    pub message_id: Option<Id>,
    /// The status a `message.status` event reports.
    pub status: Option<String>,
    /// Who may see it besides admins.
    pub owner_id: Option<Id>,
    /// The key whose secret signs it.
    pub api_key_id: Option<Id>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When it is due next (while pending).
    pub next_at: Millis,
    /// Retried until then (0 = `created_at` plus the configured period).
    pub give_up_at: Millis,
    /// The last HTTP status answered.
    pub last_code: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
    /// When created.
    pub created_at: Millis,
    /// When delivered or given up.
    pub done_at: Option<Millis>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The receiver took it.
    Delivered {
        /// Delivery.
        id: Id,
        /// The attempt number from the claim (fences out a stale sender).
        attempt: i64,
        /// HTTP status.
        code: Option<i64>,
        /// When.
        at: Millis,
    },
    /// Failed; try again at `next_at`.
    Retry {
        /// Delivery.
        id: Id,
        /// Attempt number.
        attempt: i64,
        /// HTTP status, if one came.
        code: Option<i64>,
        /// Why.
        error: String,
        /// When to try again.
        next_at: Millis,
        /// When it failed.
        at: Millis,
    },
    /// Not attempted after all (its owner had as many attempts in flight as allowed): back
    /// to waiting until `next_at`, its claim undone, so it does not count as an attempt.
    Deferred {
        /// Delivery.
        id: Id,
        /// The attempt number its claim gave it.
        attempt: i64,
        /// When it may be claimed again.
        next_at: Millis,
    },
    /// Failed and out of time (or failed in a way no retry mends): a dead letter.
    Dead {
        /// Delivery.
        id: Id,
        /// Attempt number.
        attempt: i64,
        /// HTTP status, if one came.
        code: Option<i64>,
        /// Why.
        error: String,
        /// When.
        at: Millis,
    },
}

impl DeliveryResult {
    /// The attempt as the log keeps it: `(delivery, attempt, at, code, error)`; `None` for a
    /// delivery that was not attempted.
    pub fn log_entry(&self) -> Option<LogEntry<'_>> {
        Some(match self {
            DeliveryResult::Deferred { .. } => return None,
            DeliveryResult::Delivered {
                id,
                attempt,
                code,
                at,
            } => (*id, *attempt, *at, *code, None),
            DeliveryResult::Retry {
                id,
                attempt,
                code,
                error,
                at,
                ..
            }
            | DeliveryResult::Dead {
                id,
                attempt,
                code,
                error,
                at,
            } => (*id, *attempt, *at, *code, Some(error.as_str())),
        })
    }
}

/// An attempt as [`DeliveryResult::log_entry`] gives it: `(delivery, attempt, at, code, error)`.
pub type LogEntry<'a> = (Id, i64, Millis, Option<i64>, Option<&'a str>);

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1, 2, …
    pub attempt: i64,
    /// When it ended.
    pub at: Millis,
    /// What the receiver answered (HTTP status, SMTP reply code), if it answered.
    pub code: Option<i64>,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
}

/// Which deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only in this state.
    pub state: Option<String>,
    /// Only those this user may see (their own messages'); `None` = all.
    pub owner_id: Option<Id>,
    /// Only ids below this one (the cursor).
    pub before: Option<Id>,
    /// At most this many.
    pub limit: usize,
}

/// The columns of `deliveries` in the order both backends read them.
pub(crate) const DELIVERY_COLUMNS: &str = "id, channel, event, target, inbound_id, message_id, status, owner_id, api_key_id, state, attempts, next_at, give_up_at, last_code, last_error, created_at, done_at";

/// The columns of `inbound` in the order both backends read them.
pub(crate) const INBOUND_COLUMNS: &str =
    "id, device, sender, recipient, body, encoding, parts, partial, received_at";

/// What storing an inbound text did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundStored {
    /// Stored with this id.
    New(Id),
    /// Seen before (same dedup key): not stored again.
    Duplicate,
}

/// A column list `a, b, c` as `t.a, t.b, t.c`, for joins.
pub(crate) fn prefixed(table: &str, cols: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A web UI session: who is signed in, and the token its forms carry against cross-site
/// requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The signed-in user.
    pub user: User,
    /// The CSRF token of the session's forms.
    pub csrf: String,
    /// When it was signed in.
    pub created_at: Millis,
    /// When it was last used (to a minute).
    pub seen_at: Millis,
    /// When it ends, used or not.
    pub expires_at: Millis,
}

/// A session to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebSession {
    /// SHA-256 (hex) of the cookie's token.
    pub token_hash: String,
    /// Who signed in.
    pub user_id: Id,
    /// The CSRF token of its forms.
    pub csrf: String,
    /// Now.
    pub created_at: Millis,
    /// Its absolute end.
    pub expires_at: Millis,
}

/// An inbound text in a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// The text.
    pub text: Inbound,
    /// When the user read it.
    pub read_at: Option<Millis>,
    /// When the user archived it.
    pub archived_at: Option<Millis>,
}

/// Which texts of an inbox to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Whose inbox.
    pub user_id: Id,
    /// Archived texts instead of the others.
    pub archived: bool,
    /// Only texts from this number.
    pub from: Option<String>,
    /// Only ids below this one (the cursor).
    pub before: Option<Id>,
    /// At most this many.
    pub limit: usize,
}

/// What to mark in an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxMarkKind {
    /// Read.
    Read,
    /// Archived.
    Archived,
    /// Back in the inbox.
    Unarchived,
}

/// Marks texts of one user's inbox: one text, or every text from a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMark {
    /// Whose inbox.
    pub user_id: Id,
    /// The mark.
    pub what: InboxMarkKind,
    /// This text only.
    pub id: Option<Id>,
    /// Every text from this number.
    pub from: Option<String>,
}

/// One text of a conversation between a user and a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationItem {
    /// From the number, in the user's inbox.
    In(InboxEntry),
    /// From the user to the number.
    Out(Box<Message>),
}

impl ConversationItem {
    /// When it was received or accepted.
    pub fn at(&self) -> Millis {
        match self {
            ConversationItem::In(e) => e.text.received_at,
            ConversationItem::Out(m) => m.created_at,
        }
    }

    pub(crate) fn id_for_order(&self) -> Id {
        match self {
            ConversationItem::In(e) => e.text.id,
            ConversationItem::Out(m) => m.id,
        }
    }
}

/// A contact of the address book: a user's own, or shared (no owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Row id.
    pub id: Id,
    /// Whose; `None` = shared by everyone.
    pub owner_id: Option<Id>,
    /// The name shown.
    pub name: String,
    /// E.164.
    pub number: String,
    /// Other fields, a JSON object of strings (usable in templates like CSV columns).
    pub fields: String,
    /// Created.
    pub created_at: Millis,
}

/// A contact to store: added, or (same owner and number) updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// Whose; `None` = shared.
    pub owner_id: Option<Id>,
    /// The name.
    pub name: String,
    /// E.164, checked.
    pub number: String,
    /// A JSON object of strings.
    pub fields: String,
    /// Now.
    pub created_at: Millis,
}

/// A group of contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Row id.
    pub id: Id,
    /// Whose; `None` = shared.
    pub owner_id: Option<Id>,
    /// Its name.
    pub name: String,
    /// How many contacts it has.
    pub members: i64,
    /// Created.
    pub created_at: Millis,
}

/// A node running on the store (docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its id for this run (made at start).
    pub id: String,
    /// Its name (`[server] node_name`, else the host's name).
    pub name: String,
    /// Where its HTTP API listens.
    pub address: String,
    /// Its build.
    pub version: String,
    /// When it started.
    pub started_at: Millis,
    /// When it last said it is alive.
    pub seen_at: Millis,
    /// When it stopped cleanly, if it did.
    pub stopped_at: Option<Millis>,
}

/// An entry of the audit log, to be written: who did what (`docs/operations.md#audit-log`).
/// Nothing in it may be a secret: no password, key, token or message text.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// When.
    pub at: Millis,
    /// Who: the user's name, or the operating system's user for the command line.
    pub actor: String,
    /// Through what: `api`, `web`, `cli` or `smtp`.
    pub via: String,
    /// The client's address, when it came over the network.
    pub address: Option<String>,
    /// What: `user.created`, `apikey.revoked`, `signin.failed`, …
    pub action: String,
    /// To what: a user's name, a key's id, a device's name, a job's id, a number.
    pub target: String,
    /// More, in a few words (`role admin`, `label ci`).
    pub detail: Option<String>,
}

/// An entry of the audit log, as stored.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Its id: later entries have larger ones.
    pub id: Id,
    /// When (ms since the epoch).
    pub at: Millis,
    /// Who.
    pub actor: String,
    /// Through what.
    pub via: String,
    /// The client's address.
    pub address: Option<String>,
    /// What.
    pub action: String,
    /// To what.
    pub target: String,
    /// More.
    pub detail: Option<String>,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action, or those starting with it when it ends in `.` (`user.`).
    pub action: Option<String>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only ids below this one (the cursor).
    pub before: Option<Id>,
    /// At most this many.
    pub limit: usize,
}
