//! The address book in the web UI: contacts (name, number, other fields for templates) and
//! groups, personal or shared; import and export as CSV; send to a group from Compose. The
//! rules are `textgate_jobs::contacts`'s, the same as the API's.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use textgate_jobs::contacts::{self as rules, fields_of, may_edit, may_see};
use textgate_store::{Contact, Group, Id, StoreError};

use super::session::{forged, CsrfForm, Signed};
use super::{form_status, not_found, page, page_with, unavailable, Layout};
use crate::AppState;

/// Contacts on a page of the list.
const PAGE: usize = 100;

/// The largest contacts file read (it is read whole: 100,000 contacts fit many times over).
const MAX_IMPORT_BYTES: u64 = 16 << 20;

struct ContactRow {
    id: Id,
    name: String,
    number: String,
    fields: String,
    shared: bool,
}

impl From<&Contact> for ContactRow {
    fn from(c: &Contact) -> ContactRow {
        ContactRow {
            id: c.id,
            name: c.name.clone(),
            number: c.number.clone(),
            fields: fields_of(c)
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            shared: c.owner_id.is_none(),
        }
    }
}

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage {
    layout: Layout,
    search: String,
    contacts: Vec<ContactRow>,
    groups: Vec<Group>,
    next: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

/// `?search=&offset=` of the contact list.
#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    offset: usize,
}

async fn contacts_page(
    st: &AppState,
    me: &Signed,
    q: &ListQuery,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let search = Some(q.search.trim().to_string()).filter(|s| !s.is_empty());
    let (mut list, groups) = match tokio::try_join!(
        st.store
            .list_contacts(me.user.id, search, q.offset.min(1_000_000), PAGE + 1),
        st.store.list_groups(me.user.id),
    ) {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let next = (list.len() > PAGE).then(|| {
        format!(
            "/contacts?search={}&offset={}",
            super::urlencode(&q.search),
            q.offset + PAGE
        )
    });
    list.truncate(PAGE);
    let status = form_status(&error);
    page_with(
        status,
        &ContactsPage {
            layout: Layout::of(st, me, "Contacts", "contacts").await,
            search: q.search.clone(),
            contacts: list.iter().map(ContactRow::from).collect(),
            groups,
            next,
            message,
            error,
        },
    )
}

/// `GET /contacts`.
pub async fn list(State(st): State<AppState>, me: Signed, Query(q): Query<ListQuery>) -> Response {
    contacts_page(&st, &me, &q, None, None).await
}

/// `key: value` lines (or `key=value`) as fields.
fn parse_fields(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .or_else(|| line.split_once('='))
            .ok_or_else(|| format!("other fields: \"{line}\" is not like \"city: Oslo\""))?;
        out.insert(k.trim().to_lowercase(), v.trim().to_string());
    }
    Ok(out)
}

/// The contact form.
#[derive(Debug, Deserialize)]
pub struct ContactForm {
    csrf: String,
    name: String,
    number: String,
    #[serde(default)]
    fields: String,
    #[serde(default)]
    shared: Option<String>,
}

/// `POST /contacts`: adds a contact (or updates the user's contact of that number).
pub async fn add(State(st): State<AppState>, me: Signed, Form(f): Form<ContactForm>) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    // The "shared" box is shown to administrators only; from anyone else it is ignored.
    let owner = rules::owner_for(
        f.shared.is_some() && me.is_admin(),
        me.user.id,
        me.is_admin(),
    )
    .unwrap_or(Some(me.user.id));
    let checked = parse_fields(&f.fields)
        .and_then(|fields| rules::check(owner, &f.name, &f.number, &fields, st.country));
    match checked {
        Ok(c) => match st.store.upsert_contact(c).await {
            Ok(_) => Redirect::to("/contacts").into_response(),
            Err(e) => unavailable(e),
        },
        Err(m) => contacts_page(&st, &me, &ListQuery::default(), None, Some(m)).await,
    }
}

/// `POST /contacts/import` (multipart: `csrf`, `file`): contacts from a CSV file with a
/// header (`name`, `number`, other columns become fields); the user's contacts of the same
/// numbers are updated.
pub async fn import(State(st): State<AppState>, me: Signed, req: Request) -> Response {
    let limit = st.config.server.max_upload_bytes.0.min(MAX_IMPORT_BYTES);
    let (upload, _, pairs) = match crate::api::jobs::receive_multipart(&st, req, limit).await {
        Ok(v) => v,
        Err(e) => {
            let m = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "A contacts file may be at most {} MiB: split it.",
                    MAX_IMPORT_BYTES >> 20
                )
            } else {
                e.message
            };
            return contacts_page(&st, &me, &ListQuery::default(), None, Some(m)).await;
        }
    };
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !me.csrf_ok(csrf) {
        return forged();
    }
    let bytes = match tokio::fs::read(&upload.0).await {
        Ok(b) => b,
        Err(e) => return unavailable(e),
    };
    let (ok, bad) = match rules::read_csv(&bytes, Some(me.user.id), st.country) {
        Ok(v) => v,
        Err(m) => return contacts_page(&st, &me, &ListQuery::default(), None, Some(m)).await,
    };
    let (added, updated) = match st.store.upsert_contacts(ok).await {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let mut message = format!("Imported: {added} added, {updated} updated.");
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(10)
            .map(|(row, why)| format!("row {row}: {why}"))
            .collect();
        message.push_str(&format!(
            " {} row(s) were not contacts: {}{}",
            bad.len(),
            shown.join("; "),
            if bad.len() > 10 { "; …" } else { "" }
        ));
    }
    contacts_page(&st, &me, &ListQuery::default(), Some(message), None).await
}

/// `GET /contacts.csv`: the user's and the shared contacts, as CSV.
pub async fn export(State(st): State<AppState>, me: Signed) -> Response {
    match st
        .store
        .list_contacts(me.user.id, None, 0, rules::MAX_IMPORT)
        .await
    {
        Ok(list) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"contacts.csv\"",
                ),
            ],
            rules::write_csv(&list),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Template)]
#[template(path = "contact.html")]
struct ContactPage {
    layout: Layout,
    c: ContactRow,
    fields: String,
    editable: bool,
    groups: Vec<(Group, bool)>,
    error: Option<String>,
}

async fn visible(st: &AppState, me: &Signed, id: Id) -> Result<Contact, Response> {
    match st.store.get_contact(id).await {
        Ok(Some(c)) if may_see(c.owner_id, me.user.id) => Ok(c),
        Ok(_) => Err(not_found()),
        Err(e) => Err(unavailable(e)),
    }
}

async fn contact_page(st: &AppState, me: &Signed, c: &Contact, error: Option<String>) -> Response {
    let (groups, in_groups) = match tokio::try_join!(
        st.store.list_groups(me.user.id),
        st.store.groups_of_contact(c.id)
    ) {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let members: Vec<bool> = groups.iter().map(|g| in_groups.contains(&g.id)).collect();
    let status = form_status(&error);
    page_with(
        status,
        &ContactPage {
            layout: Layout::of(st, me, &c.name, "contacts").await,
            fields: fields_of(c)
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            editable: may_edit(c.owner_id, me.user.id, me.is_admin()),
            c: ContactRow::from(c),
            groups: groups
                .into_iter()
                .zip(members)
                .filter(|(g, _)| may_edit(g.owner_id, me.user.id, me.is_admin()))
                .collect(),
            error,
        },
    )
}

/// `GET /contacts/{id}`.
pub async fn contact(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    match visible(&st, &me, id).await {
        Ok(c) => contact_page(&st, &me, &c, None).await,
        Err(r) => r,
    }
}

/// `POST /contacts/{id}`: saves the contact.
pub async fn save(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<ContactForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let c = match visible(&st, &me, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !may_edit(c.owner_id, me.user.id, me.is_admin()) {
        return not_found();
    }
    let checked = parse_fields(&f.fields)
        .and_then(|fields| rules::check(c.owner_id, &f.name, &f.number, &fields, st.country));
    match checked {
        Ok(n) => match st
            .store
            .update_contact(id, n.name, n.number.clone(), n.fields)
            .await
        {
            Ok(_) => Redirect::to(&format!("/contacts/{id}")).into_response(),
            Err(StoreError::Conflict(_)) => {
                contact_page(
                    &st,
                    &me,
                    &c,
                    Some(format!("Another contact has the number {}.", n.number)),
                )
                .await
            }
            Err(e) => unavailable(e),
        },
        Err(m) => contact_page(&st, &me, &c, Some(m)).await,
    }
}

/// `POST /contacts/{id}/delete`.
pub async fn delete(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    match visible(&st, &me, id).await {
        Ok(c) if may_edit(c.owner_id, me.user.id, me.is_admin()) => {
            match st.store.delete_contact(id).await {
                Ok(_) => Redirect::to("/contacts").into_response(),
                Err(e) => unavailable(e),
            }
        }
        Ok(_) => not_found(),
        Err(r) => r,
    }
}

/// The membership form: `group` and whether the contact is in it.
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    csrf: String,
    group: Id,
    #[serde(default)]
    member: Option<String>,
}

/// `POST /contacts/{id}/groups`: puts the contact in a group or takes it out.
pub async fn membership(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<MemberForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    let c = match visible(&st, &me, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match st.store.get_group(f.group).await {
        Ok(Some(g)) if may_edit(g.owner_id, me.user.id, me.is_admin()) => {
            match st
                .store
                .set_group_member(g.id, c.id, f.member.is_some())
                .await
            {
                Ok(_) => Redirect::to(&format!("/contacts/{id}")).into_response(),
                Err(e) => unavailable(e),
            }
        }
        Ok(_) => not_found(),
        Err(e) => unavailable(e),
    }
}

/// The new-group form.
#[derive(Debug, Deserialize)]
pub struct GroupForm {
    csrf: String,
    name: String,
    #[serde(default)]
    shared: Option<String>,
}

/// `POST /contacts/groups`.
pub async fn add_group(
    State(st): State<AppState>,
    me: Signed,
    Form(f): Form<GroupForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    // The "shared" box is shown to administrators only; from anyone else it is ignored.
    let owner = rules::owner_for(
        f.shared.is_some() && me.is_admin(),
        me.user.id,
        me.is_admin(),
    )
    .unwrap_or(Some(me.user.id));
    let name = match rules::check_group_name(&f.name) {
        Ok(n) => n,
        Err(m) => return contacts_page(&st, &me, &ListQuery::default(), None, Some(m)).await,
    };
    match st.store.create_group(owner, name).await {
        Ok(id) => Redirect::to(&format!("/contacts/groups/{id}")).into_response(),
        Err(StoreError::Conflict(_)) => {
            contacts_page(
                &st,
                &me,
                &ListQuery::default(),
                None,
                Some(format!("You have a group named \"{name}\" already.")),
            )
            .await
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    layout: Layout,
    g: Group,
    members: Vec<ContactRow>,
    editable: bool,
}

async fn visible_group(st: &AppState, me: &Signed, id: Id) -> Result<Group, Response> {
    match st.store.get_group(id).await {
        Ok(Some(g)) if may_see(g.owner_id, me.user.id) => Ok(g),
        Ok(_) => Err(not_found()),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /contacts/groups/{id}`: its contacts, and sending to it.
pub async fn group(State(st): State<AppState>, me: Signed, Path(id): Path<Id>) -> Response {
    let g = match visible_group(&st, &me, id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let members = match st.store.group_members(id).await {
        Ok(m) => m,
        Err(e) => return unavailable(e),
    };
    page(&GroupPage {
        layout: Layout::of(&st, &me, &g.name, "contacts").await,
        editable: may_edit(g.owner_id, me.user.id, me.is_admin()),
        members: members.iter().map(ContactRow::from).collect(),
        g,
    })
}

/// `POST /contacts/groups/{id}/delete`: its contacts stay.
pub async fn delete_group(
    State(st): State<AppState>,
    me: Signed,
    Path(id): Path<Id>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !me.csrf_ok(&f.csrf) {
        return forged();
    }
    match visible_group(&st, &me, id).await {
        Ok(g) if may_edit(g.owner_id, me.user.id, me.is_admin()) => {
            match st.store.delete_group(id).await {
                Ok(_) => Redirect::to("/contacts").into_response(),
                Err(e) => unavailable(e),
            }
        }
        Ok(_) => not_found(),
        Err(r) => r,
    }
}

/// The numbers of a group the user sees, for Compose; `Err` says why not.
pub async fn group_numbers(st: &AppState, me: &Signed, id: Id) -> Result<Vec<String>, String> {
    match st.store.get_group(id).await {
        Ok(Some(g)) if may_see(g.owner_id, me.user.id) => st
            .store
            .group_members(id)
            .await
            .map(|m| m.into_iter().map(|c| c.number).collect())
            .map_err(|e| e.to_string()),
        Ok(_) => Err("that group is not there".into()),
        Err(e) => Err(e.to_string()),
    }
}
