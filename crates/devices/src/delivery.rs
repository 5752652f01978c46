//! The delivery loop shared by every channel that reports to the outside world — webhooks
//! (the http crate) and e-mail (the mailer in the smtp crate).
//!
//! The store queues a delivery in the same transaction as the text or status change it
//! reports, so none is lost across a crash. This loop claims due deliveries of one channel
//! under a lease, runs at most `concurrency` attempts at once, and records each outcome in
//! batches: delivered; or retried with exponential backoff until the retry period has
//! passed; then kept as a dead letter that the API can list and replay. It runs apart from
//! the devices: a slow receiver never holds up a device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::WebhooksConfig;
use textgate_store::{Delivery, DeliveryResult, Store};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::BoxFuture;

/// Deliveries claimed in one query, at most.
const CLAIM_BATCH: usize = 512;
/// How often the queue is looked at when nothing wakes the loop (status changes are queued
/// by the store without a wake-up).
const POLL: Duration = Duration::from_millis(200);

/// Counters of one channel, for `/metrics`.
#[derive(Default)]
pub struct DeliveryCounters {
    /// Attempts that succeeded.
    pub delivered: AtomicU64,
    /// Attempts that failed (and were retried or given up).
    pub failed: AtomicU64,
    /// Deliveries given up: dead letters.
    pub dead: AtomicU64,
}

/// What one attempt came to: `Ok` with the receiver's code, or `Err` with the code (if the
/// receiver answered) and why it failed.
pub type Attempt = Result<Option<i64>, (Option<i64>, String)>;

/// One way of delivering: how to read what a batch reports, and how to make one attempt.
pub trait Channel: Send + Sync + 'static {
    /// What [`Channel::prepare`] reads for one delivery.
    type Prepared: Send + 'static;
    /// The channel's name in the store (`webhook`, `email`).
    fn name(&self) -> &'static str;
    /// Reads what each delivery of a claimed batch reports, one item per delivery, in order
    /// (one query for the batch rather than one per delivery).
    fn prepare<'a>(&'a self, batch: &'a [Delivery]) -> BoxFuture<'a, Vec<Self::Prepared>>;
    /// One attempt.
    fn attempt<'a>(&'a self, d: &'a Delivery, p: Self::Prepared) -> BoxFuture<'a, Attempt>;
}

/// Runs the loop for one channel until `stop` is notified; `wake` says new deliveries may be
/// due. Attempts in flight then keep their lease and are made again after it runs out
/// (delivery is at least once).
pub async fn run<C: Channel>(
    store: Store,
    channel: Arc<C>,
    policy: WebhooksConfig,
    counters: Arc<DeliveryCounters>,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record(store.clone(), done_rx));
    let concurrency = policy.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let policy = Arc::new(policy);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let free = slots.available_permits().min(CLAIM_BATCH);
        let mut claimed = 0;
        if free > 0 {
            let now = now_ms();
            // Long enough for every attempt of this batch to end, with room to spare.
            let lease = now + 2 * policy.timeout.0.as_millis() as Millis + 30_000;
            match store
                .claim_deliveries(channel.name(), now, lease, free)
                .await
            {
                Ok(batch) => {
                    claimed = batch.len();
                    let prepared = channel.prepare(&batch).await;
                    for (d, p) in batch.into_iter().zip(prepared) {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (channel, policy, counters) =
                            (channel.clone(), policy.clone(), counters.clone());
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let attempt = channel.attempt(&d, p).await;
                            drop(permit);
                            let _ =
                                done.send(outcome(&d, attempt, &policy, &counters, channel.name()));
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(channel = channel.name(), error = %e, "claiming deliveries failed; retrying");
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
            let half = u32::try_from(concurrency.div_ceil(2)).unwrap_or(1);
            tokio::select! {
                _ = &mut stopped => break,
                p = slots.acquire_many(half) => drop(p),
            }
            continue;
        }
        tokio::select! {
            _ = &mut stopped => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), recorder).await;
}

/// What to record for an attempt: delivered, retried after the backoff, or dead when the
/// next try would fall after the retry period.
fn outcome(
    d: &Delivery,
    attempt: Attempt,
    policy: &WebhooksConfig,
    c: &DeliveryCounters,
    channel: &str,
) -> DeliveryResult {
    let (code, error) = match attempt {
        Ok(code) => {
            c.delivered.fetch_add(1, Ordering::Relaxed);
            return DeliveryResult::Delivered {
                id: d.id,
                attempt: d.attempts,
                code,
                at: now_ms(),
            };
        }
        Err(e) => e,
    };
    c.failed.fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let give_up_at = if d.give_up_at > 0 {
        d.give_up_at
    } else {
        d.created_at + policy.retry_for.0.as_millis() as Millis
    };
    let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    let next_at = now + policy.retry_delay(attempts, fastrand::f64()).as_millis() as Millis;
    if next_at > give_up_at {
        c.dead.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel, delivery = d.id, target = %redact(&d.target), attempts = d.attempts, error = %error,
            "a delivery could not be made in time and is kept as a dead letter");
        DeliveryResult::Dead {
            id: d.id,
            attempt: d.attempts,
            code,
            error,
            at: now,
        }
    } else {
        tracing::debug!(channel, delivery = d.id, error = %error, "delivery attempt failed; will retry");
        DeliveryResult::Retry {
            id: d.id,
            attempt: d.attempts,
            code,
            error,
            next_at,
            at: now,
        }
    }
}

/// A delivery's target as logs show it: a URL without its query and credentials, which often
/// carry a receiver's token; e-mail addresses as they are.
fn redact(target: &str) -> String {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = match rest.split_once('@') {
        Some((_, host)) => host,
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// Writes outcomes in batches: one transaction for all that finished meanwhile.
async fn record(store: Store, mut rx: mpsc::UnboundedReceiver<DeliveryResult>) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 1024).await > 0 {
        let batch = std::mem::take(&mut buf);
        let mut delay = Duration::from_millis(50);
        loop {
            match store.finish_deliveries(batch.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    // Unrecorded, they would be made again after their lease: keep trying.
                    tracing::warn!(error = %e, "recording deliveries failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(attempts: i64, created_at: Millis, give_up_at: Millis) -> Delivery {
        Delivery {
            id: 1,
            channel: "webhook".into(),
            event: "message.inbound".into(),
            target: "http://x".into(),
            inbound_id: Some(1),
            message_id: None,
            status: None,
            owner_id: None,
            api_key_id: None,
            state: "pending".into(),
            attempts,
            next_at: 0,
            give_up_at,
            last_code: None,
            last_error: None,
            created_at,
            done_at: None,
        }
    }

    #[test]
    fn logged_targets_lose_their_tokens() {
        assert_eq!(
            redact("https://u:p@hooks.example.com/in?token=s3cret"),
            "https://hooks.example.com/in"
        );
        assert_eq!(
            redact("a@example.com,b@example.com"),
            "a@example.com,b@example.com"
        );
    }

    #[test]
    fn failures_retry_until_the_period_ends_then_die() {
        let policy = WebhooksConfig::default();
        let c = DeliveryCounters::default();
        let now = now_ms();
        let fail = || Err((Some(500), "HTTP 500".to_string()));
        assert!(matches!(
            outcome(&delivery(1, now, 0), fail(), &policy, &c, "webhook"),
            DeliveryResult::Retry {
                code: Some(500),
                ..
            }
        ));
        // Created a day and more ago: the default 24 h are over.
        let old = now - 25 * 3_600_000;
        assert!(matches!(
            outcome(&delivery(9, old, 0), fail(), &policy, &c, "webhook"),
            DeliveryResult::Dead { .. }
        ));
        // A replay moved the deadline.
        assert!(matches!(
            outcome(
                &delivery(9, old, now + 3_600_000),
                fail(),
                &policy,
                &c,
                "webhook"
            ),
            DeliveryResult::Retry { .. }
        ));
        assert!(matches!(
            outcome(&delivery(1, now, 0), Ok(Some(200)), &policy, &c, "webhook"),
            DeliveryResult::Delivered {
                code: Some(200),
                ..
            }
        ));
        assert_eq!(c.failed.load(Ordering::Relaxed), 3);
        assert_eq!(c.dead.load(Ordering::Relaxed), 1);
        assert_eq!(c.delivered.load(Ordering::Relaxed), 1);
    }
}
