//! API keys (docs/api.md): `GET /api/v1/keys` (the caller's; administrators: everyone's, or
//! one user's with `?user=`), `POST /api/v1/keys` (a new key, shown once), and
//! `DELETE /api/v1/keys/{id}` (revokes it: refused at once on this node, and on other nodes
//! within [`crate::auth::REVOCATION_POLL`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::auth::new_api_key;
use textgate_core::clock::{format_rfc3339, now_ms};
use textgate_engine::audit;
use textgate_store::KeyInfo;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn key_json(k: &KeyInfo) -> Value {
    json!({
        "id": k.id,
        "user": k.user,
        "label": k.label,
        "webhook_secret": k.webhook_secret,
        "created_at": format_rfc3339(k.created_at),
        "last_used_at": k.last_used_at.map(format_rfc3339),
        "revoked_at": k.revoked_at.map(format_rfc3339),
    })
}

/// The query of `GET /api/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Administrators: only this user's keys.
    pub user: Option<String>,
}

/// The user a request names (administrators only), or the caller.
async fn named_user(
    st: &AppState,
    caller: &Caller,
    name: Option<&str>,
) -> ApiResult<(i64, String)> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok((caller.id, caller.name.clone())),
        Some(n) if n == caller.name => Ok((caller.id, caller.name.clone())),
        Some(n) => {
            super::require_admin(caller)?;
            let u = st.store.user_by_name(n).await?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no user named \"{n}\""),
                )
            })?;
            Ok((u.id, u.name))
        }
    }
}

/// `GET /api/v1/keys`: newest first.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let user = match (q.user.as_deref(), caller.is_admin()) {
        (None | Some(""), true) => None,
        (name, _) => Some(named_user(&st, &caller, name).await?.0),
    };
    let keys = st.store.list_api_keys(user).await?;
    let items: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(Json(
        json!({"keys": items, "next_cursor": null, "has_more": false}),
    ))
}

/// The body of `POST /api/v1/keys`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreateRequest {
    /// Administrators: the user the key is for (default: the caller).
    pub user: Option<String>,
    /// Also make a secret that signs the status callbacks of messages sent with the key.
    pub webhook_secret: bool,
}

/// `POST /api/v1/keys`: 201 with the key, shown this once.
pub async fn create(
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (req, _) =
        super::json_body::<CreateRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let (user_id, user) = named_user(&st, &caller, req.user.as_deref()).await?;
    let k = new_api_key(req.webhook_secret).map_err(|e| ApiError::internal(&e))?;
    let id = st
        .store
        .create_api_key(user_id, k.hash, k.label.clone(), k.webhook_secret.clone())
        .await
        .map_err(ApiError::not_stored)?;
    let detail = Some(format!("for {user}, label {}", k.label));
    audit::record(&st.store, &caller.actor(), "apikey.created", id, detail).await;
    let mut v = json!({
        "id": id,
        "key": k.key,
        "user": user,
        "label": k.label,
        "created_at": format_rfc3339(now_ms()),
    });
    if let Some(s) = k.webhook_secret {
        v["webhook_secret"] = json!(s);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

/// `DELETE /api/v1/keys/{id}`: the key, revoked. Another user's key is not found.
pub async fn revoke(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "key")?;
    let k = st
        .store
        .revoke_api_key(id, caller.owner_filter(), now_ms())
        .await
        .map_err(ApiError::not_stored)?
        .ok_or_else(|| ApiError::not_found("key"))?;
    // This node refuses it from now on; the others within REVOCATION_POLL.
    st.keys.retain(|c| c.key_id != Some(id));
    let detail = Some(format!("of {}, label {}", k.user, k.label));
    audit::record(&st.store, &caller.actor(), "apikey.revoked", id, detail).await;
    Ok(Json(key_json(&k)))
}
