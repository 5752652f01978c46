//! The dispatcher's side of inbound texts: numbers normalised, the rules' plan turned into
//! the routing the store carries out with the text, and the suppression list kept in memory
//! so that every outbound message can be checked against it without a query.

use std::collections::HashSet;
use std::sync::RwLock;

use textgate_core::address::{Country, Recipient, Sender};
use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::Config;
use textgate_core::encoding::Body;
use textgate_core::inbound::{InboundConfig, InboundRules, OptChange};
use textgate_store::{origin, InboundRouting, NewInbound, NewMessage, Store};

/// The error code of a message to a number that opted out.
pub const OPTED_OUT: &str = "OPTED_OUT";

/// Routes inbound texts and holds the suppression list.
pub struct InboundRouter {
    rules: InboundRules,
    cfg: InboundConfig,
    country: Option<Country>,
    max_parts: u16,
    validity: Millis,
    retry_for: Millis,
    /// Whether a mailer is configured (answers to texts from e-mail go back by e-mail).
    mailer: bool,
    suppressed: RwLock<HashSet<String>>,
}

impl InboundRouter {
    /// From the (checked) configuration.
    pub fn new(cfg: &Config) -> InboundRouter {
        let rules = InboundRules::new(&cfg.inbound_rules, &cfg.inbound);
        InboundRouter {
            rules,
            cfg: cfg.inbound.clone(),
            country: cfg.default_country(),
            max_parts: cfg.server.max_parts,
            validity: cfg.server.default_validity.0.as_millis() as Millis,
            retry_for: cfg.webhooks.retry_for.0.as_millis() as Millis,
            mailer: cfg.mailer.is_some(),
            suppressed: RwLock::new(HashSet::new()),
        }
    }

    /// The rules, for their webhook secrets.
    pub fn rules(&self) -> &InboundRules {
        &self.rules
    }

    /// How long deliveries are retried.
    pub fn retry_for(&self) -> Millis {
        self.retry_for
    }

    /// Normalises a text's numbers and works out its routing.
    pub fn route(&self, t: &mut NewInbound) {
        // A NUL (a UCS-2 text may carry one) is shown as the replacement character: no
        // phone shows a NUL, and PostgreSQL cannot store one.
        if t.body.contains('\0') {
            t.body = t.body.replace('\0', "\u{fffd}");
        }
        t.from = textgate_core::inbound::normalize_party(&t.from, self.country);
        t.to = textgate_core::inbound::normalize_party(&t.to, self.country);
        let plan = self.rules.plan(&t.device, &t.from, &t.to, &t.body);
        let now = now_ms();
        let window = self.cfg.conversation_window.0.as_millis() as Millis;
        let opt_text = match plan.opt {
            Some(OptChange::Out) => Some(&self.cfg.opt_out_reply),
            Some(OptChange::In) => Some(&self.cfg.opt_in_reply),
            None => None,
        };
        let opt_reply = opt_text
            .filter(|s| !s.is_empty())
            .and_then(|s| self.answer(t, s, origin::OPT_CONFIRMATION, now));
        let replies = plan
            .replies
            .into_iter()
            .filter_map(|r| Some((r.owner, self.answer(t, &r.body, origin::REPLY, now)?)))
            .collect();
        *t.routing = InboundRouting {
            matched: plan.matched,
            users: plan.users,
            catch_all: self.cfg.catch_all.clone(),
            conversation_since: (window > 0).then(|| t.received_at - window),
            webhooks: plan.webhooks,
            emails: plan.emails,
            email_answers: self.mailer,
            replies,
            reply_since: now - self.cfg.reply_interval.0.as_millis() as Millis,
            opt: plan.opt,
            opt_reply,
            give_up_at: t.received_at + self.retry_for,
        };
    }

    /// A text back to the sender of `t`, from the number it wrote to; `None` when the sender
    /// cannot be texted (an alphanumeric id) or the text does not fit.
    fn answer(&self, t: &NewInbound, text: &str, origin: &str, now: Millis) -> Option<NewMessage> {
        let to = Recipient::parse(&t.from, self.country).ok()?;
        let body = match Body::new(text, self.max_parts) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "an automatic reply is too long to send; skipped");
                return None;
            }
        };
        Some(NewMessage {
            owner_id: 0,
            job_id: None,
            to: to.as_str().to_string(),
            from: Sender::parse(&t.to, self.country)
                .ok()
                .map(|s| s.as_str().to_string()),
            body: body.text().to_string(),
            encoding: body.encoding().as_str().to_string(),
            segments: i64::from(body.segments()),
            schedule_at: None,
            expires_at: now + self.validity,
            callback_url: None,
            reference: None,
            priority: 0,
            created_at: now,
            claimed_until: None,
            origin: Some(origin.to_string()),
            api_key_id: None,
            email_from: None,
        })
    }

    /// Whether `number` is on the suppression list (as last loaded or changed here).
    pub fn is_suppressed(&self, number: &str) -> bool {
        self.suppressed
            .read()
            .map(|s| s.contains(number))
            .unwrap_or(false)
    }

    /// Notes a change of the suppression list made here.
    pub fn set_suppressed(&self, number: &str, on: bool) {
        if let Ok(mut s) = self.suppressed.write() {
            if on {
                s.insert(number.to_string());
            } else {
                s.remove(number);
            }
        }
    }

    /// Reloads the suppression list from the store (other nodes may have changed it).
    pub async fn reload(&self, store: &Store) -> textgate_store::Result<usize> {
        let mut all = HashSet::new();
        let mut after = None;
        loop {
            let page = store.list_suppressions(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.number.clone());
            all.extend(page.into_iter().map(|s| s.number));
        }
        let n = all.len();
        if let Ok(mut s) = self.suppressed.write() {
            *s = all;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(config: &str, to: &str) -> InboundRouting {
        *routed_text(config, to, "hello").routing
    }

    fn routed_text(config: &str, to: &str, body: &str) -> NewInbound {
        let base = "[[device]]\nname = \"lb\"\nkind = \"loopback\"\n";
        let cfg = Config::parse(&format!("{base}{config}"), &|_| None).expect("config");
        let router = InboundRouter::new(&cfg);
        let mut t = NewInbound {
            device: "lb".into(),
            dedup_key: None,
            same_within: None,
            from: "+15550002222".into(),
            to: to.into(),
            body: body.into(),
            encoding: "gsm7".into(),
            parts: 1,
            partial: false,
            received_at: now_ms(),
            routing: Default::default(),
        };
        router.route(&mut t);
        t
    }

    /// A NUL in a received text (a UCS-2 text may carry one) is kept as U+FFFD: PostgreSQL
    /// refuses a NUL, and refusing the text would have the SMSC deliver it again forever.
    #[test]
    fn a_nul_in_a_received_text_becomes_the_replacement_character() {
        let t = routed_text("", "+15550001111", "a\0b\0");
        assert_eq!(t.body, "a\u{fffd}b\u{fffd}");
    }

    /// The dispatcher wakes the delivery loops only for texts that may have queued
    /// something for them: a webhook, an e-mail forward, or (with a mailer) an answer to an
    /// e-mail.
    #[test]
    fn only_texts_with_somewhere_to_go_may_deliver() {
        let rules =
            "[[inbound_rule]]\nto = \"+15550001111\"\nwebhook = \"https://crm.example.com/hook\"\n\
                     [[inbound_rule]]\nto = \"+15550003333\"\nemail = [\"desk@example.com\"]\n";
        assert!(routed(rules, "+15550001111").may_deliver(), "webhook");
        assert!(
            routed(rules, "+15550003333").may_deliver(),
            "e-mail forward"
        );
        assert!(!routed(rules, "+15550009999").may_deliver(), "inbox only");
        let mailer = "[mailer]\nrelay = \"smtp://mail.example.com\"\nfrom = \"sms@example.com\"\n";
        assert!(
            routed(mailer, "+15550009999").may_deliver(),
            "answer to an e-mail"
        );
    }
}
