//! Delay with jitter on node-to-node traffic: a TCP proxy per node in the root namespace that
//! holds every chunk it reads for 50 ms ± 50 ms before passing it on, in order.
//!
//! This stands in for `tc qdisc ... netem delay 50ms 50ms`, which the kernel this suite was
//! written on lacks (no `sch_netem`). Peers are told a node lives at its proxy (`--peers`,
//! `--advertise`), so raft RPCs and forwarded writes pay the delay both ways; clients talk to
//! the nodes directly. Order within a connection is kept (as TCP would, after reordering), and
//! each direction holds at most [`QUEUE`] chunks (the reader waits beyond that).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Chunks in flight per direction of one connection.
const QUEUE: usize = 256;

pub struct Jitter {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

/// A small xorshift: the delays need no quality, only no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Jitter {
    /// Listens on `bind` (port 0: any) and forwards every connection to `target`, each chunk
    /// delayed by `base ± spread`.
    pub async fn start(bind: &str, target: String, base: Duration, spread: Duration) -> Jitter {
        let listener = TcpListener::bind(bind).await.expect("bind the jitter proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(addr.port());
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else { continue };
                seed = seed.wrapping_add(0x2545_f491_4f6c_dd1d);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                conns.push(tokio::spawn(pump(ri, wo, Rng(seed | 1), base, spread)));
                conns.push(tokio::spawn(pump(ro, wi, Rng(seed.rotate_left(17) | 1), base, spread)));
                conns.retain(|t: &JoinHandle<()>| !t.is_finished());
            }
            for t in conns {
                t.abort();
            }
        });
        Jitter { addr, task }
    }
}

impl Drop for Jitter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk held until its delivery time: now + a delay drawn from
/// `base ± spread`, never before the previous chunk's.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rng: Rng,
    base: Duration,
    spread: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let span = 2 * spread.as_micros() as u64 + 1;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = (base + Duration::from_micros(rng.next() % span)).saturating_sub(spread);
        last = last.max(Instant::now() + delay);
        if tx.send((last, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
