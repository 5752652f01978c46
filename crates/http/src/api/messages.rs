//! Outbound messages: `POST /api/v1/messages` (one or many recipients), `GET` one, `GET` a
//! page of the caller's, and `POST …/cancel`.
//!
//! A send is validated whole before anything is stored (numbers, sender, text, times), then
//! all its messages and the answer for its `Idempotency-Key` are committed in one
//! transaction (through [`textgate_engine::submit`], the path the e-mail gateway shares),
//! and only then is 202 sent.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use textgate_core::address::{choose_sender, Recipient, Sender};
use textgate_core::clock::{format_rfc3339, now_ms, parse_rfc3339, Millis};
use textgate_core::encoding::{Body, BodyError};
use textgate_core::status::Status;
use textgate_engine::submit::{Accepted, Submission};
use textgate_store::{Cancel, Idempotency, Message, MessageFilter};

use super::json_body;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The body of `POST /api/v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// One number, or a list.
    pub to: Value,
    /// The text.
    pub body: String,
    /// Sender id: a number, short code or alphanumeric id.
    pub from: Option<String>,
    /// RFC 3339: send no earlier than this.
    pub schedule_at: Option<String>,
    /// RFC 3339: give up if not sent by then (default: `[server] default_validity`).
    pub expires_at: Option<String>,
    /// Where status changes are POSTed.
    pub callback_url: Option<String>,
    /// The caller's own reference, echoed back.
    pub reference: Option<String>,
}

/// The answer to `POST /api/v1/messages`.
#[derive(Serialize)]
struct AcceptedBody<'a> {
    messages: Vec<AcceptedItem<'a>>,
}

/// One accepted message in [`AcceptedBody`].
#[derive(Serialize)]
struct AcceptedItem<'a> {
    id: i64,
    to: &'a str,
    status: &'static str,
    segments: i64,
    encoding: &'static str,
}

const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_REFERENCE: usize = 256;
const MAX_CALLBACK_URL: usize = 2048;

fn recipients(to: &Value, state: &AppState) -> ApiResult<Vec<Recipient>> {
    let raw: Vec<&str> = match to {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_field",
                        format!("to[{i}] must be a string such as \"+15551234567\""),
                    )
                })
            })
            .collect::<ApiResult<_>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "`to` must be a phone number string or a list of them, like \"+15551234567\"",
            ))
        }
    };
    if raw.is_empty() {
        return Err(ApiError::invalid(
            "no_recipients",
            "`to` is empty: give at least one number",
        ));
    }
    let max = state.config.server.max_recipients;
    if raw.len() > max {
        return Err(ApiError::invalid(
            "too_many_recipients",
            format!("{} recipients in one request; the most allowed is {max} ([server] max_recipients): split the list, or use a bulk job", raw.len()),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match Recipient::parse(r, state.country) {
            Ok(rc) => out.push(rc),
            Err(e) => {
                let label = if matches!(to, Value::Array(_)) {
                    format!("to[{i}]")
                } else {
                    "to".into()
                };
                bad.push(format!("{label}: {e}"));
            }
        }
    }
    if !bad.is_empty() {
        let more = if bad.len() > 10 {
            format!(" (and {} more)", bad.len() - 10)
        } else {
            String::new()
        };
        bad.truncate(10);
        return Err(ApiError::invalid(
            "invalid_number",
            format!("{}{more}", bad.join("; ")),
        ));
    }
    Ok(out)
}

fn time_field(name: &str, v: &Option<String>) -> ApiResult<Option<Millis>> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339(s).map_err(|e| ApiError::invalid("invalid_time", format!("{name}: {e}")))
        })
        .transpose()
}

/// When a request reached its handler, before its caller is checked and its body read: what
/// the accept latency on `/metrics` is counted from. First among a handler's arguments, so
/// that it is taken first.
pub struct Arrived(std::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrived {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Arrived(std::time::Instant::now()))
    }
}

/// `POST /api/v1/messages`.
pub async fn send(
    Arrived(arrived): Arrived,
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (req, raw): (SendRequest, Bytes) =
        json_body(&headers, body, st.config.server.max_request_bytes.0)?;
    let to = recipients(&req.to, &st)?;
    let text = text_of(&req.body, &st)?;
    let from = sender_of(req.from.as_deref(), &caller.senders, &st)?;
    let now = now_ms();
    let (schedule_at, expires_at) = send_window(&req, &st, now)?;
    check_callback_and_reference(&req, &st)?;
    let idem = idempotency(&headers, caller.id, &raw)?;
    let status = if schedule_at.is_some_and(|s| s > now) {
        Status::Scheduled
    } else {
        Status::Queued
    };
    let render = accepted_answer(&to, status, &text);
    let count = to.len() as u64;
    let submission = Submission {
        owner_id: caller.id,
        to,
        from,
        body: text,
        schedule_at,
        expires_at,
        callback_url: req.callback_url,
        reference: req.reference,
        now,
        origin: None,
        api_key_id: caller.key_id,
        email_from: None,
        quota: st.dispatcher.quotas.limits(caller.role, caller.quota),
    };
    let accepted = st
        .dispatcher
        .submit(submission, idem, render)
        .await
        .map_err(ApiError::not_stored)?;
    match accepted {
        Accepted::New { response, .. } => {
            st.http.accepted.fetch_add(count, Ordering::Relaxed);
            st.http.accept.observe(arrived.elapsed());
            Ok(json_response(StatusCode::ACCEPTED, response))
        }
        Accepted::Replay { response } => {
            st.http.accept.observe(arrived.elapsed());
            Ok(json_response(StatusCode::ACCEPTED, response))
        }
        Accepted::KeyReused => Err(ApiError::invalid(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request: use a new key for a new request",
        )),
        Accepted::OverQuota(refused) => Ok(super::over_quota(&refused, now)),
    }
}

/// The text, split into parts: at most `[server] max_parts` of them.
fn text_of(body: &str, st: &AppState) -> ApiResult<Body> {
    Body::new(body, st.config.server.max_parts).map_err(|e| match e {
        BodyError::Empty => {
            ApiError::invalid("empty_body", "`body` is empty: give the text to send")
        }
        e @ BodyError::Nul => ApiError::invalid("invalid_body", format!("`body`: {e}")),
        other => ApiError::invalid(
            "body_too_long",
            format!("{other}: shorten it, or raise [server] max_parts"),
        ),
    })
}

/// The sender asked for, if the caller may send as it; the caller's default sender if none.
fn sender_of(from: Option<&str>, allowed: &[String], st: &AppState) -> ApiResult<Option<Sender>> {
    let asked = from
        .map(|f| {
            Sender::parse(f, st.country)
                .map_err(|e| ApiError::invalid("invalid_sender", format!("from: {e}")))
        })
        .transpose()?;
    choose_sender(allowed, asked, st.country).map_err(sender_refused)
}

/// The answer to a sender the caller may not use.
pub(crate) fn sender_refused(e: textgate_core::address::SenderNotAllowed) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "sender_not_allowed", e.to_string())
}

/// When the message may go (`schedule_at`, none for at once) and when it expires (its own
/// `expires_at`, else `[server] default_validity` after it may go).
fn send_window(
    req: &SendRequest,
    st: &AppState,
    now: Millis,
) -> ApiResult<(Option<Millis>, Millis)> {
    let schedule_at = time_field("schedule_at", &req.schedule_at)?;
    let validity = st.config.server.default_validity.0.as_millis() as Millis;
    let expires_at = time_field("expires_at", &req.expires_at)?
        .unwrap_or(schedule_at.unwrap_or(now).max(now) + validity);
    if expires_at <= now || schedule_at.is_some_and(|s| s >= expires_at) {
        return Err(ApiError::invalid(
            "invalid_time",
            "expires_at must be in the future and after schedule_at",
        ));
    }
    Ok((schedule_at, expires_at))
}

/// A callback URL must be allowed (see `http::callbacks`); both have a length limit.
fn check_callback_and_reference(req: &SendRequest, st: &AppState) -> ApiResult<()> {
    if let Some(url) = &req.callback_url {
        if url.len() > MAX_CALLBACK_URL {
            return Err(ApiError::invalid(
                "invalid_callback_url",
                format!("callback_url is longer than {MAX_CALLBACK_URL} bytes"),
            ));
        }
        st.callbacks
            .check_url(url)
            .map_err(|m| ApiError::invalid("invalid_callback_url", m))?;
    }
    if req
        .reference
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REFERENCE)
    {
        return Err(ApiError::invalid(
            "invalid_reference",
            format!("reference is longer than {MAX_REFERENCE} bytes"),
        ));
    }
    Ok(())
}

/// The request's `Idempotency-Key`, if it has one, with the fingerprint of its body.
fn idempotency(headers: &HeaderMap, user_id: i64, raw: &[u8]) -> ApiResult<Option<Idempotency>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters of text"),
            )
        })?;
    Ok(Some(Idempotency {
        user_id,
        key: key.to_string(),
        fingerprint: textgate_core::auth::hex(&Sha256::digest(raw)),
    }))
}

/// The 202 answer, built from the new ids inside the transaction that stores the messages
/// (so that a replay of the idempotency key gets the same answer).
fn accepted_answer(to: &[Recipient], status: Status, text: &Body) -> textgate_store::RenderFn {
    let encoding = text.encoding().as_str();
    let segments = i64::from(text.segments());
    let numbers: Vec<String> = to.iter().map(|r| r.as_str().to_string()).collect();
    Box::new(move |ids: &[i64]| {
        let messages = ids
            .iter()
            .zip(&numbers)
            .map(|(&id, to)| AcceptedItem {
                id,
                to,
                status: status.as_str(),
                segments,
                encoding,
            })
            .collect();
        serde_json::to_string(&AcceptedBody { messages }).unwrap_or_default()
    })
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A message as the API shows it.
pub fn message_json(m: &Message) -> Value {
    let t = |v: Option<Millis>| v.map(format_rfc3339);
    json!({
        "id": m.id,
        "to": m.to,
        "from": m.from,
        "body": m.body,
        "status": m.status.as_str(),
        "segments": m.segments,
        "encoding": m.encoding,
        "device": m.device,
        "error": m.error,
        "error_code": m.error_code,
        "attempts": m.attempts,
        "reference": m.reference,
        "created_at": format_rfc3339(m.created_at),
        "schedule_at": (m.status == Status::Scheduled).then(|| format_rfc3339(m.due_at)),
        "expires_at": format_rfc3339(m.expires_at),
        "sent_at": t(m.sent_at),
        "delivered_at": t(m.delivered_at()),
        "done_at": t(m.done_at),
    })
}

/// `GET /api/v1/messages/{id}`.
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "message")?;
    let m = match st.store.get_message(id).await? {
        Some(m) if caller.may_see(m.owner_id) => m,
        _ => return Err(ApiError::not_found("message")),
    };
    let mut v = message_json(&m);
    // The attempts that did not send it, read only for a message that had one (every
    // such attempt leaves an error, or a further attempt).
    if m.attempts > 1 || m.error.is_some() {
        let attempts: Vec<Value> = st
            .store
            .message_attempts(id)
            .await?
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "device": a.device,
                    "at": format_rfc3339(a.at),
                    "outcome": a.outcome,
                    "code": a.code,
                    "error": a.error,
                })
            })
            .collect();
        v["history"] = Value::Array(attempts);
    } else {
        v["history"] = json!([]);
    }
    Ok(Json(v))
}

/// The query of `GET /api/v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only in this status.
    pub status: Option<String>,
    /// Page size (1–1000, default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/v1/messages`: newest first.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(
                    "invalid_status",
                    format!("unknown status \"{s}\": use one of {}", names.join(", ")),
                )
            })
        })
        .transpose()?;
    let limit = super::page_limit(q.limit.as_deref(), 50, 1000)?;
    let before = super::id_cursor(q.cursor.as_deref())?;
    let rows = st
        .store
        .list_messages(MessageFilter {
            owner_id: caller.owner_filter(),
            status,
            before,
            limit: limit + 1,
            ..Default::default()
        })
        .await?;
    Ok(Json(super::page_json(
        "messages",
        rows,
        limit,
        q.cursor.filter(|c| !c.is_empty()),
        |m| m.id.to_string(),
        message_json,
    )))
}

/// `POST /api/v1/messages/{id}/cancel`.
pub async fn cancel(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "message")?;
    match st
        .store
        .cancel_message(id, caller.owner_filter(), now_ms())
        .await
        .map_err(ApiError::not_stored)?
    {
        Cancel::Cancelled(m) => {
            st.dispatcher.counters.final_status(Status::Cancelled);
            Ok(Json(message_json(&m)))
        }
        Cancel::NotFound => Err(ApiError::not_found("message")),
        Cancel::TooLate(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!(
                "the message is already {s}; only queued or scheduled messages can be cancelled"
            ),
        )),
    }
}
