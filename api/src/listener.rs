//! The accept loop: every connection to the node's listener, before any route sees it.
//!
//! warp 0.4's own server offers no timeouts and no connection limit, so a node serves its
//! filter through hyper-util directly (as warp does inside), which lets it:
//! - close a connection whose request head does not arrive within the header timeout
//!   (hyper's `header_read_timeout`; also what closes an idle keep-alive connection), so
//!   slowloris clients cannot pile up;
//! - cap the connections one IP address holds open ([`PerIp`]): the one past the cap is closed
//!   at accept, before hyper reads a byte. A WebSocket keeps its connection's slot for as long
//!   as it is open ([`ConnSlot`], taken by `ws.rs` from the request's extensions), since the
//!   upgrade ends hyper's part of the connection but not the socket;
//! - shut down gracefully: stop accepting, let in-flight requests finish.
//!
//! It speaks HTTP/1.1 only (see [`serve`] for why), over TLS when the node has
//! `--peer-tls-*` ([`crate::tls`]): the handshake must end within the header timeout too.
//!
//! Body read timeouts are per route ([`crate::http::read_body`]): only a route knows whether it
//! reads a body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Connection-level limits of a node's listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest a request head may take to arrive (and longest a keep-alive connection idles).
    pub header_timeout: Duration,
    /// Most connections one IP address may hold open; 0 = no cap.
    pub max_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits { header_timeout: Duration::from_secs(10), max_per_ip: 512 }
    }
}

/// Open connections by client IP address.
#[derive(Debug, Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A slot for one more connection from `ip`, unless it already holds `max`.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot(Arc::new(Slot { ip, table: self.clone() })))
    }
}

/// One connection's place in the per-IP count, released when the last clone is dropped: the
/// connection task holds one, every request on it carries one in its extensions, and a
/// WebSocket keeps its request's clone until the socket closes.
#[derive(Debug, Clone)]
pub struct ConnSlot(#[allow(dead_code)] Arc<Slot>);

#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    table: Arc<PerIp>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's byte stream: plain TCP or TLS over it (one type, so one hyper connection).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Serves `routes` on `listener` (over TLS with `tls`) until `shutdown` resolves, then waits
/// for in-flight connections to finish their requests (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let per_ip = Arc::new(PerIp::default());
    // HTTP/1 only, deliberately: hyper-util's HTTP/1-or-2 detection reads the first bytes with
    // no timeout of its own, so a connection sending nothing (or half an h2 preface) would be
    // held forever. No client of a node speaks h2c (reqwest here is built without it).
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // Every connection task holds a clone of `open`; `closed` ends when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open, mut closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = per_ip.admit(peer.ip(), limits.max_per_ip) else {
            tracing::warn!(ip = %peer.ip(), max = limits.max_per_ip, "connection refused: too many from this address");
            drop(stream);
            continue;
        };
        let filter = warp::service(routes.clone());
        let request_slot = slot.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(request_slot.clone());
            req.extensions_mut().insert(Peer(peer));
            let mut filter = filter.clone();
            async move { Ok::<_, Infallible>(tower_call(&mut filter, req).await) }
        });
        let mut stop = stop_rx.clone();
        let open = open.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                // A client that never finishes its handshake is closed like one that never
                // sends its headers; a plain-HTTP client fails the handshake at once.
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => Box::new(tls_stream),
                    Ok(Err(e)) => {
                        tracing::debug!(ip = %peer.ip(), error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(ip = %peer.ip(), "TLS handshake timed out");
                        return;
                    }
                },
            };
            let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                // Timeouts and clients going away land here: routine, not errors.
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open);
    let _ = closed.recv().await;
}

/// Calls warp's service (a `tower::Service` that never fails).
async fn tower_call<S>(svc: &mut S, req: hyper::Request<hyper::body::Incoming>) -> Response
where
    S: tower_service::Service<hyper::Request<hyper::body::Incoming>, Response = Response, Error = Infallible>,
{
    match svc.call(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// Too many open files and the like: wait a little rather than spin (what warp does).
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The TCP peer of a request's connection, put in every request's extensions by the accept
/// loop. (warp's own `addr::remote()` is filled only by `warp::serve`, which this loop
/// replaces, and its extension type is private.)
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The peer address of the request's connection (`None` for a request not from this loop).
pub fn remote() -> impl warp::Filter<Extract = (Option<std::net::SocketAddr>,), Error = Infallible> + Clone {
    use warp::Filter;
    warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|Peer(a)| a))
}
