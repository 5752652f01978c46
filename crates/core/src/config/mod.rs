//! The configuration file (docs/configuration.md): TOML, layered as embedded defaults ← file
//! ← environment (for secrets), then checked as a whole so that `textgate check` can name the
//! bad key and say why before anything starts. Pure: the binary reads the file and the
//! environment and hands them to [`Config::parse`].
//!
//! One module per section, each with its checks:
//! - [`server`]: `[server]`, the HTTP listener's limits and what every message shares;
//! - [`devices`]: `[[device]]` and each kind's keys; [`routes`]: `[[route]]`;
//! - [`smtp`]: `[smtp]`; [`mailer`]: `[mailer]`; [`spool`]: `[spool]`;
//! - [`inbound`]: `[[inbound_rule]]`, `[inbound]` and `[webhooks]`;
//! - [`auth`]: `[auth]`; [`retention`]: `[retention]`; [`quotas`]: `[quotas]`; [`log`]: `[log]`;
//! - [`units`]: durations, sizes and the backoff.
//!
//! - [`port`]: `[[port_server]]`, `kind = "remote"` devices, and the port server's own file.

pub mod auth;
pub mod devices;
pub mod inbound;
pub mod log;
pub mod mailer;
pub mod port;
pub mod quotas;
pub mod retention;
pub mod routes;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod units;

use serde::Deserialize;

use crate::address::Country;
pub use auth::AuthConfig;
pub use devices::{
    env_var_for_device, BindMode, DefaultAlphabet, DeviceConfig, DeviceSettings, IdFormat,
    LongMessages, LoopbackConfig, ModemConfig, ModemMode, SmppConfig,
};
pub use inbound::{InboundConfig, InboundRuleConfig, WebhooksConfig};
pub use log::{LogConfig, LogFormat};
pub use mailer::{MailerConfig, RelayTls};
pub use port::{env_var_for_port_server, PortConfig, PortServerConfig, RemoteConfig};
pub use quotas::QuotasConfig;
pub use retention::RetentionConfig;
pub use routes::{RouteConfig, Strategy};
pub use server::{redact_url, ServerConfig};
pub use smtp::SmtpConfig;
pub use spool::SpoolConfig;
pub use units::{backoff, Bytes, Dur};

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
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A file that is not TOML, or not of this shape: the line it went wrong on, and why.
pub(crate) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e
        .span()
        .map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}")
        })
        .unwrap_or_else(|| "config".to_string());
    ConfigError::new(at, e.message().to_string())
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
    /// `[[port_server]]`: remote port servers allowed to join.
    #[serde(default, rename = "port_server")]
    pub port_servers: Vec<PortServerConfig>,
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
    /// `[quotas]`: how many texts users may send, unless they have limits of their own.
    #[serde(default)]
    pub quotas: QuotasConfig,
    /// `[log]`: the log's format and level.
    #[serde(default)]
    pub log: LogConfig,
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
            quotas: QuotasConfig::default(),
            log: LogConfig::default(),
        }
    }

    /// Parses a file's text and applies the environment (`env` looks a variable up). The
    /// result is not yet checked: call [`Config::check`].
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        cfg.apply_env(env);
        Ok(cfg)
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
        devices::apply_device_env(&mut self.devices, env);
        for p in &mut self.port_servers {
            if let Some(v) = env(&env_var_for_port_server(&p.name)) {
                p.token = Some(v);
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

    /// Checks the whole configuration, section by section; the first problem found is
    /// returned.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.server.check()?;
        self.auth.check()?;
        self.retention.check()?;
        self.quotas.check()?;
        self.log.check()?;
        if let Some(smtp) = &self.smtp {
            smtp.check()?;
        }
        if let Some(m) = &self.mailer {
            m.check()?;
        }
        let port_servers = port::check_port_servers(&self.port_servers)?;
        if let Some(sp) = &self.spool {
            sp.check()?;
        }
        let names = devices::check_all(&self.devices)?;
        port::check_remote_devices(&self.devices, &port_servers)?;
        routes::check_all(&self.routes, &names, &self.devices)?;
        inbound::check_rules(&self.inbound_rules, &names)?;
        self.webhooks.check()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn durations_over_a_century_are_refused() {
        let e = Config::parse("[server]\nretry_backoff_max = \"500000000000y\"\n", &no_env)
            .unwrap_err();
        assert!(e.message.contains("100 years"), "{e}");
        let ok = Config::parse("[server]\nretry_backoff_max = \"99y\"\n", &no_env).unwrap();
        assert!(ok.server.retry_backoff_max.0 > Duration::from_secs(99 * 365 * 24 * 3600));
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
    fn modem_keys_are_parsed_and_checked_and_the_pin_may_come_from_the_environment() {
        let text = "[[device]]\nname='gsm-1'\nkind='modem'\nserial='/dev/ttyUSB0'\n";
        let env = |k: &str| (k == "TEXTGATE_DEVICE_GSM_1_PIN").then(|| "4321".to_string());
        let c = Config::parse(text, &env).unwrap();
        let DeviceSettings::Modem(m) = c.devices[0].settings().unwrap() else {
            panic!("a modem device")
        };
        assert_eq!(
            (m.baud, m.pin.as_str(), m.storage.as_str(), m.mode),
            (115_200, "4321", "SM", ModemMode::Both)
        );
        c.check().unwrap();
        let bad = |extra: &str| {
            let c = Config::parse(&format!("{text}{extra}\n"), &no_env).unwrap();
            c.devices[0].settings().unwrap_err()
        };
        assert_eq!(bad("pin='12'").key, "device \"gsm-1\".pin");
        assert_eq!(bad("storage='XX'").key, "device \"gsm-1\".storage");
        assert_eq!(bad("smsc='5551234'").key, "device \"gsm-1\".smsc");
        assert_eq!(
            bad("init=[\"ATZ\\r\\nAT+CFUN=0\"]").key,
            "device \"gsm-1\".init"
        );
        assert_eq!(bad("init=['rm -rf']").key, "device \"gsm-1\".init");
        assert_eq!(bad("validity='1m'").key, "device \"gsm-1\".validity");
        assert_eq!(bad("mode='sideways'").key, "device \"gsm-1\"");
        let c = Config::parse("[[device]]\nname='g'\nkind='modem'\nserial=''\n", &no_env).unwrap();
        assert!(c.devices[0]
            .settings()
            .unwrap_err()
            .message
            .contains("serial port"));
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
            bad("inbound_dedup_window='2d'").key,
            "device \"smsc1\".inbound_dedup_window"
        );
        let e = bad("receipt_id_format='roman'");
        assert_eq!(e.key, "device \"smsc1\"");
        assert!(
            e.message.contains("roman") && e.message.contains("decimal"),
            "{e}"
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
