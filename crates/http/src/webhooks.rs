//! Webhooks out (docs/api.md): `message.inbound` events for inbound rules with a webhook,
//! `message.status` events for messages sent with a `callback_url`.
//!
//! The `webhook` channel of the shared delivery loop ([`textgate_engine::delivery`]):
//! POSTs with keep-alive connections pooled per host, each body signed with HMAC-SHA256
//! (`X-Textgate-Signature: sha256=HEX`, and `X-Textgate-Signature-V2: t=…,v1=…` over the
//! timestamp, the delivery id and the body, so that a receiver can refuse a replayed POST);
//! a 2xx is delivered, anything else (or no answer within `[webhooks] timeout`) is retried
//! with backoff and in the end kept as a dead letter. Users' status callbacks go through a
//! client whose resolver keeps to the [`crate::callbacks`] policy; a receiver's answer is read
//! only up to [`MAX_ANSWER_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::Sha256;
use textgate_drivers::BoxFuture;
use textgate_engine::delivery::{Attempt, Channel, Failure};
use textgate_store::{Delivery, Id};

use crate::AppState;

/// A delivery's `data`, or why it could not be read.
type Payload = Result<Option<Value>, String>;

type HttpsClient<R = hyper_util::client::legacy::connect::dns::GaiResolver> = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<R>>,
    Full<Bytes>,
>;

/// The most of a receiver's answer that is read: only its status counts, and a receiver must
/// not be able to make the server hold a large body.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The second signature's header value: `t=TIMESTAMP,v1=HEX`, where HEX is the HMAC-SHA256
/// of `TIMESTAMP.DELIVERY.BODY` under `secret` (TIMESTAMP in Unix seconds, DELIVERY the
/// `X-Textgate-Delivery` id). A receiver that refuses old timestamps and ids it has seen
/// cannot be fed a captured POST again.
pub fn signature_v2(secret: &str, timestamp: i64, delivery: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.{delivery}.").into_bytes();
    signed.extend_from_slice(body);
    let v1 = signature(secret, &signed);
    format!("t={timestamp},v1={}", v1.trim_start_matches("sha256="))
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

struct Webhooks {
    st: AppState,
    timeout: Duration,
    /// For the inbound rules' webhooks, which an administrator configured.
    client: HttpsClient,
    /// For users' status callbacks: resolves only to addresses the policy allows.
    callbacks: HttpsClient<crate::callbacks::GuardedResolver>,
    guard: Arc<crate::callbacks::Guard>,
    /// Webhook secrets of API keys, by key id (`None`: the key has none).
    key_secrets: Mutex<HashMap<Id, Option<String>>>,
}

/// Runs the webhook channel until `stop` is cancelled (see [`textgate_engine::delivery::run`]).
pub async fn run(st: AppState, stop: tokio_util::sync::CancellationToken) {
    let cfg = st.config.webhooks.clone();
    let guard = Arc::new(crate::callbacks::Guard::from_config(&st.config.server));
    let client = client(
        hyper_util::client::legacy::connect::HttpConnector::new(),
        cfg.concurrency,
        cfg.timeout.0,
    );
    let callbacks = client_with(
        hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
            crate::callbacks::GuardedResolver::new(guard.clone()),
        ),
        cfg.per_owner_concurrency,
        cfg.timeout.0,
    );
    let channel = Arc::new(Webhooks {
        st: st.clone(),
        timeout: cfg.timeout.0,
        client,
        callbacks,
        guard,
        key_secrets: Mutex::new(HashMap::new()),
    });
    textgate_engine::delivery::run(
        st.store.clone(),
        channel,
        cfg,
        st.http.webhooks.clone(),
        st.dispatcher.deliveries.clone(),
        stop,
    )
    .await;
}

fn client(
    http: hyper_util::client::legacy::connect::HttpConnector,
    idle_per_host: usize,
    timeout: Duration,
) -> HttpsClient {
    client_with(http, idle_per_host, timeout)
}

/// A pooled HTTPS-or-HTTP client over `http` (whose resolver decides where it may connect).
fn client_with<R>(
    mut http: hyper_util::client::legacy::connect::HttpConnector<R>,
    idle_per_host: usize,
    timeout: Duration,
) -> HttpsClient<R>
where
    R: tower_service::Service<hyper_util::client::legacy::connect::dns::Name>
        + Clone
        + Send
        + Sync
        + 'static,
    R::Response: Iterator<Item = std::net::SocketAddr>,
    R::Future: Send,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The TLS layer wraps it, so it must let https URLs through.
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(idle_per_host)
        .build(https)
}

impl Channel for Webhooks {
    type Prepared = Payload;

    fn name(&self) -> &'static str {
        "webhook"
    }

    fn prepare<'a>(&'a self, batch: &'a [Delivery]) -> BoxFuture<'a, Vec<Payload>> {
        Box::pin(self.payloads(batch))
    }

    fn attempt<'a>(&'a self, d: &'a Delivery, p: Payload) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let code = self.post(d, p).await?;
            if (200..300).contains(&code) {
                Ok(Some(i64::from(code)))
            } else {
                Err(Failure::retry(
                    Some(i64::from(code)),
                    format!("the receiver answered HTTP {code}"),
                ))
            }
        })
    }
}

impl Webhooks {
    /// One POST: the HTTP status, or why there was none.
    async fn post(&self, d: &Delivery, data: Payload) -> Result<u16, Failure> {
        let Some(data) = data.map_err(|e| Failure::retry(None, e))? else {
            // What it reports was deleted: nothing to say, so nothing to retry.
            return Ok(204);
        };
        // A status callback's URL is a user's: kept to the policy here too, since a literal
        // address is connected to without resolving (and the policy may have changed since
        // the message was accepted).
        let user_url = d.message_id.is_some();
        if user_url {
            self.guard
                .check_url(&d.target)
                .map_err(|e| Failure::permanent(None, e))?;
        }
        let body = serde_json::to_vec(&json!({"event": d.event, "data": data})).map_err(|e| {
            Failure::permanent(None, format!("the event could not be encoded: {e}"))
        })?;
        let mut req = hyper::Request::post(d.target.as_str())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("textgate/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-textgate-event", d.event.as_str())
            .header("x-textgate-delivery", d.id.to_string());
        if let Some(secret) = self.secret(d).await.map_err(|e| Failure::retry(None, e))? {
            let now = textgate_core::clock::now_ms() / 1000;
            req = req
                .header("x-textgate-signature", signature(&secret, &body))
                .header("x-textgate-timestamp", now.to_string())
                .header(
                    "x-textgate-signature-v2",
                    signature_v2(&secret, now, d.id, &body),
                );
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| {
            Failure::permanent(None, format!("\"{}\" is not a usable URL: {e}", d.target))
        })?;
        let timeout = self.timeout;
        let answer = tokio::time::timeout(timeout, async {
            let sent = if user_url {
                self.callbacks.request(req).await
            } else {
                self.client.request(req).await
            };
            let resp = sent.map_err(|e| {
                let msg = crate::error::chain(&e);
                if msg.contains(crate::callbacks::REFUSED) {
                    Failure::permanent(None, format!("the request was not made: {msg}"))
                } else {
                    Failure::retry(None, format!("the request failed: {msg}"))
                }
            })?;
            let status = resp.status().as_u16();
            // Read the answer (up to a limit) so the connection can carry the next POST;
            // a longer one is dropped with its connection.
            let _ = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok::<u16, Failure>(status)
        })
        .await;
        match answer {
            Ok(r) => r,
            Err(_) => Err(Failure::retry(
                None,
                format!("no answer within {}", humantime_ms(timeout)),
            )),
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
    fn the_second_signature_covers_time_delivery_and_body() {
        // Python: hmac.new(b"s3cret", b'1700000000.42.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature_v2("s3cret", 1_700_000_000, 42, br#"{"a":1}"#),
            "t=1700000000,v1=8cdcf8a780cf67ec21373236130e65c74932711ed69970ce310a26d0d0d12776"
        );
        assert_ne!(
            signature_v2("s3cret", 1_700_000_000, 43, br#"{"a":1}"#),
            signature_v2("s3cret", 1_700_000_000, 42, br#"{"a":1}"#)
        );
    }

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
