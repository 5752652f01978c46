//! The address book (docs/api.md): `/api/v1/contacts` and `/api/v1/groups`. A user sees their
//! own contacts and groups and the shared ones; they change their own, administrators the
//! shared ones too (`"shared": true` when creating). The rules are
//! `textgate_jobs::contacts`'s, the same as the web UI's.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::clock::format_rfc3339;
use textgate_jobs::contacts::{self as rules, fields_of, may_edit, may_see};
use textgate_store::{Contact, Group, StoreError};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// A contact as the API shows it.
pub fn contact_json(c: &Contact) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "number": c.number,
        "fields": fields_of(c),
        "shared": c.owner_id.is_none(),
        "created_at": format_rfc3339(c.created_at),
    })
}

fn group_json(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "shared": g.owner_id.is_none(),
        "members": g.members,
        "created_at": format_rfc3339(g.created_at),
    })
}

fn conflict(e: StoreError, what: String) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", what),
        other => ApiError::not_stored(other),
    }
}

/// The furthest a contact list is paged.
const MAX_OFFSET: usize = 1_000_000;

/// `?search=&offset=&limit=` of the contact list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A piece of the name or the number.
    pub search: Option<String>,
    /// Contacts to skip.
    pub offset: Option<usize>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<String>,
}

/// `GET /api/v1/contacts`: the caller's and the shared contacts, by name.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let limit = super::page_limit(q.limit.as_deref(), 100, 1000)?;
    let offset = q.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_request(
            "invalid_offset",
            format!("offset must be at most {MAX_OFFSET}: search to narrow the list"),
        ));
    }
    let search = q.search.filter(|s| !s.trim().is_empty());
    let list = st
        .store
        .list_contacts(caller.id, search, offset, limit + 1)
        .await?;
    let has_more = list.len() > limit;
    let items: Vec<Value> = list.iter().take(limit).map(contact_json).collect();
    Ok(Json(json!({
        "contacts": items,
        "next_offset": has_more.then_some(offset + limit),
        "has_more": has_more,
    })))
}

/// The body of `POST /api/v1/contacts` and `PATCH …/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// The name.
    pub name: Option<String>,
    /// The number.
    pub number: Option<String>,
    /// Other fields (lowercase names), usable in templates.
    pub fields: Option<BTreeMap<String, String>>,
    /// Administrators, when creating: a contact everyone sees.
    pub shared: Option<bool>,
}

/// `POST /api/v1/contacts`: adds a contact (or updates the caller's one of that number).
pub async fn create(
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (req, _) =
        super::json_body::<ContactRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let owner = rules::owner_for(req.shared == Some(true), caller.id, caller.is_admin())
        .map_err(ApiError::forbidden)?;
    let new = rules::check(
        owner,
        req.name.as_deref().unwrap_or(""),
        req.number.as_deref().unwrap_or(""),
        &req.fields.unwrap_or_default(),
        st.country,
    )
    .map_err(|m| ApiError::invalid("invalid_contact", m))?;
    let (id, added) = st
        .store
        .upsert_contact(new)
        .await
        .map_err(ApiError::not_stored)?;
    let c = st
        .store
        .get_contact(id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(contact_json(&c))))
}

async fn visible(st: &AppState, caller: &Caller, raw: &str) -> ApiResult<Contact> {
    match st
        .store
        .get_contact(super::path_id(raw, "contact")?)
        .await?
    {
        Some(c) if may_see(c.owner_id, caller.id) => Ok(c),
        _ => Err(ApiError::not_found("contact")),
    }
}

fn editable(caller: &Caller, owner: Option<i64>) -> ApiResult<()> {
    if may_edit(owner, caller.id, caller.is_admin()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "shared contacts and groups are changed by administrators",
        ))
    }
}

/// `GET /api/v1/contacts/{id}`.
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(contact_json(&visible(&st, &caller, &id).await?)))
}

/// `PATCH /api/v1/contacts/{id}`: name, number, fields.
pub async fn update(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let c = visible(&st, &caller, &id).await?;
    editable(&caller, c.owner_id)?;
    let (req, _) =
        super::json_body::<ContactRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let checked = rules::check(
        c.owner_id,
        req.name.as_deref().unwrap_or(&c.name),
        req.number.as_deref().unwrap_or(&c.number),
        &req.fields.unwrap_or_else(|| fields_of(&c)),
        st.country,
    )
    .map_err(|m| ApiError::invalid("invalid_contact", m))?;
    st.store
        .update_contact(c.id, checked.name, checked.number.clone(), checked.fields)
        .await
        .map_err(|e| {
            conflict(
                e,
                format!("another contact has the number {}", checked.number),
            )
        })?;
    let c = st
        .store
        .get_contact(c.id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    Ok(Json(contact_json(&c)))
}

/// `DELETE /api/v1/contacts/{id}`.
pub async fn delete(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = visible(&st, &caller, &id).await?;
    editable(&caller, c.owner_id)?;
    st.store
        .delete_contact(c.id)
        .await
        .map_err(ApiError::not_stored)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/groups`: the caller's and the shared groups, with their sizes.
pub async fn groups(caller: Caller, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let list = st.store.list_groups(caller.id).await?;
    let items: Vec<Value> = list.iter().map(group_json).collect();
    Ok(Json(
        json!({"groups": items, "next_cursor": null, "has_more": false}),
    ))
}

/// The body of `POST /api/v1/groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// The name.
    pub name: String,
    /// Administrators: a group everyone sees.
    pub shared: Option<bool>,
}

/// `POST /api/v1/groups`.
pub async fn create_group(
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (req, _) =
        super::json_body::<GroupRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let owner = rules::owner_for(req.shared == Some(true), caller.id, caller.is_admin())
        .map_err(ApiError::forbidden)?;
    let name =
        rules::check_group_name(&req.name).map_err(|m| ApiError::invalid("invalid_group", m))?;
    let id = st
        .store
        .create_group(owner, name)
        .await
        .map_err(|e| conflict(e, format!("a group named \"{name}\" exists")))?;
    let g = st
        .store
        .get_group(id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    Ok((StatusCode::CREATED, Json(group_json(&g))))
}

async fn visible_group(st: &AppState, caller: &Caller, raw: &str) -> ApiResult<Group> {
    match st.store.get_group(super::path_id(raw, "group")?).await? {
        Some(g) if may_see(g.owner_id, caller.id) => Ok(g),
        _ => Err(ApiError::not_found("group")),
    }
}

/// `GET /api/v1/groups/{id}`: the group with its contacts.
pub async fn group(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let g = visible_group(&st, &caller, &id).await?;
    let members = st.store.group_members(g.id).await?;
    let mut v = group_json(&g);
    v["contacts"] = json!(members.iter().map(contact_json).collect::<Vec<_>>());
    Ok(Json(v))
}

/// `DELETE /api/v1/groups/{id}`: its contacts stay.
pub async fn delete_group(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let g = visible_group(&st, &caller, &id).await?;
    editable(&caller, g.owner_id)?;
    st.store
        .delete_group(g.id)
        .await
        .map_err(ApiError::not_stored)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /api/v1/groups/{id}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// A contact the caller sees.
    pub contact_id: i64,
}

/// `POST /api/v1/groups/{id}/members`: puts a contact in the group.
pub async fn add_member(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let g = visible_group(&st, &caller, &id).await?;
    editable(&caller, g.owner_id)?;
    let (req, _) =
        super::json_body::<MemberRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let c = visible(&st, &caller, &req.contact_id.to_string()).await?;
    let added = st
        .store
        .set_group_member(g.id, c.id, true)
        .await
        .map_err(ApiError::not_stored)?;
    Ok(Json(
        json!({"group_id": g.id, "contact_id": c.id, "added": added}),
    ))
}

/// `DELETE /api/v1/groups/{id}/members/{contact_id}`.
pub async fn remove_member(
    caller: Caller,
    State(st): State<AppState>,
    Path((id, contact)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let g = visible_group(&st, &caller, &id).await?;
    editable(&caller, g.owner_id)?;
    let contact = super::path_id(&contact, "contact")?;
    if !st
        .store
        .set_group_member(g.id, contact, false)
        .await
        .map_err(ApiError::not_stored)?
    {
        return Err(ApiError::not_found("contact in this group"));
    }
    Ok(StatusCode::NO_CONTENT)
}
