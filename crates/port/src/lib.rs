//! Remote port servers: a `textgate port` process on another machine, with its own devices,
//! joins the central server over one long-lived link and is used as if its devices were
//! local (docs/port-servers.md).
//!
//! - [`link`]: the link's protocol, without I/O: its versioned frames and the bookkeeping
//!   that makes a broken link lose nothing and a resend double nothing.
//! - [`central`]: the central server's side: who may join, each link, and the `remote`
//!   devices the dispatcher sends through.
//! - [`hold`]: the port server's own store of what it holds.
//! - [`server`]: the port server itself (`textgate port`).
#![forbid(unsafe_code)]

pub mod central;
pub mod hold;
pub mod link;
pub mod server;
