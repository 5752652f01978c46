//! The audit log: who did what to users, API keys, devices, jobs and the opt-out list, and
//! every sign-in (docs/operations.md#audit-log). An entry is written once the change is
//! stored; it names the actor, how they came (`api`, `web`, `cli`, `smtp`) and from where,
//! and never holds a secret: no password, key, token or text of a message.

use std::fmt::Display;
use std::net::IpAddr;

use textgate_core::clock::now_ms;
use textgate_store::{NewAudit, Store};

/// Who did it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user's name; on the command line, the operating system's user.
    pub name: String,
    /// `api`, `web`, `cli` or `smtp`.
    pub via: &'static str,
    /// The client's address, for what came over the network.
    pub address: Option<IpAddr>,
}

impl Actor {
    /// Someone at this machine's command line: the operating system's user (through `sudo`,
    /// the one who ran it); without those variables (a service, a cron job), the process's
    /// user as /etc/passwd names it.
    pub fn cli() -> Actor {
        let name = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .or_else(process_user)
            .unwrap_or_else(|| "unknown".into());
        Actor {
            name,
            via: "cli",
            address: None,
        }
    }
}

/// Records a refused password (`via` `web` or `smtp`, from `address`) as `signin.failed`.
/// The name given is kept only when it is a user's, else `(unknown)`: what is typed as a name
/// is sometimes a password. The name recorded, for the caller's log line.
pub async fn sign_in_failed(
    store: &Store,
    given: &str,
    via: &'static str,
    address: IpAddr,
) -> String {
    let who = match store.user_by_name(given).await {
        Ok(Some(u)) => u.name,
        _ => "(unknown)".to_string(),
    };
    let actor = Actor {
        name: who.clone(),
        via,
        address: Some(address),
    };
    record(store, &actor, "signin.failed", &who, None).await;
    who
}

/// The name of this process's user (`uid 1000` when /etc/passwd does not name it), read
/// from /proc.
fn process_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let named = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    });
    Some(named.unwrap_or_else(|| format!("uid {uid}")))
}

/// Appends an entry. The change it records is already stored, so a store that fails here
/// fails the entry alone: it is logged, with everything the entry would have said.
pub async fn record(
    store: &Store,
    by: &Actor,
    action: &str,
    target: impl Display,
    detail: Option<String>,
) {
    let entry = NewAudit {
        at: now_ms(),
        actor: by.name.clone(),
        via: by.via.to_string(),
        address: by.address.map(|a| a.to_string()),
        action: action.to_string(),
        target: target.to_string(),
        detail,
    };
    tracing::info!(
        actor = %entry.actor,
        via = %entry.via,
        action = %entry.action,
        target = %entry.target,
        detail = entry.detail.as_deref().unwrap_or(""),
        "audit"
    );
    if let Err(e) = store.audit(entry).await {
        tracing::error!(error = %e, %action, actor = %by.name, "cannot write the audit entry");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_user_is_named() {
        let name = super::process_user().expect("a /proc");
        assert!(!name.is_empty() && !name.contains(':'), "{name}");
    }
}
