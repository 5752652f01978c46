//! textgate's engine: what runs the drivers (`textgate-drivers`) against the store.
//!
//! - [`dispatcher`]: claims due messages from the store, routes them to devices in failover
//!   order, retries transient errors with backoff, and records every outcome, receipt and
//!   inbound text the devices report.
//! - [`inbound`]: inbound texts' routing by the rules, and the suppression list.
//! - [`delivery`]: the loop that makes webhook and e-mail deliveries, with retries, per-user
//!   slots and dead letters.
//! - [`submit`]: how validated texts from any edge (HTTP, e-mail) are stored and handed to
//!   the dispatcher.
//! - [`signin`]: passwords and API keys given by people, checked with limits on failures and
//!   on concurrent hashes.
//! - [`retention`]: old records and files deleted (or stripped of their text) in batches.
//! - [`users`]: users as administrators manage them (API, web UI, command line).
//! - [`cluster`]: this node among the nodes on one store: heartbeats, and the leases of the
//!   work that runs on one node at a time.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cluster;
pub mod delivery;
pub mod dispatcher;
pub mod inbound;
pub mod quota;
pub mod retention;
pub mod signin;
pub mod submit;
pub mod users;
