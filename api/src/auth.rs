//! Authentication: argon2id password hashing (off the async threads), HS256 JWTs bound to a
//! replicated session, and the admin token.
//!
//! A token is accepted only if its signature and `exp` check out *and* its session id is still
//! in this node's sessions projection: revoking a session refuses its tokens at once on every
//! node that has applied the revocation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_storage::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// Longest a token lives.
pub const TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
pub use parley_wire::bodies::{PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES};
/// Callers that may wait for a hashing permit, per permit.
pub const HASH_QUEUE_PER_PERMIT: usize = 4;

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
    /// Calls waiting for a hashing permit, and how many may wait: past that a login answers
    /// 503 at once instead of queueing behind a flood of bogus ones (which made a real login
    /// take seconds and kept every waiting request's memory alive).
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Verified against for unknown users, so a login costs the same either way.
    dummy_hash: String,
}

impl Auth {
    pub fn new(jwt_secret: &[u8], admin_token: Option<String>) -> Result<Auth, ApiError> {
        let permits = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self::with_hashing(jwt_secret, admin_token, permits, HASH_QUEUE_PER_PERMIT * permits)
    }

    /// [`Auth::new`] with `permits` concurrent hashes and at most `max_waiting` callers queued.
    pub fn with_hashing(
        jwt_secret: &[u8],
        admin_token: Option<String>,
        permits: usize,
        max_waiting: usize,
    ) -> Result<Auth, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Pin the algorithm: a token claiming any other `alg` is refused.
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let dummy_hash = hash_now("parley-dummy-password")?;
        Ok(Auth {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            hashing: Arc::new(Semaphore::new(permits.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            dummy_hash,
        })
    }

    /// Hashes a password with argon2id on the blocking pool.
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.hashing_permit().await?;
        tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|_| ApiError::internal("hashing task failed"))?
    }

    /// Checks a password against a stored hash (or the dummy hash) on the blocking pool.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let _permit = self.hashing_permit().await?;
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

    /// A hashing permit: at once if one is free, else after waiting in a bounded queue;
    /// `unavailable` (retry in a second) when the queue is full.
    async fn hashing_permit(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        if let Ok(p) = self.hashing.try_acquire() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::unavailable("too many logins in progress; retry shortly").retry_after(1));
        }
        // Leaves the queue however the wait ends, the request being dropped included.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting);
        self.hashing.acquire().await.map_err(|_| ApiError::unavailable("shutting down"))
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_hashing_queue_answers_unavailable_at_once() {
        // One hash at a time, two may wait: of 12 logins at once, at most 3 are hashed and
        // the rest are told to come back, with Retry-After, instead of queueing.
        let auth = Arc::new(Auth::with_hashing(b"k", None, 1, 2).unwrap());
        let tries: Vec<_> = (0..12)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.verify_password("password".into(), None).await })
            })
            .collect();
        let mut refused = 0;
        for t in tries {
            match t.await.unwrap() {
                Ok(known) => assert!(!known),
                Err(e) => {
                    assert_eq!((e.status.as_u16(), e.code, e.retry_after), (503, "unavailable", Some(1)));
                    refused += 1;
                }
            }
        }
        assert!(refused >= 12 - 3, "only {refused} of 12 refused with 1 permit and 2 waiting");
        // Once the queue drains, logins go through again.
        assert!(auth.verify_password("password".into(), None).await.is_ok());
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
