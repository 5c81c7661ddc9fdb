//! Outbound raft RPCs over HTTP(S), each signed with the envelope of [`crate::envelope`].
//!
//! Owns the wire contract between nodes (the inbound side is mounted by the api crate through
//! [`crate::RaftNode::handle_append`] and friends). Bodies are binary ([`crate::wire`]: a
//! version byte, then postcard), both ways:
//!
//! | RPC                          | request                 | 200 response body                               |
//! |------------------------------|-------------------------|-------------------------------------------------|
//! | `POST {addr}/raft/append`    | [`AppendEntriesRequest`] | `Result<AppendEntriesResponse, RaftError>`     |
//! | `POST {addr}/raft/vote`      | [`VoteRequest`]          | `Result<VoteResponse, RaftError>`              |
//! | `POST {addr}/raft/snapshot`  | [`SnapshotRequest`] (a manifest) | `Result<SnapshotResponse, Fatal>`, once installed |
//! | `POST {addr}/raft/journal`   | [`PageRequest`]          | [`Page`] of stored journal records             |
//!
//! Every request carries the signed envelope ([`crate::envelope`]: sender, addressee, time,
//! nonce, method, path and body under the cluster secret). A remote raft error travels inside a 200 body and becomes
//! `RPCError::RemoteError`; a failed connection is `Unreachable` (openraft backs off); a
//! timeout is `Timeout`; any other failure, including a non-2xx status (a wire version
//! mismatch answers 400 naming both versions), is `NetworkError`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, NetworkError, RemoteError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::{OptionalSend, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope;
use crate::node::MAX_APPEND_BODY_BYTES;
use crate::snapshot::JournalSource;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, Node, NodeId, RemoteRaftError, RpcError, Snapshot, SnapshotResponse,
    TypeConfig, Vote, VoteRequest, VoteResponse,
};
use crate::wire::{self, Page, PageRequest, SnapshotRequest};

/// Paths of the RPCs, relative to a node's address.
pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
pub const JOURNAL_PATH: &str = "/raft/journal";

/// How long a follower may take to install a snapshot (pull and apply what it lacks) before
/// the leader gives up on that attempt and sends it again. Generous: at 100k entries/s this is
/// a journal of tens of millions of entries.
pub const SNAPSHOT_INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Timeout of one journal page request.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// `addr` as a base URL: a bare `host:port` gets `http://`; a trailing `/` is dropped.
pub fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// A peer's base URL: `addr` (with or without a scheme) under `https://` when nodes speak TLS,
/// else `http://`, so a membership recorded before TLS was turned on is dialled the new way.
pub fn peer_url(addr: &str, https: bool) -> String {
    let bare = addr.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    format!("{}://{bare}", if https { "https" } else { "http" })
}

/// Makes one [`Connection`] per peer; connections are lazy (reqwest pools sockets).
#[derive(Clone)]
pub struct Network {
    node_id: NodeId,
    /// Whether peers are dialled over TLS.
    https: bool,
    /// This node's address, named as the journal source in the snapshots it sends.
    addr: String,
    client: reqwest::Client,
    secret: Arc<[u8]>,
}

impl Network {
    /// A network for node `node_id` at `addr`, signing with `secret`, over `client` (see
    /// [`peer_client`]).
    pub fn new(node_id: NodeId, addr: &str, secret: &[u8], client: reqwest::Client, https: bool) -> Network {
        Network { node_id, https, addr: addr.to_string(), client, secret: Arc::from(secret) }
    }

    /// Signs and posts one binary body to `base` + `path`, addressed to `to` (`None`: any node).
    async fn post_raw(
        &self,
        base: &str,
        path: &str,
        to: Option<NodeId>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, Transport> {
        let signed = envelope::sign(&self.secret, self.node_id, to, "POST", path, &body);
        let request = self.client.post(format!("{base}{path}"));
        let sent = signed
            .apply(request)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                Transport::Timeout
            } else if e.is_connect() {
                Transport::Unreachable(e)
            } else {
                Transport::Network(e.to_string())
            }
        };
        let response = sent.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Transport::Network(format!("answered {status}: {text}")));
        }
        response.bytes().await.map_err(classify)
    }
}

/// The HTTP client nodes use to reach each other (raft RPCs and forwarded writes): short
/// connect timeout, idle connections dropped before a peer's listener would close them (its
/// header timeout, at least 1 s, also ends idle keep-alive), so an RPC never races that close.
pub fn peer_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, reqwest::Error> {
    builder.connect_timeout(Duration::from_millis(500)).pool_idle_timeout(Duration::from_millis(900)).build()
}

/// How one RPC attempt failed on the way (before any answer was decoded).
enum Transport {
    Timeout,
    Unreachable(reqwest::Error),
    Network(String),
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection { net: self.clone(), target, base: peer_url(&node.addr, self.https) }
    }
}

impl JournalSource for Network {
    fn page<'a>(
        &'a self,
        addr: &'a str,
        req: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page, String>> + Send + 'a>> {
        Box::pin(async move {
            let body = wire::encode(&req).map_err(|e| e.to_string())?;
            match self.post_raw(&peer_url(addr, self.https), JOURNAL_PATH, None, body, PAGE_TIMEOUT).await {
                Ok(bytes) => wire::decode::<Page>(&bytes).map_err(|e| e.to_string()),
                Err(Transport::Timeout) => Err("timed out".into()),
                Err(Transport::Unreachable(e)) => Err(format!("unreachable: {e}")),
                Err(Transport::Network(e)) => Err(e),
            }
        })
    }
}

/// RPCs to one peer.
pub struct Connection {
    net: Network,
    target: NodeId,
    base: String,
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
        let body = wire::encode(req).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        self.post_body(action, path, body, timeout).await
    }

    /// Posts an already encoded request body.
    async fn post_body<Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let bytes = self
            .net
            .post_raw(&self.base, path, Some(self.target), body, timeout)
            .await
            .map_err(|t| self.rpc_error(action, timeout, path, t))?;
        let result: Result<Resp, RemoteRaftError<E>> =
            wire::decode(&bytes).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        timeout: Duration,
        path: &str,
        t: Transport,
    ) -> RpcError<E> {
        match t {
            Transport::Timeout => {
                RpcError::Timeout(Timeout { action, id: self.net.node_id, target: self.target, timeout })
            }
            Transport::Unreachable(e) => RpcError::Unreachable(Unreachable::new(&e)),
            Transport::Network(e) => {
                RpcError::Network(NetworkError::new(&std::io::Error::other(format!("{path} {e}"))))
            }
        }
    }
}

/// How many leading entries of `rpc` fit in [`MAX_APPEND_BODY_BYTES`] (at least one: a single
/// entry is one batch, far below the bound). `encoded` is the whole request's size, so what is
/// not entries (vote, log ids) is counted too.
fn append_prefix(rpc: &AppendEntriesRequest, encoded: usize) -> Result<usize, wire::WireError> {
    let mut sizes = Vec::with_capacity(rpc.entries.len());
    for entry in &rpc.entries {
        sizes.push(wire::encode(entry)?.len() - 1);
    }
    let mut total = encoded.saturating_sub(sizes.iter().sum()) as u64;
    let mut keep = 0;
    for size in sizes {
        total += size as u64;
        if total > MAX_APPEND_BODY_BYTES {
            break;
        }
        keep += 1;
    }
    Ok(keep.max(1))
}

impl RaftNetwork<TypeConfig> for Connection {
    #[tracing::instrument(level = "debug", skip_all, err(Debug), fields(target = self.target, entries = rpc.entries.len()))]
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let net = |e: wire::WireError| RpcError::Network(NetworkError::new(&e));
        let mut body = wire::encode(&rpc).map_err(net)?;
        let mut truncated = false;
        if body.len() as u64 > MAX_APPEND_BODY_BYTES && rpc.entries.len() > 1 {
            // The follower would refuse it (413): send the prefix that fits, rarely needed.
            let keep = append_prefix(&rpc, body.len()).map_err(net)?;
            rpc.entries.truncate(keep);
            body = wire::encode(&rpc).map_err(net)?;
            truncated = true;
        }
        let last = rpc.entries.last().map(|e| e.log_id);
        let resp: AppendEntriesResponse =
            self.post_body(RPCTypes::AppendEntries, APPEND_PATH, body, option.hard_ttl()).await?;
        Ok(match resp {
            // Only the prefix was sent, so only it is matched; openraft sends the rest next.
            AppendEntriesResponse::Success if truncated => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(Debug), fields(target = self.target, term = rpc.vote.leader_id.term))]
    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.post(RPCTypes::Vote, VOTE_PATH, &rpc, option.hard_ttl()).await
    }

    /// Sends the manifest; the follower pulls what it lacks from us (or another node) and
    /// answers once it has installed it.
    #[tracing::instrument(level = "info", skip_all, err(Display), fields(target = self.target, head = snapshot.snapshot.head_cursor))]
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut manifest = *snapshot.snapshot;
        manifest.source = Some(self.net.addr.clone());
        let req = SnapshotRequest { vote, meta: snapshot.meta, manifest };
        let body = wire::encode(&req).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let timeout = SNAPSHOT_INSTALL_TIMEOUT;
        let sent = self.net.post_raw(&self.base, SNAPSHOT_PATH, Some(self.target), body, timeout);
        let bytes = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            sent = sent => sent,
        };
        let bytes = bytes.map_err(|t| match t {
            Transport::Timeout => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.net.node_id,
                target: self.target,
                timeout,
            }),
            Transport::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
            Transport::Network(e) => {
                StreamingError::Network(NetworkError::new(&std::io::Error::other(format!("{SNAPSHOT_PATH} {e}"))))
            }
        })?;
        let result: Result<SnapshotResponse, Fatal<NodeId>> =
            wire::decode(&bytes).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An append larger than a follower reads is cut to the prefix that fits, never to nothing.
    #[test]
    fn an_oversized_append_is_cut_to_the_prefix_that_fits() {
        use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
        use parley_storage::{Command, CommandKind};
        const ENTRY: usize = 8 << 20;
        let entry = |index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(parley_storage::CommandBatch {
                commands: vec![Command {
                    ts: 1,
                    kind: CommandKind::Register {
                        user_id: "alice".into(),
                        display_name: "x".repeat(ENTRY),
                        password_hash: String::new(),
                    },
                }],
                request_ids: Vec::new(),
            }),
        };
        let mut rpc = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: (1..=10).map(entry).collect(),
        };
        let encoded = wire::encode(&rpc).unwrap().len();
        assert!(encoded as u64 > MAX_APPEND_BODY_BYTES);
        let keep = append_prefix(&rpc, encoded).unwrap();
        assert_eq!(keep as u64, MAX_APPEND_BODY_BYTES / ENTRY as u64 - 1, "8 MiB entries under a 64 MiB cap");
        rpc.entries.truncate(keep);
        assert!(wire::encode(&rpc).unwrap().len() as u64 <= MAX_APPEND_BODY_BYTES);
        // A single entry is always sent, whatever its size.
        rpc.entries.truncate(1);
        let one = wire::encode(&rpc).unwrap().len();
        assert_eq!(append_prefix(&rpc, one).unwrap(), 1);
    }

    #[test]
    fn peer_url_follows_the_tls_setting() {
        assert_eq!(peer_url("127.0.0.1:1", false), "http://127.0.0.1:1");
        assert_eq!(peer_url("127.0.0.1:1", true), "https://127.0.0.1:1");
        assert_eq!(peer_url("http://127.0.0.1:1/", true), "https://127.0.0.1:1");
    }

    #[test]
    fn base_url_adds_scheme_once() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
    }
}
