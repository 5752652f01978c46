//! textgate's HTTP side (docs/api.md).
//!
//! - [`api`]: the REST API under `/api/v1` — messages, jobs, devices, inbound texts, the
//!   suppression list and webhook deliveries.
//! - [`auth`]: who is calling: `Authorization: Bearer API_KEY`, with a short-lived cache of
//!   verified keys so the hot path does not hit the database.
//! - [`error`]: the one error type; every failure is JSON `{"error": {"code", "message"}}`.
//! - [`ops`]: `/healthz`, `/metrics` (Prometheus text) and `/api/openapi.json`.
//! - [`server`]: the listener: connection cap, header, idle and request deadlines.
//! - [`callbacks`]: where users' `callback_url`s may point (no internal addresses).
//! - [`webhooks`]: the worker that POSTs inbound texts and status callbacks, signed, with
//!   retries and dead letters.
//! - [`web`]: the web UI, server-rendered pages from `/`.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod callbacks;
pub mod error;
pub mod ops;
pub mod server;
pub mod web;
pub mod webhooks;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use textgate_core::address::Country;
use textgate_core::config::Config;
use textgate_engine::dispatcher::Dispatcher;
use textgate_store::Store;

/// What every handler can reach: one pointer, so that the per-request clone axum makes of it
/// is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The data layer.
    pub store: Store,
    /// Devices and counters; woken when messages are stored.
    pub dispatcher: Arc<Dispatcher>,
    /// The configuration the server runs with.
    pub config: Arc<Config>,
    /// `[server] default_country`, parsed.
    pub country: Option<Country>,
    /// Verified API keys.
    pub keys: Arc<auth::KeyCache>,
    /// HTTP counters.
    pub http: Arc<HttpCounters>,
    /// Bulk jobs.
    pub jobs: textgate_jobs::Jobs,
    /// Where users' `callback_url`s may point.
    pub callbacks: callbacks::Guard,
    /// The queue depth `/metrics` shows.
    pub queue_depth: ops::QueueDepth,
    /// Password and API-key checks, with the failure limits shared by SMTP AUTH and the web
    /// sign-in.
    pub signin: Arc<textgate_engine::signin::SignIn>,
    /// The web UI dashboard's counts, kept a few seconds.
    pub dashboard: web::pages::DashboardCache,
    /// Remote port servers and their links.
    pub ports: Arc<textgate_port::central::PortServers>,
    /// This node among the nodes on the store (set once the server listens).
    pub cluster: std::sync::OnceLock<Arc<textgate_engine::cluster::Cluster>>,
}

/// Counters of the HTTP side.
pub struct HttpCounters {
    /// Messages accepted through the API.
    pub accepted: AtomicU64,
    /// `POST /api/v1/messages`, from the request to its `202`.
    pub accept: textgate_core::histogram::Histogram,
    /// Webhook deliveries.
    pub webhooks: Arc<textgate_engine::delivery::DeliveryCounters>,
}

impl Default for HttpCounters {
    fn default() -> Self {
        HttpCounters {
            accepted: AtomicU64::new(0),
            accept: textgate_core::histogram::Histogram::new(
                textgate_core::histogram::ACCEPT_BUCKETS,
            ),
            webhooks: Default::default(),
        }
    }
}

impl AppState {
    /// State for a server on this store, dispatcher and config.
    pub fn new(
        store: Store,
        dispatcher: Arc<Dispatcher>,
        config: Arc<Config>,
        ports: Arc<textgate_port::central::PortServers>,
    ) -> AppState {
        let d = dispatcher.clone();
        let jobs =
            textgate_jobs::Jobs::new(store.clone(), config.clone(), Arc::new(move || d.wake()));
        let signin = Arc::new(textgate_engine::signin::SignIn::new(
            store.clone(),
            &config.auth,
        ));
        AppState(Arc::new(Shared {
            jobs,
            callbacks: callbacks::Guard::from_config(&config.server),
            queue_depth: ops::QueueDepth::default(),
            country: config.default_country(),
            store,
            dispatcher,
            config,
            keys: Arc::new(auth::KeyCache::default()),
            http: Arc::new(HttpCounters::default()),
            signin,
            dashboard: web::pages::DashboardCache::default(),
            ports,
            cluster: std::sync::OnceLock::new(),
        }))
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let limit = usize::try_from(state.config.server.max_request_bytes.0).unwrap_or(usize::MAX);
    let upload_limit =
        usize::try_from(state.config.server.max_upload_bytes.0).unwrap_or(usize::MAX);
    let deadlines = server::RequestLimits {
        request: state.config.server.request_timeout.0,
        upload: state.config.server.upload_timeout.0,
    };
    let router = Router::new()
        .route(
            "/api/v1/messages",
            post(api::messages::send).get(api::messages::list),
        )
        .route("/api/v1/messages/{id}", get(api::messages::get_one))
        .route("/api/v1/messages/{id}/cancel", post(api::messages::cancel))
        .route(
            "/api/v1/jobs",
            // Uploads have their own limit; the handler counts the bytes of a text/csv body
            // itself, and this sets the multipart reader's.
            post(api::jobs::create)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(api::jobs::list),
        )
        .route("/api/v1/jobs/{id}", get(api::jobs::get_one))
        .route("/api/v1/jobs/{id}/pause", post(api::jobs::pause))
        .route("/api/v1/jobs/{id}/resume", post(api::jobs::resume))
        .route("/api/v1/jobs/{id}/cancel", post(api::jobs::cancel))
        .route("/api/v1/jobs/{id}/results.csv", get(api::jobs::results))
        .route("/api/v1/devices", get(api::devices::list))
        .route(
            "/api/v1/devices/{name}/disable",
            post(api::devices::disable),
        )
        .route("/api/v1/devices/{name}/enable", post(api::devices::enable))
        .route("/api/v1/keys", get(api::keys::list).post(api::keys::create))
        .route(
            "/api/v1/keys/{id}",
            axum::routing::delete(api::keys::revoke),
        )
        .route(
            "/api/v1/contacts",
            get(api::contacts::list).post(api::contacts::create),
        )
        .route(
            "/api/v1/contacts/{id}",
            get(api::contacts::get_one)
                .patch(api::contacts::update)
                .delete(api::contacts::delete),
        )
        .route(
            "/api/v1/groups",
            get(api::contacts::groups).post(api::contacts::create_group),
        )
        .route(
            "/api/v1/groups/{id}",
            get(api::contacts::group).delete(api::contacts::delete_group),
        )
        .route(
            "/api/v1/groups/{id}/members",
            post(api::contacts::add_member),
        )
        .route(
            "/api/v1/groups/{id}/members/{contact_id}",
            axum::routing::delete(api::contacts::remove_member),
        )
        .route(
            "/api/v1/users",
            get(api::users::list).post(api::users::create),
        )
        .route(
            "/api/v1/users/{id}",
            get(api::users::get_one).patch(api::users::update),
        )
        .route("/api/v1/users/{id}/password", post(api::users::password))
        .route(
            "/api/v1/devices/{name}/inbound",
            post(api::inbound::simulate),
        )
        .route("/api/v1/nodes", get(api::nodes::list))
        .route("/api/v1/status", get(api::status::get))
        .route("/api/v1/audit", get(api::audit::list))
        .route("/api/v1/port/link", get(api::ports::link))
        .route("/api/v1/port-servers", get(api::ports::list))
        .route("/api/v1/port-servers/{name}/drain", post(api::ports::drain))
        .route(
            "/api/v1/port-servers/{name}/resume",
            post(api::ports::resume),
        )
        .route("/api/v1/inbound", get(api::inbound::list))
        .route("/api/v1/inbound/{id}", get(api::inbound::get_one))
        .route(
            "/api/v1/suppressions",
            get(api::suppressions::list).post(api::suppressions::add),
        )
        .route(
            "/api/v1/suppressions/{number}",
            axum::routing::delete(api::suppressions::remove),
        )
        .route("/api/v1/webhooks/deliveries", get(api::deliveries::list))
        .route(
            "/api/v1/webhooks/deliveries/{id}",
            get(api::deliveries::get_one),
        )
        .route(
            "/api/v1/webhooks/deliveries/{id}/replay",
            post(api::deliveries::replay),
        )
        .route("/api/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz));
    // With a listen address of its own, /metrics is served there only.
    let router = if state.config.server.metrics_listen.is_none() {
        router.route("/metrics", get(ops::metrics))
    } else {
        router
    };
    router
        .merge(web::router(upload_limit))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            deadlines,
            server::request_deadline,
        ))
        .layer(axum::middleware::map_response(ops::json_errors))
        .with_state(state)
}

/// The application of `[server] metrics_listen`: `/metrics` and `/healthz` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .fallback(ops::not_found)
        .layer(axum::middleware::map_response(ops::json_errors))
        .with_state(state)
}

/// Serves the application on `listener` until `shutdown` is cancelled, then finishes the
/// requests in progress.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let limits = server::Limits::from_config(&state.config.server);
    server::serve(listener, router(state), limits, shutdown).await
}
