//! Remote port servers (docs/port-servers.md): the central server's `[[port_server]]`
//! entries, a `kind = "remote"` device's keys, and the port server's own file
//! (`textgate port --config FILE`).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::devices::{self, DeviceConfig, DeviceSettings};
use super::{ConfigError, Dur};

/// The shortest token a port server may authenticate with.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[[port_server]]` on the central server: a port server allowed to join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortServerConfig {
    /// Its name, as its own file says (`name`).
    pub name: String,
    /// The token it authenticates with (or `TEXTGATE_PORT_SERVER_<NAME>_TOKEN`).
    pub token: Option<String>,
}

/// The environment variable that holds a port server's token on the central server.
pub fn env_var_for_port_server(name: &str) -> String {
    format!("TEXTGATE_PORT_SERVER_{}_TOKEN", devices::env_name(name))
}

fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_token(key: &str, token: Option<&str>, env: &str) -> Result<(), ConfigError> {
    match token {
        None | Some("") => Err(ConfigError::new(
            key,
            format!("a port server needs a token: set it here or in {env}"),
        )),
        Some(t) if t.len() < MIN_TOKEN_LEN || t.len() > 512 => Err(ConfigError::new(
            key,
            format!("the token must be {MIN_TOKEN_LEN} to 512 characters long (make one with `openssl rand -hex 32`)"),
        )),
        Some(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(ConfigError::new(
            key,
            "the token may not hold spaces or control characters",
        )),
        Some(_) => Ok(()),
    }
}

/// Checks the central server's `[[port_server]]` entries: usable unique names and tokens.
pub(super) fn check_port_servers(list: &[PortServerConfig]) -> Result<HashSet<&str>, ConfigError> {
    let mut names = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        if !usable_name(&p.name) {
            return Err(ConfigError::new(
                format!("port_server[{i}].name"),
                format!(
                    "\"{}\" is not a usable name: 1 to 64 letters, digits, - and _",
                    p.name
                ),
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(ConfigError::new(
                format!("port_server[{i}].name"),
                format!(
                    "two port servers are named \"{}\": names must be unique",
                    p.name
                ),
            ));
        }
        check_token(
            &format!("port_server \"{}\".token", p.name),
            p.token.as_deref(),
            &env_var_for_port_server(&p.name),
        )?;
    }
    Ok(names)
}

/// Checks that every `remote` device names a configured port server, that no two name the
/// same device there, that a device standing for "any of its devices" is its port server's
/// only one (else a receipt could belong to either), and that every port server has one.
pub(super) fn check_remote_devices(
    devices: &[DeviceConfig],
    port_servers: &HashSet<&str>,
) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashMap<&str, Vec<Option<String>>> = Default::default();
    for d in devices {
        if let Ok(DeviceSettings::Remote(r)) = d.settings() {
            let key = format!("device \"{}\"", d.name);
            let Some(ps) = port_servers.get(r.port_server.as_str()) else {
                return Err(ConfigError::new(
                    format!("{key}.port_server"),
                    format!(
                        "no [[port_server]] is named \"{}\": add one with its token",
                        r.port_server
                    ),
                ));
            };
            let list = seen.entry(ps).or_default();
            if list.iter().any(|x| x.is_none()) || (r.remote_device.is_none() && !list.is_empty()) {
                return Err(ConfigError::new(
                    format!("{key}.remote_device"),
                    format!(
                        "port server \"{}\" has a device without remote_device (any of its devices) and another: name each of its devices, or keep just the one",
                        r.port_server
                    ),
                ));
            }
            if list.contains(&r.remote_device) {
                return Err(ConfigError::new(
                    format!("{key}.remote_device"),
                    format!(
                        "another device already stands for \"{}\" on port server \"{}\"",
                        r.remote_device.unwrap_or_default(),
                        r.port_server
                    ),
                ));
            }
            list.push(r.remote_device);
        }
    }
    if let Some(lonely) = port_servers.iter().find(|p| !seen.contains_key(*p)) {
        return Err(ConfigError::new(
            "port_server",
            format!("port server \"{lonely}\" has no [[device]] with kind = \"remote\" and port_server = \"{lonely}\": add one, so that its messages and texts have a device"),
        ));
    }
    Ok(())
}

/// A `kind = "remote"` device: a device of a port server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The port server (a `[[port_server]]` name).
    pub port_server: String,
    /// Which of its devices; `None`: whichever it chooses.
    pub remote_device: Option<String>,
}

/// The port server's own file, read by `textgate port --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The central server's HTTP base URL (`https://central.example.com:8080`).
    pub server: String,
    /// Its name, as the central server's `[[port_server]] name`.
    pub name: String,
    /// Its token (or `TEXTGATE_PORT_TOKEN`).
    pub token: Option<String>,
    /// Where its own store (SQLite) is kept.
    #[serde(default = "default_port_data_dir")]
    pub data_dir: String,
    /// How many messages it holds at once, at most (the window the central server keeps to).
    #[serde(default = "default_port_window")]
    pub window: u32,
    /// How often it pings the central server when the link is quiet; three missed
    /// answers close the link.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Dur,
    /// The first wait before reconnecting.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Dur,
    /// The longest wait before reconnecting.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Dur,
    /// A PEM file of certificates to trust for an `https` server, beside the public roots.
    pub tls_ca_file: Option<String>,
    /// How long it keeps the record of a message it finished, to answer a resend of it.
    #[serde(default = "default_keep_done")]
    pub keep_done: Dur,
    /// Its devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// `[log]`, as the central server's.
    #[serde(default)]
    pub log: super::LogConfig,
}

fn default_port_data_dir() -> String {
    "./textgate-port-data".into()
}
fn default_port_window() -> u32 {
    1000
}
fn default_heartbeat() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_reconnect_min() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_reconnect_max() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_keep_done() -> Dur {
    Dur(Duration::from_secs(7 * 24 * 3600))
}

impl PortConfig {
    /// Parses a port server's file and applies the environment (`TEXTGATE_PORT_TOKEN`, the
    /// devices' secrets). Not yet checked: call [`PortConfig::check`].
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PortConfig, ConfigError> {
        let mut cfg: PortConfig =
            toml::from_str(text).map_err(|e| super::syntax_error(text, &e))?;
        if let Some(t) = env("TEXTGATE_PORT_TOKEN") {
            cfg.token = Some(t);
        }
        if let Some(s) = env("TEXTGATE_PORT_SERVER_URL") {
            cfg.server = s;
        }
        devices::apply_device_env(&mut cfg.devices, env);
        // A port server promises to keep every receipt until the central server has it:
        // its SMPP devices answer a receipt only once it is committed, unless told otherwise.
        for d in cfg.devices.iter_mut().filter(|d| d.kind == "smpp") {
            d.rest
                .entry("ack_receipts_after_commit")
                .or_insert(toml::Value::Boolean(true));
        }
        Ok(cfg)
    }

    /// Checks the whole file; the first problem found.
    pub fn check(&self) -> Result<(), ConfigError> {
        let url = self.server.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                ConfigError::new(
                    "server",
                    format!("\"{url}\" is not the central server's URL: write http://HOST:PORT or https://HOST:PORT"),
                )
            })?;
        if rest.is_empty()
            || rest.starts_with('/')
            || rest.contains('@')
            || rest.contains(['?', '#'])
        {
            return Err(ConfigError::new(
                "server",
                "give the central server's base URL, with a host and no user, query or fragment",
            ));
        }
        if !usable_name(&self.name) {
            return Err(ConfigError::new(
                "name",
                format!(
                    "\"{}\" is not a usable name: 1 to 64 letters, digits, - and _",
                    self.name
                ),
            ));
        }
        check_token("token", self.token.as_deref(), "TEXTGATE_PORT_TOKEN")?;
        if self.data_dir.trim().is_empty() {
            return Err(ConfigError::new("data_dir", "must name a folder"));
        }
        if self.window == 0 || self.window > 10_000 {
            return Err(ConfigError::new("window", "must be 1 to 10000 messages"));
        }
        if self.heartbeat.0 < Duration::from_millis(100) {
            return Err(ConfigError::new("heartbeat", "must be at least 100ms"));
        }
        if self.reconnect_min.0.is_zero() || self.reconnect_min.0 > self.reconnect_max.0 {
            return Err(ConfigError::new(
                "reconnect_min",
                "must be above zero and no more than reconnect_max",
            ));
        }
        if let Some(f) = &self.tls_ca_file {
            if std::fs::metadata(f).map(|m| !m.is_file()).unwrap_or(true) {
                return Err(ConfigError::new(
                    "tls_ca_file",
                    format!("\"{f}\" is not a readable file"),
                ));
            }
        }
        self.log.check()?;
        devices::check_all(&self.devices)?;
        for d in &self.devices {
            if d.kind == "remote" {
                return Err(ConfigError::new(
                    format!("device \"{}\".kind", d.name),
                    "a port server's devices are its own (smpp, modem, loopback), not remote",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    fn port(text: &str) -> Result<PortConfig, ConfigError> {
        let c = PortConfig::parse(text, &|_| None)?;
        c.check().map(|_| c)
    }

    #[test]
    fn a_port_servers_file_is_read_and_checked() {
        let c = port(&format!(
            "server = \"https://central.example.com\"\nname = \"branch1\"\ntoken = \"{TOKEN}\"\n[[device]]\nname = \"m1\"\nkind = \"loopback\"\n"
        ))
        .unwrap();
        assert_eq!(c.window, 1000);
        let smpp = port(&format!(
            "server = \"http://c\"\nname = \"b\"\ntoken = \"{TOKEN}\"\n[[device]]\nname = \"s\"\nkind = \"smpp\"\nhost = \"h\"\nport = 1\nsystem_id = \"x\"\npassword = \"y\"\n"
        ))
        .unwrap();
        let Ok(DeviceSettings::Smpp(s)) = smpp.devices[0].settings() else {
            panic!()
        };
        assert!(
            s.ack_receipts_after_commit,
            "receipts are answered only once committed"
        );
        assert_eq!(c.heartbeat.0, Duration::from_secs(10));
        let e = port("server = \"central:8080\"\nname = \"b\"\ntoken = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "server");
        let e =
            port("server = \"http://c\"\nname = \"b\"\n[[device]]\nname='a'\nkind='loopback'\n")
                .unwrap_err();
        assert!(e.message.contains("TEXTGATE_PORT_TOKEN"), "{e}");
        let e = port("server = \"http://c\"\nname = \"b\"\ntoken = \"short\"\n[[device]]\nname='a'\nkind='loopback'\n").unwrap_err();
        assert!(e.message.contains("16 to 512"), "{e}");
        let e = port(&format!(
            "server = \"http://c\"\nname = \"b\"\ntoken = \"{TOKEN}\"\n[[device]]\nname='a'\nkind='remote'\nport_server='x'\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("its own"), "{e}");
        let from_env = PortConfig::parse(
            "server = \"http://c\"\nname = \"b\"\n[[device]]\nname='a'\nkind='loopback'\n",
            &|k| (k == "TEXTGATE_PORT_TOKEN").then(|| TOKEN.to_string()),
        )
        .unwrap();
        from_env.check().unwrap();
    }

    #[test]
    fn remote_devices_must_match_their_port_servers() {
        let cfg = |devices: &str| {
            let text = format!("[[port_server]]\nname = \"b1\"\ntoken = \"{TOKEN}\"\n{devices}");
            crate::config::Config::parse(&text, &|_| None)
                .unwrap()
                .check()
        };
        let remote = |name: &str, extra: &str| {
            format!(
                "[[device]]\nname = \"{name}\"\nkind = \"remote\"\nport_server = \"b1\"\n{extra}\n"
            )
        };
        cfg(&remote("r1", "")).unwrap();
        cfg(&(remote("r1", "remote_device = \"m1\"") + &remote("r2", "remote_device = \"m2\"")))
            .unwrap();
        let e = cfg(&(remote("r1", "") + &remote("r2", "remote_device = \"m2\""))).unwrap_err();
        assert!(e.message.contains("name each of its devices"), "{e}");
        let e =
            cfg(&(remote("r1", "remote_device = \"m\"") + &remote("r2", "remote_device = \"m\"")))
                .unwrap_err();
        assert!(e.message.contains("already stands for"), "{e}");
        let e = cfg("[[device]]\nname = \"lb\"\nkind = \"loopback\"\n").unwrap_err();
        assert!(e.message.contains("has no [[device]]"), "{e}");
        let e = cfg("[[device]]\nname = \"r\"\nkind = \"remote\"\nport_server = \"nope\"\n")
            .unwrap_err();
        assert!(e.message.contains("no [[port_server]] is named"), "{e}");
        let e = cfg(
            "[[device]]\nname = \"r\"\nkind = \"remote\"\nport_server = \"b1\"\nhost = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn port_server_names_and_tokens_are_checked() {
        let ok = PortServerConfig {
            name: "branch1".into(),
            token: Some(TOKEN.into()),
        };
        assert!(check_port_servers(std::slice::from_ref(&ok)).is_ok());
        let e = check_port_servers(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(e.message.contains("unique"));
        let e = check_port_servers(&[PortServerConfig {
            token: None,
            ..ok.clone()
        }])
        .unwrap_err();
        assert!(
            e.message.contains("TEXTGATE_PORT_SERVER_BRANCH1_TOKEN"),
            "{e}"
        );
    }
}
