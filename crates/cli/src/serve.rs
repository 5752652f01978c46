//! `textgate serve`: opens the store, starts the devices and the dispatcher, serves HTTP and
//! (with `[smtp]`) SMTP, and shuts down in order on SIGINT or SIGTERM (stop taking requests
//! and mail, let in-flight sends be recorded, flush the store).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use textgate_core::config::{redact_url, Config};
use textgate_devices::dispatcher::Dispatcher;
use textgate_store::Store;

use crate::admin::bootstrap_admin;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEXTGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new("info"))
        .unwrap_or_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Runs the server until a shutdown signal.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    init_tracing();
    let cfg = Arc::new(cfg);
    let store = Store::open(&cfg.server.database_url).await?;
    tracing::info!(database = %redact_url(&cfg.server.database_url), backend = store.backend_name(), "store open");
    bootstrap_admin(&store).await?;
    let devices = textgate_devices::build_devices(&cfg)?;
    let dispatcher = Dispatcher::new(store.clone(), &cfg, devices);
    let running = dispatcher.start();
    let state = textgate_http::AppState::new(store.clone(), dispatcher.clone(), cfg.clone());
    // SMTP is bound first, so that when the HTTP line below is printed both are listening.
    let smtp = match textgate_smtp::Listener::bind(&cfg).await? {
        Some(listener) => {
            let gateway =
                textgate_smtp::Gateway::new(store.clone(), dispatcher.clone(), &cfg).await?;
            let addr = listener.local_addr()?;
            // Tests and scripts read this line to find the port when [smtp] listen ends in :0.
            println!("textgate smtp listening on {addr}");
            tracing::info!(%addr, "serving SMTP");
            Some(listener.start(Arc::new(gateway)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.server.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([server] http_listen)",
                cfg.server.http_listen
            )
        })?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when http_listen ends in :0.
    println!("textgate listening on http://{addr}");
    tracing::info!(%addr, devices = cfg.devices.len(), "serving HTTP");
    textgate_http::serve(listener, state, shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    if let Some(smtp) = smtp {
        tracing::info!("shutting down: closing SMTP sessions");
        smtp.shutdown(Duration::from_secs(10)).await;
    }
    tracing::info!("shutting down: finishing in-flight sends");
    running.shutdown(Duration::from_secs(10)).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
