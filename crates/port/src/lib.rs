//! Remote port servers: a `textgate port` process on another machine, with its own devices,
//! joins the central server over one long-lived link and is used as if its devices were
//! local.
//!
//! - [`link`]: the link's protocol, without I/O: its versioned frames, the window that
//!   bounds what the central server hands a port server, and the items each side keeps
//!   until the other has committed them, so that a broken link loses nothing and a resend
//!   doubles nothing.
#![forbid(unsafe_code)]

pub mod link;
