//! Remote port servers (docs/port-servers.md):
//!
//! - `GET /api/v1/port/link`: the port servers' link, a WebSocket upgrade authenticated by
//!   the port server's token (`Authorization: Bearer TOKEN`); a wrong or missing token is
//!   answered 401 and logged without the token.
//! - `GET /api/v1/port-servers`: each port server, whether it is connected, when it was
//!   last seen, its devices and what it holds.
//! - `POST /api/v1/port-servers/{name}/drain` and `…/resume` (administrators): stop handing
//!   it messages (they wait, or fail over) while it finishes what it holds; and undo that.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use textgate_port::central::{serve_link, LinkIo, PortEntry, PortServers};
use textgate_port::link::MAX_FRAME;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// `GET /api/v1/port/link`: a port server joins.
pub async fn link(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrading: Option<axum::Extension<crate::server::Upgrading>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(entry) = token.and_then(|t| st.ports.authenticate(t)) else {
        // The token itself is never logged.
        tracing::warn!(%peer, given = token.is_some(), "a port server link was refused: wrong or missing token");
        return ApiError::unauthorized(
            "a port server joins with its token: send `Authorization: Bearer TOKEN` with the token of its [[port_server]] entry",
        )
        .into_response();
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return ApiError::bad_request(
                "not_a_websocket",
                format!("the port servers' link is a WebSocket: open it with an upgrade ({e})"),
            )
            .into_response()
        }
    };
    let ports = st.ports.clone();
    // The link has its own heartbeats; HTTP's idle deadline must not close it.
    if let Some(axum::Extension(u)) = upgrading {
        u.mark();
    }
    upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| pump(ports, entry, peer, socket))
}

/// Moves frames between the socket and the link's session.
async fn pump(ports: Arc<PortServers>, entry: Arc<PortEntry>, peer: SocketAddr, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, incoming) = mpsc::channel(1024);
    let (outgoing, mut out_rx) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(m) = stream.next().await {
            let item = match m {
                Ok(Message::Text(t)) => Ok(t.to_string()),
                Ok(Message::Binary(_)) => {
                    Err("a binary frame: the link carries text frames only".to_string())
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            let stop = item.is_err();
            if in_tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(256);
        while out_rx.recv_many(&mut batch, 256).await > 0 {
            for text in batch.drain(..) {
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    serve_link(
        ports,
        entry,
        peer.to_string(),
        LinkIo { incoming, outgoing },
    )
    .await;
    reader.abort();
    // The session dropped its sender: the writer sends what is queued, then closes.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// `GET /api/v1/port-servers`.
pub async fn list(caller: Caller, State(st): State<AppState>) -> Json<Value> {
    let admin = caller.is_admin();
    let list: Vec<Value> = st
        .ports
        .views()
        .into_iter()
        .map(|mut v| {
            if !admin {
                // Where it connects from and why it failed are for administrators.
                v.address = None;
                v.last_error = None;
            }
            json!(v)
        })
        .collect();
    Json(json!({ "port_servers": list, "next_cursor": null, "has_more": false }))
}

/// Drains a port server (`true`: it gets no new messages and finishes what it holds) or lets
/// it take messages again (`false`), by name; its view now, or 404. The API and the web UI's
/// devices page both switch it here.
pub fn set_draining(
    st: &AppState,
    name: &str,
    on: bool,
    by: &str,
) -> ApiResult<textgate_port::central::PortServerView> {
    let e = st
        .ports
        .get(name)
        .ok_or_else(|| ApiError::not_found("port server"))?;
    e.set_draining(on);
    if on {
        tracing::warn!(port_server = %name, %by, "port server draining: it gets no new messages and finishes what it holds");
    } else {
        st.dispatcher.wake();
        tracing::info!(port_server = %name, %by, "port server takes messages again");
    }
    Ok(e.view())
}

/// `POST /api/v1/port-servers/{name}/drain` (administrators).
pub async fn drain(
    caller: Caller,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    Ok(Json(json!(set_draining(&st, &name, true, &caller.name)?)))
}

/// `POST /api/v1/port-servers/{name}/resume` (administrators).
pub async fn resume(
    caller: Caller,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    Ok(Json(json!(set_draining(&st, &name, false, &caller.name)?)))
}
