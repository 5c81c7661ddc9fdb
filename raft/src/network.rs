//! Outbound raft RPCs over HTTP, and the shared-secret signature on every RPC body.
//!
//! Owns the wire contract between nodes (the inbound side is mounted by the api crate through
//! [`crate::RaftNode::handle_append`] and friends):
//!
//! | RPC            | request                                    | 200 response body                            |
//! |----------------|--------------------------------------------|----------------------------------------------|
//! | `POST {addr}/raft/append`   | JSON [`AppendEntriesRequest`]     | JSON `Result<AppendEntriesResponse, RaftError>` |
//! | `POST {addr}/raft/vote`     | JSON [`VoteRequest`]              | JSON `Result<VoteResponse, RaftError>`          |
//! | `POST {addr}/raft/snapshot` | JSON [`InstallSnapshotRequest`] (one chunk) | JSON `Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>>` |
//!
//! Every request carries [`AUTH_HEADER`]: hex HMAC-SHA256 of the exact body bytes under the
//! cluster secret. A remote raft error travels inside a 200 body and becomes
//! `RPCError::RemoteError`; a failed connection is `Unreachable` (openraft backs off); a
//! timeout is `Timeout`; any other failure, including a non-2xx status, is `NetworkError`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, Node, NodeId,
    RemoteRaftError, RpcError, TypeConfig, VoteRequest, VoteResponse,
};

/// The header carrying the body's signature.
pub const AUTH_HEADER: &str = "Parley-Raft-Auth";
/// Paths of the three RPCs, relative to a node's address.
pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC is defined for keys of any length (long keys are hashed, short ones padded); the
    // error exists only for MACs with fixed key sizes, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `header` is the signature of `body` under `secret` (constant-time comparison).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Ok(claimed) = hex::decode(header.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}

/// `addr` as a base URL: a bare `host:port` gets `http://`; a trailing `/` is dropped.
pub fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Makes one [`Connection`] per peer; connections are lazy (reqwest pools sockets).
#[derive(Clone)]
pub struct Network {
    node_id: NodeId,
    client: reqwest::Client,
    secret: Arc<[u8]>,
}

impl Network {
    /// A network for node `node_id`, signing with `secret`.
    pub fn new(node_id: NodeId, secret: &[u8]) -> Result<Network, reqwest::Error> {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_millis(500)).build()?;
        Ok(Network { node_id, client, secret: Arc::from(secret) })
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            node_id: self.node_id,
            target,
            base: base_url(&node.addr),
            client: self.client.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// RPCs to one peer.
pub struct Connection {
    node_id: NodeId,
    target: NodeId,
    base: String,
    client: reqwest::Client,
    secret: Arc<[u8]>,
}

impl Connection {
    async fn post<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        let signature = sign(&self.secret, &body);
        let sent = self
            .client
            .post(format!("{}{path}", self.base))
            .header(AUTH_HEADER, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| self.transport_error(action, timeout, e))?;

        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let err = std::io::Error::other(format!("{path} answered {status}: {text}"));
            return Err(RpcError::Network(NetworkError::new(&err)));
        }
        let bytes = response.bytes().await.map_err(|e| self.transport_error(action, timeout, e))?;
        let result: Result<Resp, RemoteRaftError<E>> =
            serde_json::from_slice(&bytes).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn transport_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        timeout: Duration,
        e: reqwest::Error,
    ) -> RpcError<E> {
        if e.is_timeout() {
            RpcError::Timeout(Timeout { action, id: self.node_id, target: self.target, timeout })
        } else if e.is_connect() {
            RpcError::Unreachable(Unreachable::new(&e))
        } else {
            RpcError::Network(NetworkError::new(&e))
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    #[tracing::instrument(level = "debug", skip_all, err(Debug), fields(target = self.target, entries = rpc.entries.len()))]
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.post(RPCTypes::AppendEntries, APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(Debug), fields(target = self.target, offset = rpc.offset, done = rpc.done))]
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.post(RPCTypes::InstallSnapshot, SNAPSHOT_PATH, &rpc, option.hard_ttl()).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(Debug), fields(target = self.target, term = rpc.vote.leader_id.term))]
    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.post(RPCTypes::Vote, VOTE_PATH, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_under_the_same_secret_only() {
        let body = br#"{"vote":1}"#;
        let sig = sign(b"cluster-secret", body);
        assert_eq!(sig.len(), 64, "hex of a 32-byte MAC");
        assert!(verify(b"cluster-secret", body, &sig));
        assert!(!verify(b"other-secret", body, &sig), "wrong secret must be refused");
        assert!(!verify(b"cluster-secret", br#"{"vote":2}"#, &sig), "changed body must be refused");
        assert!(!verify(b"cluster-secret", body, "not hex"));
        assert!(!verify(b"cluster-secret", body, ""));
        assert!(!verify(b"cluster-secret", body, &sig[..62]), "truncated MAC must be refused");
    }

    #[test]
    fn signature_matches_rfc4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn base_url_adds_scheme_once() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
    }
}
