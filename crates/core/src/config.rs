//! The configuration file (DESIGN.md §4): TOML, layered as embedded defaults ← file ←
//! environment (for secrets), then checked as a whole so that `textgate check` can name the
//! bad key and say why before anything starts.
//!
//! Sections that belong to features not in this build (`[[port_server]]`, device kinds
//! `modem` and `remote`) are refused by
//! [`Config::check`] with a message saying so, rather than accepted and silently ignored.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::address::Country;
pub use crate::inbound::{InboundConfig, InboundRuleConfig, WebhooksConfig};

/// A problem with the configuration: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, as a path (`server.claim_lease`, `device[2].kind`), or the file for syntax errors.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The delay before attempt `attempt + 1`: doubling from `first`, capped at `max`, with ±20 %
/// jitter (`jitter` from 0 to 1) so that a burst of failures does not come back as a burst.
/// Device retries and webhook and e-mail retries all back off this way.
pub fn backoff(first: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = first.saturating_mul(1u32 << exp).min(max);
    // What `Duration::mul_f64` computes, saturating where it would panic (a base near
    // `Duration::MAX` times up to 1.2: the configuration takes any duration).
    Duration::try_from_secs_f64(base.as_secs_f64() * (0.8 + jitter.clamp(0.0, 1.0) * 0.4))
        .unwrap_or(Duration::MAX)
}

/// A duration written like `30s`, `5m`, `1h 30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "\"{s}\" is not a duration ({e}): write it like \"30s\", \"5m\" or \"250ms\""
            ))
        })
    }
}

/// A size written like `1MiB`, `512KiB`, `10MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses `1MiB`, `1 MiB`, `500kB`, `1024`.
    pub fn parse(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size: write it like \"1MiB\" or \"512KiB\""))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "\"{s}\": unknown size unit \"{other}\" (use B, KiB, MiB, GiB, kB, MB or GB)"
                ))
            }
        };
        Ok(Bytes((value * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => Bytes::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[device]]`: the SMS devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// `[[route]]`: outbound routes, first match wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `[smtp]`: the e-mail to SMS gateway; absent = off.
    pub smtp: Option<SmtpConfig>,
    /// `[mailer]`: SMS to e-mail through a relay.
    pub mailer: Option<MailerConfig>,
    /// `[spool]`: the watched folder for CSV jobs; absent = off.
    pub spool: Option<SpoolConfig>,
    /// `[[port_server]]` (not in this build).
    #[serde(default, rename = "port_server")]
    pub port_servers: Vec<toml::Table>,
    /// `[[inbound_rule]]`: where incoming texts go.
    #[serde(default, rename = "inbound_rule")]
    pub inbound_rules: Vec<InboundRuleConfig>,
    /// `[inbound]`: catch-all, conversations, opt-out keywords.
    #[serde(default)]
    pub inbound: InboundConfig,
    /// `[webhooks]`: timeouts and retries of webhooks and status callbacks.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// `[auth]`: how failed sign-ins (SMTP AUTH, the web sign-in) are limited.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[retention]`: how long message texts and other records are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[retention]`: how long what is kept. Message bodies are personal data: a key that is set
/// has what is older deleted (or, with `strip_bodies`, its text emptied) in small batches.
/// A key that is absent keeps everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Outbound messages that reached a final status, by when they were accepted.
    pub messages: Option<Dur>,
    /// Inbound texts, by when they were received.
    pub inbound: Option<Dur>,
    /// Webhook and e-mail deliveries that are done (delivered or dead letters).
    pub deliveries: Option<Dur>,
    /// Files in the watched folder's `done/` and `failed/` (and their reports).
    pub job_files: Option<Dur>,
    /// Keep old messages and inbound texts, with their text emptied, instead of deleting
    /// them (their numbers, statuses and times stay for statistics).
    pub strip_bodies: bool,
    /// How often a pass runs.
    pub interval: Dur,
    /// Rows per transaction: small, so that sending is never held up for long.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            messages: None,
            inbound: None,
            deliveries: None,
            job_files: None,
            strip_bodies: false,
            interval: Dur(Duration::from_secs(600)),
            batch: 500,
        }
    }
}

impl RetentionConfig {
    /// Whether anything is to be removed at all.
    pub fn any(&self) -> bool {
        self.messages.is_some()
            || self.inbound.is_some()
            || self.deliveries.is_some()
            || self.job_files.is_some()
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.batch == 0 || self.batch > 10_000 {
            return Err(ConfigError::new(
                "retention.batch",
                "must be from 1 to 10000",
            ));
        }
        if self.interval.0 < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "retention.interval",
                "must be at least 100ms",
            ));
        }
        for (key, d) in [
            ("messages", self.messages),
            ("inbound", self.inbound),
            ("deliveries", self.deliveries),
            ("job_files", self.job_files),
        ] {
            if d.is_some_and(|d| d.0 < Duration::from_secs(1)) {
                return Err(ConfigError::new(
                    format!("retention.{key}"),
                    "must be at least 1s (write it like \"90d\")",
                ));
            }
        }
        Ok(())
    }
}

/// `[auth]`: failed sign-ins counted per user name and per client address across
/// connections, and the passwords hashed at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Failures of one user name within `window` that lock the name out.
    pub max_failures_per_user: u32,
    /// Failures from one client address within `window` that lock the address out.
    pub max_failures_per_address: u32,
    /// The period failures are counted over.
    pub window: Dur,
    /// How long a lock-out lasts.
    pub lockout: Dur,
    /// Passwords checked at once (each argon2 check takes about 19 MiB and a core for tens
    /// of milliseconds); 0 = the number of CPU cores. More wait their turn.
    pub max_concurrent_hashes: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        let p = crate::signin::Policy::default();
        AuthConfig {
            max_failures_per_user: p.per_user,
            max_failures_per_address: p.per_address,
            window: Dur(p.window),
            lockout: Dur(p.lockout),
            max_concurrent_hashes: 0,
        }
    }
}

impl AuthConfig {
    /// The limiter's policy.
    pub fn policy(&self) -> crate::signin::Policy {
        crate::signin::Policy {
            per_user: self.max_failures_per_user,
            per_address: self.max_failures_per_address,
            window: self.window.0,
            lockout: self.lockout.0,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_failures_per_user == 0 || self.max_failures_per_address == 0 {
            return Err(ConfigError::new(
                "auth.max_failures_per_user",
                "the failure limits must be at least 1",
            ));
        }
        if self.window.0.is_zero() {
            return Err(ConfigError::new("auth.window", "must be above zero"));
        }
        Ok(())
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the HTTP API listens.
    pub http_listen: String,
    /// `sqlite://PATH` or `postgres://user@host/db`.
    pub database_url: String,
    /// ISO country for numbers written without +country.
    pub default_country: Option<String>,
    /// The externally visible base URL (links in e-mails and webhooks).
    pub public_url: Option<String>,
    /// A message held by a dead worker is retried after this.
    pub claim_lease: Dur,
    /// Larger HTTP bodies get 413.
    pub max_request_bytes: Bytes,
    /// The limit for CSV job uploads.
    pub max_upload_bytes: Bytes,
    /// Recipients per `POST /api/v1/messages`.
    pub max_recipients: usize,
    /// The most SMS parts one text may take.
    pub max_parts: u16,
    /// Signs webhooks and status callbacks unless a rule has its own.
    pub webhook_secret: Option<String>,
    /// How many times a message is handed to devices before it fails.
    pub max_attempts: u32,
    /// The first retry delay after a transient device error; doubles each attempt.
    pub retry_backoff: Dur,
    /// The longest retry delay.
    pub retry_backoff_max: Dur,
    /// How long a message may wait to be sent before it expires.
    pub default_validity: Dur,
    /// Where CSV job uploads are kept while they are imported (default: `uploads/` beside
    /// a SQLite database, else the system's temporary folder).
    pub upload_dir: Option<String>,
    /// Column names taken as a job file's number column, in order of preference.
    pub job_number_columns: Vec<String>,
    /// HTTP connections served at once; one more is answered 503.
    pub max_connections: usize,
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout: Dur,
    /// A connection that sends nothing between requests, or does not read its answer, for
    /// this long is closed.
    pub idle_timeout: Dur,
    /// A request not answered within this is answered 408.
    pub request_timeout: Dur,
    /// The same for `POST /api/v1/jobs` (an upload, answered once every row is stored).
    pub upload_timeout: Dur,
    /// Let users' `callback_url`s reach loopback, private, link-local and other internal
    /// addresses (a single-tenant test setup; never on a shared server).
    pub allow_private_callbacks: bool,
    /// Internal hosts and networks users' `callback_url`s may reach even so: host names
    /// (`hooks.internal`) or CIDRs (`10.1.2.0/24`, `fd00::/8`).
    pub callback_allow: Vec<String>,
    /// `/metrics` answers only requests with `Authorization: Bearer` this token.
    pub metrics_token: Option<String>,
    /// Serve `/metrics` (and `/healthz`) on this address only, apart from the API.
    pub metrics_listen: Option<String>,
    /// After SIGTERM or SIGINT: how long what is in flight may take to finish before the
    /// process exits anyway (what is left is committed or leased, and resumes at the next
    /// start).
    pub shutdown_grace: Dur,
}

impl ServerConfig {
    /// The HTTP deadlines, the connection cap, the callback allow-list and `/metrics`.
    fn check_limits(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("upload_timeout", self.upload_timeout),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if d.0 < Duration::from_millis(100) {
                return Err(ConfigError::new(
                    format!("server.{key}"),
                    "must be at least 100ms",
                ));
            }
        }
        for entry in &self.callback_allow {
            let host_like = !entry.is_empty()
                && entry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            let is_ip_like = entry.contains(':')
                || entry.contains('/')
                || entry.chars().all(|c| c.is_ascii_digit() || c == '.');
            if is_ip_like || !host_like {
                entry.parse::<crate::net::Cidr>().map_err(|e| {
                    ConfigError::new(
                        "server.callback_allow",
                        format!("{e}; or give a host name such as hooks.internal"),
                    )
                })?;
            }
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "server.metrics_token",
                "is shorter than 16 characters: use a long random token (or TEXTGATE_METRICS_TOKEN)",
            ));
        }
        if let Some(l) = &self.metrics_listen {
            l.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "server.metrics_listen",
                    format!("\"{l}\" is not an address: write it like \"127.0.0.1:9100\""),
                )
            })?;
        }
        Ok(())
    }

    /// The folder for CSV job uploads.
    pub fn upload_dir(&self) -> std::path::PathBuf {
        if let Some(d) = &self.upload_dir {
            return d.into();
        }
        match self.database_url.strip_prefix("sqlite://") {
            Some(db) => std::path::Path::new(db)
                .parent()
                .map(|p| p.join("uploads"))
                .unwrap_or_else(|| "uploads".into()),
            None => std::env::temp_dir().join("textgate-uploads"),
        }
    }
}

/// `[spool]`: a watched folder whose CSV files become jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Holds `incoming/`, `processing/`, `done/` and `failed/`.
    pub dir: String,
    /// The jobs' owner (a user name).
    pub user: String,
    /// The text for files without a sidecar that sets one (else their `body` column).
    pub template: Option<String>,
    /// The sender for files without a sidecar that sets one.
    pub from: Option<String>,
    /// How often `incoming/` is looked at.
    #[serde(default = "default_spool_poll")]
    pub poll_interval: Dur,
    /// A file is taken once its size and time have not changed for this long.
    #[serde(default = "default_spool_settle")]
    pub settle: Dur,
}

fn default_spool_poll() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_spool_settle() -> Dur {
    Dur(Duration::from_secs(2))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://textgate-data/textgate.db".into(),
            default_country: None,
            public_url: None,
            claim_lease: Dur(Duration::from_secs(30)),
            max_request_bytes: Bytes(1 << 20),
            max_upload_bytes: Bytes(1 << 30),
            max_recipients: 1000,
            max_parts: 10,
            webhook_secret: None,
            max_attempts: 10,
            retry_backoff: Dur(Duration::from_secs(1)),
            retry_backoff_max: Dur(Duration::from_secs(600)),
            default_validity: Dur(Duration::from_secs(48 * 3600)),
            upload_dir: None,
            job_number_columns: ["to", "phone", "mobile", "msisdn", "number"]
                .map(String::from)
                .to_vec(),
            max_connections: 1024,
            header_read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            request_timeout: Dur(Duration::from_secs(30)),
            upload_timeout: Dur(Duration::from_secs(30 * 60)),
            allow_private_callbacks: false,
            callback_allow: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            shutdown_grace: Dur(Duration::from_secs(30)),
        }
    }
}

/// One `[[device]]`. Its kind-specific keys are checked by [`DeviceConfig::settings`].
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Its unique name, used in routes and the API.
    pub name: String,
    /// `smpp`, `modem`, `remote` or `loopback`.
    pub kind: String,
    /// A disabled device is shown but never used.
    pub enabled: bool,
    /// Messages per second at most, 0 = unlimited.
    pub max_rate: u32,
    /// The kind-specific keys, kept raw until checked.
    pub rest: toml::Table,
}

impl<'de> Deserialize<'de> for DeviceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let name = match t.remove("name") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("device name must be a string")),
            None => return Err(D::Error::custom("every [[device]] needs a `name`")),
        };
        let kind = match t.remove("kind") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "device \"{name}\": `kind` must be a string"
                )))
            }
            None => {
                return Err(D::Error::custom(format!(
                    "device \"{name}\" needs a `kind`: smpp, modem, remote or loopback"
                )))
            }
        };
        let enabled = match t.remove("enabled") {
            Some(toml::Value::Boolean(b)) => b,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "device \"{name}\": `enabled` must be true or false"
                )))
            }
            None => true,
        };
        let max_rate = match t.remove("max_rate") {
            Some(toml::Value::Integer(n)) if (0..=1_000_000).contains(&n) => n as u32,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "device \"{name}\": `max_rate` must be a whole number of messages per second (0 = unlimited)"
                )))
            }
            None => 0,
        };
        Ok(DeviceConfig {
            name,
            kind,
            enabled,
            max_rate,
            rest: t,
        })
    }
}

/// The kind-specific settings of a device.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSettings {
    /// The built-in loopback device.
    Loopback(LoopbackConfig),
    /// An SMSC account over SMPP 3.4.
    Smpp(Box<SmppConfig>),
}

/// How an SMPP session binds (SMPP 3.4 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    /// Sends only.
    Transmitter,
    /// Receives only (inbound texts and receipts).
    Receiver,
    /// Both on one connection.
    Transceiver,
}

/// How long texts are sent (SMPP 3.4 §5.2.12 esm_class UDHI, §5.3.2.22–24 SAR TLVs,
/// §5.3.2.32 message_payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// One submit_sm per part, each with a concatenation UDH.
    Udh,
    /// One submit_sm per part, with sar_* TLVs.
    Sar,
    /// One submit_sm with the whole text in message_payload.
    Payload,
}

/// `kind = "smpp"`: an SMSC account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// The SMSC's host name or address.
    pub host: String,
    /// Its port (2775 by convention).
    #[serde(default = "default_smpp_port")]
    pub port: u16,
    /// The account's system_id.
    pub system_id: String,
    /// Its password (or `TEXTGATE_DEVICE_<NAME>_PASSWORD`).
    #[serde(default)]
    pub password: String,
    /// system_type sent in the bind, if the SMSC wants one.
    #[serde(default)]
    pub system_type: String,
    /// transmitter, receiver or transceiver.
    #[serde(default = "default_bind")]
    pub bind: BindMode,
    /// Parallel sessions.
    #[serde(default = "one")]
    pub binds: u32,
    /// SMPP over TLS (rustls; the SMSC's certificate is checked against the public roots and
    /// `tls_ca_file`).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of extra trusted certificates (a private CA, or the SMSC's own certificate).
    pub tls_ca_file: Option<String>,
    /// The name to check the SMSC's certificate against; default `host`.
    pub tls_server_name: Option<String>,
    /// Unacknowledged submit_sm at once, per session.
    #[serde(default = "default_window")]
    pub window: u32,
    /// enquire_link interval.
    #[serde(default = "default_enquire_link")]
    pub enquire_link: Dur,
    /// How long to wait for a response.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Dur,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Dur,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Dur,
    /// source_addr_ton; default chosen from the sender (alphanumeric 5, international 1, short code 3).
    pub source_ton: Option<u8>,
    /// source_addr_npi; default chosen from the sender.
    pub source_npi: Option<u8>,
    /// dest_addr_ton; default chosen from the destination.
    pub dest_ton: Option<u8>,
    /// dest_addr_npi; default chosen from the destination.
    pub dest_npi: Option<u8>,
    /// The data_coding used for GSM 7-bit text (0 = SMSC default; some SMSCs want 1).
    #[serde(default)]
    pub gsm_data_coding: u8,
    /// What data_coding 0 means on inbound texts from this SMSC: gsm7, latin1 or ascii.
    #[serde(default = "default_alphabet")]
    pub default_alphabet: String,
    /// How long texts are sent.
    #[serde(default = "default_long")]
    pub long_messages: LongMessages,
    /// Ask for delivery receipts.
    #[serde(default = "yes")]
    pub registered_delivery: bool,
    /// How the SMSC writes ids in submit_sm_resp: auto, hex, decimal or text.
    #[serde(default = "default_id_format")]
    pub resp_id_format: String,
    /// How it writes them in receipts (some SMSCs answer in hex and report in decimal).
    #[serde(default = "default_id_format")]
    pub receipt_id_format: String,
    /// Answer a receipt's deliver_sm only after the receipt is recorded. Safer across a crash
    /// (the SMSC delivers it again), but the SMSC's receipt window then waits for each commit,
    /// which costs throughput; off, a crash can lose the receipts of the last moments (their
    /// messages then expire as "no receipt"), as in other gateways.
    #[serde(default)]
    pub ack_receipts_after_commit: bool,
    /// How long the parts of an inbound long text are awaited before it is stored as partial.
    #[serde(default = "default_reassembly")]
    pub reassembly_timeout: Dur,
    /// The most bytes of parts of incomplete long texts one bind holds; past it, the oldest
    /// incomplete texts are stored as partial (counted in
    /// `textgate_device_reassembly_evicted_total`).
    #[serde(default = "default_reassembly_budget")]
    pub reassembly_budget: Bytes,
}

fn default_smpp_port() -> u16 {
    2775
}
fn default_bind() -> BindMode {
    BindMode::Transceiver
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_window() -> u32 {
    10
}
fn default_enquire_link() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_response_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_reconnect_min() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_reconnect_max() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_alphabet() -> String {
    "gsm7".into()
}
fn default_long() -> LongMessages {
    LongMessages::Udh
}
fn default_id_format() -> String {
    "auto".into()
}
fn default_reassembly() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_reassembly_budget() -> Bytes {
    Bytes(2 << 20)
}

/// `kind = "loopback"`: accepts every message and reports it delivered, with knobs for
/// tests and demos.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopbackConfig {
    /// Time the device takes to accept a message.
    pub delay: Dur,
    /// Time between accepting a message and reporting it delivered.
    pub report_delay: Dur,
    /// Fraction (0–1) of messages refused for good.
    pub failure_rate: f64,
    /// Fraction (0–1) of sends that fail transiently (retried).
    pub transient_failure_rate: f64,
    /// Fraction (0–1) of accepted messages reported undelivered.
    pub undelivered_rate: f64,
    /// Messages handled at once.
    pub window: u32,
    /// Answer every message with an inbound text "Echo: …" from its recipient (demos).
    pub echo: bool,
    /// The device's own number: where injected and echoed texts say they were sent to.
    pub number: String,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        LoopbackConfig {
            delay: Dur(Duration::ZERO),
            report_delay: Dur(Duration::ZERO),
            failure_rate: 0.0,
            transient_failure_rate: 0.0,
            undelivered_rate: 0.0,
            window: 256,
            echo: false,
            number: "+15550000000".into(),
        }
    }
}

impl DeviceConfig {
    /// The kind-specific settings, checked.
    pub fn settings(&self) -> Result<DeviceSettings, ConfigError> {
        let key = format!("device \"{}\"", self.name);
        match self.kind.as_str() {
            "loopback" => {
                let cfg: LoopbackConfig = toml::Value::Table(self.rest.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::new(&key, e.message().to_string()))?;
                for (field, v) in [
                    ("failure_rate", cfg.failure_rate),
                    ("transient_failure_rate", cfg.transient_failure_rate),
                    ("undelivered_rate", cfg.undelivered_rate),
                ] {
                    if !(0.0..=1.0).contains(&v) {
                        return Err(ConfigError::new(
                            format!("{key}.{field}"),
                            format!("{v} is not a fraction: use a number from 0 to 1"),
                        ));
                    }
                }
                if cfg.window == 0 {
                    return Err(ConfigError::new(format!("{key}.window"), "must be at least 1"));
                }
                Ok(DeviceSettings::Loopback(cfg))
            }
            "smpp" => {
                let cfg: SmppConfig = toml::Value::Table(self.rest.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::new(&key, e.message().to_string()))?;
                if cfg.host.is_empty() {
                    return Err(ConfigError::new(format!("{key}.host"), "is empty: give the SMSC's host name or address"));
                }
                if cfg.system_id.is_empty() || cfg.system_id.len() > 15 {
                    return Err(ConfigError::new(format!("{key}.system_id"), "must be 1 to 15 characters (SMPP 3.4 §5.2.1)"));
                }
                if cfg.password.len() > 8 {
                    return Err(ConfigError::new(format!("{key}.password"), "is longer than the 8 characters SMPP 3.4 allows (§5.2.2)"));
                }

                if let Some(f) = &cfg.tls_ca_file {
                    if !std::path::Path::new(f).is_file() {
                        return Err(ConfigError::new(format!("{key}.tls_ca_file"), format!("\"{f}\" is not a readable file")));
                    }
                }
                if cfg.window == 0 {
                    return Err(ConfigError::new(format!("{key}.window"), "must be at least 1"));
                }
                if cfg.binds == 0 {
                    return Err(ConfigError::new(format!("{key}.binds"), "must be at least 1"));
                }
                if cfg.reassembly_budget.0 < 1024 {
                    return Err(ConfigError::new(format!("{key}.reassembly_budget"), "must be at least 1KiB"));
                }
                if cfg.enquire_link.0 < Duration::from_secs(1) {
                    return Err(ConfigError::new(format!("{key}.enquire_link"), "must be at least 1s"));
                }
                if cfg.response_timeout.0 < Duration::from_millis(100) {
                    return Err(ConfigError::new(format!("{key}.response_timeout"), "must be at least 100ms"));
                }
                if cfg.reconnect_min.0.is_zero() || cfg.reconnect_min.0 > cfg.reconnect_max.0 {
                    return Err(ConfigError::new(
                        format!("{key}.reconnect_min"),
                        "must be above zero and no more than reconnect_max",
                    ));
                }
                for (field, v) in [("resp_id_format", &cfg.resp_id_format), ("receipt_id_format", &cfg.receipt_id_format)] {
                    if !matches!(v.as_str(), "auto" | "hex" | "decimal" | "text") {
                        return Err(ConfigError::new(format!("{key}.{field}"), format!("\"{v}\": use auto, hex, decimal or text")));
                    }
                }
                if !matches!(cfg.default_alphabet.as_str(), "gsm7" | "latin1" | "ascii") {
                    return Err(ConfigError::new(format!("{key}.default_alphabet"), "use gsm7, latin1 or ascii"));
                }
                Ok(DeviceSettings::Smpp(Box::new(cfg)))
            }
            "modem" | "remote" => Err(ConfigError::new(
                format!("{key}.kind"),
                format!(
                    "device kind \"{}\" is not available in this build of textgate yet; use \"smpp\" or \"loopback\"",
                    self.kind
                ),
            )),
            other => Err(ConfigError::new(
                format!("{key}.kind"),
                format!("unknown device kind \"{other}\": use smpp, modem, remote or loopback"),
            )),
        }
    }
}

/// `[mailer]`: texts to e-mail (inbound rules' `email`, replies to texts that came from
/// e-mail, failure notices) through the company's relay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailerConfig {
    /// `smtp://host:port` (STARTTLS when the relay offers it), `smtp+starttls://host:port`
    /// (STARTTLS required) or `smtps://host:port` (TLS from the first byte).
    pub relay: String,
    /// The envelope sender of every e-mail, and the sender of notices.
    pub from: String,
    /// SMTP AUTH user at the relay.
    pub username: Option<String>,
    /// SMTP AUTH password (`TEXTGATE_MAILER_PASSWORD` overrides it).
    pub password: Option<String>,
    /// How long one e-mail may take.
    #[serde(default = "mailer_timeout")]
    pub timeout: Dur,
    /// Tell the sender of an e-mail when a text made from it finally fails.
    #[serde(default = "yes")]
    pub failure_notices: bool,
    /// The first retry delay while the relay refuses or is down; doubles each attempt.
    #[serde(default = "mailer_backoff")]
    pub backoff: Dur,
    /// The longest retry delay.
    #[serde(default = "mailer_backoff_max")]
    pub backoff_max: Dur,
    /// An e-mail is retried this long, then kept as a dead letter.
    #[serde(default = "mailer_retry_for")]
    pub retry_for: Dur,
    /// E-mails in flight at once.
    #[serde(default = "mailer_concurrency")]
    pub concurrency: usize,
}

fn mailer_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn mailer_backoff() -> Dur {
    Dur(Duration::from_secs(10))
}
fn mailer_backoff_max() -> Dur {
    Dur(Duration::from_secs(1800))
}
fn mailer_retry_for() -> Dur {
    Dur(Duration::from_secs(3 * 24 * 3600))
}
fn mailer_concurrency() -> usize {
    8
}

/// How the mailer reaches its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS when offered, plain otherwise (`smtp://`).
    Opportunistic,
    /// STARTTLS or fail (`smtp+starttls://`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

impl MailerConfig {
    /// The relay's TLS mode, host and port.
    pub fn relay_parts(&self) -> Result<(RelayTls, String, u16), ConfigError> {
        let bad = || {
            ConfigError::new(
                "mailer.relay",
                format!(
                    "\"{}\" is not a relay URL: write it like \"smtp://mail.example.com:25\", \"smtp+starttls://mail.example.com:587\" or \"smtps://mail.example.com:465\"",
                    self.relay
                ),
            )
        };
        let (scheme, rest) = self.relay.split_once("://").ok_or_else(bad)?;
        let (tls, default_port) = match scheme {
            "smtp" => (RelayTls::Opportunistic, 25),
            "smtp+starttls" => (RelayTls::StartTls, 587),
            "smtps" => (RelayTls::Wrapper, 465),
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, default_port),
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok((tls, host.to_string(), port))
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.relay_parts()?;
        let f = &self.from;
        if !f.contains('@')
            || f.contains(char::is_whitespace)
            || f.starts_with('@')
            || f.ends_with('@')
        {
            return Err(ConfigError::new(
                "mailer.from",
                format!("\"{f}\" is not an e-mail address"),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::new(
                "mailer.password",
                "username and password go together: give both (the password may come from TEXTGATE_MAILER_PASSWORD) or neither",
            ));
        }
        // smtp:// uses STARTTLS only when the relay offers it, and anyone on the path can
        // strip the offer: the password would then go in the clear.
        if self.username.is_some() && self.relay_parts()?.0 == RelayTls::Opportunistic {
            return Err(ConfigError::new(
                "mailer.relay",
                "a username and password are set, but smtp:// does not require TLS, so they could be sent in the clear: use smtp+starttls:// (port 587) or smtps:// (port 465)",
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::new("mailer.concurrency", "must be at least 1"));
        }
        if self.timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::new("mailer.timeout", "must be at least 1s"));
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff_max.0 {
            return Err(ConfigError::new(
                "mailer.backoff",
                "must be above zero and no more than backoff_max",
            ));
        }
        Ok(())
    }

    /// The retry settings in the form the delivery loop takes.
    pub fn delivery_policy(&self) -> WebhooksConfig {
        WebhooksConfig {
            timeout: self.timeout,
            backoff: self.backoff,
            backoff_max: self.backoff_max,
            retry_for: self.retry_for,
            concurrency: self.concurrency,
            // Failure notices go to each user's own address: one relay serves all of them.
            per_owner_concurrency: self.concurrency,
        }
    }
}

/// `[smtp]`: the e-mail to SMS gateway (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Where the SMTP listener listens.
    pub listen: String,
    /// Mail to `DIGITS@domain` for these domains is one text to that number.
    pub domains: Vec<String>,
    /// Mail to these addresses is one text to each number in the Subject.
    pub addresses: Vec<String>,
    /// Envelope senders that may send without SMTP AUTH (`*@example.com`, `ops@example.com`).
    pub allowed_senders: Vec<String>,
    /// The largest e-mail taken (advertised as SIZE, RFC 1870).
    pub max_message_bytes: Bytes,
    /// Recipients (texts) one e-mail may have.
    pub max_recipients: usize,
    /// Connections served at once; more are answered 421 and closed.
    pub max_connections: usize,
    /// PEM certificate chain for STARTTLS; STARTTLS is offered only with `tls_key`.
    pub tls_cert: Option<String>,
    /// PEM private key for STARTTLS.
    pub tls_key: Option<String>,
    /// The user who owns texts from an allowed sender whose address is no user's `email`;
    /// without it such mail is refused.
    pub user: Option<String>,
    /// Cut a text that needs more than `[server] max_parts` parts instead of refusing it.
    pub truncate: bool,
    /// How long a client has for each command line, counted from the reply to the one
    /// before (RFC 5321 §4.5.3.2.7 suggests 5m): sending it a byte at a time does not help.
    pub command_timeout: Dur,
    /// How long a client has for a whole message, from the 354 reply to the final dot.
    pub data_timeout: Dur,
    /// How long one connection may last, however busy.
    pub session_timeout: Dur,
    /// Connections one client address may have open at once; more are answered 421.
    pub max_connections_per_client: usize,
    /// Client networks whose mail from `allowed_senders` is taken without AUTH (the company
    /// mail server that relays to textgate); from anywhere else, AUTH is required.
    pub trusted_networks: Vec<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".into(),
            domains: Vec::new(),
            addresses: Vec::new(),
            allowed_senders: Vec::new(),
            max_message_bytes: Bytes(10 << 20),
            max_recipients: 100,
            max_connections: 1000,
            tls_cert: None,
            tls_key: None,
            user: None,
            truncate: false,
            command_timeout: Dur(Duration::from_secs(300)),
            data_timeout: Dur(Duration::from_secs(600)),
            session_timeout: Dur(Duration::from_secs(3600)),
            max_connections_per_client: 20,
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

impl SmtpConfig {
    /// What the embedded defaults run: mail to `NUMBER@sms.localhost` on 127.0.0.1:2525, from
    /// authenticated senders only (AUTH is offered there because the address is loopback).
    pub fn embedded() -> SmtpConfig {
        SmtpConfig {
            domains: vec!["sms.localhost".into()],
            ..SmtpConfig::default()
        }
    }

    /// Checks every key; `[server]` is not consulted.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "smtp.listen",
                format!(
                    "\"{}\" is not an address: write it like \"127.0.0.1:2525\"",
                    self.listen
                ),
            )
        })?;
        if self.domains.is_empty() && self.addresses.is_empty() {
            return Err(ConfigError::new(
                "smtp.domains",
                "neither domains nor addresses is set, so no mail could be taken: add a domain (mail to 15551234567@DOMAIN) or an address (numbers in the Subject)",
            ));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if !is_domain(d) {
                return Err(ConfigError::new(
                    format!("smtp.domains[{i}]"),
                    format!("\"{d}\" is not a domain name: write it like \"sms.example.com\""),
                ));
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let ok = a
                .rsplit_once('@')
                .is_some_and(|(local, domain)| is_local_part(local) && is_domain(domain));
            if !ok {
                return Err(ConfigError::new(
                    format!("smtp.addresses[{i}]"),
                    format!(
                        "\"{a}\" is not an e-mail address: write it like \"textmsg@example.com\""
                    ),
                ));
            }
        }
        for (i, p) in self.allowed_senders.iter().enumerate() {
            let ok = p.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !p
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "<>,;".contains(c))
            });
            if !ok {
                return Err(ConfigError::new(
                    format!("smtp.allowed_senders[{i}]"),
                    format!("\"{p}\" is not a sender pattern: write an address, where * stands for any text, like \"*@example.com\" or \"alerts@example.com\""),
                ));
            }
        }
        if self.max_message_bytes.0 < 1024 {
            return Err(ConfigError::new(
                "smtp.max_message_bytes",
                "must be at least 1KiB",
            ));
        }
        crate::net::parse_cidrs(&self.trusted_networks)
            .map_err(|e| ConfigError::new("smtp.trusted_networks", e))?;
        if self.max_connections_per_client == 0 {
            return Err(ConfigError::new(
                "smtp.max_connections_per_client",
                "must be at least 1",
            ));
        }

        if self.max_recipients == 0 {
            return Err(ConfigError::new(
                "smtp.max_recipients",
                "must be at least 1",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "smtp.max_connections",
                "must be at least 1",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "smtp.tls_key",
                    "is missing: STARTTLS needs both tls_cert and tls_key",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "smtp.tls_cert",
                    "is missing: STARTTLS needs both tls_cert and tls_key",
                ))
            }
            _ => {}
        }
        for (key, file) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if let Some(f) = file {
                if !std::path::Path::new(f).is_file() {
                    return Err(ConfigError::new(
                        format!("smtp.{key}"),
                        format!("\"{f}\" is not a readable file"),
                    ));
                }
            }
        }
        if self.user.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(
                "smtp.user",
                "is empty: give a user's name, or remove the key",
            ));
        }
        for (key, d) in [
            ("command_timeout", self.command_timeout),
            ("data_timeout", self.data_timeout),
            ("session_timeout", self.session_timeout),
        ] {
            if d.0 < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    format!("smtp.{key}"),
                    "must be at least 1s",
                ));
            }
        }
        Ok(())
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels (RFC 1035 §2.3.1).
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A dot-atom local part (RFC 5322 §3.2.3); quoted local parts are not worth supporting here.
fn is_local_part(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && !l.starts_with('.')
        && !l.ends_with('.')
        && !l.contains("..")
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
}

/// One `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// E.164 prefix such as `+1` or `+4420`; none = every number.
    pub prefix: Option<String>,
    /// Devices in failover order.
    pub devices: Vec<String>,
    /// Only messages of these users (by name); none = everyone's.
    #[serde(default)]
    pub users: Vec<String>,
}

/// Values that may come from the environment instead of the file, so secrets stay out of it.
/// `TEXTGATE_DATABASE_URL`, `TEXTGATE_HTTP_LISTEN`, `TEXTGATE_WEBHOOK_SECRET`,
/// `TEXTGATE_SMTP_LISTEN` (when `[smtp]` is on) and, per device,
/// `TEXTGATE_DEVICE_<NAME>_PASSWORD` (name upper-cased, other characters as `_`).
pub fn env_var_for_device(name: &str, key: &str) -> String {
    let norm: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TEXTGATE_DEVICE_{norm}_{}", key.to_ascii_uppercase())
}

impl Config {
    /// The embedded defaults: SQLite under `./textgate-data/`, HTTP on 127.0.0.1:8080, SMTP on
    /// 127.0.0.1:2525 for `NUMBER@sms.localhost`, one `loopback` device that every message is
    /// routed to.
    pub fn embedded_defaults() -> Config {
        Config {
            server: ServerConfig::default(),
            devices: vec![DeviceConfig {
                name: "loopback".into(),
                kind: "loopback".into(),
                enabled: true,
                max_rate: 0,
                rest: toml::Table::new(),
            }],
            routes: Vec::new(),
            smtp: Some(SmtpConfig::embedded()),
            mailer: None,
            spool: None,
            port_servers: Vec::new(),
            inbound_rules: Vec::new(),
            inbound: InboundConfig::default(),
            webhooks: WebhooksConfig::default(),
            auth: AuthConfig::default(),
            retention: RetentionConfig::default(),
        }
    }

    /// Parses a file's text and applies the environment (`env` looks a variable up). The
    /// result is not yet checked: call [`Config::check`].
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "config".to_string());
            ConfigError::new(span, e.message().to_string())
        })?;
        cfg.apply_env(env);
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
            )
        })?;
        let env = |k: &str| std::env::var(k).ok();
        Config::parse(&text, &env)
    }

    /// Overrides secrets and deployment-specific values from the environment.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if let Some(v) = env("TEXTGATE_DATABASE_URL") {
            self.server.database_url = v;
        }
        if let Some(v) = env("TEXTGATE_HTTP_LISTEN") {
            self.server.http_listen = v;
        }
        if let Some(v) = env("TEXTGATE_WEBHOOK_SECRET") {
            self.server.webhook_secret = Some(v);
        }
        if let Some(v) = env("TEXTGATE_METRICS_TOKEN") {
            self.server.metrics_token = Some(v);
        }
        if let (Some(m), Some(v)) = (self.mailer.as_mut(), env("TEXTGATE_MAILER_PASSWORD")) {
            m.password = Some(v);
        }
        if let (Some(smtp), Some(v)) = (self.smtp.as_mut(), env("TEXTGATE_SMTP_LISTEN")) {
            smtp.listen = v;
        }
        // Only kinds that log in somewhere have a password to override.
        for d in self.devices.iter_mut().filter(|d| d.kind == "smpp") {
            if let Some(v) = env(&env_var_for_device(&d.name, "password")) {
                d.rest.insert("password".into(), toml::Value::String(v));
            }
        }
    }

    /// The default country, parsed.
    pub fn default_country(&self) -> Option<Country> {
        self.server
            .default_country
            .as_deref()
            .and_then(|c| c.parse().ok())
    }

    /// Checks the whole configuration; the first problem found is returned.
    pub fn check(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        s.http_listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "server.http_listen",
                format!(
                    "\"{}\" is not an address: write it like \"127.0.0.1:8080\"",
                    s.http_listen
                ),
            )
        })?;
        let url = s.database_url.as_str();
        if !(url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "server.database_url",
                format!(
                    "\"{}\" is not a database URL: use sqlite://PATH or postgres://user@host/db",
                    redact_url(url)
                ),
            ));
        }
        if let Some(c) = &s.default_country {
            c.parse::<Country>()
                .map_err(|e| ConfigError::new("server.default_country", e.to_string()))?;
        }
        if s.claim_lease.0 < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "server.claim_lease",
                "must be at least 1s",
            ));
        }
        if s.max_parts == 0 || s.max_parts > 255 {
            return Err(ConfigError::new(
                "server.max_parts",
                "must be from 1 to 255 (the UDH part counter is one byte)",
            ));
        }
        if s.max_recipients == 0 {
            return Err(ConfigError::new(
                "server.max_recipients",
                "must be at least 1",
            ));
        }
        if s.max_attempts == 0 {
            return Err(ConfigError::new(
                "server.max_attempts",
                "must be at least 1",
            ));
        }
        if s.max_request_bytes.0 < 1024 {
            return Err(ConfigError::new(
                "server.max_request_bytes",
                "must be at least 1KiB",
            ));
        }
        s.check_limits()?;
        self.auth.check()?;
        self.retention.check()?;
        if let Some(smtp) = &self.smtp {
            smtp.check()?;
        }
        if let Some(m) = &self.mailer {
            m.check()?;
        }
        for (section, present) in [("port_server", !self.port_servers.is_empty())] {
            if present {
                return Err(ConfigError::new(
                    section,
                    "this section's feature is not available in this build of textgate yet; remove it",
                ));
            }
        }
        if let Some(sp) = &self.spool {
            sp.check()?;
        }
        if s.job_number_columns.is_empty()
            || s.job_number_columns.iter().any(|c| c.trim().is_empty())
        {
            return Err(ConfigError::new(
                "server.job_number_columns",
                "must list at least one column name, and no empty one",
            ));
        }
        if self.devices.is_empty() {
            return Err(ConfigError::new(
                "device",
                "no [[device]] is configured, so no message could ever be sent: add one (kind = \"loopback\" for a trial)",
            ));
        }
        let mut names = HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::new(
                    format!("device[{i}].name"),
                    format!(
                        "\"{}\" is not a usable name: use letters, digits, - and _",
                        d.name
                    ),
                ));
            }
            if !names.insert(d.name.as_str()) {
                return Err(ConfigError::new(
                    format!("device[{i}].name"),
                    format!("two devices are named \"{}\": names must be unique", d.name),
                ));
            }
            d.settings()?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Some(p) = &r.prefix {
                let digits = p.strip_prefix('+').unwrap_or(p);
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(ConfigError::new(
                        format!("route[{i}].prefix"),
                        format!(
                            "\"{p}\" is not a number prefix: write it like \"+1\" or \"+4420\""
                        ),
                    ));
                }
            }
            if r.devices.is_empty() {
                return Err(ConfigError::new(
                    format!("route[{i}].devices"),
                    "lists no device",
                ));
            }
            for d in &r.devices {
                if !names.contains(d.as_str()) {
                    let known: Vec<_> = self.devices.iter().map(|d| d.name.as_str()).collect();
                    return Err(ConfigError::new(
                        format!("route[{i}].devices"),
                        format!("no device is named \"{d}\" (devices: {})", known.join(", ")),
                    ));
                }
            }
        }
        self.check_inbound(&names)?;
        Ok(())
    }

    fn check_inbound(&self, devices: &HashSet<&str>) -> Result<(), ConfigError> {
        crate::inbound::InboundRules::new(&self.inbound_rules, &self.inbound)?;
        for (i, r) in self.inbound_rules.iter().enumerate() {
            if let Some(d) = &r.device {
                if !devices.contains(d.as_str()) {
                    return Err(ConfigError::new(
                        format!("inbound_rule[{i}].device"),
                        format!("no device is named \"{d}\""),
                    ));
                }
            }
        }
        let w = &self.webhooks;
        if w.concurrency == 0 {
            return Err(ConfigError::new(
                "webhooks.concurrency",
                "must be at least 1",
            ));
        }
        if w.per_owner_concurrency == 0 {
            return Err(ConfigError::new(
                "webhooks.per_owner_concurrency",
                "must be at least 1",
            ));
        }
        if w.timeout.0 < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "webhooks.timeout",
                "must be at least 100ms",
            ));
        }
        if w.backoff.0.is_zero() || w.backoff.0 > w.backoff_max.0 {
            return Err(ConfigError::new(
                "webhooks.backoff",
                "must be above zero and no more than backoff_max",
            ));
        }
        Ok(())
    }
}

impl SpoolConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.dir.trim().is_empty() {
            return Err(ConfigError::new("spool.dir", "must name a folder"));
        }
        if self.user.trim().is_empty() {
            return Err(ConfigError::new(
                "spool.user",
                "must name the user who owns the folder's jobs",
            ));
        }
        if self.poll_interval.0 < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "spool.poll_interval",
                "must be at least 10ms",
            ));
        }
        if let Some(t) = &self.template {
            if t.matches("{{").count() != t.matches("}}").count() {
                return Err(ConfigError::new(
                    "spool.template",
                    "has a \"{{\" without its \"}}\" (or the other way round)",
                ));
            }
        }
        Ok(())
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn backoff_saturates_instead_of_panicking_on_huge_durations() {
        // retry_backoff = retry_backoff_max = "500000000000y" passes check(); the jitter's
        // +20 % used to overflow Duration and panic the retry path.
        let huge = humantime::parse_duration("500000000000y").unwrap();
        assert_eq!(backoff(huge, huge, 1, 1.0), Duration::MAX);
        assert_eq!(backoff(huge, huge, 1, 0.0), huge.mul_f64(0.8));
        let s = Duration::from_secs(1);
        assert_eq!(
            backoff(s, Duration::from_secs(600), 3, 0.5),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn embedded_defaults_check() {
        let c = Config::embedded_defaults();
        c.check().unwrap();
        assert_eq!(c.server.http_listen, "127.0.0.1:8080");
        assert_eq!(c.server.max_parts, 10);
    }

    #[test]
    fn parses_the_contract_keys() {
        let text = r#"
[server]
http_listen = "127.0.0.1:9090"
database_url = "postgres://tg@127.0.0.1/test"
default_country = "US"
claim_lease = "45s"
max_request_bytes = "2MiB"
max_upload_bytes = "1GiB"
max_recipients = 50

[[device]]
name = "lb"
kind = "loopback"
report_delay = "10ms"
failure_rate = 0.1

[[route]]
prefix = "+1"
devices = ["lb"]
"#;
        let c = Config::parse(text, &no_env).unwrap();
        c.check().unwrap();
        assert_eq!(c.server.claim_lease, Dur(Duration::from_secs(45)));
        assert_eq!(c.server.max_request_bytes, Bytes(2 << 20));
        let DeviceSettings::Loopback(lb) = c.devices[0].settings().unwrap() else {
            panic!("a loopback device")
        };
        assert_eq!(lb.report_delay, Dur(Duration::from_millis(10)));
        assert!((lb.failure_rate - 0.1).abs() < 1e-9);
    }

    #[test]
    fn names_the_bad_key() {
        let bad = |text: &str| -> ConfigError {
            match Config::parse(text, &no_env) {
                Err(e) => e,
                Ok(c) => c.check().unwrap_err(),
            }
        };
        let e = bad("[server]\nhttp_listn = \"x\"\n");
        assert!(e.message.contains("http_listn"), "{e}");
        assert_eq!(e.key, "line 2");
        let e = bad("[server]\nclaim_lease = \"soon\"\n[[device]]\nname='a'\nkind='loopback'\n");
        assert!(e.message.contains("not a duration"), "{e}");
        let e = bad("[[device]]\nname='a'\nkind='loopback'\n[[route]]\ndevices=['b']\n");
        assert_eq!(e.key, "route[0].devices");
        assert!(e.message.contains("\"b\""));
        let e = bad("[[device]]\nname='a'\nkind='fax'\n");
        assert_eq!(e.key, "device \"a\".kind");
        let e = bad("[[device]]\nname='a'\nkind='loopback'\ncolour='red'\n");
        assert!(e.message.contains("colour"), "{e}");
        let e = bad("[server]\nhttp_listen='nowhere'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "server.http_listen");
        let e = bad("[server]\ndefault_country='XX'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "server.default_country");
        let e = bad("");
        assert_eq!(e.key, "device");
        let e = bad("[mailer]\nrelay='http://x'\nfrom='sms@example.com'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "mailer.relay");
        let e = bad(
            "[mailer]\nrelay='smtp://x'\nfrom='nobody'\n[[device]]\nname='a'\nkind='loopback'\n",
        );
        assert_eq!(e.key, "mailer.from");
        let e = bad("[mailer]\nrelay='smtp://x'\nfrom='a@b.c'\nusername='u'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "mailer.password");
        let e = bad("[mailer]\nrelay='smtp://x'\nfrom='a@b.c'\nusername='u'\npassword='p'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "mailer.relay");
        assert!(
            e.message.contains("in the clear") && e.message.contains("smtp+starttls://"),
            "{e}"
        );
        let ok = Config::parse("[mailer]\nrelay='smtp+starttls://x'\nfrom='a@b.c'\nusername='u'\npassword='p'\n[[device]]\nname='a'\nkind='loopback'\n", &no_env).unwrap();
        ok.check().unwrap();
        let ok = Config::parse("[mailer]\nrelay='smtps://mail.example.com'\nfrom='a@b.c'\n[[device]]\nname='a'\nkind='loopback'\n", &no_env).unwrap();
        ok.check().unwrap();
        let m = ok.mailer.unwrap();
        assert_eq!(
            m.relay_parts().unwrap(),
            (RelayTls::Wrapper, "mail.example.com".to_string(), 465)
        );
        assert!(m.failure_notices);
        let e = bad("[spool]\ndir='x'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert!(e.message.contains("user"), "{e}");
        let e = bad(
            "[spool]\ndir='x'\nuser='batch'\ncolour='red'\n[[device]]\nname='a'\nkind='loopback'\n",
        );
        assert!(e.message.contains("colour"), "{e}");
        let e = bad("[spool]\ndir=''\nuser='batch'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "spool.dir");
        let e = bad("[spool]\ndir='x'\nuser='b'\ntemplate='Hi {{name'\n[[device]]\nname='a'\nkind='loopback'\n");
        assert_eq!(e.key, "spool.template");
    }

    #[test]
    fn spool_keys_are_typed() {
        let text = "[spool]\ndir='/srv/spool'\nuser='batch'\ntemplate='Hi {{name}}'\nfrom='ACME'\nsettle='500ms'\n[[device]]\nname='a'\nkind='loopback'\n";
        let c = Config::parse(text, &no_env).unwrap();
        c.check().unwrap();
        let sp = c.spool.unwrap();
        assert_eq!((sp.dir.as_str(), sp.user.as_str()), ("/srv/spool", "batch"));
        assert_eq!(sp.settle, Dur(Duration::from_millis(500)));
        assert_eq!(sp.poll_interval, Dur(Duration::from_secs(1)));
        assert_eq!(sp.from.as_deref(), Some("ACME"));
    }

    #[test]
    fn smtp_keys_are_parsed_and_checked() {
        let dev = "[[device]]\nname='a'\nkind='loopback'\n";
        let text = format!(
            "[smtp]\nlisten='127.0.0.1:0'\ndomains=['sms.example.com']\naddresses=['textmsg@example.com']\n\
             allowed_senders=['*@example.com']\nmax_message_bytes='2MiB'\nuser='batch'\ntruncate=true\n\
             command_timeout='30s'\n{dev}"
        );
        let c = Config::parse(&text, &no_env).unwrap();
        c.check().unwrap();
        let s = c.smtp.as_ref().unwrap();
        assert_eq!(s.max_message_bytes, Bytes(2 << 20));
        assert_eq!(s.command_timeout, Dur(Duration::from_secs(30)));
        assert_eq!(s.data_timeout, Dur(Duration::from_secs(600)));
        assert_eq!(
            (s.user.as_deref(), s.truncate, s.max_recipients),
            (Some("batch"), true, 100)
        );
        let bad = |smtp: &str| -> ConfigError {
            match Config::parse(&format!("[smtp]\n{smtp}\n{dev}"), &no_env) {
                Err(e) => e,
                Ok(c) => c.check().unwrap_err(),
            }
        };
        assert_eq!(bad("listen='x'\ndomains=['a.b']").key, "smtp.listen");
        assert_eq!(bad("").key, "smtp.domains");
        assert_eq!(bad("domains=['bad domain']").key, "smtp.domains[0]");
        assert_eq!(bad("addresses=['nobody']").key, "smtp.addresses[0]");
        assert_eq!(
            bad("domains=['a.b']\nallowed_senders=['example.com']").key,
            "smtp.allowed_senders[0]"
        );
        assert_eq!(
            bad("domains=['a.b']\ntls_cert='/nonexistent.pem'").key,
            "smtp.tls_key"
        );
        assert_eq!(
            bad("domains=['a.b']\ntls_cert='/nonexistent.pem'\ntls_key='/nonexistent.pem'").key,
            "smtp.tls_cert"
        );
        assert_eq!(
            bad("domains=['a.b']\nmax_recipients=0").key,
            "smtp.max_recipients"
        );
        assert_eq!(
            bad("domains=['a.b']\ndata_timeout='0s'").key,
            "smtp.data_timeout"
        );
        assert!(bad("domains=['a.b']\nrelay=true").message.contains("relay"));
        // The embedded defaults take NUMBER@sms.localhost on 127.0.0.1:2525, and the
        // environment can move the listener.
        let mut d = Config::embedded_defaults();
        assert_eq!(d.smtp.as_ref().unwrap().domains, ["sms.localhost"]);
        assert_eq!(d.smtp.as_ref().unwrap().listen, "127.0.0.1:2525");
        d.apply_env(&|k| (k == "TEXTGATE_SMTP_LISTEN").then(|| "127.0.0.1:0".to_string()));
        assert_eq!(d.smtp.as_ref().unwrap().listen, "127.0.0.1:0");
        d.check().unwrap();
    }

    #[test]
    fn environment_overrides_secrets() {
        let env = |k: &str| match k {
            "TEXTGATE_DATABASE_URL" => Some("postgres://x@y/z".to_string()),
            "TEXTGATE_DEVICE_SMSC_1_PASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let c = Config::parse("[[device]]\nname='smsc-1'\nkind='smpp'\n", &env).unwrap();
        assert_eq!(c.server.database_url, "postgres://x@y/z");
        assert_eq!(
            c.devices[0].rest.get("password").and_then(|v| v.as_str()),
            Some("s3cret")
        );
        // A loopback device has no password: the variable must not break it.
        let env = |k: &str| (k == "TEXTGATE_DEVICE_LB_PASSWORD").then(|| "x".to_string());
        let c = Config::parse("[[device]]\nname='lb'\nkind='loopback'\n", &env).unwrap();
        c.check().unwrap();
    }

    #[test]
    fn smpp_keys_are_parsed_and_checked() {
        let text = "[[device]]\nname='smsc1'\nkind='smpp'\nhost='127.0.0.1'\nsystem_id='user'\npassword='secret'\nwindow=50\nlong_messages='sar'\n";
        let c = Config::parse(text, &no_env).unwrap();
        let DeviceSettings::Smpp(s) = c.devices[0].settings().unwrap() else {
            panic!("an smpp device")
        };
        assert_eq!(
            (s.port, s.window, s.bind, s.long_messages),
            (2775, 50, BindMode::Transceiver, LongMessages::Sar)
        );
        assert_eq!(s.enquire_link, Dur(Duration::from_secs(30)));
        c.check().unwrap();
        let bad = |extra: &str| {
            let c = Config::parse(&format!("{text}{extra}\n"), &no_env).unwrap();
            c.devices[0].settings().unwrap_err()
        };
        assert_eq!(
            bad("tls=true\ntls_ca_file='/nonexistent.pem'").key,
            "device \"smsc1\".tls_ca_file"
        );
        assert_eq!(
            bad("receipt_id_format='roman'").key,
            "device \"smsc1\".receipt_id_format"
        );
        assert!(bad("bind='sideways'").message.contains("sideways"));
        assert_eq!(
            bad("enquire_link='0s'").key,
            "device \"smsc1\".enquire_link"
        );
        assert_eq!(bad("binds=0").key, "device \"smsc1\".binds");
        assert_eq!(
            bad("reconnect_min='2m'").key,
            "device \"smsc1\".reconnect_min"
        );
        let long_pw = Config::parse(&text.replace("secret", "much-too-long"), &no_env).unwrap();
        assert_eq!(
            long_pw.devices[0].settings().unwrap_err().key,
            "device \"smsc1\".password"
        );
    }

    #[test]
    fn sizes_and_redaction() {
        assert_eq!(Bytes::parse("1MiB").unwrap(), Bytes(1 << 20));
        assert_eq!(Bytes::parse("10 MB").unwrap(), Bytes(10_000_000));
        assert_eq!(Bytes::parse("123").unwrap(), Bytes(123));
        assert!(Bytes::parse("1 parsec").is_err());
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
