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
use textgate_store::{Delivery, DeliveryResult, Id, Store};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use textgate_drivers::BoxFuture;

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

/// What one attempt came to: `Ok` with the receiver's code, or why it failed.
pub type Attempt = Result<Option<i64>, Failure>;

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The receiver's code, if it answered.
    pub code: Option<i64>,
    /// Why, for the dead letters and administrators.
    pub error: String,
    /// No retry can mend it (a URL the policy refuses, an address that is not one, a mail
    /// that cannot be built): the delivery becomes a dead letter at once.
    pub permanent: bool,
}

impl Failure {
    /// A failure worth trying again.
    pub fn retry(code: Option<i64>, error: impl Into<String>) -> Failure {
        Failure {
            code,
            error: error.into(),
            permanent: false,
        }
    }

    /// A failure that would come again the same way.
    pub fn permanent(code: Option<i64>, error: impl Into<String>) -> Failure {
        Failure {
            code,
            error: error.into(),
            permanent: true,
        }
    }
}

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

/// Runs the loop for one channel until `stop` is cancelled; `wake` says new deliveries may be
/// due. Then no more is claimed, and the attempts in flight get until `stop`'s caller's
/// deadline (the caller stops waiting for this function then); one that does not finish keeps
/// its lease and is made again after it runs out (delivery is at least once).
pub async fn run<C: Channel>(
    store: Store,
    channel: Arc<C>,
    policy: WebhooksConfig,
    counters: Arc<DeliveryCounters>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record(store.clone(), done_rx));
    let concurrency = policy.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let owners = Arc::new(Owners::new(policy.per_owner_concurrency.max(1)));
    let policy = Arc::new(policy);
    let stopped = stop.cancelled();
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
                    // A user who has as many attempts in flight as allowed waits: their
                    // deliveries go back to the queue for a moment, uncounted.
                    let (batch, waiting): (Vec<Delivery>, Vec<Delivery>) =
                        batch.into_iter().partition(|d| owners.enter(d.owner_id));
                    for d in waiting {
                        let _ = done_tx.send(DeliveryResult::Deferred {
                            id: d.id,
                            attempt: d.attempts,
                            next_at: now + OWNER_WAIT.as_millis() as Millis,
                        });
                    }
                    let prepared = channel.prepare(&batch).await;
                    for (d, p) in batch.into_iter().zip(prepared) {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (channel, policy, counters, owners) = (
                            channel.clone(),
                            policy.clone(),
                            counters.clone(),
                            owners.clone(),
                        );
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let attempt = contained(channel.clone(), d.clone(), p).await;
                            drop(permit);
                            owners.leave(d.owner_id);
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
    // Attempts in flight hold their slots: wait for them, then for their outcomes.
    let _ = slots
        .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .await;
    drop(done_tx);
    let _ = recorder.await;
}

/// How long a delivery waits when its owner already has as many attempts in flight as allowed.
const OWNER_WAIT: Duration = Duration::from_secs(1);

/// Attempts in flight per owner (`None`, the inbound rules' own deliveries, is not limited).
struct Owners {
    max: usize,
    in_flight: std::sync::Mutex<std::collections::HashMap<Id, usize>>,
}

impl Owners {
    fn new(max: usize) -> Owners {
        Owners {
            max,
            in_flight: Default::default(),
        }
    }

    /// Counts an attempt for `owner` if they have room; `false` if they must wait.
    fn enter(&self, owner: Option<Id>) -> bool {
        let Some(o) = owner else { return true };
        let Ok(mut m) = self.in_flight.lock() else {
            return true;
        };
        let n = m.entry(o).or_default();
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, owner: Option<Id>) {
        let Some(o) = owner else { return };
        if let Ok(mut m) = self.in_flight.lock() {
            if let Some(n) = m.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&o);
                }
            }
        }
    }
}

/// One attempt in a task of its own: should it panic (a bug, or input nobody foresaw), the
/// delivery fails for good rather than being claimed and tried, and panicking, again and
/// again after every lease.
async fn contained<C: Channel>(channel: Arc<C>, d: Delivery, p: C::Prepared) -> Attempt {
    let id = d.id;
    match tokio::spawn(async move { channel.attempt(&d, p).await }).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(delivery = id, error = %e, "a delivery attempt failed on an internal error");
            Err(Failure::permanent(
                None,
                "the delivery failed on an internal error (a bug; the server log has it)",
            ))
        }
    }
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
    let Failure {
        code,
        error,
        permanent,
    } = match attempt {
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
    if permanent || next_at > give_up_at {
        c.dead.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel, delivery = d.id, message_id = d.message_id, inbound_id = d.inbound_id, target = %redact(&d.target), attempts = d.attempts, error = %error,
            "a delivery could not be made and is kept as a dead letter");
        DeliveryResult::Dead {
            id: d.id,
            attempt: d.attempts,
            code,
            error,
            at: now,
        }
    } else {
        tracing::debug!(channel, delivery = d.id, message_id = d.message_id, inbound_id = d.inbound_id, error = %error, "delivery attempt failed; will retry");
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
    fn a_permanent_failure_is_a_dead_letter_at_once() {
        let (policy, c) = (WebhooksConfig::default(), DeliveryCounters::default());
        let now = now_ms();
        let r = outcome(
            &delivery(1, now, 0),
            Err(Failure::permanent(None, "not an address")),
            &policy,
            &c,
            "email",
        );
        assert!(
            matches!(r, DeliveryResult::Dead { ref error, .. } if error == "not an address"),
            "{r:?}"
        );
    }

    #[test]
    fn each_owner_has_their_own_slots_and_the_rules_have_no_limit() {
        let o = Owners::new(2);
        assert!(o.enter(Some(7)) && o.enter(Some(7)));
        assert!(!o.enter(Some(7)), "a third attempt of the same owner waits");
        assert!(o.enter(Some(8)), "another owner does not wait for them");
        assert!(
            (0..100).all(|_| o.enter(None)),
            "inbound rules' deliveries are not counted"
        );
        o.leave(Some(7));
        assert!(o.enter(Some(7)));
    }

    #[tokio::test]
    async fn a_panicking_attempt_fails_for_good() {
        struct Boom;
        impl Channel for Boom {
            type Prepared = ();
            fn name(&self) -> &'static str {
                "email"
            }
            fn prepare<'a>(&'a self, b: &'a [Delivery]) -> BoxFuture<'a, Vec<()>> {
                Box::pin(async move { vec![(); b.len()] })
            }
            fn attempt<'a>(&'a self, _: &'a Delivery, _: ()) -> BoxFuture<'a, Attempt> {
                Box::pin(async { panic!("a display name with a line break") })
            }
        }
        let a = contained(Arc::new(Boom), delivery(1, now_ms(), 0), ()).await;
        assert!(
            matches!(
                a,
                Err(Failure {
                    permanent: true,
                    ..
                })
            ),
            "{a:?}"
        );
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
        let fail = || Err(Failure::retry(Some(500), "HTTP 500"));
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
