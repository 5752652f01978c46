//! What the session's [`Action`]s mean for textgate: credentials checked against users'
//! passwords (argon2) and API keys, senders tied to users by their e-mail address, and texts
//! stored through the same path as the HTTP API ([`textgate_engine::submit`]).
//!
//! Owner rule for senders allowed without AUTH: the user whose `email` is the envelope
//! sender (compared without regard to case; the oldest such user if several share it); if
//! none, the `[smtp] user` when configured; else the mail is refused with `550 5.7.1`.
//!
//! Credentials are checked by [`SignIn`] (failures limited per name and address across
//! connections, a bounded number of argon2 checks at once). Verified credentials and sender
//! owners are cached for a minute, as the HTTP side caches API keys: argon2 costs
//! milliseconds of CPU by design, which a client that authenticates for every message would
//! otherwise pay each time.
//!
//! Mail without AUTH is never owned by an administrator unless the configuration names that
//! administrator as `[smtp] user`: an envelope sender is easy to forge.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use std::net::IpAddr;

use textgate_core::address::choose_sender;
use textgate_core::auth::hex;
use textgate_core::cache::Recent;
use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::Config;
use textgate_engine::dispatcher::Dispatcher;
use textgate_engine::signin::{SignIn, Verdict};
use textgate_engine::submit::{Accepted, Submission};
use textgate_store::{Role, Store, User};

use crate::session::{Action, Answer, Credentials, Delivery, Owner};
use crate::SmtpError;

/// Resolves the session's actions against the store and the dispatcher.
pub struct Gateway {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    signin: Arc<SignIn>,
    default_owner: Option<Owner>,
    validity: Millis,
    credentials: Recent<Owner>,
    senders: Recent<Owner>,
}

fn owner(u: User) -> Owner {
    Owner {
        id: u.id,
        name: u.name,
        emails: u.email.into_iter().collect(),
    }
}

impl Gateway {
    /// A gateway for this configuration; finds the `[smtp] user`, which must exist.
    pub async fn new(
        store: Store,
        dispatcher: Arc<Dispatcher>,
        signin: Arc<SignIn>,
        cfg: &Config,
    ) -> Result<Gateway, SmtpError> {
        let default_owner = match cfg.smtp.as_ref().and_then(|s| s.user.as_deref()) {
            None => None,
            Some(name) => Some(
                store
                    .user_by_name(name)
                    .await?
                    .map(owner)
                    .ok_or_else(|| SmtpError::UnknownUser(name.to_string()))?,
            ),
        };
        Ok(Gateway {
            store,
            dispatcher,
            signin,
            default_owner,
            validity: cfg.server.default_validity.0.as_millis() as Millis,
            credentials: Recent::default(),
            senders: Recent::default(),
        })
    }

    /// Does what `action` of the client at `client` asks; `None` for the actions the
    /// connection itself carries out (STARTTLS, close).
    pub async fn answer(&self, action: Action, client: IpAddr) -> Option<Answer> {
        match action {
            Action::Authenticate(c) => Some(self.authenticate(c, client).await),
            Action::FindSender(address) => Some(self.sender(&address).await),
            Action::Deliver(d) => Some(self.deliver(d).await),
            Action::StartTls | Action::Close => None,
        }
    }

    async fn authenticate(&self, c: Credentials, client: IpAddr) -> Answer {
        // The cache key is a hash, so that no password is kept in memory longer than needed.
        let key = hex(&Sha256::digest(
            format!("{}\0{}", c.username, c.secret).as_bytes(),
        ));
        if let Some(o) = self.credentials.get(&key) {
            return Answer::Authenticated(Some(o));
        }
        match self.signin.check(client, &c.username, &c.secret).await {
            Verdict::Accepted(u) => {
                let o = owner(u);
                tracing::debug!(user = %o.name, "SMTP AUTH succeeded");
                self.credentials.put(key, o.clone());
                Answer::Authenticated(Some(o))
            }
            Verdict::Refused => {
                self.dispatcher
                    .counters
                    .smtp_auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                let who = textgate_engine::audit::sign_in_failed(
                    &self.store,
                    &c.username,
                    "smtp",
                    client,
                )
                .await;
                tracing::info!(user = %who, %client, "SMTP AUTH refused");
                Answer::Authenticated(None)
            }
            Verdict::LockedOut(after) => {
                self.dispatcher
                    .counters
                    .signin_lockouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user = %c.username, %client, "SMTP AUTH refused: locked out after too many failures");
                Answer::LockedOut(after)
            }
            Verdict::Unavailable => Answer::Unavailable,
        }
    }

    async fn sender(&self, address: &str) -> Answer {
        let key = address.to_ascii_lowercase();
        if let Some(o) = self.senders.get(&key) {
            return Answer::Sender(Some(o));
        }
        match self.store.user_by_email(address).await {
            Ok(Some(u)) if u.role == Role::Admin && !self.is_default_owner(u.id) => {
                tracing::info!(sender = %address, "mail without AUTH from an administrator's address refused");
                Answer::SenderRefused(
                    "this address belongs to an administrator, whose mail must be authenticated (AUTH); an envelope sender alone proves nothing".into(),
                )
            }
            Ok(found) => {
                let o = found.map(owner).or_else(|| self.default_owner.clone());
                if let Some(o) = &o {
                    self.senders.put(key, o.clone());
                } else {
                    tracing::info!(sender = %address, "mail from an allowed sender that is no user's address refused ([smtp] user is not set)");
                }
                Answer::Sender(o)
            }
            Err(e) => {
                tracing::error!(error = %e, "SMTP sender lookup: the store failed");
                Answer::Unavailable
            }
        }
    }

    /// Forgets every verified credential and sender (an API key was revoked or a user
    /// disabled: the next AUTH and MAIL FROM are checked again).
    pub fn forget_credentials(&self) {
        self.credentials.clear();
        self.senders.clear();
    }

    fn is_default_owner(&self, id: i64) -> bool {
        self.default_owner.as_ref().is_some_and(|o| o.id == id)
    }

    async fn deliver(&self, d: Delivery) -> Answer {
        // Mail names no sender: the owner's default, if they have one, as it is now (owners
        // are remembered for a minute, and the `[smtp] user` for the server's life).
        let (from, quota) = match self.store.user_by_id(d.owner.id).await {
            Ok(u) => (
                u.as_ref()
                    .and_then(|u| choose_sender(&u.senders, None, None).ok().flatten()),
                u.and_then(|u| self.dispatcher.quotas.limits(u.role, u.quota)),
            ),
            Err(e) => {
                tracing::error!(error = %e, "SMTP delivery: the store failed");
                return Answer::Unavailable;
            }
        };
        let now = now_ms();
        let count = d.to.len() as u64;
        let submission = Submission {
            owner_id: d.owner.id,
            to: d.to,
            from,
            body: d.body,
            schedule_at: None,
            expires_at: now + self.validity,
            callback_url: None,
            reference: None,
            now,
            origin: Some(textgate_store::origin::EMAIL.to_string()),
            api_key_id: None,
            // Answers and notices go to it in a header: nothing that could break one.
            email_from: Some(textgate_core::address::without_controls(&d.mail_from, 320))
                .filter(|a| !a.is_empty()),
            quota,
        };
        let render = Box::new(|_: &[i64]| String::new());
        match self.dispatcher.submit(submission, None, render).await {
            Ok(Accepted::New { ids, .. }) => {
                let counters = &self.dispatcher.counters;
                counters.emails.fetch_add(1, Ordering::Relaxed);
                counters.email_texts.fetch_add(count, Ordering::Relaxed);
                tracing::debug!(user = %d.owner.name, from = %d.mail_from, texts = count, "e-mail stored as texts");
                Answer::Stored(ids)
            }
            Ok(Accepted::OverQuota(refused)) => {
                tracing::info!(user = %d.owner.name, texts = count, "e-mail refused: over quota");
                Answer::OverQuota(refused.message())
            }
            // Without an idempotency key neither can happen; refuse rather than claim success.
            Ok(Accepted::Replay { .. } | Accepted::KeyReused) => Answer::Unavailable,
            Err(e) => {
                tracing::error!(error = %e, "storing texts from an e-mail failed");
                Answer::Unavailable
            }
        }
    }
}
