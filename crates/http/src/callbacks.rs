//! Where users' `callback_url`s may point (docs/inbound.md, status callbacks).
//!
//! A user chooses the URL and can read back what became of each POST, so without a guard a
//! user could make the server call into its own network (a cloud metadata address, an
//! administration port) and learn what answers there. The guard refuses loopback, private,
//! link-local, multicast, unspecified and other internal addresses unless `[server]` allows
//! them (`allow_private_callbacks`, or `callback_allow` hosts and CIDRs):
//!
//! - at accept time, a URL whose host is such an address (or `localhost`) is refused with 422;
//! - at delivery time, the host name is resolved by [`GuardedResolver`], which hands the
//!   connector only the addresses the guard allows, so the address connected to is always one
//!   that was checked: a name that resolves to a public address when the message is accepted
//!   and to an internal one later (DNS rebinding) gets nowhere.
//!
//! The inbound rules' webhooks are written by an administrator in the configuration and are
//! not guarded.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use textgate_core::config::ServerConfig;
use textgate_core::net::{is_internal, Cidr};

/// The policy of `[server] allow_private_callbacks` and `callback_allow`.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow_private: bool,
    hosts: HashSet<String>,
    nets: Vec<Cidr>,
}

/// What the guard says of a URL it refuses, for the user who gave it.
pub const REFUSED: &str = "refused by policy";

impl Guard {
    /// The policy of a checked configuration (entries that are not CIDRs are host names).
    pub fn from_config(s: &ServerConfig) -> Guard {
        let mut g = Guard {
            allow_private: s.allow_private_callbacks,
            ..Guard::default()
        };
        for entry in &s.callback_allow {
            match entry.parse::<Cidr>() {
                Ok(c) => g.nets.push(c),
                Err(_) => {
                    g.hosts.insert(entry.trim().to_ascii_lowercase());
                }
            }
        }
        g
    }

    /// Whether the server may connect to `ip` for a user's callback.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_internal(ip) || self.nets.iter().any(|n| n.contains(ip))
    }

    fn allows_any_address_of(&self, host: &str) -> bool {
        self.allow_private || self.hosts.contains(&host.to_ascii_lowercase())
    }

    /// Checks what can be checked of a URL without resolving it: an `http` or `https` URL
    /// with a host that is not an internal address nor `localhost`. The message says what
    /// is wrong and what to do.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri: hyper::Uri = url.parse().map_err(|_| {
            "callback_url is not a URL: write it like https://app.example.com/sms/status"
                .to_string()
        })?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err("callback_url must be an http:// or https:// URL".into());
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "callback_url has no host".to_string())?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if self.allows_any_address_of(bare) {
            return Ok(());
        }
        let internal_name = bare.eq_ignore_ascii_case("localhost")
            || bare.to_ascii_lowercase().ends_with(".localhost");
        let refused = match bare.parse::<IpAddr>() {
            Ok(ip) => !self.allows_ip(ip),
            Err(_) => internal_name,
        };
        if refused {
            return Err(format!(
                "callback_url points at {bare}, an internal address, which this server does not call for users ({REFUSED}: an administrator can allow it with [server] callback_allow)"
            ));
        }
        Ok(())
    }
}

/// Resolves host names for users' callbacks, keeping only the addresses the [`Guard`]
/// allows; a name with none left fails to resolve, with a message that says why.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl GuardedResolver {
    /// A resolver under this policy.
    pub fn new(guard: Arc<Guard>) -> GuardedResolver {
        GuardedResolver { guard }
    }
}

type Resolving = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard.allows_any_address_of(&host) {
                return Ok(found.into_iter());
            }
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| guard.allows_ip(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{REFUSED}: {host} resolves only to internal addresses"),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(extra: &str) -> Guard {
        let cfg =
            textgate_core::config::Config::parse(&format!("[server]\n{extra}"), &|_| None).unwrap();
        Guard::from_config(&cfg.server)
    }

    #[test]
    fn internal_urls_are_refused_unless_allowed() {
        let g = guard("");
        for bad in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5/",
            "https://localhost/x",
            "http://api.localhost/",
            "http://[::ffff:192.168.0.1]/",
            "http://0.0.0.0:22/",
        ] {
            let e = g.check_url(bad).unwrap_err();
            assert!(
                e.contains(REFUSED) && e.contains("callback_allow"),
                "{bad}: {e}"
            );
        }
        assert!(g.check_url("ftp://example.com/").is_err());
        assert!(g.check_url("https://").is_err());
        assert!(g.check_url("https://hooks.example.com/sms?k=1").is_ok());
        assert!(g.check_url("http://93.184.216.34/x").is_ok());

        let g = guard("callback_allow = [\"10.1.0.0/16\", \"Hooks.Internal\"]");
        assert!(g.check_url("http://10.1.2.3/").is_ok());
        assert!(g.check_url("http://10.2.0.1/").is_err());
        assert!(g.check_url("http://hooks.internal:9000/").is_ok());
        let g = guard("allow_private_callbacks = true");
        assert!(g.check_url("http://127.0.0.1/").is_ok());
    }

    #[tokio::test]
    async fn the_resolver_hands_over_only_allowed_addresses() {
        use tower_service::Service;
        let mut r = GuardedResolver::new(Arc::new(guard("")));
        let name: Name = "localhost".parse().unwrap();
        let e = r.call(name).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("internal"), "{e}");
        let mut r = GuardedResolver::new(Arc::new(guard("callback_allow = [\"localhost\"]")));
        let name: Name = "localhost".parse().unwrap();
        assert!(r.call(name).await.unwrap().all(|a| a.ip().is_loopback()));
    }
}
