//! Users and their API keys.

use textgate_core::clock::Millis;

use crate::exec::{args, row, Exec, Row};
use crate::model::*;
use crate::{Result, StoreError};

pub(crate) const USER_COLUMNS: &str =
    "id, name, role, email, password_hash, created_at, disabled_at, senders, quota_daily, quota_monthly, quota_rate";
/// How many columns [`USER_COLUMNS`] names: where the columns after them start.
pub(crate) const USER_COLUMN_COUNT: usize = 11;

/// A user from the columns of [`USER_COLUMNS`] (in that order), from column `at` on.
pub(crate) fn user_from(r: &dyn Row, at: usize) -> Result<User> {
    let role = r.text(at + 2)?;
    Ok(User {
        id: r.int(at)?,
        name: r.text(at + 1)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("user has the unknown role \"{role}\"")))?,
        email: r.opt_text(at + 3)?,
        password_hash: r.opt_text(at + 4)?,
        created_at: r.int(at + 5)?,
        disabled_at: r.opt_int(at + 6)?,
        senders: r
            .text(at + 7)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        quota: Quota {
            daily: r.opt_int(at + 8)?,
            monthly: r.opt_int(at + 9)?,
            rate: r.opt_int(at + 10)?,
        },
    })
}

pub(crate) fn user_from_row(r: &dyn Row) -> Result<User> {
    user_from(r, 0)
}

const KEY_COLUMNS: &str = "k.id, k.user_id, u.name, k.label, k.webhook_secret IS NOT NULL, k.created_at, k.last_used_at, k.revoked_at";

fn key_from_row(r: &dyn Row) -> Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.int(0)?,
        user_id: r.int(1)?,
        user: r.text(2)?,
        label: r.text(3)?,
        webhook_secret: r.flag(4)?,
        created_at: r.int(5)?,
        last_used_at: r.opt_int(6)?,
        revoked_at: r.opt_int(7)?,
    })
}

pub(crate) async fn create(e: &mut impl Exec, u: &NewUser) -> Result<User> {
    let id = crate::exec::insert(
            e,
            "INSERT INTO users (name, role, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            args![&u.name, u.role.as_str(), &u.email, &u.password_hash, u.created_at],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a user named \"{}\" already exists", u.name))
            }
            other => other,
        })?;
    Ok(User {
        id,
        name: u.name.clone(),
        role: u.role,
        email: u.email.clone(),
        password_hash: u.password_hash.clone(),
        created_at: u.created_at,
        disabled_at: None,
        senders: Vec::new(),
        quota: Quota::default(),
    })
}

pub(crate) async fn by_name(e: &mut impl Exec, name: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
    row(e, &sql, args![name], user_from_row).await
}

pub(crate) async fn by_id(e: &mut impl Exec, id: Id) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    row(e, &sql, args![id], user_from_row).await
}

/// Compared without regard to case; the oldest when several share it.
pub(crate) async fn by_email(e: &mut impl Exec, email: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1) AND disabled_at IS NULL
         ORDER BY id LIMIT 1"
    );
    row(e, &sql, args![email], user_from_row).await
}

pub(crate) async fn count(e: &mut impl Exec) -> Result<i64> {
    crate::exec::int(e, "SELECT count(*) FROM users", args![]).await
}

pub(crate) async fn create_key(
    e: &mut impl Exec,
    user_id: Id,
    key_hash: &str,
    label: &str,
    webhook_secret: &Option<String>,
    now: Millis,
) -> Result<Id> {
    crate::exec::insert(
        e,
        "INSERT INTO api_keys (user_id, key_hash, label, created_at, webhook_secret) VALUES ($1, $2, $3, $4, $5)",
        args![user_id, key_hash, label, now, webhook_secret],
    )
    .await
}

/// A key that is not revoked, with its owner.
pub(crate) async fn key_by_hash(e: &mut impl Exec, key_hash: &str) -> Result<Option<ApiKey>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, k.id, k.webhook_secret
             FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL",
            crate::model::prefixed("u", USER_COLUMNS)
        )
    });
    row(e, &SQL, args![key_hash], |r| {
        Ok(ApiKey {
            user: user_from(r, 0)?,
            id: r.int(USER_COLUMN_COUNT)?,
            webhook_secret: r.opt_text(USER_COLUMN_COUNT + 1)?,
        })
    })
    .await
}

pub(crate) async fn list_keys(e: &mut impl Exec, user_id: Option<Id>) -> Result<Vec<KeyInfo>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE (CAST($1 AS BIGINT) IS NULL OR k.user_id = $1) ORDER BY k.id DESC"
    );
    e.rows(&sql, args![user_id], key_from_row).await
}

/// Revokes a key (of `owner`, unless `None`); the key as it now is.
pub(crate) async fn revoke_key(
    e: &mut impl Exec,
    id: Id,
    owner: Option<Id>,
    now: Millis,
) -> Result<Option<KeyInfo>> {
    e.run(
        "UPDATE api_keys SET revoked_at = $1
         WHERE id = $2 AND (CAST($3 AS BIGINT) IS NULL OR user_id = $3) AND revoked_at IS NULL",
        args![now, id, owner],
    )
    .await?;
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.id = $1 AND (CAST($2 AS BIGINT) IS NULL OR k.user_id = $2)"
    );
    row(e, &sql, args![id, owner], key_from_row).await
}

pub(crate) async fn touch_key(e: &mut impl Exec, id: Id, now: Millis) -> Result<()> {
    e.run(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
        args![now, id],
    )
    .await?;
    Ok(())
}

pub(crate) async fn revoked_since(e: &mut impl Exec, since: Millis) -> Result<Vec<(Id, Millis)>> {
    // A disabled user's keys stop working as revoked ones do.
    e.rows(
        "SELECT id, revoked_at FROM api_keys WHERE revoked_at > $1
         UNION ALL
         SELECT k.id, u.disabled_at FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE u.disabled_at > $1
         ORDER BY 2",
        args![since],
        |r| Ok((r.int(0)?, r.int(1)?)),
    )
    .await
}

pub(crate) async fn key_secret(e: &mut impl Exec, id: Id) -> Result<Option<String>> {
    Ok(row(
        e,
        "SELECT webhook_secret FROM api_keys WHERE id = $1",
        args![id],
        |r| r.opt_text(0),
    )
    .await?
    .flatten())
}

/// Every user, by name.
pub(crate) async fn list(e: &mut impl Exec) -> Result<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
    e.rows(&sql, args![], user_from_row).await
}

/// Changes a user; the user as they now are, `None` when there is no such user. Disabling
/// ends their web sessions.
pub(crate) async fn update(
    e: &mut impl Exec,
    id: Id,
    u: &UserUpdate,
    now: Millis,
) -> Result<Option<User>> {
    if let Some(role) = u.role {
        e.run(
            "UPDATE users SET role = $1 WHERE id = $2",
            args![role.as_str(), id],
        )
        .await?;
    }
    if let Some(email) = &u.email {
        e.run(
            "UPDATE users SET email = $1 WHERE id = $2",
            args![email, id],
        )
        .await?;
    }
    if let Some(q) = &u.quota {
        e.run(
            "UPDATE users SET quota_daily = $1, quota_monthly = $2, quota_rate = $3 WHERE id = $4",
            args![q.daily, q.monthly, q.rate, id],
        )
        .await?;
    }
    if let Some(senders) = &u.senders {
        let joined = senders.join("\n");
        e.run(
            "UPDATE users SET senders = $1 WHERE id = $2",
            args![joined.as_str(), id],
        )
        .await?;
    }
    match u.disabled {
        Some(true) => {
            e.run(
                "UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL",
                args![now, id],
            )
            .await?;
            e.run("DELETE FROM web_sessions WHERE user_id = $1", args![id])
                .await?;
        }
        Some(false) => {
            e.run(
                "UPDATE users SET disabled_at = NULL WHERE id = $1",
                args![id],
            )
            .await?;
        }
        None => {}
    }
    by_id(e, id).await
}

/// Administrators who are not disabled.
pub(crate) async fn active_admins(e: &mut impl Exec) -> Result<i64> {
    crate::exec::int(
        e,
        "SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL",
        args![],
    )
    .await
}

/// The latest time a user was disabled after `since`, if one was.
pub(crate) async fn disabled_since(e: &mut impl Exec, since: Millis) -> Result<Option<Millis>> {
    row(
        e,
        "SELECT max(disabled_at) FROM users WHERE disabled_at > $1",
        args![since],
        |r| r.opt_int(0),
    )
    .await
    .map(Option::flatten)
}

/// The periods a quota counts in, for a time: the UTC day (`d2026-12-06`) and month
/// (`m2026-12`).
pub(crate) fn quota_periods(now: Millis) -> (String, String) {
    let day = textgate_core::clock::format_rfc3339(now);
    (format!("d{}", &day[..10]), format!("m{}", &day[..7]))
}

/// Counts `n` more texts for a user against each limit (`None`: not counted), all or none:
/// `Ok(None)` when counted, else the first limit they would pass and how many were counted
/// in its period already.
pub(crate) async fn take_quota(
    e: &mut impl Exec,
    user_id: Id,
    n: i64,
    limits: &[(String, Option<i64>)],
) -> Result<Option<(usize, i64)>> {
    const TAKE: &str = "INSERT INTO quota_usage (user_id, period, texts)
         SELECT CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS BIGINT) WHERE CAST($3 AS BIGINT) <= CAST($4 AS BIGINT)
         ON CONFLICT (user_id, period) DO UPDATE SET texts = quota_usage.texts + excluded.texts
         WHERE quota_usage.texts + excluded.texts <= CAST($4 AS BIGINT)
         RETURNING texts";
    for (i, (period, limit)) in limits.iter().enumerate() {
        // Unlimited periods are counted too, so that usage shows what was sent.
        let limit = limit.unwrap_or(i64::MAX / 2);
        let taken = e
            .rows(TAKE, args![user_id, period.as_str(), n, limit], |r| {
                r.int(0)
            })
            .await?;
        if taken.is_empty() {
            // Undo the periods counted before this one: all or none.
            for (earlier, _) in &limits[..i] {
                give_quota(e, user_id, n, earlier).await?;
            }
            let used = crate::exec::row(
                e,
                "SELECT texts FROM quota_usage WHERE user_id = $1 AND period = $2",
                args![user_id, period.as_str()],
                |r| r.int(0),
            )
            .await?
            .unwrap_or(0);
            return Ok(Some((i, used)));
        }
    }
    Ok(None)
}

/// Gives back `n` texts counted in `period` (their request was not stored after all).
pub(crate) async fn give_quota(e: &mut impl Exec, user_id: Id, n: i64, period: &str) -> Result<()> {
    e.run(
        "UPDATE quota_usage SET texts = texts - $1 WHERE user_id = $2 AND period = $3 AND texts >= $1",
        args![n, user_id, period],
    )
    .await
    .map(|_| ())
}

/// The texts counted for a user in each period.
pub(crate) async fn quota_used(
    e: &mut impl Exec,
    user_id: Id,
    periods: &[String],
) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(periods.len());
    for p in periods {
        let used = crate::exec::row(
            e,
            "SELECT texts FROM quota_usage WHERE user_id = $1 AND period = $2",
            args![user_id, p.as_str()],
            |r| r.int(0),
        )
        .await?
        .unwrap_or(0);
        out.push(used);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_user_column_count_is_the_columns_named() {
        assert_eq!(
            super::USER_COLUMNS.split(',').count(),
            super::USER_COLUMN_COUNT
        );
    }
}
