//! textgate's e-mail gateway, e-mail to SMS (docs/email.md): an SMTP listener that takes mail
//! for `DIGITS@domain` and for configured addresses (numbers in the Subject) and stores one
//! text per number, owned by the sender's user.
//!
//! Laid out as codec / connection / behaviour:
//! - [`session`]: the SMTP conversation as a sans-IO state machine (commands parsed by
//!   `smtp-proto`): bytes in, replies and [`session::Action`]s out.
//! - [`mapping`]: recipients to numbers (domain and address mode), allowed-sender patterns.
//! - [`text`]: an e-mail (MIME, any charset, via `mail-parser`) to the text of an SMS:
//!   plain part or reduced HTML, without signature, quotes or untidy whitespace.
//! - [`gateway`]: the session's actions against the store and dispatcher: AUTH with a
//!   password or API key, senders tied to users, texts stored and handed on.
//! - [`connection`]: the task that owns one client's socket, timeouts and STARTTLS.
//! - [`server`]: the listener: TLS certificate, connection limit, shutdown.
//! - [`mailer`]: the other direction, texts to e-mail through the relay (`lettre`):
//!   forwards, answers to texts from e-mail, failure notices.
#![forbid(unsafe_code)]

pub mod connection;
pub mod gateway;
pub mod mailer;
pub mod mapping;
pub mod server;
pub mod session;
pub mod text;

pub use gateway::Gateway;
pub use server::{Listener, Running};

/// Why the e-mail gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} ([smtp] listen): {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The STARTTLS certificate or key could not be used.
    #[error("smtp.{key}: \"{file}\": {reason}")]
    Tls {
        /// `tls_cert` or `tls_key`.
        key: &'static str,
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `[smtp] user` names no user.
    #[error("smtp.user: there is no user \"{0}\": create it with `textgate user add {0}`, or change the key")]
    UnknownUser(String),
    /// The store failed while the gateway was starting.
    #[error(transparent)]
    Store(#[from] textgate_store::StoreError),
}
