//! Accepting outbound texts: the one path by which texts that were validated at an edge (the
//! HTTP API, the e-mail gateway) become stored messages, so that every edge stores them the
//! same way and wakes the dispatcher the same way.
//!
//! Texts that can go now are stored already claimed and handed straight to the dispatcher,
//! skipping a queue round trip; when it is full they wait in the queue and the claimer is
//! woken instead.

use textgate_core::address::{Recipient, Sender};
use textgate_core::clock::Millis;
use textgate_core::encoding::Body;
use textgate_store::{Id, Idempotency, Inserted, NewMessage, RenderFn};

use crate::dispatcher::Dispatcher;
use crate::quota::{Limits, Refused};

/// One text to one or more recipients, every part of it already parsed.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The user the messages belong to.
    pub owner_id: Id,
    /// One message per recipient, in this order.
    pub to: Vec<Recipient>,
    /// Sender id, if the caller chose one.
    pub from: Option<Sender>,
    /// The text, with its encoding and part count.
    pub body: Body,
    /// Send no earlier than this.
    pub schedule_at: Option<Millis>,
    /// Give up if not sent by then.
    pub expires_at: Millis,
    /// Where status changes are POSTed.
    pub callback_url: Option<String>,
    /// The caller's own reference.
    pub reference: Option<String>,
    /// When it was accepted.
    pub now: Millis,
    /// Where it came from (see [`textgate_store::origin`]); `None` = the HTTP API.
    pub origin: Option<String>,
    /// The API key it was sent with.
    pub api_key_id: Option<Id>,
    /// For a text from e-mail: the sender's address.
    pub email_from: Option<String>,
    /// The owner's limits (`None`: none, as for administrators).
    pub quota: Option<Limits>,
}

/// What [`Dispatcher::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored (committed) and passed on for sending.
    New {
        /// The new ids, in recipient order.
        ids: Vec<Id>,
        /// The answer rendered and stored with them.
        response: String,
    },
    /// The idempotency key was seen before with the same request: its first answer.
    Replay {
        /// The stored answer.
        response: String,
    },
    /// The idempotency key was seen before with a different request; nothing was stored.
    KeyReused,
    /// The owner's quota would be passed; nothing was stored.
    OverQuota(Refused),
}

impl Dispatcher {
    /// Stores the messages of `s` in one transaction (with the answer `render` makes for an
    /// idempotency key, if any), then hands them to the dispatcher or wakes it. Returns once
    /// they are committed.
    pub async fn submit(
        &self,
        s: Submission,
        idem: Option<Idempotency>,
        render: RenderFn,
    ) -> textgate_store::Result<Accepted> {
        let (owner, n, now) = (s.owner_id, s.to.len(), s.now);
        let quota = s.quota;
        if let Some(limits) = &quota {
            if let Err(refused) = self
                .quotas
                .take(self.store(), owner, limits, n, now, false)
                .await?
            {
                return Ok(Accepted::OverQuota(refused));
            }
        }
        let accepted = self.store_submission(s, idem, render).await;
        if let Some(limits) = &quota {
            // Texts not stored (a replay, a refusal, a failure) do not count.
            if !matches!(accepted, Ok(Accepted::New { .. })) {
                self.quotas
                    .give_back(self.store(), owner, limits, n, now)
                    .await;
            }
        }
        accepted
    }

    async fn store_submission(
        &self,
        s: Submission,
        idem: Option<Idempotency>,
        render: RenderFn,
    ) -> textgate_store::Result<Accepted> {
        let scheduled = s.schedule_at.is_some_and(|t| t > s.now);
        let reservation = if scheduled {
            None
        } else {
            self.reserve(s.to.len())
        };
        let claimed_until = reservation.as_ref().map(|_| self.lease_until(s.now));
        let encoding = s.body.encoding().as_str();
        let segments = i64::from(s.body.segments());
        let msgs: Vec<NewMessage> =
            s.to.iter()
                .map(|r| NewMessage {
                    owner_id: s.owner_id,
                    job_id: None,
                    to: r.as_str().to_string(),
                    from: s.from.as_ref().map(|f| f.as_str().to_string()),
                    body: s.body.text().to_string(),
                    encoding: encoding.to_string(),
                    segments,
                    schedule_at: s.schedule_at,
                    expires_at: s.expires_at,
                    callback_url: s.callback_url.clone(),
                    reference: s.reference.clone(),
                    priority: 0,
                    created_at: s.now,
                    claimed_until,
                    origin: s.origin.clone(),
                    api_key_id: s.api_key_id,
                    email_from: s.email_from.clone(),
                })
                .collect();
        Ok(
            match self.store().insert_messages(msgs, idem, render).await? {
                Inserted::New {
                    ids,
                    response,
                    stored,
                } => {
                    match reservation {
                        Some(r) => self.hand_over(stored, r).await,
                        None => self.wake(),
                    }
                    Accepted::New { ids, response }
                }
                Inserted::Replay { response } => Accepted::Replay { response },
                Inserted::KeyReused => Accepted::KeyReused,
            },
        )
    }
}
