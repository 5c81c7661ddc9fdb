//! Starting and stopping a node: open the store, start raft with the hub as its apply
//! listener, serve the routes on a listener the caller bound, shut down gracefully.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parley_raft::{LogStore, NodeConfig, NodeDbs, RaftNode};
use parley_storage::Store;
use tokio::net::TcpListener;
use warp::{Filter, Reply};

use crate::auth::Auth;
use crate::hub::Hub;
use crate::ip_limits::IpLimits;
use crate::limits::{LoginLimiter, SendLimiter};
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::state::{ApiConfig, AppState};
use crate::tls::PeerTls;

/// Cache of the raft log's db.
/// The raft log db's share of the cache: entries are read back only to replicate them and to
/// re-apply after a restart, and the log is short (purged behind every snapshot).
const RAFT_LOG_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// How long the forwarding client keeps an idle connection (see `Node::start`).
const FORWARD_POOL_IDLE: Duration = Duration::from_millis(900);

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// The address peers and forwarded writes reach this node at.
    pub advertise_addr: String,
    /// Every voter's id and HTTP address; empty for a single node.
    pub peers: BTreeMap<u64, String>,
    pub api: ApiConfig,
    /// All of sled's page caches together (the state db gets most; the raft log a slice).
    pub cache_bytes: u64,
    pub snapshot_logs_since_last: u64,
    /// Raft's heartbeat and election timeouts.
    pub raft_timing: parley_raft::RaftTiming,
    /// zstd compression of a *new* state db (an existing one keeps how it was created).
    pub compression: bool,
    /// Join an existing cluster: never initialise one, wait to be added by its leader.
    pub join: bool,
    /// Header timeout and per-IP connection cap of the listener.
    pub conn_limits: ConnLimits,
    /// TLS on the whole listener and to peers (`--peer-tls-*`); `None`: plain HTTP.
    pub peer_tls: Option<PeerTls>,
}

/// What to tell sled for a page cache of `budget` bytes of memory. sled's `cache_capacity`
/// counts pages at their on-disk size, and holds them decoded: measured here, the memory a
/// node's cache takes is about 4x the capacity with compression and 2x without
/// (docs/BENCHMARKS.md, "history"). So `--cache-mb` is the memory, and sled gets its share.
fn sled_cache_bytes(budget: u64, compressed: bool) -> u64 {
    if compressed {
        budget / 4
    } else {
        budget / 2
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory {0}: {1}")]
    Open(PathBuf, String),
    #[error("storage: {0}")]
    Store(#[from] parley_storage::StoreError),
    #[error("raft: {0}")]
    Raft(#[from] parley_raft::RaftError),
    #[error("{0}")]
    Api(#[from] crate::error::ApiError),
    #[error("{0}")]
    CorruptJournal(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("peer TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A started node; [`Node::serve`] runs it until shutdown.
pub struct Node {
    pub state: Arc<AppState>,
    listener: TcpListener,
    conn_limits: ConnLimits,
    /// Wraps every connection when the node speaks TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Node {
    /// Opens storage and starts raft. The listener is bound by the caller (so it can report a
    /// busy port cleanly and tests can bind port 0).
    pub async fn start(cfg: ServerConfig, listener: TcpListener) -> Result<Node, ServerError> {
        let open_error = |e: &dyn std::fmt::Display| ServerError::Open(cfg.data_dir.clone(), e.to_string());
        crate::data_dir::create(&cfg.data_dir).map_err(|e| open_error(&e))?;
        let open_db = |dir: &str, cache: u64, compress: bool| {
            parley_storage::store::sled_config(&cfg.data_dir.join(dir), cache, compress)
                .open()
                .map_err(|e| open_error(&e))
        };
        let log_cache = RAFT_LOG_CACHE_BYTES.min(cfg.cache_bytes / 4);
        let state_dir = cfg.data_dir.join("db");
        if let Some(stored) = parley_storage::store::stored_compression(&state_dir) {
            if stored != cfg.compression {
                tracing::info!(compression = stored, "the data dir keeps the compression it was created with");
            }
        }
        let compressed = parley_storage::store::stored_compression(&state_dir).unwrap_or(cfg.compression);
        let db = open_db("db", sled_cache_bytes(cfg.cache_bytes - log_cache, compressed), cfg.compression)?;
        // The raft log has its own db (see `NodeDbs`), never compressed: it is short-lived and
        // on the write path of every entry.
        let log_db = open_db("raft", log_cache, false)?;
        if LogStore::adopt_legacy(&db, &log_db).map_err(|e| open_error(&e))? {
            tracing::info!("moved the raft log into its own db (data dir from an earlier version)");
        }
        // sled has created its files by now (with the process umask): make all of it owner-only.
        crate::data_dir::restrict(&cfg.data_dir).map_err(|e| open_error(&e))?;
        let dbs = NodeDbs { state: db.clone(), log: log_db };
        let store = Store::open(db)?;
        // Before raft applies anything: the next apply would extend a corrupt tail.
        crate::fail_stop::check_tail(&store).map_err(ServerError::CorruptJournal)?;
        let hub = Hub::new(store.clone());
        let conn_limits = cfg.conn_limits;
        // With TLS, both clients (raft RPCs and forwarded writes) dial peers over https and
        // trust only the cluster's CA.
        let tls_client = |b: reqwest::ClientBuilder| match &cfg.peer_tls {
            Some(tls) => tls.client(b),
            None => Ok(b),
        };
        let acceptor = cfg.peer_tls.as_ref().map(PeerTls::acceptor).transpose()?;
        let peer_client = match &cfg.peer_tls {
            Some(_) => Some(parley_raft::network::peer_client(tls_client(reqwest::Client::builder())?)?),
            None => None,
        };
        let node_cfg = NodeConfig {
            node_id: cfg.node_id,
            addr: cfg.advertise_addr.clone(),
            peers: cfg.peers.clone(),
            cluster_secret: cfg.api.cluster_secret.clone(),
            snapshot_logs_since_last: cfg.snapshot_logs_since_last,
            timing: cfg.raft_timing,
            peer_client,
            peer_https: cfg.peer_tls.is_some(),
        };
        let raft = if cfg.join {
            RaftNode::join(node_cfg, dbs, store.clone(), hub.clone()).await?
        } else {
            RaftNode::start(node_cfg, dbs, store.clone(), hub.clone()).await?
        };
        let http = tls_client(reqwest::Client::builder())?
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(64)
            // Below the listeners' header timeout (which closes idle keep-alive connections),
            // so a forward never picks a pooled connection the leader is just closing.
            .pool_idle_timeout(FORWARD_POOL_IDLE)
            .build()?;
        let state = Arc::new(AppState {
            auth: Auth::new(&cfg.api.jwt_secret, cfg.api.admin_token.clone())?,
            send_limiter: SendLimiter::new(cfg.api.rate_limit_per_user),
            login_limiter: LoginLimiter::new(cfg.api.login_rate_limit),
            ip_limits: IpLimits::new(
                cfg.api.login_ip_rate_limit,
                cfg.api.register_ip_rate_limit,
                cfg.api.admin_ip_rate_limit,
            ),
            cfg: cfg.api,
            store,
            raft: Arc::new(raft),
            hub,
            metrics: Metrics::default(),
            http,
            raft_gates: Default::default(),
        });
        Ok(Node { state, listener, conn_limits, tls: acceptor })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Waits until the node is ready (knows a leader, caught up), at most `timeout`.
    pub async fn wait_ready(state: &AppState, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if crate::routes::ops::is_ready(state).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Serves until `shutdown` resolves, then closes sockets, stops raft and flushes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Node { state, listener, conn_limits, tls } = self;
        let routes = crate::routes::all(&state).with(warp::trace::request()).map(Reply::into_response).boxed();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let hub = state.hub.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            hub.shutdown();
            let _ = stop_tx.send(true);
        };
        let server = crate::listener::serve(listener, routes, conn_limits, tls, signal);
        let mut stop_rx2 = stop_rx.clone();
        tokio::select! {
            _ = server => {}
            // In-flight long-polls may hold graceful shutdown for up to 30 s: do not wait for them.
            _ = async move {
                let _ = stop_rx2.wait_for(|s| *s).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            } => {}
        }
        drop(stop_rx);
        if let Err(e) = state.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        state.store.flush().await?;
        Ok(())
    }
}
