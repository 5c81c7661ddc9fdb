//! `parley serve` configuration: command-line flags, `PARLEY_*` environment variables and a
//! `--config` TOML file, in that order of precedence, over built-in defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Flags of `parley serve`. Each is also `PARLEY_<NAME>` and a key of the TOML file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// A TOML file with any of these settings (keys as the flags, with `_`).
    #[arg(long, env = "PARLEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its data [default: ./parley-data].
    #[arg(long, env = "PARLEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long, env = "PARLEY_HTTP")]
    pub http: Option<String>,
    /// This node's id in the cluster [default: 1].
    #[arg(long, env = "PARLEY_NODE_ID")]
    pub node_id: Option<u64>,
    /// HTTP addresses of all voters: `1=ADDR,2=ADDR,3=ADDR`.
    #[arg(long, env = "PARLEY_PEERS")]
    pub peers: Option<String>,
    /// Shared secret authenticating raft traffic between nodes.
    #[arg(long, env = "PARLEY_CLUSTER_SECRET")]
    pub cluster_secret: Option<String>,
    /// JWT signing key [default: derived from the cluster secret; a single node with neither
    /// keeps a random one in its data dir].
    #[arg(long, env = "PARLEY_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Token for /v1/admin/* (send as `Authorization: Bearer <token>`).
    #[arg(long, env = "PARLEY_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Message sends per second per user, bursts of 4x allowed; 0 = off [default: 500].
    #[arg(long, env = "PARLEY_RATE_LIMIT_PER_USER")]
    pub rate_limit_per_user: Option<u32>,
    /// Failed logins per minute per user id; 0 = off [default: 20].
    #[arg(long, env = "PARLEY_LOGIN_RATE_LIMIT")]
    pub login_rate_limit: Option<u32>,
    /// Login attempts per minute per source IP, bursts of the same size; 0 = off [default: 120].
    #[arg(long, env = "PARLEY_LOGIN_RATE_LIMIT_PER_IP")]
    pub login_rate_limit_per_ip: Option<u32>,
    /// Registrations per minute per source IP, bursts of the same size; 0 = off [default: 60].
    #[arg(long, env = "PARLEY_REGISTER_RATE_LIMIT_PER_IP")]
    pub register_rate_limit_per_ip: Option<u32>,
    /// Requests to /v1/admin/* per minute per source IP (admin-token guesses included); 0 = off
    /// [default: 600].
    #[arg(long, env = "PARLEY_ADMIN_RATE_LIMIT_PER_IP")]
    pub admin_rate_limit_per_ip: Option<u32>,
    /// Outbound frames a WebSocket may have queued before it is closed with 1013 [default: 256].
    #[arg(long, env = "PARLEY_WS_QUEUE")]
    pub ws_queue: Option<usize>,
    /// Largest message body in bytes [default: 16384].
    #[arg(long, env = "PARLEY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Most members a group may have [default: 10000].
    #[arg(long, env = "PARLEY_MAX_GROUP_MEMBERS")]
    pub max_group_members: Option<u64>,
    /// `open`: anyone may register (`POST /v1/users`); `closed`: only an app backend creates
    /// accounts, through `POST /v1/admin/users` [default: open].
    #[arg(long, env = "PARLEY_REGISTRATION", value_name = "open|closed")]
    pub registration: Option<parley_api::Registration>,
    /// Address other nodes use to reach this one [default: this node's entry in --peers, else
    /// the bound HTTP address].
    #[arg(long, env = "PARLEY_ADVERTISE")]
    pub advertise: Option<String>,
    /// Memory for the storage page caches, in MiB (both dbs; see docs/BENCHMARKS.md) [default: 256].
    #[arg(long, env = "PARLEY_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Take a raft snapshot every this many log entries; a snapshot is a journal pointer and
    /// costs a flush, and the raft log is purged behind it [default: 2000].
    #[arg(long, env = "PARLEY_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Raft heartbeat period in ms, also the timeout of one replication RPC: it must exceed the
    /// slowest round trip between nodes. Election timeouts are 3 to 6 heartbeats; failover
    /// takes about 9 to 12 [default: 100].
    #[arg(long, env = "PARLEY_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,
    /// zstd-compress the journal and projections on disk (about a third of the bytes for chat
    /// text, at some send throughput). Chosen when the data dir is created; an existing one
    /// keeps its setting [default: true].
    #[arg(long, env = "PARLEY_COMPRESSION")]
    pub compression: Option<bool>,
    /// Seconds a request's headers may take to arrive; a connection that sends none for this
    /// long (slowloris, or an idle keep-alive) is closed; at least 1 [default: 10].
    #[arg(long, env = "PARLEY_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may take to arrive, else 408; at least 1 [default: 30].
    #[arg(long, env = "PARLEY_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Connections one IP address may hold open (WebSockets included); more are closed at
    /// accept; 0 = no cap [default: 512].
    #[arg(long, env = "PARLEY_MAX_CONNS_PER_IP")]
    pub max_conns_per_ip: Option<usize>,
    /// Join an existing cluster: never initialise one; wait until its leader adds this node
    /// (`parley members add`). Needs --cluster-secret.
    #[arg(long, env = "PARLEY_JOIN")]
    pub join: bool,
    /// TLS on this node's whole listener and to its peers: its certificate chain (PEM), naming
    /// the host of its advertised address. Needs --peer-tls-key and --peer-tls-ca.
    #[arg(long, env = "PARLEY_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (PEM).
    #[arg(long, env = "PARLEY_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed every node's certificate: the only root peers are checked
    /// against.
    #[arg(long, env = "PARLEY_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// A browser origin (`https://app.example`) allowed to call this node (CORS) and open its
    /// WebSocket; repeatable (the environment variable takes a comma-separated list); `*` allows
    /// any [default: none, no CORS headers].
    #[arg(long, env = "PARLEY_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http: Option<String>,
    node_id: Option<u64>,
    peers: Option<String>,
    cluster_secret: Option<String>,
    jwt_secret: Option<String>,
    admin_token: Option<String>,
    rate_limit_per_user: Option<u32>,
    login_rate_limit: Option<u32>,
    login_rate_limit_per_ip: Option<u32>,
    register_rate_limit_per_ip: Option<u32>,
    admin_rate_limit_per_ip: Option<u32>,
    ws_queue: Option<usize>,
    max_body_bytes: Option<u64>,
    max_group_members: Option<u64>,
    registration: Option<parley_api::Registration>,
    advertise: Option<String>,
    cache_mb: Option<u64>,
    snapshot_every: Option<u64>,
    raft_heartbeat_ms: Option<u64>,
    compression: Option<bool>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_conns_per_ip: Option<usize>,
    join: Option<bool>,
    peer_tls_cert: Option<PathBuf>,
    peer_tls_key: Option<PathBuf>,
    peer_tls_ca: Option<PathBuf>,
    cors_origin: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("bad --peers {0:?}: expected 1=ADDR,2=ADDR,...")]
    Peers(String),
    #[error("--node-id {0} is not listed in --peers")]
    NodeNotInPeers(u64),
    #[error("a cluster (--peers or --join) needs --cluster-secret")]
    SecretRequired,
    #[error("{0}")]
    Other(String),
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http: String,
    pub node_id: u64,
    pub peers: BTreeMap<u64, String>,
    pub cluster_secret: Option<String>,
    pub jwt_secret: Option<String>,
    pub admin_token: Option<String>,
    pub rate_limit_per_user: u32,
    pub login_rate_limit: u32,
    pub login_rate_limit_per_ip: u32,
    pub register_rate_limit_per_ip: u32,
    pub admin_rate_limit_per_ip: u32,
    pub ws_queue: usize,
    pub max_body_bytes: u64,
    pub max_group_members: u64,
    pub registration: parley_api::Registration,
    pub advertise: Option<String>,
    pub cache_mb: u64,
    pub snapshot_every: u64,
    pub raft_heartbeat_ms: u64,
    pub compression: bool,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_conns_per_ip: usize,
    pub join: bool,
    pub peer_tls: Option<parley_api::tls::PeerTls>,
    pub cors: parley_api::cors::Cors,
}

impl ServeArgs {
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let peers_raw = self.peers.or(file.peers);
        let peers = match &peers_raw {
            Some(p) if !p.trim().is_empty() => parse_peers(p)?,
            _ => BTreeMap::new(),
        };
        let node_id = self.node_id.or(file.node_id).unwrap_or(1);
        let cluster_secret = self.cluster_secret.or(file.cluster_secret).filter(|s| !s.is_empty());
        let join = self.join || file.join.unwrap_or(false);
        if join && cluster_secret.is_none() {
            return Err(ConfigError::SecretRequired);
        }
        if !peers.is_empty() {
            if !peers.contains_key(&node_id) {
                return Err(ConfigError::NodeNotInPeers(node_id));
            }
            if cluster_secret.is_none() {
                return Err(ConfigError::SecretRequired);
            }
        }
        let http = self
            .http
            .or(file.http)
            .or_else(|| peers.get(&node_id).cloned())
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let peer_tls = match (
            self.peer_tls_cert.or(file.peer_tls_cert),
            self.peer_tls_key.or(file.peer_tls_key),
            self.peer_tls_ca.or(file.peer_tls_ca),
        ) {
            (Some(cert), Some(key), Some(ca)) => Some(parley_api::tls::PeerTls { cert, key, ca }),
            (None, None, None) => None,
            _ => {
                return Err(ConfigError::Other("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together".into()))
            }
        };
        let ws_queue = self.ws_queue.or(file.ws_queue).unwrap_or(256);
        if ws_queue == 0 {
            return Err(ConfigError::Other("--ws-queue must be at least 1".into()));
        }
        // Flags (or the environment) replace the file's list rather than add to it, as for
        // every other setting.
        let cors_origin =
            if self.cors_origin.is_empty() { file.cors_origin.unwrap_or_default() } else { self.cors_origin };
        let cors = parley_api::cors::Cors::new(&cors_origin).map_err(|e| ConfigError::Other(e.to_string()))?;
        Ok(Settings {
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("parley-data")),
            http,
            node_id,
            peers,
            cluster_secret,
            jwt_secret: self.jwt_secret.or(file.jwt_secret).filter(|s| !s.is_empty()),
            admin_token: self.admin_token.or(file.admin_token).filter(|s| !s.is_empty()),
            rate_limit_per_user: self.rate_limit_per_user.or(file.rate_limit_per_user).unwrap_or(500),
            login_rate_limit: self.login_rate_limit.or(file.login_rate_limit).unwrap_or(20),
            login_rate_limit_per_ip: self
                .login_rate_limit_per_ip
                .or(file.login_rate_limit_per_ip)
                .unwrap_or(parley_api::state::DEFAULT_LOGIN_IP_RATE_LIMIT),
            register_rate_limit_per_ip: self
                .register_rate_limit_per_ip
                .or(file.register_rate_limit_per_ip)
                .unwrap_or(parley_api::state::DEFAULT_REGISTER_IP_RATE_LIMIT),
            admin_rate_limit_per_ip: self
                .admin_rate_limit_per_ip
                .or(file.admin_rate_limit_per_ip)
                .unwrap_or(parley_api::state::DEFAULT_ADMIN_IP_RATE_LIMIT),
            ws_queue,
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes).unwrap_or(16 * 1024).max(1),
            max_group_members: self.max_group_members.or(file.max_group_members).unwrap_or(10_000).max(1),
            registration: self.registration.or(file.registration).unwrap_or_default(),
            advertise: self.advertise.or(file.advertise),
            cache_mb: self.cache_mb.or(file.cache_mb).unwrap_or(256).max(8),
            snapshot_every: self.snapshot_every.or(file.snapshot_every).unwrap_or(2_000).max(1),
            raft_heartbeat_ms: self
                .raft_heartbeat_ms
                .or(file.raft_heartbeat_ms)
                .unwrap_or(parley_raft::node::HEARTBEAT_MS)
                .clamp(10, 10_000),
            compression: self.compression.or(file.compression).unwrap_or(true),
            header_timeout_secs: self.header_timeout_secs.or(file.header_timeout_secs).unwrap_or(10).max(1),
            body_timeout_secs: self.body_timeout_secs.or(file.body_timeout_secs).unwrap_or(30).max(1),
            max_conns_per_ip: self.max_conns_per_ip.or(file.max_conns_per_ip).unwrap_or(512),
            join,
            peer_tls,
            cors,
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
}

/// Parses `1=ADDR,2=ADDR`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| ConfigError::Peers(s.to_owned()))?;
        let id: u64 = id.trim().parse().map_err(|_| ConfigError::Peers(s.to_owned()))?;
        let addr = addr.trim();
        if addr.is_empty() || out.insert(id, addr.to_owned()).is_some() {
            return Err(ConfigError::Peers(s.to_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[&2], "127.0.0.1:7002");
        assert!(parse_peers("1=a,1=b").is_err());
        assert!(parse_peers("x=a").is_err());
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "http = \"127.0.0.1:9999\"\nadmin_token = \"file\"\nws_queue = 7\n").unwrap();
        let args = ServeArgs { config: Some(path), admin_token: Some("flag".into()), ..Default::default() };
        let s = args.resolve().unwrap();
        assert_eq!(s.http, "127.0.0.1:9999");
        assert_eq!(s.admin_token.as_deref(), Some("flag"));
        assert_eq!(s.ws_queue, 7);
        assert_eq!(s.data_dir, PathBuf::from("parley-data"));
        assert_eq!((s.header_timeout_secs, s.body_timeout_secs, s.max_conns_per_ip), (10, 30, 512));
    }

    #[test]
    fn connection_limits_come_from_the_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "header_timeout_secs = 0\nbody_timeout_secs = 5\nmax_conns_per_ip = 0\n").unwrap();
        let s = ServeArgs { config: Some(path), ..Default::default() }.resolve().unwrap();
        // A zero header timeout would close every connection at once: at least 1 s.
        assert_eq!((s.header_timeout_secs, s.body_timeout_secs, s.max_conns_per_ip), (1, 5, 0));
    }

    #[test]
    fn a_cluster_needs_a_secret_and_this_node_listed() {
        let args = ServeArgs { peers: Some("1=a:1,2=b:2".into()), ..Default::default() };
        assert!(matches!(args.resolve(), Err(ConfigError::SecretRequired)));
        let args = ServeArgs { peers: Some("2=b:2".into()), cluster_secret: Some("s".into()), ..Default::default() };
        assert!(matches!(args.resolve(), Err(ConfigError::NodeNotInPeers(1))));
    }

    #[test]
    fn cors_origins_come_from_flags_else_the_file_and_are_checked() {
        assert!(!ServeArgs::default().resolve().unwrap().cors.enabled());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "cors_origin = [\"https://app.example\"]\n").unwrap();
        let s = ServeArgs { config: Some(path.clone()), ..Default::default() }.resolve().unwrap();
        assert!(s.cors.enabled());
        let bad = ServeArgs { config: Some(path), cors_origin: vec!["not an origin".into()], ..Default::default() };
        assert!(matches!(bad.resolve(), Err(ConfigError::Other(m)) if m.contains("--cors-origin")));
    }

    #[test]
    fn the_peer_tls_files_go_together() {
        let args = ServeArgs { peer_tls_cert: Some("c.pem".into()), ..Default::default() };
        assert!(matches!(args.resolve(), Err(ConfigError::Other(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "peer_tls_cert = \"c.pem\"\npeer_tls_key = \"k.pem\"\npeer_tls_ca = \"ca.pem\"\n")
            .unwrap();
        let s = ServeArgs { config: Some(path), ..Default::default() }.resolve().unwrap();
        let tls = s.peer_tls.expect("TLS from the file");
        assert_eq!((tls.cert, tls.key, tls.ca), ("c.pem".into(), "k.pem".into(), "ca.pem".into()));
        assert!(ServeArgs::default().resolve().unwrap().peer_tls.is_none());
    }
}
