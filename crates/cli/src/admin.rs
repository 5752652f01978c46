//! `textgate user add` and `textgate apikey create`: they work on the database directly, so
//! they run before `serve` ever has (they create and migrate the database themselves).

use std::io::BufRead;

use anyhow::{bail, Context};
use textgate_core::auth::{generate_password, hash_password, new_api_key};
use textgate_core::clock::{format_rfc3339, now_ms};
use textgate_core::config::Config;
use textgate_engine::audit::{self, Actor};
use textgate_engine::users;
use textgate_store::{NewUser, Role, Store};

/// `textgate user add NAME [--role] [--email] [--password-stdin]`.
pub async fn user_add(
    cfg: Config,
    name: &str,
    role: &str,
    email: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let role =
        Role::parse(role).with_context(|| format!("unknown role \"{role}\": use admin or user"))?;
    users::check_name(name)?;
    let password = read_password(password_stdin)?;
    let store = Store::open(&cfg.server.database_url).await?;
    let created = users::create(&store, &Actor::cli(), name, role, email, password).await;
    store.close().await;
    let (user, generated) = created?;
    println!(
        "created {} \"{}\" (id {})",
        user.role.as_str(),
        user.name,
        user.id
    );
    if let Some(pw) = generated {
        println!("password (shown once): {pw}");
    }
    Ok(())
}

/// A password read from standard input (one line) when asked for; `None` = generate one.
fn read_password(from_stdin: bool) -> anyhow::Result<Option<String>> {
    if !from_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    users::check_password(&pw)?;
    Ok(Some(pw))
}

async fn named(store: &Store, name: &str) -> anyhow::Result<textgate_store::User> {
    store
        .user_by_name(name)
        .await?
        .with_context(|| format!("no user is named \"{name}\": see `textgate user list`"))
}

/// `textgate user passwd NAME [--password-stdin]`: sets a user's password (generated and
/// printed once, unless read from standard input) and signs out all their web sessions.
pub async fn user_passwd(cfg: Config, name: &str, password_stdin: bool) -> anyhow::Result<()> {
    let password = read_password(password_stdin)?;
    let store = Store::open(&cfg.server.database_url).await?;
    let result = async {
        let user = named(&store, name).await?;
        Ok::<_, anyhow::Error>(
            users::set_password(&store, &Actor::cli(), user.id, password, None).await?,
        )
    }
    .await;
    store.close().await;
    let generated = result?;
    println!("password of \"{name}\" changed; their web sessions are signed out");
    if let Some(pw) = generated {
        println!("password (shown once): {pw}");
    }
    Ok(())
}

/// `textgate user list`: one line per user (name, role, state, e-mail, created).
pub async fn user_list(cfg: Config) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let list = store.list_users().await;
    store.close().await;
    println!(
        "{:<24} {:<6} {:<9} {:<32} created",
        "name", "role", "state", "email"
    );
    for u in list? {
        println!(
            "{:<24} {:<6} {:<9} {:<32} {}",
            u.name,
            u.role.as_str(),
            if u.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            u.email.as_deref().unwrap_or("-"),
            format_rfc3339(u.created_at)
        );
    }
    Ok(())
}

/// `textgate user disable NAME` (and, with `enable`, `textgate user enable NAME`): a disabled
/// user cannot sign in, and their API keys and e-mail address stop working (on running servers
/// within their revocation check); enabled again, they all work again.
pub async fn user_disable(cfg: Config, name: &str, enable: bool) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let result = async {
        let user = named(&store, name).await?;
        let update = textgate_store::UserUpdate {
            disabled: Some(!enable),
            ..Default::default()
        };
        Ok::<_, anyhow::Error>(users::update(&store, &Actor::cli(), user.id, update).await?)
    }
    .await;
    store.close().await;
    result?;
    println!(
        "user \"{name}\" is {}",
        if enable {
            "enabled"
        } else {
            "disabled; their web sessions are signed out"
        }
    );
    Ok(())
}

/// `textgate apikey create --user NAME [--webhook-secret]`: prints the key once, on its own
/// line, and the webhook secret (if asked for) on the next.
pub async fn apikey_create(cfg: Config, user: &str, webhook_secret: bool) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let Some(u) = store.user_by_name(user).await? else {
        bail!("no user named \"{user}\": create one with `textgate user add {user}`");
    };
    let k = new_api_key(webhook_secret)?;
    let id = store
        .create_api_key(u.id, k.hash, k.label.clone(), k.webhook_secret.clone())
        .await?;
    let detail = Some(format!("for {}, label {}", u.name, k.label));
    audit::record(&store, &Actor::cli(), "apikey.created", id, detail).await;
    store.close().await;
    println!("{}", k.key);
    if let Some(s) = k.webhook_secret {
        println!("{s}");
    }
    Ok(())
}

/// `textgate apikey list [--user NAME]`: one line per key, newest first.
pub async fn apikey_list(cfg: Config, user: Option<&str>) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let user_id = match user {
        None => None,
        Some(name) => match store.user_by_name(name).await? {
            Some(u) => Some(u.id),
            None => bail!("no user named \"{name}\""),
        },
    };
    let keys = store.list_api_keys(user_id).await?;
    store.close().await;
    let t = |v: Option<i64>| v.map(format_rfc3339).unwrap_or_else(|| "-".into());
    println!(
        "{:>6}  {:<16} {:<10} {:<20} {:<20} {:<20}",
        "id", "user", "label", "created", "last used", "revoked"
    );
    for k in keys {
        println!(
            "{:>6}  {:<16} {:<10} {:<20} {:<20} {:<20}",
            k.id,
            k.user,
            k.label,
            format_rfc3339(k.created_at),
            t(k.last_used_at),
            t(k.revoked_at)
        );
    }
    Ok(())
}

/// `textgate apikey revoke ID`.
pub async fn apikey_revoke(cfg: Config, id: i64) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let k = store.revoke_api_key(id, None, now_ms()).await?;
    if let Some(k) = &k {
        let detail = Some(format!("of {}, label {}", k.user, k.label));
        audit::record(&store, &Actor::cli(), "apikey.revoked", id, detail).await;
    }
    store.close().await;
    match k {
        Some(k) => {
            println!(
                "revoked key {} ({}) of \"{}\"; running servers refuse it within seconds",
                k.id, k.label, k.user
            );
            Ok(())
        }
        None => bail!("no API key with id {id}: `textgate apikey list` shows them"),
    }
}

/// On a database without users, creates `admin` with `TEXTGATE_ADMIN_PASSWORD` or a
/// generated password that is printed once.
pub async fn bootstrap_admin(store: &Store) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match std::env::var("TEXTGATE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (generate_password()?, true),
    };
    store
        .create_user(NewUser {
            name: "admin".into(),
            role: Role::Admin,
            email: None,
            password_hash: Some(hash_password(&password)?),
            created_at: now_ms(),
        })
        .await?;
    let first = Actor {
        name: "textgate".into(),
        via: "cli",
        address: None,
    };
    audit::record(
        store,
        &first,
        "user.created",
        "admin",
        Some("role admin, the first administrator".into()),
    )
    .await;
    if generated {
        println!("created user \"admin\" with password (shown once): {password}");
    } else {
        println!("created user \"admin\" with the password from TEXTGATE_ADMIN_PASSWORD");
    }
    Ok(())
}
