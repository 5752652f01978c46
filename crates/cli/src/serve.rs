//! `textgate serve`: opens the store, starts the devices and the dispatcher, serves HTTP and
//! (with `[smtp]`) SMTP, and on SIGINT or SIGTERM drains within `[server] shutdown_grace`:
//! every task holds a token of one tree ([`Stops`]); intake stops first (no new requests,
//! mail or files, those in progress finish), then the engine (in-flight sends and deliveries
//! finish and are recorded), then the store is closed.
//!
//! Under systemd (`Type=notify`) it says when it is ready, when it stops, and while it is
//! healthy pings the watchdog ([`crate::notify`]).

use std::sync::Arc;

use anyhow::Context;
use textgate_core::config::{redact_url, Config, LogConfig, LogFormat};
use textgate_engine::dispatcher::Dispatcher;
use textgate_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin::bootstrap_admin;
use crate::notify::{self, Notifier};

/// This node's name, as port servers see it: the host's name.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "textgate".into())
}

/// The log on standard error, as `[log]` says: `TEXTGATE_LOG` wins over `[log] level`; with
/// `format = "json"` each event is one JSON object on a line, its fields beside `message`
/// (`message_id`, `device`, `user`, …), which is what log processors index.
pub(crate) fn init_tracing(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEXTGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log.filter()))
        .unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // No spans are opened, so none are listed; a line is the event alone.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

pub(crate) async fn shutdown_signal() {
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

/// The stop signals of every task, as one tree: cancelling `root` cancels both halves.
struct Stops {
    /// What takes new work: the HTTP and SMTP listeners, the watched folder. Cancelled first.
    intake: CancellationToken,
    /// What carries work out: the dispatcher, the webhook and e-mail delivery loops, and the
    /// background passes (retention, revocations). Cancelled once intake has stopped.
    engine: CancellationToken,
}

impl Stops {
    fn new(root: &CancellationToken) -> Stops {
        Stops {
            intake: root.child_token(),
            engine: root.child_token(),
        }
    }
}

/// Waits for a task until `deadline`; a task still running then is left to the process's end
/// (what it held is committed or leased, and resumes after a restart).
async fn join_until<T>(what: &str, task: tokio::task::JoinHandle<T>, deadline: Instant) {
    if tokio::time::timeout_at(deadline, task).await.is_err() {
        tracing::warn!(
            task = what,
            "still busy when [server] shutdown_grace ran out; it resumes after the next start"
        );
    }
}

/// Runs the server until a shutdown signal, then drains it: stop taking requests, mail and
/// files; let what is in flight finish and be recorded; close the store; all within
/// `[server] shutdown_grace`.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    init_tracing(&cfg.log);
    let cfg = Arc::new(cfg);
    let systemd = Notifier::from_env().map(Arc::new);
    if let Some(n) = &systemd {
        n.status("opening the store");
    }
    let store = open_store(&cfg).await?;
    let root = CancellationToken::new();
    let stops = Stops::new(&root);
    // Bound early: this node's address is what the other nodes on the store see. Requests
    // wait in the backlog until it serves, below.
    let listener = tokio::net::TcpListener::bind(&cfg.server.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([server] http_listen)",
                cfg.server.http_listen
            )
        })?;
    // This node among the nodes on the store: the work of all of them that runs once is
    // leased to one at a time, and so are the binds of SMSC accounts they share.
    let cluster = textgate_engine::cluster::Cluster::new(
        store.clone(),
        &cfg,
        &node_name(),
        &listener.local_addr()?.to_string(),
    );
    let ports = textgate_port::central::PortServers::new(&cfg, &node_name());
    let lease = cfg.server.claim_lease.0;
    let devices = textgate_drivers::build_devices(&cfg.devices, &|name, r| {
        let d = ports.device(name, &r.port_server, r.remote_device, lease)?;
        Some(Arc::new(d) as Arc<dyn textgate_drivers::Device>)
    })?;
    if cluster.shared() {
        for d in &devices {
            d.share_sessions(cluster.clone());
        }
    }
    let dispatcher = Dispatcher::new(store.clone(), &cfg, devices);
    dispatcher.set_cluster(cluster.clone());
    let engine = dispatcher.start(stops.engine.clone());
    let state = textgate_http::AppState::new(
        store.clone(),
        dispatcher.clone(),
        cfg.clone(),
        ports.clone(),
    );
    let _ = state.cluster.set(cluster.clone());
    let webhooks = tokio::spawn(textgate_http::webhooks::run(
        state.clone(),
        stops.engine.clone(),
    ));
    // The administrators' dashboard counts read now, so that the first view does not wait.
    let warm = state.clone();
    tokio::spawn(async move { warm.dashboard.warm(&warm, None, None).await });
    // Imports a restart interrupted continue from their last committed batch.
    state.jobs.resume_uploads().await;
    let spool = start_spool(&cfg, &state, &stops).await?;
    textgate_smtp::mailer::Mailer::check(&cfg, &store)?;
    let mailer = {
        let run = textgate_smtp::mailer::run(
            store.clone(),
            dispatcher.clone(),
            cfg.clone(),
            stops.engine.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the e-mail sender stopped; e-mail notices wait until the next start");
            }
        })
    };
    // SMTP is bound first, so that when the HTTP line below is printed both are listening.
    // The sign-in's decoy hash, made off the way of the start (a sign-in before it is ready
    // makes it then).
    let signin = state.signin.clone();
    tokio::spawn(async move { signin.warm_up().await });
    let (smtp, gateway) = start_smtp(&cfg, &state, &stops).await?;
    let heartbeat = tokio::spawn(cluster.clone().run(stops.engine.clone()));
    let retention = tokio::spawn(textgate_engine::retention::run(
        store.clone(),
        cfg.retention.clone(),
        cfg.spool.as_ref().map(|s| std::path::PathBuf::from(&s.dir)),
        cluster.clone(),
        stops.engine.clone(),
    ));
    // Revoked API keys are forgotten here too, wherever they were revoked.
    let revocations = tokio::spawn(textgate_http::auth::watch_revocations(
        store.clone(),
        state.keys.clone(),
        move || {
            if let Some(g) = &gateway {
                g.forget_credentials();
            }
        },
        stops.engine.clone(),
    ));
    // Devices disabled by administrators, here or on another node.
    let device_controls = tokio::spawn(textgate_engine::dispatcher::watch_device_controls(
        dispatcher.clone(),
        stops.engine.clone(),
    ));
    let metrics = start_metrics(&cfg, &state, &root).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when http_listen ends in :0.
    println!("textgate listening on http://{addr}");
    tracing::info!(%addr, devices = cfg.devices.len(), "serving HTTP");
    let mut http = tokio::spawn(textgate_http::serve(listener, state, stops.intake.clone()));
    if let Some(n) = &systemd {
        // Every listener is bound (HTTP requests wait in its backlog until the task above
        // takes them), so what systemd starts after us can connect.
        n.ready(&format!("serving HTTP on http://{addr}"));
        start_watchdog(n, &store, &stops);
    }
    let http_failed = tokio::select! {
        _ = shutdown_signal() => None,
        r = &mut http => Some(r),
    };
    if let Some(n) = &systemd {
        n.stopping("shutting down: finishing what is in flight");
    }
    let deadline = Instant::now() + cfg.server.shutdown_grace.0;
    let tasks = Tasks {
        http: http_failed.is_none().then_some(http),
        smtp,
        spool,
        engine,
        background: vec![
            ("webhooks", webhooks),
            ("retention", retention),
            ("revocations", revocations),
            ("device controls", device_controls),
            ("mailer", mailer),
            ("node heartbeat", heartbeat),
        ],
        metrics,
    };
    tasks.drain(&stops, &root, deadline).await;
    store.close().await;
    tracing::info!("stopped");
    match http_failed {
        Some(Ok(Err(e))) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server stopped")),
        _ => Ok(()),
    }
}

/// Pings systemd's watchdog while the store answers, if the unit asks for it (`WatchdogSec`),
/// until shutdown begins.
fn start_watchdog(n: &Arc<Notifier>, store: &Store, stops: &Stops) {
    let Some(interval) = notify::watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    ) else {
        return;
    };
    tracing::info!(?interval, "pinging systemd's watchdog");
    let store = store.clone();
    tokio::spawn(notify::watchdog(
        n.clone(),
        interval,
        move || {
            let store = store.clone();
            async move { store.health().await.is_ok() }
        },
        stops.intake.clone(),
    ));
}

/// Opens (and migrates) the store; the numbering plan loads meanwhile, not when the first
/// text arrives. An administrator is made if there is none.
async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let numbers = tokio::task::spawn_blocking(textgate_core::address::warm_up);
    let store = Store::open(&cfg.server.database_url).await?;
    let _ = numbers.await;
    store.preallocate_log().await;
    tracing::info!(database = %redact_url(&cfg.server.database_url), backend = store.backend_name(), "store open");
    bootstrap_admin(&store).await?;
    warn_unknown_users(cfg, &store).await;
    Ok(store)
}

/// The watched folder, with `[spool]`.
async fn start_spool(
    cfg: &Config,
    state: &textgate_http::AppState,
    stops: &Stops,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(sp) = &cfg.spool else {
        return Ok(None);
    };
    let spool = textgate_jobs::spool::Spool::new(state.jobs.clone(), sp.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!(dir = %sp.dir, user = %sp.user, "watching the spool folder");
    // Nodes sharing the folder take turns: the one holding its lease watches it.
    let turn: Option<textgate_jobs::spool::Turn> =
        state.cluster.get().filter(|c| c.shared()).map(|c| {
            let c = c.clone();
            std::sync::Arc::new(move || {
                let c = c.clone();
                Box::pin(async move { c.lease("spool").await })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
            }) as textgate_jobs::spool::Turn
        });
    Ok(Some(tokio::spawn(spool.run(stops.intake.clone(), turn))))
}

/// The e-mail gateway's listener, with `[smtp]`, and the gateway (whose cached credentials a
/// revocation clears).
async fn start_smtp(
    cfg: &Config,
    state: &textgate_http::AppState,
    stops: &Stops,
) -> anyhow::Result<(
    Option<textgate_smtp::server::Running>,
    Option<Arc<textgate_smtp::Gateway>>,
)> {
    let Some(listener) = textgate_smtp::Listener::bind(cfg).await? else {
        return Ok((None, None));
    };
    // One limiter for SMTP AUTH and the web sign-in: a guesser meets the same count on both.
    let gateway = textgate_smtp::Gateway::new(
        state.store.clone(),
        state.dispatcher.clone(),
        state.signin.clone(),
        cfg,
    )
    .await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when [smtp] listen ends in :0.
    println!("textgate smtp listening on {addr}");
    tracing::info!(%addr, "serving SMTP");
    let gateway = Arc::new(gateway);
    let running = listener.start(gateway.clone(), stops.intake.clone());
    Ok((Some(running), Some(gateway)))
}

/// `/metrics` on an address of its own, with `[server] metrics_listen`. It stays up while the
/// rest drains (it stops with `root`).
async fn start_metrics(
    cfg: &Config,
    state: &textgate_http::AppState,
    root: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(at) = &cfg.server.metrics_listen else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen on {at} ([server] metrics_listen)"))?;
    let addr = l.local_addr()?;
    println!("textgate metrics listening on http://{addr}");
    let limits = textgate_http::server::Limits::from_config(&cfg.server);
    Ok(Some(tokio::spawn(textgate_http::server::serve(
        l,
        textgate_http::metrics_router(state.clone()),
        limits,
        root.clone(),
    ))))
}

/// What runs until shutdown, in the order it is stopped.
struct Tasks {
    /// The HTTP server, unless it has ended already.
    http: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    smtp: Option<textgate_smtp::server::Running>,
    spool: Option<tokio::task::JoinHandle<()>>,
    engine: textgate_engine::dispatcher::Running,
    /// The delivery loops and background passes, with their names for the log.
    background: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    metrics: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Tasks {
    /// Intake first (no new requests, mail or files; those in progress finish), then the
    /// engine (in-flight sends and deliveries finish and are recorded), then the metrics
    /// listener; each waited for until `deadline` at most.
    async fn drain(self, stops: &Stops, root: &CancellationToken, deadline: Instant) {
        tracing::info!(
            "shutting down: taking no new requests, mail or files; finishing what is in flight"
        );
        stops.intake.cancel();
        if let Some(http) = self.http {
            join_until("http", http, deadline).await;
        }
        if let Some(smtp) = self.smtp {
            smtp.finish(deadline).await;
        }
        if let Some(task) = self.spool {
            join_until("spool", task, deadline).await;
        }
        tracing::info!("shutting down: finishing in-flight sends and deliveries");
        stops.engine.cancel();
        self.engine.finish(deadline).await;
        for (what, task) in self.background {
            join_until(what, task, deadline).await;
        }
        root.cancel();
        if let Some(m) = self.metrics {
            join_until("metrics", m, deadline).await;
        }
    }
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
