//! The pages of the web UI. Each shows the signed-in user exactly what the API shows them:
//! their own messages and jobs and the inbound texts designated to them; administrators see
//! all messages and jobs, and the devices. A thing that is not the user's answers as one
//! that does not exist.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use textgate_core::address::{choose_sender, Recipient, Sender};
use textgate_core::clock::{format_rfc3339, now_ms, parse_rfc3339, Millis};
use textgate_core::encoding::{gsm7, Body, BodyError};
use textgate_core::status::Status;
use textgate_engine::submit::{Accepted, Submission};
use textgate_store::{
    Attempt, Cancel, ConversationItem, Id, Idempotency, InboxFilter, InboxMark, InboxMarkKind,
    Message, MessageFilter, Part,
};

use super::session::{forged, CsrfForm, Signed};
use super::{form_status, not_found, page, page_with, unavailable, Layout};
use crate::AppState;

const DAY: Millis = 86_400_000;
/// Rows on a page of the outbox and the inbox.
const PAGE: usize = 50;

/// A time as the pages show it: `2030-01-01 12:00:05 UTC`.
pub fn when(ms: Millis) -> String {
    let t = format_rfc3339(ms);
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t,
    }
}

/// An optional time, or a dash.
pub fn when_opt(ms: &Option<Millis>) -> String {
    ms.map_or_else(|| "—".to_string(), when)
}

/// `queued` → `Queued`, for labels.
fn label(status: Status) -> String {
    let s = status.as_str();
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Statuses after which nothing changes.
fn is_final(s: Status) -> bool {
    matches!(
        s,
        Status::Delivered
            | Status::Undelivered
            | Status::Failed
            | Status::Expired
            | Status::Cancelled
    )
}

// ---------------------------------------------------------------------------------------
// Dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    week: bool,
    today: Vec<(String, String, i64)>,
    this_week: Vec<(String, String, i64)>,
    inbound_today: i64,
    queue: Vec<(String, i64)>,
    devices: Vec<(String, String, String)>,
    chart: String,
    /// When the counts were read.
    counted: String,
}

/// `?range=` of the dashboard.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

/// What the dashboard counts, for one owner filter: messages by the hour they were accepted
/// and their status over the last 7 days, and the inbound texts since midnight.
#[derive(Clone)]
pub struct Counts {
    at: std::time::Instant,
    hourly: std::sync::Arc<Vec<(Millis, Status, i64)>>,
    inbound_today: i64,
}

/// The dashboard's counts per owner filter. Reading a week of messages is the most a page
/// does (about a second at a million messages), so no page view waits for it once the
/// counts are known: counts older than [`COUNTS_FOR`] are shown while a background read
/// replaces them; only counts never read, or older than [`COUNTS_STALE`], are read first.
/// Everyone's counts (the administrators' view) are read when the server starts.
#[derive(Default)]
pub struct DashboardCache(std::sync::Mutex<HashMap<Option<Id>, Entry>>);

struct Entry {
    counts: Counts,
    refreshing: bool,
}

/// How long the dashboard's counts are shown without a new read.
const COUNTS_FOR: std::time::Duration = std::time::Duration::from_secs(10);
/// How old counts may be and still be shown while newer ones are read.
const COUNTS_STALE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most owner filters the cache holds (it is emptied past that).
const COUNTS_KEPT: usize = 1000;

impl DashboardCache {
    async fn get(
        &self,
        st: &AppState,
        owner: Option<Id>,
        inbound_user: Option<Id>,
    ) -> Result<Counts, textgate_store::StoreError> {
        let (cached, refresh) = match self.0.lock() {
            Ok(mut m) => match m.get_mut(&owner) {
                Some(e) if e.counts.at.elapsed() < COUNTS_FOR => (Some(e.counts.clone()), false),
                Some(e) if e.counts.at.elapsed() < COUNTS_STALE => {
                    let refresh = !e.refreshing;
                    e.refreshing = true;
                    (Some(e.counts.clone()), refresh)
                }
                _ => (None, false),
            },
            Err(_) => (None, false),
        };
        if refresh {
            let st = st.clone();
            tokio::spawn(async move {
                let fresh = Self::load(&st, owner, inbound_user).await;
                st.dashboard.keep(owner, fresh.ok());
            });
        }
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = Self::load(st, owner, inbound_user).await?;
        self.keep(owner, Some(c.clone()));
        Ok(c)
    }

    /// Reads the counts of `owner` now, and keeps them.
    pub async fn warm(&self, st: &AppState, owner: Option<Id>, inbound_user: Option<Id>) {
        if let Ok(c) = Self::load(st, owner, inbound_user).await {
            self.keep(owner, Some(c));
        }
    }

    async fn load(
        st: &AppState,
        owner: Option<Id>,
        inbound_user: Option<Id>,
    ) -> Result<Counts, textgate_store::StoreError> {
        let now = now_ms();
        let midnight = now - now.rem_euclid(DAY);
        let (hourly, inbound_today) = tokio::try_join!(
            st.store.hourly(owner, now - 7 * DAY),
            st.store.inbound_count(inbound_user, midnight),
        )?;
        Ok(Counts {
            at: std::time::Instant::now(),
            hourly: std::sync::Arc::new(hourly),
            inbound_today,
        })
    }

    /// Keeps new counts (`None`: a read failed; the old ones stay, and the next view tries
    /// again).
    fn keep(&self, owner: Option<Id>, counts: Option<Counts>) {
        let Ok(mut m) = self.0.lock() else { return };
        match counts {
            Some(counts) => {
                if m.len() >= COUNTS_KEPT && !m.contains_key(&owner) {
                    m.clear();
                }
                m.insert(
                    owner,
                    Entry {
                        counts,
                        refreshing: false,
                    },
                );
            }
            None => {
                if let Some(e) = m.get_mut(&owner) {
                    e.refreshing = false;
                }
            }
        }
    }
}

/// Statuses with their counts, in the order [`Status::ALL`] has them.
fn by_status(rows: &[(Millis, Status, i64)], from: Millis) -> Vec<(String, String, i64)> {
    Status::ALL
        .iter()
        .filter_map(|&st| {
            let n: i64 = rows
                .iter()
                .filter(|(h, s, _)| *s == st && *h >= from)
                .map(|(_, _, n)| n)
                .sum();
            (n > 0).then(|| (st.as_str().to_string(), label(st), n))
        })
        .collect()
}

/// `GET /`: today's and this week's texts by status, inbound texts today, the queue, the
/// devices, and the texts accepted per hour over the last day or week, by what became of
/// them. The counts are read at most every 10 seconds ([`DashboardCache`]).
pub async fn dashboard(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<RangeQuery>,
) -> Response {
    let now = now_ms();
    let midnight = now - now.rem_euclid(DAY);
    let owner = me.owner_filter();
    let week = q.range.as_deref() == Some("week");
    let since = if week { now - 7 * DAY } else { now - DAY };
    let inbound_user = (!me.is_admin()).then_some(me.user.id);
    let counts = match st.dashboard.get(&st, owner, inbound_user).await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let store = st.store.clone();
    let queue = st
        .queue_depth
        .get(|| async move { store.queue_depth().await.ok() })
        .await
        .into_iter()
        .map(|(s, n)| (label(s), n))
        .collect();
    let devices = st
        .dispatcher
        .devices
        .iter()
        .map(|d| {
            (
                d.device.name().to_string(),
                d.device.kind().to_string(),
                d.state().as_str().to_string(),
            )
        })
        .collect();
    let buckets = super::chart::buckets(&counts.hourly, since, now);
    page(&DashboardPage {
        layout: Layout::of(&st, &me, "Dashboard", "dashboard").await,
        week,
        today: by_status(&counts.hourly, midnight),
        this_week: by_status(&counts.hourly, i64::MIN),
        inbound_today: counts.inbound_today,
        queue,
        devices,
        chart: super::chart::svg(&buckets, since),
        counted: when(now - counts.at.elapsed().as_millis() as Millis),
    })
}

// ---------------------------------------------------------------------------------------
// Compose

#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    layout: Layout,
    groups: Vec<textgate_store::Group>,
    group: Option<Id>,
    to: String,
    /// The senders the user may choose from; empty: any, typed.
    senders: Vec<String>,
    from: String,
    body: String,
    schedule_at: String,
    nonce: String,
    errors: Vec<String>,
    sent: Vec<(Id, String)>,
}

impl ComposePage {
    /// Whether `id` is the group chosen.
    fn chosen(&self, id: &Id) -> bool {
        self.group == Some(*id)
    }

    /// Whether `sender` is the one chosen.
    fn chosen_sender(&self, sender: &str) -> bool {
        self.from.eq_ignore_ascii_case(sender)
    }
}

fn nonce() -> String {
    textgate_core::auth::random_token(16).unwrap_or_default()
}

/// `?to=` of compose: a number to start with; `?group=`: a group to send to.
#[derive(Debug, Deserialize)]
pub struct ComposeQuery {
    to: Option<String>,
    group: Option<Id>,
}

async fn groups_of(st: &AppState, me: &Signed) -> Vec<textgate_store::Group> {
    st.store.list_groups(me.user.id).await.unwrap_or_default()
}

/// `GET /compose`.
pub async fn compose_form(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<ComposeQuery>,
) -> Response {
    page(&ComposePage {
        layout: Layout::of(&st, &me, "Compose", "compose").await,
        groups: groups_of(&st, &me).await,
        group: q.group,
        to: q.to.unwrap_or_default(),
        senders: me.user.senders.clone(),
        from: String::new(),
        body: String::new(),
        schedule_at: String::new(),
        nonce: nonce(),
        errors: Vec::new(),
        sent: Vec::new(),
    })
}

/// The compose form.
#[derive(Debug, Deserialize)]
pub struct ComposeForm {
    csrf: String,
    #[serde(default)]
    to: String,
    /// A group of the address book, whose numbers are added to `to`.
    #[serde(default)]
    group: String,
    #[serde(default)]
    from: String,
    body: String,
    /// RFC 3339, filled by the page's script from the local date and time; empty = now.
    #[serde(default)]
    schedule_at: String,
    /// One per form shown: sending the same form twice sends once.
    nonce: String,
}

/// The numbers of a recipients field: separated by commas, semicolons, spaces between
/// numbers, or new lines.
fn split_numbers(field: &str) -> Vec<&str> {
    field
        .split([',', ';', '\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// What a form asks to send, checked: the errors say what is wrong, each with its field.
struct Checked {
    to: Vec<Recipient>,
    from: Option<Sender>,
    body: Option<Body>,
    schedule_at: Option<Millis>,
    errors: Vec<String>,
}

/// `allowed`: the senders the user may send as (empty: any).
fn check_send(
    st: &AppState,
    allowed: &[String],
    to: &str,
    from: &str,
    body: &str,
    schedule_at: &str,
) -> Checked {
    let mut errors = Vec::new();
    let mut numbers = split_numbers(to);
    // A number twice (typed and in a group) is sent to once.
    let mut seen = std::collections::HashSet::new();
    numbers.retain(|n| seen.insert(*n));
    let max = st.config.server.max_recipients;
    if numbers.is_empty() {
        errors.push("To: give at least one number.".to_string());
    } else if numbers.len() > max {
        errors.push(format!(
            "To: {} numbers; the most in one send is {max}. Split the list, or upload it as a bulk job.",
            numbers.len()
        ));
    }
    let mut recipients = Vec::with_capacity(numbers.len());
    for n in numbers.iter().take(max) {
        match Recipient::parse(n, st.country) {
            Ok(r) => recipients.push(r),
            Err(e) => errors.push(format!("To: {n}: {e}")),
        }
    }
    let from = (!from.trim().is_empty())
        .then(|| Sender::parse(from.trim(), st.country))
        .transpose()
        .map_err(|e| e.to_string())
        .and_then(|asked| choose_sender(allowed, asked, st.country).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            errors.push(format!("From: {e}"));
            None
        });
    let body = match Body::new(body, st.config.server.max_parts) {
        Ok(b) => Some(b),
        Err(BodyError::Empty) => {
            errors.push("Message: write the text to send.".into());
            None
        }
        Err(e @ BodyError::Nul) => {
            errors.push(format!("Message: {e}."));
            None
        }
        Err(e) => {
            errors.push(format!("Message: {e}. Shorten it."));
            None
        }
    };
    let schedule_at = if schedule_at.trim().is_empty() {
        None
    } else {
        match parse_rfc3339(schedule_at.trim()) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(format!("Send at: {e}"));
                None
            }
        }
    };
    Checked {
        to: recipients,
        from,
        body,
        schedule_at,
        errors,
    }
}

/// Stores a send from the web UI through the path every edge shares; the ids of the new
/// messages (or, for a form sent twice, those of the first time).
async fn submit(
    st: &AppState,
    me: &Signed,
    c: Checked,
    nonce: &str,
    fingerprint: &str,
) -> Result<Vec<(Id, String)>, String> {
    let Some(body) = c.body else {
        return Err("nothing to send".into());
    };
    let now = now_ms();
    let validity = st.config.server.default_validity.0.as_millis() as Millis;
    let expires_at = c.schedule_at.unwrap_or(now).max(now) + validity;
    let numbers: Vec<String> = c.to.iter().map(|r| r.as_str().to_string()).collect();
    let count = numbers.len() as u64;
    let render: textgate_store::RenderFn = Box::new(move |ids: &[i64]| {
        json!(ids.iter().zip(&numbers).collect::<Vec<_>>()).to_string()
    });
    let idem = (!nonce.is_empty() && nonce.len() <= 64).then(|| Idempotency {
        user_id: me.user.id,
        key: format!("web:{nonce}"),
        fingerprint: fingerprint.to_string(),
    });
    let accepted = st
        .dispatcher
        .submit(
            Submission {
                owner_id: me.user.id,
                to: c.to,
                from: c.from,
                body,
                schedule_at: c.schedule_at,
                expires_at,
                callback_url: None,
                reference: None,
                now,
                origin: None,
                api_key_id: None,
                email_from: None,
                quota: st.dispatcher.quotas.limits(me.user.role, me.user.quota),
            },
            idem,
            render,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "web send: not stored");
            "textgate could not store the messages just now; nothing was sent. Try again."
                .to_string()
        })?;
    let response = match accepted {
        Accepted::New { response, .. } => {
            st.http.accepted.fetch_add(count, Ordering::Relaxed);
            response
        }
        Accepted::Replay { response } => response,
        Accepted::KeyReused => {
            return Err("This form was already used to send something else. Open Compose again to send a new text.".into())
        }
        Accepted::OverQuota(refused) => {
            return Err(format!("Nothing was sent: {}.", refused.message()))
        }
    };
    serde_json::from_str(&response).map_err(|e| format!("unreadable answer: {e}"))
}

fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    textgate_core::auth::hex(&h.finalize())
}

/// `POST /compose`: sends, then shows the messages it made (a form sent twice sends once).
pub async fn compose(
    State(st): State<AppState>,
    me: Signed,
    Form(f): Form<ComposeForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let group: Option<Id> = f.group.trim().parse().ok();
    let mut to = f.to.clone();
    let mut group_error = None;
    if let Some(g) = group {
        match super::contacts::group_numbers(&st, &me, g).await {
            Ok(numbers) if numbers.is_empty() => {
                group_error = Some("To: the group has no contacts.".to_string())
            }
            Ok(numbers) => {
                to.push('\n');
                to.push_str(&numbers.join("\n"));
            }
            Err(e) => group_error = Some(format!("To: {e}")),
        }
    }
    let mut c = check_send(&st, &me.user.senders, &to, &f.from, &f.body, &f.schedule_at);
    if let Some(e) = group_error {
        c.errors.push(e);
    }
    let layout = Layout::of(&st, &me, "Compose", "compose").await;
    let groups = groups_of(&st, &me).await;
    let again = |layout, errors: Vec<String>| {
        page_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ComposePage {
                layout,
                groups: groups.clone(),
                group,
                to: f.to.clone(),
                senders: me.user.senders.clone(),
                from: f.from.clone(),
                body: f.body.clone(),
                schedule_at: f.schedule_at.clone(),
                nonce: f.nonce.clone(),
                errors,
                sent: Vec::new(),
            },
        )
    };
    if !c.errors.is_empty() {
        return again(layout, c.errors);
    }
    let fp = fingerprint(&[&f.to, &f.group, &f.from, &f.body, &f.schedule_at]);
    match submit(&st, &me, c, &f.nonce, &fp).await {
        Ok(sent) => page(&ComposePage {
            layout,
            groups: groups.clone(),
            group: None,
            to: String::new(),
            senders: me.user.senders.clone(),
            from: f.from.clone(),
            body: String::new(),
            schedule_at: String::new(),
            nonce: nonce(),
            errors: Vec::new(),
            sent,
        }),
        Err(e) => again(layout, vec![e]),
    }
}

/// What the compose page's counter sends.
#[derive(Debug, Deserialize)]
pub struct CountRequest {
    #[serde(default)]
    body: String,
    #[serde(default)]
    to: String,
}

/// `POST /compose/count` (JSON, the session's CSRF token in `X-CSRF-Token`): the text's
/// characters, encoding and parts as the server will send it, the characters that force
/// UCS-2, and the recipients that are not numbers or have opted out. The page's live
/// counter shows this answer, so it matches what is sent exactly.
pub async fn count(
    State(st): State<AppState>,
    me: Signed,
    headers: axum::http::HeaderMap,
    Json(req): Json<CountRequest>,
) -> Response {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !me.csrf_ok(token) {
        return forged();
    }
    let max_parts = st.config.server.max_parts;
    let chars = req.body.chars().count();
    let mut forcing: Vec<char> = req
        .body
        .chars()
        .filter(|c| gsm7::lookup(*c).is_none())
        .collect();
    forcing.sort_unstable();
    forcing.dedup();
    forcing.truncate(20);
    let (encoding, parts, units, too_long) = match Body::new(&req.body, 255) {
        Ok(b) => (
            b.encoding().as_str(),
            b.segments(),
            b.units(),
            b.segments() > max_parts,
        ),
        Err(BodyError::TooLong { parts, units, .. }) => (
            if forcing.is_empty() { "gsm7" } else { "ucs2" },
            parts,
            units,
            true,
        ),
        Err(BodyError::Empty | BodyError::Nul) => ("gsm7", 0, 0, false),
    };
    let numbers = split_numbers(&req.to);
    let mut invalid = Vec::new();
    let mut valid = Vec::new();
    for n in numbers.iter().take(st.config.server.max_recipients) {
        match Recipient::parse(n, st.country) {
            Ok(r) => valid.push(r.as_str().to_string()),
            Err(_) => invalid.push(n.to_string()),
        }
    }
    let opted_out = if valid.is_empty() {
        Vec::new()
    } else {
        st.store
            .suppressed_among(valid.clone())
            .await
            .unwrap_or_default()
    };
    Json(json!({
        "chars": chars,
        "encoding": encoding,
        "units": units,
        "parts": parts,
        "max_parts": max_parts,
        "too_long": too_long,
        "ucs2_because": forcing.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "recipients": valid.len(),
        "invalid": invalid,
        "opted_out": opted_out,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------
// Outbox

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    layout: Layout,
    rows: Vec<Row>,
    q: OutboxQuery,
    devices: Vec<String>,
    statuses: Vec<&'static str>,
    next: Option<String>,
    export: String,
}

/// A message as a row of a list.
struct Row {
    id: Id,
    to: String,
    body: String,
    status: String,
    status_label: String,
    final_status: bool,
    device: String,
    created: String,
    owner: String,
}

impl Row {
    fn of(m: &Message, owners: &HashMap<Id, String>) -> Row {
        let mut body: String = m.body.chars().take(80).collect();
        if m.body.chars().count() > 80 {
            body.push('…');
        }
        Row {
            id: m.id,
            to: m.to.clone(),
            body,
            status: m.status.as_str().to_string(),
            status_label: label(m.status),
            final_status: is_final(m.status),
            device: m.device.clone().unwrap_or_default(),
            created: when(m.created_at),
            owner: owners.get(&m.owner_id).cloned().unwrap_or_default(),
        }
    }
}

/// The outbox's filters.
#[derive(Debug, Deserialize, Default)]
pub struct OutboxQuery {
    #[serde(default)]
    status: String,
    /// Administrators: one user's messages, by name.
    #[serde(default)]
    owner: String,
    /// A number's digits, or a piece of the text.
    #[serde(default)]
    q: String,
    /// A device's name.
    #[serde(default)]
    device: String,
    /// The first day (`YYYY-MM-DD`, UTC).
    #[serde(default)]
    from: String,
    /// The last day, included.
    #[serde(default)]
    to: String,
    before: Option<Id>,
}

impl OutboxQuery {
    /// The query string of these filters (and a cursor).
    fn query(&self, before: Option<Id>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("status", &self.status),
            ("owner", &self.owner),
            ("q", &self.q),
            ("device", &self.device),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", super::urlencode(v)));
            }
        }
        if let Some(b) = before {
            parts.push(format!("before={b}"));
        }
        parts.join("&")
    }
}

/// The start of a day given as `YYYY-MM-DD` (UTC); the error says how to write it.
fn day_start(field: &str, day: &str) -> Result<Option<Millis>, String> {
    if day.trim().is_empty() {
        return Ok(None);
    }
    parse_rfc3339(&format!("{}T00:00:00Z", day.trim()))
        .map(Some)
        .map_err(|_| format!("{field}: write the date like 2030-01-31."))
}

const STATUSES: [&str; 10] = [
    "queued",
    "scheduled",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "expired",
    "cancelled",
    "",
];

/// The filter a query asks for, for this user: `Err` is the page to show instead.
async fn outbox_filter(
    st: &AppState,
    me: &Signed,
    q: &OutboxQuery,
    limit: usize,
) -> Result<MessageFilter, Response> {
    let status = if q.status.is_empty() {
        None
    } else {
        Some(Status::parse(&q.status).ok_or_else(|| {
            super::error_page(
                StatusCode::BAD_REQUEST,
                "Unknown status",
                "Choose a status from the list.",
            )
        })?)
    };
    let owner_id = if me.is_admin() && !q.owner.is_empty() {
        match st.store.user_by_name(q.owner.trim()).await {
            Ok(Some(u)) => Some(u.id),
            Ok(None) => {
                return Err(super::error_page(
                    StatusCode::NOT_FOUND,
                    "No such user",
                    "No user has that name. Clear the owner filter to see everyone's messages.",
                ))
            }
            Err(e) => return Err(unavailable(e)),
        }
    } else {
        me.owner_filter()
    };
    let bad_date = |m: String| super::error_page(StatusCode::BAD_REQUEST, "Unreadable date", &m);
    let since = day_start("From", &q.from).map_err(bad_date)?;
    let until = day_start("To", &q.to).map_err(bad_date)?.map(|t| t + DAY);
    Ok(MessageFilter {
        owner_id,
        status,
        before: q.before,
        limit,
        device: Some(q.device.trim().to_string()).filter(|d| !d.is_empty()),
        since,
        until,
        search: Some(q.q.trim().chars().take(100).collect::<String>()).filter(|s| !s.is_empty()),
    })
}

/// The names of the owners of `messages`, for administrators' lists.
async fn owner_names(st: &AppState, me: &Signed, messages: &[Message]) -> HashMap<Id, String> {
    let mut names = HashMap::new();
    if !me.is_admin() {
        return names;
    }
    for m in messages {
        if let std::collections::hash_map::Entry::Vacant(v) = names.entry(m.owner_id) {
            if let Ok(Some(u)) = st.store.user_by_id(m.owner_id).await {
                v.insert(u.name);
            }
        }
    }
    names
}

/// `GET /outbox`: the user's messages (administrators: everyone's, or one owner's), newest
/// first, a page at a time, by status; statuses update live on the page.
pub async fn outbox(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let filter = match outbox_filter(&st, &me, &q, PAGE + 1).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut messages = match st.store.list_messages(filter).await {
        Ok(m) => m,
        Err(e) => return unavailable(e),
    };
    let more = messages.len() > PAGE;
    messages.truncate(PAGE);
    let owners = owner_names(&st, &me, &messages).await;
    let next = more
        .then(|| {
            messages
                .last()
                .map(|m| format!("/outbox?{}", q.query(Some(m.id))))
        })
        .flatten();
    page(&OutboxPage {
        layout: Layout::of(&st, &me, "Outbox", "outbox").await,
        rows: messages.iter().map(|m| Row::of(m, &owners)).collect(),
        devices: st
            .dispatcher
            .devices
            .iter()
            .map(|d| d.device.name().to_string())
            .collect(),
        statuses: STATUSES.to_vec(),
        next,
        export: format!("/outbox.csv?{}", q.query(None)),
        q,
    })
}

/// The most rows an export holds.
const MAX_EXPORT: usize = 100_000;

/// `GET /outbox.csv`: the filtered list as CSV (at most 100,000 rows, newest first).
pub async fn outbox_csv(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let mut filter = match outbox_filter(&st, &me, &q, 1000).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut out = String::from(
        "id,to,from,status,segments,encoding,device,error,created_at,sent_at,done_at,body\r\n",
    );
    let mut rows = 0;
    while rows < MAX_EXPORT {
        let batch = match st.store.list_messages(filter.clone()).await {
            Ok(b) => b,
            Err(e) => return unavailable(e),
        };
        let Some(last) = batch.last() else { break };
        filter.before = Some(last.id);
        for m in &batch {
            let fields = [
                m.id.to_string(),
                m.to.clone(),
                m.from.clone().unwrap_or_default(),
                m.status.as_str().to_string(),
                m.segments.to_string(),
                m.encoding.clone(),
                m.device.clone().unwrap_or_default(),
                m.error.clone().unwrap_or_default(),
                format_rfc3339(m.created_at),
                m.sent_at.map(format_rfc3339).unwrap_or_default(),
                m.done_at.map(format_rfc3339).unwrap_or_default(),
                m.body.clone(),
            ];
            let line: Vec<String> = fields
                .iter()
                .map(|f| textgate_jobs::results::field(f))
                .collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        rows += batch.len();
        if batch.len() < filter.limit {
            break;
        }
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"outbox.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

/// `?ids=` of the status poll.
#[derive(Debug, Deserialize)]
pub struct IdsQuery {
    #[serde(default)]
    ids: String,
}

/// `GET /outbox/status?ids=1,2,3` (JSON): the statuses of those of the user's messages, for
/// the live outbox. At most 200 ids.
pub async fn statuses(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<IdsQuery>,
) -> Response {
    let ids: Vec<Id> = q
        .ids
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .take(200)
        .collect();
    if ids.is_empty() {
        return Json(json!({})).into_response();
    }
    let messages = match st.store.messages_by_ids(ids).await {
        Ok(m) => m,
        Err(e) => return unavailable(e),
    };
    let out: serde_json::Map<String, Value> = messages
        .iter()
        .filter(|m| me.may_see(m.owner_id))
        .map(|m| {
            (
                m.id.to_string(),
                json!({
                    "status": m.status.as_str(),
                    "label": label(m.status),
                    "final": is_final(m.status),
                    "device": m.device,
                }),
            )
        })
        .collect();
    Json(Value::Object(out)).into_response()
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    layout: Layout,
    m: Message,
    status_label: String,
    final_status: bool,
    owner: String,
    timeline: Vec<(String, String, String)>,
    cancellable: bool,
}

/// `GET /outbox/{id}`: one message and its timeline.
pub async fn message(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    let m = match st.store.get_message(id).await {
        Ok(Some(m)) if me.may_see(m.owner_id) => m,
        Ok(_) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let (parts, attempts) =
        match tokio::try_join!(st.store.message_parts(id), st.store.message_attempts(id)) {
            Ok(p) => p,
            Err(e) => return unavailable(e),
        };
    let owner = match st.store.user_by_id(m.owner_id).await {
        Ok(u) => u.map(|u| u.name).unwrap_or_default(),
        Err(e) => return unavailable(e),
    };
    page(&MessagePage {
        layout: Layout::of(&st, &me, &format!("Message {id}"), "outbox").await,
        status_label: label(m.status),
        final_status: is_final(m.status),
        owner,
        timeline: timeline(&m, &parts, &attempts)
            .into_iter()
            .map(|(at, what, detail)| (when(at), what, detail))
            .collect(),
        cancellable: matches!(m.status, Status::Queued | Status::Scheduled),
        m,
    })
}

/// What happened to a message, in order: `(when, what, detail)`.
fn timeline(m: &Message, parts: &[Part], attempts: &[Attempt]) -> Vec<(Millis, String, String)> {
    let mut t = vec![(
        m.created_at,
        "Accepted".to_string(),
        format!("{} part(s), {}", m.segments, m.encoding),
    )];
    if m.status == Status::Scheduled || m.due_at > m.created_at + 1000 {
        t.push((m.due_at, "Due".into(), "may be sent from this time".into()));
    }
    for a in attempts {
        let on = a
            .device
            .as_deref()
            .map(|d| format!(" on device {d}"))
            .unwrap_or_default();
        let what = match a.outcome.as_str() {
            "retry" => format!("Attempt {} failed{on}; retried", a.attempt),
            "throttled" => format!("Attempt {} throttled{on}; retried", a.attempt),
            "lease" => format!("Attempt {} interrupted; back in the queue", a.attempt),
            "expired" => format!("Attempt {} expired{on}", a.attempt),
            _ => format!("Attempt {} refused{on}", a.attempt),
        };
        let code = a
            .code
            .as_deref()
            .map(|c| format!(" (code {c})"))
            .unwrap_or_default();
        t.push((
            a.at,
            what,
            format!("{}{code}", a.error.as_deref().unwrap_or("")),
        ));
    }
    // Messages from before attempts were kept: their count and last error.
    if m.attempts > 1 && attempts.is_empty() {
        t.push((
            m.sent_at.unwrap_or(m.due_at),
            "Retried".into(),
            format!(
                "{} attempts{}",
                m.attempts,
                m.error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
        ));
    }
    for p in parts {
        t.push((
            p.submitted_at,
            format!("Part {} sent", p.part_no),
            format!("to device {} (id {})", p.device, p.device_msg_id),
        ));
        if let Some(done) = p.done_at {
            let what = match p.status.as_str() {
                "delivered" => "delivered",
                "undelivered" => "not delivered",
                other => other,
            };
            t.push((
                done,
                format!("Part {} {what}", p.part_no),
                p.error_code
                    .as_deref()
                    .map(|c| format!("network code {c}"))
                    .unwrap_or_else(|| "receipt from the network".into()),
            ));
        }
    }
    if let Some(done) = m.done_at {
        if is_final(m.status) {
            t.push((done, label(m.status), m.error.clone().unwrap_or_default()));
        }
    }
    t.sort_by_key(|(at, _, _)| *at);
    t
}

/// `POST /outbox/{id}/cancel`.
pub async fn cancel(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let owner = me.owner_filter();
    match st.store.cancel_message(id, owner, now_ms()).await {
        Ok(Cancel::Cancelled(_)) | Ok(Cancel::TooLate(_)) => {
            Redirect::to(&format!("/outbox/{id}")).into_response()
        }
        Ok(Cancel::NotFound) => not_found(),
        Err(e) => unavailable(e),
    }
}

// ---------------------------------------------------------------------------------------
// Inbox

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    archived: bool,
    rows: Vec<InboxRow>,
    next: Option<String>,
}

struct InboxRow {
    from: String,
    to: String,
    body: String,
    received: String,
    unread: bool,
}

/// The inbox's query.
#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    archived: Option<String>,
    before: Option<Id>,
}

/// `GET /inbox`: the inbound texts designated to the signed-in user, newest first, unread
/// ones marked; `?archived=1` the archived ones.
pub async fn inbox(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<InboxQuery>,
) -> Response {
    let archived = q.archived.as_deref().is_some_and(|a| a == "1");
    let mut entries = match st
        .store
        .inbox(InboxFilter {
            user_id: me.user.id,
            archived,
            from: None,
            before: q.before,
            limit: PAGE + 1,
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return unavailable(e),
    };
    let more = entries.len() > PAGE;
    entries.truncate(PAGE);
    let next = more
        .then(|| {
            entries.last().map(|e| {
                format!(
                    "/inbox?{}before={}",
                    if archived { "archived=1&" } else { "" },
                    e.text.id
                )
            })
        })
        .flatten();
    page(&InboxPage {
        layout: Layout::of(&st, &me, "Inbox", "inbox").await,
        archived,
        rows: entries
            .iter()
            .map(|e| InboxRow {
                from: e.text.from.clone(),
                to: e.text.to.clone(),
                body: e.text.body.clone(),
                received: when(e.text.received_at),
                unread: e.read_at.is_none(),
            })
            .collect(),
        next,
    })
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    layout: Layout,
    number: String,
    items: Vec<Bubble>,
    error: Option<String>,
    body: String,
    nonce: String,
}

/// One text of a conversation as the page shows it.
struct Bubble {
    mine: bool,
    body: String,
    at: String,
    status: String,
    status_label: String,
    id: Id,
}

/// How many texts each way a conversation shows.
const CONVERSATION: usize = 200;

async fn conversation_page(
    st: &AppState,
    me: &Signed,
    number: &str,
    error: Option<String>,
    body: String,
) -> Response {
    let items = match st
        .store
        .conversation(me.user.id, number, CONVERSATION)
        .await
    {
        Ok(i) => i,
        Err(e) => return unavailable(e),
    };
    let items = items
        .into_iter()
        .map(|i| match i {
            ConversationItem::In(e) => Bubble {
                mine: false,
                body: e.text.body,
                at: when(e.text.received_at),
                status: String::new(),
                status_label: String::new(),
                id: e.text.id,
            },
            ConversationItem::Out(m) => Bubble {
                mine: true,
                status: m.status.as_str().to_string(),
                status_label: label(m.status),
                body: m.body,
                at: when(m.created_at),
                id: m.id,
            },
        })
        .collect();
    let status = form_status(&error);
    page_with(
        status,
        &ConversationPage {
            layout: Layout::of(st, me, number, "inbox").await,
            number: number.to_string(),
            items,
            error,
            body,
            nonce: nonce(),
        },
    )
}

/// `GET /inbox/{number}`: the texts between the user and a number, both ways, in order;
/// opening it marks the number's texts read.
pub async fn conversation(
    State(st): State<AppState>,
    me: Signed,
    Path(number): Path<String>,
) -> Response {
    if number.len() > 32 {
        return not_found();
    }
    if let Err(e) = st
        .store
        .mark_inbox(
            InboxMark {
                user_id: me.user.id,
                what: InboxMarkKind::Read,
                id: None,
                from: Some(number.clone()),
            },
            now_ms(),
        )
        .await
    {
        return unavailable(e);
    }
    conversation_page(&st, &me, &number, None, String::new()).await
}

/// The reply form.
#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    csrf: String,
    body: String,
    nonce: String,
}

/// `POST /inbox/{number}/reply`: a text to the number, routed like any message; it joins the
/// conversation.
pub async fn reply(
    State(st): State<AppState>,
    me: Signed,
    Path(number): Path<String>,
    Form(f): Form<ReplyForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let c = check_send(&st, &me.user.senders, &number, "", &f.body, "");
    if !c.errors.is_empty() {
        return conversation_page(&st, &me, &number, Some(c.errors.join(" ")), f.body).await;
    }
    let fp = fingerprint(&[&number, &f.body]);
    match submit(&st, &me, c, &f.nonce, &fp).await {
        Ok(_) => Redirect::to(&format!("/inbox/{}", super::urlencode(&number))).into_response(),
        Err(e) => conversation_page(&st, &me, &number, Some(e), f.body).await,
    }
}

/// The archive form: `undo` puts the texts back.
#[derive(Debug, Deserialize)]
pub struct ArchiveForm {
    csrf: String,
    #[serde(default)]
    undo: Option<String>,
}

/// `POST /inbox/{number}/archive`: archives (or, with `undo`, restores) every text from the
/// number in the user's inbox.
pub async fn archive(
    State(st): State<AppState>,
    me: Signed,
    Path(number): Path<String>,
    Form(f): Form<ArchiveForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let what = if f.undo.is_some() {
        InboxMarkKind::Unarchived
    } else {
        InboxMarkKind::Archived
    };
    match st
        .store
        .mark_inbox(
            InboxMark {
                user_id: me.user.id,
                what,
                id: None,
                from: Some(number),
            },
            now_ms(),
        )
        .await
    {
        Ok(_) => Redirect::to("/inbox").into_response(),
        Err(e) => unavailable(e),
    }
}

// ---------------------------------------------------------------------------------------
// Jobs and devices

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    jobs: Vec<JobRow>,
}

struct JobRow {
    id: Id,
    name: String,
    state: String,
    source: String,
    total: i64,
    accepted: i64,
    rejected: i64,
    importing: bool,
    created: String,
    error: String,
}

/// `GET /jobs`: the user's bulk jobs (administrators: everyone's), newest first, with their
/// import progress.
pub async fn jobs(State(st): State<AppState>, me: Signed) -> Response {
    let list = match st.store.list_jobs(me.owner_filter(), None, PAGE).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    page(&JobsPage {
        layout: Layout::of(&st, &me, "Jobs", "jobs").await,
        jobs: list
            .into_iter()
            .map(|j| JobRow {
                id: j.id,
                name: j.name.unwrap_or_default(),
                state: j.state.as_str().to_string(),
                source: j.source,
                total: j.total,
                accepted: j.accepted,
                rejected: j.rejected,
                importing: j.imported_at.is_none(),
                created: when(j.created_at),
                error: j.error.unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    layout: Layout,
    devices: Vec<DeviceRow>,
    /// The configured port servers (docs/port-servers.md); the section is left out when
    /// there are none.
    port_servers: Vec<PortServerRow>,
}

/// A port server as the devices page shows it.
struct PortServerRow {
    name: String,
    connected: bool,
    /// When a frame last came from it, or "never".
    last_seen: String,
    /// Since when its link is up, or empty.
    connected_since: String,
    protocol: String,
    build: String,
    held: u64,
    unacked: u64,
    in_flight: u64,
    window: u32,
    draining: bool,
    /// Its devices as it last reported them: name, kind, state.
    devices: Vec<(String, String, String)>,
    /// Where it connected from (administrators), or empty.
    address: String,
    /// Why its last link ended or was refused (administrators), or empty.
    last_error: String,
}

/// Each configured port server, for the devices page; where it connects from and why its
/// link failed only for administrators, as in `GET /api/v1/port-servers`.
fn port_server_rows(st: &AppState, admin: bool) -> Vec<PortServerRow> {
    st.ports
        .all()
        .iter()
        .map(|e| {
            let v = e.view();
            let seen = e.last_seen_ms();
            PortServerRow {
                name: v.name,
                connected: v.connected,
                last_seen: if seen > 0 { when(seen) } else { "never".into() },
                connected_since: v
                    .connected_since
                    .as_deref()
                    .and_then(|t| parse_rfc3339(t).ok())
                    .map(when)
                    .unwrap_or_default(),
                protocol: v.protocol.map(|p| p.to_string()).unwrap_or_default(),
                build: v.build.unwrap_or_default(),
                held: v.held,
                unacked: v.unacked,
                in_flight: v.in_flight,
                window: v.window,
                draining: v.draining,
                devices: v
                    .devices
                    .into_iter()
                    .map(|d| (d.name, d.kind, d.state))
                    .collect(),
                address: v.address.filter(|_| admin).unwrap_or_default(),
                last_error: v.last_error.filter(|_| admin).unwrap_or_default(),
            }
        })
        .collect()
}

struct DeviceRow {
    name: String,
    paused: bool,
    kind: String,
    state: String,
    sent: u64,
    received: u64,
    failed: u64,
    retried: u64,
    receipts: u64,
    max_rate: String,
    last_error: String,
    /// The driver's own gauges, readable: a modem's signal, registration and storage.
    details: String,
}

/// A driver's gauges as the devices page shows them (its counters are in other columns or
/// on `/metrics`).
fn details_text(details: &[(&'static str, i64)]) -> String {
    let get = |k: &str| details.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let mut out = Vec::new();
    for (k, v) in details {
        match *k {
            "signal_dbm" => out.push(format!("signal {v} dBm")),
            "registered" => out.push(
                if *v == 1 {
                    "registered"
                } else {
                    "not registered"
                }
                .to_string(),
            ),
            "storage_used" => {
                if let Some(total) = get("storage_total") {
                    out.push(format!("storage {v}/{total}"));
                }
            }
            "storage_total" => {}
            k if k.ends_with("_total") => {}
            k => out.push(format!("{} {v}", k.replace('_', " "))),
        }
    }
    out.join(" · ")
}

/// `GET /devices` (administrators): each device with its state, counters and last error.
pub async fn devices(State(st): State<AppState>, me: Signed) -> Response {
    if !me.is_admin() {
        return not_found();
    }
    let devices = st
        .dispatcher
        .devices
        .iter()
        .map(|d| {
            let s = &d.stats;
            DeviceRow {
                name: d.device.name().to_string(),
                paused: d.is_paused(),
                kind: d.device.kind().to_string(),
                state: d.state().as_str().to_string(),
                sent: s.sent.load(Ordering::Relaxed),
                received: s.received.load(Ordering::Relaxed),
                failed: s.failed.load(Ordering::Relaxed),
                retried: s.retried.load(Ordering::Relaxed),
                receipts: s.receipts.load(Ordering::Relaxed),
                max_rate: if d.max_rate > 0 {
                    format!("{}/s", d.max_rate)
                } else {
                    "unlimited".into()
                },
                last_error: d
                    .device
                    .last_error()
                    .or_else(|| s.last_error.lock().ok().and_then(|e| e.clone()))
                    .unwrap_or_default(),
                details: d
                    .device
                    .info()
                    .into_iter()
                    .map(|(_, v)| v)
                    .chain(Some(details_text(&d.device.details())).filter(|t| !t.is_empty()))
                    .collect::<Vec<_>>()
                    .join(" · "),
            }
        })
        .collect();
    page(&DevicesPage {
        layout: Layout::of(&st, &me, "Devices", "devices").await,
        devices,
        port_servers: port_server_rows(&st, me.is_admin()),
    })
}

/// An administrator's switch on the devices page: `on` or `off` in the path, the form's
/// CSRF token checked; whether it is switched on, or the page to answer instead.
fn switch(
    me: &Signed,
    f: &CsrfForm,
    action: &str,
    on: &str,
    off: &str,
) -> Result<bool, Box<Response>> {
    if !me.is_admin() {
        return Err(Box::new(not_found()));
    }
    if !me.csrf_ok(&f.csrf) {
        return Err(Box::new(forged()));
    }
    match action {
        a if a == on => Ok(true),
        a if a == off => Ok(false),
        _ => Err(Box::new(not_found())),
    }
}

/// Back to the devices page once switched, or why not.
fn switched<T>(r: Result<T, crate::error::ApiError>) -> Response {
    match r {
        Ok(_) => Redirect::to("/devices").into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => not_found(),
        Err(e) => unavailable(e.message),
    }
}

/// `POST /devices/{name}/{disable|enable}` (administrators): nothing is sent through a
/// disabled device, on every node; messages routed only to it wait.
pub async fn device_switch(
    State(st): State<AppState>,
    me: Signed,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    match switch(&me, &f, &action, "disable", "enable") {
        Ok(disabled) => {
            switched(crate::api::devices::set_disabled(&st, &name, disabled, &me.actor()).await)
        }
        Err(page) => *page,
    }
}

/// `POST /port-servers/{name}/{drain|resume}` (administrators): a draining port server gets
/// no new messages and finishes what it holds; resuming lets it take messages again
/// (docs/port-servers.md).
pub async fn port_server_switch(
    State(st): State<AppState>,
    me: Signed,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    match switch(&me, &f, &action, "drain", "resume") {
        Ok(on) => switched(crate::api::ports::set_draining(
            &st,
            &name,
            on,
            &me.user.name,
        )),
        Err(page) => *page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_split_on_commas_semicolons_and_lines() {
        assert_eq!(
            split_numbers("+15551230001, +15551230002;+15551230003\n\r\n 5551230004 "),
            vec!["+15551230001", "+15551230002", "+15551230003", "5551230004"]
        );
        assert!(split_numbers(" , ;\n").is_empty());
    }

    #[test]
    fn a_modem_s_gauges_read_as_words() {
        let d = [
            ("registered", 1),
            ("sent_parts_total", 9),
            ("signal_dbm", -73),
            ("storage_used", 3),
            ("storage_total", 20),
        ];
        assert_eq!(
            details_text(&d),
            "registered · signal -73 dBm · storage 3/20"
        );
        assert_eq!(details_text(&[("binds_up", 2)]), "binds up 2");
    }

    #[test]
    fn a_timeline_is_in_order_of_time() {
        let m = Message {
            id: 1,
            owner_id: 1,
            job_id: None,
            to: "+15551234567".into(),
            from: None,
            body: "hi".into(),
            encoding: "gsm7".into(),
            segments: 1,
            status: Status::Delivered,
            priority: 0,
            due_at: 1000,
            expires_at: 99_999,
            attempts: 2,
            device: Some("lb".into()),
            error_code: None,
            error: None,
            callback_url: None,
            reference: None,
            created_at: 1000,
            sent_at: Some(2000),
            done_at: Some(3000),
            origin: None,
            api_key_id: None,
            email_from: None,
        };
        let parts = vec![Part {
            part_no: 1,
            device: "lb".into(),
            device_msg_id: "x1".into(),
            status: "delivered".into(),
            error_code: None,
            submitted_at: 2000,
            done_at: Some(3000),
        }];
        let attempts = vec![Attempt {
            attempt: 1,
            device: Some("smsc1".into()),
            at: 1500,
            outcome: "retry".into(),
            code: Some("0x58".into()),
            error: Some("throttled by the SMSC".into()),
        }];
        let full = timeline(&m, &parts, &attempts);
        assert_eq!(full[1].2, "throttled by the SMSC (code 0x58)");
        let t: Vec<String> = full.into_iter().map(|(_, w, _)| w).collect();
        assert_eq!(
            t,
            vec![
                "Accepted",
                "Attempt 1 failed on device smsc1; retried",
                "Part 1 sent",
                "Part 1 delivered",
                "Delivered"
            ]
        );
    }
}
