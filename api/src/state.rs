//! Shared state of a running node's API, and the write path every mutating endpoint uses:
//! stamp the command, propose it through raft (forwarding to the leader when this node is a
//! follower), then wait until this node has applied it, so the answer's cursor is readable
//! here at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parley_raft::{NodeId, RaftNode, WriteError};
use parley_storage::{Command, CommandKind, Outcome, Reply, RequestId, Store};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::ip_limits::IpLimits;
use crate::limits::{LoginLimiter, SendLimiter};
use crate::metrics::Metrics;

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub admin_token: Option<String>,
    pub jwt_secret: Vec<u8>,
    pub cluster_secret: Vec<u8>,
    /// Largest message body in bytes.
    pub max_body_bytes: u64,
    /// Largest HTTP request body in bytes.
    pub max_request_bytes: u64,
    /// Outbound frames a WebSocket may have queued before it is closed with 1013.
    pub ws_queue: usize,
    pub rate_limit_per_user: u32,
    pub login_rate_limit: u32,
    pub max_group_members: u64,
    /// How long a request body may take to arrive (`--body-timeout-secs`).
    pub body_timeout: Duration,
    /// Login attempts per minute per source IP (0 = off).
    pub login_ip_rate_limit: u32,
    /// Registrations per minute per source IP (0 = off).
    pub register_ip_rate_limit: u32,
    /// Admin-endpoint requests per minute per source IP (0 = off).
    pub admin_ip_rate_limit: u32,
    /// Browser origins allowed to call this node (`--cors-origin`; none: CORS off).
    pub cors: crate::cors::Cors,
    /// Whether `POST /v1/users` is open to anyone (`--registration`).
    pub registration: Registration,
}

/// `--registration open|closed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone may register.
    #[default]
    Open,
    /// Only `POST /v1/admin/users` creates accounts; `POST /v1/users` answers 403 `forbidden`.
    Closed,
}

impl std::str::FromStr for Registration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Registration::Open),
            "closed" => Ok(Registration::Closed),
            other => Err(format!("{other:?} is not `open` or `closed`")),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            admin_token: None,
            jwt_secret: Vec::new(),
            cluster_secret: Vec::new(),
            max_body_bytes: 16 * 1024,
            max_request_bytes: 1024 * 1024,
            ws_queue: 256,
            rate_limit_per_user: 500,
            login_rate_limit: 20,
            max_group_members: 10_000,
            body_timeout: Duration::from_secs(30),
            login_ip_rate_limit: DEFAULT_LOGIN_IP_RATE_LIMIT,
            register_ip_rate_limit: DEFAULT_REGISTER_IP_RATE_LIMIT,
            admin_ip_rate_limit: DEFAULT_ADMIN_IP_RATE_LIMIT,
            registration: Registration::Open,
            cors: crate::cors::Cors::default(),
        }
    }
}

/// Per-IP defaults: far above what a person (or an office behind one NAT) does, far below
/// what a password-guessing or account-creating script wants.
pub const DEFAULT_LOGIN_IP_RATE_LIMIT: u32 = 120;
pub const DEFAULT_REGISTER_IP_RATE_LIMIT: u32 = 60;
pub const DEFAULT_ADMIN_IP_RATE_LIMIT: u32 = 600;

/// How long reads with `min_cursor` and writes wait for this node to apply.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);
/// How long one proposal on this node may wait to commit. A leader cut off from its quorum
/// never answers on its own; past this the client gets `unavailable` and retries (safe with an
/// idempotency key). Shorter than the forwarding client's timeout, so a follower forwarding
/// here hears a clean 503 rather than a timeout.
pub const COMMIT_WAIT: Duration = Duration::from_secs(8);

pub struct AppState {
    pub cfg: ApiConfig,
    pub store: Store,
    pub raft: Arc<RaftNode>,
    pub auth: Auth,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub send_limiter: SendLimiter,
    pub login_limiter: LoginLimiter,
    pub ip_limits: IpLimits,
    pub http: reqwest::Client,
    /// Bounds on concurrent inbound raft RPCs (`routes/raft.rs`).
    pub raft_gates: crate::routes::raft::RaftGates,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AppState {
    /// Proposes a command and returns `(cursor, reply)` once it is applied on this node.
    #[tracing::instrument(skip_all, fields(command = kind.name()))]
    pub async fn submit(&self, kind: CommandKind) -> Result<(u64, Reply), ApiError> {
        let outcome = self.propose(Command { ts: now_ms(), kind }).await?;
        self.metrics.commands.inc();
        self.wait_applied(outcome.cursor).await?;
        match outcome.result {
            Ok(reply) => Ok((outcome.cursor, reply)),
            Err(rejection) => Err(rejection.into()),
        }
    }

    /// Runs a command through raft on the leader, wherever it is.
    ///
    /// A command is sent again (here or to another leader) only when it is known not to be in
    /// any log: openraft answers `ForwardToLeader` before appending, or after the entry was
    /// truncated away (it can then never commit); a forward that failed to connect or got 421
    /// never reached a leader's log. Any other doubt (timeout, connection lost mid-request) is
    /// answered `unavailable` and left to the client's idempotent retry.
    ///
    /// The command gets one request id here, kept for every attempt (local proposals and
    /// forwards alike), so the state machine applies it at most once whatever is sent again.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ApiError> {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        let request_id = self.raft.new_request_id();
        loop {
            let attempt = self.raft.write_request(request_id, cmd.clone());
            let written = match tokio::time::timeout(COMMIT_WAIT, attempt).await {
                Ok(written) => written,
                Err(_) => return Err(ApiError::unavailable("the write was not committed in time")),
            };
            match written {
                Ok(outcome) => return Ok(outcome),
                Err(WriteError::ForwardToLeader { leader_addr: Some(addr), leader_id: Some(leader) })
                    if leader != self.raft.node_id() =>
                {
                    let write = ForwardedWrite { request_id, command: cmd.clone() };
                    match self.forward(leader, &addr, &write).await {
                        Ok(outcome) => return Ok(outcome),
                        // Nothing reached the leader: safe to try again.
                        Err(Forward::NotSent(e)) if tokio::time::Instant::now() < deadline => {
                            tracing::debug!(%e, "forward failed before sending; retrying");
                        }
                        Err(Forward::NotSent(e)) => {
                            return Err(ApiError::unavailable(format!("leader unreachable: {e}")))
                        }
                        // It may have been applied: never resend, let the client retry with its
                        // idempotency key.
                        Err(Forward::Unknown(e)) => {
                            return Err(ApiError::unavailable(format!("leader did not answer: {e}")))
                        }
                        Err(Forward::Refused(e)) => return Err(e),
                    }
                }
                Err(WriteError::ForwardToLeader { .. }) if tokio::time::Instant::now() < deadline => {}
                Err(WriteError::ForwardToLeader { .. }) => return Err(ApiError::unavailable("no leader")),
                Err(e) => return Err(ApiError::unavailable(e.to_string())),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `write` to the leader `leader` at `addr`, signed for it alone (a capture cannot
    /// be replayed to another node, nor to it: see `parley_raft::envelope`).
    async fn forward(&self, leader: NodeId, addr: &str, write: &ForwardedWrite) -> Result<Outcome, Forward> {
        let body = serde_json::to_vec(write).map_err(|e| Forward::NotSent(e.to_string()))?;
        let url = format!("{}{WRITE_PATH}", self.raft.peer_base_url(addr));
        let signed = self.raft.sign(Some(leader), "POST", WRITE_PATH, &body);
        let resp = signed
            .apply(self.http.post(url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(
                |e| if e.is_connect() { Forward::NotSent(e.to_string()) } else { Forward::Unknown(e.to_string()) },
            )?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Forward::Unknown(e.to_string()))?;
        if status == reqwest::StatusCode::MISDIRECTED_REQUEST {
            // The target is no longer the leader and did not run the command.
            return Err(Forward::NotSent("target is not the leader".into()));
        }
        if !status.is_success() {
            let msg = String::from_utf8_lossy(&bytes).into_owned();
            return Err(Forward::Refused(ApiError::unavailable(format!("leader answered {status}: {msg}"))));
        }
        serde_json::from_slice(&bytes).map_err(|e| Forward::Unknown(e.to_string()))
    }

    /// Waits until this node has applied `cursor` (read-your-writes).
    pub async fn wait_applied(&self, cursor: u64) -> Result<(), ApiError> {
        if self.store.applied_cursor() >= cursor {
            return Ok(());
        }
        let mut rx = self.hub.applied_watch();
        let wait = async {
            while self.store.applied_cursor() < cursor {
                if rx.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        match tokio::time::timeout(APPLY_WAIT, wait).await {
            Ok(true) => Ok(()),
            _ => Err(ApiError::unavailable(format!("this node has not applied cursor {cursor} yet"))),
        }
    }
}

/// The path a follower forwards a client's command to, on the leader.
pub const WRITE_PATH: &str = "/raft/write";

/// The body of `POST /raft/write`: a client's command and the request id the proposing node
/// gave it (the leader proposes it under that id, so a second delivery applies nothing).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForwardedWrite {
    pub request_id: RequestId,
    pub command: Command,
}

enum Forward {
    NotSent(String),
    Unknown(String),
    Refused(ApiError),
}
