//! The mailer: texts to e-mail through the company's relay (`[mailer]`, docs/email.md), with
//! the `lettre` crate as the SMTP client.
//!
//! It is the `email` channel of the shared delivery loop ([`textgate_engine::delivery`]),
//! so every e-mail was queued in the same transaction as what it reports, is retried with
//! backoff while the relay refuses it or is down, each attempt recorded, and ends delivered
//! or as a dead letter. It sends:
//! - inbound texts that a rule forwards (`email = [...]`) or that answer a text which came
//!   from e-mail: `From: DIGITS@first-domain`, so that replying to the e-mail texts the
//!   number back through the SMTP listener;
//! - failure notices: a text that came from e-mail and finally failed is reported to the
//!   address it came from (`[mailer] failure_notices`).

use std::collections::HashMap;
use std::sync::Arc;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use textgate_core::clock::format_rfc3339;
use textgate_core::config::{Config, MailerConfig, RelayTls};
use textgate_drivers::BoxFuture;
use textgate_engine::delivery::{Attempt, Channel, Failure};
use textgate_engine::dispatcher::Dispatcher;
use textgate_store::{Delivery, Id, Inbound, Message as Sms, Store};

/// One e-mail, before it has its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The `From:` header.
    pub from: Mailbox,
    /// `Subject:`.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// What a delivery sends: a mail, nothing (what it reports is gone, or notices are off),
/// or why it could not be read.
type Prepared = Result<Option<Mail>, String>;

/// The mailer's channel.
pub struct Mailer {
    store: Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    envelope_from: Address,
    /// The domain of `From: DIGITS@domain` on forwarded texts: the first `[smtp] domains`
    /// entry, so a reply comes back to the SMTP listener; else `[mailer] from`'s domain.
    reply_domain: String,
    failure_notices: bool,
}

/// Why the mailer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// A key of `[mailer]` is unusable.
    #[error("mailer.{key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl Mailer {
    /// The mailer of a checked config.
    pub fn new(store: Store, cfg: &Config, m: &MailerConfig) -> Result<Mailer, MailerError> {
        let bad = |key: &'static str, reason: String| MailerError::Config { key, reason };
        let (tls, host, port) = m.relay_parts().map_err(|e| bad("relay", e.message))?;
        let params = || {
            TlsParameters::new(host.clone())
                .map_err(|e| bad("relay", format!("TLS towards {host}: {e}")))
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .timeout(Some(m.timeout.0))
            .tls(match tls {
                RelayTls::Opportunistic => Tls::Opportunistic(params()?),
                RelayTls::StartTls => Tls::Required(params()?),
                RelayTls::Wrapper => Tls::Wrapper(params()?),
            });
        let builder = match (&m.username, &m.password) {
            (Some(u), Some(p)) => builder.credentials(Credentials::new(u.clone(), p.clone())),
            _ => builder,
        };
        let envelope_from: Address = m
            .from
            .parse()
            .map_err(|e| bad("from", format!("\"{}\": {e}", m.from)))?;
        let reply_domain = cfg
            .smtp
            .as_ref()
            .and_then(|s| s.domains.first().cloned())
            .unwrap_or_else(|| envelope_from.domain().to_string());
        Ok(Mailer {
            store,
            transport: builder.build(),
            envelope_from,
            reply_domain,
            failure_notices: m.failure_notices,
        })
    }

    /// The forward of an inbound text.
    pub fn forward(&self, t: &Inbound) -> Mail {
        // Stored without control characters already; a text stored by an older version may
        // have them, and a display name must not carry a line break into a header.
        let shown = textgate_core::address::without_controls(&t.from, 64);
        let digits: String = t.from.chars().filter(char::is_ascii_digit).collect();
        // A number answers at DIGITS@domain; an alphanumeric sender cannot be answered, so
        // its forward comes from the mailer's own address.
        let from = if digits.len() == t.from.trim_start_matches('+').len() && !digits.is_empty() {
            format!("{digits}@{}", self.reply_domain)
                .parse::<Address>()
                .map(|a| Mailbox::new(Some(format!("{shown} (SMS)")), a))
                .unwrap_or_else(|_| Mailbox::new(None, self.envelope_from.clone()))
        } else {
            Mailbox::new(Some(format!("{shown} (SMS)")), self.envelope_from.clone())
        };
        let preview: String = t.body.chars().take(40).collect();
        let more = if t.body.chars().count() > 40 {
            "…"
        } else {
            ""
        };
        Mail {
            from,
            subject: format!("SMS from {shown}: {preview}{more}"),
            body: format!(
                "{}\n\n-- \nA text message from {} to {}, received {} on {}.\nReply to this e-mail to answer by SMS.\n",
                t.body,
                t.from,
                t.to,
                format_rfc3339(t.received_at),
                t.device
            ),
        }
    }

    /// The notice of a text from e-mail that finally failed.
    pub fn failure_notice(&self, m: &Sms, status: &str) -> Mail {
        let reason = m.error.as_deref().unwrap_or("no reason was given");
        let quoted: String = m.body.lines().map(|l| format!("> {l}\n")).collect();
        Mail {
            from: Mailbox::new(Some("SMS gateway".into()), self.envelope_from.clone()),
            subject: format!("Not delivered: your text to {}", m.to),
            body: format!(
                "Your text to {} was not delivered ({status}): {reason}.\n\n{quoted}",
                m.to
            ),
        }
    }

    async fn prepare_batch(&self, batch: &[Delivery]) -> Vec<Prepared> {
        let inbound_ids: Vec<Id> = batch.iter().filter_map(|d| d.inbound_id).collect();
        let message_ids: Vec<Id> = batch.iter().filter_map(|d| d.message_id).collect();
        let (texts, msgs) = tokio::join!(
            self.store.inbound_by_ids(inbound_ids),
            self.store.messages_by_ids(message_ids)
        );
        let err = |e: textgate_store::StoreError| format!("the store failed: {e}");
        let texts: Result<HashMap<Id, Inbound>, String> = texts
            .map(|v| v.into_iter().map(|t| (t.id, t)).collect())
            .map_err(err);
        let msgs: Result<HashMap<Id, Sms>, String> = msgs
            .map(|v| v.into_iter().map(|m| (m.id, m)).collect())
            .map_err(err);
        batch
            .iter()
            .map(|d| {
                if let Some(id) = d.inbound_id {
                    let texts = texts.as_ref().map_err(Clone::clone)?;
                    return Ok(texts.get(&id).map(|t| self.forward(t)));
                }
                if let Some(id) = d.message_id {
                    if !self.failure_notices {
                        return Ok(None);
                    }
                    let msgs = msgs.as_ref().map_err(Clone::clone)?;
                    let status = d.status.as_deref().unwrap_or("failed");
                    return Ok(msgs.get(&id).map(|m| self.failure_notice(m, status)));
                }
                Ok(None)
            })
            .collect()
    }

    async fn send(&self, d: &Delivery, mail: Mail) -> Attempt {
        let mut to = Mailboxes::new();
        let mut rcpts = Vec::new();
        for a in d.target.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match a.parse::<Address>() {
                Ok(addr) => {
                    to.push(Mailbox::new(None, addr.clone()));
                    rcpts.push(addr);
                }
                // Retrying cannot mend an address; the dead letter says what was wrong.
                Err(e) => {
                    return Err(Failure::permanent(
                        None,
                        format!("\"{a}\" is not an e-mail address: {e}"),
                    ))
                }
            }
        }
        let envelope = lettre::address::Envelope::new(Some(self.envelope_from.clone()), rcpts)
            .map_err(|e| Failure::permanent(None, format!("no usable recipient: {e}")))?;
        let message = Message::builder()
            .from(mail.from)
            .mailbox(lettre::message::header::To::from(to))
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .envelope(envelope)
            .body(mail.body)
            .map_err(|e| Failure::permanent(None, format!("the e-mail could not be built: {e}")))?;
        match self.transport.send(message).await {
            Ok(resp) => Ok(Some(i64::from(u16::from(resp.code())))),
            Err(e) => {
                let code = e.status().map(|c| i64::from(u16::from(c)));
                // A permanent refusal (5xx) of one message is retried too: relays answer 5xx
                // for passing reasons as well, and the retry period bounds it.
                Err(Failure::retry(
                    code,
                    format!("the relay did not take it: {e}"),
                ))
            }
        }
    }
}

impl Channel for Mailer {
    type Prepared = Prepared;

    fn name(&self) -> &'static str {
        "email"
    }

    fn prepare<'a>(&'a self, batch: &'a [Delivery]) -> BoxFuture<'a, Vec<Prepared>> {
        Box::pin(self.prepare_batch(batch))
    }

    fn attempt<'a>(&'a self, d: &'a Delivery, p: Prepared) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            match p {
                Ok(Some(mail)) => self.send(d, mail).await,
                // Nothing to send (notices off, or the text is gone): done.
                Ok(None) => Ok(None),
                Err(e) => Err(Failure::retry(None, e)),
            }
        })
    }
}

impl Mailer {
    /// Builds the mailer of `cfg` once to find what is wrong with it before `serve` goes on.
    pub fn check(cfg: &Config, store: &Store) -> Result<(), MailerError> {
        match &cfg.mailer {
            Some(m) => Mailer::new(store.clone(), cfg, m).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Runs the mailer until `stop` is notified; nothing when `[mailer]` is absent.
pub async fn run(
    store: Store,
    dispatcher: Arc<Dispatcher>,
    cfg: Arc<Config>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), MailerError> {
    let Some(m) = &cfg.mailer else {
        return Ok(());
    };
    let mailer = Arc::new(Mailer::new(store.clone(), &cfg, m)?);
    textgate_engine::delivery::run(
        store,
        mailer,
        m.delivery_policy(),
        dispatcher.counters.mail.clone(),
        dispatcher.deliveries.clone(),
        stop,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        let text = "[mailer]\nrelay='smtp://127.0.0.1:2599'\nfrom='sms@example.com'\n[smtp]\ndomains=['sms.example.com']\n[[device]]\nname='a'\nkind='loopback'\n";
        let cfg = Config::parse(text, &|_| None).unwrap();
        cfg.check().unwrap();
        let store = futures_store();
        Mailer::new(store, &cfg, cfg.mailer.as_ref().unwrap()).unwrap()
    }

    fn futures_store() -> Store {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("tg-mailer-{}", std::process::id()));
        rt.block_on(Store::open(&format!("sqlite://{}/t.db", dir.display())))
            .unwrap()
    }

    fn text(from: &str, body: &str) -> Inbound {
        Inbound {
            id: 1,
            device: "smsc1".into(),
            from: from.into(),
            to: "+15550001111".into(),
            body: body.into(),
            encoding: "gsm7".into(),
            parts: 1,
            partial: false,
            received_at: 0,
        }
    }

    #[test]
    fn a_forward_comes_from_the_number_so_a_reply_texts_it_back() {
        let m = mailer();
        let mail = m.forward(&text("+15557654321", "Running late, see you at 10"));
        assert_eq!(mail.from.email.to_string(), "15557654321@sms.example.com");
        assert_eq!(mail.from.name.as_deref(), Some("+15557654321 (SMS)"));
        assert_eq!(
            mail.subject,
            "SMS from +15557654321: Running late, see you at 10"
        );
        assert!(mail
            .body
            .starts_with("Running late, see you at 10\n\n-- \n"));
        assert!(mail.body.contains("Reply to this e-mail"));
        // An alphanumeric sender cannot be answered: the mailer's own address.
        let mail = m.forward(&text("ACME", "x"));
        assert_eq!(mail.from.email.to_string(), "sms@example.com");
        let long = m.forward(&text("+15557654321", &"y".repeat(100)));
        assert!(long.subject.ends_with("…"));
    }
}
