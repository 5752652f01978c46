//! `textgate user add` and `textgate apikey create`: they work on the database directly, so
//! they run before `serve` ever has (they create and migrate the database themselves).

use std::io::BufRead;

use anyhow::{bail, Context};
use textgate_core::auth::{generate_api_key, generate_password, hash_api_key, hash_password};
use textgate_core::clock::now_ms;
use textgate_core::config::Config;
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
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        bail!(
            "\"{name}\" is not a usable user name: use 1-64 letters, digits, '.', '_', '-' or '@'"
        );
    }
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.len() < 8 {
            bail!("the password must be at least 8 characters");
        }
        (pw, false)
    } else {
        (generate_password()?, true)
    };
    let store = Store::open(&cfg.server.database_url).await?;
    let user = store
        .create_user(NewUser {
            name: name.to_string(),
            role,
            email,
            password_hash: Some(hash_password(&password)?),
            created_at: now_ms(),
        })
        .await?;
    store.close().await;
    println!(
        "created {} \"{}\" (id {})",
        user.role.as_str(),
        user.name,
        user.id
    );
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

/// `textgate apikey create --user NAME [--webhook-secret]`: prints the key once, on its own
/// line, and the webhook secret (if asked for) on the next.
pub async fn apikey_create(cfg: Config, user: &str, webhook_secret: bool) -> anyhow::Result<()> {
    let store = Store::open(&cfg.server.database_url).await?;
    let Some(u) = store.user_by_name(user).await? else {
        bail!("no user named \"{user}\": create one with `textgate user add {user}`");
    };
    let key = generate_api_key()?;
    let label = format!("{}…", &key[..7.min(key.len())]);
    // The secret signs requests we send, so it is kept as it is (it cannot be hashed); it
    // is a different value from the key, which is stored only hashed.
    let secret = if webhook_secret {
        Some(format!("whsec_{}", &generate_api_key()?[3..]))
    } else {
        None
    };
    store
        .create_api_key(u.id, hash_api_key(&key), label, secret.clone())
        .await?;
    store.close().await;
    println!("{key}");
    if let Some(s) = secret {
        println!("{s}");
    }
    Ok(())
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
    if generated {
        println!("created user \"admin\" with password (shown once): {password}");
    } else {
        println!("created user \"admin\" with the password from TEXTGATE_ADMIN_PASSWORD");
    }
    Ok(())
}
