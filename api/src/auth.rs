//! Authentication: argon2id password hashing (off the async threads), HS256 JWTs bound to a
//! replicated session, and the admin token.
//!
//! A token is accepted only if its signature and `exp` check out *and* its session id is still
//! in this node's sessions projection: revoking a session refuses its tokens at once on every
//! node that has applied the revocation.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_storage::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Longest a token lives.
pub const TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
pub const PASSWORD_MIN_BYTES: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iat: u64,
    exp: u64,
    /// Journal cursor at which the session was created: a node that has not applied it yet
    /// waits for it instead of refusing a token that was just issued elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cur: Option<u64>,
}

/// A token whose signature checks out.
#[derive(Debug, Clone)]
pub enum Verified {
    /// Its session is live on this node.
    Session(AuthUser),
    /// Its session was created at a cursor this node has not applied yet.
    Pending { cursor: u64 },
}

/// The caller of a user endpoint.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: String,
    pub session_id: String,
}

/// Password hashing and token signing/verification.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    admin_token: Option<String>,
    hashing: Arc<Semaphore>,
    /// Verified against for unknown users, so a login costs the same either way.
    dummy_hash: String,
}

impl Auth {
    pub fn new(jwt_secret: &[u8], admin_token: Option<String>) -> Result<Auth, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Pin the algorithm: a token claiming any other `alg` is refused.
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let permits = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let dummy_hash = hash_now("parley-dummy-password")?;
        Ok(Auth {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            hashing: Arc::new(Semaphore::new(permits)),
            dummy_hash,
        })
    }

    /// Hashes a password with argon2id on the blocking pool.
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ApiError::unavailable("shutting down"))?;
        tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|_| ApiError::internal("hashing task failed"))?
    }

    /// Checks a password against a stored hash (or the dummy hash) on the blocking pool.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let _permit = self.hashing.acquire().await.map_err(|_| ApiError::unavailable("shutting down"))?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|_| ApiError::internal("hashing task failed"))?;
        Ok(ok && known)
    }

    /// Signs a token for a session.
    pub fn issue(&self, user_id: &str, session_id: &str, now_ms: u64, expires_at_ms: u64) -> Result<String, ApiError> {
        self.issue_at_cursor(user_id, session_id, now_ms, expires_at_ms, None)
    }

    /// Signs a token for a session created at journal `cursor`.
    pub fn issue_at_cursor(
        &self,
        user_id: &str,
        session_id: &str,
        now_ms: u64,
        expires_at_ms: u64,
        cursor: Option<u64>,
    ) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            iat: now_ms / 1000,
            exp: expires_at_ms / 1000,
            cur: cursor,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("could not sign token: {e}")))
    }

    /// Verifies a bearer token against its signature, expiry and the live sessions, without
    /// waiting: a session this node has not applied yet is refused.
    pub fn authenticate(&self, store: &Store, token: Option<&str>) -> Result<AuthUser, ApiError> {
        match self.verify(store, token)? {
            Verified::Session(user) => Ok(user),
            Verified::Pending { .. } => Err(ApiError::unauthorized("session revoked")),
        }
    }

    /// Verifies a bearer token; tells apart a revoked session from one not applied here yet.
    pub fn verify(&self, store: &Store, token: Option<&str>) -> Result<Verified, ApiError> {
        let token = token.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
        let claims = data.claims;
        let Some(session) = store.session(&claims.sid)? else {
            return match claims.cur {
                Some(cursor) if cursor > store.applied_cursor() => Ok(Verified::Pending { cursor }),
                _ => Err(ApiError::unauthorized("session revoked")),
            };
        };
        if session.user_id != claims.sub {
            return Err(ApiError::unauthorized("invalid token"));
        }
        Ok(Verified::Session(AuthUser { user_id: claims.sub, session_id: claims.sid }))
    }

    /// Checks the admin token (constant time).
    pub fn authenticate_admin(&self, token: Option<&str>) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        match (&self.admin_token, token) {
            (Some(expected), Some(given)) if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) => Ok(()),
            (None, _) => Err(ApiError::unauthorized("no admin token is configured on this node")),
            _ => Err(ApiError::unauthorized("bad admin token")),
        }
    }
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("could not hash password: {e}")))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn tokens_with_another_algorithm_or_key_are_refused() {
        let auth = Auth::new(b"secret-one", None).unwrap();
        let other = Auth::new(b"secret-two", None).unwrap();
        let now = 1_700_000_000_000;
        let token = other.issue("alice", "s1", now, now + TOKEN_TTL_MS).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&token, &auth.decoding, &auth.validation).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims { sub: "alice".into(), sid: "s1".into(), iat: 0, exp: u64::MAX / 2000, cur: None },
            &EncodingKey::from_secret(b"secret-one"),
        )
        .unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&hs512, &auth.decoding, &auth.validation).is_err());
    }
}
