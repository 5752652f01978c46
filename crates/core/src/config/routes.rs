//! `[[route]]`: which devices a destination goes to, in failover order.

use std::collections::HashSet;

use serde::Deserialize;

use super::{ConfigError, DeviceConfig};

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
    /// How messages are shared among the devices.
    #[serde(default)]
    pub strategy: Strategy,
}

/// How a route shares its messages among its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Each message goes to the first device that is up; the next ones when it fails.
    #[default]
    Failover,
    /// Each message goes to the device that is up with the fewest messages waiting or in
    /// flight (modems, which send one part at a time, in parallel); failures move on as
    /// for failover.
    Spread,
}

/// Checks every route against the devices' `names`.
pub(super) fn check_all(
    routes: &[RouteConfig],
    names: &HashSet<&str>,
    devices: &[DeviceConfig],
) -> Result<(), ConfigError> {
    for (i, r) in routes.iter().enumerate() {
        if let Some(p) = &r.prefix {
            let digits = p.strip_prefix('+').unwrap_or(p);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(ConfigError::new(
                    format!("route[{i}].prefix"),
                    format!("\"{p}\" is not a number prefix: write it like \"+1\" or \"+4420\""),
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
                let known: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
                return Err(ConfigError::new(
                    format!("route[{i}].devices"),
                    format!("no device is named \"{d}\" (devices: {})", known.join(", ")),
                ));
            }
        }
    }
    Ok(())
}
