//! The audit log: appended to by administrators' and users' actions and by sign-ins, read
//! newest first.

use crate::exec::{args, Exec, Row};
use crate::model::*;
use crate::Result;

fn entry_from_row(r: &dyn Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.int(0)?,
        at: r.int(1)?,
        actor: r.text(2)?,
        via: r.text(3)?,
        address: r.opt_text(4)?,
        action: r.text(5)?,
        target: r.text(6)?,
        detail: r.opt_text(7)?,
    })
}

pub(crate) async fn record(e: &mut impl Exec, a: &NewAudit) -> Result<Id> {
    crate::exec::insert(
        e,
        "INSERT INTO audit_log (at, actor, via, address, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![a.at, &a.actor, &a.via, &a.address, &a.action, &a.target, &a.detail],
    )
    .await
}

pub(crate) async fn list(e: &mut impl Exec, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    // `user.` matches every action of users: a prefix, compared as a range so that the index
    // serves it (`/` is the character after `.`).
    let (exact, from, to) = match f.action.as_deref() {
        Some(a) if a.ends_with('.') => (
            None,
            Some(a.to_string()),
            Some(format!("{}/", &a[..a.len() - 1])),
        ),
        Some(a) => (Some(a.to_string()), None, None),
        None => (None, None, None),
    };
    const SQL: &str = "SELECT id, at, actor, via, address, action, target, detail FROM audit_log
         WHERE (CAST($1 AS TEXT) IS NULL OR action = $1)
           AND (CAST($2 AS TEXT) IS NULL OR (action >= $2 AND action < $3))
           AND (CAST($4 AS TEXT) IS NULL OR actor = $4)
           AND (CAST($5 AS BIGINT) IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6";
    e.rows(
        SQL,
        args![&exact, &from, &to, &f.actor, f.before, f.limit],
        entry_from_row,
    )
    .await
}
