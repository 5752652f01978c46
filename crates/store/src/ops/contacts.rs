//! The address book: contacts and groups, a user's own or shared. Who may see or change
//! what is decided by the callers (`textgate_engine`'s rules); here, `viewer` lists what a
//! user sees: their own and the shared ones.

use textgate_core::clock::Millis;

use crate::exec::{args, row, Exec, Row};
use crate::model::*;
use crate::Result;

const CONTACT_COLUMNS: &str = "id, owner_id, name, number, fields, created_at";

fn contact_from_row(r: &dyn Row) -> Result<Contact> {
    Ok(Contact {
        id: r.int(0)?,
        owner_id: r.opt_int(1)?,
        name: r.text(2)?,
        number: r.text(3)?,
        fields: r.text(4)?,
        created_at: r.int(5)?,
    })
}

/// The contacts `viewer` sees (theirs and the shared ones), by name; `search` matches a piece
/// of the name (ASCII case ignored) or of the number.
pub(crate) async fn list(
    e: &mut impl Exec,
    viewer: Id,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Vec<Contact>> {
    let pattern = search.map(|s| format!("%{}%", s.to_lowercase().replace(['%', '_'], "")));
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts
         WHERE (owner_id = $1 OR owner_id IS NULL)
           AND (CAST($2 AS TEXT) IS NULL OR lower(name) LIKE $2 OR number LIKE $2)
         ORDER BY lower(name), id LIMIT $3 OFFSET $4"
    );
    e.rows(
        &sql,
        args![viewer, &pattern, limit, offset],
        contact_from_row,
    )
    .await
}

/// One contact, whoever's.
pub(crate) async fn get(e: &mut impl Exec, id: Id) -> Result<Option<Contact>> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1");
    row(e, &sql, args![id], contact_from_row).await
}

/// Adds a contact, or updates the one of the same owner and number; its id and whether it
/// was added.
pub(crate) async fn upsert(e: &mut impl Exec, c: &NewContact) -> Result<(Id, bool)> {
    let existing = row(
        e,
        "SELECT id FROM contacts WHERE coalesce(owner_id, 0) = coalesce(CAST($1 AS BIGINT), 0) AND number = $2",
        args![c.owner_id, &c.number],
        |r| r.int(0),
    )
    .await?;
    if let Some(id) = existing {
        e.run(
            "UPDATE contacts SET name = $1, fields = $2 WHERE id = $3",
            args![&c.name, &c.fields, id],
        )
        .await?;
        return Ok((id, false));
    }
    let id = crate::exec::insert(
        e,
        "INSERT INTO contacts (owner_id, name, number, fields, created_at) VALUES ($1, $2, $3, $4, $5)",
        args![c.owner_id, &c.name, &c.number, &c.fields, c.created_at],
    )
    .await?;
    Ok((id, true))
}

/// Many contacts at once (an import): how many were added and how many updated.
pub(crate) async fn upsert_many(e: &mut impl Exec, list: &[NewContact]) -> Result<(u64, u64)> {
    let (mut added, mut updated) = (0, 0);
    for c in list {
        if upsert(e, c).await?.1 {
            added += 1;
        } else {
            updated += 1;
        }
    }
    Ok((added, updated))
}

/// Changes a contact's name, number and fields; `false` when there is none.
pub(crate) async fn update(
    e: &mut impl Exec,
    id: Id,
    name: &str,
    number: &str,
    fields: &str,
) -> Result<bool> {
    Ok(e.run(
        "UPDATE contacts SET name = $1, number = $2, fields = $3 WHERE id = $4",
        args![name, number, fields, id],
    )
    .await?
        > 0)
}

/// Deletes a contact and its group memberships.
pub(crate) async fn delete(e: &mut impl Exec, id: Id) -> Result<bool> {
    e.run("DELETE FROM group_members WHERE contact_id = $1", args![id])
        .await?;
    Ok(e.run("DELETE FROM contacts WHERE id = $1", args![id])
        .await?
        > 0)
}

const GROUP_COLUMNS: &str = "g.id, g.owner_id, g.name, g.created_at, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id)";

fn group_from_row(r: &dyn Row) -> Result<Group> {
    Ok(Group {
        id: r.int(0)?,
        owner_id: r.opt_int(1)?,
        name: r.text(2)?,
        created_at: r.int(3)?,
        members: r.int(4)?,
    })
}

/// The groups `viewer` sees, by name.
pub(crate) async fn groups(e: &mut impl Exec, viewer: Id) -> Result<Vec<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM contact_groups g
         WHERE g.owner_id = $1 OR g.owner_id IS NULL ORDER BY lower(g.name), g.id"
    );
    e.rows(&sql, args![viewer], group_from_row).await
}

/// One group, whoever's.
pub(crate) async fn group(e: &mut impl Exec, id: Id) -> Result<Option<Group>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM contact_groups g WHERE g.id = $1");
    row(e, &sql, args![id], group_from_row).await
}

/// A group that `viewer` sees, by name (their own before a shared one of the same name).
pub(crate) async fn group_named(
    e: &mut impl Exec,
    viewer: Id,
    name: &str,
) -> Result<Option<Group>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM contact_groups g
         WHERE (g.owner_id = $1 OR g.owner_id IS NULL) AND g.name = $2
         ORDER BY g.owner_id IS NULL LIMIT 1"
    );
    row(e, &sql, args![viewer, name], group_from_row).await
}

/// A new group; `Conflict` when the owner has one of that name.
pub(crate) async fn create_group(
    e: &mut impl Exec,
    owner: Option<Id>,
    name: &str,
    now: Millis,
) -> Result<Id> {
    crate::exec::insert(
        e,
        "INSERT INTO contact_groups (owner_id, name, created_at) VALUES ($1, $2, $3)",
        args![owner, name, now],
    )
    .await
}

/// Deletes a group (its contacts stay).
pub(crate) async fn delete_group(e: &mut impl Exec, id: Id) -> Result<bool> {
    e.run("DELETE FROM group_members WHERE group_id = $1", args![id])
        .await?;
    Ok(e.run("DELETE FROM contact_groups WHERE id = $1", args![id])
        .await?
        > 0)
}

/// The contacts of a group, by name.
pub(crate) async fn members(e: &mut impl Exec, group: Id) -> Result<Vec<Contact>> {
    let sql = format!(
        "SELECT {} FROM group_members m JOIN contacts c ON c.id = m.contact_id
         WHERE m.group_id = $1 ORDER BY lower(c.name), c.id",
        crate::model::prefixed("c", CONTACT_COLUMNS)
    );
    e.rows(&sql, args![group], contact_from_row).await
}

/// The groups a contact is in.
pub(crate) async fn groups_of(e: &mut impl Exec, contact: Id) -> Result<Vec<Id>> {
    e.rows(
        "SELECT group_id FROM group_members WHERE contact_id = $1",
        args![contact],
        |r| r.int(0),
    )
    .await
}

/// Puts a contact in a group, or takes it out; whether anything changed.
pub(crate) async fn set_member(
    e: &mut impl Exec,
    group: Id,
    contact: Id,
    member: bool,
) -> Result<bool> {
    let n = if member {
        e.run(
            "INSERT INTO group_members (group_id, contact_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            args![group, contact],
        )
        .await?
    } else {
        e.run(
            "DELETE FROM group_members WHERE group_id = $1 AND contact_id = $2",
            args![group, contact],
        )
        .await?
    };
    Ok(n > 0)
}
