//! Users (docs/api.md), for administrators: `GET /api/v1/users`, `POST` a new one (its
//! password given, or generated and shown once), `GET` and `PATCH` one (role, e-mail,
//! disabled), `POST …/password` to set or reset a password. A user may `GET` themselves.
//! The same rules as the web UI and `textgate user` (`textgate_engine::users`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::address::user_senders;
use textgate_core::clock::format_rfc3339;
use textgate_engine::users::{self, UserError};
use textgate_store::{Role, User, UserUpdate};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// A user as the API shows them (never the password hash).
pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "role": u.role.as_str(),
        "email": u.email,
        "created_at": format_rfc3339(u.created_at),
        "disabled_at": u.disabled_at.map(format_rfc3339),
        "senders": u.senders,
        "quota": {
            "texts_per_day": u.quota.daily,
            "texts_per_month": u.quota.monthly,
            "texts_per_second": u.quota.rate,
        },
    })
}

/// A user with their limits as they apply (`null`: none; `exempt` for administrators) and
/// what they have used of them.
async fn user_with_usage(st: &AppState, u: &User) -> ApiResult<Value> {
    let usage = st
        .dispatcher
        .quotas
        .usage(&st.store, u, textgate_core::clock::now_ms())
        .await?;
    let mut v = user_json(u);
    v["limits"] = match &usage.limits {
        None => json!({"exempt": true}),
        Some(l) => json!({
            "exempt": false,
            "texts_per_day": l.daily,
            "texts_per_month": l.monthly,
            "texts_per_second": l.rate,
        }),
    };
    v["usage"] = json!({"today": usage.today, "this_month": usage.this_month});
    Ok(v)
}

/// The `quota` of `PATCH /api/v1/users/{id}`: each limit a whole number (0: none) or null
/// (the `[quotas]` default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaRequest {
    /// Texts per UTC day.
    pub texts_per_day: Option<i64>,
    /// Texts per UTC month.
    pub texts_per_month: Option<i64>,
    /// Texts per second.
    pub texts_per_second: Option<i64>,
}

impl QuotaRequest {
    fn checked(self) -> ApiResult<textgate_store::Quota> {
        let max = textgate_core::config::quotas::MAX_QUOTA as i64;
        for (k, v) in [
            ("texts_per_day", self.texts_per_day),
            ("texts_per_month", self.texts_per_month),
            ("texts_per_second", self.texts_per_second),
        ] {
            if v.is_some_and(|v| !(0..=max).contains(&v)) {
                return Err(ApiError::invalid(
                    "invalid_user",
                    format!(
                        "quota.{k} must be from 0 (no limit) to {max}, or null for the default"
                    ),
                ));
            }
        }
        Ok(textgate_store::Quota {
            daily: self.texts_per_day,
            monthly: self.texts_per_month,
            rate: self.texts_per_second,
        })
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> ApiError {
        match e {
            UserError::Invalid(m) => ApiError::invalid("invalid_user", m),
            UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            UserError::NotFound => ApiError::not_found("user"),
            UserError::LastAdmin => {
                ApiError::new(StatusCode::CONFLICT, "last_admin", e.to_string())
            }
            UserError::Store(s) => ApiError::not_stored(s),
        }
    }
}

fn role_of(s: Option<&str>) -> ApiResult<Option<Role>> {
    s.map(|r| {
        Role::parse(r).ok_or_else(|| {
            ApiError::invalid(
                "invalid_user",
                format!("unknown role \"{r}\": use admin or user"),
            )
        })
    })
    .transpose()
}

/// `GET /api/v1/users` (administrators): every user, by name.
pub async fn list(caller: Caller, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let list = st.store.list_users().await?;
    let items: Vec<Value> = list.iter().map(user_json).collect();
    Ok(Json(
        json!({"users": items, "next_cursor": null, "has_more": false}),
    ))
}

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The login name.
    pub name: String,
    /// `admin` or `user` (default).
    pub role: Option<String>,
    /// The user's e-mail address.
    pub email: Option<String>,
    /// The password; absent = generated and answered once.
    pub password: Option<String>,
}

/// `POST /api/v1/users` (administrators).
pub async fn create(
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    super::require_admin(&caller)?;
    let (req, _) =
        super::json_body::<CreateRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let role = role_of(req.role.as_deref())?.unwrap_or(Role::User);
    let (user, generated) = users::create(
        &st.store,
        &caller.actor(),
        req.name.trim(),
        role,
        req.email,
        req.password,
    )
    .await?;
    tracing::info!(user = %user.name, role = user.role.as_str(), by = %caller.name, "user created");
    let mut v = user_json(&user);
    if let Some(pw) = generated {
        v["password"] = json!(pw);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/users/{id}`: administrators, or the user themselves.
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "user")?;
    if !caller.is_admin() && caller.id != id {
        return Err(ApiError::not_found("user"));
    }
    let u = st
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user_with_usage(&st, &u).await?))
}

/// The body of `PATCH /api/v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// `admin` or `user`.
    pub role: Option<String>,
    /// A new e-mail address; `""` removes it.
    pub email: Option<String>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
    /// The senders they may send as, the first their default; `[]`: any.
    pub senders: Option<Vec<String>>,
    /// Their own limits, all three at once.
    pub quota: Option<QuotaRequest>,
}

/// `PATCH /api/v1/users/{id}` (administrators).
pub async fn update(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let id = super::path_id(&id, "user")?;
    let (req, _) =
        super::json_body::<UpdateRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let update = UserUpdate {
        role: role_of(req.role.as_deref())?,
        email: req.email.map(|e| Some(e).filter(|e| !e.trim().is_empty())),
        disabled: req.disabled,
        senders: req
            .senders
            .map(|list| user_senders(&list, st.country))
            .transpose()
            .map_err(|m| ApiError::invalid("invalid_user", m))?,
        quota: req.quota.map(QuotaRequest::checked).transpose()?,
    };
    let forget =
        update.disabled == Some(true) || update.senders.is_some() || update.quota.is_some();
    let u = users::update(&st.store, &caller.actor(), id, update).await?;
    if forget {
        // This node forgets the user's keys at once (with what they allowed); other nodes
        // when their revocation check finds a disabled user, or the key's cache life ends.
        st.keys.retain(|c| c.id != u.id);
    }
    Ok(Json(user_with_usage(&st, &u).await?))
}

/// The body of `POST /api/v1/users/{id}/password`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordRequest {
    /// The new password; absent = generated and answered once.
    pub password: Option<String>,
}

/// `POST /api/v1/users/{id}/password` (administrators): sets the password and signs out the
/// user's web sessions.
pub async fn password(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let id = super::path_id(&id, "user")?;
    let (req, _) =
        super::json_body::<PasswordRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let generated = users::set_password(&st.store, &caller.actor(), id, req.password, None).await?;
    Ok(Json(json!({ "id": id, "password": generated })))
}
