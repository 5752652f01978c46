//! Who is calling. API keys are looked up by their SHA-256 (the store never sees the key);
//! a verified key is cached for a minute so that the hot path (thousands of sends a second)
//! costs a hash and a map lookup, not a database read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use textgate_core::auth::hash_api_key;
use textgate_core::cache::Recent;
use textgate_store::{Id, Role, User};

use crate::error::ApiError;
use crate::AppState;

/// Verified keys by hash, for a minute.
pub type KeyCache = Recent<Caller>;

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
}

impl Caller {
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
        }
    }
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
        if let Some(c) = state.keys.get(&hash) {
            return Ok(c);
        }
        match state.store.api_key_by_hash(&hash).await? {
            Some(key) => {
                let caller = Caller {
                    key_id: Some(key.id),
                    ..Caller::from(key.user)
                };
                state.keys.put(hash, caller.clone());
                Ok(caller)
            }
            None => {
                tracing::info!("a request with an unknown API key was refused");
                Err(ApiError::unauthorized("the API key is not valid (it may have been revoked): check it, or create a new one with `textgate apikey create --user NAME`"))
            }
        }
    }
}
