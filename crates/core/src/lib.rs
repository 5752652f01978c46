//! textgate's domain code: everything that can be decided without I/O.
//!
//! - [`address`]: E.164 numbers, short codes and alphanumeric sender ids, parsed once at the edge.
//! - [`encoding`]: GSM 03.38 and UCS-2 encoders, the segmenter and the concatenation UDH.
//! - [`status`]: the statuses a message moves through (docs/architecture.md).
//! - [`routing`]: which devices a destination goes to, in failover order.
//! - [`inbound`]: inbound rules, opt-out keywords and webhook retry settings.
//! - [`config`]: the TOML configuration, its defaults, environment overrides and checks.
//! - [`auth`]: password hashing (argon2id) and API keys (random, stored as SHA-256).
//! - [`cache`]: a map of recent answers with a time to live (verified keys and credentials).
//! - [`clock`]: timestamps (milliseconds since the Unix epoch, UTC) and their RFC 3339 form.
//! - [`signin`]: failed sign-ins counted per name and address, with an expiring lock-out.
//! - [`net`]: CIDR blocks and which addresses are internal (callback and SMTP policies).
//! - [`histogram`]: fixed-bucket latency histograms for `/metrics`, lock-free.
#![forbid(unsafe_code)]

pub mod address;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod encoding;
pub mod histogram;
pub mod inbound;
pub mod net;
pub mod routing;
pub mod signin;
pub mod status;
