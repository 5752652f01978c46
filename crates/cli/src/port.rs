//! `textgate port --config FILE`: runs a remote port server (docs/port-servers.md);
//! `--status` prints what a running one last wrote, `--check` checks the file.

use std::path::Path;

use textgate_core::config::{ConfigError, PortConfig};
use tokio_util::sync::CancellationToken;

/// Reads a port server's file, with the environment over it, checked.
pub fn load(path: &Path) -> Result<PortConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })?;
    let cfg = PortConfig::parse(&text, &|k| std::env::var(k).ok())?;
    cfg.check()?;
    Ok(cfg)
}

/// Runs the port server until SIGINT or SIGTERM; under systemd (`Type=notify`) it says when
/// it is ready and when it stops ([`crate::notify`]).
pub async fn run(cfg: PortConfig) -> anyhow::Result<()> {
    crate::serve::init_tracing(&cfg.log);
    let systemd = crate::notify::Notifier::from_env().map(std::sync::Arc::new);
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let on_stop = systemd.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        tracing::info!("stopping: finishing what is held");
        if let Some(n) = &on_stop {
            n.stopping("finishing what is held");
        }
        signal.cancel();
    });
    textgate_port::server::run(cfg, stop, |status| {
        if let Some(n) = &systemd {
            n.ready(status);
        }
    })
    .await
}

/// Prints the status a port server last wrote: its link, what it holds, its devices.
pub fn status(cfg: &PortConfig) -> anyhow::Result<()> {
    let s = textgate_port::server::read_status(&cfg.data_dir).map_err(anyhow::Error::msg)?;
    let age_s = (textgate_core::clock::now_ms() - s.at).max(0) / 1000;
    println!("port server {} → {}", cfg.name, s.server);
    println!(
        "link      {}{}{}",
        s.link,
        s.central
            .as_deref()
            .map(|c| format!(" to {c}"))
            .unwrap_or_default(),
        s.protocol
            .map(|v| format!(" (protocol {v})"))
            .unwrap_or_default()
    );
    if let Some(e) = &s.last_error {
        println!("last error {e}");
    }
    println!("held      {} message(s) taken and not yet sent", s.held);
    println!(
        "unacked   {} report(s) not yet acknowledged by the central server",
        s.unacked
    );
    if s.draining {
        println!("draining  yes: it takes no new messages");
    }
    for d in &s.devices {
        println!("device    {} ({}) {}", d.name, d.kind, d.state);
    }
    println!("as of     {age_s} s ago");
    Ok(())
}
