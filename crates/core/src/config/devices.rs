//! `[[device]]`: the SMS devices, their common keys and each kind's own (`smpp`,
//! `loopback`), checked by [`DeviceConfig::settings`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::{Bytes, ConfigError, Dur};

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

/// What `data_coding` 0x00, "SMSC default alphabet" (SMPP 3.4 §5.2.19), means on a given
/// SMSC: the spec leaves it to the SMSC (`default_alphabet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAlphabet {
    /// GSM 03.38 7-bit, one unpacked septet per octet: what most SMSCs mean.
    #[default]
    Gsm7,
    /// ISO-8859-1, as some SMSCs (and their simulators) use.
    Latin1,
    /// IA5 / ASCII.
    Ascii,
}

/// How one side writes message ids (`resp_id_format`, `receipt_id_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    /// Unknown: compare as written, only normalising case and leading zeros of ids that
    /// look numeric (all hex digits).
    #[default]
    Auto,
    /// Hexadecimal digits, any case, optionally `0x`.
    Hex,
    /// Decimal digits.
    Decimal,
    /// An opaque string (a UUID, a mixed-case token): only trimmed.
    Text,
}

/// The kind-specific settings of a device.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSettings {
    /// The built-in loopback device.
    Loopback(LoopbackConfig),
    /// An SMSC account over SMPP 3.4.
    Smpp(Box<SmppConfig>),
    /// A GSM/LTE modem on a serial port.
    Modem(Box<ModemConfig>),
    /// A device of a remote port server.
    Remote(super::port::RemoteConfig),
}

/// What a modem is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModemMode {
    /// Sends only; texts that arrive stay on the SIM.
    Send,
    /// Receives only; no message is routed to it.
    Receive,
    /// Both.
    Both,
}

/// `kind = "modem"`: a GSM/LTE modem driven with AT commands in PDU mode (TS 27.005).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemConfig {
    /// The serial port: `/dev/ttyUSB0`, or better a stable name such as
    /// `/dev/serial/by-id/usb-…`, which survives the port disappearing and coming back.
    pub serial: String,
    /// The port's speed.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// The SIM's PIN, if it asks for one (or `TEXTGATE_DEVICE_<NAME>_PIN`).
    #[serde(default)]
    pub pin: String,
    /// The SMSC number to send through, instead of the one on the SIM (international).
    pub smsc: Option<String>,
    /// The SIM's own number (international): what inbound texts say they were sent to, for
    /// inbound rules with `to`. Default: what the modem answers to `AT+CNUM`, if anything.
    pub number: Option<String>,
    /// Where received texts are stored: `SM` (the SIM), `ME` (the modem) or `MT` (both).
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Commands sent after the standard initialisation (vendor settings), each checked for OK.
    #[serde(default)]
    pub init: Vec<String>,
    /// A command that resets the modem when it stops answering (e.g. `AT+CFUN=1,1`).
    pub reset_command: Option<String>,
    /// send, receive or both.
    #[serde(default = "default_modem_mode")]
    pub mode: ModemMode,
    /// Ask the network for status reports (delivery receipts).
    #[serde(default = "yes")]
    pub status_reports: bool,
    /// The validity period asked for (TP-VP, relative: up to 63 weeks).
    pub validity: Option<Dur>,
    /// How long a command may take before the modem counts as not answering (sending a
    /// text waits up to four times as long: the network answers it).
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Dur,
    /// How often registration, signal and storage are polled, and stored texts swept.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    /// First reopen delay after the port failed; doubles up to `reconnect_max`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Dur,
    /// Longest reopen delay.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Dur,
    /// How long the parts of an inbound long text are awaited before it is stored as partial.
    #[serde(default = "default_reassembly")]
    pub reassembly_timeout: Dur,
}

fn default_baud() -> u32 {
    115_200
}
fn default_storage() -> String {
    "SM".into()
}
fn default_modem_mode() -> ModemMode {
    ModemMode::Both
}
fn default_command_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_poll() -> Dur {
    Dur(Duration::from_secs(30))
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
    #[serde(default)]
    pub default_alphabet: DefaultAlphabet,
    /// How long texts are sent.
    #[serde(default = "default_long")]
    pub long_messages: LongMessages,
    /// Ask for delivery receipts.
    #[serde(default = "yes")]
    pub registered_delivery: bool,
    /// How the SMSC writes ids in submit_sm_resp: auto, hex, decimal or text.
    #[serde(default)]
    pub resp_id_format: IdFormat,
    /// How it writes them in receipts (some SMSCs answer in hex and report in decimal).
    #[serde(default)]
    pub receipt_id_format: IdFormat,
    /// Answer a receipt's deliver_sm only after the receipt is recorded. Safer across a crash
    /// (the SMSC delivers it again), but the SMSC's receipt window then waits for each commit,
    /// which costs throughput; off, a crash can lose the receipts of the last moments (their
    /// messages then expire as "no receipt"), as in other gateways.
    #[serde(default)]
    pub ack_receipts_after_commit: bool,
    /// Inbound texts with the same sender, recipient and text within this long are stored
    /// once (an SMSC that delivers a text again, perhaps to another node's bind, after an
    /// answer it never got); `0s`, the default: every text delivered is stored.
    #[serde(default = "no_window")]
    pub inbound_dedup_window: Dur,
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
pub(super) fn yes() -> bool {
    true
}
fn no_window() -> Dur {
    Dur(Duration::ZERO)
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
fn default_long() -> LongMessages {
    LongMessages::Udh
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
                let cfg: LoopbackConfig =
                    toml::Value::Table(self.rest.clone()).try_into().map_err(
                        |e: toml::de::Error| ConfigError::new(&key, e.message().to_string()),
                    )?;
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
                    return Err(ConfigError::new(
                        format!("{key}.window"),
                        "must be at least 1",
                    ));
                }
                Ok(DeviceSettings::Loopback(cfg))
            }
            "smpp" => {
                let cfg: SmppConfig = toml::Value::Table(self.rest.clone()).try_into().map_err(
                    |e: toml::de::Error| ConfigError::new(&key, e.message().to_string()),
                )?;
                if cfg.host.is_empty() {
                    return Err(ConfigError::new(
                        format!("{key}.host"),
                        "is empty: give the SMSC's host name or address",
                    ));
                }
                if cfg.system_id.is_empty() || cfg.system_id.len() > 15 {
                    return Err(ConfigError::new(
                        format!("{key}.system_id"),
                        "must be 1 to 15 characters (SMPP 3.4 §5.2.1)",
                    ));
                }
                if cfg.password.len() > 8 {
                    return Err(ConfigError::new(
                        format!("{key}.password"),
                        "is longer than the 8 characters SMPP 3.4 allows (§5.2.2)",
                    ));
                }

                if let Some(f) = &cfg.tls_ca_file {
                    if !std::path::Path::new(f).is_file() {
                        return Err(ConfigError::new(
                            format!("{key}.tls_ca_file"),
                            format!("\"{f}\" is not a readable file"),
                        ));
                    }
                }
                if cfg.window == 0 {
                    return Err(ConfigError::new(
                        format!("{key}.window"),
                        "must be at least 1",
                    ));
                }
                if cfg.binds == 0 {
                    return Err(ConfigError::new(
                        format!("{key}.binds"),
                        "must be at least 1",
                    ));
                }
                if cfg.reassembly_budget.0 < 1024 {
                    return Err(ConfigError::new(
                        format!("{key}.reassembly_budget"),
                        "must be at least 1KiB",
                    ));
                }
                if cfg.enquire_link.0 < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        format!("{key}.enquire_link"),
                        "must be at least 1s",
                    ));
                }
                if cfg.response_timeout.0 < Duration::from_millis(100) {
                    return Err(ConfigError::new(
                        format!("{key}.response_timeout"),
                        "must be at least 100ms",
                    ));
                }
                if cfg.reconnect_min.0.is_zero() || cfg.reconnect_min.0 > cfg.reconnect_max.0 {
                    return Err(ConfigError::new(
                        format!("{key}.reconnect_min"),
                        "must be above zero and no more than reconnect_max",
                    ));
                }
                if cfg.inbound_dedup_window.0 > Duration::from_secs(24 * 3600) {
                    return Err(ConfigError::new(
                        format!("{key}.inbound_dedup_window"),
                        "must be at most 1d: an SMSC delivers a text again within minutes, and every key is kept that long",
                    ));
                }
                Ok(DeviceSettings::Smpp(Box::new(cfg)))
            }
            "modem" => {
                let cfg: ModemConfig = toml::Value::Table(self.rest.clone()).try_into().map_err(
                    |e: toml::de::Error| ConfigError::new(&key, e.message().to_string()),
                )?;
                check_modem(&key, &cfg)?;
                Ok(DeviceSettings::Modem(Box::new(cfg)))
            }
            "remote" => {
                let cfg: super::port::RemoteConfig =
                    toml::Value::Table(self.rest.clone()).try_into().map_err(
                        |e: toml::de::Error| ConfigError::new(&key, e.message().to_string()),
                    )?;
                if cfg.port_server.is_empty() {
                    return Err(ConfigError::new(
                        format!("{key}.port_server"),
                        "must name a [[port_server]]",
                    ));
                }
                if cfg.remote_device.as_deref() == Some("") {
                    return Err(ConfigError::new(
                        format!("{key}.remote_device"),
                        "must name one of the port server's devices, or be left out for any",
                    ));
                }
                Ok(DeviceSettings::Remote(cfg))
            }
            other => Err(ConfigError::new(
                format!("{key}.kind"),
                format!("unknown device kind \"{other}\": use smpp, modem, remote or loopback"),
            )),
        }
    }
}

fn check_modem(key: &str, cfg: &ModemConfig) -> Result<(), ConfigError> {
    let bad = |field: &str, why: String| Err(ConfigError::new(format!("{key}.{field}"), why));
    if cfg.serial.trim().is_empty() {
        return bad(
            "serial",
            "is empty: give the modem's serial port, like /dev/ttyUSB0".into(),
        );
    }
    if !(300..=4_000_000).contains(&cfg.baud) {
        return bad(
            "baud",
            format!("{} is not a serial speed: use one like 115200", cfg.baud),
        );
    }
    let pin_ok = (4..=8).contains(&cfg.pin.len()) && cfg.pin.bytes().all(|b| b.is_ascii_digit());
    if !cfg.pin.is_empty() && !pin_ok {
        return bad("pin", "must be 4 to 8 digits".into());
    }
    for (field, n) in [("smsc", &cfg.smsc), ("number", &cfg.number)] {
        let Some(n) = n else { continue };
        let digits = n.strip_prefix('+').unwrap_or("");
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return bad(field, format!("\"{n}\" is not an international number: write it with '+' and the country code"));
        }
    }
    if !matches!(cfg.storage.as_str(), "SM" | "ME" | "MT") {
        return bad(
            "storage",
            format!(
                "\"{}\" is not a message storage: use SM (the SIM), ME (the modem) or MT (both)",
                cfg.storage
            ),
        );
    }
    // A command is one line the modem reads up to its carriage return: nothing may end it early.
    for (field, cmd) in cfg
        .init
        .iter()
        .map(|c| ("init", c))
        .chain(cfg.reset_command.iter().map(|c| ("reset_command", c)))
    {
        if !cmd.to_ascii_uppercase().starts_with("AT")
            || cmd.len() > 200
            || cmd.chars().any(|c| c.is_control())
        {
            return bad(field, format!("\"{cmd}\" is not one AT command: it must start with AT, be one line and at most 200 characters"));
        }
    }
    if let Some(v) = cfg.validity {
        if v.0 < Duration::from_secs(300) || v.0 > Duration::from_secs(63 * 7 * 86_400) {
            return bad(
                "validity",
                "must be from 5m to 63 weeks (what a relative TP-VP can say)".into(),
            );
        }
    }
    if cfg.command_timeout.0 < Duration::from_millis(100) {
        return bad("command_timeout", "must be at least 100ms".into());
    }
    if cfg.poll_interval.0 < Duration::from_secs(1) {
        return bad("poll_interval", "must be at least 1s".into());
    }
    if cfg.reconnect_min.0.is_zero() || cfg.reconnect_min.0 > cfg.reconnect_max.0 {
        return bad(
            "reconnect_min",
            "must be above zero and no more than reconnect_max".into(),
        );
    }
    Ok(())
}

/// Values that may come from the environment instead of the file, so secrets stay out of it.
/// `TEXTGATE_DATABASE_URL`, `TEXTGATE_HTTP_LISTEN`, `TEXTGATE_WEBHOOK_SECRET`,
/// `TEXTGATE_SMTP_LISTEN` (when `[smtp]` is on) and, per device,
/// `TEXTGATE_DEVICE_<NAME>_PASSWORD` (name upper-cased, other characters as `_`).
pub fn env_var_for_device(name: &str, key: &str) -> String {
    format!(
        "TEXTGATE_DEVICE_{}_{}",
        env_name(name),
        key.to_ascii_uppercase()
    )
}

/// A name as it stands in an environment variable's: upper case, every character other
/// than a letter or digit written `_`.
pub(super) fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Overrides devices' secrets from the environment (`TEXTGATE_DEVICE_<NAME>_PASSWORD` for
/// SMPP, `_PIN` for modems).
pub(super) fn apply_device_env(devices: &mut [DeviceConfig], env: &dyn Fn(&str) -> Option<String>) {
    // Only kinds that log in somewhere have a secret to override.
    for d in devices.iter_mut() {
        let key = match d.kind.as_str() {
            "smpp" => "password",
            "modem" => "pin",
            _ => continue,
        };
        if let Some(v) = env(&env_var_for_device(&d.name, key)) {
            d.rest.insert(key.into(), toml::Value::String(v));
        }
    }
}

/// Checks every device (a usable, unique name; its kind's keys); the names, for the routes
/// and rules that refer to them.
pub(super) fn check_all(devices: &[DeviceConfig]) -> Result<HashSet<&str>, ConfigError> {
    if devices.is_empty() {
        return Err(ConfigError::new(
            "device",
            "no [[device]] is configured, so no message could ever be sent: add one (kind = \"loopback\" for a trial)",
        ));
    }
    let mut names = HashSet::new();
    for (i, d) in devices.iter().enumerate() {
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
    Ok(names)
}
