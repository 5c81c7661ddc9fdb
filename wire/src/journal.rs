//! Journal entries as the admin journal and an export show them, and the admin reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::update::UpdateKind;

/// `{cursor, ts, prev_hash, hash, event}`: `event` is `{type, ...payload}` exactly as journaled
/// (a message's body before any revoke), with the journal-only fields; the hashes are hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalEntry {
    pub cursor: u64,
    pub ts: u64,
    /// 64 hex digits: the previous entry's `hash` (zeros before the first).
    pub prev_hash: String,
    /// 64 hex digits: SHA-256(prev_hash || cursor || ts || event bytes).
    pub hash: String,
    pub event: UpdateKind,
}

/// `GET /v1/admin/journal`: entries with cursors `>= from`, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JournalPage {
    pub entries: Vec<JournalEntry>,
}

/// `GET /v1/admin/journal/verify`: the chain checked from genesis. When it holds, `ok` with
/// the last cursor, head hash and the projection digest; else `ok: false`, why and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cursor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
    /// The projection digest (hex) as it is now, which may be a little ahead of `last_cursor`
    /// under concurrent writes; `digest_cursor` says where. Null if it could not be computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_cursor: Option<u64>,
    /// When the chain does not hold: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the chain does not hold: the first bad cursor, if one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_cursor: Option<Option<u64>>,
}

/// `GET /v1/admin/digest`: the projection digest (hex) at `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DigestReport {
    pub cursor: u64,
    pub digest: String,
}
