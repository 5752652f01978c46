//! This node among the nodes that share one store (docs/operations.md): it says it is alive
//! every `[server] node_heartbeat`, knows the others (`GET /api/v1/nodes`), and holds named
//! leases for the work that must run on one node at a time (the queue's upkeep, the
//! retention purge, the watched folder): a lease lasts `[server] node_dead_after` and is
//! renewed by its node each time it does that work, so when a node dies another takes the
//! work over within that time. On SQLite there is one node, and it holds every lease.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use textgate_core::clock::{now_ms, Millis};
use textgate_core::config::Config;
use textgate_store::{Node, Store};
use tokio_util::sync::CancellationToken;

/// How long a stopped or dead node is still listed.
const LISTED_FOR: Duration = Duration::from_secs(24 * 3600);

/// This node, and what it holds.
pub struct Cluster {
    store: Store,
    /// This node.
    pub me: Node,
    heartbeat: Duration,
    dead_after: Duration,
    shared: bool,
    held: Mutex<BTreeSet<String>>,
    /// Nodes alive at the last heartbeat (this one included).
    alive: std::sync::atomic::AtomicUsize,
    /// Nodes that may still be sending: not stopped, seen within twice `node_dead_after`.
    sending: std::sync::atomic::AtomicUsize,
}

/// A node as `GET /api/v1/nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Its id for this run.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where its HTTP API listens.
    pub address: String,
    /// Its build.
    pub version: String,
    /// When it started (ms since the epoch).
    pub started_at: Millis,
    /// How long it has run, in seconds (until it stopped or was last seen).
    pub uptime_seconds: i64,
    /// When it last said it is alive (ms since the epoch).
    pub last_seen: Millis,
    /// `alive`, `dead` (silent past `node_dead_after`) or `stopped`.
    pub state: &'static str,
    /// Whether this is the node that answered.
    pub this: bool,
    /// The leases it holds now: the work it does for all nodes.
    pub leases: Vec<String>,
}

impl Cluster {
    /// This node, on `store`, its HTTP API at `address`.
    pub fn new(store: Store, cfg: &Config, name: &str, address: &str) -> Arc<Cluster> {
        let id = textgate_core::auth::random_token(8)
            .unwrap_or_else(|_| format!("{:016x}", fastrand::u64(..)));
        Arc::new(Cluster {
            shared: store.backend_name() == "postgres",
            store,
            me: Node {
                id,
                name: cfg
                    .server
                    .node_name
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
                address: address.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: now_ms(),
                seen_at: 0,
                stopped_at: None,
            },
            heartbeat: cfg.server.node_heartbeat.0,
            dead_after: cfg.server.node_dead_after.0,
            held: Mutex::new(BTreeSet::new()),
            alive: std::sync::atomic::AtomicUsize::new(1),
            sending: std::sync::atomic::AtomicUsize::new(1),
        })
    }

    /// Says it is alive until `stop`, then that it stopped (giving up its leases).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.store.node_beat(&self.me).await {
                tracing::warn!(error = %e, "cannot record this node's heartbeat; trying again");
            }
            if self.shared {
                if let Ok(nodes) = self.nodes().await {
                    let alive = nodes.iter().filter(|n| n.state == "alive").count();
                    self.alive
                        .store(alive.max(1), std::sync::atomic::Ordering::Relaxed);
                    let recent = now_ms() - 2 * self.dead_after.as_millis() as Millis;
                    let sending = nodes
                        .iter()
                        .filter(|n| n.state != "stopped" && n.last_seen >= recent)
                        .count();
                    self.sending
                        .store(sending.max(1), std::sync::atomic::Ordering::Relaxed);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
        if let Err(e) = self.store.node_stopped(&self.me.id).await {
            tracing::warn!(error = %e, "cannot record that this node stopped; its leases run out by themselves");
        }
    }

    /// Whether this node does the work `name` now: takes or renews its lease for
    /// `node_dead_after`. On a store of one node, always.
    pub async fn lease(&self, name: &str) -> bool {
        self.lease_for(name, self.dead_after).await
    }

    /// The same for work done once every `period`: the lease lasts that long (at least
    /// `node_dead_after`), so that one node does it each period.
    pub async fn lease_for(&self, name: &str, period: Duration) -> bool {
        if !self.shared {
            return true;
        }
        let until = now_ms() + period.max(self.dead_after).as_millis() as Millis;
        let mine = match self.store.take_lease(name, &self.me.id, until).await {
            Ok(mine) => mine,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cannot take or renew a lease; not doing its work now");
                false
            }
        };
        if let Ok(mut held) = self.held.lock() {
            let had = if mine {
                !held.insert(name.to_string())
            } else {
                held.remove(name)
            };
            if mine != had {
                tracing::info!(lease = name, node = %self.me.name, taken = mine, "lease changed hands");
            }
        }
        mine
    }

    /// Whether several nodes may share this store (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// How many nodes share a device's `max_rate`: those that may still be sending, counted
    /// generously (a node whose heartbeat is late, or that died less than twice
    /// `node_dead_after` ago), so that a heartbeat read late never lets the nodes together
    /// send faster than the rate. A real death slows the others for that while.
    pub fn rate_shares(&self) -> usize {
        self.sending
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1)
    }

    /// The leases this node holds, as it last took them.
    pub fn held(&self) -> Vec<String> {
        self.held
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The nodes on this store, newest start first, with the leases each holds.
    pub async fn nodes(&self) -> textgate_store::Result<Vec<NodeView>> {
        let now = now_ms();
        let listed = now - LISTED_FOR.as_millis() as Millis;
        let nodes = self.store.nodes(listed, listed).await?;
        let leases = self.store.leases().await?;
        let dead_after = self.dead_after.as_millis() as Millis;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let state = if n.stopped_at.is_some() {
                    "stopped"
                } else if now - n.seen_at > dead_after {
                    "dead"
                } else {
                    "alive"
                };
                let mut held: Vec<String> = leases
                    .iter()
                    .filter(|(_, holder, _)| *holder == n.id)
                    .map(|(name, _, _)| name.clone())
                    .collect();
                if !self.shared && n.id == self.me.id {
                    held = self.held();
                }
                let end = if state == "alive" { now } else { n.seen_at };
                NodeView {
                    this: n.id == self.me.id,
                    uptime_seconds: (end - n.started_at).max(0) / 1000,
                    last_seen: n.seen_at,
                    state,
                    leases: held,
                    id: n.id,
                    name: n.name,
                    address: n.address,
                    version: n.version,
                    started_at: n.started_at,
                }
            })
            .collect())
    }
}

/// The name of the lease of session `slot` of `device`.
fn slot_lease(device: &str, slot: usize) -> String {
    format!("bind:{device}:{slot}")
}

impl textgate_drivers::SessionSlots for Cluster {
    /// A node holds at most its share of a device's slots (the slots over the nodes alive,
    /// rounded up): a node that holds more gives its highest one up, so that a node that
    /// joins gets binds of its own; the slots of a dead node are taken once its leases run
    /// out.
    fn hold<'a>(
        &'a self,
        device: &'a str,
        slot: usize,
        of: usize,
    ) -> textgate_drivers::BoxFuture<'a, bool> {
        Box::pin(async move {
            let name = slot_lease(device, slot);
            let prefix = format!("bind:{device}:");
            let mine: Vec<usize> = self
                .held()
                .iter()
                .filter_map(|h| h.strip_prefix(&prefix).and_then(|n| n.parse().ok()))
                .collect();
            let alive = self.alive.load(std::sync::atomic::Ordering::Relaxed).max(1);
            let share = of.div_ceil(alive);
            let is_mine = mine.contains(&slot);
            if is_mine && mine.len() > share && mine.iter().max() == Some(&slot) {
                tracing::info!(device, slot, share, "giving a bind slot up to another node");
                self.give_up(&name).await;
                return false;
            }
            if !is_mine && mine.len() >= share {
                return false;
            }
            self.lease(&name).await
        })
    }

    fn release<'a>(&'a self, device: &'a str, slot: usize) -> textgate_drivers::BoxFuture<'a, ()> {
        Box::pin(async move { self.give_up(&slot_lease(device, slot)).await })
    }

    fn every(&self) -> Duration {
        self.heartbeat
    }
}

impl Cluster {
    /// Gives lease `name` up, if this node holds it.
    async fn give_up(&self, name: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(name);
        }
        if let Err(e) = self.store.release_lease(name, &self.me.id).await {
            tracing::warn!(lease = name, error = %e, "cannot give a lease up; it runs out by itself");
        }
    }
}
