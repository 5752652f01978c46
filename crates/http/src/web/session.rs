//! Who is signed in to the web UI: the session cookie, sign-in and sign-out, and the checks
//! every state-changing request passes (the session's CSRF token, the request's origin).
//!
//! The cookie holds 32 random bytes; the store keeps only their SHA-256, with the user, the
//! session's CSRF token, and its idle and absolute ends (`[auth] session_idle`,
//! `session_lifetime`). A cookie never authorises `/api/v1`: the API reads only
//! `Authorization: Bearer`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use textgate_core::auth::{hash_api_key, random_token};
use textgate_core::clock::{now_ms, Millis};
use textgate_engine::signin::Verdict;
use textgate_store::{NewWebSession, Role, User};

use super::{page, page_with, urlencode, Layout};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "textgate_session";

/// A session's last use is written at most this often (or a quarter of `session_idle`, if
/// that is shorter).
const TOUCH_EVERY: Millis = 60_000;

/// The longest user name and password read from the sign-in form.
const MAX_CREDENTIAL: usize = 1024;

/// The signed-in user of a page request. Without a live session, a page answers with a
/// redirect to `/login` (which comes back to the page after signing in).
#[derive(Debug, Clone)]
pub struct Signed {
    /// The user.
    pub user: User,
    /// The session's CSRF token, which its forms carry.
    pub csrf: String,
    /// The SHA-256 of the cookie's token.
    pub token_hash: String,
    /// Where the request came from.
    pub address: Option<std::net::IpAddr>,
}

impl Signed {
    /// The user as the audit log names them.
    pub fn actor(&self) -> textgate_engine::audit::Actor {
        textgate_engine::audit::Actor {
            name: self.user.name.clone(),
            via: "web",
            address: self.address,
        }
    }

    /// Administrators see everyone's messages and the administration pages.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// The owner filter of this user's lists: `None` for administrators.
    pub fn owner_filter(&self) -> Option<i64> {
        (!self.is_admin()).then_some(self.user.id)
    }

    /// Whether this user may see what `owner` owns.
    pub fn may_see(&self, owner: i64) -> bool {
        self.is_admin() || owner == self.user.id
    }

    /// Whether a form's CSRF token is this session's (when not, it is logged; answer with
    /// [`forged`]).
    pub fn csrf_ok(&self, token: &str) -> bool {
        let ok = same(token.as_bytes(), self.csrf.as_bytes());
        if !ok {
            tracing::info!(user = %self.user.name, "a web form with a wrong CSRF token was refused");
        }
        ok
    }
}

/// The answer to a form whose CSRF token is wrong.
pub fn forged() -> Response {
    super::error_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The page you sent it from was opened in an earlier session, or the request did not come from textgate's own page. Go back, reload the page and try again.",
    )
}

/// Compares without stopping at the first difference, so that the time taken does not tell
/// how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session token in the request's cookies.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        // Our tokens are 64 hex digits; anything else is no session.
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A state-changing request must come from a page of this server: when the browser says where
/// the request comes from (`Origin`, or else `Referer`), its host must be this one. The
/// CSRF token is the real check; this one stops a cross-site request before it reads a body.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    match (from, host) {
        (None, _) => true,
        // `null`: a sandboxed or privacy-stripped origin; nothing to trust.
        (Some("null"), _) => false,
        (Some(from), Some(host)) => from
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .is_some_and(|h| h.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Signed, Response> {
        if parts.method != Method::GET
            && parts.method != Method::HEAD
            && !same_origin(&parts.headers)
        {
            tracing::info!(path = %parts.uri.path(), "a cross-site web request was refused");
            return Err(super::error_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "This request came from another site. Open textgate's own page and try again.",
            ));
        }
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let target = if parts.method == Method::GET && next != "/" {
                format!("/login?next={}", urlencode(next))
            } else {
                "/login".to_string()
            };
            Redirect::to(&target).into_response()
        };
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(to_login());
        };
        let token_hash = hash_api_key(token);
        let now = now_ms();
        let idle = st.config.auth.session_idle.0.as_millis() as Millis;
        let session = st
            .store
            .session(&token_hash, now, idle)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "web session: the store failed");
                super::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "textgate cannot read its database just now. Try again in a moment.",
                )
            })?;
        let Some(session) = session else {
            return Err(to_login());
        };
        if now - session.seen_at >= TOUCH_EVERY.min(idle / 4) {
            let (store, hash) = (st.store.clone(), token_hash.clone());
            tokio::spawn(async move {
                let _ = store.touch_session(&hash, now).await;
            });
        }
        Ok(Signed {
            user: session.user,
            csrf: session.csrf,
            token_hash,
            address: crate::auth::peer(parts),
        })
    }
}

/// Where to go after signing in: a path of this site only, never another site's URL.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// The sign-in page.
#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    layout: Layout,
    next: &'a str,
    name: &'a str,
    error: Option<String>,
}

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(axum::extract::Query(q): axum::extract::Query<NextQuery>) -> Response {
    page(&LoginPage {
        layout: Layout::anonymous("Sign in"),
        next: safe_next(q.next.as_deref()),
        name: "",
        error: None,
    })
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: checks the password (limited per name and address, like SMTP AUTH), then
/// starts a session with a new token and goes where the user was going.
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref()).to_string();
    let again = |status: StatusCode, error: String| {
        page_with(
            status,
            &LoginPage {
                layout: Layout::anonymous("Sign in"),
                next: &next,
                name: &f.username,
                error: Some(error),
            },
        )
    };
    if !same_origin(&headers) {
        return again(
            StatusCode::FORBIDDEN,
            "This sign-in came from another site. Sign in on this page.".into(),
        );
    }
    let name = f.username.trim();
    if name.is_empty() || f.password.is_empty() {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your user name and your password.".into(),
        );
    }
    if name.len() > MAX_CREDENTIAL || f.password.len() > MAX_CREDENTIAL {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The user name or password is too long.".into(),
        );
    }
    let user = match st.signin.check_password(peer.ip(), name, &f.password).await {
        Verdict::Accepted(u) => u,
        Verdict::Refused => {
            let who =
                textgate_engine::audit::sign_in_failed(&st.store, name, "web", peer.ip()).await;
            tracing::info!(user = %who, client = %peer.ip(), "web sign-in refused");
            return again(
                StatusCode::UNAUTHORIZED,
                "The user name or the password is wrong.".into(),
            );
        }
        Verdict::LockedOut(after) => {
            tracing::warn!(user = %name, client = %peer.ip(), "web sign-in locked out");
            let minutes = after.as_secs().div_ceil(60).max(1);
            return again(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed sign-ins. Try again in {minutes} minute(s), or ask an administrator to reset your password."),
            );
        }
        Verdict::Unavailable => {
            return again(
                StatusCode::SERVICE_UNAVAILABLE,
                "textgate cannot read its database just now. Try again in a moment.".into(),
            )
        }
    };
    match start_session(&st, &user).await {
        Ok(cookie) => {
            let actor = textgate_engine::audit::Actor {
                name: user.name.clone(),
                via: "web",
                address: Some(peer.ip()),
            };
            textgate_engine::audit::record(&st.store, &actor, "signin.succeeded", &user.name, None)
                .await;
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "web sign-in: cannot start a session");
            again(
                StatusCode::SERVICE_UNAVAILABLE,
                "textgate cannot start a session just now. Try again in a moment.".into(),
            )
        }
    }
}

/// A new session for `user`; the answer is its `Set-Cookie`.
async fn start_session(st: &AppState, user: &User) -> Result<HeaderValue, String> {
    let token = random_token(32).map_err(|e| e.to_string())?;
    let csrf = random_token(32).map_err(|e| e.to_string())?;
    let now = now_ms();
    let lifetime = st.config.auth.session_lifetime.0.as_millis() as Millis;
    st.store
        .create_session(NewWebSession {
            token_hash: hash_api_key(&token),
            user_id: user.id,
            csrf,
            created_at: now,
            expires_at: now + lifetime,
        })
        .await
        .map_err(|e| e.to_string())?;
    HeaderValue::from_str(&session_cookie(st, &token)).map_err(|e| e.to_string())
}

/// `Secure` when the server's public URL is `https` (TLS ends at a proxy in front of it).
fn session_cookie(st: &AppState, token: &str) -> String {
    let secure = st
        .config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The CSRF token alone, for forms that carry nothing else.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// `POST /logout`: ends the session here and in the store.
pub async fn logout(State(st): State<AppState>, me: Signed, Form(f): Form<CsrfForm>) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    if let Err(e) = st.store.end_session(&me.token_hash).await {
        tracing::error!(error = %e, "sign-out: the store failed");
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The account page: change one's own password.
#[derive(askama::Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    message: Option<String>,
    error: Option<String>,
    /// The user's limits and what they have used of them.
    usage: String,
}

/// `GET /account`.
pub async fn account(State(st): State<AppState>, me: Signed) -> Response {
    let layout = Layout::of(&st, &me, "Account", "account").await;
    page(&AccountPage {
        layout,
        message: None,
        error: None,
        usage: usage_of(&st, &me).await,
    })
}

/// The user's limits and what they have used of them, as the account page says it.
async fn usage_of(st: &AppState, me: &Signed) -> String {
    match st
        .dispatcher
        .quotas
        .usage(&st.store, &me.user, now_ms())
        .await
    {
        Ok(u) => u.describe(),
        Err(_) => "unknown just now (the database did not answer)".into(),
    }
}

/// The password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

pub use textgate_engine::users::MIN_PASSWORD;

/// `POST /account/password`: the current password, then the new one twice. Every other
/// session of the user ends.
pub async fn change_password(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    me: Signed,
    Form(f): Form<PasswordForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let layout = Layout::of(&st, &me, "Account", "account").await;
    let usage = usage_of(&st, &me).await;
    let fail = |layout: Layout, status: StatusCode, error: &str| {
        page_with(
            status,
            &AccountPage {
                layout,
                message: None,
                error: Some(error.to_string()),
                usage: usage.clone(),
            },
        )
    };
    if f.new != f.confirm {
        return fail(
            layout,
            StatusCode::UNPROCESSABLE_ENTITY,
            "The new password and its confirmation differ.",
        );
    }
    if f.new.chars().count() < MIN_PASSWORD || f.new.len() > MAX_CREDENTIAL {
        return fail(
            layout,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The new password must have {MIN_PASSWORD} to {MAX_CREDENTIAL} characters."),
        );
    }
    match st
        .signin
        .check_password(peer.ip(), &me.user.name, &f.current)
        .await
    {
        Verdict::Accepted(_) => {}
        Verdict::LockedOut(_) => {
            return fail(
                layout,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong passwords. Try again later.",
            )
        }
        Verdict::Refused => {
            return fail(
                layout,
                StatusCode::UNPROCESSABLE_ENTITY,
                "The current password is wrong.",
            )
        }
        Verdict::Unavailable => {
            return fail(
                layout,
                StatusCode::SERVICE_UNAVAILABLE,
                "textgate cannot read its database just now. Try again in a moment.",
            )
        }
    }
    let new = f.new.clone();
    let hash =
        match tokio::task::spawn_blocking(move || textgate_core::auth::hash_password(&new)).await {
            Ok(Ok(h)) => h,
            _ => {
                return fail(
                    layout,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The password could not be stored.",
                )
            }
        };
    match st
        .store
        .set_password(me.user.id, &hash, Some(&me.token_hash))
        .await
    {
        Ok(_) => {
            let detail = Some("by the user; other sessions signed out".to_string());
            textgate_engine::audit::record(
                &st.store,
                &me.actor(),
                "user.password_set",
                &me.user.name,
                detail,
            )
            .await;
            page(&AccountPage {
                layout,
                message: Some(
                    "Your password is changed. Your other sessions have been signed out.".into(),
                ),
                error: None,
                usage: usage.clone(),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "password change: the store failed");
            fail(
                layout,
                StatusCode::SERVICE_UNAVAILABLE,
                "textgate cannot write its database just now. Try again in a moment.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/outbox?status=failed")),
            "/outbox?status=failed"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_must_look_like_ours() {
        let mut h = HeaderMap::new();
        let token = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={token}; b=2")).unwrap(),
        );
        assert_eq!(cookie_token(&h), Some(token.as_str()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}=x' OR 1=1")).unwrap(),
        );
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn requests_from_other_sites_are_told_apart() {
        let parts = |origin: Option<&str>| {
            let mut b = axum::http::Request::builder()
                .method("POST")
                .header(header::HOST, "gw.example:8080");
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(same_origin(&parts(None).headers));
        assert!(same_origin(&parts(Some("http://gw.example:8080")).headers));
        assert!(!same_origin(&parts(Some("http://evil.example")).headers));
        assert!(!same_origin(
            &parts(Some("http://gw.example:8080.evil.example")).headers
        ));
        assert!(!same_origin(&parts(Some("null")).headers));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
