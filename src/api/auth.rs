//! Bearer tokens. Tokens are random, shown once, and stored only as BLAKE3
//! hashes (a fast hash suffices: the tokens carry 192 bits of entropy, so
//! there is nothing to brute-force). `SIMMASK_ADMIN_TOKEN`, when set, is an
//! admin token for bootstrap and automation, compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use std::net::{IpAddr, Ipv4Addr};

use super::ApiState;
use super::error::ApiError;
use super::guard::ClientAddress;
pub use crate::store::Role;

/// The prefix that makes simmask tokens recognisable (in secret scanners too).
const TOKEN_PREFIX: &str = "smk_";

/// A new random token.
pub fn generate_token() -> String {
    let bytes: [u8; 24] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`bootstrap` for `SIMMASK_ADMIN_TOKEN`), for the audit trail.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses (403) a caller below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            let article = |role: Role| if role == Role::Admin { "an" } else { "a" };
            Err(ApiError::forbidden(format!(
                "this needs {} {} token; token {:?} is {} {}",
                article(role),
                role.as_str(),
                self.name,
                article(self.role),
                self.role.as_str()
            )))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// Whoever holds `token` now, whatever the role: `None` for an unknown,
/// revoked or expired token.
pub async fn authenticate(state: &ApiState, token: &str) -> Result<Option<Caller>, ApiError> {
    if let Some(bootstrap) = &state.admin_token
        && bool::from(bootstrap.as_bytes().ct_eq(token.as_bytes()))
    {
        return Ok(Some(Caller {
            name: "bootstrap".into(),
            role: Role::Admin,
        }));
    }
    Ok(state
        .store
        .token_by_hash(hash_token(token), crate::clock::now())
        .await?
        .map(|(name, role)| Caller { name, role }))
}

/// Whether `token` still works: the bootstrap token always does (it lives
/// in the environment), a stored one until revoked or expired.
pub async fn still_valid(state: &ApiState, token: &str) -> bool {
    if let Some(bootstrap) = &state.admin_token
        && bool::from(bootstrap.as_bytes().ct_eq(token.as_bytes()))
    {
        return true;
    }
    // A store that cannot answer keeps the stream: the next check decides.
    state
        .store
        .token_is_live(&hash_token(token), crate::clock::now())
        .await
        .unwrap_or(true)
}

/// A caller holding any valid token, a `metrics` one included: the
/// extractor of `/metrics` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scraper(pub Caller);

impl FromRequestParts<ApiState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // A client over its failed-authentication limit is refused before
        // its token is looked at: a right guess would not tell it so.
        let client = parts
            .extensions
            .get::<ClientAddress>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |client| client.0);
        state.failed_auth.check(client)?;
        let token = bearer(&parts.headers)?;
        match authenticate(state, token).await? {
            Some(caller) => Ok(Scraper(caller)),
            None => {
                state.failed_auth.failed(client)?;
                Err(ApiError::unauthorized("unknown, revoked or expired token"))
            }
        }
    }
}

/// A viewer or an admin: a `metrics` token is refused (403) everywhere but
/// `/metrics`.
impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let Scraper(caller) = Scraper::from_request_parts(parts, state).await?;
        caller.require(Role::Viewer)?;
        Ok(caller)
    }
}

/// A caller with an admin token: as an extractor it refuses others (403)
/// before the body is read, so a viewer learns its role is the problem
/// whatever it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin(pub Caller);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Admin)?;
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with("smk_") && a.len() == 4 + 48);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[4..]));
    }

    #[test]
    fn roles_are_ordered() {
        let viewer = Caller {
            name: "v".into(),
            role: Role::Viewer,
        };
        assert!(viewer.require(Role::Viewer).is_ok());
        let refusal = viewer.require(Role::Admin).unwrap_err();
        assert_eq!(refusal.status, axum::http::StatusCode::FORBIDDEN);
        let admin = Caller {
            name: "a".into(),
            role: Role::Admin,
        };
        assert!(admin.require(Role::Admin).is_ok());
        let scraper = Caller {
            name: "prometheus".into(),
            role: Role::Metrics,
        };
        assert!(scraper.require(Role::Metrics).is_ok());
        assert!(scraper.require(Role::Viewer).is_err());
    }
}
