//! Webhooks out (DESIGN.md §5): `message.inbound` events for inbound rules with a webhook,
//! `message.status` events for messages sent with a `callback_url`.
//!
//! The store queues a delivery in the same transaction as the text or status change it
//! reports, so none is lost across a crash. This worker claims due deliveries under a lease,
//! POSTs them with at most `[webhooks] concurrency` in flight (keep-alive connections,
//! pooled per host), signs each body with HMAC-SHA256 (`X-Textgate-Signature: sha256=HEX`),
//! and records the outcome: delivered on a 2xx, otherwise retried with exponential backoff
//! until `[webhooks] retry_for` has passed, then kept as a dead letter that the API can list
//! and replay. It runs apart from the devices: a slow receiver never holds up a device.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::Sha256;
use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::WebhooksConfig;
use textgate_store::{Delivery, DeliveryResult, Id};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::AppState;

/// Deliveries claimed in one query, at most.
const CLAIM_BATCH: usize = 512;
/// How often the queue is looked at when nothing wakes the worker (status callbacks are
/// queued by the store without a wake-up).
const POLL: Duration = Duration::from_millis(200);

/// A delivery's `data`, or why it could not be read.
type Payload = Result<Option<Value>, String>;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Counters shown in `/metrics`.
#[derive(Default)]
pub struct WebhookCounters {
    /// POSTs answered with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (and were retried or given up).
    pub failed: AtomicU64,
    /// Deliveries given up: dead letters.
    pub dead: AtomicU64,
}

/// The HMAC-SHA256 signature header value of `body` under `secret`: `sha256=HEX`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length, so this cannot fail; an empty tag would only ever
    // be refused by the receiver.
    let tag = match hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("sha256={}", textgate_core::auth::hex(&tag))
}

struct Worker {
    st: AppState,
    cfg: WebhooksConfig,
    client: HttpsClient,
    /// Webhook secrets of API keys, by key id (`None`: the key has none).
    key_secrets: Mutex<HashMap<Id, Option<String>>>,
}

/// Runs the webhook worker until `stop` is notified. Deliveries in flight then keep their
/// lease and are sent again after it runs out (webhooks are at-least-once; receivers
/// deduplicate by `X-Textgate-Delivery`).
pub async fn run(st: AppState, stop: Arc<Notify>) {
    let cfg = st.config.webhooks.clone();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(cfg.concurrency)
        .build(https);
    let w = Arc::new(Worker {
        st,
        cfg,
        client,
        key_secrets: Mutex::new(HashMap::new()),
    });
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(w.clone().recorder(done_rx));
    let slots = Arc::new(Semaphore::new(w.cfg.concurrency));
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let free = slots.available_permits().min(CLAIM_BATCH);
        let mut claimed = 0;
        if free > 0 {
            let now = now_ms();
            // Long enough for every attempt in this batch to finish, with room to spare.
            let lease = now + 2 * w.cfg.timeout.0.as_millis() as Millis + 30_000;
            match w
                .st
                .store
                .claim_deliveries("webhook", now, lease, free)
                .await
            {
                Ok(batch) => {
                    claimed = batch.len();
                    // The texts and messages the batch reports, read in two queries.
                    let payloads = w.payloads(&batch).await;
                    for (d, data) in batch.into_iter().zip(payloads) {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let w = w.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let result = w.deliver(&d, data).await;
                            drop(permit);
                            let _ = done.send(result);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if claimed == free && free > 0 {
            continue;
        }
        if free == 0 {
            // Every slot is busy: go on as soon as half of them are free again, so the next
            // claim is a batch rather than one delivery per transaction.
            let half = u32::try_from(w.cfg.concurrency.div_ceil(2)).unwrap_or(1);
            tokio::select! {
                _ = &mut stopped => break,
                p = slots.acquire_many(half) => drop(p),
            }
            continue;
        }
        tokio::select! {
            _ = &mut stopped => break,
            _ = w.st.dispatcher.deliveries.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), recorder).await;
}

impl Worker {
    /// Writes outcomes in batches: one transaction for all that finished meanwhile.
    async fn recorder(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<DeliveryResult>) {
        let mut buf = Vec::with_capacity(1024);
        while rx.recv_many(&mut buf, 1024).await > 0 {
            let batch = std::mem::take(&mut buf);
            let mut delay = Duration::from_millis(50);
            loop {
                match self.st.store.finish_deliveries(batch.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        // Unrecorded, they would be sent again after their lease: keep trying.
                        tracing::warn!(error = %e, "recording webhook deliveries failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    async fn deliver(&self, d: &Delivery, data: Payload) -> DeliveryResult {
        let c = &self.st.http.webhooks;
        let (code, error) = match self.attempt(d, data).await {
            Ok(code) if (200..300).contains(&code) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                return DeliveryResult::Delivered {
                    id: d.id,
                    attempt: d.attempts,
                    code: Some(i64::from(code)),
                    at: now_ms(),
                };
            }
            Ok(code) => (
                Some(i64::from(code)),
                format!("the receiver answered HTTP {code}"),
            ),
            Err(e) => (None, e),
        };
        c.failed.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let give_up_at = if d.give_up_at > 0 {
            d.give_up_at
        } else {
            d.created_at + self.cfg.retry_for.0.as_millis() as Millis
        };
        let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        let next_at = now + self.cfg.retry_delay(attempts, fastrand::f64()).as_millis() as Millis;
        if next_at > give_up_at {
            c.dead.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(delivery = d.id, url = %d.target, attempts = d.attempts, error = %error,
                "a webhook could not be delivered in time and is kept as a dead letter");
            DeliveryResult::Dead {
                id: d.id,
                attempt: d.attempts,
                code,
                error,
                at: now,
            }
        } else {
            tracing::debug!(delivery = d.id, url = %d.target, error = %error, "webhook attempt failed; will retry");
            DeliveryResult::Retry {
                id: d.id,
                attempt: d.attempts,
                code,
                error,
                next_at,
            }
        }
    }

    /// One POST: the HTTP status, or why there was none.
    async fn attempt(&self, d: &Delivery, data: Payload) -> Result<u16, String> {
        let Some(data) = data? else {
            // What it reports was deleted: nothing to say, so nothing to retry.
            return Ok(204);
        };
        let body = serde_json::to_vec(&json!({"event": d.event, "data": data}))
            .map_err(|e| format!("the event could not be encoded: {e}"))?;
        let mut req = hyper::Request::post(d.target.as_str())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("textgate/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-textgate-event", d.event.as_str())
            .header("x-textgate-delivery", d.id.to_string());
        if let Some(secret) = self.secret(d).await? {
            req = req.header("x-textgate-signature", signature(&secret, &body));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("\"{}\" is not a usable URL: {e}", d.target))?;
        let timeout = self.cfg.timeout.0;
        let answer = tokio::time::timeout(timeout, async {
            let resp = self.client.request(req).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                format!("the request failed: {msg}")
            })?;
            let status = resp.status().as_u16();
            // Read the answer to its end so the connection can carry the next POST.
            let _ = resp.into_body().collect().await;
            Ok::<u16, String>(status)
        })
        .await;
        match answer {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}", humantime_ms(timeout))),
        }
    }

    /// Each delivery's `data`: the inbound text, or the message as the API returns it with
    /// the status the event reports; `Ok(None)` when that row no longer exists.
    async fn payloads(&self, batch: &[Delivery]) -> Vec<Payload> {
        let inbound_ids: Vec<Id> = batch.iter().filter_map(|d| d.inbound_id).collect();
        let message_ids: Vec<Id> = batch.iter().filter_map(|d| d.message_id).collect();
        let store = &self.st.store;
        let (texts, messages) = tokio::join!(
            store.inbound_by_ids(inbound_ids),
            store.messages_by_ids(message_ids)
        );
        let texts: Result<HashMap<Id, Value>, String> = texts
            .map(|v| {
                v.iter()
                    .map(|t| (t.id, crate::api::inbound::inbound_json(t)))
                    .collect()
            })
            .map_err(|e| format!("the store failed: {e}"));
        let messages: Result<HashMap<Id, Value>, String> = messages
            .map(|v| {
                v.iter()
                    .map(|m| (m.id, crate::api::messages::message_json(m)))
                    .collect()
            })
            .map_err(|e| format!("the store failed: {e}"));
        batch
            .iter()
            .map(|d| {
                if let Some(id) = d.inbound_id {
                    return texts
                        .as_ref()
                        .map(|t| t.get(&id).cloned())
                        .map_err(Clone::clone);
                }
                if let Some(id) = d.message_id {
                    return messages
                        .as_ref()
                        .map(|m| {
                            m.get(&id).cloned().map(|mut v| {
                                if let Some(s) = &d.status {
                                    v["status"] = json!(s);
                                }
                                v
                            })
                        })
                        .map_err(Clone::clone);
                }
                Ok(None)
            })
            .collect()
    }

    /// The secret that signs `d`: its rule's, its API key's, or `[server] webhook_secret`.
    async fn secret(&self, d: &Delivery) -> Result<Option<String>, String> {
        if d.inbound_id.is_some() {
            if let Some(s) = self.st.dispatcher.inbound.rules().webhook_secret(&d.target) {
                return Ok(Some(s.to_string()));
            }
        }
        if let Some(key) = d.api_key_id {
            let cached = self
                .key_secrets
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let secret = match cached {
                Some(s) => s,
                None => {
                    let s = self
                        .st
                        .store
                        .api_key_secret(key)
                        .await
                        .map_err(|e| format!("the store failed: {e}"))?;
                    if let Ok(mut m) = self.key_secrets.lock() {
                        m.insert(key, s.clone());
                    }
                    s
                }
            };
            if secret.is_some() {
                return Ok(secret);
            }
        }
        Ok(self.st.config.server.webhook_secret.clone())
    }
}

fn humantime_ms(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
