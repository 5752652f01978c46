//! Who is calling. API keys are looked up by their SHA-256 (the store never sees the key);
//! a verified key is cached for a minute so that the hot path (thousands of sends a second)
//! costs a hash and a map lookup, not a database read. A revoked key is forgotten at once by
//! the node that revoked it, and by every other node (and after `textgate apikey revoke`)
//! within [`REVOCATION_POLL`]: [`watch_revocations`] asks the store for keys revoked since it
//! last looked.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use textgate_core::auth::hash_api_key;
use textgate_core::cache::Recent;
use textgate_store::{Id, Role, User};

use crate::error::ApiError;
use crate::AppState;

/// Verified keys by hash, for a minute.
pub type KeyCache = Recent<Caller>;

/// How often a node looks for keys revoked elsewhere: the longest a revoked key may still
/// be taken by a node that had it cached.
pub const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Forgets revoked keys as they are revoked, until `stop` is cancelled; `also` is told of
/// each round of revocations and of users disabled (the SMTP gateway forgets its verified
/// credentials and senders).
pub async fn watch_revocations(
    store: textgate_store::Store,
    keys: std::sync::Arc<KeyCache>,
    also: impl Fn() + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut since = textgate_core::clock::now_ms();
    let mut users_since = since;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REVOCATION_POLL) => {}
        }
        match store.revoked_api_keys_since(since).await {
            Ok(revoked) if !revoked.is_empty() => {
                let ids: std::collections::HashSet<Id> =
                    revoked.iter().map(|(id, _)| *id).collect();
                since = revoked.iter().map(|(_, at)| *at).max().unwrap_or(since);
                keys.retain(|c| c.key_id.is_none_or(|k| !ids.contains(&k)));
                also();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for revoked API keys; trying again"),
        }
        // A disabled user's keys are among the revoked ones above; a user who signs in to
        // SMTP with a password has no key, so their disabling is looked for by itself.
        match store.users_disabled_since(users_since).await {
            Ok(Some(at)) => {
                users_since = at;
                also();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for disabled users; trying again"),
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub id: Id,
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The API key the request came with.
    pub key_id: Option<Id>,
    /// The senders they may send as (empty: any), the first their default.
    pub senders: Vec<String>,
    /// Where the request came from.
    pub address: Option<std::net::IpAddr>,
    /// Their own limits on the texts they send.
    pub quota: textgate_store::Quota,
}

impl Caller {
    /// The caller as the audit log names them.
    pub fn actor(&self) -> textgate_engine::audit::Actor {
        textgate_engine::audit::Actor {
            name: self.name.clone(),
            via: "api",
            address: self.address,
        }
    }

    /// Admins see everything.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The owner filter for this caller: `None` for admins.
    pub fn owner_filter(&self) -> Option<Id> {
        (!self.is_admin()).then_some(self.id)
    }

    /// Whether the caller may see an object owned by `owner`.
    pub fn may_see(&self, owner: Id) -> bool {
        self.is_admin() || owner == self.id
    }
}

impl From<User> for Caller {
    fn from(u: User) -> Caller {
        Caller {
            id: u.id,
            name: u.name,
            role: u.role,
            key_id: None,
            senders: u.senders,
            address: None,
            quota: u.quota,
        }
    }
}

/// The address a request came from (the peer of its connection).
pub fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("no API key: send the header `Authorization: Bearer YOUR_KEY` (create a key with `textgate apikey create --user NAME`)"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer YOUR_KEY`")
            })?;
        let hash = hash_api_key(key);
        let address = peer(parts);
        if let Some(c) = state.keys.get(&hash) {
            return Ok(Caller { address, ..c });
        }
        match state.store.api_key_by_hash(&hash).await? {
            Some(key) => {
                let caller = Caller {
                    key_id: Some(key.id),
                    ..Caller::from(key.user)
                };
                state.keys.put(hash, caller.clone());
                let caller = Caller { address, ..caller };
                // When it was last used: written when a node verifies it, at most once a
                // minute (the cache's life), never on the request's own time.
                let (store, id) = (state.store.clone(), key.id);
                tokio::spawn(async move {
                    let _ = store
                        .touch_api_key(id, textgate_core::clock::now_ms())
                        .await;
                });
                Ok(caller)
            }
            None => {
                tracing::info!("a request with an unknown API key was refused");
                Err(ApiError::unauthorized("the API key is not valid (it may have been revoked): check it, or create a new one with `textgate apikey create --user NAME`"))
            }
        }
    }
}
