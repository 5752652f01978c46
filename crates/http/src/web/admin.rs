//! The administration pages (administrators only; anyone else gets the page that is not
//! there): users (add, change role and e-mail, disable, reset a password), API keys (create,
//! shown once; revoke), the opt-out list, webhook dead letters with replay, and the routes
//! and inbound rules the server runs with. The same rules as the API and `textgate user`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use textgate_core::address::{user_senders, Recipient};
use textgate_core::auth::new_api_key;
use textgate_core::clock::now_ms;
use textgate_engine::audit;
use textgate_engine::quota::parse_limit;
use textgate_engine::users::{self, UserError};
use textgate_store::{AuditFilter, DeliveryFilter, Id, Role, Suppression, User, UserUpdate};

use super::pages::{when, when_opt};
use super::session::{forged, CsrfForm, Signed};
use super::{form_status, not_found, page, page_with, unavailable, urlencode, Layout};
use crate::AppState;

/// `Some(page)` to answer instead when the user is not an administrator.
fn admin_only(me: &Signed) -> Option<Response> {
    (!me.is_admin()).then(not_found)
}

macro_rules! guard {
    ($me:expr, $csrf:expr) => {
        if let Some(r) = admin_only(&$me) {
            return r;
        }
        if !$me.csrf_ok($csrf) {
            return forged();
        }
    };
    ($me:expr) => {
        if let Some(r) = admin_only(&$me) {
            return r;
        }
    };
}

// ---------------------------------------------------------------------------------------
// Users

struct UserRow {
    id: Id,
    name: String,
    role: String,
    email: String,
    created: String,
    disabled: bool,
    senders: String,
    texts_per_day: String,
    texts_per_month: String,
    texts_per_second: String,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> UserRow {
        UserRow {
            id: u.id,
            name: u.name.clone(),
            role: u.role.as_str().to_string(),
            email: u.email.clone().unwrap_or_default(),
            created: when(u.created_at),
            disabled: u.disabled_at.is_some(),
            senders: u.senders.join("\n"),
            texts_per_day: u.quota.daily.map(|v| v.to_string()).unwrap_or_default(),
            texts_per_month: u.quota.monthly.map(|v| v.to_string()).unwrap_or_default(),
            texts_per_second: u.quota.rate.map(|v| v.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    error: Option<String>,
    name: String,
    email: String,
}

async fn users_page(
    st: &AppState,
    me: &Signed,
    error: Option<String>,
    name: &str,
    email: &str,
) -> Response {
    let list = match st.store.list_users().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let status = form_status(&error);
    page_with(
        status,
        &UsersPage {
            layout: Layout::of(st, me, "Administration", "admin").await,
            users: list.iter().map(UserRow::from).collect(),
            error,
            name: name.to_string(),
            email: email.to_string(),
        },
    )
}

/// `GET /admin`: the users, and a form to add one; links to the other administration pages.
pub async fn users_list(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    users_page(&st, &me, None, "", "").await
}

/// The new-user form.
#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    csrf: String,
    name: String,
    role: String,
    #[serde(default)]
    email: String,
}

/// A password or key shown once.
#[derive(Template)]
#[template(path = "admin_secret.html")]
struct SecretPage {
    layout: Layout,
    heading: String,
    label: String,
    secret: String,
    extra: Option<(String, String)>,
    back: String,
}

fn user_error(e: UserError) -> String {
    match e {
        UserError::Store(s) => {
            tracing::error!(error = %s, "administration: the store failed");
            "textgate cannot write its database just now. Try again in a moment.".into()
        }
        other => other.to_string(),
    }
}

/// `POST /admin/users`: adds a user with a generated password, shown once.
pub async fn user_create(
    State(st): State<AppState>,
    me: Signed,
    Form(f): Form<NewUserForm>,
) -> Response {
    guard!(me, &f.csrf);
    let role = Role::parse(&f.role).unwrap_or(Role::User);
    let email = (!f.email.trim().is_empty()).then(|| f.email.trim().to_string());
    match users::create(&st.store, &me.actor(), f.name.trim(), role, email, None).await {
        Ok((user, password)) => {
            tracing::info!(user = %user.name, by = %me.user.name, "user created in the web UI");
            page(&SecretPage {
                layout: Layout::of(&st, &me, "User added", "admin").await,
                heading: format!("User {} added", user.name),
                label:
                    "Their password (shown once: give it to them; they can change it under Account)"
                        .into(),
                secret: password.unwrap_or_default(),
                extra: None,
                back: "/admin".into(),
            })
        }
        Err(e) => users_page(&st, &me, Some(user_error(e)), &f.name, &f.email).await,
    }
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    layout: Layout,
    user: UserRow,
    admin_role: bool,
    error: Option<String>,
    keys: Vec<KeyRow>,
    /// Their limits and what they have used of them.
    usage: String,
}

async fn user_page(st: &AppState, me: &Signed, id: Id, error: Option<String>) -> Response {
    let user = match st.store.user_by_id(id).await {
        Ok(Some(u)) => u,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let keys = match st.store.list_api_keys(Some(id)).await {
        Ok(k) => k,
        Err(e) => return unavailable(e),
    };
    let usage = match st.dispatcher.quotas.usage(&st.store, &user, now_ms()).await {
        Ok(u) => u.describe(),
        Err(e) => return unavailable(e),
    };
    let status = form_status(&error);
    page_with(
        status,
        &UserPage {
            layout: Layout::of(st, me, &format!("User {}", user.name), "admin").await,
            admin_role: user.role == Role::Admin,
            usage,
            user: UserRow::from(&user),
            error,
            keys: keys.iter().map(KeyRow::from).collect(),
        },
    )
}

/// `GET /admin/users/{id}`.
pub async fn user(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    guard!(me);
    user_page(&st, &me, id, None).await
}

/// The user form.
#[derive(Debug, Deserialize)]
pub struct UserForm {
    csrf: String,
    role: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    disabled: Option<String>,
    #[serde(default)]
    senders: String,
    #[serde(default)]
    texts_per_day: String,
    #[serde(default)]
    texts_per_month: String,
    #[serde(default)]
    texts_per_second: String,
}

/// `POST /admin/users/{id}`: role, e-mail address, disabled.
pub async fn user_update(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<UserForm>,
) -> Response {
    guard!(me, &f.csrf);
    let listed: Vec<String> = f.senders.split(['\n', ',']).map(str::to_string).collect();
    let senders = match user_senders(&listed, st.country) {
        Ok(s) => s,
        Err(m) => return user_page(&st, &me, id, Some(m)).await,
    };
    let quota = (|| {
        Ok::<_, String>(textgate_store::Quota {
            daily: parse_limit("Texts a day", &f.texts_per_day)?,
            monthly: parse_limit("Texts a month", &f.texts_per_month)?,
            rate: parse_limit("Texts a second", &f.texts_per_second)?,
        })
    })();
    let quota = match quota {
        Ok(q) => q,
        Err(m) => return user_page(&st, &me, id, Some(m)).await,
    };
    let update = UserUpdate {
        role: Role::parse(&f.role),
        email: Some(Some(f.email.trim().to_string()).filter(|e| !e.is_empty())),
        disabled: Some(f.disabled.is_some()),
        senders: Some(senders),
        quota: Some(quota),
    };
    match users::update(&st.store, &me.actor(), id, update).await {
        Ok(u) => {
            // This node forgets the user's keys, with the senders they allowed.
            st.keys.retain(|c| c.id != u.id);
            tracing::info!(user = %u.name, by = %me.user.name, "user changed in the web UI");
            Redirect::to(&format!("/admin/users/{id}")).into_response()
        }
        Err(UserError::NotFound) => not_found(),
        Err(e) => user_page(&st, &me, id, Some(user_error(e))).await,
    }
}

/// `POST /admin/users/{id}/password`: a new generated password, shown once; the user's web
/// sessions end.
pub async fn user_password(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    guard!(me, &f.csrf);
    let keep = (id == me.user.id).then_some(me.token_hash.as_str());
    match users::set_password(&st.store, &me.actor(), id, None, keep).await {
        Ok(pw) => {
            tracing::info!(user_id = id, by = %me.user.name, "password reset in the web UI");
            page(&SecretPage {
                layout: Layout::of(&st, &me, "Password reset", "admin").await,
                heading: "Password reset".into(),
                label: "The new password (shown once); the user's sessions have been signed out"
                    .into(),
                secret: pw.unwrap_or_default(),
                extra: None,
                back: format!("/admin/users/{id}"),
            })
        }
        Err(UserError::NotFound) => not_found(),
        Err(e) => user_page(&st, &me, id, Some(user_error(e))).await,
    }
}

// ---------------------------------------------------------------------------------------
// API keys

struct KeyRow {
    id: Id,
    user: String,
    label: String,
    created: String,
    last_used: String,
    revoked: bool,
}

impl From<&textgate_store::KeyInfo> for KeyRow {
    fn from(k: &textgate_store::KeyInfo) -> KeyRow {
        KeyRow {
            id: k.id,
            user: k.user.clone(),
            label: k.label.clone(),
            created: when(k.created_at),
            last_used: when_opt(&k.last_used_at),
            revoked: k.revoked_at.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage {
    layout: Layout,
    keys: Vec<KeyRow>,
    users: Vec<String>,
    error: Option<String>,
}

async fn keys_page(st: &AppState, me: &Signed, error: Option<String>) -> Response {
    let (keys, list) = match tokio::try_join!(st.store.list_api_keys(None), st.store.list_users()) {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    page_with(
        form_status(&error),
        &KeysPage {
            layout: Layout::of(st, me, "API keys", "admin").await,
            keys: keys.iter().map(KeyRow::from).collect(),
            users: list
                .into_iter()
                .filter(|u| u.disabled_at.is_none())
                .map(|u| u.name)
                .collect(),
            error,
        },
    )
}

/// `GET /admin/keys`: every key (never the key itself) with its last use, and a form to
/// create one.
pub async fn keys(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    keys_page(&st, &me, None).await
}

/// The new-key form.
#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    csrf: String,
    user: String,
    #[serde(default)]
    webhook_secret: Option<String>,
}

/// `POST /admin/keys`: a new key for a user, shown once.
pub async fn key_create(
    State(st): State<AppState>,
    me: Signed,
    Form(f): Form<NewKeyForm>,
) -> Response {
    guard!(me, &f.csrf);
    let user = match st.store.user_by_name(f.user.trim()).await {
        Ok(Some(u)) if u.disabled_at.is_none() => u,
        Ok(_) => {
            return keys_page(
                &st,
                &me,
                Some(format!("No enabled user is named \"{}\".", f.user)),
            )
            .await
        }
        Err(e) => return unavailable(e),
    };
    let k = match new_api_key(f.webhook_secret.is_some()) {
        Ok(k) => k,
        Err(e) => return keys_page(&st, &me, Some(e.to_string())).await,
    };
    let id = match st
        .store
        .create_api_key(user.id, k.hash, k.label.clone(), k.webhook_secret.clone())
        .await
    {
        Ok(id) => id,
        Err(e) => return unavailable(e),
    };
    audit::record(
        &st.store,
        &me.actor(),
        "apikey.created",
        id,
        Some(format!("for {}, label {}", user.name, k.label)),
    )
    .await;
    page(&SecretPage {
        layout: Layout::of(&st, &me, "API key created", "admin").await,
        heading: format!("API key for {}", user.name),
        label: "The key (shown once: copy it now; only its first characters are kept)".into(),
        secret: k.key,
        extra: k
            .webhook_secret
            .map(|s| ("Its webhook secret (shown once)".to_string(), s)),
        back: "/admin/keys".into(),
    })
}

/// `POST /admin/keys/{id}/revoke`: refused at once on this node, within seconds on others.
pub async fn key_revoke(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    guard!(me, &f.csrf);
    match st.store.revoke_api_key(id, None, now_ms()).await {
        Ok(Some(k)) => {
            st.keys.retain(|c| c.key_id != Some(id));
            let detail = Some(format!("of {}, label {}", k.user, k.label));
            audit::record(&st.store, &me.actor(), "apikey.revoked", id, detail).await;
            Redirect::to("/admin/keys").into_response()
        }
        Ok(None) => not_found(),
        Err(e) => unavailable(e),
    }
}

// ---------------------------------------------------------------------------------------
// Opt-out list, dead letters, configuration

#[derive(Template)]
#[template(path = "admin_optout.html")]
struct OptoutPage {
    layout: Layout,
    rows: Vec<(String, String, String, String)>,
    error: Option<String>,
}

/// The most numbers the opt-out page lists.
const OPTOUT_PAGE: usize = 500;

async fn optout_page(st: &AppState, me: &Signed, error: Option<String>) -> Response {
    let list = match st.store.list_suppressions(None, OPTOUT_PAGE).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    page_with(
        form_status(&error),
        &OptoutPage {
            layout: Layout::of(st, me, "Opt-out list", "admin").await,
            rows: list
                .into_iter()
                .map(|s| {
                    (
                        s.number,
                        s.source,
                        s.note.unwrap_or_default(),
                        when(s.created_at),
                    )
                })
                .collect(),
            error,
        },
    )
}

/// `GET /admin/optout`: the numbers that asked not to be texted.
pub async fn optout(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    optout_page(&st, &me, None).await
}

/// The opt-out form.
#[derive(Debug, Deserialize)]
pub struct OptoutForm {
    csrf: String,
    number: String,
    #[serde(default)]
    note: String,
}

/// `POST /admin/optout`: adds a number.
pub async fn optout_add(
    State(st): State<AppState>,
    me: Signed,
    Form(f): Form<OptoutForm>,
) -> Response {
    guard!(me, &f.csrf);
    let number = match Recipient::parse(f.number.trim(), st.country) {
        Ok(r) => r.as_str().to_string(),
        Err(e) => return optout_page(&st, &me, Some(format!("{}: {e}", f.number.trim()))).await,
    };
    let s = Suppression {
        number: number.clone(),
        source: "api".into(),
        note: Some(f.note.trim().to_string()).filter(|n| !n.is_empty()),
        created_at: now_ms(),
    };
    let added = match st.store.add_suppression(s).await {
        Ok(added) => added,
        Err(e) => return unavailable(e),
    };
    st.dispatcher.inbound.set_suppressed(&number, true);
    if added {
        audit::record(&st.store, &me.actor(), "suppression.added", &number, None).await;
    }
    Redirect::to("/admin/optout").into_response()
}

/// `POST /admin/optout/{number}/remove`: takes a number off the list.
pub async fn optout_remove(
    State(st): State<AppState>,
    me: Signed,
    Path(number): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    guard!(me, &f.csrf);
    match st.store.remove_suppression(&number).await {
        Ok(removed) => {
            st.dispatcher.inbound.set_suppressed(&number, false);
            if removed {
                audit::record(&st.store, &me.actor(), "suppression.removed", &number, None).await;
            }
            Redirect::to("/admin/optout").into_response()
        }
        Err(e) => unavailable(e),
    }
}

struct DeadRow {
    id: Id,
    channel: String,
    event: String,
    target: String,
    attempts: i64,
    last: String,
    created: String,
}

#[derive(Template)]
#[template(path = "admin_nodes.html")]
struct NodesPage {
    layout: Layout,
    nodes: Vec<NodeRow>,
}

struct NodeRow {
    name: String,
    this: bool,
    state: &'static str,
    address: String,
    version: String,
    started: String,
    uptime: String,
    last_seen: String,
    leases: String,
}

/// `GET /admin/nodes`: the nodes that share the store, and the work each does for all
/// (docs/operations.md, several nodes).
pub async fn nodes(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    let Some(cluster) = st.cluster.get() else {
        return unavailable("the server is still starting");
    };
    let list = match cluster.nodes().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    page(&NodesPage {
        layout: Layout::of(&st, &me, "Nodes", "admin").await,
        nodes: list
            .into_iter()
            .map(|n| {
                let up = n.uptime_seconds;
                NodeRow {
                    uptime: if up >= 86_400 {
                        format!("{} d {} h", up / 86_400, up % 86_400 / 3600)
                    } else if up >= 3600 {
                        format!("{} h {} min", up / 3600, up % 3600 / 60)
                    } else {
                        format!("{} min {} s", up / 60, up % 60)
                    },
                    name: n.name,
                    this: n.this,
                    state: n.state,
                    address: n.address,
                    version: n.version,
                    started: when(n.started_at),
                    last_seen: when(n.last_seen),
                    leases: if n.leases.is_empty() {
                        "—".into()
                    } else {
                        n.leases.join(", ")
                    },
                }
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "admin_deadletters.html")]
struct DeadPage {
    layout: Layout,
    rows: Vec<DeadRow>,
}

/// `GET /admin/deadletters`: webhook and e-mail deliveries given up on, newest first.
pub async fn deadletters(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    let list = match st
        .store
        .list_deliveries(DeliveryFilter {
            state: Some("dead".into()),
            owner_id: None,
            before: None,
            limit: 200,
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    page(&DeadPage {
        layout: Layout::of(&st, &me, "Dead letters", "admin").await,
        rows: list
            .into_iter()
            .map(|d| DeadRow {
                id: d.id,
                channel: d.channel,
                event: d.event,
                target: d.target,
                attempts: d.attempts,
                last: match (d.last_code, d.last_error) {
                    (Some(c), Some(e)) => format!("{c}: {e}"),
                    (Some(c), None) => c.to_string(),
                    (None, Some(e)) => e,
                    (None, None) => String::new(),
                },
                created: when(d.created_at),
            })
            .collect(),
    })
}

/// `POST /admin/deadletters/{id}/replay`: tries a dead delivery again.
pub async fn deadletter_replay(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    guard!(me, &f.csrf);
    let now = now_ms();
    let give_up_at = now + st.dispatcher.inbound.retry_for();
    match st.store.replay_delivery(id, now, give_up_at).await {
        Ok(_) => {
            st.dispatcher.deliveries.notify_waiters();
            Redirect::to("/admin/deadletters").into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Template)]
#[template(path = "admin_config.html")]
struct ConfigPage {
    layout: Layout,
    routes: Vec<(String, String)>,
    rules: Vec<(String, String)>,
}

/// `GET /admin/config`: the routes and inbound rules this server runs with (they are edited
/// in the configuration file; `textgate check` checks an edit before a restart).
pub async fn config(State(st): State<AppState>, me: Signed) -> Response {
    guard!(me);
    let list = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.join(", ")
        }
    };
    let routes = st
        .config
        .routes
        .iter()
        .map(|r| {
            (
                format!(
                    "numbers starting {}{}",
                    r.prefix.as_deref().unwrap_or("(any)"),
                    if r.users.is_empty() {
                        String::new()
                    } else {
                        format!(", from {}", r.users.join(", "))
                    }
                ),
                list(&r.devices),
            )
        })
        .collect();
    // What a rule matches and where it sends; its webhook secret is never shown.
    let rules = st
        .config
        .inbound_rules
        .iter()
        .map(|r| {
            let mut when = Vec::new();
            for (k, v) in [
                ("to", &r.to),
                ("keyword", &r.keyword),
                ("from", &r.from),
                ("device", &r.device),
            ] {
                if let Some(v) = v {
                    when.push(format!("{k} {v}"));
                }
            }
            let mut then = Vec::new();
            if !r.users.is_empty() {
                then.push(format!("inboxes of {}", r.users.join(", ")));
            }
            if !r.email.is_empty() {
                then.push(format!("e-mail to {}", r.email.join(", ")));
            }
            if let Some(w) = &r.webhook {
                then.push(format!("webhook {w}"));
            }
            if r.reply.is_some() {
                then.push("an automatic reply".into());
            }
            (
                if when.is_empty() {
                    "every text".into()
                } else {
                    when.join(", ")
                },
                then.join("; "),
            )
        })
        .collect();
    page(&ConfigPage {
        layout: Layout::of(&st, &me, "Routes and rules", "admin").await,
        routes,
        rules,
    })
}

// ---------------------------------------------------------------------------------------
// Audit log

struct AuditRow {
    at: String,
    actor: String,
    via: String,
    address: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    layout: Layout,
    rows: Vec<AuditRow>,
    actions: &'static [(&'static str, &'static str)],
    action: String,
    actor: String,
    older: Option<String>,
}

/// The choices of the audit page's action filter: families, then single actions.
const AUDIT_ACTIONS: &[(&str, &str)] = &[
    ("user.", "Users: every change"),
    ("apikey.", "API keys: created and revoked"),
    ("device.", "Devices: disabled and enabled"),
    ("job.", "Jobs: paused, resumed, cancelled"),
    ("suppression.", "Opt-out list: added and removed"),
    ("signin.", "Sign-ins"),
    ("signin.failed", "Failed sign-ins"),
    ("user.disabled", "Users disabled"),
    ("user.password_set", "Passwords set"),
];

/// The query of `GET /admin/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    action: String,
    actor: String,
    before: Option<Id>,
}

/// `GET /admin/audit`: the audit log, newest first, 100 entries a page.
pub async fn audit(
    State(st): State<AppState>,
    me: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    guard!(me);
    const PAGE: usize = 100;
    let keep = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty() && v.len() <= 128);
    let mut list = match st
        .store
        .audit_log(AuditFilter {
            action: keep(&q.action),
            actor: keep(&q.actor),
            before: q.before,
            limit: PAGE + 1,
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let more = list.len() > PAGE;
    list.truncate(PAGE);
    let older = list.last().filter(|_| more).map(|e| {
        format!(
            "/admin/audit?action={}&actor={}&before={}",
            urlencode(q.action.trim()),
            urlencode(q.actor.trim()),
            e.id
        )
    });
    page(&AuditPage {
        layout: Layout::of(&st, &me, "Audit log", "admin").await,
        rows: list
            .into_iter()
            .map(|e| AuditRow {
                at: when(e.at),
                actor: e.actor,
                via: e.via,
                address: e.address.unwrap_or_default(),
                action: e.action,
                target: e.target,
                detail: e.detail.unwrap_or_default(),
            })
            .collect(),
        actions: AUDIT_ACTIONS,
        action: q.action.trim().to_string(),
        actor: q.actor.trim().to_string(),
        older,
    })
}
