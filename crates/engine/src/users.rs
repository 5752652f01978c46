//! Users as administrators manage them, the same from the API, the web UI and the command
//! line: names and e-mail addresses checked, passwords hashed off the async workers (or
//! generated and shown once), and never the last administrator disabled or demoted.

use textgate_core::auth::{generate_password, hash_password};
use textgate_core::clock::now_ms;
use textgate_store::{NewUser, Role, Store, StoreError, User, UserUpdate};

use crate::audit::{self, Actor};

/// The shortest password textgate sets.
pub const MIN_PASSWORD: usize = 8;
/// The longest password textgate reads.
pub const MAX_PASSWORD: usize = 1024;

/// Why a change to users was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A value is not acceptable; the message says which and what to do.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken.
    #[error("a user named \"{0}\" already exists: choose another name")]
    Exists(String),
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The change would leave no administrator who can sign in.
    #[error("this would leave no enabled administrator: make another user an administrator first")]
    LastAdmin,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> UserError {
        UserError::Store(e)
    }
}

/// A user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "\"{name}\" is not a usable user name: use 1-64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// An e-mail address, roughly: one `@` with text on both sides, no spaces, at most 254 bytes.
pub fn check_email(email: &str) -> Result<(), UserError> {
    let ok = email.len() <= 254
        && email
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "\"{email}\" is not an e-mail address: write it like \"alice@example.com\""
        )))
    }
}

/// A password given by a person.
pub fn check_password(password: &str) -> Result<(), UserError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(UserError::Invalid(format!(
            "a password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// `password`, or a generated one; the hash, and the password when it was generated (to be
/// shown once).
async fn hashed(password: Option<String>) -> Result<(String, Option<String>), UserError> {
    let (pw, generated) = match password {
        Some(p) => {
            check_password(&p)?;
            (p, false)
        }
        None => (
            generate_password().map_err(|e| UserError::Invalid(e.to_string()))?,
            true,
        ),
    };
    let p = pw.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&p))
        .await
        .map_err(|e| UserError::Invalid(format!("hashing failed: {e}")))?
        .map_err(|e| UserError::Invalid(e.to_string()))?;
    Ok((hash, generated.then_some(pw)))
}

/// Creates a user; the password is `password` or generated (returned, to be shown once).
pub async fn create(
    store: &Store,
    by: &Actor,
    name: &str,
    role: Role,
    email: Option<String>,
    password: Option<String>,
) -> Result<(User, Option<String>), UserError> {
    check_name(name)?;
    let email = email.filter(|e| !e.trim().is_empty());
    if let Some(e) = &email {
        check_email(e)?;
    }
    let (hash, generated) = hashed(password).await?;
    let user = store
        .create_user(NewUser {
            name: name.to_string(),
            role,
            email,
            password_hash: Some(hash),
            created_at: now_ms(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => UserError::Exists(name.to_string()),
            other => UserError::Store(other),
        })?;
    audit::record(
        store,
        by,
        "user.created",
        &user.name,
        Some(format!("role {}", user.role.as_str())),
    )
    .await;
    Ok((user, generated))
}

/// Sets a user's password (`password`, or generated and returned) and signs out their web
/// sessions, all but `keep`.
pub async fn set_password(
    store: &Store,
    by: &Actor,
    user_id: i64,
    password: Option<String>,
    keep: Option<&str>,
) -> Result<Option<String>, UserError> {
    let (hash, generated) = hashed(password).await?;
    if !store.set_password(user_id, &hash, keep).await? {
        return Err(UserError::NotFound);
    }
    let name = store
        .user_by_id(user_id)
        .await?
        .map_or_else(|| user_id.to_string(), |u| u.name);
    let how = if generated.is_some() {
        "generated"
    } else {
        "given"
    };
    audit::record(store, by, "user.password_set", name, Some(how.into())).await;
    Ok(generated)
}

/// Changes a user's role, e-mail address or whether they are disabled; refuses to leave no
/// enabled administrator.
pub async fn update(
    store: &Store,
    by: &Actor,
    id: i64,
    mut u: UserUpdate,
) -> Result<User, UserError> {
    if let Some(Some(e)) = &u.email {
        if e.trim().is_empty() {
            u.email = Some(None);
        } else {
            check_email(e)?;
        }
    }
    let current = store.user_by_id(id).await?.ok_or(UserError::NotFound)?;
    let loses_admin = current.role == Role::Admin
        && current.disabled_at.is_none()
        && (u.role.is_some_and(|r| r != Role::Admin) || u.disabled == Some(true));
    if loses_admin && store.active_admins().await? <= 1 {
        return Err(UserError::LastAdmin);
    }
    let (action, detail) = change_of(&current, &u);
    let user = store.update_user(id, u).await?.ok_or(UserError::NotFound)?;
    audit::record(store, by, action, &user.name, detail).await;
    Ok(user)
}

/// How the audit log names a change to a user: disabling or enabling is an action of its
/// own; other changes are `user.updated`, with what changed.
/// Fields the update leaves as they were (the web UI's form sends them all) are not named.
fn change_of(current: &User, u: &UserUpdate) -> (&'static str, Option<String>) {
    let mut what = Vec::new();
    if let Some(r) = u.role.filter(|r| *r != current.role) {
        what.push(format!("role {}", r.as_str()));
    }
    if let Some(e) = u.email.as_ref().filter(|e| **e != current.email) {
        let set = if e.is_some() { "set" } else { "removed" };
        what.push(format!("e-mail {set}"));
    }
    if let Some(q) = u.quota.as_ref().filter(|q| **q != current.quota) {
        let show = |v: Option<i64>| v.map_or("default".to_string(), |v| v.to_string());
        what.push(format!(
            "limits {}/day {}/month {}/s",
            show(q.daily),
            show(q.monthly),
            show(q.rate)
        ));
    }
    if let Some(s) = u.senders.as_ref().filter(|s| **s != current.senders) {
        let list = if s.is_empty() {
            "any".to_string()
        } else {
            s.join(" ")
        };
        what.push(format!("senders {list}"));
    }
    let was_disabled = current.disabled_at.is_some();
    let action = match u.disabled {
        Some(true) if !was_disabled => "user.disabled",
        Some(false) if was_disabled => "user.enabled",
        _ => "user.updated",
    };
    (action, (!what.is_empty()).then(|| what.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_emails_and_passwords_are_checked() {
        assert!(check_name("alice.b-1@x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_email("alice@example.com").is_ok());
        assert!(check_email("alice@localhost").is_err());
        assert!(check_email("a <b@c.d>").is_err());
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
    }

    #[tokio::test]
    async fn the_last_enabled_administrator_stays_one() {
        let dir = std::env::temp_dir().join(format!("tg-users-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let store = Store::open(&format!("sqlite://{}/u.db", dir.display()))
            .await
            .unwrap();
        let by = Actor::cli();
        let (root, pw) = create(&store, &by, "root", Role::Admin, None, None)
            .await
            .unwrap();
        assert!(
            pw.is_some_and(|p| p.len() >= MIN_PASSWORD),
            "a generated password"
        );
        assert!(matches!(
            create(
                &store,
                &by,
                "root",
                Role::User,
                None,
                Some("password-1".into())
            )
            .await,
            Err(UserError::Exists(_))
        ));
        let off = UserUpdate {
            disabled: Some(true),
            ..Default::default()
        };
        assert!(matches!(
            update(&store, &by, root.id, off.clone()).await,
            Err(UserError::LastAdmin)
        ));
        let demote = UserUpdate {
            role: Some(Role::User),
            ..Default::default()
        };
        assert!(matches!(
            update(&store, &by, root.id, demote.clone()).await,
            Err(UserError::LastAdmin)
        ));
        create(
            &store,
            &by,
            "second",
            Role::Admin,
            None,
            Some("password-2".into()),
        )
        .await
        .unwrap();
        let root = update(&store, &by, root.id, off).await.unwrap();
        assert!(root.disabled_at.is_some());
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
