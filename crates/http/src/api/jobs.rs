//! Bulk jobs (docs/api.md): `POST /api/v1/jobs` (a `text/csv` body with the parameters in
//! the query string, or `multipart/form-data` with a `file` field and the parameters as
//! fields), `GET` one or a page, `pause`, `resume`, `cancel`, and `results.csv`.
//!
//! The upload is streamed to a file under `[server] upload_dir` (never held in memory, up
//! to `max_upload_bytes`), then read once to check it can be read to its end (or, for a dry
//! run or an all-or-nothing job, checked row by row), and only then stored as a job, in
//! batches; 201 comes when every row is stored. The file is kept until then so that an
//! import interrupted by a restart continues after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use textgate_core::clock::{format_rfc3339, now_ms};
use textgate_core::status::Status;
use textgate_engine::audit;
use textgate_jobs::{JobError, JobParams, Report};
use textgate_store::{JobAction, JobControl, JobRecord, JobState};
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The parameters a job request may have.
const PARAMS: &[&str] = &[
    "template",
    "from",
    "schedule_at",
    "name",
    "rate",
    "dedupe",
    "all_or_nothing",
    "dry_run",
    "to_column",
    "group",
];

/// A job's texts counted against its owner's day's and month's limits before it is stored:
/// all its rows at once, since a file is only checked whole for its structure; what the
/// import does not store is given back by [`JobQuota::settle`]. (A job is paced by its own
/// `rate`, not by the per-second limit.)
pub(crate) struct JobQuota {
    user: textgate_store::Id,
    taken: i64,
    at: textgate_core::clock::Millis,
}

/// Counts `rows` texts for a job of this user, or says which limit they would pass;
/// `Ok(Ok(None))` for a user without limits.
pub(crate) async fn take_job_quota(
    st: &AppState,
    user: textgate_store::Id,
    role: textgate_store::Role,
    own: textgate_store::Quota,
    rows: i64,
) -> ApiResult<Result<Option<JobQuota>, textgate_engine::quota::Refused>> {
    let Some(limits) = st
        .dispatcher
        .quotas
        .limits(role, own)
        .filter(|l| l.counted())
    else {
        return Ok(Ok(None));
    };
    let at = now_ms();
    let n = usize::try_from(rows).unwrap_or(0);
    Ok(st
        .dispatcher
        .quotas
        .take(&st.store, user, &limits, n, at, true)
        .await?
        .map(|()| {
            Some(JobQuota {
                user,
                taken: rows,
                at,
            })
        }))
}

impl JobQuota {
    /// Gives back what the import did not store (`stored` texts; `None`: it failed, and
    /// what it stored is cancelled).
    pub(crate) async fn settle(self, store: &textgate_store::Store, stored: Option<i64>) {
        let back = self.taken - stored.unwrap_or(0);
        if back > 0 {
            if let Err(e) = store.give_quota(self.user, back, self.at).await {
                tracing::warn!(error = %e, user = self.user, "cannot give back a job's quota");
            }
        }
    }
}

pub(crate) fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::Param("sender_not_allowed", m) => {
            ApiError::new(StatusCode::FORBIDDEN, "sender_not_allowed", m)
        }
        JobError::Param(code, m) => ApiError::invalid(code, m),
        JobError::Header(m) => ApiError::invalid("invalid_columns", m),
        JobError::Broken(m) => ApiError::invalid("broken_file", m),
        JobError::Rejected(r) => ApiError::invalid(
            "rows_rejected",
            format!(
                "{} row(s) are not acceptable and all_or_nothing was asked for: nothing was stored",
                r.rejected - r.duplicates
            ),
        ),
        JobError::Io(m) => ApiError::internal(&std::io::Error::other(m)),
        JobError::Store(e) => ApiError::not_stored(e),
    }
}

fn truthy(name: &str, v: &str) -> ApiResult<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be true or false"),
        )),
    }
}

/// Builds the parameters from name/value pairs; an unknown or repeated name is refused.
pub(crate) fn params_from(pairs: Vec<(String, String)>) -> ApiResult<JobParams> {
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut p = JobParams::default();
    for (k, v) in pairs {
        if !PARAMS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!("unknown parameter \"{k}\" (known: {})", PARAMS.join(", ")),
            ));
        }
        if seen.insert(k.clone(), ()).is_some() {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("the parameter \"{k}\" is given twice"),
            ));
        }
        let text = || Some(v.clone()).filter(|s| !s.is_empty());
        match k.as_str() {
            "template" => p.template = text(),
            "from" => p.from = text(),
            "schedule_at" => p.schedule_at = text(),
            "name" => p.name = text(),
            "to_column" => p.to_column = text(),
            "rate" => {
                p.rate = match v.trim() {
                    "" => None,
                    r => Some(r.parse::<f64>().map_err(|_| {
                        ApiError::bad_request(
                            "invalid_parameter",
                            "rate must be a number of messages a second, like 50 or 0.5",
                        )
                    })?),
                }
            }
            "dedupe" => p.dedupe = truthy(&k, &v)?,
            "all_or_nothing" => p.all_or_nothing = truthy(&k, &v)?,
            "dry_run" => p.dry_run = truthy(&k, &v)?,
            _ => {}
        }
    }
    Ok(p)
}

/// Removes the upload file when the request is done with it (on every path, errors too).
pub(crate) struct Upload(pub(crate) PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the upload is larger than the server's limit of {limit} bytes ([server] max_upload_bytes)"),
    )
}

async fn new_upload(st: &AppState) -> ApiResult<(Upload, tokio::fs::File)> {
    let dir = st.jobs.upload_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let path = dir.join(format!("upload-{}-{:016x}.csv", now_ms(), fastrand_u64()));
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok((Upload(path), file))
}

/// A name no other upload has (the time alone is not enough for concurrent uploads).
fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms() as u64);
    h.finish()
}

/// Streams a request body to the file; returns the bytes written.
async fn body_to_file(body: Body, file: &mut tokio::fs::File, limit: u64) -> ApiResult<u64> {
    let mut body = body;
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("the upload could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            if n > limit {
                return Err(too_large(limit));
            }
            file.write_all(&data)
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
    }
    file.flush().await.map_err(|e| ApiError::internal(&e))?;
    Ok(n)
}

/// `POST /api/v1/jobs`.
pub async fn create(
    caller: Caller,
    State(st): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
    req: Request,
) -> ApiResult<Response> {
    let (upload, mut size, mut pairs) = receive(&st, query, req).await?;
    if let Some(group) = take_pair(&mut pairs, "group") {
        if size > 0 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give a CSV file or a group, not both",
            ));
        }
        size = group_into(&st, caller.id, &group, &upload)
            .await
            .map_err(|m| ApiError::invalid("invalid_group", m))?;
    }
    let mut params = params_from(pairs)?;
    if size == 0 {
        return Err(ApiError::bad_request(
            "empty_request",
            "the CSV file is empty: send a header row and at least one row",
        ));
    }
    st.jobs
        .choose_sender(&mut params, &caller.senders)
        .map_err(job_error)?;
    let prepared = st.jobs.prepare(params).map_err(job_error)?;
    let p = &prepared.params;
    if p.dry_run {
        let r = st
            .jobs
            .validate(&upload.0, &prepared, false)
            .await
            .map_err(job_error)?;
        let mut body = report_json(&r);
        body["dry_run"] = json!(true);
        body["texts"] = json!(r.accepted);
        body["parts"] = json!(r.segments);
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    // Read the whole file once before storing anything: a file broken half-way (or, for
    // all_or_nothing, any bad row) is refused with nothing stored.
    let check = st
        .jobs
        .validate(&upload.0, &prepared, !p.all_or_nothing)
        .await
        .map_err(job_error)?;
    if p.all_or_nothing && check.rejected > check.duplicates {
        let e = job_error(JobError::Rejected(Box::new(check.clone())));
        let mut body = report_json(&check);
        body["error"] = json!({"code": e.code, "message": e.message});
        return Ok((e.status, Json(body)).into_response());
    }
    let quota = match take_job_quota(&st, caller.id, caller.role, caller.quota, check.total).await?
    {
        Ok(q) => q,
        Err(refused) => return Ok(super::over_quota(&refused, now_ms())),
    };
    let job = match st.jobs.create(caller.id, "api", &upload.0, &prepared).await {
        Ok(j) => j,
        Err(e) => {
            if let Some(q) = quota {
                q.settle(&st.store, None).await;
            }
            return Err(job_error(e));
        }
    };
    // Its own task: a client that hangs up does not stop an import half-way.
    let jobs = st.jobs.clone();
    let importing = job.clone();
    let store = st.store.clone();
    let report = tokio::spawn(async move {
        let r = jobs.import(&importing, &upload.0, &prepared).await;
        drop(upload);
        if let Some(q) = quota {
            q.settle(&store, r.as_ref().ok().map(|r| r.accepted)).await;
        }
        r
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(job_error)?;
    let mut body = report_json(&report);
    body["id"] = json!(job.id);
    body["name"] = json!(job.name);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The upload: the CSV in a file of its own, its size, and the job's parameters, from a
/// CSV body (parameters in the query string) or a multipart form.
async fn receive(
    st: &AppState,
    query: Vec<(String, String)>,
    req: Request,
) -> ApiResult<(Upload, u64, Vec<(String, String)>)> {
    let limit = st.config.server.max_upload_bytes.0;
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        if !query.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "with a multipart upload, give the parameters as form fields, not in the query string",
            ));
        }
        receive_multipart(st, req, limit).await
    } else if ctype.starts_with("text/csv")
        || ctype.starts_with("application/csv")
        || ctype.starts_with("text/plain")
    {
        let (up, mut f) = new_upload(st).await?;
        let n = body_to_file(req.into_body(), &mut f, limit).await?;
        Ok((up, n, query))
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the CSV as `Content-Type: text/csv` (parameters in the query string) or as multipart/form-data with a `file` field",
        ))
    }
}

/// A multipart upload: one `file` field with the CSV (written to disk as it comes), the
/// parameters as the other fields.
/// Removes the pair named `name` and gives its value, if it is there and not empty.
pub(crate) fn take_pair(pairs: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = pairs.iter().position(|(k, _)| k == name)?;
    Some(pairs.remove(i).1).filter(|v| !v.trim().is_empty())
}

/// Writes the contacts of a group (by id or name, one `viewer` sees) into the upload as a CSV
/// file: `name`, `number` and their other fields as columns, for a job's template. Its size.
pub(crate) async fn group_into(
    st: &AppState,
    viewer: i64,
    group: &str,
    upload: &Upload,
) -> Result<u64, String> {
    let found = match group.trim().parse::<i64>() {
        Ok(id) => st.store.get_group(id).await,
        Err(_) => st.store.group_named(viewer, group.trim()).await,
    }
    .map_err(|e| e.to_string())?
    .filter(|g| textgate_jobs::contacts::may_see(g.owner_id, viewer))
    .ok_or_else(|| format!("no group \"{group}\" of yours or shared"))?;
    let members = st
        .store
        .group_members(found.id)
        .await
        .map_err(|e| e.to_string())?;
    if members.is_empty() {
        return Err(format!("the group \"{}\" has no contacts", found.name));
    }
    let csv = textgate_jobs::contacts::write_csv(&members);
    tokio::fs::write(&upload.0, csv.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(csv.len() as u64)
}

/// A multipart upload: the `file` field in a file of its own, its size, and the other
/// fields as name/value pairs (the web UI's form adds its own to the job's parameters).
pub(crate) async fn receive_multipart(
    st: &AppState,
    req: Request,
    limit: u64,
) -> ApiResult<(Upload, u64, Vec<(String, String)>)> {
    let mut mp = Multipart::from_request(req, st).await.map_err(|e| {
        ApiError::bad_request(
            "invalid_multipart",
            format!("the multipart body is not readable: {e}"),
        )
    })?;
    let mut pairs = Vec::new();
    let mut file: Option<(Upload, u64)> = None;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name != "file" {
            let v = form_field(&mut field, &name, limit).await?;
            pairs.push((name, v));
            continue;
        }
        if file.is_some() {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                "more than one `file` field",
            ));
        }
        let (up, mut f) = new_upload(st).await?;
        let mut n = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            n += chunk.len() as u64;
            if n > limit {
                return Err(too_large(limit));
            }
            f.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
        f.flush().await.map_err(|e| ApiError::internal(&e))?;
        file = Some((up, n));
    }
    let Some((up, n)) = file else {
        return Err(ApiError::bad_request(
            "missing_file",
            "the multipart body has no `file` field with the CSV",
        ));
    };
    Ok((up, n, pairs))
}

/// The most bytes of a form field other than `file` (the template is the longest).
const MAX_FIELD_BYTES: usize = textgate_jobs::template::MAX_TEMPLATE_BYTES;

/// Reads a form field other than `file`, refusing it as soon as it passes
/// [`MAX_FIELD_BYTES`] rather than holding an upload-sized value in memory.
async fn form_field(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    limit: u64,
) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "field_too_large",
                format!(
                    "the form field \"{}\" is longer than {MAX_FIELD_BYTES} bytes (64 KiB)",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("the form field \"{name}\" is not UTF-8 text"),
        )
    })
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        ApiError::bad_request(
            "invalid_multipart",
            format!("the multipart body is not readable: {}", e.body_text()),
        )
    }
}

fn report_json(r: &Report) -> Value {
    json!({
        "total": r.total,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "duplicates": r.duplicates,
        "segments": r.segments,
        "errors": r.errors,
        "errors_truncated": r.errors_truncated,
        "errors_note": if r.errors_truncated {
            Some(format!("only the first {} errors are listed; GET /api/v1/jobs/{{id}}/results.csv has every row", textgate_jobs::import::MAX_ERRORS_SHOWN))
        } else { None },
        "preview": r.preview,
    })
}

/// The state shown: the stored one, refined by the import's progress and the counts.
pub(crate) fn shown_state(j: &JobRecord, counts: Option<&[(Status, i64)]>) -> &'static str {
    match j.state {
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Paused => "paused",
        JobState::Running if j.imported_at.is_none() => "importing",
        JobState::Running => match counts {
            Some(c) if c.iter().all(|(s, n)| s.is_final() || *n == 0) => "done",
            _ => "running",
        },
    }
}

fn job_json(j: &JobRecord, counts: Option<&[(Status, i64)]>) -> Value {
    let mut v = json!({
        "id": j.id,
        "name": j.name,
        "state": shown_state(j, counts),
        "source": j.source,
        "total": j.total,
        "accepted": j.accepted,
        "rejected": j.rejected,
        "segments": j.segments,
        "error": j.error,
        "created_at": format_rfc3339(j.created_at),
        "imported_at": j.imported_at.map(format_rfc3339),
        "paused_at": j.paused_at.filter(|_| j.state == JobState::Paused).map(format_rfc3339),
    });
    if let Some(c) = counts {
        let map: serde_json::Map<String, Value> = c
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), json!(n)))
            .collect();
        let finished: i64 = c.iter().filter(|(s, _)| s.is_final()).map(|(_, n)| n).sum();
        v["counts"] = Value::Object(map);
        v["finished"] = json!(finished);
    }
    v
}

async fn visible_job(st: &AppState, caller: &Caller, id: &str) -> ApiResult<JobRecord> {
    let id = super::path_id(id, "job")?;
    match st.store.get_job(id).await? {
        Some(j) if caller.may_see(j.owner_id) => Ok(j),
        _ => Err(ApiError::not_found("job")),
    }
}

async fn full_json(st: &AppState, j: &JobRecord) -> ApiResult<Value> {
    let counts = st.store.job_counts(j.id).await?;
    Ok(job_json(j, Some(&counts)))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let j = visible_job(&st, &caller, &id).await?;
    Ok(Json(full_json(&st, &j).await?))
}

/// `GET /api/v1/jobs`: newest first, without the per-status counts (GET one for those).
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<super::PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let limit = super::page_limit(q.limit.as_deref(), 20, 100)?;
    let before = super::id_cursor(q.cursor.as_deref())?;
    let page = st
        .store
        .list_jobs(caller.owner_filter(), before, limit + 1)
        .await?;
    Ok(Json(super::page_json(
        "jobs",
        page,
        limit,
        q.cursor.filter(|c| !c.is_empty()),
        |j| j.id.to_string(),
        |j| job_json(j, None),
    )))
}

async fn control(
    st: AppState,
    caller: Caller,
    id: String,
    action: JobAction,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "job")?;
    match st
        .store
        .control_job(id, caller.owner_filter(), action, now_ms())
        .await
        .map_err(ApiError::not_stored)?
    {
        JobControl::Done(j) => {
            if action == JobAction::Resume {
                st.dispatcher.wake();
            }
            audit::record(&st.store, &caller.actor(), audit_action(action), id, None).await;
            Ok(Json(full_json(&st, &j).await?))
        }
        JobControl::NotFound => Err(ApiError::not_found("job")),
        JobControl::Invalid(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_allowed",
            format!(
                "the job is {}: it cannot be {}",
                s.as_str(),
                match action {
                    JobAction::Pause => "paused",
                    JobAction::Resume => "resumed",
                    JobAction::Cancel => "cancelled",
                }
            ),
        )),
    }
}

/// How the audit log names a job's control.
pub fn audit_action(action: JobAction) -> &'static str {
    match action {
        JobAction::Pause => "job.paused",
        JobAction::Resume => "job.resumed",
        JobAction::Cancel => "job.cancelled",
    }
}

/// `POST /api/v1/jobs/{id}/pause`: its waiting messages are held (shown as `scheduled`).
pub async fn pause(
    caller: Caller,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    control(st, caller, id, JobAction::Pause).await
}

/// `POST /api/v1/jobs/{id}/resume`.
pub async fn resume(
    caller: Caller,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    control(st, caller, id, JobAction::Resume).await
}

/// `POST /api/v1/jobs/{id}/cancel`: its messages not yet sent are cancelled.
pub async fn cancel(
    caller: Caller,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    control(st, caller, id, JobAction::Cancel).await
}

/// A response body fed from a channel, so the results CSV is written as it is read.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

/// `GET /api/v1/jobs/{id}/results.csv`: `row,number,message_id,status,error`, one line per
/// row of the file, in row order.
pub async fn results(
    caller: Caller,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Response> {
    let j = visible_job(&st, &caller, &id).await?;
    Ok(results_csv(&st, j.id))
}

/// A job's results CSV, streamed as it is read from the store.
pub(crate) fn results_csv(st: &AppState, job: i64) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let store = st.store.clone();
    tokio::spawn(async move {
        let mut r = textgate_jobs::results::Results::new(job);
        loop {
            match r.next_chunk(&store).await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    // The client sees a cut-off body rather than a CSV that looks complete.
                    tracing::error!(job, error = %e, "writing a job's results failed");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"job-{job}-results.csv\""),
            ),
        ],
        Body::new(ChannelBody(rx)),
    )
        .into_response()
}
