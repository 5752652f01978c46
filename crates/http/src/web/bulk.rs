//! Bulk jobs in the web UI: upload a CSV file, check it (a dry run: the bad rows with their
//! row numbers, the first texts as they will read, how many texts and parts), start it, and
//! follow it live; pause, resume, cancel, and download every row's outcome. The same
//! import as `POST /api/v1/jobs` and the watched folder (`textgate_jobs`).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde_json::json;
use textgate_core::clock::now_ms;
use textgate_jobs::{JobParams, Report};
use textgate_store::{Id, JobAction, JobControl, JobRecord};

use super::pages::when;
use super::session::{forged, CsrfForm, Signed};
use super::{not_found, page, page_with, unavailable, Layout};
use crate::api::jobs::{
    group_into, job_error, params_from, receive_multipart, results_csv, shown_state, take_pair,
    Upload,
};
use crate::AppState;

/// What the form had, to show it again.
#[derive(Default)]
struct Fields {
    name: String,
    template: String,
    from: String,
    schedule_at: String,
    rate: String,
    dedupe: bool,
}

#[derive(Template)]
#[template(path = "bulk_new.html")]
struct NewJobPage {
    layout: Layout,
    groups: Vec<textgate_store::Group>,
    /// The senders the user may choose from; empty: any, typed.
    senders: Vec<String>,
    f: Fields,
    error: Option<String>,
    report: Option<ReportView>,
}

impl NewJobPage {
    /// Whether `sender` is the one chosen.
    fn chosen_sender(&self, sender: &str) -> bool {
        self.f.from.eq_ignore_ascii_case(sender)
    }
}

/// A dry run's report as the page shows it.
struct ReportView {
    total: i64,
    texts: i64,
    parts: i64,
    rejected: i64,
    duplicates: i64,
    errors: Vec<(i64, String)>,
    truncated: bool,
    preview: Vec<(i64, String, String)>,
}

impl From<&Report> for ReportView {
    fn from(r: &Report) -> ReportView {
        ReportView {
            total: r.total,
            texts: r.accepted,
            parts: r.segments,
            rejected: r.rejected,
            duplicates: r.duplicates,
            errors: r
                .errors
                .iter()
                .map(|e| (e.row, e.message.clone()))
                .collect(),
            truncated: r.errors_truncated,
            preview: r
                .preview
                .iter()
                .map(|p| (p.row, p.to.clone(), p.body.clone()))
                .collect(),
        }
    }
}

/// `GET /jobs/new`.
pub async fn new_form(State(st): State<AppState>, me: Signed) -> Response {
    page(&NewJobPage {
        layout: Layout::of(&st, &me, "New bulk job", "jobs").await,
        groups: st.store.list_groups(me.user.id).await.unwrap_or_default(),
        senders: me.user.senders.clone(),
        f: Fields {
            template: "{{message}}".into(),
            ..Fields::default()
        },
        error: None,
        report: None,
    })
}

/// `POST /jobs/new` (multipart: the file, the job's parameters, `csrf`, and `action`:
/// `check` for a dry run, `start` to store the job and import it).
pub async fn create(State(st): State<AppState>, me: Signed, req: Request) -> Response {
    let limit = st.config.server.max_upload_bytes.0;
    let layout = Layout::of(&st, &me, "New bulk job", "jobs").await;
    let groups = st.store.list_groups(me.user.id).await.unwrap_or_default();
    let again = |layout, f: Fields, status: StatusCode, error: Option<String>, report| {
        page_with(
            status,
            &NewJobPage {
                layout,
                groups: groups.clone(),
                senders: me.user.senders.clone(),
                f,
                error,
                report,
            },
        )
    };
    let (upload, mut size, mut pairs) = match receive_multipart(&st, req, limit).await {
        Ok(v) => v,
        Err(e) => return again(layout, Fields::default(), e.status, Some(e.message), None),
    };
    let group = take_pair(&mut pairs, "group");
    let mut csrf = String::new();
    let mut action = String::new();
    let mut params = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "csrf" => csrf = v,
            "action" => action = v,
            // The form's checkbox sends "on" when ticked and nothing otherwise.
            _ => params.push((k, v)),
        }
    }
    if !me.csrf_ok(&csrf) {
        return forged();
    }
    let f = fields_of(&params);
    let fail = |layout, f, status, m: String| again(layout, f, status, Some(m), None);
    if let Some(g) = group {
        if size > 0 {
            return fail(
                layout,
                f,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose a CSV file or a group, not both.".into(),
            );
        }
        size = match group_into(&st, me.user.id, &g, &upload).await {
            Ok(n) => n,
            Err(m) => return fail(layout, f, StatusCode::UNPROCESSABLE_ENTITY, m),
        };
    }
    if size == 0 {
        return fail(
            layout,
            f,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a CSV file with a header row and at least one row, or a group.".into(),
        );
    }
    let mut params: JobParams = match params_from(params) {
        Ok(p) => p,
        Err(e) => return fail(layout, f, e.status, e.message),
    };
    params.dry_run = action != "start";
    let prepared = match st
        .jobs
        .choose_sender(&mut params, &me.user.senders)
        .and_then(|()| st.jobs.prepare(params))
    {
        Ok(p) => p,
        Err(e) => {
            let e = job_error(e);
            return fail(layout, f, e.status, e.message);
        }
    };
    if prepared.params.dry_run {
        return match st.jobs.validate(&upload.0, &prepared, false).await {
            Ok(r) => again(layout, f, StatusCode::OK, None, Some(ReportView::from(&r))),
            Err(e) => {
                let e = job_error(e);
                fail(layout, f, e.status, e.message)
            }
        };
    }
    // A file broken half-way is refused before anything is stored.
    let check = match st.jobs.validate(&upload.0, &prepared, true).await {
        Ok(c) => c,
        Err(e) => {
            let e = job_error(e);
            return fail(layout, f, e.status, e.message);
        }
    };
    let u = &me.user;
    let quota =
        match crate::api::jobs::take_job_quota(&st, u.id, u.role, u.quota, check.total).await {
            Ok(Ok(q)) => q,
            Ok(Err(refused)) => {
                let why = format!("Nothing was stored: {}.", refused.message());
                return fail(layout, f, StatusCode::TOO_MANY_REQUESTS, why);
            }
            Err(e) => return fail(layout, f, e.status, e.message),
        };
    let job = match st
        .jobs
        .create(me.user.id, "web", &upload.0, &prepared)
        .await
    {
        Ok(j) => j,
        Err(e) => {
            if let Some(q) = quota {
                q.settle(&st.store, None).await;
            }
            let e = job_error(e);
            return fail(layout, f, e.status, e.message);
        }
    };
    tracing::info!(job = job.id, user = %me.user.name, "bulk job started in the web UI");
    // The import goes on by itself; the job's page follows it.
    spawn_import(&st, job.clone(), upload, prepared, quota);
    Redirect::to(&format!("/jobs/{}", job.id)).into_response()
}

fn spawn_import(
    st: &AppState,
    job: JobRecord,
    upload: Upload,
    prepared: textgate_jobs::import::Prepared,
    quota: Option<crate::api::jobs::JobQuota>,
) {
    let jobs = st.jobs.clone();
    let store = st.store.clone();
    tokio::spawn(async move {
        let r = jobs.import(&job, &upload.0, &prepared).await;
        if let Err(e) = &r {
            tracing::warn!(job = job.id, error = %e, "a web bulk job's import failed");
        }
        drop(upload);
        if let Some(q) = quota {
            q.settle(&store, r.as_ref().ok().map(|r| r.accepted)).await;
        }
    });
}

fn fields_of(params: &[(String, String)]) -> Fields {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Fields {
        name: get("name"),
        template: get("template"),
        from: get("from"),
        schedule_at: get("schedule_at"),
        rate: get("rate"),
        dedupe: !get("dedupe").is_empty(),
    }
}

#[derive(Template)]
#[template(path = "bulk_job.html")]
struct JobPage {
    layout: Layout,
    j: JobView,
}

/// A job as its page shows it.
struct JobView {
    id: Id,
    name: String,
    state: &'static str,
    total: i64,
    accepted: i64,
    rejected: i64,
    segments: i64,
    error: String,
    created: String,
    counts: Vec<(String, i64)>,
    sent_share: i64,
    can_pause: bool,
    can_resume: bool,
    can_cancel: bool,
}

async fn view(st: &AppState, j: &JobRecord) -> Result<JobView, textgate_store::StoreError> {
    let counts = st.store.job_counts(j.id).await?;
    let state = shown_state(j, Some(&counts));
    let done: i64 = counts
        .iter()
        .filter(|(s, _)| s.is_final() || s.as_str() == "sent")
        .map(|(_, n)| n)
        .sum();
    let all: i64 = counts.iter().map(|(_, n)| n).sum();
    Ok(JobView {
        id: j.id,
        name: j.name.clone().unwrap_or_default(),
        state,
        total: j.total,
        accepted: j.accepted,
        rejected: j.rejected,
        segments: j.segments,
        error: j.error.clone().unwrap_or_default(),
        created: when(j.created_at),
        counts: counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect(),
        sent_share: if all > 0 { done * 100 / all } else { 0 },
        can_pause: matches!(state, "importing" | "running"),
        can_resume: state == "paused",
        can_cancel: matches!(state, "importing" | "running" | "paused"),
    })
}

async fn visible(st: &AppState, me: &Signed, id: Id) -> Result<JobRecord, Response> {
    match st.store.get_job(id).await {
        Ok(Some(j)) if me.may_see(j.owner_id) => Ok(j),
        Ok(_) => Err(not_found()),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /jobs/{id}`: the job, its progress (live), its controls and its results.
pub async fn job(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    let j = match visible(&st, &me, id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    match view(&st, &j).await {
        Ok(v) => page(&JobPage {
            layout: Layout::of(&st, &me, &format!("Job {id}"), "jobs").await,
            j: v,
        }),
        Err(e) => unavailable(e),
    }
}

/// `GET /jobs/{id}/progress` (JSON): what the job's page updates itself with.
pub async fn progress(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    let j = match visible(&st, &me, id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    match view(&st, &j).await {
        Ok(v) => Json(json!({
            "state": v.state,
            "total": v.total,
            "accepted": v.accepted,
            "rejected": v.rejected,
            "segments": v.segments,
            "sent_share": v.sent_share,
            "counts": v.counts,
            "error": v.error,
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /jobs/{id}/{pause|resume|cancel}`.
pub async fn control(
    State(st): State<AppState>,
    me: Signed,
    Path((id, action)): Path<(Id, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let action = match action.as_str() {
        "pause" => JobAction::Pause,
        "resume" => JobAction::Resume,
        "cancel" => JobAction::Cancel,
        _ => return not_found(),
    };
    match st
        .store
        .control_job(id, me.owner_filter(), action, now_ms())
        .await
    {
        Ok(done @ (JobControl::Done(_) | JobControl::Invalid(_))) => {
            if action == JobAction::Resume {
                st.dispatcher.wake();
            }
            if matches!(done, JobControl::Done(_)) {
                let what = crate::api::jobs::audit_action(action);
                textgate_engine::audit::record(&st.store, &me.actor(), what, id, None).await;
            }
            Redirect::to(&format!("/jobs/{id}")).into_response()
        }
        Ok(JobControl::NotFound) => not_found(),
        Err(e) => unavailable(e),
    }
}

/// `GET /jobs/{id}/results.csv`: every row's outcome.
pub async fn results(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    match visible(&st, &me, id).await {
        Ok(j) => results_csv(&st, j.id),
        Err(r) => r,
    }
}
