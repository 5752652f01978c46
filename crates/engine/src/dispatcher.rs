//! The dispatcher: moves messages from the store's queue to devices and records what happened.
//!
//! Four tasks, connected by channels:
//! - the *claimer* claims due messages (with a lease) when woken by a new message or a
//!   timer, routes each to a device, and hands it to that device's worker;
//! - one *worker* per device sends up to the device's window at once, at most `max_rate`
//!   a second;
//! - the *recorder* writes outcomes and receipts in batches (one transaction each), holds
//!   receipts that arrive before their submit was recorded, and stores inbound texts;
//! - the *maintainer* promotes due scheduled messages and requeues expired leases.
//!
//! A global budget of in-flight messages bounds how much is claimed but not yet recorded, so
//! a slow device cannot make claimed messages outlive their lease in memory. While this node
//! holds a message it renews its lease (every third of `claim_lease`), so a lease runs out
//! only for the messages of a node that stopped: a busy node's backlog or a slow commit never
//! has another node send them a second time.
//!
//! Fairness between API texts and bulk jobs: the claim takes the lowest `priority` first
//! (API texts 0, job rows higher), and each device's worker has two lanes and always takes
//! from the urgent one first, so an API text claimed while thousands of job rows wait for
//! the same device goes out next, not after them. A message that has waited in a lane for
//! most of its lease is given back to the queue unsent rather than sent late, since the
//! lease may by then have run out and another worker may send it too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::{Config, Strategy};
use textgate_core::histogram::{self, Histogram};
use textgate_core::routing::Router;
use textgate_core::status::Status;
use textgate_store::{Message, Outcome, PartReceipt, Receipt, ReceiptMatch, Store};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::inbound::{InboundRouter, OPTED_OUT};
use textgate_drivers::{Device, DeviceEvent, DeviceState, OutboundSms, SendError};

/// Messages claimed but not yet recorded, at most.
const IN_FLIGHT: usize = 8192;
/// Messages claimed in one query, at most.
const CLAIM_BATCH: usize = 512;
/// How soon a message refused by throttling is tried again, at most.
const THROTTLE_RETRY: Duration = Duration::from_millis(500);
/// With fewer records than this, the recorder waits [`GATHER_WAIT`] for more.
const GATHER_BELOW: usize = 512;
/// How long the recorder waits for more records to share a commit.
const GATHER_WAIT: Duration = Duration::from_millis(if cfg!(test) { 0 } else { 5 });
/// How often the suppression list is reloaded from the store.
const SUPPRESSION_RELOAD: Duration = Duration::from_secs(30);
/// How often receipts for unknown part ids are looked up again (another node may have
/// recorded their parts meanwhile).
const EARLY_RECEIPT_RETRY: Duration = Duration::from_secs(1);
/// How long a receipt for an unknown part id is kept, waiting for its submit to be recorded.
const EARLY_RECEIPT_TTL: Duration = Duration::from_secs(600);

/// Counters shown in `/metrics` and `GET /api/v1/devices`.
pub struct DeviceStats {
    /// Messages the device took.
    pub sent: AtomicU64,
    /// Messages it refused for good.
    pub failed: AtomicU64,
    /// Transient errors.
    pub retried: AtomicU64,
    /// Receipts received.
    pub receipts: AtomicU64,
    /// Inbound texts received.
    pub received: AtomicU64,
    /// The last error it gave.
    pub last_error: Mutex<Option<String>>,
    /// Messages handed to it and not yet answered (waiting for it, or in flight): what a
    /// spreading route compares.
    pub load: std::sync::atomic::AtomicI64,
    /// How long it took to answer a submit, whatever the answer.
    pub submit: Histogram,
    /// How long after a part's submit its delivery receipt came.
    pub receipt_delay: Histogram,
}

impl Default for DeviceStats {
    fn default() -> Self {
        DeviceStats {
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            received: AtomicU64::new(0),
            last_error: Mutex::new(None),
            load: std::sync::atomic::AtomicI64::new(0),
            submit: Histogram::new(histogram::SUBMIT_BUCKETS),
            receipt_delay: Histogram::new(histogram::RECEIPT_BUCKETS),
        }
    }
}

/// Counters of the whole pipeline.
#[derive(Default)]
pub struct Counters {
    /// Messages that reached each final status (index: position in [`Status::ALL`]).
    pub finals: [AtomicU64; 9],
    /// Messages handed to a device.
    pub sent: AtomicU64,
    /// Retries scheduled.
    pub retries: AtomicU64,
    /// Receipts that matched no part.
    pub unmatched_receipts: AtomicU64,
    /// Inbound texts stored.
    pub inbound: AtomicU64,
    /// E-mails the SMTP listener accepted (each stored as texts).
    pub emails: AtomicU64,
    /// Texts stored from those e-mails.
    pub email_texts: AtomicU64,
    /// SMTP AUTH attempts refused.
    pub smtp_auth_failures: AtomicU64,
    /// Sign-ins refused unchecked: the name or the address was locked out.
    pub signin_lockouts: AtomicU64,
    /// E-mails the mailer sent, failed to send, gave up on.
    pub mail: Arc<crate::delivery::DeliveryCounters>,
}

impl Counters {
    /// Counts a message that reached `st`.
    pub fn final_status(&self, st: Status) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == st) {
            self.finals[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One device as the dispatcher and the API see it.
pub struct DeviceEntry {
    /// The driver.
    pub device: Arc<dyn Device>,
    /// Whether the config enables it.
    pub enabled: bool,
    /// Disabled by an administrator while the server runs (kept in the store, so that every
    /// node obeys it; see [`watch_device_controls`]): nothing is sent through it.
    pub paused: std::sync::atomic::AtomicBool,
    /// Its configured rate limit (0 = none).
    pub max_rate: u32,
    /// Its counters.
    pub stats: DeviceStats,
}

impl DeviceEntry {
    /// The state shown in the API.
    pub fn state(&self) -> DeviceState {
        if self.enabled && !self.is_paused() {
            self.device.state()
        } else {
            DeviceState::Disabled
        }
    }

    /// Whether an administrator disabled it.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// Retry and lease settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The claim lease.
    pub lease: Duration,
    /// Attempts before a message fails.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Policy {
    /// From `[server]`.
    pub fn from_config(cfg: &Config) -> Policy {
        Policy {
            lease: cfg.server.claim_lease.0,
            max_attempts: cfg.server.max_attempts,
            backoff: cfg.server.retry_backoff.0,
            backoff_max: cfg.server.retry_backoff_max.0,
        }
    }

    /// The delay before attempt `attempt + 1`: doubling from `backoff`, capped, with ±20 %
    /// jitter so that a burst of failures does not come back as a burst.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        textgate_core::config::backoff(self.backoff, self.backoff_max, attempt, fastrand::f64())
    }
}

/// Shared state of the dispatcher; the API reads devices and counters from it.
pub struct Dispatcher {
    store: Store,
    /// The devices, in config order.
    pub devices: Vec<DeviceEntry>,
    /// User names by id, for routes restricted to users.
    user_names: Mutex<HashMap<i64, String>>,
    router: Router,
    policy: Policy,
    wake: Notify,
    budget: Arc<Semaphore>,
    /// The messages this node holds, whose leases it renews.
    held: Arc<Held>,
    handoff: std::sync::OnceLock<Handoff>,
    /// Pipeline counters.
    pub counters: Counters,
    /// Inbound routing and the suppression list.
    pub inbound: InboundRouter,
    /// Woken when deliveries (webhooks, e-mail forwards) may have been queued; every
    /// channel's loop waits on it, so it is notified with `notify_waiters`.
    pub deliveries: Arc<Notify>,
    /// Whether a device wants to hear when its answers are recorded (remote devices).
    answers_recorded: bool,
    /// This node among others on the store: the queue's upkeep runs on one at a time.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Users' limits on the texts they send.
    pub quotas: crate::quota::Quotas,
}

/// The messages this node holds (claimed, outcome not yet recorded), by id: the attempt it
/// holds and how many holds (a message put back and claimed again by this node may briefly
/// have two).
#[derive(Default)]
struct Held(Mutex<HashMap<i64, (i64, u32)>>);

impl Held {
    /// Each held message's (id, attempt).
    fn snapshot(&self) -> Vec<(i64, i64)> {
        self.0
            .lock()
            .map(|h| h.iter().map(|(id, (attempt, _))| (*id, *attempt)).collect())
            .unwrap_or_default()
    }
}

/// A message this node holds: its place in the in-flight budget and in [`Held`], both given
/// up when this is dropped (once its outcome is recorded).
struct Hold {
    _permit: OwnedSemaphorePermit,
    id: i64,
    held: Arc<Held>,
}

impl Hold {
    fn new(msg: &Message, permit: OwnedSemaphorePermit, held: &Arc<Held>) -> Hold {
        if let Ok(mut h) = held.0.lock() {
            let e = h.entry(msg.id).or_insert((msg.attempts, 0));
            *e = (msg.attempts, e.1 + 1);
        }
        Hold {
            _permit: permit,
            id: msg.id,
            held: held.clone(),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut h) = self.held.0.lock() {
            if let Some(e) = h.get_mut(&self.id) {
                e.1 -= 1;
                if e.1 == 0 {
                    h.remove(&self.id);
                }
            }
        }
    }
}

/// A message this node claimed, on its way to a device's worker.
struct Claimed {
    msg: Message,
    permit: Hold,
    /// When it was claimed, to tell a message whose lease is nearly over.
    at: tokio::time::Instant,
}

/// A device's two lanes: API texts (priority 0 and below) and everything else.
struct Lanes {
    urgent: mpsc::UnboundedSender<Claimed>,
    bulk: mpsc::UnboundedSender<Claimed>,
}

/// Where claimed messages go: each device's lanes, and the recorder.
struct Handoff {
    queues: Vec<Lanes>,
    rec: mpsc::UnboundedSender<Record>,
}

/// Room reserved in the dispatcher for messages about to be stored already claimed.
pub struct Reservation(OwnedSemaphorePermit);

enum Record {
    Outcome(Outcome, Option<Hold>),
    Event(DeviceEvent),
}

impl From<DeviceEvent> for Record {
    fn from(e: DeviceEvent) -> Record {
        Record::Event(e)
    }
}

/// Handles to the dispatcher's tasks, for shutdown.
pub struct Running {
    /// Claimer, maintainer and device workers: they stop first.
    senders: JoinSet<()>,
    /// Records outcomes; it ends when everything that feeds it has.
    recorder: JoinSet<()>,
    /// Tells the recorder to finish what is queued and end.
    drain: Arc<Notify>,
    dispatcher: Arc<Dispatcher>,
}

impl Running {
    /// Once the dispatcher's stop token is cancelled: lets in-flight sends finish and their
    /// outcomes be recorded (until `deadline`), closes the devices, then returns. Anything
    /// still unrecorded keeps its lease and is retried after a restart.
    pub async fn finish(mut self, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, async {
            while self.senders.join_next().await.is_some() {}
        })
        .await;
        self.senders.abort_all();
        for d in &self.dispatcher.devices {
            let _ = tokio::time::timeout_at(deadline, d.device.shutdown()).await;
        }
        // Nothing new can reach the recorder now: let it write what is queued and end.
        self.drain.notify_one();
        let _ = tokio::time::timeout_at(deadline, async {
            while self.recorder.join_next().await.is_some() {}
        })
        .await;
        self.recorder.abort_all();
    }
}

/// How long a message whose devices are all disabled waits before it is looked at again.
const PAUSED_RETRY_MS: Millis = 2_000;

/// How often a node reads which devices administrators disabled: the longest a node may still
/// send through a device disabled on another node.
pub const DEVICE_CONTROL_POLL: Duration = Duration::from_secs(2);

/// Keeps the devices' `paused` flags as the store says (devices disabled by administrators,
/// on any node), until `stop` is cancelled.
pub async fn watch_device_controls(dispatcher: Arc<Dispatcher>, stop: CancellationToken) {
    loop {
        match dispatcher.store.disabled_devices().await {
            Ok(list) => dispatcher.set_paused(list.iter().map(|(n, _, _)| n.as_str())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which devices are disabled; trying again")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(DEVICE_CONTROL_POLL) => {}
        }
    }
}

impl Dispatcher {
    /// Marks the devices named in `disabled` as disabled by an administrator, and the others
    /// as not; a device enabled again wakes the claimer.
    pub fn set_paused<'a>(&self, disabled: impl IntoIterator<Item = &'a str>) {
        let off: std::collections::HashSet<&str> = disabled.into_iter().collect();
        let mut resumed = false;
        for d in &self.devices {
            let now_off = off.contains(d.device.name());
            if d.paused.swap(now_off, Ordering::Relaxed) && !now_off {
                resumed = true;
            }
        }
        if resumed {
            self.wake();
        }
    }

    /// A dispatcher over these devices (in config order).
    pub fn new(store: Store, cfg: &Config, devices: Vec<Arc<dyn Device>>) -> Arc<Dispatcher> {
        let entries: Vec<DeviceEntry> = devices
            .into_iter()
            .zip(&cfg.devices)
            .map(|(device, dc)| DeviceEntry {
                device,
                enabled: dc.enabled,
                paused: Default::default(),
                max_rate: dc.max_rate,
                stats: DeviceStats::default(),
            })
            .collect();
        let answers_recorded = entries.iter().any(|d| d.device.kind() == "remote");
        Arc::new(Dispatcher {
            answers_recorded,
            cluster: std::sync::OnceLock::new(),
            store,
            devices: entries,
            user_names: Mutex::new(HashMap::new()),
            router: Router::new(cfg),
            policy: Policy::from_config(cfg),
            wake: Notify::new(),
            budget: Arc::new(Semaphore::new(IN_FLIGHT)),
            held: Arc::new(Held::default()),
            handoff: std::sync::OnceLock::new(),
            counters: Counters::default(),
            inbound: InboundRouter::new(cfg),
            deliveries: Arc::new(Notify::new()),
            quotas: crate::quota::Quotas::new(cfg.quotas.clone()),
        })
    }

    /// Runs the queue's upkeep (scheduled messages due, leases run out, validity past) only
    /// while this node holds its lease, so that one node at a time does it.
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The store the dispatcher works on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Tells the claimer that new messages are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the devices and the dispatcher's tasks, which stop claiming when `stop` is
    /// cancelled (then [`Running::finish`] waits for what is in flight).
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> Running {
        let mut senders = JoinSet::new();
        let mut recorder = JoinSet::new();
        let (rec_tx, rec_rx) = mpsc::unbounded_channel::<Record>();
        let (ev_tx, ev_rx) = mpsc::channel::<DeviceEvent>(textgate_drivers::EVENTS_CAPACITY);
        let mut queues = Vec::new();
        for (i, entry) in self.devices.iter().enumerate() {
            // A disabled device is listed but never connects.
            if entry.enabled {
                entry.device.start(ev_tx.clone());
            }
            // Unbounded, because the in-flight budget already bounds what all queues hold.
            let (urgent, urgent_rx) = mpsc::unbounded_channel::<Claimed>();
            let (bulk, bulk_rx) = mpsc::unbounded_channel::<Claimed>();
            queues.push(Lanes { urgent, bulk });
            senders.spawn(
                self.clone()
                    .worker(i, urgent_rx, bulk_rx, rec_tx.clone(), stop.clone()),
            );
        }
        drop(ev_tx);
        let _ = self.handoff.set(Handoff {
            queues,
            rec: rec_tx,
        });
        let drain = Arc::new(Notify::new());
        recorder.spawn(self.clone().recorder(rec_rx, ev_rx, drain.clone()));
        senders.spawn(self.clone().recover());
        senders.spawn(self.clone().claimer(stop.clone()));
        senders.spawn(self.clone().maintainer(stop.clone()));
        senders.spawn(self.clone().renewer(stop.clone()));
        Running {
            senders,
            recorder,
            drain,
            dispatcher: self.clone(),
        }
    }

    async fn user_name(&self, id: i64) -> String {
        if let Some(n) = self
            .user_names
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        {
            return n;
        }
        let name = match self.store.user_by_id(id).await {
            Ok(Some(u)) => u.name,
            _ => String::new(),
        };
        if let Ok(mut m) = self.user_names.lock() {
            m.insert(id, name.clone());
        }
        name
    }

    /// Reserves room for `n` messages that the caller will store already claimed (status
    /// `sending`, under a lease) and then pass to [`Dispatcher::hand_over`]. This skips the
    /// queue round trip for messages that can go at once; `None` when the dispatcher is full
    /// or not started, and the caller stores them queued instead.
    pub fn reserve(&self, n: usize) -> Option<Reservation> {
        if n == 0 || self.handoff.get().is_none() {
            return None;
        }
        let n32 = u32::try_from(n).ok()?;
        self.budget
            .clone()
            .try_acquire_many_owned(n32)
            .ok()
            .map(Reservation)
    }

    /// The claim lease a caller of [`Dispatcher::reserve`] must store its messages with.
    pub fn lease_until(&self, now: Millis) -> Millis {
        now + self.policy.lease.as_millis() as Millis
    }

    /// Dispatches messages stored already claimed (see [`Dispatcher::reserve`]).
    pub async fn hand_over(&self, msgs: Vec<Message>, mut reservation: Reservation) {
        for msg in msgs {
            let Some(permit) = reservation.0.split(1) else {
                return;
            };
            self.dispatch(msg, permit).await;
        }
    }

    async fn claimer(self: Arc<Self>, stop: CancellationToken) {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            let free = self.budget.available_permits().min(CLAIM_BATCH);
            let mut claimed = 0;
            if free > 0 {
                let now = now_ms();
                let lease_until = now + self.policy.lease.as_millis() as Millis;
                match self.store.claim(now, lease_until, free).await {
                    Ok(msgs) => {
                        claimed = msgs.len();
                        for msg in msgs {
                            let Ok(permit) = self.budget.clone().acquire_owned().await else {
                                return;
                            };
                            self.dispatch(msg, permit).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming messages failed; retrying in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if claimed == free && free > 0 {
                // A full batch: there is probably more right now.
                continue;
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(if free == 0 { 20 } else { 500 })) => {}
            }
        }
    }

    async fn dispatch(&self, msg: Message, permit: OwnedSemaphorePermit) {
        let Some(Handoff { queues, rec }) = self.handoff.get() else {
            return;
        };
        let permit = Hold::new(&msg, permit, &self.held);
        let now = now_ms();
        let finish = |status: Status, code: Option<&str>, error: String, permit| {
            let _ = rec.send(Record::Outcome(
                Outcome::Final {
                    id: msg.id,
                    attempt: msg.attempts,
                    status,
                    device: None,
                    code: code.map(str::to_string),
                    error,
                    at: now,
                },
                Some(permit),
            ));
        };
        if msg.expires_at <= now {
            finish(
                Status::Expired,
                None,
                "its validity ran out before a device could take it".into(),
                permit,
            );
            return;
        }
        if self.inbound.is_suppressed(&msg.to)
            && msg.origin.as_deref() != Some(textgate_store::origin::OPT_CONFIRMATION)
        {
            finish(
                Status::Failed,
                Some(OPTED_OUT),
                format!(
                    "{} opted out (texted STOP) and gets no texts until it texts START, or an admin removes it from the suppression list",
                    msg.to
                ),
                permit,
            );
            return;
        }
        // A device that holds the message (a port server took it) gets it again, and
        // nothing else does.
        let holder = if self.answers_recorded {
            self.devices.iter().position(|d| d.device.holds(msg.id))
        } else {
            None
        };
        if let Some(i) = holder {
            if self.devices[i].is_paused() || self.devices[i].device.parked() {
                let why = format!(
                    "device {} holds it and is away; it waits for its report",
                    self.devices[i].device.name()
                );
                self.wait(&msg, permit, why, now);
                return;
            }
            self.to_lane(i, msg, permit, queues);
            return;
        }
        let user = if self.router.uses_users() {
            self.user_name(msg.owner_id).await
        } else {
            String::new()
        };
        let route = self.router.routed(&msg.to, &user);
        let routed: Vec<usize> = route
            .devices
            .iter()
            .copied()
            // Receive-only devices (an SMPP receiver bind) never get messages to send.
            .filter(|&i| {
                self.devices
                    .get(i)
                    .is_some_and(|d| d.enabled && d.device.can_send())
            })
            .collect();
        let candidates: Vec<usize> = routed
            .iter()
            .copied()
            .filter(|&i| !self.devices[i].is_paused() && !self.devices[i].device.parked())
            .collect();
        if candidates.is_empty() && !routed.is_empty() {
            // Its devices are disabled for now, or their port server is away: it waits, and
            // no attempt is counted.
            self.wait(
                &msg,
                permit,
                "every device of its route is disabled by an administrator or on a port server that is offline or draining; it waits".into(),
                now,
            );
            return;
        }
        if candidates.is_empty() {
            let why = if route.devices.is_empty() {
                format!(
                    "no route to {}: add a [[route]] whose prefix matches it",
                    msg.to
                )
            } else {
                format!(
                    "no device of the route to {} can send (each is disabled in the configuration or only receives): add one that sends",
                    msg.to
                )
            };
            finish(Status::Failed, None, why, permit);
            return;
        }
        // Failover: prefer devices that are up; each retry moves one further down the list.
        let up: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.devices[i].device.state() == DeviceState::Up)
            .collect();
        let pool = if up.is_empty() { &candidates } else { &up };
        let device = match route.strategy {
            // The least loaded; a retry skips the device of the attempt before.
            Strategy::Spread => {
                let skip = (msg.attempts > 1 && pool.len() > 1)
                    .then_some(msg.device.as_deref())
                    .flatten();
                *pool
                    .iter()
                    .filter(|&&i| skip != Some(self.devices[i].device.name()))
                    .min_by_key(|&&i| self.devices[i].stats.load.load(Ordering::Relaxed))
                    .unwrap_or(&pool[0])
            }
            Strategy::Failover => pool[(msg.attempts.max(1) as usize - 1) % pool.len()],
        };
        self.to_lane(device, msg, permit, queues);
    }

    /// Puts a message back to wait for its devices ([`PAUSED_RETRY_MS`]), no attempt counted.
    fn wait(&self, msg: &Message, permit: Hold, why: String, now: Millis) {
        let Some(Handoff { rec, .. }) = self.handoff.get() else {
            return;
        };
        let _ = rec.send(Record::Outcome(
            Outcome::Retry {
                id: msg.id,
                attempt: msg.attempts,
                device: None,
                due_at: now + PAUSED_RETRY_MS,
                code: None,
                error: why,
                refund: true,
                at: now,
            },
            Some(permit),
        ));
    }

    /// The spacing of a device's messages under its `max_rate`: shared by the nodes that may
    /// be sending on the store ([`crate::cluster::Cluster::rate_shares`]), so that together
    /// they keep to it.
    fn pace(&self, entry: &DeviceEntry) -> Option<Duration> {
        (entry.max_rate > 0).then(|| {
            let nodes = self.cluster.get().map_or(1, |c| c.rate_shares());
            Duration::from_secs_f64(nodes as f64 / f64::from(entry.max_rate))
        })
    }

    /// Hands a claimed message to a device's worker, API texts in the urgent lane.
    fn to_lane(&self, device: usize, msg: Message, permit: Hold, queues: &[Lanes]) {
        self.devices[device]
            .stats
            .load
            .fetch_add(1, Ordering::Relaxed);
        let lanes = &queues[device];
        let lane = if msg.priority <= 0 {
            &lanes.urgent
        } else {
            &lanes.bulk
        };
        let claimed = Claimed {
            msg,
            permit,
            at: tokio::time::Instant::now(),
        };
        if let Err(mpsc::error::SendError(claimed)) = lane.send(claimed) {
            tracing::error!(device = %self.devices[device].device.name(), "device worker is gone");
            self.devices[device]
                .stats
                .load
                .fetch_sub(1, Ordering::Relaxed);
            drop(claimed);
        }
    }

    async fn worker(
        self: Arc<Self>,
        index: usize,
        mut urgent: mpsc::UnboundedReceiver<Claimed>,
        mut bulk: mpsc::UnboundedReceiver<Claimed>,
        rec: mpsc::UnboundedSender<Record>,
        stop: CancellationToken,
    ) {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        let mut closing = false;
        let entry = &self.devices[index];
        let window = Arc::new(Semaphore::new(entry.device.window().max(1)));
        let mut next_slot = tokio::time::Instant::now();
        let mut sends = JoinSet::new();
        // Past this share of the lease a waiting message goes back to the queue unsent.
        let stale_after = self.policy.lease.mul_f64(0.75);
        let mut urgent_open = true;
        let mut bulk_open = true;
        loop {
            let next = tokio::select! {
                // API texts before job rows, whatever arrived first.
                biased;
                // On shutdown take no more, but send what is already queued.
                _ = &mut stopped, if !closing => { closing = true; urgent.close(); bulk.close(); continue }
                m = urgent.recv(), if urgent_open => match m { Some(j) => j, None => { urgent_open = false; continue } },
                m = bulk.recv(), if bulk_open => match m { Some(j) => j, None => { bulk_open = false; continue } },
                Some(_) = sends.join_next(), if !sends.is_empty() => continue,
                else => break,
            };
            if next.at.elapsed() > stale_after {
                entry.stats.load.fetch_sub(1, Ordering::Relaxed);
                let now = now_ms();
                let _ = rec.send(Record::Outcome(
                    Outcome::Retry {
                        id: next.msg.id,
                        attempt: next.msg.attempts,
                        device: None,
                        due_at: now,
                        code: None,
                        error: "waited too long for its device; back in the queue".into(),
                        refund: true,
                        at: now,
                    },
                    Some(next.permit),
                ));
                continue;
            }
            if let Some(iv) = self.pace(entry) {
                // Token pacing: one message per interval, never bursting beyond it.
                let now = tokio::time::Instant::now();
                if next_slot > now {
                    tokio::time::sleep_until(next_slot).await;
                }
                next_slot = next_slot.max(now) + iv;
            }
            let Ok(slot) = window.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            let rec = rec.clone();
            sends.spawn(async move {
                let outcome = this.send_one(index, &next.msg).await;
                this.devices[index]
                    .stats
                    .load
                    .fetch_sub(1, Ordering::Relaxed);
                drop(slot);
                let _ = rec.send(Record::Outcome(outcome, Some(next.permit)));
            });
        }
        while sends.join_next().await.is_some() {}
    }

    async fn send_one(&self, index: usize, msg: &Message) -> Outcome {
        let entry = &self.devices[index];
        let name = entry.device.name().to_string();
        let sms = OutboundSms {
            message_id: msg.id,
            attempt: msg.attempts,
            to: msg.to.clone(),
            from: msg.from.clone(),
            body: msg.body.clone(),
            segments: msg.segments.clamp(1, 255) as u16,
        };
        let started = std::time::Instant::now();
        let result = entry.device.send(sms).await;
        entry.stats.submit.observe(started.elapsed());
        let now = now_ms();
        match result {
            Ok(sub) => {
                entry.stats.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(message_id = msg.id, device = %name, attempt = msg.attempts, parts = sub.part_ids.len(), "the device took the message");
                Outcome::Sent {
                    id: msg.id,
                    attempt: msg.attempts,
                    device: name,
                    part_ids: sub.part_ids,
                    receipts: Vec::new(),
                    at: now,
                }
            }
            Err(SendError::Transient { code, reason }) => {
                entry.stats.retried.fetch_add(1, Ordering::Relaxed);
                self.note_error(entry, &reason);
                let attempt = u32::try_from(msg.attempts).unwrap_or(u32::MAX);
                if attempt >= self.policy.max_attempts {
                    self.log_failure(
                        msg,
                        &name,
                        code.as_deref(),
                        &reason,
                        "the device failed the message on every attempt; it failed",
                    )
                    .await;
                    return Outcome::Final {
                        id: msg.id,
                        attempt: msg.attempts,
                        status: Status::Failed,
                        device: Some(name),
                        code,
                        error: format!(
                            "gave up after {attempt} attempts; the last error was: {reason}"
                        ),
                        at: now,
                    };
                }
                tracing::debug!(message_id = msg.id, device = %name, attempt = msg.attempts, code, error = %reason, "a transient error from the device; the message is retried");
                let due_at = now + self.policy.retry_delay(attempt).as_millis() as Millis;
                retry_or_expire(msg, name, code, reason, due_at, false, now)
            }
            Err(SendError::Throttled { code, reason }) => {
                entry.stats.retried.fetch_add(1, Ordering::Relaxed);
                let due_at = now + self.policy.backoff.min(THROTTLE_RETRY).as_millis() as Millis;
                retry_or_expire(msg, name, code, reason, due_at, true, now)
            }
            Err(SendError::Permanent { code, reason }) => {
                entry.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.note_error(entry, &reason);
                self.log_failure(
                    msg,
                    &name,
                    code.as_deref(),
                    &reason,
                    "the device refused the message; it failed",
                )
                .await;
                Outcome::Final {
                    id: msg.id,
                    attempt: msg.attempts,
                    status: Status::Failed,
                    device: Some(name),
                    code,
                    error: reason,
                    at: now,
                }
            }
        }
    }

    /// The device of this name.
    fn entry(&self, name: &str) -> Option<&DeviceEntry> {
        self.devices.iter().find(|d| d.device.name() == name)
    }

    /// A message a device failed for good, with the fields log processors index: the
    /// message, the device and the message's owner.
    async fn log_failure(
        &self,
        msg: &Message,
        device: &str,
        code: Option<&str>,
        error: &str,
        what: &str,
    ) {
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        // Names are cached; a failure is rare enough to pay for the first lookup.
        let user = self.user_name(msg.owner_id).await;
        tracing::info!(message_id = msg.id, device, user = %user, attempt = msg.attempts, code, error, "{what}");
    }

    fn note_error(&self, entry: &DeviceEntry, reason: &str) {
        if let Ok(mut e) = entry.stats.last_error.lock() {
            *e = Some(reason.to_string());
        }
    }

    async fn recorder(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Record>,
        mut events: mpsc::Receiver<DeviceEvent>,
        drain: Arc<Notify>,
    ) {
        let drain_signal = drain.notified();
        tokio::pin!(drain_signal);
        let mut draining = false;
        // Receipts whose part is not (yet) known, by (device, id), with when they arrived.
        let mut early: HashMap<(String, String), (Receipt, tokio::time::Instant)> = HashMap::new();
        // The acknowledgements of receipts in `early`, sent when they leave it.
        let mut held_acks: HashMap<(String, String), Vec<textgate_drivers::Ack>> = HashMap::new();
        let mut buf = Vec::with_capacity(4096);
        let mut evbuf = Vec::with_capacity(4096);
        let mut events_open = true;
        loop {
            // Outcomes first, then receipts: a receipt that races its own submit is then
            // usually recorded after it in the same round.
            if draining && rx.is_empty() && events.is_empty() {
                return;
            }
            tokio::select! {
                biased;
                n = rx.recv_many(&mut buf, 4096) => if n == 0 { return },
                n = events.recv_many(&mut evbuf, 4096), if events_open => if n == 0 { events_open = false },
                _ = &mut drain_signal, if !draining => { draining = true; continue }
                // Receipts held for a part not yet known are looked up again now and then:
                // with several nodes, the part may be recorded by another node.
                _ = tokio::time::sleep(EARLY_RECEIPT_RETRY), if !early.is_empty() => {
                    let first: HashMap<(String, String), tokio::time::Instant> =
                        early.iter().map(|(k, (_, t))| (k.clone(), *t)).collect();
                    let again: Vec<Receipt> = early.drain().map(|(_, (r, _))| r).collect();
                    self.apply(again, &mut early).await;
                    // What is still unknown keeps its first arrival, for the TTL below.
                    for (k, v) in early.iter_mut() {
                        if let Some(t) = first.get(k) {
                            v.1 = *t;
                        }
                    }
                    release_held(&mut held_acks, &early);
                    continue;
                }
            }
            // A device waiting to acknowledge (an inbound text, a receipt) holds its peer's
            // window until the commit: never make it wait longer.
            let peer_waiting = evbuf.iter().any(|e| {
                matches!(
                    e,
                    DeviceEvent::Inbound { .. }
                        | DeviceEvent::Receipt { ack: Some(_), .. }
                        | DeviceEvent::Outcome { ack: Some(_), .. }
                )
            });
            if buf.len() + evbuf.len() < GATHER_BELOW && !draining && !peer_waiting {
                // Each write is a commit that rewrites every page it touches: a moment's wait
                // lets a busy round share one.
                tokio::time::sleep(GATHER_WAIT).await;
            }
            while buf.len() < 4096 {
                match rx.try_recv() {
                    Ok(r) => buf.push(r),
                    Err(_) => break,
                }
            }
            while let Ok(e) = events.try_recv() {
                evbuf.push(e);
                if evbuf.len() >= 4096 {
                    break;
                }
            }
            buf.extend(evbuf.drain(..).map(Record::from));
            let mut outcomes = Vec::new();
            let mut inbound = Vec::new();
            let mut receipt_acks = Vec::new();
            let mut permits = Vec::new();
            let mut receipts = Vec::new();
            let mut late_acks = Vec::new();
            for r in buf.drain(..) {
                match r {
                    Record::Outcome(o, p) => {
                        outcomes.push(o);
                        permits.extend(p);
                    }
                    Record::Event(DeviceEvent::Receipt {
                        device,
                        device_msg_id,
                        delivered,
                        code,
                        at,
                        ack,
                    }) => {
                        if let Some(d) = self.devices.iter().find(|d| d.device.name() == device) {
                            d.stats.receipts.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(ack) = ack {
                            receipt_acks.push(((device.clone(), device_msg_id.clone()), ack));
                        }
                        receipts.push(Receipt {
                            device,
                            device_msg_id,
                            delivered,
                            code,
                            at,
                        });
                    }
                    Record::Event(DeviceEvent::Inbound { text, ack }) => {
                        inbound.push((stored_form(text), ack))
                    }
                    // Its holder reports it late: recorded whatever attempt the message is
                    // at now, if it is still open (see textgate_store::LATE).
                    Record::Event(DeviceEvent::Outcome {
                        device,
                        message_id,
                        attempt: _,
                        result,
                        at,
                        ack,
                    }) => {
                        let o = match result {
                            Ok(sub) => Some(Outcome::Sent {
                                id: message_id,
                                attempt: textgate_store::LATE,
                                device,
                                part_ids: sub.part_ids,
                                receipts: Vec::new(),
                                at,
                            }),
                            Err(SendError::Permanent { code, reason }) => Some(Outcome::Final {
                                id: message_id,
                                attempt: textgate_store::LATE,
                                status: Status::Failed,
                                device: Some(device),
                                code,
                                error: reason,
                                at,
                            }),
                            Err(_) => None,
                        };
                        outcomes.extend(o);
                        late_acks.extend(ack);
                    }
                }
            }
            if !inbound.is_empty() {
                self.store_inbound(inbound).await;
            }
            if !outcomes.is_empty() {
                attach_receipts(&mut outcomes, &mut receipts, &mut early);
                self.record(outcomes, &mut early, &mut receipts).await;
            }
            // Recorded (or found stale and left alone): the device may forget them.
            for ack in late_acks {
                ack.send(true);
            }
            drop(permits);
            let recorded = if receipts.is_empty() {
                true
            } else {
                self.apply(receipts, &mut early).await
            };
            // Receipts are acknowledged to their device once written; one held for a part not
            // yet known is acknowledged only when it is written or given up, so that a crash
            // meanwhile leaves it with its peer, which delivers it again (with several nodes
            // a receipt often reaches another node than the one recording its part). When the
            // store failed, the peer is asked to send them again.
            for (key, ack) in receipt_acks {
                if recorded && early.contains_key(&key) {
                    held_acks.entry(key).or_default().push(ack);
                } else {
                    ack.send(recorded);
                }
            }
            let now = tokio::time::Instant::now();
            early.retain(|_, (r, t)| {
                let keep = now.duration_since(*t) < EARLY_RECEIPT_TTL;
                if !keep {
                    self.counters.unmatched_receipts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %r.device, device_msg_id = %r.device_msg_id, "a delivery receipt matched no message part");
                }
                keep
            });
            release_held(&mut held_acks, &early);
        }
    }

    /// Stores a round's inbound texts in one commit, then lets each device acknowledge its
    /// own; on failure none is acknowledged, so the SMSC delivers them again.
    async fn store_inbound(
        &self,
        texts: Vec<(textgate_store::NewInbound, Option<textgate_drivers::Ack>)>,
    ) {
        let (mut rows, acks): (Vec<_>, Vec<_>) = texts.into_iter().unzip();
        for t in &mut rows {
            self.inbound.route(t);
        }
        let devices: Vec<String> = rows.iter().map(|t| t.device.clone()).collect();
        // What to note once stored: opt-outs for the suppression list, and whether any
        // automatic reply was queued.
        let opts: Vec<_> = rows
            .iter()
            .filter(|t| t.routing.opt.is_some())
            .map(|t| (t.from.clone(), t.routing.opt))
            .collect();
        let replies = rows
            .iter()
            .any(|t| t.routing.opt_reply.is_some() || !t.routing.replies.is_empty());
        // Waking the delivery loops costs each of them a write transaction: only when this
        // round may have queued something for them.
        let deliveries = rows.iter().any(|t| t.routing.may_deliver());
        let ok = match self.store.insert_inbound_many(rows).await {
            Ok(_) => {
                for (from, opt) in opts {
                    self.inbound
                        .set_suppressed(&from, opt == Some(textgate_core::inbound::OptChange::Out));
                }
                if replies {
                    self.wake();
                }
                if deliveries {
                    self.deliveries.notify_waiters();
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "storing inbound texts failed; the devices will not acknowledge them");
                false
            }
        };
        for (device, ack) in devices.iter().zip(acks) {
            if ok {
                self.counters.inbound.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = self.devices.iter().find(|d| d.device.name() == device) {
                    d.stats.received.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(ack) = ack {
                ack.send(ok);
            }
        }
    }

    async fn record(
        &self,
        outcomes: Vec<Outcome>,
        early: &mut HashMap<(String, String), (Receipt, tokio::time::Instant)>,
        receipts: &mut Vec<Receipt>,
    ) {
        let mut delay = Duration::from_millis(50);
        let outcomes = Arc::new(outcomes);
        let applied = loop {
            match self.store.record_outcomes(outcomes.clone()).await {
                Ok(a) => break a,
                Err(e) => {
                    // The store is down; the messages keep their lease. Retry so nothing a
                    // device took is forgotten while the process lives.
                    tracing::error!(error = %e, "recording device outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if self.answers_recorded {
            for (o, ok) in outcomes.iter().zip(applied.iter()) {
                let (id, device) = match o {
                    Outcome::Sent { id, device, .. } => (*id, Some(device)),
                    Outcome::Retry { id, device, .. } | Outcome::Final { id, device, .. } => {
                        (*id, device.as_ref())
                    }
                };
                if let Some(d) =
                    device.and_then(|n| self.devices.iter().find(|d| d.device.name() == n))
                {
                    // Settled: sent or failed for good (a retry leaves it open).
                    let settled = *ok && !matches!(o, Outcome::Retry { .. });
                    d.device.outcome_recorded(id, settled);
                }
            }
        }
        for (o, ok) in outcomes.iter().zip(applied) {
            if !ok {
                // A stale outcome (its message moved on): receipts attached to it belong to
                // the parts recorded earlier, and are applied on their own.
                if let Outcome::Sent {
                    device,
                    part_ids,
                    receipts: known,
                    ..
                } = o
                {
                    for (pid, r) in part_ids.iter().zip(known) {
                        if let Some(r) = r {
                            receipts.push(Receipt {
                                device: device.clone(),
                                device_msg_id: pid.clone(),
                                delivered: r.delivered,
                                code: r.code.clone(),
                                at: r.at,
                            });
                        }
                    }
                }
                continue;
            }
            match o {
                Outcome::Sent {
                    device,
                    part_ids,
                    receipts: known,
                    at,
                    ..
                } => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    // Receipts that came with their submit (read before it was recorded).
                    if known.iter().any(Option::is_some) {
                        if let Some(d) = self.entry(device) {
                            for r in known.iter().flatten() {
                                d.stats.receipt_delay.observe_ms(r.at - at);
                            }
                        }
                    }
                    let (st, ..) = textgate_store::sent_with_receipts(known, part_ids.len(), *at);
                    if st.is_final() {
                        self.counters.final_status(st);
                    }
                    for id in part_ids {
                        if let Some((r, _)) = early.remove(&(device.clone(), id.clone())) {
                            receipts.push(r);
                        }
                    }
                }
                Outcome::Retry { .. } => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Final { status, .. } => self.counters.final_status(*status),
            }
        }
    }

    async fn apply(
        &self,
        receipts: Vec<Receipt>,
        early: &mut HashMap<(String, String), (Receipt, tokio::time::Instant)>,
    ) -> bool {
        let receipts = Arc::new(receipts);
        let matches = match self.store.apply_receipts(receipts.clone()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "recording delivery receipts failed; holding them");
                let now = tokio::time::Instant::now();
                for r in receipts.iter().cloned() {
                    early.insert((r.device.clone(), r.device_msg_id.clone()), (r, now));
                }
                return false;
            }
        };
        let now = tokio::time::Instant::now();
        for (r, m) in receipts.iter().zip(matches) {
            match m {
                ReceiptMatch::Unknown => {
                    early.insert(
                        (r.device.clone(), r.device_msg_id.clone()),
                        (r.clone(), now),
                    );
                }
                ReceiptMatch::Part {
                    message_id,
                    status,
                    submitted_at,
                } => {
                    if let Some(d) = self.entry(&r.device) {
                        d.stats.receipt_delay.observe_ms(r.at - submitted_at);
                    }
                    if let Some(st) = status {
                        self.counters.final_status(st);
                        if st == Status::Undelivered {
                            tracing::info!(message_id, device = %r.device, code = r.code.as_deref(), "the delivery receipt says the message was not delivered");
                        }
                    }
                }
            }
        }
        true
    }

    /// Hands each device the parts an earlier run sent through it that have no receipt yet.
    async fn recover(self: Arc<Self>) {
        for entry in &self.devices {
            let name = entry.device.name();
            let mut after = 0;
            let mut total = 0;
            loop {
                match self.store.unreceipted_parts(name, after, 1000).await {
                    Ok(page) if page.is_empty() => break,
                    Ok(page) => {
                        after = page.last().map_or(after, |(id, _)| *id);
                        total += page.len();
                        entry
                            .device
                            .recover(page.into_iter().map(|(_, p)| p).collect());
                    }
                    Err(e) => {
                        tracing::warn!(device = %name, error = %e, "cannot list parts waiting for receipts");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(device = %name, parts = total, "parts sent before a restart still wait for receipts");
            }
        }
    }

    /// Renews the leases of the messages this node holds, every third of the lease.
    async fn renewer(self: Arc<Self>, stop: CancellationToken) {
        let every = self.policy.lease / 3;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let held = self.held.snapshot();
            if held.is_empty() {
                continue;
            }
            let until = now_ms() + self.policy.lease.as_millis() as Millis;
            if let Err(e) = self.store.renew_leases(held, until).await {
                tracing::warn!(error = %e, "renewing the leases of messages under way failed");
            }
        }
    }

    async fn maintainer(self: Arc<Self>, stop: CancellationToken) {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        let mut last_reload: Option<tokio::time::Instant> = None;
        loop {
            // Other nodes (and the API of this one) change the suppression list too.
            if last_reload.is_none_or(|t| t.elapsed() >= SUPPRESSION_RELOAD) {
                match self.inbound.reload(&self.store).await {
                    Ok(_) => last_reload = Some(tokio::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "loading the suppression list failed"),
                }
            }
            let mine = match self.cluster.get() {
                Some(c) => c.lease("queue-upkeep").await,
                None => true,
            };
            let upkeep = if mine {
                self.store.maintain(now_ms()).await
            } else {
                Ok(Default::default())
            };
            match upkeep {
                Ok(m) if m.promoted + m.requeued + m.expired > 0 => {
                    if m.expired > 0 {
                        tracing::warn!(
                            count = m.expired,
                            "sent messages got no receipt before their validity ran out: expired"
                        );
                    }
                    if m.requeued > 0 {
                        tracing::info!(
                            count = m.requeued,
                            "messages whose claim lease ran out are back in the queue"
                        );
                    }
                    self.wake();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "queue maintenance failed"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Back to the queue until `due_at`, unless the message's validity runs out first.
fn retry_or_expire(
    msg: &Message,
    device: String,
    code: Option<String>,
    reason: String,
    due_at: Millis,
    refund: bool,
    now: Millis,
) -> Outcome {
    if due_at >= msg.expires_at {
        return Outcome::Final {
            id: msg.id,
            attempt: msg.attempts,
            status: Status::Expired,
            device: Some(device),
            code,
            error: format!("its validity ran out while retrying; the last error was: {reason}"),
            at: now,
        };
    }
    Outcome::Retry {
        id: msg.id,
        attempt: msg.attempts,
        device: Some(device),
        due_at,
        code,
        error: reason,
        refund,
        at: now,
    }
}

/// Acknowledges the held receipts that are no longer waiting (written, or given up).
fn release_held(
    held: &mut HashMap<(String, String), Vec<textgate_drivers::Ack>>,
    early: &HashMap<(String, String), (Receipt, tokio::time::Instant)>,
) {
    if held.is_empty() {
        return;
    }
    held.retain(|k, acks| {
        if early.contains_key(k) {
            return true;
        }
        for a in acks.drain(..) {
            a.send(true);
        }
        false
    });
}

/// Receipts for the parts of messages whose submit is about to be recorded (from this round,
/// or held since an earlier one) go with the submit: one write of each row instead of two.
/// What is left over is applied on its own.
fn attach_receipts(
    outcomes: &mut [Outcome],
    receipts: &mut Vec<Receipt>,
    early: &mut HashMap<(String, String), (Receipt, tokio::time::Instant)>,
) {
    if receipts.is_empty() && early.is_empty() {
        return;
    }
    let mut pending: HashMap<(String, String), Receipt> = receipts
        .drain(..)
        .map(|r| ((r.device.clone(), r.device_msg_id.clone()), r))
        .collect();
    for o in outcomes.iter_mut() {
        let Outcome::Sent {
            device,
            part_ids,
            receipts: slots,
            ..
        } = o
        else {
            continue;
        };
        let found: Vec<Option<PartReceipt>> = part_ids
            .iter()
            .map(|pid| {
                let key = (device.clone(), pid.clone());
                pending
                    .remove(&key)
                    .or_else(|| early.remove(&key).map(|(r, _)| r))
                    .map(|r| PartReceipt {
                        delivered: r.delivered,
                        code: r.code,
                        at: r.at,
                    })
            })
            .collect();
        if found.iter().any(Option::is_some) {
            *slots = found;
        }
    }
    receipts.extend(pending.into_values());
}

/// A driver's inbound text in the form the store takes (its routing is worked out later,
/// by [`crate::inbound::InboundRouter::route`]).
fn stored_form(t: textgate_drivers::InboundText) -> textgate_store::NewInbound {
    textgate_store::NewInbound {
        device: t.device,
        from: t.from,
        to: t.to,
        body: t.body,
        encoding: t.encoding,
        parts: t.parts,
        partial: t.partial,
        dedup_key: t.dedup_key,
        same_within: t.same_within,
        received_at: t.received_at,
        routing: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    use textgate_drivers::{BoxFuture, Submitted};
    use textgate_store::{Inserted, NewMessage, NewUser, Role};

    use super::*;

    /// A device that answers from a script (then with the last answer for ever), and counts
    /// what it was given.
    struct Scripted {
        name: String,
        answers: std::sync::Mutex<VecDeque<Result<Submitted, SendError>>>,
        sends: AtomicUsize,
        events: std::sync::Mutex<Option<mpsc::Sender<DeviceEvent>>>,
    }

    impl Scripted {
        fn new(name: &str, answers: Vec<Result<Submitted, SendError>>) -> Arc<Scripted> {
            Arc::new(Scripted {
                name: name.into(),
                answers: std::sync::Mutex::new(answers.into()),
                sends: AtomicUsize::new(0),
                events: std::sync::Mutex::new(None),
            })
        }
    }

    impl Device for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> &'static str {
            "loopback"
        }
        fn start(&self, events: mpsc::Sender<DeviceEvent>) {
            *self.events.lock().unwrap() = Some(events);
        }
        fn send(&self, _: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>> {
            self.sends.fetch_add(1, Ordering::Relaxed);
            let mut q = self.answers.lock().unwrap();
            let a = if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().cloned()
            };
            Box::pin(async move { a.expect("a scripted answer") })
        }
        fn state(&self) -> DeviceState {
            DeviceState::Up
        }
        fn window(&self) -> usize {
            4
        }
    }

    fn transient() -> Result<Submitted, SendError> {
        Err(SendError::Transient {
            code: None,
            reason: "the SMSC is busy".into(),
        })
    }

    fn throttled() -> Result<Submitted, SendError> {
        Err(SendError::Throttled {
            code: Some("0x00000058".into()),
            reason: "throttled".into(),
        })
    }

    fn taken() -> Result<Submitted, SendError> {
        Ok(Submitted {
            part_ids: vec!["p1".into()],
        })
    }

    /// A dispatcher over these devices (routed in this order), on a fresh SQLite store, with
    /// retries 100 ms apart, and one message queued. (The queue's times are the wall clock's,
    /// so these tests run in real time; they wait for outcomes, never for a set time.)
    async fn start(
        devices: Vec<Arc<Scripted>>,
        max_attempts: u32,
    ) -> (Arc<Dispatcher>, Running, i64) {
        let dir = std::env::temp_dir().join(format!(
            "tg-dispatcher-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut toml = format!(
            "[server]\ndatabase_url = \"sqlite://{}/t.db\"\nmax_attempts = {max_attempts}\nretry_backoff = \"100ms\"\nretry_backoff_max = \"100ms\"\n",
            dir.display()
        );
        for d in &devices {
            toml.push_str(&format!(
                "[[device]]\nname = \"{}\"\nkind = \"loopback\"\n",
                d.name
            ));
        }
        let cfg = Config::parse(&toml, &|_| None).unwrap();
        cfg.check().unwrap();
        let store = Store::open(&cfg.server.database_url).await.unwrap();
        let owner = store
            .create_user(NewUser {
                name: "u".into(),
                role: Role::User,
                email: None,
                password_hash: None,
                created_at: 0,
            })
            .await
            .unwrap();
        let now = now_ms();
        let inserted = store
            .insert_messages(
                vec![NewMessage {
                    owner_id: owner.id,
                    job_id: None,
                    to: "+15550000001".into(),
                    from: None,
                    body: "hi".into(),
                    encoding: "gsm7".into(),
                    segments: 1,
                    schedule_at: None,
                    expires_at: now + 3_600_000,
                    callback_url: None,
                    reference: None,
                    priority: 0,
                    created_at: now,
                    claimed_until: None,
                    origin: None,
                    api_key_id: None,
                    email_from: None,
                }],
                None,
                Box::new(|_| String::new()),
            )
            .await
            .unwrap();
        let Inserted::New { ids, .. } = inserted else {
            panic!("{inserted:?}")
        };
        let devices: Vec<Arc<dyn Device>> =
            devices.into_iter().map(|d| d as Arc<dyn Device>).collect();
        let d = Dispatcher::new(store, &cfg, devices);
        let running = d.start(CancellationToken::new());
        (d, running, ids[0])
    }

    /// Waits until message `id` leaves the queue for good.
    async fn settled(d: &Dispatcher, id: i64) -> textgate_store::Message {
        for _ in 0..300 {
            let m = d.store.get_message(id).await.unwrap().unwrap();
            if m.status.is_final() || m.status == Status::Sent {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("message {id} never settled")
    }

    // One thread: both events are queued before the recorder runs, so they share a round.
    #[tokio::test(flavor = "current_thread")]
    async fn a_late_outcome_is_recorded_once_and_a_receipt_that_comes_with_a_stale_one_is_kept() {
        let a = Scripted::new("a", vec![taken()]);
        let (d, _running, id) = start(vec![a.clone()], 10).await;
        assert_eq!(settled(&d, id).await.status, Status::Sent);
        // A port server reports again what it sent (a resend after a broken link), and the
        // part's receipt comes in the same round: the outcome is stale, the receipt is not.
        let events = a.events.lock().unwrap().clone().unwrap();
        let (ack, answered) = textgate_drivers::Ack::channel();
        let (rack, receipt_answered) = textgate_drivers::Ack::channel();
        events
            .try_send(DeviceEvent::Outcome {
                device: "a".into(),
                message_id: id,
                attempt: 1,
                result: taken(),
                at: now_ms(),
                ack: Some(ack),
            })
            .unwrap();
        events
            .try_send(DeviceEvent::Receipt {
                device: "a".into(),
                device_msg_id: "p1".into(),
                delivered: true,
                code: None,
                at: now_ms(),
                ack: Some(rack),
            })
            .unwrap();
        assert_eq!(answered.await, Ok(true));
        assert_eq!(receipt_answered.await, Ok(true));
        let m = d.store.get_message(id).await.unwrap().unwrap();
        assert_eq!(m.status, Status::Delivered, "{m:?}");
        assert_eq!(d.counters.sent.load(Ordering::Relaxed), 1, "recorded once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transient_errors_fail_over_and_retry_after_the_backoff() {
        // The first device is always busy; the second is busy once, then takes it.
        let a = Scripted::new("a", vec![transient()]);
        let b = Scripted::new("b", vec![transient(), taken()]);
        let started = tokio::time::Instant::now();
        let (d, _running, id) = start(vec![a.clone(), b.clone()], 10).await;
        let m = settled(&d, id).await;
        assert_eq!(
            (m.status, m.device.as_deref()),
            (Status::Sent, Some("b")),
            "{m:?}"
        );
        assert!(
            a.sends.load(Ordering::Relaxed) >= 1,
            "the first device was tried first"
        );
        assert_eq!(
            b.sends.load(Ordering::Relaxed),
            2,
            "the second took it on its second try"
        );
        // A retry waits for the backoff (100 ms, ±20 % jitter).
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_fails_after_max_attempts_and_throttling_is_not_counted() {
        // Throttled four times (not attempts), then busy for ever: three attempts, then failed.
        let a = Scripted::new(
            "a",
            vec![
                throttled(),
                throttled(),
                throttled(),
                throttled(),
                transient(),
            ],
        );
        let (d, _running, id) = start(vec![a.clone()], 3).await;
        let m = settled(&d, id).await;
        assert_eq!(m.status, Status::Failed, "{m:?}");
        assert_eq!(a.sends.load(Ordering::Relaxed), 4 + 3, "{m:?}");
        assert!(m.error.as_deref().unwrap_or("").contains("busy"), "{m:?}");
    }
}
