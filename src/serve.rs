//! `parley serve`: resolve settings, bind the listener, start the node, run until a signal.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use parley_api::listener::ConnLimits;
use parley_api::{ApiConfig, Node, ServerConfig};

use crate::config::{ServeArgs, Settings};

pub fn run(args: ServeArgs) -> Result<(), String> {
    let settings = args.resolve().map_err(|e| e.to_string())?;
    owner_only_files();
    return_large_allocations_to_the_os();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(serve(settings))
}

async fn serve(s: Settings) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(&s.http).await.map_err(|e| format!("cannot listen on {}: {e}", s.http))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    parley_api::data_dir::create(&s.data_dir).map_err(|e| format!("cannot create {}: {e}", s.data_dir.display()))?;
    let jwt_secret = jwt_secret(&s)?;
    let advertise =
        s.advertise.clone().or_else(|| s.peers.get(&s.node_id).cloned()).unwrap_or_else(|| bound.to_string());
    // A single node bootstraps itself and is ready at once; a cluster member (or a node joining
    // one) prints its address right after binding, as readiness depends on the other nodes.
    let single = s.peers.is_empty() && !s.join;
    let cfg = ServerConfig {
        data_dir: s.data_dir.clone(),
        node_id: s.node_id,
        advertise_addr: advertise,
        peers: s.peers.clone(),
        api: ApiConfig {
            admin_token: s.admin_token.clone(),
            jwt_secret,
            cluster_secret: s.cluster_secret.clone().unwrap_or_default().into_bytes(),
            max_body_bytes: s.max_body_bytes,
            max_request_bytes: (s.max_body_bytes * 8).max(1024 * 1024),
            ws_queue: s.ws_queue,
            rate_limit_per_user: s.rate_limit_per_user,
            login_rate_limit: s.login_rate_limit,
            login_ip_rate_limit: s.login_rate_limit_per_ip,
            register_ip_rate_limit: s.register_rate_limit_per_ip,
            admin_ip_rate_limit: s.admin_rate_limit_per_ip,
            registration: s.registration,
            max_group_members: s.max_group_members,
            body_timeout: Duration::from_secs(s.body_timeout_secs),
            cors: s.cors.clone(),
        },
        cache_bytes: s.cache_mb * 1024 * 1024,
        snapshot_logs_since_last: s.snapshot_every,
        raft_timing: parley_raft::RaftTiming::with_heartbeat(s.raft_heartbeat_ms),
        compression: s.compression,
        join: s.join,
        conn_limits: ConnLimits {
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            max_per_ip: s.max_conns_per_ip,
        },
        peer_tls: s.peer_tls.clone(),
    };
    let node = Node::start(cfg, listener).await.map_err(|e| e.to_string())?;
    let state = node.state.clone();
    let server = tokio::spawn(node.serve(shutdown_signal()));
    if single && !Node::wait_ready(&state, Duration::from_secs(30)).await {
        return Err("the node did not become ready within 30 s".into());
    }
    tracing::info!(addr = %bound, node_id = s.node_id, data_dir = %s.data_dir.display(), "serving");
    let scheme = if s.peer_tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{bound}");
    let _ = std::io::stdout().flush();
    match server.await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("server task failed: {e}")),
    }
}

/// The JWT key: the flag, else derived from the cluster secret (so every node agrees), else a
/// random key kept in the data dir (a single node keeps its tokens valid across restarts).
fn jwt_secret(s: &Settings) -> Result<Vec<u8>, String> {
    if let Some(j) = &s.jwt_secret {
        return Ok(j.as_bytes().to_vec());
    }
    if let Some(c) = &s.cluster_secret {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(c.as_bytes()).map_err(|e| e.to_string())?;
        mac.update(b"parley jwt signing key v1");
        return Ok(mac.finalize().into_bytes().to_vec());
    }
    load_or_create_secret(&s.data_dir.join("jwt.secret"))
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, String> {
    if let Ok(hexed) = std::fs::read_to_string(path) {
        return hex::decode(hexed.trim()).map_err(|e| format!("bad {}: {e}", path.display()));
    }
    let secret: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(hex::encode(secret).as_bytes()).and_then(|_| f.sync_all()).map_err(|e| e.to_string())?;
    Ok(secret.to_vec())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Every file this process creates is owner-only (0600, directories 0700): sled creates the
/// database files itself with the default mode, so the umask is the one place that reaches
/// them from their first byte (parley_api::data_dir also tightens what already exists).
fn owner_only_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Each argon2 hash allocates 19 MiB; glibc keeps freed blocks that size in its heap, so a node
/// that served a burst of logins would hold hundreds of MiB forever. Serving allocations of
/// 1 MiB and more with mmap gives them back to the OS when freed.
fn return_large_allocations_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tuning parameter; it is called once at start,
    // before the runtime spawns any thread that allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
