//! The signed envelope around every node-to-node request, and the replay guard that checks it.
//!
//! Owns what the cluster secret vouches for. A request between nodes carries five headers:
//!
//! | header              | value                                                         |
//! |---------------------|---------------------------------------------------------------|
//! | `Parley-Raft-Node`  | the sender's node id (decimal)                                |
//! | `Parley-Raft-To`    | the node id it is addressed to, or `*` (journal pages only)   |
//! | `Parley-Raft-Ts`    | the sender's clock, milliseconds since the Unix epoch         |
//! | `Parley-Raft-Nonce` | 128 random bits, 32 hex digits, new for every request         |
//! | `Parley-Raft-Auth`  | hex HMAC-SHA256 under the cluster secret of the string below  |
//!
//! ```text
//! parley-raft/2 \n from \n to \n ts \n nonce \n METHOD \n path \n hex(sha256(body))
//! ```
//!
//! A receiver ([`ReplayGuard`]) refuses a request whose headers are missing or malformed,
//! that is addressed to another node, whose timestamp is more than [`WINDOW_MS`] from its own
//! clock either way, whose MAC does not verify, or whose `(ts, from, nonce)` it has already
//! accepted. Because an accepted request is remembered until its timestamp leaves the window,
//! and a request outside the window is refused anyway, a captured request can be sent again
//! to no effect: to the node it was for (seen nonce), to another (addressed elsewhere), or
//! later (stale). Clock skew below the window is harmless: it only shortens how long a request
//! may take to arrive.
//!
//! The sender id is authenticated (it is under the MAC) and logged, but not checked against
//! the membership: a node being added pulls journal pages before every member has applied its
//! membership entry, and a holder of the secret could claim any id anyway. Whoever holds the
//! secret is a full member; the envelope stops outsiders who only see the traffic.
//!
//! Invariant: the seen set is bounded by [`MAX_SEEN`] and by the window; past the cap the
//! oldest entries are dropped and the window's floor rises to their timestamp, so a request
//! older than anything forgotten is refused as stale: a bound never reopens a replay.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::types::NodeId;

/// The MAC header (its absence is refused before any body is read).
pub const AUTH_HEADER: &str = "Parley-Raft-Auth";
pub const NODE_HEADER: &str = "Parley-Raft-Node";
pub const TO_HEADER: &str = "Parley-Raft-To";
pub const TS_HEADER: &str = "Parley-Raft-Ts";
pub const NONCE_HEADER: &str = "Parley-Raft-Nonce";

/// How far a request's timestamp may be from the receiver's clock, either way.
pub const WINDOW_MS: u64 = 60_000;
/// Most accepted requests remembered. Entries live until their timestamp is [`WINDOW_MS`]
/// old, so the set holds about a minute of requests: at the highest rate measured (~2,000
/// forwarded writes/s on the leader, plus replication) about half the cap; the cap is reached
/// past ~4,400 requests/s sustained. 262,144 entries of 32 bytes, plus the B-tree's overhead,
/// is about 16 MiB at worst. Past it, the window shrinks instead of forgetting.
pub const MAX_SEEN: usize = 1 << 18;
/// Prefix of the signed string: names the envelope's version.
const DOMAIN: &str = "parley-raft/2";
/// `To` value for a request any node may serve (a journal page: a read of replicated data).
pub const ANY_NODE: &str = "*";

type HmacSha256 = Hmac<Sha256>;

/// Why a signed request was refused. Every variant is answered 401 with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("raft requests need the cluster secret, and this node has none")]
    NoSecret,
    #[error("raft request without the {0} header")]
    Missing(&'static str),
    #[error("raft request with a malformed {0} header")]
    Malformed(&'static str),
    #[error("raft request addressed to node {to}, this is node {me}")]
    Misaddressed { to: String, me: NodeId },
    #[error("raft request timestamp is {skew_ms} ms from this node's clock (at most {WINDOW_MS} ms): stale, replayed, or a clock to fix")]
    Stale { skew_ms: i64 },
    #[error("raft request signature does not verify under this cluster's secret (other secret, or method, path, headers or body changed)")]
    BadSignature,
    #[error("raft request already seen (a replay)")]
    Replayed,
}

/// The envelope fields of one request (everything but the MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub from: NodeId,
    /// The addressee's node id, or `None` for [`ANY_NODE`].
    pub to: Option<NodeId>,
    pub ts: u64,
    pub nonce: u128,
}

/// The envelope headers to put on an outbound request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub claims: Claims,
    pub mac: String,
}

impl Signed {
    /// `(header, value)` pairs, MAC included.
    pub fn headers(&self) -> [(&'static str, String); 5] {
        let c = &self.claims;
        [
            (NODE_HEADER, c.from.to_string()),
            (TO_HEADER, c.to.map_or_else(|| ANY_NODE.to_string(), |t| t.to_string())),
            (TS_HEADER, c.ts.to_string()),
            (NONCE_HEADER, format!("{:032x}", c.nonce)),
            (AUTH_HEADER, self.mac.clone()),
        ]
    }

    /// `request` with the envelope headers added.
    pub fn apply(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in self.headers() {
            request = request.header(name, value);
        }
        request
    }
}

/// Milliseconds since the Unix epoch on this node's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The string the MAC covers.
fn canonical(c: &Claims, method: &str, path: &str, body: &[u8]) -> String {
    let to = c.to.map_or_else(|| ANY_NODE.to_string(), |t| t.to_string());
    let digest = hex::encode(Sha256::digest(body));
    format!("{DOMAIN}\n{}\n{to}\n{}\n{:032x}\n{}\n{path}\n{digest}", c.from, c.ts, c.nonce, method.to_ascii_uppercase())
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length (long keys are hashed, short ones padded); the
    // error exists only for MACs with fixed key sizes, so this cannot fail.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Signs a request from `from` to `to` (`None`: any node) made now, with a fresh nonce.
pub fn sign(secret: &[u8], from: NodeId, to: Option<NodeId>, method: &str, path: &str, body: &[u8]) -> Signed {
    let claims = Claims { from, to, ts: now_ms(), nonce: rand::random() };
    sign_claims(secret, claims, method, path, body)
}

/// Signs exactly these claims (tests make stale or repeated ones with it).
pub fn sign_claims(secret: &[u8], claims: Claims, method: &str, path: &str, body: &[u8]) -> Signed {
    let mut m = mac(secret);
    m.update(canonical(&claims, method, path, body).as_bytes());
    Signed { claims, mac: hex::encode(m.finalize().into_bytes()) }
}

/// Whether `header` is the MAC of these claims and request under `secret` (constant time).
pub fn verify(secret: &[u8], claims: &Claims, method: &str, path: &str, body: &[u8], header: &str) -> bool {
    let Ok(claimed) = hex::decode(header.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(canonical(claims, method, path, body).as_bytes());
    m.verify_slice(&claimed).is_ok()
}

impl Claims {
    /// Parses the envelope headers through `get` (a case-insensitive header lookup).
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<(Claims, &'a str), AuthError> {
        let field = |name: &'static str| get(name).map(str::trim).ok_or(AuthError::Missing(name));
        let mac = field(AUTH_HEADER)?;
        let from = field(NODE_HEADER)?.parse().map_err(|_| AuthError::Malformed(NODE_HEADER))?;
        let to = match field(TO_HEADER)? {
            ANY_NODE => None,
            t => Some(t.parse().map_err(|_| AuthError::Malformed(TO_HEADER))?),
        };
        let ts = field(TS_HEADER)?.parse().map_err(|_| AuthError::Malformed(TS_HEADER))?;
        let nonce = field(NONCE_HEADER)?;
        if nonce.len() != 32 {
            return Err(AuthError::Malformed(NONCE_HEADER));
        }
        let nonce = u128::from_str_radix(nonce, 16).map_err(|_| AuthError::Malformed(NONCE_HEADER))?;
        Ok((Claims { from, to, ts, nonce }, mac))
    }
}

/// Accepted requests still inside the window, ordered by timestamp so expiry is cheap.
#[derive(Debug, Default)]
struct Seen {
    entries: BTreeSet<(u64, NodeId, u128)>,
    /// Requests at or before this timestamp are refused: entries up to it were dropped by the
    /// cap before their time.
    floor: u64,
}

/// A node's check of inbound envelopes: address, freshness, MAC, and the seen set. (No
/// `Debug`: it holds the secret.)
pub struct ReplayGuard {
    me: NodeId,
    secret: Vec<u8>,
    seen: Mutex<Seen>,
    cap: usize,
}

impl ReplayGuard {
    pub fn new(me: NodeId, secret: &[u8]) -> ReplayGuard {
        ReplayGuard::with_cap(me, secret, MAX_SEEN)
    }

    /// A guard remembering at most `cap` requests (tests use a small one).
    pub fn with_cap(me: NodeId, secret: &[u8], cap: usize) -> ReplayGuard {
        ReplayGuard { me, secret: secret.to_vec(), seen: Mutex::new(Seen::default()), cap: cap.max(1) }
    }

    /// What can be checked before the body is read: a secret here, the address and the clock.
    pub fn precheck(&self, claims: &Claims, path: &str, now: u64) -> Result<(), AuthError> {
        if self.secret.is_empty() {
            return Err(AuthError::NoSecret);
        }
        match claims.to {
            Some(to) if to == self.me => {}
            // Only a journal page (a read any member can serve) may be addressed to any node.
            None if path == crate::network::JOURNAL_PATH => {}
            to => {
                return Err(AuthError::Misaddressed {
                    to: to.map_or_else(|| ANY_NODE.to_string(), |t| t.to_string()),
                    me: self.me,
                })
            }
        }
        let skew_ms = claims.ts as i64 - now as i64;
        if skew_ms.unsigned_abs() > WINDOW_MS {
            return Err(AuthError::Stale { skew_ms });
        }
        Ok(())
    }

    /// The full check once the body is in: [`ReplayGuard::precheck`], the MAC, then the seen
    /// set (only a request with a valid MAC is remembered, so outsiders cannot fill it).
    #[tracing::instrument(level = "debug", skip_all, fields(node_id = self.me, from = claims.from, path), err(Display))]
    pub fn check(
        &self,
        claims: &Claims,
        mac: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), AuthError> {
        self.precheck(claims, path, now)?;
        if !verify(&self.secret, claims, method, path, body, mac) {
            return Err(AuthError::BadSignature);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Forget what has left the window: a replay of it is refused as stale.
        let horizon = now.saturating_sub(WINDOW_MS);
        while seen.entries.first().is_some_and(|(ts, _, _)| *ts < horizon) {
            seen.entries.pop_first();
        }
        if claims.ts <= seen.floor {
            return Err(AuthError::Stale { skew_ms: claims.ts as i64 - now as i64 });
        }
        if !seen.entries.insert((claims.ts, claims.from, claims.nonce)) {
            return Err(AuthError::Replayed);
        }
        while seen.entries.len() > self.cap {
            if let Some((ts, _, _)) = seen.entries.pop_first() {
                seen.floor = seen.floor.max(ts);
            }
        }
        Ok(())
    }

    /// Requests remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"cluster-secret";
    const PATH: &str = "/raft/write";

    fn claims(ts: u64, nonce: u128) -> Claims {
        Claims { from: 2, to: Some(1), ts, nonce }
    }

    #[test]
    fn a_signed_request_passes_once_and_its_replay_is_refused() {
        let g = ReplayGuard::new(1, S);
        let now = now_ms();
        let s = sign_claims(S, claims(now, 7), "POST", PATH, b"body");
        assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"body", now), Ok(()));
        assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"body", now + 5), Err(AuthError::Replayed));
        // The same body under a fresh nonce is a new request.
        let again = sign_claims(S, claims(now, 8), "POST", PATH, b"body");
        assert_eq!(g.check(&again.claims, &again.mac, "POST", PATH, b"body", now), Ok(()));
    }

    #[test]
    fn every_signed_field_is_covered() {
        let g = ReplayGuard::new(1, S);
        let now = now_ms();
        let s = sign_claims(S, claims(now, 1), "POST", PATH, b"body");
        let bad = |c: &Claims, method: &str, path: &str, body: &[u8]| g.check(c, &s.mac, method, path, body, now);
        assert_eq!(bad(&s.claims, "POST", "/raft/vote", b"body"), Err(AuthError::BadSignature), "path");
        assert_eq!(bad(&s.claims, "PUT", PATH, b"body"), Err(AuthError::BadSignature), "method");
        assert_eq!(bad(&s.claims, "POST", PATH, b"bodY"), Err(AuthError::BadSignature), "body");
        assert_eq!(bad(&Claims { from: 3, ..s.claims.clone() }, "POST", PATH, b"body"), Err(AuthError::BadSignature));
        assert_eq!(
            bad(&Claims { ts: now + 1, ..s.claims.clone() }, "POST", PATH, b"body"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(bad(&Claims { nonce: 2, ..s.claims.clone() }, "POST", PATH, b"body"), Err(AuthError::BadSignature));
        let other = sign_claims(b"other", s.claims.clone(), "POST", PATH, b"body");
        assert_eq!(g.check(&s.claims, &other.mac, "POST", PATH, b"body", now), Err(AuthError::BadSignature));
        // None of the refusals was remembered: the genuine request still passes.
        assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"body", now), Ok(()));
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_both_ways() {
        let g = ReplayGuard::new(1, S);
        let now = now_ms();
        for ts in [now - WINDOW_MS - 1, now + WINDOW_MS + 1] {
            let s = sign_claims(S, claims(ts, 1), "POST", PATH, b"");
            assert!(matches!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now), Err(AuthError::Stale { .. })));
        }
        // Skew inside the window is accepted, and the request is remembered until it leaves.
        let s = sign_claims(S, claims(now + WINDOW_MS - 10, 1), "POST", PATH, b"");
        assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now), Ok(()));
        assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now + WINDOW_MS), Err(AuthError::Replayed));
    }

    #[test]
    fn requests_for_another_node_are_refused() {
        let g = ReplayGuard::new(3, S);
        let now = now_ms();
        let s = sign_claims(S, claims(now, 1), "POST", PATH, b"");
        assert!(matches!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now), Err(AuthError::Misaddressed { .. })));
        let any = Claims { to: None, ..claims(now, 2) };
        let s = sign_claims(S, any.clone(), "POST", PATH, b"");
        assert!(matches!(g.check(&any, &s.mac, "POST", PATH, b"", now), Err(AuthError::Misaddressed { .. })));
        let journal = sign_claims(S, any.clone(), "POST", crate::network::JOURNAL_PATH, b"");
        assert_eq!(g.check(&any, &journal.mac, "POST", crate::network::JOURNAL_PATH, b"", now), Ok(()));
    }

    #[test]
    fn the_seen_set_is_bounded_and_its_bound_never_reopens_a_replay() {
        let g = ReplayGuard::with_cap(1, S, 4);
        let now = now_ms();
        let sent: Vec<Signed> =
            (0..10).map(|i| sign_claims(S, claims(now - 1000 + i, i as u128), "POST", PATH, b"")).collect();
        for s in &sent {
            assert_eq!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now), Ok(()));
        }
        assert_eq!(g.remembered(), 4);
        for s in &sent {
            assert!(g.check(&s.claims, &s.mac, "POST", PATH, b"", now).is_err(), "replay of {:?}", s.claims);
        }
        // Entries that left the window are forgotten.
        let late = sign_claims(S, claims(now + 2 * WINDOW_MS, 99), "POST", PATH, b"");
        assert_eq!(g.check(&late.claims, &late.mac, "POST", PATH, b"", now + 2 * WINDOW_MS), Ok(()));
        assert_eq!(g.remembered(), 1);
    }

    #[test]
    fn headers_round_trip() {
        let s = sign(S, 4, Some(9), "POST", PATH, b"x");
        let headers = s.headers();
        let get = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let (claims, mac) = Claims::from_headers(get).unwrap();
        assert_eq!(claims, s.claims);
        assert_eq!(mac, s.mac);
        let none = |_: &str| None;
        assert_eq!(Claims::from_headers(none), Err(AuthError::Missing(AUTH_HEADER)));
    }
}
