//! One way every edge checks a password or an API key given by a person (SMTP AUTH now, the
//! web sign-in next): failures limited per name and per address across connections
//! ([`textgate_core::signin::Limiter`]), at most `[auth] max_concurrent_hashes` argon2 checks
//! at once, and the same work for a name that does not exist as for a wrong password, so the
//! time an answer takes does not tell which names exist.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use textgate_core::auth::{hash_api_key, hash_password, verify_password, API_KEY_PREFIX};
use textgate_core::config::AuthConfig;
use textgate_core::signin::Limiter;
use textgate_store::{Store, User};
use tokio::sync::Semaphore;

/// What a sign-in came to.
#[derive(Debug)]
pub enum Verdict {
    /// The secret is the user's password or one of their API keys.
    Accepted(User),
    /// Wrong name or secret (the two are not told apart).
    Refused,
    /// Too many failures for this name or from this address: try again after this long.
    LockedOut(Duration),
    /// The store failed: try again later.
    Unavailable,
}

/// Checks sign-ins.
pub struct SignIn {
    store: Store,
    limiter: Limiter,
    hashes: Arc<Semaphore>,
    /// Passwords hashed (for `/metrics`, and to show that unknown names cost one too).
    pub hashed: std::sync::atomic::AtomicU64,
    /// Sign-ins refused because of a lock-out.
    pub locked_out: std::sync::atomic::AtomicU64,
}

/// A hash no password matches, checked for names that have no user (or no password), so that
/// they cost what a wrong password costs.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // A random password nobody knows; should hashing fail, a malformed hash still
        // matches nothing (only the timing would differ).
        let pw = textgate_core::auth::random_token(16).unwrap_or_default();
        hash_password(&pw).unwrap_or_default()
    })
}

impl SignIn {
    /// A checker on this store with this policy.
    pub fn new(store: Store, cfg: &AuthConfig) -> SignIn {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let n = if cfg.max_concurrent_hashes == 0 {
            cores
        } else {
            cfg.max_concurrent_hashes
        };
        SignIn {
            store,
            limiter: Limiter::new(cfg.policy()),
            hashes: Arc::new(Semaphore::new(n.max(1))),
            hashed: Default::default(),
            locked_out: Default::default(),
        }
    }

    /// Computes the dummy hash now, so that the first unknown name does not take longer
    /// than a wrong password.
    pub async fn warm_up(&self) {
        let _ = tokio::task::spawn_blocking(dummy_hash).await;
    }

    /// Checks `secret` (a password, or an API key, which names its user by itself) for `name`
    /// from `addr`.
    pub async fn check(&self, addr: IpAddr, name: &str, secret: &str) -> Verdict {
        self.check_secret(addr, name, secret, true).await
    }

    /// Checks a password only (the web sign-in: an API key is for programs, and a browser
    /// session made from one would outlive its revocation).
    pub async fn check_password(&self, addr: IpAddr, name: &str, password: &str) -> Verdict {
        self.check_secret(addr, name, password, false).await
    }

    async fn check_secret(
        &self,
        addr: IpAddr,
        name: &str,
        secret: &str,
        keys_too: bool,
    ) -> Verdict {
        let now = Instant::now();
        if let Err(l) = self.limiter.check(addr, name, now) {
            self.locked_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Verdict::LockedOut(l.retry_after);
        }
        let found = if keys_too && secret.starts_with(API_KEY_PREFIX) {
            // 192 random bits: no hash to slow down, and nothing to guess.
            self.store.user_by_api_key(&hash_api_key(secret)).await
        } else {
            match self.store.user_by_name(name).await {
                Ok(user) => {
                    let hash = user
                        .as_ref()
                        .and_then(|u| u.password_hash.clone())
                        .unwrap_or_else(|| dummy_hash().to_string());
                    let ok = self.verify(secret, hash).await;
                    // A user without a password cannot sign in with one, nor a disabled one.
                    Ok(user.filter(|u| ok && u.password_hash.is_some() && u.disabled_at.is_none()))
                }
                Err(e) => Err(e),
            }
        };
        match found {
            Ok(Some(u)) => {
                self.limiter.succeeded(name);
                Verdict::Accepted(u)
            }
            Ok(None) => {
                self.limiter.failed(addr, name, Instant::now());
                Verdict::Refused
            }
            Err(e) => {
                tracing::error!(error = %e, "sign-in: the store failed");
                Verdict::Unavailable
            }
        }
    }

    /// argon2, off the async workers, at most `max_concurrent_hashes` at once.
    async fn verify(&self, secret: &str, hash: String) -> bool {
        let Ok(_permit) = self.hashes.clone().acquire_owned().await else {
            return false;
        };
        let secret = secret.to_string();
        self.hashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || verify_password(&secret, &hash))
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use textgate_core::clock::now_ms;
    use textgate_store::{NewUser, Role};

    async fn store() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("tg-signin-{}-{}", std::process::id(), now_ms()));
        let s = Store::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        s.create_user(NewUser {
            name: "ann".into(),
            role: Role::User,
            email: None,
            password_hash: Some(hash_password("right password").unwrap()),
            created_at: now_ms(),
        })
        .await
        .unwrap();
        (s, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_passwords_lock_the_name_out_and_unknown_names_cost_a_hash() {
        let (s, dir) = store().await;
        let cfg = AuthConfig {
            max_failures_per_user: 3,
            ..AuthConfig::default()
        };
        let signin = SignIn::new(s.clone(), &cfg);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(
            signin.check(a, "ann", "right password").await,
            Verdict::Accepted(_)
        ));
        for _ in 0..3 {
            assert!(matches!(
                signin.check(a, "ann", "guess").await,
                Verdict::Refused
            ));
        }
        // Locked: even the right password is not tried now.
        assert!(matches!(
            signin.check(a, "ann", "right password").await,
            Verdict::LockedOut(_)
        ));
        // An unknown name is refused after the same work as a wrong password: one argon2.
        let hashed = |s: &SignIn| s.hashed.load(std::sync::atomic::Ordering::Relaxed);
        let before = hashed(&signin);
        assert!(matches!(
            signin.check(a, "nobody", "x").await,
            Verdict::Refused
        ));
        assert_eq!(
            hashed(&signin),
            before + 1,
            "an unknown name costs a hash too"
        );
        assert_eq!(
            signin.locked_out.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        s.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
