//! The web UI: server-rendered pages on the API's port, for the people who send and read
//! texts without writing code (docs/web.md).
//!
//! - [`session`]: sign-in and sign-out, the session cookie, CSRF and origin checks, the
//!   account page (change one's own password).
//! - [`pages`]: the dashboard, compose, the outbox and a message's timeline, the inbox and
//!   its conversations, jobs and devices.
//! - [`admin`]: administration: users, API keys, the opt-out list, dead letters, routes and
//!   rules.
//! - [`bulk`]: bulk jobs: upload, check (a dry run), start, follow, control, results.
//! - [`contacts`]: the address book: contacts and groups, import and export.
//! - [`chart`]: the dashboard's chart, drawn as SVG on the server.
//!
//! Templates (`templates/`) are compiled into the binary by askama, which escapes every
//! value; the stylesheet and the one script are embedded too. Every page is sent with a
//! Content-Security-Policy that allows only this server's own script and style, and may not
//! be framed.

pub mod admin;
pub mod bulk;
pub mod chart;
pub mod contacts;
pub mod pages;
pub mod session;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;
pub use session::Signed;

/// What every signed-in page shows around its content: the user, the navigation, the CSRF
/// token of its forms.
pub struct Layout {
    /// The page's title.
    pub title: String,
    /// Which navigation entry is this page's.
    pub active: &'static str,
    /// The signed-in user's name; empty on the sign-in page.
    pub user: String,
    /// Administrators see the administration entries.
    pub admin: bool,
    /// The session's CSRF token.
    pub csrf: String,
    /// Unread texts in the user's inbox, up to [`UNREAD_CAP`].
    pub unread: i64,
}

/// Unread texts are counted up to this; the navigation shows "99+" beyond it.
pub const UNREAD_CAP: i64 = 100;

impl Layout {
    /// The layout of a signed-in page.
    pub async fn of(st: &AppState, me: &Signed, title: &str, active: &'static str) -> Layout {
        let unread = st.store.unread(me.user.id, UNREAD_CAP).await.unwrap_or(0);
        Layout {
            title: title.to_string(),
            active,
            user: me.user.name.clone(),
            admin: me.is_admin(),
            csrf: me.csrf.clone(),
            unread,
        }
    }

    /// The layout of a page seen before signing in.
    pub fn anonymous(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            active: "",
            user: String::new(),
            admin: false,
            csrf: String::new(),
            unread: 0,
        }
    }

    /// The unread count as the navigation shows it.
    pub fn unread_label(&self) -> String {
        if self.unread >= UNREAD_CAP {
            format!("{}+", UNREAD_CAP - 1)
        } else {
            self.unread.to_string()
        }
    }

    /// `aria-current` for the navigation entry `name`.
    pub fn current(&self, name: &str) -> &'static str {
        if self.active == name {
            "page"
        } else {
            "false"
        }
    }
}

/// A rendered page; a template that cannot render (it does not happen with values the
/// templates were written for) is logged and answered with a plain 500.
pub fn page<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => {
            tracing::error!(error = %e, "a web page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

/// A page answered with `status` (a page that failed to render keeps its 500).
pub fn page_with<T: Template>(status: StatusCode, t: &T) -> Response {
    let mut r = page(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// The status of a form shown again: 422 with an error to show, else 200.
pub fn form_status(error: &Option<String>) -> StatusCode {
    if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

/// `s` for a URL's query or path segment: everything but unreserved characters escaped.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// An error shown as a page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    heading: &'a str,
    detail: &'a str,
}

/// A page that says what went wrong and what to do.
pub fn error_page(status: StatusCode, heading: &str, detail: &str) -> Response {
    page_with(
        status,
        &ErrorPage {
            layout: Layout::anonymous(heading),
            heading,
            detail,
        },
    )
}

/// A page that is not there, or not the user's: the two look the same.
pub fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here, or it is not yours to see.",
    )
}

/// The store failed while building a page.
pub fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a web page: the store failed");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "textgate cannot read its database just now. Try again in a moment.",
    )
}

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");
const ICON: &str = include_str!("../../static/icon.svg");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Headers every page carries: no framing, only this server's own script and style, no
/// caching of what a signed-in user saw, no referrer beyond this site.
async fn page_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The pages, to be merged into the application's router; `upload_limit` is
/// `[server] max_upload_bytes`, for the bulk job form.
pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/account", get(session::account))
        .route("/account/password", post(session::change_password))
        .route("/compose", get(pages::compose_form).post(pages::compose))
        .route("/compose/count", post(pages::count))
        .route("/outbox", get(pages::outbox))
        .route("/outbox.csv", get(pages::outbox_csv))
        .route("/outbox/status", get(pages::statuses))
        .route("/outbox/{id}", get(pages::message))
        .route("/outbox/{id}/cancel", post(pages::cancel))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/{number}", get(pages::conversation))
        .route("/inbox/{number}/reply", post(pages::reply))
        .route("/inbox/{number}/archive", post(pages::archive))
        .route("/jobs", get(pages::jobs))
        .route(
            "/jobs/new",
            get(bulk::new_form)
                .post(bulk::create)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/jobs/{id}", get(bulk::job))
        .route("/jobs/{id}/progress", get(bulk::progress))
        .route("/jobs/{id}/results.csv", get(bulk::results))
        .route("/jobs/{id}/{action}", post(bulk::control))
        .route("/devices", get(pages::devices))
        .route("/devices/{name}/{action}", post(pages::device_switch))
        .route(
            "/port-servers/{name}/{action}",
            post(pages::port_server_switch),
        )
        .route("/contacts", get(contacts::list).post(contacts::add))
        .route(
            "/contacts/import",
            post(contacts::import).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/contacts.csv", get(contacts::export))
        .route(
            "/contacts/{id}",
            get(contacts::contact).post(contacts::save),
        )
        .route("/contacts/{id}/delete", post(contacts::delete))
        .route("/contacts/{id}/groups", post(contacts::membership))
        .route("/contacts/groups", post(contacts::add_group))
        .route("/contacts/groups/{id}", get(contacts::group))
        .route("/contacts/groups/{id}/delete", post(contacts::delete_group))
        .route("/admin", get(admin::users_list))
        .route("/admin/users", post(admin::user_create))
        .route(
            "/admin/users/{id}",
            get(admin::user).post(admin::user_update),
        )
        .route("/admin/users/{id}/password", post(admin::user_password))
        .route("/admin/keys", get(admin::keys).post(admin::key_create))
        .route("/admin/keys/{id}/revoke", post(admin::key_revoke))
        .route("/admin/optout", get(admin::optout).post(admin::optout_add))
        .route("/admin/optout/{number}/remove", post(admin::optout_remove))
        .route("/admin/deadletters", get(admin::deadletters))
        .route("/admin/nodes", get(admin::nodes))
        .route("/admin/audit", get(admin::audit))
        .route(
            "/admin/deadletters/{id}/replay",
            post(admin::deadletter_replay),
        )
        .route("/admin/config", get(admin::config))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/icon.svg", get(icon))
        .layer(axum::middleware::map_response(page_headers))
}
