//! `[server]`: the HTTP listener and its limits, the database, and what every message
//! shares (country, parts, retries, validity).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{Bytes, ConfigError, Dur};
use crate::address::Country;

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
    /// This node's name among the nodes on one database (default: the host's name).
    pub node_name: Option<String>,
    /// How often a node says it is alive.
    pub node_heartbeat: Dur,
    /// A node silent this long is dead: what it held is taken over.
    pub node_dead_after: Dur,
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
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.http_listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "server.http_listen",
                format!(
                    "\"{}\" is not an address: write it like \"127.0.0.1:8080\"",
                    self.http_listen
                ),
            )
        })?;
        let url = self.database_url.as_str();
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
        if let Some(c) = &self.default_country {
            c.parse::<Country>()
                .map_err(|e| ConfigError::new("server.default_country", e.to_string()))?;
        }
        if self.claim_lease.0 < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "server.claim_lease",
                "must be at least 1s",
            ));
        }
        if let Some(n) = &self.node_name {
            if n.is_empty()
                || n.len() > 64
                || n.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(ConfigError::new(
                    "server.node_name",
                    "must be 1 to 64 characters, no spaces",
                ));
            }
        }
        if self.node_heartbeat.0 < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "server.node_heartbeat",
                "must be at least 100ms",
            ));
        }
        if self.node_dead_after.0 < self.node_heartbeat.0 * 3 {
            return Err(ConfigError::new(
                "server.node_dead_after",
                "must be at least three node_heartbeats, so that one late beat does not make a live node dead",
            ));
        }
        if self.max_parts == 0 || self.max_parts > 255 {
            return Err(ConfigError::new(
                "server.max_parts",
                "must be from 1 to 255 (the UDH part counter is one byte)",
            ));
        }
        for (key, n) in [
            ("max_recipients", self.max_recipients),
            ("max_attempts", self.max_attempts as usize),
        ] {
            if n == 0 {
                return Err(ConfigError::new(
                    format!("server.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if self.max_request_bytes.0 < 1024 {
            return Err(ConfigError::new(
                "server.max_request_bytes",
                "must be at least 1KiB",
            ));
        }
        if self.job_number_columns.is_empty()
            || self.job_number_columns.iter().any(|c| c.trim().is_empty())
        {
            return Err(ConfigError::new(
                "server.job_number_columns",
                "must list at least one column name, and no empty one",
            ));
        }
        self.check_limits()
    }

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

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://textgate-data/textgate.db".into(),
            default_country: None,
            public_url: None,
            claim_lease: Dur(Duration::from_secs(30)),
            node_name: None,
            node_heartbeat: Dur(Duration::from_secs(2)),
            node_dead_after: Dur(Duration::from_secs(10)),
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
