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
    // The numbering plan loads while the store opens, not when the first text arrives.
    let numbers = tokio::task::spawn_blocking(textgate_core::address::warm_up);
    let store = Store::open(&cfg.server.database_url).await?;
    let _ = numbers.await;
    store.preallocate_log().await;
    tracing::info!(database = %redact_url(&cfg.server.database_url), backend = store.backend_name(), "store open");
    bootstrap_admin(&store).await?;
    warn_unknown_users(&cfg, &store).await;
    let devices = textgate_devices::build_devices(&cfg)?;
    let dispatcher = Dispatcher::new(store.clone(), &cfg, devices);
    let running = dispatcher.start();
    let state = textgate_http::AppState::new(store.clone(), dispatcher.clone(), cfg.clone());
    let webhooks_stop = Arc::new(tokio::sync::Notify::new());
    let webhooks = tokio::spawn(textgate_http::webhooks::run(
        state.clone(),
        webhooks_stop.clone(),
    ));
    // Imports a restart interrupted continue from their last committed batch.
    state.jobs.resume_uploads().await;
    let (stop_spool, spool_stopped) = tokio::sync::watch::channel(false);
    let spool = match &cfg.spool {
        Some(sp) => {
            let spool = textgate_jobs::spool::Spool::new(state.jobs.clone(), sp.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            tracing::info!(dir = %sp.dir, user = %sp.user, "watching the spool folder");
            Some(tokio::spawn(spool.run(spool_stopped)))
        }
        None => None,
    };
    let mailer_stop = Arc::new(tokio::sync::Notify::new());
    let mailer = match textgate_smtp::mailer::Mailer::check(&cfg, &store) {
        Ok(()) => tokio::spawn(textgate_smtp::mailer::run(
            store.clone(),
            dispatcher.clone(),
            cfg.clone(),
            mailer_stop.clone(),
        )),
        Err(e) => return Err(e.into()),
    };
    // SMTP is bound first, so that when the HTTP line below is printed both are listening.
    let mut gateway_ref: Option<Arc<textgate_smtp::Gateway>> = None;
    let smtp = match textgate_smtp::Listener::bind(&cfg).await? {
        Some(listener) => {
            let signin = Arc::new(textgate_devices::signin::SignIn::new(
                store.clone(),
                &cfg.auth,
            ));
            signin.warm_up().await;
            let gateway =
                textgate_smtp::Gateway::new(store.clone(), dispatcher.clone(), signin, &cfg)
                    .await?;
            let addr = listener.local_addr()?;
            // Tests and scripts read this line to find the port when [smtp] listen ends in :0.
            println!("textgate smtp listening on {addr}");
            tracing::info!(%addr, "serving SMTP");
            let gateway = Arc::new(gateway);
            gateway_ref = Some(gateway.clone());
            Some(listener.start(gateway))
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
    let (stop_retention, retention_stopped) = tokio::sync::oneshot::channel::<()>();
    let retention = tokio::spawn(textgate_devices::retention::run(
        store.clone(),
        cfg.retention.clone(),
        cfg.spool.as_ref().map(|s| std::path::PathBuf::from(&s.dir)),
        async {
            let _ = retention_stopped.await;
        },
    ));
    // Revoked API keys are forgotten here too, wherever they were revoked.
    let (stop_revocations, revocations_stopped) = tokio::sync::oneshot::channel::<()>();
    let revocations = tokio::spawn(textgate_http::auth::watch_revocations(
        store.clone(),
        state.keys.clone(),
        move || {
            if let Some(g) = &gateway_ref {
                g.forget_credentials();
            }
        },
        async {
            let _ = revocations_stopped.await;
        },
    ));
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match &cfg.server.metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} ([server] metrics_listen)"))?;
            let addr = l.local_addr()?;
            println!("textgate metrics listening on http://{addr}");
            let limits = textgate_http::server::Limits::from_config(&cfg.server);
            Some(tokio::spawn(textgate_http::server::serve(
                l,
                textgate_http::metrics_router(state.clone()),
                limits,
                async {
                    let _ = metrics_stopped.await;
                },
            )))
        }
        None => None,
    };
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when http_listen ends in :0.
    println!("textgate listening on http://{addr}");
    tracing::info!(%addr, devices = cfg.devices.len(), "serving HTTP");
    textgate_http::serve(listener, state, shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    let _ = stop_revocations.send(());
    let _ = revocations.await;
    let _ = stop_retention.send(());
    let _ = retention.await;
    let _ = stop_metrics.send(());
    if let Some(m) = metrics {
        let _ = m.await;
    }
    // A file half-imported is safe to leave: its job resumes from the last committed batch.
    let _ = stop_spool.send(true);
    if let Some(task) = spool {
        task.abort();
        let _ = task.await;
    }
    if let Some(smtp) = smtp {
        tracing::info!("shutting down: closing SMTP sessions");
        smtp.shutdown(Duration::from_secs(10)).await;
    }
    tracing::info!("shutting down: finishing in-flight sends");
    webhooks_stop.notify_one();
    mailer_stop.notify_one();
    running.shutdown(Duration::from_secs(10)).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), webhooks).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), mailer).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Inbound rules and the catch-all name users by name; a name with no user is skipped when
/// texts arrive, so say so once at start rather than let texts quietly miss an inbox.
async fn warn_unknown_users(cfg: &Config, store: &Store) {
    let named = cfg
        .inbound_rules
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.users
                .iter()
                .map(move |u| (format!("inbound_rule[{i}].users"), u))
        })
        .chain(
            cfg.inbound
                .catch_all
                .iter()
                .map(|u| ("inbound.catch_all".to_string(), u)),
        );
    for (key, user) in named {
        if let Ok(None) = store.user_by_name(user).await {
            tracing::warn!(%key, %user, "no user has this name: texts for them reach no inbox until the user is created");
        }
    }
}
