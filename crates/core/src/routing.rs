//! Outbound routing (docs/architecture.md): the first `[[route]]` whose prefix (and, if given, user
//! list) matches picks an ordered list of devices to try, first to last. With no routes at all,
//! every message may use every device in the order they are configured.

use crate::config::{Config, Strategy};

/// A compiled routing table. Devices are referred to by their index in the config's list.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    all: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Route {
    prefix: Option<String>,
    users: Vec<String>,
    devices: Vec<usize>,
    strategy: Strategy,
}

/// What a destination is routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed<'a> {
    /// Device indexes, in failover order; empty when no route matches.
    pub devices: &'a [usize],
    /// How they share the messages.
    pub strategy: Strategy,
}

impl Router {
    /// Builds the table from a checked configuration (unknown device names are skipped).
    pub fn new(cfg: &Config) -> Router {
        let index = |name: &str| cfg.devices.iter().position(|d| d.name == name);
        let routes = cfg
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.prefix.as_ref().map(|p| {
                    if p.starts_with('+') {
                        p.clone()
                    } else {
                        format!("+{p}")
                    }
                }),
                users: r.users.clone(),
                devices: r.devices.iter().filter_map(|d| index(d)).collect(),
                strategy: r.strategy,
            })
            .collect();
        Router {
            routes,
            all: (0..cfg.devices.len()).collect(),
        }
    }

    /// Whether any route depends on who sent the message (so the caller needs the name).
    pub fn uses_users(&self) -> bool {
        self.routes.iter().any(|r| !r.users.is_empty())
    }

    /// The devices for a destination (`+15551234567` or a short code) sent by `user`, in
    /// failover order; empty when no route matches.
    pub fn route(&self, to: &str, user: &str) -> &[usize] {
        self.routed(to, user).devices
    }

    /// The devices for a destination sent by `user`, and how they share the messages.
    pub fn routed(&self, to: &str, user: &str) -> Routed<'_> {
        if self.routes.is_empty() {
            return Routed {
                devices: &self.all,
                strategy: Strategy::Failover,
            };
        }
        for r in &self.routes {
            let prefix_ok = r.prefix.as_deref().is_none_or(|p| to.starts_with(p));
            let user_ok = r.users.is_empty() || r.users.iter().any(|u| u == user);
            if prefix_ok && user_ok {
                return Routed {
                    devices: &r.devices,
                    strategy: r.strategy,
                };
            }
        }
        Routed {
            devices: &[],
            strategy: Strategy::Failover,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_with_failover_order() {
        let text = r#"
[[device]]
name = "a"
kind = "loopback"
[[device]]
name = "b"
kind = "loopback"
[[route]]
prefix = "+44"
users = ["alice"]
devices = ["b"]
[[route]]
prefix = "+1"
devices = ["b", "a"]
[[route]]
devices = ["a"]
"#;
        let cfg = Config::parse(text, &|_| None).unwrap();
        let r = Router::new(&cfg);
        assert_eq!(r.route("+15551234567", "bob"), &[1, 0]);
        assert_eq!(r.route("+447700900123", "alice"), &[1]);
        assert_eq!(r.route("+447700900123", "bob"), &[0]);
        let no_routes = Router::new(&Config::embedded_defaults());
        assert_eq!(no_routes.route("+49301234567", "x"), &[0]);
    }

    #[test]
    fn no_match_means_no_device() {
        let text = "[[device]]\nname='a'\nkind='loopback'\n[[route]]\nprefix='+1'\ndevices=['a']\n";
        let cfg = Config::parse(text, &|_| None).unwrap();
        assert!(Router::new(&cfg).route("+447700900123", "x").is_empty());
    }
}
